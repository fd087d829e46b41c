"""``run(..., workers=N)``: N processes accept on one socket, so a CPU-bound service (the
verifier) uses every core; one stop signal stops them all, and a worker that dies stops the rest
with an error instead of leaving a half-served port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

pytestmark = [pytest.mark.timeout(60)]

_RUN = """
import os, sys
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from reef._serve import run

async def pid(request):
    if request.query_params.get("die"):
        os._exit(3)
    return PlainTextResponse(str(os.getpid()))

try:
    run(Starlette(routes=[Route("/", pid)]), host="127.0.0.1", port=0, what="worker app",
        workers=2, ready=lambda server: print(server.url, flush=True))
except Exception as exc:
    print("failed:", exc, flush=True)
    sys.exit(1)
print("stopped", flush=True)
"""


def _start() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-c", _RUN], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def _worker_pids(url: str) -> set[int]:
    """Ask on fresh connections until both workers have answered (bounded)."""
    seen: set[int] = set()
    deadline = time.monotonic() + 20
    while len(seen) < 2 and time.monotonic() < deadline:
        with httpx.Client(timeout=10) as client:  # a new connection each time
            seen.add(int(client.get(url).text))
    return seen


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_share_the_port_and_stop_on_one_signal() -> None:
    process, url = _start()
    try:
        pids = _worker_pids(url)
        assert len(pids) == 2, "the second worker never answered"
        assert process.pid not in pids  # the parent only supervises
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out.strip().endswith("stopped")
    assert "Traceback" not in err
    assert not any(_exists(pid) for pid in pids), "a worker outlived its parent"


def test_a_worker_that_dies_stops_the_others_with_an_error() -> None:
    process, url = _start()
    try:
        pids = _worker_pids(url)
        with httpx.Client(timeout=10) as client, pytest.raises(httpx.HTTPError):
            client.get(url, params={"die": "1"})
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 1
    assert "a worker of the worker app stopped (exit code 3)" in out
    assert not any(_exists(pid) for pid in pids)
