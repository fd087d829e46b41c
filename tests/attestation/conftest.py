"""Shared fixtures for the attestation tests: ASGI apps served over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from starlette.applications import Starlette

from net_support import serve_in_thread


@pytest.fixture(scope="session")
def serve() -> Callable[[Starlette], AbstractContextManager[str]]:
    """``with serve(app) as url:`` runs ``app`` under uvicorn in a thread for the block."""
    return serve_in_thread
