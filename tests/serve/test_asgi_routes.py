"""LightApi.add_asgi_route: a bare ASGI route answers before the router, is described in
/openapi.json like any other route, and leaves other methods, other paths and mounted apps to the
router (the attestation verifier's two routes are such routes)."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount

from reef._api import LightApi, light_api
from reef._serve import Guard, Limits, _default_refusal, _Metrics


def _app() -> LightApi:
    app = light_api("test")

    async def echo(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        body = b"%s %s %s" % (scope["method"].encode(), scope["path"].encode(), message["body"])
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def hello(_request: Request) -> Response:
        return PlainTextResponse("hello")

    app.add_asgi_route("/echo", echo, methods=["POST"], summary="Echo the body")
    app.add_api_route("/hello", hello, methods=["GET"])
    return app


async def _client(app: Any, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", **kwargs)


async def test_the_route_answers_and_the_rest_goes_to_the_router() -> None:
    async with await _client(_app()) as client:
        answer = await client.post("/echo", content=b"body")
        assert (answer.status_code, answer.text) == (200, "POST /echo body")
        assert (await client.get("/hello")).text == "hello"
        wrong = await client.get("/echo")
        assert wrong.status_code == 405
        assert wrong.json() == {"error": "Method Not Allowed"}
        assert (await client.post("/echo/")).status_code in (307, 404)
        assert (await client.post("/nowhere")).status_code == 404


async def test_it_is_described_with_its_options() -> None:
    async with await _client(_app()) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths) == {"/echo", "/hello"}
    assert set(paths["/echo"]) == {"post"}
    assert paths["/echo"]["post"]["summary"] == "Echo the body"
    assert paths["/echo"]["post"]["operationId"].startswith("echo")


async def test_a_mounted_app_routes_it_through_the_router() -> None:
    outer = Starlette(routes=[Mount("/inner", app=_app())])
    async with await _client(outer) as client:
        answer = await client.post("/inner/echo", content=b"x")
    assert answer.status_code == 200
    assert answer.text.endswith(" x")


async def test_the_floor_counts_it_by_its_route() -> None:
    app = _app()
    metrics = _Metrics("test", app)
    guarded = Guard(app, "test", Limits(), _default_refusal, metrics)
    async with await _client(guarded) as client:
        for _ in range(3):
            assert (await client.post("/echo", content=b"x")).status_code == 200
        text = (await client.get("/metrics")).text
    assert 'route="/echo",service="test",status="200"} 3.0' in text
