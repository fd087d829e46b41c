"""An operator's first hour, followed to the letter: what tripped it up stays fixed.

- ``reef provider run`` printed ``ready`` whether or not the market knew the provider: a first
  run (before ``reef provider register``) looked ready, yet no tenant could find it. It now says
  ``registered  no`` and the command that registers it (with the ``--rpc``/``--market`` the run
  was given, which the docs' register example left out).
- ``reef executor run`` without ``--rpc/--jobs/--code/--owner`` printed its ports only: nothing
  said it would run no job until configured, nor how.
- ``reef executor register/drain/deregister`` printed a stake in base units (``100000000``), a
  registration time in unix seconds, and said nothing of the stake a deregistration returns.
- ``reef prover leave`` printed ``leave_at 1796651719``, and a second call before then said only
  "the leave delay has not passed", not when it would have.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import pytest
from typer.testing import CliRunner

from reef.chain import serve_devnet_in_thread
from reef.cli import app
from reef.node import format_time
from reef.testing import dev_market

REEF = str(Path(sys.executable).with_name("reef"))
WIDE = {"COLUMNS": "400"}  # long values stay on one line, for the assertions


class Started(NamedTuple):
    process: subprocess.Popen[str]
    stdout: list[str]
    stderr: list[str]


def _start(args: list[str], home: Path, until: str, timeout: float = 60.0) -> Started:
    """``reef ARGS`` as a server, read until a line of stdout or stderr contains ``until``
    (a thread per stream: a pipe's buffered reader and a selector miss lines)."""
    process = subprocess.Popen(
        [REEF, *args],
        env={**os.environ, "REEF_HOME": str(home), "COLUMNS": "400"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    seen = threading.Event()
    out: list[str] = []
    err: list[str] = []

    def pump(stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))
            if until in line:
                seen.set()

    assert process.stdout is not None
    assert process.stderr is not None
    for stream, lines in ((process.stdout, out), (process.stderr, err)):
        threading.Thread(target=pump, args=(stream, lines), daemon=True).start()
    deadline = time.monotonic() + timeout
    while not seen.wait(0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            raise AssertionError(f"no {until!r} from reef {' '.join(args)}: {out} {err}")
    time.sleep(0.5)  # what the other stream says at the same moment is read too
    return Started(process, out, err)


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGINT, as Ctrl-C, then wait for the command to end (its readers then see the end)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    time.sleep(0.2)
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdout.close()
    process.stderr.close()


# ---- reef provider run ----


class ProviderChain(NamedTuple):
    rpc: str
    market: str
    start_block: int
    key: Path


@pytest.fixture(scope="module")
def provider_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderChain]:
    market = dev_market()  # no provider registered: an operator's first run
    key = market.write_key(tmp_path_factory.mktemp("keys") / "provider.key", account=9)
    with serve_devnet_in_thread(market.devnet) as served:
        yield ProviderChain(served.url, market.deployment.market, market.deployment.block, key)


def test_provider_run_says_whether_the_market_sends_it_tenants(
    provider_chain: ProviderChain, tmp_path: Path
) -> None:
    c = provider_chain
    args = ["provider", "run", "--rpc", c.rpc, "--market", c.market, "--key", str(c.key)]
    args += ["--port", "0", "--start-block", str(c.start_block)]
    first = _start(args, tmp_path, until="ready")
    _stop(first.process)
    told = " ".join(first.stderr)
    url = next(line.split()[-1] for line in first.stdout if line.startswith("control plane"))
    assert "registered     no" in first.stdout
    register = f"reef provider register --cp {url} --rpc {c.rpc} --market {c.market} --key {c.key}"
    assert "no tenant can find it" in told
    assert register in told

    # The command it names, as given, registers the provider; the next run says where to.
    done = CliRunner().invoke(app, register.split()[1:], env=WIDE)
    assert done.exit_code == 0, done.output
    assert re.search(r"^action +registered$", done.stdout, re.MULTILINE), done.stdout
    second = _start(args, tmp_path, until="ready")
    _stop(second.process)
    told_second = " ".join(second.stderr)
    # A new --port 0 run has another URL: the market still names the first one.
    assert f"registered     {url}" in second.stdout
    assert "ready" in second.stdout
    assert "no tenant can find it" not in told_second


# ---- reef executor ----


def test_an_unconfigured_executor_says_what_configures_it(tmp_path: Path) -> None:
    key = tmp_path / "ecdsa.sec"
    key.write_text("11" * 32)
    args = ["executor", "run", "--key-file", str(key), "--workdir", str(tmp_path / "work")]
    args += ["--control-port", "0", "--gateway-port", "0"]
    started = _start(args, tmp_path, until="not configured yet")
    _stop(started.process)
    told = " ".join(started.stderr)
    control = re.search(r"control (http://\S+),", told)
    assert control is not None, told
    assert f"reef executor register --control {control[1]} --attestation URL" in told
    assert "--rpc, --jobs, --code and --owner" in told


@pytest.fixture(scope="module")
def serverless_chain() -> Iterator[tuple[Any, str]]:
    from serverless.chain_support import ServerlessChain

    chain = ServerlessChain.create()
    with serve_devnet_in_thread(chain.devnet) as thread:
        yield chain, thread.url


def test_drain_and_deregister_show_the_stake_in_rusd_and_what_returns(
    serverless_chain: tuple[Any, str], tmp_path: Path
) -> None:
    chain, url = serverless_chain
    operator = chain.operators[4]
    enclave = chain.register(operator)
    stake = chain.jobs(operator).executor(enclave).stake
    key = tmp_path / "owner.key"
    key.write_text(operator.key.hex())
    base = ["--rpc", url, "--jobs", chain.jobs_address, "--key", str(key)]
    rusd = f"{stake // 10**6}"  # the test chain's stakes are whole rUSD

    drained = CliRunner().invoke(app, ["executor", "drain", enclave, *base], env=WIDE)
    assert drained.exit_code == 0, drained.output
    assert re.search(
        rf"^stake +{rusd} rUSD \({stake} base units\)$", drained.stdout, re.MULTILINE
    ), drained.stdout
    gone = CliRunner().invoke(app, ["executor", "deregister", enclave, *base], env=WIDE)
    assert gone.exit_code == 0, gone.output
    assert re.search(
        rf"^stake_returned +{rusd} rUSD to {operator.address}$", gone.stdout, re.MULTILINE
    ), gone.stdout
    # --json is as it was: numbers for scripts.
    again = chain.register(operator)
    drained_json = CliRunner().invoke(app, ["executor", "drain", again, *base, "--json"])
    assert json.loads(drained_json.stdout)["stake"] == stake


# ---- reef prover leave ----


@pytest.fixture(scope="module")
def proof_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, list[str]]]:
    from proofs.proofs_support import ProofChain

    chain = ProofChain.create()
    keys = tmp_path_factory.mktemp("keys")
    with serve_devnet_in_thread(chain.devnet) as thread:
        base = ["--rpc", thread.url, "--proof-market", chain.market_address]
        yield chain, [*base, "--key", str(_key(keys, chain, 0))]


