"""A Scallop server against clients that misuse an established channel: real servers on
loopback, clients on sockets of their own (so a test can shrink their kernel buffers)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reef.attestation import DevAuthority, NitroVerifier, VerifiedAttestation
from reef.errors import HandshakeError
from reef.home import ReefHome
from reef.scallop import PeerPolicy, ScallopStream, connect, handshake_client, serve, serve_asgi
from reef.testing import wall_ms

from .conftest import Party

pytestmark = pytest.mark.timeout(60)


async def _hello(stream: ScallopStream) -> None:
    if await stream.read(64):
        await stream.send(b"hello")


async def _channel(port: int, party: Party, *, receive_buffer: int) -> ScallopStream:
    """A channel to ``port`` over a socket whose kernel receive buffer is small: what it does
    not read fills the server's side quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    return await handshake_client(reader, writer, static_key=party.secret)


async def _eventually(condition: Callable[[], bool], *, seconds: float) -> bool:
    """Whether ``condition`` holds within ``seconds`` (polled every 0.05 s)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


async def test_a_client_that_never_reads_does_not_keep_a_closed_channel(
    make_party: Callable[..., Party],
) -> None:
    """The handler writes its answer and returns, and the server closes the channel. Closing
    sends what is buffered first: a client that reads nothing kept the connection, its task
    and 16 MiB of unsent answer for ever (``open_channels`` never went down), so a few such
    clients held every channel their address may open."""

    async def answer(stream: ScallopStream) -> None:
        if await stream.read(64):
            stream.write(b"x" * (16 << 20))

    server = await serve(answer, "127.0.0.1", 0, static_key=make_party().secret)
    try:
        stream = await _channel(server.port, make_party(), receive_buffer=4096)
        try:
            await stream.send(b"go")
            assert await _eventually(lambda: server.open_channels == 1, seconds=10)
            # Dropped once its last bytes had their time to go (5 s).
            assert await _eventually(lambda: server.open_channels == 0, seconds=30)
        finally:
            stream.close()
        assert server.accepted == 1
    finally:
        await server.aclose()


# ---- a stranger that replays someone else's attestation, again and again ----


async def test_a_replayed_refused_attestation_is_not_verified_again(
    make_party: Callable[..., Party], authority: DevAuthority, tmp_path: Path
) -> None:
    """Anyone may connect to a server that asks every client to attest (a KMS root), and
    present any document: one bound to its own key but signed under a root the server does not
    accept, say (a copy of another enclave's is refused before any signature is checked:
    test_hostile.py). Refusing it took a full verification (CBOR, the COSE signature, the
    chain: milliseconds of P-384) every time, while sending it again costs the stranger a
    handshake's few X25519 operations: a tenfold lever on the server's CPU, from one connection
    after another. The same bytes for the same key are refused as before without being
    verified again."""
    verifier = NitroVerifier()
    calls: list[bytes] = []

    def counting(document: bytes, **options: Any) -> VerifiedAttestation:
        calls.append(document)
        return verifier.verify(document, **options)

    policy = PeerPolicy(roots=[authority.root], verifier=counting)
    server = await serve(
        _hello, "127.0.0.1", 0, static_key=make_party().secret, policy=policy.store(cache=False)
    )
    victim = make_party()
    stranger = make_party()
    elsewhere = DevAuthority.load_or_create(ReefHome(tmp_path / "another-root"))
    copied = elsewhere.mint(stranger.pcrs, timestamp_ms=wall_ms(), public_key=stranger.public)

    async def replay() -> bytes:
        return copied

    try:
        for _ in range(20):
            with contextlib.suppress(HandshakeError):
                stream = await connect(
                    "127.0.0.1", server.port, static_key=stranger.secret, auther=replay
                )
                await stream.aclose()
        assert await _eventually(lambda: server.refused == 20, seconds=10), server.refused
        assert len(calls) == 1, f"the same refused document was verified {len(calls)} times"
        # An enclave with its own document is still verified and served, every time.
        for _ in range(2):
            stream = await connect(
                "127.0.0.1", server.port, static_key=victim.secret, auther=victim.auther()
            )
            async with stream:
                await stream.send(b"x")
                assert await stream.read(16) == b"hello"
        assert len(calls) == 3
    finally:
        await server.aclose()


# ---- a client that announces a body and never sends it ----


async def test_a_body_that_never_comes_does_not_hold_the_app(
    make_party: Callable[..., Party],
) -> None:
    """An app reading its request body waited for it without a deadline: a client announcing
    100 bytes and sending none held the app, its channel and its task for ever (the head had
    one deadline, the body none). The body now has ``keepalive_timeout`` between reads, as a
    head has for the whole of it, and a client past it is disconnected."""
    reads: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        message = await receive()
        reads.append(message["type"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read"})

    server = await serve_asgi(
        app, "127.0.0.1", 0, static_key=make_party().secret, keepalive_timeout=0.5
    )
    try:
        stream = await _channel(server.port, make_party(), receive_buffer=1 << 16)
        try:
            await stream.send(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n")
            assert await _eventually(lambda: server.open_channels == 1, seconds=10)
            assert await _eventually(lambda: server.open_channels == 0, seconds=20)
        finally:
            stream.close()
        assert reads in ([], ["http.disconnect"])
    finally:
        await server.aclose()
