"""Scallop peers that behave as hostile strangers: a server whose answer never ends, or is a
compression bomb; real Scallop servers on loopback, reef's own client."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kms.conftest import serve_in_loop as serve_loop
from net_support import GIB, SENT_AT_MOST, Sent
from reef.attestation import DevAuthority, verifier_app
from reef.crypto import Secp256k1PrivateKey
from reef.errors import ChannelError, HandshakeError, InputError, ServiceError
from reef.scallop import (
    PeerPolicy,
    ScallopServer,
    ScallopTransport,
    connect,
    scallop_request,
    serve_asgi,
)
from reef.testing import wall_ms

from .conftest import Party

pytestmark = pytest.mark.timeout(60)


def _gigabyte_app(declared: bool, sent: Sent) -> Any:
    """An ASGI app answering 1 GiB of zeros, its length declared or not (chunked)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise InputError("no lifespan here")
        headers = [(b"content-length", str(GIB).encode())] if declared else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        chunk = bytes(1 << 16)
        while sent.bytes < SENT_AT_MOST:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent.bytes += len(chunk)
        await asyncio.Event().wait()  # and never ends it

    return app


BOMB = gzip.compress(bytes(64 << 20), compresslevel=9)
"""64 MiB of zeros in some 64 KiB of gzip."""


