"""The serving floor's timeouts on kept-alive connections, as its httptools protocol keeps
them: an idle connection is closed after ``idle_timeout``; once a request has been answered,
the next one's head still has ``read_timeout`` to arrive, whether it is half sent or only
blank lines; and a request answered in time keeps the connection open."""

from __future__ import annotations

import asyncio
import socket

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from reef._serve import Limits, Server, serve


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


APP = Starlette(routes=[Route("/", _hello)])
# A read deadline shorter than the idle timeout: a connection left idle between requests for
# longer than the read deadline must stay open (the deadline is for a request's head only).
LIMITS = Limits(read_timeout=0.5, idle_timeout=1, per_peer=8)
REQUEST = b"GET / HTTP/1.1\r\nhost: t\r\n\r\n"


async def _served() -> Server:
    return await serve(APP, host="127.0.0.1", port=0, what="keep-alive test", limits=LIMITS)


async def _answered(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection on which one request has been answered, kept alive."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    writer.write(REQUEST)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200")
    assert b"connection: close" not in head.lower()
    assert await asyncio.wait_for(reader.readexactly(2), 10) == b"ok"
    return reader, writer


async def _closed_by_the_server(reader: asyncio.StreamReader) -> None:
    """Wait for the server to close the connection (its EOF, with nothing more sent)."""
    assert await asyncio.wait_for(reader.read(), 30) == b""


async def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() -> None:
    async with await _served() as server:
        reader, writer = await _answered(server)
        await _closed_by_the_server(reader)
        writer.close()


async def test_the_next_head_has_the_read_deadline_after_a_response() -> None:
    async with await _served() as server:
        reader, writer = await _answered(server)
        writer.write(b"GET / HTTP/1.1\r\nhost:")  # half a head, then silence
        await _closed_by_the_server(reader)
        writer.close()


async def test_blank_lines_between_requests_do_not_hold_a_connection_open() -> None:
    # A client sending only line ends after a response: the idle timer is off once bytes come,
    # so the read deadline must close the connection.
    async with await _served() as server:
        reader, writer = await _answered(server)
        writer.write(b"\r\n")
        await _closed_by_the_server(reader)
        writer.close()


async def test_requests_within_the_timeouts_share_one_connection() -> None:
    async with await _served() as server:
        reader, writer = await _answered(server)
        for _ in range(3):
            await asyncio.sleep(LIMITS.read_timeout * 1.2)  # idle, longer than the read deadline
            writer.write(REQUEST)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200")
            assert await asyncio.wait_for(reader.readexactly(2), 10) == b"ok"
        writer.close()
