"""Every reef API's ``/docs`` page needs nothing but the API itself (no CDN), from one place.

In-process (``httpx.ASGITransport``): a FastAPI app (:func:`reef._api.api_app`), a light API
(:func:`reef._api.light_api`) and the attestation verifier's. The page may name only its own
API's files, each of which it serves; its Content-Security-Policy allows its inline script by
hash and nothing from elsewhere. The browser test that the page renders is
``tests/web/test_docs_page.py``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount

from reef._api import DOCS_ASSETS, api_app, light_api


async def _hello(_request: Request) -> Response:
    return PlainTextResponse("hello")


def _fastapi() -> Any:
    app = api_app("a FastAPI app")
    app.add_api_route("/hello", _hello, methods=["GET"])
    return app


def _light() -> Any:
    app = light_api("a light API")
    app.add_api_route("/hello", _hello, methods=["GET"])
    return app


def _verifier() -> Any:
    from reef.attestation import TrustedRoot, verifier_app
    from reef.crypto import Secp256k1PrivateKey

    return verifier_app(Secp256k1PrivateKey.generate(), root=TrustedRoot.mock())


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


@pytest.mark.parametrize("factory", [_fastapi, _light, _verifier], ids=lambda f: f.__name__[1:])
async def test_the_docs_page_names_only_its_own_files(factory: Any) -> None:
    async with _client(factory()) as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        html = page.text
        assert "http://" not in html
        assert "https://" not in html  # no CDN, no validator badge
        named = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sorted(named) == [
            f"{DOCS_ASSETS}/favicon.png",
            f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            f"{DOCS_ASSETS}/swagger-ui.css",
        ]
        kinds = {}
        for url in named:
            asset = await http.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000, url
            kinds[url.rsplit(".", 1)[1]] = asset.headers["content-type"].split(";")[0]
        assert kinds == {"png": "image/png", "js": "text/javascript", "css": "text/css"}
        bundle = (await http.get(f"{DOCS_ASSETS}/swagger-ui-bundle.js")).text
        assert "SwaggerUIBundle" in bundle
        assert (await http.get("/openapi.json")).json()["openapi"].startswith("3.1")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    scripts = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}';" in policy
    assert "unsafe-eval" not in policy
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]


@pytest.mark.parametrize("factory", [_fastapi, _light], ids=["fastapi", "light"])
async def test_only_the_pages_files_are_served(factory: Any) -> None:
    async with _client(factory()) as http:
        for name in ("index.html", "redoc.standalone.js", "core.py", "..%2F__init__.py", ""):
            answer = await http.get(f"{DOCS_ASSETS}/{name}")
            assert answer.status_code == 404, name
        assert (await http.get(f"{DOCS_ASSETS}/core.py")).json()["error"].startswith("no docs")
        assert (await http.get("/hello")).text == "hello"


async def test_a_mounted_api_names_its_files_under_its_mount() -> None:
    outer = Starlette(routes=[Mount("/inner", app=_light())])
    async with _client(outer) as http:
        html = (await http.get("/inner/docs")).text
        assert f'src="/inner{DOCS_ASSETS}/swagger-ui-bundle.js"' in html
        assert "url: '/inner/openapi.json'" in html
        assert (await http.get(f"/inner{DOCS_ASSETS}/swagger-ui.css")).status_code == 200


def test_a_light_api_serves_the_files_without_fastapi() -> None:
    # The enclaves' light APIs import FastAPI only for the page and its schema, not for files,
    # and importing reef._api loads no Swagger UI package at all.
    code = """
import sys, asyncio, httpx
from reef._api import DOCS_ASSETS, light_api
assert "fastapi_offline" not in sys.modules
async def main():
    transport = httpx.ASGITransport(app=light_api("t"))
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
        assert (await http.get(DOCS_ASSETS + "/swagger-ui.css")).status_code == 200
asyncio.run(main())
print(sorted(m for m in ("fastapi", "fastapi_offline", "pydantic") if m in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("factory", [_fastapi, _light, _verifier], ids=lambda f: f.__name__[1:])
async def test_no_second_docs_page_loads_from_a_cdn(factory: Any) -> None:
    # FastAPI's /redoc loaded ReDoc from cdn.jsdelivr.net: blank offline, and a second page
    # describing the same schema. /docs is the one page.
    async with _client(factory()) as http:
        page = await http.get("/redoc")
        assert page.status_code == 404
        assert "cdn" not in page.text
