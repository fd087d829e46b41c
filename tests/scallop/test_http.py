"""HTTP/1.1 over Scallop: a Starlette app served with serve_asgi, called through httpx."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from reef.attestation import image_id
from reef.errors import HandshakeError, InputError, ServiceError
from reef.scallop import (
    PeerPolicy,
    ScallopPeer,
    ScallopServer,
    ScallopTransport,
    scallop_peer,
    scallop_request,
    serve_asgi,
)

from .conftest import PCRS_A, PCRS_B, Party

pytestmark = pytest.mark.timeout(30)


def make_app(events: list[str]) -> Starlette:
    async def whoami(request: Request) -> JSONResponse:
        peer = scallop_peer(request)
        events.append("whoami")
        return JSONResponse(
            {
                "image_id": peer.image_id.hex() if peer.image_id else None,
                "auth": peer.auth,
                "static_key": peer.static_key.hex(),
                "query": dict(request.query_params),
                "path": request.url.path,
                "started": request.state.started,
            }
        )

    async def echo(request: Request) -> Response:
        body = await request.body()
        return Response(body, media_type="application/octet-stream")

    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(5):
                yield f"chunk {i}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    async def boom(request: Request) -> Response:
        raise LookupError("the app failed on purpose")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        yield {"started": True}
        events.append("shutdown")

    return Starlette(
        routes=[
            Route("/whoami/{rest:path}", whoami),
            Route("/echo", echo, methods=["POST"]),
            Route("/stream", stream),
            Route("/boom", boom),
        ],
        lifespan=lifespan,
    )


@pytest.fixture
async def enclave_server(
    make_party: Callable[..., Party], policy: PeerPolicy
) -> AsyncIterator[tuple[ScallopServer, Party, list[str]]]:
    party = make_party(PCRS_A)
    events: list[str] = []
    server = await serve_asgi(
        make_app(events),
        "127.0.0.1",
        0,
        static_key=party.secret,
        policy=policy,
        auther=party.auther(),
        max_body=100_000,
    )
    yield server, party, events
    await server.aclose()
    assert events[-1] == "shutdown"


async def test_httpx_calls_an_attested_app_and_each_side_sees_the_other(
    enclave_server: tuple[ScallopServer, Party, list[str]],
    make_party: Callable[..., Party],
    policy: PeerPolicy,
) -> None:
    server, server_party, events = enclave_server
    client_party = make_party(PCRS_B)
    transport = ScallopTransport(
        static_key=client_party.secret, policy=policy, auther=client_party.auther()
    )
    base = f"http://127.0.0.1:{server.port}"
    async with httpx.AsyncClient(transport=transport, base_url=base) as client:
        response = await client.get("/whoami/a%20b", params={"x": "1", "y": "two words"})
        assert response.status_code == 200
        body = response.json()
        assert body["image_id"] == image_id(PCRS_B).hex()  # the app sees the client's image
        assert body["static_key"] == client_party.public.hex()
        assert body["auth"] == "attested"
        assert body["query"] == {"x": "1", "y": "two words"}
        assert body["path"] == "/whoami/a b"
        assert body["started"] is True  # lifespan state reaches requests
        peer = response.extensions["scallop"]
        assert isinstance(peer, ScallopPeer)
        assert peer.image_id == server_party.image_id  # the client sees the server's image
        assert peer.static_key == server_party.public

        payload = bytes(range(256)) * 300  # 76800 bytes: more than one record
        echoed = await client.post("/echo", content=payload)
        assert echoed.content == payload

        async def generated() -> AsyncIterator[bytes]:
            for part in (b"chunked ", b"request ", b"body"):
                yield part

        chunked = await client.post("/echo", content=generated())
        assert chunked.content == b"chunked request body"

        streamed = await client.get("/stream")
        assert streamed.text == "".join(f"chunk {i}\n" for i in range(5))
    # Keep-alive: every request above went over one channel, attested once.
    assert server.accepted == 1
    assert events[0] == "startup"


async def test_app_errors_and_oversized_bodies_get_http_answers(
    enclave_server: tuple[ScallopServer, Party, list[str]],
    make_party: Callable[..., Party],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, _, _ = enclave_server
    party = make_party()
    transport = ScallopTransport(static_key=party.secret, auther=party.auther())
    async with httpx.AsyncClient(
        transport=transport, base_url=f"http://127.0.0.1:{server.port}"
    ) as client:
        with caplog.at_level(logging.ERROR, logger="reef.scallop.http"):
            failed = await client.get("/boom")
        assert failed.status_code == 500
        assert any("the app failed" in r.getMessage() for r in caplog.records)
        too_big = await client.post("/echo", content=bytes(100_001))
        assert too_big.status_code == 413
        assert (await client.get("/nowhere")).status_code == 404
        fine = await client.post("/echo", content=b"still serving")
        assert fine.content == b"still serving"


async def test_a_client_whose_policy_wants_another_image_never_reaches_the_app(
    enclave_server: tuple[ScallopServer, Party, list[str]],
    make_party: Callable[..., Party],
    dev_root: Any,
) -> None:
    server, _, events = enclave_server
    party = make_party()
    wrong = PeerPolicy(roots=[dev_root], image_ids=[image_id(PCRS_B)])
    transport = ScallopTransport(static_key=party.secret, policy=wrong, auther=party.auther())
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(HandshakeError, match="image_id"):
            await client.get(f"http://127.0.0.1:{server.port}/whoami/x")
    assert "whoami" not in events


async def test_idle_channels_closed_by_the_server_are_replaced(
    make_party: Callable[..., Party],
) -> None:
    party = make_party()
    server = await serve_asgi(
        make_app([]), "127.0.0.1", 0, static_key=party.secret, keepalive_timeout=0.2
    )
    try:
        async with httpx.AsyncClient(
            transport=ScallopTransport(), base_url=f"http://127.0.0.1:{server.port}"
        ) as client:
            assert (await client.get("/whoami/1")).status_code == 200
            await asyncio.sleep(0.5)  # the server drops the idle channel
            assert (await client.get("/whoami/2")).status_code == 200
        assert server.accepted == 2
    finally:
        await server.aclose()


async def test_plain_asgi_apps_without_lifespan_are_served(
    make_party: Callable[..., Party],
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise InputError("no lifespan here")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})

    server = await serve_asgi(app, "127.0.0.1", 0, static_key=make_party().secret)
    try:
        async with httpx.AsyncClient(transport=ScallopTransport()) as client:
            response = await client.get(f"http://127.0.0.1:{server.port}/")
            assert response.text == "plain"
    finally:
        await server.aclose()


def test_scallop_peer_needs_a_scallop_request() -> None:
    with pytest.raises(InputError, match="did not arrive over Scallop"):
        scallop_peer({"type": "http", "extensions": {}})


async def test_plain_text_response_and_head(
    make_party: Callable[..., Party],
) -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    server = await serve_asgi(
        Starlette(routes=[Route("/", hello, methods=["GET", "HEAD"])]),
        "127.0.0.1",
        0,
        static_key=make_party().secret,
    )
    try:
        async with httpx.AsyncClient(
            transport=ScallopTransport(), base_url=f"http://127.0.0.1:{server.port}"
        ) as client:
            head = await client.head("/")
            assert head.status_code == 200
            assert head.content == b""
            assert head.headers["content-length"] == "5"
            assert (await client.get("/")).text == "hello"
        assert server.accepted == 1
    finally:
        await server.aclose()


async def test_concurrent_requests_share_a_transport(make_party: Callable[..., Party]) -> None:
    async def slow(request: Request) -> PlainTextResponse:
        await asyncio.sleep(0.05)
        return PlainTextResponse(request.query_params["i"])

    server = await serve_asgi(
        Starlette(routes=[Route("/", slow)]), "127.0.0.1", 0, static_key=make_party().secret
    )
    try:
        transport = ScallopTransport(max_idle=2)
        async with httpx.AsyncClient(
            transport=transport, base_url=f"http://127.0.0.1:{server.port}"
        ) as client:
            answers = await asyncio.gather(*(client.get("/", params={"i": i}) for i in range(6)))
            assert [a.text for a in answers] == [str(i) for i in range(6)]
            assert server.accepted == 6  # one channel per concurrent request
            again = await asyncio.gather(*(client.get("/", params={"i": i}) for i in range(2)))
            assert [a.text for a in again] == ["0", "1"]
            assert server.accepted == 6  # the two idle channels kept were reused
    finally:
        await server.aclose()


async def test_scallop_request_answers_the_response_and_who_gave_it(
    enclave_server: tuple[ScallopServer, Party, list[str]],
    make_party: Callable[..., Party],
    policy: PeerPolicy,
) -> None:
    server, server_party, _ = enclave_server
    client_party = make_party(PCRS_B)
    answer = await scallop_request(
        "127.0.0.1",
        server.port,
        "/echo",
        policy=policy,
        method="POST",
        body=b"over the channel",
        static_key=client_party.secret,
        auther=client_party.auther(),
    )
    assert (answer.status, answer.body) == (200, b"over the channel")
    assert answer.headers["content-length"] == str(len(b"over the channel"))
    assert answer.peer.image_id == server_party.image_id
    assert answer.peer.static_key == server_party.public


async def test_scallop_request_names_a_server_that_does_not_answer_in_time(
    silent_server: ScallopServer,
) -> None:
    port = silent_server.port
    with pytest.raises(ServiceError, match=rf"no answer from 127.0.0.1:{port} within"):
        await scallop_request("127.0.0.1", port, policy=None, timeout_s=0.5)
