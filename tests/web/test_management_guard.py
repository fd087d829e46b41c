"""Management is refused without the token, with a wrong one, and whenever the dashboard does
not listen on loopback — before any body is read or the chain is touched (no network runs here:
a request that got past the guard would fail on the missing network instead)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from reef.home import ReefHome
from reef.web import TOKEN_HEADER, Dashboard, DashboardSettings, dashboard_app, is_loopback


def test_loopback_names() -> None:
    for host in ("127.0.0.1", "::1", "[::1]", "localhost", "127.5.5.5"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "10.0.0.1", "example.com", "::"):
        assert not is_loopback(host), host


@pytest.mark.parametrize(
    ("host", "token", "status"),
    [
        ("127.0.0.1", None, 401),
        ("127.0.0.1", "wrong", 401),
        ("0.0.0.0", "the-token", 403),
    ],
)
def test_state_changing_requests_are_refused(
    serve_in_thread: Any, tmp_path: Any, host: str, token: str | None, status: int
) -> None:
    dash = Dashboard(DashboardSettings(home=ReefHome(tmp_path), host=host, token="the-token"))
    headers = {TOKEN_HEADER: token} if token else {}
    with serve_in_thread(dashboard_app(dash)) as url:
        for path in ("/api/jobs/1/stop", "/api/jobs/1/deposit", "/api/deploy", "/api/token"):
            answer = httpx.post(f"{url}{path}", json={"amount": "1"}, headers=headers, timeout=10)
            assert answer.status_code == status, (path, answer.text)
        # With the right token on loopback the guard lets it through (to the missing network).
        if host == "127.0.0.1":
            ok = httpx.post(f"{url}/api/token", headers={TOKEN_HEADER: "the-token"}, timeout=10)
            assert ok.status_code == 200
            went_on = httpx.post(
                f"{url}/api/jobs/1/stop", headers={TOKEN_HEADER: "the-token"}, timeout=10
            )
            assert went_on.status_code == 400
            assert "no chain endpoint" in went_on.json()["error"]
        # Read-only pages need no token, and say what is missing instead of failing.
        overview = httpx.get(url, timeout=10)
        assert overview.status_code == 200
        assert "no chain endpoint" in overview.text
        # No inline script runs, the page is never framed, and it never sends a Referer.
        assert "script-src" not in overview.headers["content-security-policy"]
        assert "default-src 'self'" in overview.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in overview.headers["content-security-policy"]
        assert overview.headers["referrer-policy"] == "no-referrer"
        assert overview.headers["x-frame-options"] == "DENY"
        # DNS rebinding: a loopback dashboard answers only loopback host names.
        port = url.rsplit(":", 1)[1]
        for name, status in (
            ("evil.example", 403 if host == "127.0.0.1" else 200),
            (f"localhost:{port}", 200),
            (f"127.0.0.1:{port}", 200),
        ):
            answer = httpx.get(f"{url}/verifier", headers={"host": name}, timeout=10)
            assert answer.status_code == status, name


def test_extension_services_render_generically_without_the_token(
    serve_in_thread: Any, tmp_path: Any, network_home: Any
) -> None:
    home = network_home(
        tmp_path,
        services={
            "proofs": {
                "engine": "http://127.0.0.1:7001",
                "markets": [{"id": 1, "name": "poseidon"}],
            },
            "dashboard": {"url": "http://127.0.0.1:8888", "manage_url": "http://x/?token=SECRET1"},
        },
    )
    dash = Dashboard(DashboardSettings(home=home, token="SECRET1"))
    with serve_in_thread(dashboard_app(dash)) as url:
        page = httpx.get(f"{url}/services/proofs", timeout=10).text
        assert '<a class="mono" href="http://127.0.0.1:7001">' in page
        assert "poseidon" in page
        assert 'href="/services/proofs"' in page  # in the navigation of every page
        assert 'href="/services/dashboard"' not in page
        for path in ("/services/proofs", "/services/dashboard", "/verifier", "/api/overview"):
            assert "SECRET1" not in httpx.get(f"{url}{path}", timeout=10).text, path
        assert "no service dashboard" in httpx.get(f"{url}/services/dashboard", timeout=10).text
