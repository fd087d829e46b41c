"""The serving floor (reef._serve): TCP_NODELAY, body/header limits, per-peer connection caps,
read deadlines, one log line per refusal, graceful stop on a signal, clear bind errors."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from reef._listen import bind
from reef._serve import Limits, Server, serve, stop_signals
from reef.errors import InputError, ServiceError
from serve.serve_support import served_script


async def _echo(request: Request) -> PlainTextResponse:
    body = await request.body()
    return PlainTextResponse(str(len(body)))


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def _peer(request: Request) -> PlainTextResponse:
    client = request.client.host if request.client else "?"
    return PlainTextResponse(f"{client} {request.url.scheme}")


async def _slow_stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for index in range(5):
            await asyncio.sleep(0.3)
            yield f"{index}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


APP = Starlette(
    routes=[
        Route("/", _hello),
        Route("/echo", _echo, methods=["POST"]),
        Route("/stream", _slow_stream),
        Route("/peer", _peer),
    ]
)

SMALL = Limits(max_body=1000, max_header=2000, read_timeout=0.5, idle_timeout=5, per_peer=3)


async def _served(limits: Limits = SMALL) -> Server:
    return await serve(APP, host="127.0.0.1", port=0, what="test app", limits=limits)


def _address(server: Server) -> tuple[str, int]:
    return server.host, server.port


async def _legit(server: Server) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(server.url + "/echo", content=b"x" * 10)
    assert answer.status_code == 200
    assert answer.text == "10"


async def _raw(server: Server, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection(*_address(server))
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return answer


async def test_listening_and_accepted_sockets_have_tcp_nodelay() -> None:
    async with await _served() as server:
        assert server.socket.proto == socket.IPPROTO_TCP
        async with httpx.AsyncClient() as client:
            assert (await client.get(server.url)).text == "ok"
            uvicorn_server = server._server
            assert uvicorn_server is not None
            connections = list(uvicorn_server.server_state.connections)
            assert connections, "the kept-alive connection is not open on the server"
            for protocol in connections:
                accepted = protocol.transport.get_extra_info("socket")  # type: ignore[attr-defined]
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_a_body_over_the_limit_gets_413_and_others_are_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="reef.serve")
    async with await _served() as server:
        async with httpx.AsyncClient() as client:
            declared = await client.post(server.url + "/echo", content=b"x" * 1001)
            assert declared.status_code == 413
            assert "1000 bytes" in declared.json()["error"]

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(5):
                    yield b"y" * 400

            streamed = await client.post(server.url + "/echo", content=chunks())
            assert streamed.status_code == 413
            exactly = await client.post(server.url + "/echo", content=b"x" * 1000)
            assert exactly.text == "1000"
        await _legit(server)
    refusals = [r for r in caplog.records if r.name == "reef.serve"]
    assert len(refusals) == 2
    assert all("413" in r.getMessage() and "test app" in r.getMessage() for r in refusals)


async def test_headers_over_the_limit_get_431() -> None:
    async with await _served() as server:
        async with httpx.AsyncClient() as client:
            answer = await client.get(server.url, headers={"x-big": "a" * 3000})
            assert answer.status_code == 431
            long_query = await client.get(server.url + "/?q=" + "a" * 3000)
            assert long_query.status_code == 431
        # Far over: h11 itself refuses the head (400) and closes; the server keeps serving.
        flood = await _raw(server, b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 20000)
        assert flood.startswith(b"HTTP/1.1 4")
        await _legit(server)


async def test_a_peer_over_its_connection_cap_gets_503() -> None:
    async with await _served() as server:
        held = [await asyncio.open_connection(*_address(server)) for _ in range(3)]
        await asyncio.sleep(0.05)
        refused = await _raw(server, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 503")
        for _, writer in held:
            writer.close()
        await asyncio.sleep(0.1)
        await _legit(server)


async def test_stalled_clients_are_dropped_and_others_served() -> None:
    async with await _served() as server:
        # Nothing at all, then half a request head: both are closed after the read deadline.
        silent = await _raw(server, b"")
        assert silent == b""
        partial = await _raw(server, b"GET / HTTP/1.1\r\nhost: x\r\n")
        assert partial == b""
        # A body that stops arriving: 408.
        stalled = await _raw(
            server, b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc"
        )
        assert stalled.startswith(b"HTTP/1.1 408")
        await _legit(server)


async def test_a_response_may_stream_longer_than_the_read_deadline() -> None:
    async with await _served() as server, httpx.AsyncClient() as client:
        # 1.5 s of streaming against a 0.5 s read deadline: the deadline is for the request.
        answer = await client.get(server.url + "/stream")
        assert answer.text == "0\n1\n2\n3\n4\n"


async def test_aclose_stops_serving_and_frees_the_port() -> None:
    server = await _served()
    port = server.port
    await _legit(server)
    await server.aclose()
    assert not server.running
    # (A closed loopback port is refused, or on some sandboxes silently dropped.)
    with pytest.raises((httpx.ConnectError, httpx.ConnectTimeout)):
        async with httpx.AsyncClient(timeout=2) as client:
            await client.get(server.url)
    again = bind("127.0.0.1", port, what="test app")
    again.close()


def test_bind_errors_are_clear() -> None:
    holder = bind("127.0.0.1", 0, what="first")
    try:
        with pytest.raises(ServiceError, match="port is in use") as caught:
            bind("127.0.0.1", holder.getsockname()[1], what="test app", hint="use --port")
        assert "test app" in str(caught.value)
        assert caught.value.hint == "use --port"
    finally:
        holder.close()
    with pytest.raises(InputError, match="between 0 and 65535"):
        bind("127.0.0.1", 70000, what="test app")


async def test_stop_signals_sets_the_event_and_restores_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_signals() as stop:
        signal.raise_signal(signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 10)
    assert signal.getsignal(signal.SIGTERM) is before


_RUN = """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route
from reef._serve import run

