"""`reef scallop call` against a server that wants the client to attest names the CLI's flags,
not the Python API's ``auther=`` (issue 12, item 7)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from typer.testing import CliRunner

from reef.attestation import DevAuthority, TrustedRoot
from reef.cli import app
from reef.home import ReefHome
from reef.scallop import PeerPolicy, serve_asgi


async def _hello(_request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


@pytest.fixture
def picky_server() -> Iterator[tuple[int, str]]:
    """A Scallop server that asks every client for a dev-TEE attestation; (port, its key hex)."""
    home = ReefHome.from_env()
    DevAuthority.load_or_create(home)
    secret = os.urandom(32)
    public = X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw().hex()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []
    stop = asyncio.Event()

    async def main() -> None:
        server = await serve_asgi(
            Starlette(routes=[Route("/hello", _hello)]),
            "127.0.0.1",
            0,
            static_key=secret,
            policy=PeerPolicy(roots=[TrustedRoot.dev(home)]),
        )
        port.append(server.port)
        ready.set()
        await stop.wait()
        await server.aclose()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield port[0], public
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_a_server_asking_for_our_attestation_gets_a_cli_hint(
    picky_server: tuple[int, str],
) -> None:
    port, key = picky_server
    done = CliRunner().invoke(app, ["scallop", "call", f"127.0.0.1:{port}", "/hello", "--pin", key])
    assert done.exit_code == 1, done.output
    assert "auther" not in done.stderr
    assert "--attestation-url" in done.stderr
    assert "--key" in done.stderr
