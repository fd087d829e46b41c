"""Fixtures of the dashboard tests: a headless Chromium (Playwright), apps served in a thread,
and where screenshots go (``--screenshots DIR``, else pytest's temporary directory)."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

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