async def _bomb_app(scope: Any, receive: Any, send: Any) -> None:
    """An answer of a few KiB that inflates to 64 MiB, compressed though identity was asked."""
    if scope["type"] != "http":
        raise InputError("no lifespan here")
    headers = [(b"content-encoding", b"gzip"), (b"content-length", str(len(BOMB)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BOMB})


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
async def test_a_server_answering_a_gigabyte_is_not_read(
    declared: bool, make_party: Callable[..., Party]
) -> None:
    sent = Sent()
    server = await serve_asgi(
        _gigabyte_app(declared, sent), "127.0.0.1", 0, static_key=make_party().secret
    )
    port = server.port
    try:
        with pytest.raises(ServiceError, match=r"more than 1048576 bytes") as caught:
            await scallop_request("127.0.0.1", port, policy=None, timeout_s=30, max_bytes=1 << 20)
    finally:
        await server.aclose()
    assert caught.value.message.startswith(f"the answer of 127.0.0.1:{port} ")
    assert caught.value.hint
    assert sent.bytes < SENT_AT_MOST


async def test_a_compressed_answer_is_refused_not_inflated(
    make_party: Callable[..., Party],
) -> None:
    server = await serve_asgi(_bomb_app, "127.0.0.1", 0, static_key=make_party().secret)
    try:
        with pytest.raises(ServiceError, match=r"'gzip' content encoding") as caught:
            await scallop_request("127.0.0.1", server.port, policy=None, timeout_s=30)
    finally:
        await server.aclose()
    assert caught.value.hint


async def test_an_answer_within_the_bound_is_read_whole(make_party: Callable[..., Party]) -> None:
    sent = Sent()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise InputError("no lifespan here")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(4):
            await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
            sent.bytes += 1000
        await send({"type": "http.response.body", "body": b""})

    server = await serve_asgi(app, "127.0.0.1", 0, static_key=make_party().secret)
    try:
        answer = await scallop_request("127.0.0.1", server.port, policy=None, max_bytes=4000)
    finally:
        await server.aclose()
    assert (answer.status, answer.body) == (200, b"x" * 4000)


async def _hello(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise InputError("no lifespan here")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


async def test_a_client_trickling_its_request_head_is_closed(
    make_party: Callable[..., Party],
) -> None:
    """Every read of a head sent one byte every 0.05 s is quick: only a bound on the whole head
    ends such a channel (it was held as long as the client kept dripping)."""
    server = await serve_asgi(
        _hello, "127.0.0.1", 0, static_key=make_party().secret, keepalive_timeout=0.5
    )
    try:
        stream = await connect("127.0.0.1", server.port, static_key=make_party().secret)
        closed = False
        try:
            await stream.send(b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: ")
            # 200 bytes at 0.05 s: 10 s, twenty times the server's bound on a head.
            for _ in range(200):
                try:
                    await stream.send(b"a")
                    async with asyncio.timeout(0.05):
                        if await stream.read(1024) == b"":
                            closed = True
                            break
                except TimeoutError:
                    continue
                except ChannelError:
                    closed = True
                    break
        finally:
            await stream.aclose()
        assert closed, "the server kept a channel whose request head never ended"
        # The server still answers others.
        answer = await scallop_request("127.0.0.1", server.port, policy=None)
        assert answer.body == b"hello"
    finally:
        await server.aclose()


async def test_the_transport_keeps_httpx_read_timeout(silent_server: ScallopServer) -> None:
    """httpx's read timeout is each transport's to keep: a server that completes the handshake
    and never answers left ``AsyncClient(transport=ScallopTransport(...), timeout=...)`` waiting
    for ever."""
    async with httpx.AsyncClient(
        transport=ScallopTransport(),
        base_url=f"http://127.0.0.1:{silent_server.port}",
        timeout=0.5,
    ) as client:
        with pytest.raises(httpx.ReadTimeout):
            # Far longer than the client's 0.5 s: it is the transport that must stop.
            async with asyncio.timeout(20):
                await client.get("/")


# ---- attestations that are not CBOR at all ----
#
# cbor2 5.9 refuses items nested deeper than 400 with a CBORDecodeError that is no ValueError,
# so reef.attestation's decoder let it through untranslated: a stranger's attestation of a few
# hundred bytes became a foreign exception at every boundary that checks one.

NOT_CBOR = {
    "arrays": b"\x81" * 1000,  # arrays nested past cbor2's depth limit
    "maps": b"\xa1\x01" * 1000,  # maps, likewise
}


@pytest.mark.parametrize("document", NOT_CBOR.values(), ids=NOT_CBOR.keys())
async def test_a_server_presenting_an_attestation_that_is_not_cbor_is_refused(
    document: bytes, make_party: Callable[..., Party], policy: PeerPolicy
) -> None:
    async def auther() -> bytes:
        return document

    server = await serve_asgi(_hello, "127.0.0.1", 0, static_key=make_party().secret, auther=auther)
    try:
        with pytest.raises(HandshakeError, match="the server's attestation") as caught:
            await connect("127.0.0.1", server.port, static_key=make_party().secret, policy=policy)
        assert "CBOR" in caught.value.message
    finally:
        await server.aclose()


@pytest.mark.parametrize("document", NOT_CBOR.values(), ids=NOT_CBOR.keys())
async def test_a_client_presenting_an_attestation_that_is_not_cbor_is_refused_quietly(
    document: bytes,
    make_party: Callable[..., Party],
    policy: PeerPolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Refused as any bad attestation is: one rate-limited line naming the reason, not a
    traceback per connection (the log of a bug in reef, which a stranger could flood)."""

    async def auther() -> bytes:
        return document

    server = await serve_asgi(_hello, "127.0.0.1", 0, static_key=make_party().secret, policy=policy)
    try:
        with caplog.at_level(logging.WARNING, logger="reef.scallop"):
            # The server checks a client's attestation after the client's last handshake
            # message: the client may or may not see the refusal during connect.
            with contextlib.suppress(HandshakeError):
                stream = await connect(
                    "127.0.0.1", server.port, static_key=make_party().secret, auther=auther
                )
                await stream.aclose()
            for _ in range(100):
                if server.refused:
                    break
                await asyncio.sleep(0.02)
        refusals = [r for r in caplog.records if "refused" in r.getMessage()]
        assert refusals, "the server did not log the refusal"
        assert all(r.exc_info is None for r in refusals), "a traceback for a stranger's bytes"
        assert any("CBOR" in r.getMessage() for r in refusals)
        # And it keeps serving.
        client = make_party()
        answer = await scallop_request(
            "127.0.0.1", server.port, policy=None, static_key=client.secret, auther=client.auther()
        )
        assert answer.body == b"hello"
    finally:
        await server.aclose()


@pytest.mark.parametrize("document", NOT_CBOR.values(), ids=NOT_CBOR.keys())
async def test_the_verifier_service_rejects_a_document_that_is_not_cbor(
    document: bytes, authority: DevAuthority
) -> None:
    """The attestation verifier service answers 401 (decode), as for any bad document; it
    answered 500 Internal Server Error."""
    app = verifier_app(Secp256k1PrivateKey(b"\x01" * 32), root=authority.root)
    async with serve_loop(app) as url, httpx.AsyncClient() as http:
        raw = await http.post(f"{url}/verify/raw", content=document)
        hexed = await http.post(f"{url}/verify/hex", content=document.hex())
        good = await http.post(
            f"{url}/verify/raw",
            content=authority.mint({0: b"\x00" * 48}, timestamp_ms=wall_ms(), public_key=b""),
        )
    for answer in (raw, hexed):
        assert answer.status_code == 401, answer.text
        assert answer.text.startswith("attestation rejected (decode): ")
        assert "CBOR" in answer.text
    assert good.status_code == 200


async def test_one_address_cannot_hold_every_channel(make_party: Callable[..., Party]) -> None:
    """Handshake slots bound handshakes under way, not channels: a stranger that completes
    handshakes (a server without a policy, or with pinned keys, lets anyone) and then sits on
    them held as many as it liked, each a socket and a task, until the server ran out of file
    descriptors. An address holds at most ``per_peer_connections`` open channels; the next is
    refused (and logged once a second at most), and others are still served."""
    server = await serve_asgi(
        _hello, "127.0.0.1", 0, static_key=make_party().secret, per_peer_connections=8
    )
    held = []
    try:
        for _ in range(8):
            held.append(await connect("127.0.0.1", server.port, static_key=make_party().secret))
        extra = await connect("127.0.0.1", server.port, static_key=make_party().secret)
        try:
            await extra.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            async with asyncio.timeout(5):
                assert await extra.read(1024) == b"", "a ninth channel from one address was served"
        except ChannelError:
            pass  # refused: the channel broke
        finally:
            await extra.aclose()
        assert server.refused >= 1
        # Once one is closed, the address may open another.
        await held.pop().aclose()
        for _ in range(100):
            if server.open_channels < 8:
                break
            await asyncio.sleep(0.02)
        answer = await scallop_request("127.0.0.1", server.port, policy=None)
        assert answer.body == b"hello"
    finally:
        for stream in held:
            await stream.aclose()
        await server.aclose()


def test_a_copied_attestation_is_refused_before_its_signature_is_checked(
    make_party: Callable[..., Party], dev_root: Any
) -> None:
    """A stranger presents someone else's (genuine) document with a Noise key of its own, a new
    key per handshake: each was verified in full (a P-384 signature and the leaf certificate,
    about 2 ms) before the binding refused it. The document's own public_key says it is not
    this peer's, which decoding alone shows, so it is refused before any signature is checked;
    the peer it is bound to is still verified as before."""
    from reef.attestation import NitroVerifier
    from reef.errors import ExpectationError

    verified: list[bytes] = []
    verifier = NitroVerifier()

    def counting(attestation: bytes, **kwargs: Any) -> Any:
        verified.append(attestation)
        return verifier.verify(attestation, **kwargs)

    victim = make_party()
    document = victim.authority.mint(victim.pcrs, timestamp_ms=wall_ms(), public_key=victim.public)
    policy = PeerPolicy(roots=[dev_root], verifier=counting)
    for _ in range(5):
        with pytest.raises(ExpectationError) as refused:
            policy.check(document, make_party().public)
        assert refused.value.reason == "public_key"
    assert verified == []
    assert policy.check(document, victim.public).image_id == victim.image_id
    assert verified == [document]
