"""``run(..., workers=N)``: N processes accept on the port, each its share of the connections, so
a CPU-bound service (the verifier) uses every core; one stop signal stops them all, and a worker that dies stops the rest
with an error instead of leaving a half-served port."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter
from urllib.parse import urlsplit

import httpx
import pytest

from serve.serve_support import served_script

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
    with served_script(_RUN) as (process, url):
        pids = _worker_pids(url)
        assert len(pids) == 2, "the second worker never answered"
        assert process.pid not in pids  # the parent only supervises
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert out.strip().endswith("stopped")
    assert "Traceback" not in err
    assert not any(_exists(pid) for pid in pids), "a worker outlived its parent"


def test_a_worker_that_dies_stops_the_others_with_an_error() -> None:
    with served_script(_RUN) as (process, url):
        pids = _worker_pids(url)
        with httpx.Client(timeout=10) as client, pytest.raises(httpx.HTTPError):
            client.get(url, params={"die": "1"})
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "a worker of the worker app stopped (exit code 3)" in out
    assert not any(_exists(pid) for pid in pids)


def _answering_pid(conn: socket.socket) -> int:
    conn.sendall(b"GET / HTTP/1.1\r\nHost: workers\r\n\r\n")
    received = b""
    while b"\r\n\r\n" not in received:
        received += conn.recv(4096)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(next(
        line.split(b":", 1)[1] for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    ))  # fmt: skip
    while len(body) < length:
        body += conn.recv(4096)
    return int(body)


def test_a_burst_of_kept_alive_connections_is_shared_between_the_workers() -> None:
    """100 connections opened at once (a load generator's start) land on both workers in fair
    shares; they once landed 12/94 by which worker woke first, and the busy one set the p99."""
    with served_script(_RUN) as (process, url):
        parts = urlsplit(url)
        conns: list[socket.socket] = []
        try:
            for _ in range(100):
                conn = socket.create_connection((parts.hostname, parts.port), timeout=10)
                conns.append(conn)
            shares = Counter(_answering_pid(conn) for conn in conns)
        finally:
            for conn in conns:
                conn.close()
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=30)
    assert len(shares) == 2, f"one worker took every connection: {shares}"
    assert min(shares.values()) >= 25, f"an unfair split: {sorted(shares.values())}"