def _key(directory: Path, chain: Any, user: int) -> Path:
    path = directory / f"user{user}.key"
    path.write_text(chain.users[user].key.hex())
    return path


def test_prover_leave_says_when_and_what_next(
    proof_chain: tuple[Any, list[str]], tmp_path: Path
) -> None:
    chain, creator = proof_chain
    prover = [*creator[:-1], str(_key(tmp_path, chain, 2))]
    made = CliRunner().invoke(
        app, ["proofs", "market", "create", "--tee", "--image-id", "06" * 32, *creator, "--json"]
    )
    assert made.exit_code == 0, made.output
    market = str(json.loads(made.stdout)["market_id"])
    for step in (
        ["prover", "register", "--stake", "2", "--compute", "2"],
        ["prover", "join", market, "--price", "0.1", "--max-time", "30s"],
    ):
        done = CliRunner().invoke(app, [*step, *prover])
        assert done.exit_code == 0, done.output

    leaving = CliRunner().invoke(app, ["prover", "leave", market, *prover, "--json"])
    assert leaving.exit_code == 0, leaving.output
    leave_at = json.loads(leaving.stdout)["leave_at"]  # --json: the chain time, as before
    assert isinstance(leave_at, int)

    early = CliRunner().invoke(app, ["prover", "leave", market, *prover], env=WIDE)
    assert early.exit_code == 1
    assert "the leave delay has not passed" in early.output
    assert f"you may leave market {market} from {format_time(leave_at)}" in early.output
    # The next step names the account and market it was given: run as printed, it is theirs.
    again = f"reef prover leave {market} {shlex.join(prover)}"
    assert f"run `{again}` again then" in " ".join(early.output.split())
    assert "Traceback" not in early.output

    chain.at(leave_at + 1)
    left = CliRunner().invoke(app, ["prover", "leave", market, *prover], env=WIDE)
    assert left.exit_code == 0, left.output
    assert re.search(r"^state +left$", left.stdout, re.MULTILINE), left.stdout


def test_a_first_prover_leave_prints_a_date_and_the_next_step(
    proof_chain: tuple[Any, list[str]], tmp_path: Path
) -> None:
    chain, creator = proof_chain
    prover = [*creator[:-1], str(_key(tmp_path, chain, 3))]
    made = CliRunner().invoke(
        app, ["proofs", "market", "create", "--tee", "--image-id", "07" * 32, *creator, "--json"]
    )
    market = str(json.loads(made.stdout)["market_id"])
    for step in (
        ["prover", "register", "--stake", "2", "--compute", "2"],
        ["prover", "join", market, "--price", "0.1", "--max-time", "30s"],
    ):
        assert CliRunner().invoke(app, [*step, *prover]).exit_code == 0
    leaving = CliRunner().invoke(app, ["prover", "leave", market, *prover], env=WIDE)
    assert leaving.exit_code == 0, leaving.output
    shown = re.search(r"^leave_at +(.+)$", leaving.stdout, re.MULTILINE)
    assert shown is not None, leaving.stdout
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+", shown[1]), shown[1]
    again = f"reef prover leave {market} {shlex.join(prover)}"
    assert f"run `{again}` again from then to leave" in leaving.stdout


def test_provider_run_names_a_missing_market_or_key_before_loading_its_stack(
    tmp_path: Path,
) -> None:
    """A mistyped command said so after seconds of imports (web3, the control plane, the
    backend: 7.5 s measured on a busy 2-core host, 0.3 s now); the flags are checked first."""
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from reef.cli import app\n"
        "out = CliRunner().invoke(app, sys.argv[1:])\n"
        "print(out.exit_code, 'web3' in sys.modules, 'reef.market' in sys.modules)\n"
        "print(out.output)\n"
    )
    for args, said in (
        (["--rpc", "http://127.0.0.1:9"], "no market address known"),
        (
            [
                *("--rpc", "http://127.0.0.1:9", "--market", "0x" + "11" * 20),
                *("--key", str(tmp_path / "none.key")),
            ],
            "none.key",
        ),
    ):
        done = subprocess.run(
            [sys.executable, "-c", probe, "provider", "run", *args],
            env={**os.environ, "REEF_HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        first, *rest = done.stdout.splitlines()
        assert first == "1 False False", done.stdout + done.stderr
        assert said in " ".join(rest)
