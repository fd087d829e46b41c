"""The live log relay: the enclave's SSE lines come through as they are written, and the relay
ends when the dashboard closes even though the enclave's stream never does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

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
