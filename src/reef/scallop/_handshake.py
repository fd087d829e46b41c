"""Scallop handshakes over asyncio, and :func:`connect`.

A thin driver around the sans-IO machines of ``_wire``: it reads exactly the bytes a machine
asks for, puts the machine's questions to the auth store (is this peer's key approved, rejected,
or must it attest? is its attestation acceptable?) and to the auther (our own attestation), and
bounds the whole handshake in time (5 s by default, as Oyster's listeners). Every failure is a
:class:`~reef.errors.HandshakeError` whose message says why.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Required, TypedDict, Unpack

from reef.errors import AttestationError, HandshakeError, InputError, MisuseError, ReefError
from reef.scallop._policy import Approved, Auther, AuthStore, NotFound, PeerPolicy, Rejected
from reef.scallop._stream import AuthKind, ScallopPeer, ScallopStream
from reef.scallop._wire import (
    AttestationReceived,
    ClientFinished,
    ClientHandshake,
    ClientHello,
    Established,
    NeedData,
    ServerHandshake,
    ServerHello,
)

if TYPE_CHECKING:
    from reef.attestation import VerifiedAttestation

__all__ = ["DEFAULT_HANDSHAKE_TIMEOUT", "connect", "handshake_client", "handshake_server"]

logger = logging.getLogger("reef.scallop")

DEFAULT_HANDSHAKE_TIMEOUT: Final = 5.0


class _SideOptions(TypedDict, total=False):
    """Our side of a channel, as :func:`connect`, :func:`serve`, :func:`serve_asgi` and the
    handshakes take it (keywords); :meth:`_Side.of` gives the defaults and checks them."""

    static_key: Required[bytes]
    policy: PeerPolicy | AuthStore | None
    auther: Auther | None
    handshake_timeout: float


@dataclass(frozen=True)
class _Side:
    """Our side of a channel, checked once: the static secret, what the peer must prove (the
    policy's auth store), what produces our attestation, and how long a handshake may take."""

    static_key: bytes
    store: AuthStore | None
    auther: Auther | None
    handshake_timeout: float

    @classmethod
    def of(
        cls,
        static_key: bytes,
        policy: PeerPolicy | AuthStore | None = None,
        auther: Auther | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> _Side:
        """Our side from the arguments of :func:`connect`, :func:`serve` and the handshakes.

        Raises:
            InputError: ``static_key`` is not a 32-byte X25519 secret, or ``policy`` is neither
                a PeerPolicy nor an auth store.
        """
        if not isinstance(static_key, bytes | bytearray) or len(static_key) != 32:
            raise InputError(
                "static_key is a 32-byte X25519 secret",
                hint="generate one with reef.crypto.generate_x25519()",
            )
        if isinstance(policy, PeerPolicy):
            store: AuthStore | None = policy.store()
        elif policy is None or isinstance(policy, AuthStore):
            store = policy
        else:
            raise InputError(
                f"policy must be a PeerPolicy or an auth store, got {type(policy).__name__}",
                hint="see reef.scallop.PeerPolicy, PolicyStore and PinnedKeys",
            )
        return cls(bytes(static_key), store, auther, handshake_timeout)


async def _drive(
    machine: ClientHandshake | ServerHandshake, reader: asyncio.StreamReader, what: str
) -> Any:
    """Feed the machine until it has an event other than NeedData."""
    while True:
        event = machine.next_event()
        if not isinstance(event, NeedData):
            return event
        try:
            machine.receive_data(await reader.readexactly(event.size))
        except asyncio.IncompleteReadError as exc:
            raise HandshakeError(
                f"the {what} closed the connection during the handshake",
                hint=f"the {what} may have refused us; check its logs",
            ) from exc
        except (ConnectionError, OSError) as exc:
            raise HandshakeError(f"the connection failed during the handshake: {exc}") from exc


@dataclass(frozen=True)
class _Decision:
    ask: bool  # request the peer's attestation
    kind: AuthKind
    peer: VerifiedAttestation | None = None  # what the store remembered, when approved


def _decide(store: AuthStore | None, key: bytes, who: str) -> _Decision:
    """Ask the store about the peer's ``key``, as Oyster's ``contains`` (reference §6.4)."""
    if store is None:
        return _Decision(ask=False, kind="none")
    answer = store.contains(key)
    if isinstance(answer, Rejected):
        raise HandshakeError(
            f"the {who}'s static key {key.hex()} is rejected by our policy",
            hint="the policy pins other keys",
        )
    if isinstance(answer, NotFound):
        return _Decision(ask=True, kind="attested")
    if isinstance(answer, Approved):
        if answer.peer is None:
            return _Decision(ask=False, kind="pinned")
        return _Decision(ask=False, kind="cached", peer=answer.peer)
    raise MisuseError(
        f"the auth store answered {answer!r}; expected Approved, NotFound or Rejected"
    )


def _verify(store: AuthStore, attestation: bytes, key: bytes, who: str) -> VerifiedAttestation:
    if not attestation:
        raise HandshakeError(f"the {who} sent an empty attestation")
    try:
        verified = store.verify(attestation, key)
    except AttestationError as exc:
        raise HandshakeError(
            f"the {who}'s attestation was refused ({exc.reason}): {exc.message}",
            hint=exc.hint,
        ) from exc
    except ReefError as exc:
        raise HandshakeError(
            f"the {who}'s attestation could not be checked: {exc.message}", hint=exc.hint
        ) from exc
    if verified is None:
        raise HandshakeError(f"the {who}'s attestation was refused by the auth store")
    return verified


async def _auth(auther: Auther | None, who: str) -> bytes:
    if auther is None:
        raise HandshakeError(
            f"the {who} asks for our attestation and we have no auther",
            hint="pass auther= (e.g. auther_from_url of the enclave's attestation server)",
        )
    try:
        document = await auther()
    except ReefError as exc:
        raise HandshakeError(
            f"could not produce our attestation: {exc.message}", hint=exc.hint
        ) from exc
    except (OSError, ValueError) as exc:  # a custom auther's I/O or parsing failure
        raise HandshakeError(f"could not produce our attestation: {exc}") from exc
    if not isinstance(document, bytes | bytearray):
        raise MisuseError(f"the auther returned {type(document).__name__}; it must return bytes")
    return bytes(document)


async def handshake_client(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    rng: Callable[[int], bytes] = os.urandom,
    **side: Unpack[_SideOptions],
) -> ScallopStream:
    """Run the client side of a Scallop handshake over an open asyncio stream pair (our side:
    ``static_key``, ``policy``, ``auther`` and ``handshake_timeout`` as :func:`connect`).

    Raises:
        HandshakeError: the server broke the protocol, was refused by ``policy``, asked for an
            attestation we cannot give, or the handshake took longer than ``handshake_timeout``.
    """
    ours = _Side.of(**side)
    return await _bounded(
        _client(reader, writer, ours, rng),
        ours.handshake_timeout,
        hint="the server is not a Scallop endpoint, or is overloaded",
    )


async def _client(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    side: _Side,
    rng: Callable[[int], bytes],
) -> ScallopStream:
    store = side.store
    machine = ClientHandshake(side.static_key, rng=rng)
    writer.write(machine.start())
    hello = await _drive(machine, reader, "server")
    assert isinstance(hello, ServerHello)
    decision = _decide(store, hello.peer_static, "server")
    attestation = await _auth(side.auther, "server") if hello.attestation_requested else None
    writer.write(machine.send_finish(request_attestation=decision.ask, attestation=attestation))
    await _drain(writer)
    peer_attestation = decision.peer
    event = await _drive(machine, reader, "server")
    if isinstance(event, AttestationReceived):
        assert store is not None
        peer_attestation = _verify(store, event.attestation, hello.peer_static, "server")
        event = await _drive(machine, reader, "server")
    assert isinstance(event, Established)
    return _established(machine, reader, writer, hello.peer_static, peer_attestation, decision)


async def handshake_server(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    rng: Callable[[int], bytes] = os.urandom,
    on_hello: Callable[[], None] | None = None,
    **side: Unpack[_SideOptions],
) -> ScallopStream:
    """Run the server side of a Scallop handshake over an open asyncio stream pair (our side:
    ``static_key``, ``policy``, ``auther`` and ``handshake_timeout`` as :func:`connect`).

    ``on_hello`` is called once the client's first message is in: a server short of handshake
    slots drops handshakes still waiting for it before those under way.

    Raises:
        HandshakeError: the client broke the protocol, was refused by ``policy``, asked for an
            attestation we cannot give, or the handshake took longer than ``handshake_timeout``.
    """
    return await _accept(reader, writer, _Side.of(**side), rng=rng, on_hello=on_hello)


async def _accept(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    side: _Side,
    *,
    rng: Callable[[int], bytes] = os.urandom,
    on_hello: Callable[[], None] | None = None,
) -> ScallopStream:
    """:func:`handshake_server` for a side already checked (a server's, for each connection)."""
    return await _bounded(
        _server(reader, writer, side, rng, on_hello),
        side.handshake_timeout,
        hint="the client stalled, or is not a Scallop client",
    )


async def _server(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    side: _Side,
    rng: Callable[[int], bytes],
    on_hello: Callable[[], None] | None,
) -> ScallopStream:
    store = side.store
    machine = ServerHandshake(side.static_key, rng=rng)
    hello = await _drive(machine, reader, "client")
    assert isinstance(hello, ClientHello)
    if on_hello is not None:
        on_hello()
    decision = _decide(store, hello.peer_static, "client")
    peer_attestation = decision.peer
    writer.write(machine.send_hello(request_attestation=decision.ask))
    await _drain(writer)
    finished = await _drive(machine, reader, "client")
    assert isinstance(finished, ClientFinished)
    if decision.ask:
        assert store is not None
        peer_attestation = _verify(store, finished.attestation, hello.peer_static, "client")
    if finished.attestation_requested:
        writer.write(machine.send_finish(await _auth(side.auther, "client")))
        await _drain(writer)
    event = machine.next_event()
    assert isinstance(event, Established)
    return _established(machine, reader, writer, hello.peer_static, peer_attestation, decision)


async def _bounded(
    handshake: Coroutine[Any, Any, ScallopStream], seconds: float, *, hint: str
) -> ScallopStream:
    """Run ``handshake`` to its end within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            return await handshake
    except TimeoutError as exc:
        raise HandshakeError(
            f"the Scallop handshake did not complete within {seconds:g} s", hint=hint
        ) from exc


def _established(
    machine: ClientHandshake | ServerHandshake,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    peer_static: bytes,
    attestation: VerifiedAttestation | None,
    decision: _Decision,
) -> ScallopStream:
    """The stream over a finished handshake, and what we learned about the peer."""
    peer = ScallopPeer(
        static_key=peer_static,
        attestation=attestation,
        auth=decision.kind,
        handshake_hash=machine.handshake_hash,
        address=writer.get_extra_info("peername"),
    )
    return ScallopStream(reader, writer, machine.transport(), peer, machine.local_static)


async def _drain(writer: asyncio.StreamWriter) -> None:
    try:
        await writer.drain()
    except (ConnectionError, OSError) as exc:
        raise HandshakeError(f"the connection failed during the handshake: {exc}") from exc


async def connect(host: str, port: int, **side: Unpack[_SideOptions]) -> ScallopStream:
    """Open a Scallop channel to ``host:port``.

    Args:
        static_key: our 32-byte X25519 static secret (inside an enclave: the attested key).
        policy: what the server must prove (a :class:`PeerPolicy` asks for its attestation,
            :class:`PinnedKeys` accepts fixed keys); ``None`` authenticates nobody.
        auther: produces our attestation if the server asks for it.
        handshake_timeout: seconds for the TCP connect and the whole handshake (default
            :data:`DEFAULT_HANDSHAKE_TIMEOUT`).

    Raises:
        HandshakeError: the connection or handshake failed, or the server was refused.
    """
    return await _connect(host, port, _Side.of(**side))


async def _connect(host: str, port: int, side: _Side) -> ScallopStream:
    """:func:`connect` for a side already checked (a transport's, for each channel it opens)."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(side.handshake_timeout):
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError as exc:
                raise HandshakeError(
                    f"could not connect to {host}:{port}: {exc.strerror or exc}",
                    hint="is the Scallop server running and the port right?",
                ) from exc
            return await _client(reader, writer, side, os.urandom)
    except BaseException as exc:
        if writer is not None:
            writer.transport.abort()
        if isinstance(exc, TimeoutError):
            raise HandshakeError(
                f"could not connect to {host}:{port} and complete the Scallop handshake within "
                f"{side.handshake_timeout:g} s",
                hint="the server is not a Scallop endpoint, or is overloaded",
            ) from exc
        if isinstance(exc, HandshakeError):
            logger.info("scallop: handshake with %s:%s failed: %s", host, port, exc)
        raise
