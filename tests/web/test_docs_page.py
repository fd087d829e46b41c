"""Every reef API's ``/docs`` page renders in a real browser on a machine without internet.

Headless Chromium opens ``/docs`` of the dashboard (a FastAPI app under its own
Content-Security-Policy) and of the attestation verifier (a light API) with every request to
another origin refused, as on a host without internet, and must see the operations listed
(Swagger UI's ``.opblock`` elements). Before the assets were served by reef itself the page
loaded them from a CDN and stayed blank.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from reef.home import ReefHome


def _dashboard(tmp: Path) -> Any:
    from reef.web import Dashboard, DashboardSettings, dashboard_app

    return dashboard_app(Dashboard(DashboardSettings(home=ReefHome(tmp), token="t")))


def _verifier(_tmp: Path) -> Any:
    from reef.attestation import TrustedRoot, verifier_app
    from reef.crypto import Secp256k1PrivateKey

    return verifier_app(Secp256k1PrivateKey.generate(), root=TrustedRoot.mock())


@pytest.fixture(params=[_dashboard, _verifier], ids=["dashboard", "verifier"])
def docs_url(request: pytest.FixtureRequest, tmp_path: Path, serve_in_thread: Any) -> Iterator[str]:
    factory: Callable[[Path], Any] = request.param
    with serve_in_thread(factory(tmp_path)) as url:
        yield f"{url}/docs"


def test_docs_render_the_operations_offline(
    browser: Any, docs_url: str, screenshots: Path, request: pytest.FixtureRequest
) -> None:
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(docs_url))
    elsewhere: list[str] = []
    problems: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:

        def offline(route: Any) -> None:
            # No internet here or on many enclaves' hosts: anything not from the API is refused.
            if route.request.url.startswith(origin + "/"):
                route.continue_()
            else:
                elsewhere.append(route.request.url)
                route.abort()

        page.route("**/*", offline)
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        response = page.goto(docs_url)
        assert response is not None
        assert response.status == 200
        page.wait_for_selector(".opblock", timeout=20_000)
        assert page.locator(".opblock").count() >= 2
        page.screenshot(path=str(screenshots / f"docs-{request.node.callspec.id}.png"))
    finally:
        page.close()
    assert elsewhere == []
    # A script or style the page's Content-Security-Policy refused would be reported here.
    assert [p for p in problems if "Content Security Policy" in p] == []
