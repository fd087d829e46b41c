"""A Scallop server against clients that misuse an established channel: real servers on
loopback, clients on sockets of their own (so a test can shrink their kernel buffers)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from reef.scallop import ScallopStream, handshake_client, serve

from .conftest import Party

pytestmark = pytest.mark.timeout(60)


async def _channel(port: int, party: Party, *, receive_buffer: int) -> ScallopStream:
    """A channel to ``port`` over a socket whose kernel receive buffer is small: what it does
    not read fills the server's side quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    return await handshake_client(reader, writer, static_key=party.secret)


async def _eventually(condition: Callable[[], bool], *, seconds: float) -> bool:
    """Whether ``condition`` holds within ``seconds`` (polled every 0.05 s)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


async def test_a_client_that_never_reads_does_not_keep_a_closed_channel(
    make_party: Callable[..., Party],
) -> None:
    """The handler writes its answer and returns, and the server closes the channel. Closing
    sends what is buffered first: a client that reads nothing kept the connection, its task
    and 16 MiB of unsent answer for ever (``open_channels`` never went down), so a few such
    clients held every channel their address may open."""

    async def answer(stream: ScallopStream) -> None:
        if await stream.read(64):
            stream.write(b"x" * (16 << 20))

    server = await serve(answer, "127.0.0.1", 0, static_key=make_party().secret)
    try:
        stream = await _channel(server.port, make_party(), receive_buffer=4096)
        try:
            await stream.send(b"go")
            assert await _eventually(lambda: server.open_channels == 1, seconds=10)
            # Dropped once its last bytes had their time to go (5 s).
            assert await _eventually(lambda: server.open_channels == 0, seconds=30)
        finally:
            stream.close()
        assert server.accepted == 1
    finally:
        await server.aclose()
