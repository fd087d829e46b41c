"""Fixtures for the KMS tests: deterministic root keyrings and uvicorn servers on loopback."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
)

import pytest
import uvicorn
from starlette.types import ASGIApp

from net_support import run_loop_in_thread, serve_in_thread
from reef.kms import RootKeyring, RootSeed


def counter_random(label: str) -> Callable[[int], bytes]:
    """A deterministic stand-in for os.urandom: SHA-512 of a label and a counter."""
    state = {"n": 0}

    def random(n: int) -> bytes:
        state["n"] += 1
        out = b""
        while len(out) < n:
            out += hashlib.sha512(f"{label}/{state['n']}/{len(out)}".encode()).digest()
        return out[:n]

    return random


@pytest.fixture
def keyring() -> RootKeyring:
    return RootKeyring([RootSeed(hashlib.sha512(b"reef test root v0").digest(), 0)])


@asynccontextmanager
async def serve_in_loop(app: ASGIApp) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on a free loopback port in this event loop; yield its URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def make_random() -> Callable[[str], Callable[[int], bytes]]:
    return counter_random


@pytest.fixture
def serve() -> Callable[[ASGIApp], AbstractAsyncContextManager[str]]:
    return serve_in_loop


@pytest.fixture
def serve_thread() -> Callable[[ASGIApp], AbstractContextManager[str]]:
    return serve_in_thread


@pytest.fixture
def background_loop() -> Iterator[asyncio.AbstractEventLoop]:
    with run_loop_in_thread() as loop:
        yield loop