async def hello(request):
    return PlainTextResponse("ok")

run(Starlette(routes=[Route("/", hello)]), host="127.0.0.1", port=0, what="cli app",
    ready=lambda server: print(server.url, flush=True))
print("stopped", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_until_a_stop_signal_then_exits_cleanly(sig: signal.Signals) -> None:
    with served_script(_RUN) as (process, url):
        assert httpx.get(url, timeout=10).text == "ok"
        process.send_signal(sig)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert out.strip() == "stopped"
    assert "Traceback" not in err


class _Recorder:
    """A transport that records what is written to it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info {name}"


async def test_a_head_and_its_body_are_written_together() -> None:
    from reef._serve import _Coalescing

    recorder = _Recorder()
    transport = _Coalescing(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"")
    assert recorder.writes == []
    transport.write(b"body")
    assert recorder.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    # A write with nothing after it goes out on the loop's next turn, alone.
    transport.write(b"0\r\n\r\n")
    await asyncio.sleep(0)
    assert recorder.writes[1:] == [b"0\r\n\r\n"]
    # Closing sends what is held first; everything else is the transport's own.
    transport.write(b"last")
    transport.close()
    assert recorder.writes[2:] == [b"last"]
    assert recorder.closed
    assert transport.get_extra_info("peername") == "info peername"


async def test_kept_alive_responses_arrive_whole_and_in_order() -> None:
    async with await _served() as server:
        reader, writer = await asyncio.open_connection(*_address(server))
        for size in (0, 1, 500):
            writer.write(b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n" % size)
            writer.write(b"x" * size)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200")
            assert await reader.readexactly(len(str(size))) == str(size).encode()
        writer.close()
        answer = await _raw(server, b"GET /stream HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        # A streamed (chunked) response: every chunk, in order, then the last chunk.
        body = answer.split(b"\r\n\r\n", 1)[1]
        assert body == b"".join(b"2\r\n%d\n\r\n" % index for index in range(5)) + b"0\r\n\r\n"


async def test_an_app_sees_the_peer_it_talks_to_not_one_a_header_claims() -> None:
    # uvicorn by default believes X-Forwarded-For/-Proto from a loopback peer. No reef server
    # stands behind a proxy, and through pasta a dev enclave's clients reach its servers from
    # loopback: any client could then name its own address, in logs and in the dashboard's
    # "local caller" check.
    async with await _served() as server, httpx.AsyncClient() as client:
        forged = {"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"}
        answer = await client.get(server.url + "/peer", headers=forged)
    assert answer.text == "127.0.0.1 http"
