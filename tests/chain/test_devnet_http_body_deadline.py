"""The serving floor's body read deadline on the devnet's endpoint: a request whose body is all in
when the app reads it is answered without arming one (the timer cost a few microseconds of every
request), and a body still on its way is read under one, as before. (A body that stops arriving
is answered 408: tests/serve/test_floor.py.)"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from reef.chain import Devnet, serve_devnet_in_thread


@pytest.fixture
def deadlines(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """The delays of the ``asyncio.timeout`` contexts entered from now on, in any thread."""
    entered: list[float | None] = []
    real = asyncio.timeout
    lock = threading.Lock()

    def counted(delay: float | None) -> Any:
        with lock:
            entered.append(delay)
        return real(delay)

    monkeypatch.setattr(asyncio, "timeout", counted)
    return entered


@pytest.fixture
def endpoint() -> Iterator[tuple[str, int]]:
    with Devnet() as devnet, serve_devnet_in_thread(devnet) as server:
        yield "127.0.0.1", server.port


def _request(body: bytes) -> tuple[bytes, bytes]:
    head = (
        b"POST / HTTP/1.1\r\nhost: devnet\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % len(body)
    )
    return head, body


def _answer(sock: socket.socket) -> dict[str, Any]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200")
    answer: dict[str, Any] = json.loads(rest)
    return answer


def test_a_body_all_in_is_read_without_a_deadline_and_one_on_its_way_with_one(
    endpoint: tuple[str, int], deadlines: list[float | None]
) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}).encode()
    head, body = _request(body)
    with socket.create_connection(endpoint, timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head + body)
        assert _answer(sock)["result"] == "0x7a69"
        assert deadlines == []

        # The head first, the body once the app waits for it (under a deadline).
        sock.sendall(head)
        waited = time.monotonic() + 10
        while not deadlines and time.monotonic() < waited:
            time.sleep(0.01)
        sock.sendall(body)
        assert _answer(sock)["result"] == "0x7a69"
        assert len(deadlines) == 1
        assert deadlines[0] is not None
        assert deadlines[0] > 0
