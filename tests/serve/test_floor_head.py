"""The serving floor's bound on request heads, now that its parser (httptools) has none of its
own: an incomplete head is counted across reads and refused with 431 past four times
``max_header``; heads split across many packets, kept-alive and pipelined requests are parsed
whole and never refused for the bytes of other requests; an Upgrade is answered and closed."""

from __future__ import annotations

import asyncio
import logging
import socket

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from reef._serve import Limits, Server, serve


async def _header(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.headers.get("x-fill", "-"))


async def _echo(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(len(await request.body())))


APP = Starlette(routes=[Route("/", _header), Route("/echo", _echo, methods=["POST"])])
LIMITS = Limits(max_body=100_000, max_header=2000, read_timeout=5, idle_timeout=5, per_peer=8)
CAP = 4 * LIMITS.max_header  # what an incomplete head may reach before the floor refuses it


async def _served() -> Server:
    return await serve(APP, host="127.0.0.1", port=0, what="head test", limits=LIMITS)


async def _connect(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def _trickle(writer: asyncio.StreamWriter, data: bytes, piece: int) -> None:
    """Send ``data`` in ``piece``-byte writes, each flushed before the next (separate packets
    on loopback with TCP_NODELAY, so the server reads them one by one)."""
    for start in range(0, len(data), piece):
        writer.write(data[start : start + piece])
        await writer.drain()
        await asyncio.sleep(0.0005)


async def _response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One response's head and its body (responses here always carry content-length)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await asyncio.wait_for(reader.readexactly(length), 30)


async def _still_serving(server: Server) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.get(server.url, headers={"x-fill": "fine"})
    assert answer.status_code == 200
    assert answer.text == "fine"


async def test_a_head_split_across_many_packets_is_parsed_whole() -> None:
    value = "v" * 1500
    request = f"GET / HTTP/1.1\r\nhost: t\r\nx-fill: {value}\r\n\r\n".encode()
    async with await _served() as server:
        reader, writer = await _connect(server)
        await _trickle(writer, request, 7)
        head, body = await _response(reader)
        assert head.startswith(b"HTTP/1.1 200")
        assert body == value.encode()
        writer.close()


async def test_an_incomplete_head_past_the_bound_gets_431_one_log_line_and_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="reef.serve")
    # Headers that never end, sent in 400-byte packets until just past the bound, then nothing.
    flood = b"GET / HTTP/1.1\r\nhost: t\r\n" + b"x-fill: " + b"a" * (CAP + 100)
    async with await _served() as server:
        reader, writer = await _connect(server)
        await _trickle(writer, flood, 400)
        answer = await asyncio.wait_for(reader.read(), 30)  # until the server closes
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431")
        assert b"connection: close" in head.lower()
        assert httpx.Response(431, content=body).json() == {
            "error": f"request headers over {LIMITS.max_header} bytes"
        }
        await _still_serving(server)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(server.url + "/metrics")).text
    assert 'reef_http_refusals_total{service="head test",status="431"} 1.0' in metrics
    refusals = [r.getMessage() for r in caplog.records if r.name == "reef.serve"]
    assert len(refusals) == 1
    assert "head test" in refusals[0]
    assert "431" in refusals[0]


async def test_a_long_request_line_alone_is_bounded_too() -> None:
    # The bytes of an unfinished URL count as head bytes like any header's.
    async with await _served() as server:
        reader, writer = await _connect(server)
        await _trickle(writer, b"GET /" + b"p" * (CAP + 100), 500)
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 431")
        await _still_serving(server)


async def test_a_complete_head_over_max_header_gets_431_below_the_bound() -> None:
    # Complete, over max_header but under the incomplete-head bound: the exact count refuses it.
    async with await _served() as server, httpx.AsyncClient() as client:
        answer = await client.get(server.url, headers={"x-fill": "a" * (LIMITS.max_header + 10)})
        assert answer.status_code == 431
        await _still_serving(server)


async def test_kept_alive_heads_are_counted_one_at_a_time() -> None:
    # 20 trickled heads of about 1 KB on one connection: far more than the bound together,
    # each well under max_header, so each is answered.
    async with await _served() as server:
        reader, writer = await _connect(server)
        for index in range(20):
            value = f"{index:04d}" + "k" * 1000
            request = f"GET / HTTP/1.1\r\nhost: t\r\nx-fill: {value}\r\n\r\n".encode()
            await _trickle(writer, request, 300)
            head, body = await _response(reader)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert body == value.encode()
        writer.close()


async def test_pipelined_bodies_are_not_counted_as_head_bytes() -> None:
    # Each write holds the tail of a large body, then the start of the next request's head: the
    # head counter must not take the body's bytes for head bytes.
    body = b"b" * (3 * CAP)
    post = b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n" % len(body)
    get = b"GET / HTTP/1.1\r\nhost: t\r\nx-fill: after\r\n\r\n"
    async with await _served() as server:
        reader, writer = await _connect(server)
        stream = (post + body) * 3 + get
        # Cut so that every cut after the first lands inside a body, with a head begun after it.
        await _trickle(writer, stream, len(post) + len(body) + len(get) // 2)
        for _ in range(3):
            head, answer = await _response(reader)
            assert head.startswith(b"HTTP/1.1 200")
            assert answer == str(len(body)).encode()
        head, answer = await _response(reader)
        assert head.startswith(b"HTTP/1.1 200")
        assert answer == b"after"
        writer.close()


async def test_an_upgrade_is_answered_as_plain_http_and_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="reef.serve")
    request = (
        b"GET / HTTP/1.1\r\nhost: t\r\nx-fill: up\r\nconnection: upgrade\r\n"
        b"upgrade: websocket\r\n\r\n"
    )
    async with await _served() as server:
        reader, writer = await _connect(server)
        writer.write(request)
        answer = await asyncio.wait_for(reader.read(), 30)  # closed, not left to idle
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"connection: close" in head.lower()
        assert body == b"up"
        await _still_serving(server)
    lines = [r.getMessage() for r in caplog.records if r.name == "reef.serve"]
    assert len(lines) == 1
    assert "Upgrade" in lines[0]
