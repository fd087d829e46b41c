"""Scallop over real sockets on loopback: attested channels, and every attack the issue lists.

Each refusal must close the connection, log its reason on ``reef.scallop``, and leave the server
serving the next client, so most tests end by checking a well-behaved client still gets through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from reef.attestation import image_id
from reef.crypto import generate_x25519
from reef.errors import (
    ChannelBrokenError,
    ChannelClosedError,
    HandshakeError,
    InputError,
    MisuseError,
)
from reef.scallop import (
    Approved,
    NotFound,
    PeerPolicy,
    PinnedKeys,
    PolicyStore,
    Rejected,
    ScallopServer,
    ScallopStream,
    connect,
    handshake_client,
    serve,
)
from reef.scallop.lowlevel import ClientHandshake, NeedData, ServerHello
from reef.testing import wall_ms

from .conftest import PCRS_A, PCRS_B, Party, scallop_noise_peer

pytestmark = pytest.mark.timeout(15)

Handler = Callable[[ScallopStream], Awaitable[None]]


async def echo(stream: ScallopStream) -> None:
    async for chunk in stream:
        await stream.send(chunk)


@pytest.fixture
async def servers() -> AsyncIterator[list[ScallopServer]]:
    started: list[ScallopServer] = []
    yield started
    for server in started:
        await server.aclose()


@pytest.fixture
def start(servers: list[ScallopServer]) -> Callable[..., Awaitable[ScallopServer]]:
    async def start_server(handler: Handler = echo, **kwargs: Any) -> ScallopServer:
        server = await serve(handler, "127.0.0.1", 0, **kwargs)
        servers.append(server)
        return server

    return start_server


async def round_trip(stream: ScallopStream, data: bytes = b"ping") -> bytes:
    await stream.send(data)
    return await stream.readexactly(len(data))


async def good_client_gets_through(
    server: ScallopServer, party: Party | None = None, **kwargs: Any
) -> None:
    """The server still serves a well-behaved client (``party``, attesting when asked)."""
    if party is not None:
        kwargs.update(static_key=party.secret, auther=party.auther())
    else:
        kwargs.setdefault("static_key", generate_x25519()[0])
    async with await connect("127.0.0.1", server.port, **kwargs) as stream:
        assert await round_trip(stream, b"still serving") == b"still serving"


async def refused_by_server(port: int, **kwargs: Any) -> None:
    """Connect and expect the server to refuse us.

    A client that does not ask for the server's attestation finishes its handshake with
    CLIENTFIN and gets no answer to it (Oyster's wire format has none): the server's refusal
    shows as the connection closing. A client that asks learns it during the handshake.
    """
    try:
        stream = await connect("127.0.0.1", port, **kwargs)
    except HandshakeError:
        return
    try:
        assert await asyncio.wait_for(stream.read(), 5) == b""
    except ChannelBrokenError:
        pass
    finally:
        await stream.aclose()


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "reef.scallop"]


async def server_refusals(caplog: pytest.LogCaptureFixture, port: int, **kwargs: Any) -> list[str]:
    """:func:`refused_by_server`, then what the server logged (it logs after we see the close)."""
    with caplog.at_level(logging.WARNING, logger="reef.scallop"):
        await refused_by_server(port, **kwargs)
        await asyncio.sleep(0.05)
    return refusals(caplog)


# --- attested channels ---------------------------------------------------------------------------


async def test_both_sides_attest_and_see_each_others_image(
    start: Any, make_party: Callable[..., Party], policy: PeerPolicy
) -> None:
    server_party, client_party = make_party(PCRS_A), make_party(PCRS_B)
    seen: list[ScallopStream] = []

    async def handler(stream: ScallopStream) -> None:
        seen.append(stream)
        await echo(stream)

    server = await start(
        handler, static_key=server_party.secret, policy=policy, auther=server_party.auther()
    )
    async with await connect(
        "127.0.0.1",
        server.port,
        static_key=client_party.secret,
        policy=policy,
        auther=client_party.auther(),
    ) as stream:
        data = os.urandom(300_000)  # several records each way
        await stream.send(data)
        assert await stream.readexactly(len(data)) == data
        assert stream.peer_static == server_party.public
        assert stream.peer is not None
        assert stream.peer.image_id == server_party.image_id == image_id(PCRS_A)
        assert stream.auth == "attested"
        server_side = seen[0]
        assert server_side.peer is not None
        assert server_side.peer.image_id == client_party.image_id == image_id(PCRS_B)
        assert server_side.peer_static == client_party.public
        assert server_side.handshake_hash == stream.handshake_hash
        assert len(stream.handshake_hash) == 64


async def test_without_policies_nobody_attests(start: Any) -> None:
    server = await start(static_key=generate_x25519()[0])
    async with await connect("127.0.0.1", server.port, static_key=generate_x25519()[0]) as stream:
        assert stream.auth == "none"
        assert stream.peer is None
        assert await round_trip(stream) == b"ping"


async def test_verified_peers_are_cached_by_static_key(
    start: Any, make_party: Callable[..., Party], policy: PeerPolicy
) -> None:
    server_party, client_party = make_party(), make_party()
    minted = 0
    mint = server_party.auther()

    async def counting_auther() -> bytes:
        nonlocal minted
        minted += 1
        return await mint()

    server = await start(static_key=server_party.secret, auther=counting_auther)
    store = policy.store()
    kinds = []
    for _ in range(3):
        async with await connect(
            "127.0.0.1", server.port, static_key=client_party.secret, policy=store
        ) as stream:
            kinds.append(stream.auth)
            assert stream.peer is not None
            assert stream.peer.image_id == server_party.image_id
    assert kinds == ["attested", "cached", "cached"]
    assert minted == 1
    assert isinstance(store.contains(server_party.public), Approved)


async def test_cache_entries_expire_with_the_documents_freshness(
    make_party: Callable[..., Party], dev_root: Any
) -> None:
    party = make_party()
    clock = [wall_ms()]
    policy = PeerPolicy(roots=[dev_root], max_age_ms=60_000, clock=lambda: clock[0])
    store = policy.store()
    document = await party.auther(timestamp_ms=clock[0])()
    store.verify(document, party.public)
    assert isinstance(store.contains(party.public), Approved)
    clock[0] += 59_999
    assert isinstance(store.contains(party.public), Approved)
    clock[0] += 1
    assert isinstance(store.contains(party.public), NotFound)


async def test_pinned_keys_approve_without_attestation_and_reject_others(
    start: Any, make_party: Callable[..., Party], caplog: pytest.LogCaptureFixture
) -> None:
    kms = make_party()
    server = await start(static_key=kms.secret)  # no auther: it could not attest if asked
    async with await connect(
        "127.0.0.1", server.port, static_key=generate_x25519()[0], policy=PinnedKeys([kms.public])
    ) as stream:
        assert stream.auth == "pinned"
        assert await round_trip(stream) == b"ping"
    other = generate_x25519()[1]
    with pytest.raises(HandshakeError, match="rejected by our policy"):
        await connect(
            "127.0.0.1", server.port, static_key=generate_x25519()[0], policy=PinnedKeys([other])
        )
    assert isinstance(PinnedKeys([other]).contains(kms.public), Rejected)


async def test_an_image_outside_the_clients_policy_is_refused_before_any_data(
    start: Any, make_party: Callable[..., Party], dev_root: Any
) -> None:
    server_party = make_party(PCRS_A)
    received: list[bytes] = []

    async def handler(stream: ScallopStream) -> None:
        received.append(await stream.read(100))
        await stream.send(received[-1])
        await echo(stream)

    server = await start(handler, static_key=server_party.secret, auther=server_party.auther())
    wanted = PeerPolicy(roots=[dev_root], image_ids=[image_id(PCRS_B)])
    with pytest.raises(HandshakeError, match="image_id") as info:
        await connect("127.0.0.1", server.port, static_key=generate_x25519()[0], policy=wanted)
    assert server_party.image_id.hex() in str(info.value)
    await asyncio.sleep(0.05)
    assert received == [b""]  # the server never got a byte of application data
    right = PeerPolicy(roots=[dev_root], image_ids=[image_id(PCRS_A), image_id(PCRS_B)])
    await good_client_gets_through(server, policy=right)


async def test_the_server_refuses_a_client_image_outside_its_policy(
    start: Any, make_party: Callable[..., Party], dev_root: Any, caplog: pytest.LogCaptureFixture
) -> None:
    allowed, intruder = make_party(PCRS_A), make_party(PCRS_B)
    policy = PeerPolicy(roots=[dev_root], image_ids=[allowed.image_id])
    server = await start(static_key=generate_x25519()[0], policy=policy)
    reasons = await server_refusals(
        caplog, server.port, static_key=intruder.secret, auther=intruder.auther()
    )
    assert any("refused" in m and "image_id" in m for m in reasons)
    assert server.refused == 1
    await good_client_gets_through(server, allowed)


# --- attacks -------------------------------------------------------------------------------------


async def test_a_man_in_the_middle_with_its_own_keys_is_refused_by_the_client(
    start: Any, make_party: Callable[..., Party], policy: PeerPolicy
) -> None:
    server_party = make_party()
    server = await start(static_key=server_party.secret, auther=server_party.auther())
    mitm_secret, _ = generate_x25519()

    async def relay(stream: ScallopStream) -> None:
        async with await connect("127.0.0.1", server.port, static_key=mitm_secret) as upstream:
            await upstream.send(await stream.read(100))
            await stream.send(await upstream.read(100))

    # The MITM presents the real server's (valid, fresh, right image) attestation, but that
    # document attests the server's key, not the key the MITM uses in the handshake.
    mitm = await start(relay, static_key=mitm_secret, auther=server_party.auther())
    with pytest.raises(HandshakeError, match="public_key") as info:
        await connect("127.0.0.1", mitm.port, static_key=generate_x25519()[0], policy=policy)
    assert "not the peer's Noise static key" in str(info.value)
    await good_client_gets_through(server, policy=policy)


async def test_a_man_in_the_middle_is_refused_by_the_server(
    start: Any,
    make_party: Callable[..., Party],
    policy: PeerPolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client_party = make_party()
    server = await start(static_key=generate_x25519()[0], policy=policy)
    # The MITM forwards the real client's attestation under its own Noise key.
    reasons = await server_refusals(
        caplog, server.port, static_key=generate_x25519()[0], auther=client_party.auther()
    )
    assert any("refused" in m and "public_key" in m for m in reasons)
    await good_client_gets_through(server, client_party)


async def test_an_attestation_of_another_key_is_refused(
    start: Any,
    make_party: Callable[..., Party],
    policy: PeerPolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client_party = make_party()
    server = await start(static_key=generate_x25519()[0], policy=policy)
    elsewhere = generate_x25519()[1]
    reasons = await server_refusals(
        caplog,
        server.port,
        static_key=client_party.secret,
        auther=client_party.auther(public_key=elsewhere),
    )
    assert any("public_key" in m for m in reasons)
    await good_client_gets_through(server, client_party)


async def test_a_stale_attestation_is_refused(
    start: Any,
    make_party: Callable[..., Party],
    policy: PeerPolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client_party = make_party()
    server = await start(static_key=generate_x25519()[0], policy=policy)
    old = wall_ms() - 10 * 60_000
    reasons = await server_refusals(
        caplog,
        server.port,
        static_key=client_party.secret,
        auther=client_party.auther(timestamp_ms=old),
    )
    assert any("(stale)" in m for m in reasons)
    await good_client_gets_through(server, client_party)


async def test_an_attestation_from_an_untrusted_root_is_refused(
    start: Any, make_party: Callable[..., Party], caplog: pytest.LogCaptureFixture
) -> None:
    from reef.attestation import TrustedRoot

    client_party = make_party()
    server = await start(
        static_key=generate_x25519()[0], policy=PeerPolicy(roots=[TrustedRoot.aws()])
    )
    reasons = await server_refusals(
        caplog, server.port, static_key=client_party.secret, auther=client_party.auther()
    )
    assert any("(root)" in m for m in reasons)


class TamperingProxy:
    """A TCP proxy that parses the client→server byte stream into Scallop frames and lets a
    test modify, drop or repeat them (frame 0 is handshake 1, frame 1 CLIENTFIN, then records)."""

    def __init__(self, upstream_port: int, tamper: Callable[[int, bytes], list[bytes]]) -> None:
        self.upstream_port = upstream_port
        self.tamper = tamper
        self.server: asyncio.Server | None = None
        self.client_to_server = bytearray()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def upstream() -> None:
            index = 0
            try:
                while True:
                    if index == 0:
                        header = await reader.readexactly(4)
                        size = struct.unpack(">H", header[2:])[0]
                    else:
                        header = await reader.readexactly(2)
                        size = struct.unpack(">H", header)[0]
                    frame = header + await reader.readexactly(size)
                    self.client_to_server += frame
                    for out in self.tamper(index, frame):
                        up_writer.write(out)
                    await up_writer.drain()
                    index += 1
            except (asyncio.IncompleteReadError, ConnectionError):
                up_writer.close()

        async def downstream() -> None:
            try:
                while data := await up_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except ConnectionError:
                pass
            writer.close()

        await asyncio.gather(upstream(), downstream())


@pytest.fixture
async def proxies() -> AsyncIterator[list[TamperingProxy]]:
    made: list[TamperingProxy] = []
    yield made
    for proxy in made:
        await proxy.close()


def flip_first_record(index: int, frame: bytes) -> list[bytes]:
    if index == 2:
        modified = bytearray(frame)
        modified[10] ^= 0x40
        return [bytes(modified)]
    return [frame]


def repeat_first_record(index: int, frame: bytes) -> list[bytes]:
    return [frame, frame] if index == 2 else [frame]


@pytest.mark.parametrize(
    ("tamper", "what"),
    [(flip_first_record, "modified"), (repeat_first_record, "replayed")],
    ids=["modified", "replayed"],
)
async def test_a_modified_or_replayed_record_breaks_the_channel(
    start: Any,
    proxies: list[TamperingProxy],
    caplog: pytest.LogCaptureFixture,
    tamper: Callable[[int, bytes], list[bytes]],
    what: str,
) -> None:
    got: list[bytes] = []
    outcome: list[BaseException] = []

    async def handler(stream: ScallopStream) -> None:
        try:
            async for record in stream:  # one record per chunk
                got.append(record)
                await stream.send(record)
        except ChannelBrokenError as exc:
            outcome.append(exc)
            raise

    server = await start(handler, static_key=generate_x25519()[0])
    proxy = TamperingProxy(server.port, tamper)
    proxies.append(proxy)
    port = await proxy.start()
    with caplog.at_level(logging.WARNING, logger="reef.scallop"):
        stream = await connect("127.0.0.1", port, static_key=generate_x25519()[0])
        await stream.send(b"first")
        await stream.send(b"other")
        # The server closes the connection: the client reads EOF (or a reset).
        try:
            rest = await asyncio.wait_for(stream.read(), 5)
        except ChannelBrokenError:
            rest = b""
        assert rest == (b"first" if what == "replayed" else b"")
        await stream.aclose()
        await asyncio.sleep(0.05)
    assert isinstance(outcome[0], ChannelBrokenError)
    assert "failed authentication" in str(outcome[0])
    assert got == ([b"first"] if what == "replayed" else [])
    assert any("broken" in m and "failed authentication" in m for m in refusals(caplog))
    await good_client_gets_through(server)


async def test_a_replayed_session_is_refused_at_clientfin(
    start: Any, proxies: list[TamperingProxy], caplog: pytest.LogCaptureFixture
) -> None:
    server = await start(static_key=generate_x25519()[0])
    proxy = TamperingProxy(server.port, lambda i, frame: [frame])
    proxies.append(proxy)
    port = await proxy.start()
    async with await connect("127.0.0.1", port, static_key=generate_x25519()[0]) as stream:
        assert await round_trip(stream, b"original") == b"original"
    await asyncio.sleep(0.05)
    recorded = bytes(proxy.client_to_server)
    # Replay every byte the client sent, on a new connection: the server's new ephemeral key
    # makes the recorded CLIENTFIN undecryptable.
    with caplog.at_level(logging.WARNING, logger="reef.scallop"):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(recorded)
        await writer.drain()
        await asyncio.wait_for(reader.read(), 5)  # the server answers handshake 2, then closes
        writer.close()
        await asyncio.sleep(0.05)
    assert any("refused" in m and "failed authentication" in m for m in refusals(caplog))
    await good_client_gets_through(server)


async def raw_handshake(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-driven client that completes a policy-free handshake and returns the raw socket."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    machine = ClientHandshake(generate_x25519()[0])
    writer.write(machine.start())
    while isinstance(event := machine.next_event(), NeedData):
        machine.receive_data(await reader.readexactly(event.size))
    assert isinstance(event, ServerHello)
    writer.write(machine.send_finish(request_attestation=False, attestation=None))
    await writer.drain()
    return reader, writer


async def test_an_oversized_frame_is_refused_before_its_body_arrives(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start(static_key=generate_x25519()[0])
    with caplog.at_level(logging.WARNING, logger="reef.scallop"):
        reader, writer = await raw_handshake(server.port)
        writer.write(b"\xff\xff")  # a 65535-byte record whose body never comes
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await asyncio.sleep(0.05)
    assert any("65535-byte record" in m for m in refusals(caplog))

    # The same in the handshake: a first message announcing 65535 bytes is refused at once.
    with caplog.at_level(logging.WARNING, logger="reef.scallop"):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\x00\x00\xff\xff")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await asyncio.sleep(0.05)
    assert any("handshake 1 is 65535 bytes" in m for m in refusals(caplog))
    await good_client_gets_through(server)


async def test_a_stalled_handshake_times_out_while_others_are_served(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start(static_key=generate_x25519()[0], handshake_timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="reef.scallop"):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\x00\x00\x00\x40" + bytes(10))  # part of handshake 1, then silence
        await writer.drain()
        await good_client_gets_through(server)  # served while the other connection stalls
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await asyncio.sleep(0.05)
    assert any("did not complete within 0.5 s" in m for m in refusals(caplog))


async def test_too_many_stalled_handshakes_are_turned_away(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start(static_key=generate_x25519()[0], handshake_timeout=2, max_handshakes=2)
    stalled = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
    await asyncio.sleep(0.1)
    with caplog.at_level(logging.WARNING, logger="reef.scallop"):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed at once, not after 2 s
        writer.close()
    assert any("2 handshakes already in progress" in m for m in refusals(caplog))
    for _, stalled_writer in stalled:
        stalled_writer.close()
    await asyncio.sleep(0.1)  # the stalled connections end; slots free up
    await good_client_gets_through(server)


async def test_a_failing_auth_store_refuses_only_that_client(
    start: Any, make_party: Callable[..., Party], caplog: pytest.LogCaptureFixture
) -> None:
    class Flaky:
        calls = 0

        def contains(self, key: bytes) -> Approved | NotFound | Rejected:
            self.calls += 1
            if self.calls == 1:
                raise LookupError("a bug in a custom store")
            return Approved(None)

        def verify(self, attestation: bytes, key: bytes) -> None:
            return None

    server = await start(static_key=generate_x25519()[0], policy=Flaky())
    reasons = await server_refusals(caplog, server.port, static_key=generate_x25519()[0])
    assert any("failed unexpectedly" in m for m in reasons)
    await good_client_gets_through(server)


async def test_a_server_that_never_answers_times_the_client_out() -> None:
    hung_up = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()  # never answers; returns when the client gives up
        writer.close()
        hung_up.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(HandshakeError, match=r"handshake within 0\.3 s"):
            await connect("127.0.0.1", port, static_key=generate_x25519()[0], handshake_timeout=0.3)
        await asyncio.wait_for(hung_up.wait(), 5)  # the client closed its side
    finally:
        server.close()
        await server.wait_closed()


async def test_a_server_without_an_auther_cannot_be_asked_to_attest(
    start: Any, policy: PeerPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start(static_key=generate_x25519()[0])
    with caplog.at_level(logging.WARNING, logger="reef.scallop"), pytest.raises(HandshakeError):
        await connect("127.0.0.1", server.port, static_key=generate_x25519()[0], policy=policy)
    await asyncio.sleep(0.05)
    assert any("we have no auther" in m for m in refusals(caplog))


async def test_a_client_without_an_auther_is_told_why(start: Any, policy: PeerPolicy) -> None:
    server = await start(static_key=generate_x25519()[0], policy=policy)
    with pytest.raises(HandshakeError, match="asks for our attestation"):
        await connect("127.0.0.1", server.port, static_key=generate_x25519()[0])


async def test_connecting_to_nothing_is_a_handshake_error() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(HandshakeError, match=f"could not connect to 127.0.0.1:{port}"):
        await connect("127.0.0.1", port, static_key=generate_x25519()[0])


async def test_a_non_scallop_server_is_reported(start: Any) -> None:
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(68)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(HandshakeError, match="negotiation data"):
            await connect("127.0.0.1", port, static_key=generate_x25519()[0])
    finally:
        server.close()
        await server.wait_closed()


# --- stream semantics ----------------------------------------------------------------------------


async def test_stream_reads_follow_asyncio_semantics(start: Any) -> None:
    async def talker(stream: ScallopStream) -> None:
        await stream.send(b"hello world")
        stream.write_eof()
        assert await stream.read() == b"client done"

    server = await start(talker, static_key=generate_x25519()[0])
    stream = await connect("127.0.0.1", server.port, static_key=generate_x25519()[0])
    assert await stream.read(5) == b"hello"
    assert await stream.readexactly(6) == b" world"
    assert await stream.read(10) == b""
    assert stream.at_eof()
    with pytest.raises(ChannelBrokenError, match="after 0 of 1 expected bytes"):
        await stream.readexactly(1)
    await stream.send(b"client done")
    stream.write_eof()
    await stream.aclose()
    with pytest.raises(ChannelClosedError):
        stream.write(b"late")
    with pytest.raises(ChannelClosedError):
        await stream.read(1)


async def test_one_reader_at_a_time(start: Any) -> None:
    async def idle(stream: ScallopStream) -> None:
        await stream.read()

    server = await start(idle, static_key=generate_x25519()[0])
    async with await connect("127.0.0.1", server.port, static_key=generate_x25519()[0]) as stream:
        first = asyncio.create_task(stream.read(1))
        await asyncio.sleep(0.05)
        with pytest.raises(MisuseError, match="already reading"):
            await stream.read(1)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first


async def test_a_cancelled_read_does_not_lose_data(start: Any) -> None:
    release = asyncio.Event()

    async def slow(stream: ScallopStream) -> None:
        await release.wait()
        await stream.send(b"late but intact")
        await stream.read()

    server = await start(slow, static_key=generate_x25519()[0])
    async with await connect("127.0.0.1", server.port, static_key=generate_x25519()[0]) as stream:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await stream.read(100)
        release.set()
        assert await stream.readexactly(15) == b"late but intact"


async def test_handshake_over_an_existing_stream_pair(start: Any) -> None:
    server = await start(static_key=generate_x25519()[0])
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    stream = await handshake_client(reader, writer, static_key=generate_x25519()[0])
    assert await round_trip(stream) == b"ping"
    await stream.aclose()


async def test_bad_arguments_are_input_errors() -> None:
    with pytest.raises(InputError, match="32-byte X25519 secret"):
        await connect("127.0.0.1", 1, static_key=b"short")
    with pytest.raises(InputError, match="at least one trusted root"):
        PeerPolicy(roots=[])
    with pytest.raises(InputError, match="image id is 32 bytes"):
        PeerPolicy(roots=[object()], image_ids=[b"x"])  # type: ignore[list-item]
    with pytest.raises(InputError, match="policy must be"):
        await connect("127.0.0.1", 1, static_key=bytes(32), policy="dev")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        PinnedKeys([b"short"])
    assert isinstance(PolicyStore, type)


# --- an independent implementation on the other end of a real socket ------------------------------


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    size = struct.unpack(">H", await reader.readexactly(2))[0]
    return await reader.readexactly(size)


async def test_an_independent_noise_client_talks_to_serve(start: Any) -> None:
    """A Scallop client built by hand on noiseprotocol, over TCP, against reef's server."""
    server = await start(static_key=generate_x25519()[0])
    peer = scallop_noise_peer(generate_x25519()[0], initiator=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    message = peer.write_message(b"")
    writer.write(b"\x00\x00" + struct.pack(">H", len(message)) + message)
    assert await reader.readexactly(2) == b"\x00\x00"
    assert peer.read_message(await _read_frame(reader)) == b"\x00\x01\x00"  # no attestation asked
    fin = peer.encrypt(b"\x00\x00\x00")  # A = 0, no attestation
    record = peer.encrypt(b"hello from noiseprotocol")
    writer.write(struct.pack(">H", len(fin)) + fin + struct.pack(">H", len(record)) + record)
    await writer.drain()
    assert peer.decrypt(await _read_frame(reader)) == b"hello from noiseprotocol"  # echoed
    writer.close()
    await writer.wait_closed()


async def test_connect_talks_to_an_independent_noise_server() -> None:
    """reef's client against a Scallop server built by hand on noiseprotocol, over TCP."""
    server_secret, server_public = generate_x25519()
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = scallop_noise_peer(server_secret, initiator=False)
        assert await reader.readexactly(2) == b"\x00\x00"
        assert peer.read_message(await _read_frame(reader)) == b""
        reply = peer.write_message(b"\x00\x01\x00")
        writer.write(b"\x00\x00" + struct.pack(">H", len(reply)) + reply)
        assert peer.decrypt(await _read_frame(reader)) == b"\x00\x00\x00"
        data = peer.decrypt(await _read_frame(reader))
        out = peer.encrypt(data.upper())
        writer.write(struct.pack(">H", len(out)) + out)
        await writer.drain()
        writer.close()
        done.set()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        port = listener.sockets[0].getsockname()[1]
        async with await connect("127.0.0.1", port, static_key=generate_x25519()[0]) as stream:
            assert stream.peer_static == server_public
            await stream.send(b"shout this")
            assert await stream.read() == b"SHOUT THIS"
        await asyncio.wait_for(done.wait(), 5)
    finally:
        listener.close()
        await listener.wait_closed()
