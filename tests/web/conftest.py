"""Fixtures of the dashboard tests: a headless Chromium (Playwright), apps served in a thread,
and where screenshots go (``--screenshots DIR``, else pytest's temporary directory)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from reef.home import ReefHome

CHROMIUM = os.environ.get("REEF_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        default=None,
        help="directory for the dashboard tests' page screenshots (default: pytest's tmp dir)",
    )


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


BROWSER_MISSING = _browser_missing()
requires_browser = pytest.mark.skipif(BROWSER_MISSING is not None, reason=BROWSER_MISSING or "")


@pytest.fixture(scope="session")
def screenshots(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = request.config.getoption("--screenshots")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


# Module scope: Playwright's sync API runs an event loop in the main thread while it is open,
# which the asyncio tests of other modules must not meet.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if BROWSER_MISSING is not None:
        pytest.skip(BROWSER_MISSING)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def served(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` on reef's serving floor (with /metrics) in a thread; yield its URL."""
    from reef._serve import serve

    ready = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        async def run() -> None:
            server = await serve(app, host=host, port=0, what="test dashboard")
            box["url"], box["stop"] = server.url, asyncio.Event()
            ready.set()
            await box["stop"].wait()
            await server.aclose()

        box["loop"] = loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(run())
        finally:
            loop.close()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(20), "the dashboard did not start"
    try:
        yield str(box["url"])
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(20)


@pytest.fixture(scope="session")
def serve_in_thread() -> Any:
    """:func:`served`, for tests (a context manager: ``with serve_in_thread(app) as url``)."""
    return served


class StrangerServer:
    """A stranger's HTTP server on loopback: ``routes[path](query) -> (status, content type,
    body bytes or an iterator of chunks)``; ``hits`` counts the requests per path. Chunked
    answers are close-delimited, so one may trickle or never end (``stop`` ends them)."""

    def __init__(self, routes: dict[str, Any] | None = None) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        self.routes: dict[str, Any] = dict(routes or {})
        self.hits: dict[str, int] = {}
        self.stop = threading.Event()
        stranger = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                stranger.hits[parts.path] = stranger.hits.get(parts.path, 0) + 1
                route = stranger.routes.get(parts.path)
                if route is None:
                    self.send_error(404)
                    return
                status, kind, body = route({k: v[0] for k, v in parse_qs(parts.query).items()})
                self.send_response(status)
                self.send_header("content-type", kind)
                if isinstance(body, bytes):
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_header("connection", "close")
                self.end_headers()
                with contextlib.suppress(OSError):
                    for chunk in body:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stranger() -> Iterator[StrangerServer]:
    """A :class:`StrangerServer` with no routes yet, closed after the test."""
    server = StrangerServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def stranger_server() -> type[StrangerServer]:
    """The :class:`StrangerServer` class, for module-scoped fixtures."""
    return StrangerServer


def _network_home(directory: Path, **fields: Any) -> ReefHome:
    """A home in ``directory`` whose network.json has ``fields`` (``verifier=URL``,
    ``kms={...}``, ``services={...}``); its chain, control plane and store are closed ports."""
    from reef.chain import Deployment
    from reef.node import NetworkInfo

    zero = "0x" + "00" * 20
    home = ReefHome(directory)
    NetworkInfo(
        rpc_url="http://127.0.0.1:9",
        chain_id=31337,
        deployment=Deployment(chain_id=31337, block=1, token=zero, market=zero, kms_registry=zero),
        rate_lock_s=5,
        provider=zero,
        control_plane="http://127.0.0.1:9",
        image_store="http://127.0.0.1:9",
        **fields,
    ).dump(home)
    return home


@pytest.fixture(scope="session")
def network_home() -> Any:
    """``network_home(directory, **fields) -> ReefHome``: a home whose network.json names
    these services and closed ports for the rest (the pages that read network.json)."""
    return _network_home
