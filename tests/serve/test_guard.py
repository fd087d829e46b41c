"""The floor's request guard on its own (in process): the URI limit (414), the request deadline
(503), and refusals of another media type, as the KMS apps use them (kms._http.kms_guard)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from asgi_support import call_asgi
from reef._serve import Guard, Limits


async def _fast(_: Request) -> Response:
    return Response(b"ok")


async def _slow(_: Request) -> Response:
    await asyncio.sleep(5)
    return Response(b"late")


async def _stalls_midway(_: Request) -> Response:
    async def parts() -> Any:
        yield b"first"
        await asyncio.sleep(5)
        yield b"never"

    return StreamingResponse(parts())


async def _own_timeout(_: Request) -> Response:
    raise TimeoutError("the app's own, not the guard's")


_APP = Starlette(
    routes=[
        Route("/", _fast),
        Route("/slow", _slow),
        Route("/stalls", _stalls_midway),
        Route("/own", _own_timeout),
    ]
)


def _client(limits: Limits, **options: Any) -> httpx.AsyncClient:
    guard = Guard(_APP, "test", limits, **options)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="http://t")


async def test_uris_over_max_uri_are_refused_414() -> None:
    async with _client(Limits(max_uri=100)) as http:
        assert (await http.get("/?q=" + "x" * 90)).status_code == 200
        refused = await http.get("/?q=" + "x" * 100)
    assert refused.status_code == 414
    assert refused.json() == {"error": "request URI too long"}
    # Without max_uri only max_header bounds a URI.
    async with _client(Limits()) as http:
        assert (await http.get("/?q=" + "x" * 5000)).status_code == 200


async def test_a_request_past_its_deadline_is_answered_503() -> None:
    async with _client(Limits(request_timeout=0.2)) as http:
        late = await http.get("/slow")
        fast = await http.get("/")
    assert late.status_code == 503
    assert late.json() == {"error": "request timed out"}
    assert (fast.status_code, fast.content) == (200, b"ok")


async def test_a_response_begun_before_the_deadline_is_cut_short() -> None:
    # Called as ASGI directly: httpx's in-process transport insists on a complete response.
    guard = Guard(_APP, "test", Limits(request_timeout=0.2))
    sent = await call_asgi(guard, [b""], method="GET", path="/stalls")
    assert [m["type"] for m in sent][:2] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 200  # no 503 after a begun response
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"first"
    assert all(m.get("more_body", False) for m in sent[1:])  # never completed


async def test_an_apps_own_timeout_error_is_not_the_deadline() -> None:
    async with _client(Limits(request_timeout=5)) as http:
        with pytest.raises(TimeoutError, match="the app's own"):
            await http.get("/own")


async def test_refusals_carry_the_media_type_they_are_given() -> None:
    async with _client(
        Limits(max_uri=10),
        refusal=lambda status, reason: f"{status} {reason}\n".encode(),
        media_type="text/plain; charset=utf-8",
    ) as http:
        refused = await http.get("/?q=" + "x" * 20)
    assert refused.status_code == 414
    assert refused.headers["content-type"] == "text/plain; charset=utf-8"
    assert refused.text == "414 request URI too long\n"
