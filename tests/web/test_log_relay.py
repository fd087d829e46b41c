"""The live log relay: the enclave's SSE lines come through as they are written, and the relay
ends when the dashboard closes even though the enclave's stream never does."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

from net_support import drip, raw_server
from reef._serve import serve
from reef.web._app import _relay_logs


async def test_the_relay_forwards_lines_and_ends_when_the_dashboard_closes() -> None:
    release = asyncio.Event()

    async def endless(_request: object) -> StreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            yield b"id: 1\ndata: first line\n\n"
            await release.wait()
            yield b"id: 2\ndata:second\n\n"
            await asyncio.Event().wait()  # the console stays open

        return StreamingResponse(lines(), media_type="text/event-stream")

    upstream = await serve(
        Starlette(routes=[Route("/logs", endless)]), host="127.0.0.1", port=0, what="enclave logs"
    )
    async with upstream:
        closing = asyncio.Event()
        relay = _relay_logs(f"{upstream.url}/logs", closing)
        assert await anext(relay) == b"data: first line\n\n"
        release.set()
        assert await anext(relay) == b"data: second\n\n"
        closing.set()
        rest = [chunk async for chunk in relay]  # ends instead of waiting forever
        assert rest == []


async def test_an_unreachable_console_is_one_error_event() -> None:
    relay = _relay_logs("http://127.0.0.1:9/logs", asyncio.Event())
    chunks = [chunk async for chunk in relay]
    assert len(chunks) == 1
    assert chunks[0].startswith(b"event: error\ndata: the enclave's log stream ended")


async def test_a_console_trickling_its_head_is_one_error_event() -> None:
    """A provider names a console that sends its head a byte at a time: every read comes in time,
    so the relay (and a dashboard closing behind it) waited for ever."""
    async with raw_server(drip()) as url:
        relay = _relay_logs(f"{url}/logs", asyncio.Event())
        async with asyncio.timeout(30):
            chunks = [chunk async for chunk in relay]
    assert len(chunks) == 1
    assert chunks[0].startswith(b"event: error\ndata: ")
    assert b"did not answer within" in chunks[0]


async def test_a_compressed_console_is_not_inflated() -> None:
    """A console of gzip: 64 KiB of it is 64 MiB of zeros, inflated in the dashboard's memory a
    chunk at a time."""
    bomb = gzip.compress(b"data: " + bytes(64 << 20), compresslevel=9)

    async def gzipped(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n"
            f"content-length: {len(bomb)}\r\n\r\n"
        )
        writer.write(head.encode() + bomb)
        await writer.drain()

    async with raw_server(gzipped) as url:
        chunks = [chunk async for chunk in _relay_logs(f"{url}/logs", asyncio.Event())]
    assert len(chunks) == 1
    assert chunks[0].startswith(b"event: error\ndata: ")
    assert b"gzip" in chunks[0]
