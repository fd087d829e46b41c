"""Helpers for end-to-end tests: `reef up` as a real process and the `reef` CLI as subprocesses,
or a `LocalNetwork` in this process (settings on free ports from :func:`up_settings`) on an event
loop of its own (:func:`network_in_thread`)."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from proc_support import stop_popen

if TYPE_CHECKING:
    from reef.node import LocalNetwork, NetworkInfo, UpSettings

_T = TypeVar("_T")

REEF = str(Path(sys.executable).with_name("reef"))
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Cli:
    """Runs `reef` commands against one home."""

    home: Path
    env: dict[str, str]

    def run(
        self, *args: str, check: bool = True, timeout: float = 180, process: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``reef ARGS``: in this process (Typer's CliRunner, fast), or with ``process``
        as a real subprocess of the console script, exactly as a user would."""
        if process:
            done = subprocess.run(
                [REEF, *args],
                env=self.env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        else:
            from typer.testing import CliRunner

            from reef.cli import app

            result = CliRunner().invoke(
                app, list(args), env={"REEF_HOME": str(self.home)}, catch_exceptions=False
            )
            done = subprocess.CompletedProcess(
                ["reef", *args], result.exit_code, result.stdout, result.stderr
            )
        if check and done.returncode != 0:
            raise AssertionError(
                f"reef {' '.join(args)} exited {done.returncode}\n"
                f"stdout: {done.stdout}\nstderr: {done.stderr}"
            )
        return done

    def json(self, *args: str, process: bool = False) -> Any:
        return json.loads(self.run(*args, "--json", process=process).stdout)


@dataclass
class Network:
    cli: Cli
    info: dict[str, Any]
    process: subprocess.Popen[str]
    reader: threading.Thread


def _read_until_ready(
    process: subprocess.Popen[str], timeout: float
) -> tuple[list[str], threading.Thread]:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        if line.strip() == "ready":
            return seen, reader
        seen.append(line)
    raise AssertionError("reef up did not print ready:\n" + "".join(seen))


CORE_ONLY = ("--no-serverless", "--no-proofs", "--no-dashboard")
"""The market tests need only the core network: each extension costs seconds and enclaves."""


def start_network(
    home: Path, extra: Sequence[str] = (), *, extensions: bool = False, rate_lock_s: int = 5
) -> Network:
    env = {**os.environ, "REEF_HOME": str(home)}
    process = subprocess.Popen(
        [
            REEF,
            "up",
            "--json",
            "--rpc-port",
            "0",
            "--cp-port",
            "0",
            "--store-port",
            "0",
            "--verifier-port",
            "0",
            "--kms-port",
            "0",
            "--kms-public-port",
            "0",
            "--dashboard-port",
            "0",
            "--rate-lock",
            str(rate_lock_s),
            *(() if extensions else CORE_ONLY),
            "--chain",
            os.environ.get("REEF_E2E_CHAIN", "devnet"),
            *extra,
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, reader = _read_until_ready(process, timeout=120)
    except BaseException:
        # SIGINT first: reef up then stops the enclaves it started; killed outright, it would
        # leave their supervisors running after the test.
        stop_popen(process, sig=signal.SIGINT, grace_s=60)
        # Close our end of the pipe now: left to the garbage collector, it is finalized during
        # some later test, whose ResourceWarning (an error under filterwarnings) then fails it.
        if process.stdout is not None:
            process.stdout.close()
        raise
    start = next(i for i, line in enumerate(output) if line.startswith("{"))
    info = json.loads("".join(output[start:]))
    return Network(Cli(home, env), info, process, reader)


def stop_network(network: Network) -> int:
    network.process.send_signal(signal.SIGINT)
    try:
        return network.process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        network.process.kill()
        network.process.wait()
        raise
    finally:
        network.reader.join(timeout=10)
        if network.process.stdout is not None:
            network.process.stdout.close()


def until(what: str, check: Callable[[], Any], timeout: float = 40.0) -> Any:
    """Call ``check`` every 0.2 s until it returns something truthy, and return that; after
    ``timeout`` seconds fail the test, naming ``what`` it waited for."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return value


def up_settings(**overrides: Any) -> UpSettings:
    """``reef up``'s settings with every port 0 (each service takes a free one, so tests can run
    side by side), then ``overrides``: any :class:`~reef.node.UpSettings` field by name."""
    from reef.node import UpSettings

    free_ports = {f.name: 0 for f in fields(UpSettings) if f.name.endswith("_port")}
    return UpSettings(**{**free_ports, **overrides})


@contextmanager
def network_in_thread(network: LocalNetwork, *, timeout: float = 300) -> Iterator[NetworkInfo]:
    """Start ``network`` on an event loop in a background thread and yield what it started.

    The tests call the network's services synchronously (CliRunner, httpx, a browser) while its
    tasks keep running on that loop; on exit the network is closed there and the loop stopped.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    try:
        yield run(network.start())
    finally:
        try:
            run(network.aclose())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
