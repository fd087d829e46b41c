"""`reef chain`, `reef chain accounts` and `reef chain info`: in process through Typer's runner,
and `reef chain` as a real foreground process stopped with Ctrl-C and restarted."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner
from web3 import Web3

from reef.chain import DEV_MNEMONIC, dev_accounts
from reef.cli import app

REEF = Path(sys.executable).parent / "reef"
runner = CliRunner()


def test_accounts_without_a_devnet_lists_the_mnemonics_accounts() -> None:
    result = runner.invoke(app, ["chain", "accounts", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert "DEV-ONLY" in data["warning"]
    expected = dev_accounts(10, mnemonic=DEV_MNEMONIC)
    assert [a["address"] for a in data["accounts"]] == [a.address for a in expected]
    assert data["accounts"][0]["private_key"] == "0x" + expected[0].private_key.hex()


def test_accounts_for_people_show_whole_keys_and_the_warning() -> None:
    result = runner.invoke(app, ["chain", "accounts"])
    assert result.exit_code == 0, result.output
    assert "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80" in result.stdout
    assert "warning: DEV-ONLY" in result.stdout


def test_info_without_a_devnet_says_how_to_start_one() -> None:
    result = runner.invoke(app, ["chain", "info", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["running"] is False
    assert "reef chain" in data["note"]


def test_a_broken_devnet_json_is_a_clear_error(reef_home: Path) -> None:
    (reef_home / "chain").mkdir()
    (reef_home / "chain" / "devnet.json").write_text("{broken")
    for command in (["chain", "info"], ["chain", "accounts"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1
        assert "not valid JSON" in result.stderr
        assert "Traceback" not in result.output


def test_negative_rate_lock_is_a_usage_error() -> None:
    result = runner.invoke(app, ["chain", "--rate-lock", "-1"])
    assert result.exit_code == 2


# ------------------------------------------------------------------ the foreground process


@dataclass
class Running:
    process: subprocess.Popen[str]
    lines: queue.Queue[str | None]
    reader: threading.Thread
    seen: list[str] = field(default_factory=list)

    def wait_for(self, pattern: str, timeout: float = 90) -> re.Match[str]:
        regex = re.compile(pattern)
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} in {timeout} s; saw {self.seen}")
            if line is None:
                pytest.fail(f"reef chain ended before {pattern!r}; saw {self.seen}")
            self.seen.append(line)
            match = regex.search(line)
            if match:
                return match

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)


@pytest.fixture
def start(reef_home: Path) -> Iterator[object]:
    started: list[Running] = []

    def launch(*args: str) -> Running:
        process = subprocess.Popen(
            [str(REEF), "chain", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "REEF_HOME": str(reef_home), "PYTHONUNBUFFERED": "1"},
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        running = Running(process, lines, reader)
        started.append(running)
        return running

    yield launch
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
        running.process.wait()
        running.reader.join(timeout=10)
        assert running.process.stdout is not None
        running.process.stdout.close()


@pytest.mark.slow
def test_reef_chain_serves_persists_and_starts_fresh(start: object, reef_home: Path) -> None:
    launch = start  # type: ignore[assignment]
    first: Running = launch()  # type: ignore[operator]
    url = first.wait_for(r"^endpoint\s+(http://\S+)").group(1)
    market = first.wait_for(r"^market\s+(0x[0-9a-fA-F]{40})").group(1)
    first.wait_for(r"^\s+#0\s+0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
    first.wait_for(r"key 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
    first.wait_for(r"^ready$")
    assert any("DEV-ONLY" in line for line in first.seen)

    w3 = Web3(Web3.HTTPProvider(url))
    assert w3.eth.chain_id == 31337
    assert len(w3.eth.get_code(Web3.to_checksum_address(market))) > 0
    sender, sink = w3.eth.accounts[0], "0x" + "22" * 20
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": sender, "to": sink, "value": 77})
    )
    blocks = w3.eth.block_number

    info = runner.invoke(app, ["chain", "info", "--json"])
    data = json.loads(info.stdout)
    assert data["running"] is True
    assert data["rpc_url"] == url
    assert data["block_number"] == blocks
    assert data["market"] == market
    assert data["rate_lock_s"] == 300

    assert first.stop() == 0
    first.wait_for(r"^devnet stopped")
    assert json.loads(runner.invoke(app, ["chain", "info", "--json"]).stdout)["running"] is False

    second: Running = launch()  # type: ignore[operator]
    second.wait_for(r"replaying the devnet journal")
    url = second.wait_for(r"^endpoint\s+(http://\S+)").group(1)
    second.wait_for(r"replayed from the journal")
    assert second.wait_for(r"^market\s+(0x[0-9a-fA-F]{40})").group(1) == market
    second.wait_for(r"^ready$")
    w3 = Web3(Web3.HTTPProvider(url))
    assert w3.eth.get_balance(sink) == 77
    assert w3.eth.block_number == blocks
    assert second.stop() == 0

    third: Running = launch("--fresh", "--rate-lock", "60", "--accounts", "3")  # type: ignore[operator]
    url = third.wait_for(r"^endpoint\s+(http://\S+)").group(1)
    third.wait_for(r"rate lock 60 s")
    third.wait_for(r"^\s+#2\s+0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")
    third.wait_for(r"^ready$")
    assert not any("#3" in line for line in third.seen)
    assert Web3(Web3.HTTPProvider(url)).eth.get_balance(sink) == 0
    assert third.stop(signal.SIGTERM) == 0  # what a service manager sends
    third.wait_for(r"^devnet stopped")


@pytest.mark.slow
def test_reef_chain_refusals_are_one_line_errors(reef_home: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    env = {**os.environ, "REEF_HOME": str(reef_home)}
    try:
        busy = subprocess.run(
            [str(REEF), "chain", "--port", str(holder.getsockname()[1])],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
    finally:
        holder.close()
    assert busy.returncode == 1
    assert "port is in use" in busy.stderr
    assert "Traceback" not in busy.stderr
    # The devnet was created and deployed before the port failed; a different lock now refuses.
    mismatch = subprocess.run(
        [str(REEF), "chain", "--port", "0", "--rate-lock", "5"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert mismatch.returncode == 1
    assert "rate lock of 300 s, not 5 s" in mismatch.stderr
    assert "--fresh" in mismatch.stderr


def test_the_banner_warns_when_listening_beyond_loopback() -> None:
    from reef.cli._chain import _loopback

    assert _loopback("http://127.0.0.1:8545")
    assert _loopback("http://[::1]:8545")
    assert _loopback("http://localhost:8545")
    assert not _loopback("http://0.0.0.0:8545")
    assert not _loopback("http://192.168.1.20:8545")


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8545", True),
        ("http://localhost:8545", True),
        ("http://[::1]:8545", True),
        ("http://[::ffff:127.0.0.1]:8545", True),
        ("http://0.0.0.0:8545", False),
        ("http://[::]:8545", False),
        ("http://192.168.1.20:8545", False),
    ],
)
def test_reef_chain_warns_when_it_listens_beyond_this_machine(url: str, local: bool) -> None:
    """The banner's "listening beyond this machine" warning: only a loopback endpoint, in any
    spelling, is spared it (the dev accounts' keys are public)."""
    from reef.cli._chain import _loopback

    assert _loopback(url) is local
