"""Scallop over asyncio: ``connect``, ``serve`` and the :class:`ScallopStream` they give.

A thin driver around the sans-IO machines of ``_wire``: it reads exactly the bytes a machine
asks for, asks the auth store and the auther the machine's questions, and bounds the whole
handshake in time (5 s by default, as Oyster's listeners). After the handshake a stream reads
and writes Scallop records with the API of :mod:`asyncio` streams.

Failures are :class:`~reef.errors.HandshakeError` (the handshake failed or the peer was refused),
:class:`~reef.errors.ChannelBrokenError` (the peer broke the channel: a modified, replayed or
oversized record, EOF inside a record) and :class:`~reef.errors.ChannelClosedError` (we closed
it). A broken channel is closed at once and the reason logged on the ``reef.scallop`` logger; a
server logs every refusal with its reason and keeps serving everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal

from reef.crypto import x25519_public_key
from reef.errors import (
    AttestationError,
    ChannelBrokenError,
    ChannelClosedError,
    ChannelError,
    HandshakeError,
    InputError,
    MisuseError,
    ReefError,
)
from reef.scallop._policy import (
    Approved,
    Auther,
    AuthStore,
    NotFound,
    PeerPolicy,
    Rejected,
)
from reef.scallop._wire import (
    AttestationReceived,
    ClientFinished,
    ClientHandshake,
    ClientHello,
    Established,
    NeedData,
    RecordLayer,
    ServerHandshake,
    ServerHello,
)

if TYPE_CHECKING:
    from reef.attestation import VerifiedAttestation

__all__ = [
    "AuthKind",
    "ScallopPeer",
    "ScallopServer",
    "ScallopStream",
    "connect",
    "handshake_client",
    "handshake_server",
    "serve",
]

logger = logging.getLogger("reef.scallop")

DEFAULT_HANDSHAKE_TIMEOUT: Final = 5.0
_U16: Final = struct.Struct(">H")

AuthKind = Literal["attested", "cached", "pinned", "none"]
"""How the peer's static key came to be trusted: it attested during this handshake, the auth
store remembered an earlier attestation, the store approves the key as such, or no policy."""

Handler = Callable[["ScallopStream"], Awaitable[None]]


@dataclass(frozen=True)
class ScallopPeer:
    """What we know about the other end of a Scallop channel.

    Attributes:
        static_key: the peer's X25519 Noise static public key (32 bytes).
        attestation: what its attestation proved (``None`` when it did not attest).
        auth: how its key came to be trusted.
        handshake_hash: the Noise handshake hash, unique to this channel (channel binding).
        address: the peer's socket address, when known.
    """

    static_key: bytes
    attestation: VerifiedAttestation | None
    auth: AuthKind
    handshake_hash: bytes
    address: tuple[Any, ...] | None = None

    @property
    def image_id(self) -> bytes | None:
        """The peer's image id, when it attested."""
        return self.attestation.image_id if self.attestation is not None else None


def _as_store(policy: PeerPolicy | AuthStore | None) -> AuthStore | None:
    if policy is None:
        return None
    if isinstance(policy, PeerPolicy):
        return policy.store()
    if isinstance(policy, AuthStore):
        return policy
    raise InputError(
        f"policy must be a PeerPolicy or an auth store, got {type(policy).__name__}",
        hint="see reef.scallop.PeerPolicy, PolicyStore and PinnedKeys",
    )


def _check_static_key(static_key: bytes) -> None:
    if not isinstance(static_key, bytes | bytearray) or len(static_key) != 32:
        raise InputError(
            "static_key is a 32-byte X25519 secret",
            hint="generate one with reef.crypto.generate_x25519()",
        )


# --- the stream ----------------------------------------------------------------------------------


class ScallopStream:
    """An established Scallop channel: asyncio-stream reads and writes, encrypted as records.

    Do not construct directly: use :func:`connect`, :func:`serve` or the ``handshake_*``
    functions. Reads follow :class:`asyncio.StreamReader` (``read(-1)`` reads to EOF), writes
    :class:`asyncio.StreamWriter` (``write`` then ``await drain()``). One reader at a time.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        records: RecordLayer,
        peer: ScallopPeer,
        local_static: bytes,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._records = records
        self.peer_info = peer
        self.local_static = local_static
        self._chunk = b""
        self._offset = 0
        self._eof = False
        self._closed = False
        self._broken: ChannelBrokenError | None = None
        self._reading = False
        self._body_size: int | None = None  # a record header read whose body is still due

    # -- who is on the other end --

    @property
    def peer_static(self) -> bytes:
        """The peer's Noise static public key."""
        return self.peer_info.static_key

    @property
    def peer(self) -> VerifiedAttestation | None:
        """The peer's verified attestation (``None`` if it was not asked for one)."""
        return self.peer_info.attestation

    @property
    def auth(self) -> AuthKind:
        """How the peer's key came to be trusted."""
        return self.peer_info.auth

    @property
    def handshake_hash(self) -> bytes:
        """The Noise handshake hash: equal on both ends, unique to this channel."""
        return self.peer_info.handshake_hash

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The underlying transport's extra info (``"peername"``, ``"sockname"``, ...)."""
        return self._writer.get_extra_info(name, default)

    # -- reading --

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (at least one unless at EOF); ``n < 0`` reads until EOF.

        Raises:
            ChannelBrokenError: a record was modified, replayed, oversized or cut short.
            ChannelClosedError: we closed the stream.
            MisuseError: another task is reading.
        """
        if n == 0:
            return b""
        if n < 0:
            parts = []
            while chunk := await self.read(1 << 20):
                parts.append(chunk)
            return b"".join(parts)
        with self._read_guard():
            if self._offset >= len(self._chunk) and not await self._fill():
                return b""
            start = self._offset
            if start == 0 and n >= len(self._chunk):
                self._offset = len(self._chunk)
                return self._chunk
            end = min(len(self._chunk), start + n)
            self._offset = end
            return self._chunk[start:end]

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes.

        Raises:
            ChannelBrokenError: EOF came first (the message says how many bytes arrived), or
                the channel broke.
        """
        parts: list[bytes] = []
        have = 0
        while have < n:
            chunk = await self.read(n - have)
            if not chunk:
                raise ChannelBrokenError(
                    f"the peer ended the stream after {have} of {n} expected bytes"
                )
            parts.append(chunk)
            have += len(chunk)
        return b"".join(parts)

    def at_eof(self) -> bool:
        """Whether the peer ended the stream and every byte was read."""
        return self._eof and self._offset >= len(self._chunk)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while chunk := await self.read(1 << 20):
            yield chunk

    async def _fill(self) -> bool:
        """Read the next non-empty record into the chunk buffer; False at a clean EOF."""
        if self._closed:
            raise ChannelClosedError("the Scallop stream is closed", hint="open a new channel")
        if self._broken is not None:
            raise self._broken
        if self._eof:
            return False
        at_boundary = False  # True only while waiting for the first byte of a record
        try:
            while True:
                record = self._records.next_record()  # bytes left over from the handshake
                if isinstance(record, bytes):
                    plaintext = record
                    break
                if self._records.buffered:
                    self._records.receive_data(await self._reader.readexactly(record.size))
                    continue
                # The common path: read each record straight off the socket, without buffering.
                # The size is kept across awaits so a cancelled read resumes at the body.
                if self._body_size is None:
                    at_boundary = True
                    header = await self._reader.readexactly(2)
                    at_boundary = False
                    size = _U16.unpack(header)[0]
                    RecordLayer.check_length(size)
                    self._body_size = size
                body = await self._reader.readexactly(self._body_size)
                self._body_size = None
                plaintext = self._records.open(body)
                if plaintext:
                    break
        except asyncio.IncompleteReadError as exc:
            if at_boundary and not exc.partial:
                self._eof = True
                return False
            self._fail(
                ChannelBrokenError("the peer closed the connection in the middle of a record")
            )
        except ChannelBrokenError as exc:
            self._fail(exc)
        except (ConnectionError, OSError) as exc:
            self._fail(ChannelBrokenError(f"the connection failed: {exc}"))
        self._chunk = plaintext
        self._offset = 0
        return True

    def _fail(self, error: ChannelBrokenError) -> Any:
        """Close at once and remember why; raises ``error``."""
        self._broken = error
        peer = self.get_extra_info("peername")
        logger.warning("scallop: channel with %s broken: %s", _address(peer), error)
        self._writer.transport.abort()
        raise error

    class _Guard:
        def __init__(self, stream: ScallopStream) -> None:
            self.stream = stream

        def __enter__(self) -> None:
            if self.stream._reading:
                raise MisuseError(
                    "another task is already reading this Scallop stream",
                    hint="read from one task at a time",
                )
            self.stream._reading = True

        def __exit__(self, *exc: object) -> None:
            self.stream._reading = False

    def _read_guard(self) -> ScallopStream._Guard:
        return ScallopStream._Guard(self)

    # -- writing --

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` into records and queue them (``await drain()`` to wait).

        Raises:
            ChannelClosedError: we closed the stream.
            ChannelBrokenError: the channel broke earlier.
        """
        self._check_writable()
        frames = self._records.seal(data)
        if frames:
            self._writer.write(frames)

    async def drain(self) -> None:
        """Wait until the transport's buffer is small enough to write more.

        Raises:
            ChannelBrokenError: the connection was lost.
        """
        self._check_writable()
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise ChannelBrokenError(f"the connection was lost while writing: {exc}") from exc

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """``write(data)`` then ``await drain()``."""
        self.write(data)
        await self.drain()

    def can_write_eof(self) -> bool:
        """Whether the transport supports half-closing (TCP does)."""
        return self._writer.can_write_eof()

    def write_eof(self) -> None:
        """Half-close: the peer reads EOF after our last record; we may still read."""
        self._check_writable()
        self._writer.write_eof()

    def _check_writable(self) -> None:
        if self._closed:
            raise ChannelClosedError("the Scallop stream is closed", hint="open a new channel")
        if self._broken is not None:
            raise self._broken

    # -- closing --

    def close(self) -> None:
        """Close the connection (idempotent); reads and writes then raise ChannelClosedError."""
        if not self._closed:
            self._closed = True
            self._writer.close()

    def is_closing(self) -> bool:
        """Whether the stream was closed (by us, or because the channel broke)."""
        return self._closed or self._broken is not None or self._writer.is_closing()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed."""
        # The peer may reset a connection we are closing anyway.
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()

    async def aclose(self) -> None:
        """``close()`` then ``await wait_closed()``."""
        self.close()
        await self.wait_closed()

    async def __aenter__(self) -> ScallopStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        image = self.peer_info.image_id
        state = "closed" if self._closed else "broken" if self._broken else "open"
        return (
            f"<ScallopStream {state} peer={self.peer_static.hex()[:16]}… auth={self.auth}"
            + (f" image_id={image.hex()[:16]}…" if image else "")
            + ">"
        )


def _address(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer) if peer else "peer"


# --- handshakes ----------------------------------------------------------------------------------


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
    if not isinstance(document, bytes | bytearray):
        raise MisuseError(f"the auther returned {type(document).__name__}; it must return bytes")
    return bytes(document)


async def handshake_client(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    static_key: bytes,
    policy: PeerPolicy | AuthStore | None = None,
    auther: Auther | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    rng: Callable[[int], bytes] = os.urandom,
) -> ScallopStream:
    """Run the client side of a Scallop handshake over an open asyncio stream pair.

    Raises:
        HandshakeError: the server broke the protocol, was refused by ``policy``, asked for an
            attestation we cannot give, or the handshake took longer than ``handshake_timeout``.
    """
    _check_static_key(static_key)
    store = _as_store(policy)
    try:
        async with asyncio.timeout(handshake_timeout):
            return await _client(reader, writer, bytes(static_key), store, auther, rng)
    except TimeoutError as exc:
        raise HandshakeError(
            f"the Scallop handshake did not complete within {handshake_timeout:g} s",
            hint="the server is not a Scallop endpoint, or is overloaded",
        ) from exc


async def _client(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    static_key: bytes,
    store: AuthStore | None,
    auther: Auther | None,
    rng: Callable[[int], bytes],
) -> ScallopStream:
    machine = ClientHandshake(static_key, rng=rng)
    writer.write(machine.start())
    hello = await _drive(machine, reader, "server")
    assert isinstance(hello, ServerHello)
    decision = _decide(store, hello.peer_static, "server")
    attestation = await _auth(auther, "server") if hello.attestation_requested else None
    writer.write(machine.send_finish(request_attestation=decision.ask, attestation=attestation))
    await _drain(writer)
    peer_attestation = decision.peer
    event = await _drive(machine, reader, "server")
    if isinstance(event, AttestationReceived):
        assert store is not None
        peer_attestation = _verify(store, event.attestation, hello.peer_static, "server")
        event = await _drive(machine, reader, "server")
    assert isinstance(event, Established)
    peer = ScallopPeer(
        static_key=hello.peer_static,
        attestation=peer_attestation,
        auth=decision.kind,
        handshake_hash=machine.handshake_hash,
        address=writer.get_extra_info("peername"),
    )
    return ScallopStream(reader, writer, machine.transport(), peer, machine.local_static)


async def handshake_server(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    static_key: bytes,
    policy: PeerPolicy | AuthStore | None = None,
    auther: Auther | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    rng: Callable[[int], bytes] = os.urandom,
) -> ScallopStream:
    """Run the server side of a Scallop handshake over an open asyncio stream pair.

    Raises:
        HandshakeError: the client broke the protocol, was refused by ``policy``, asked for an
            attestation we cannot give, or the handshake took longer than ``handshake_timeout``.
    """
    _check_static_key(static_key)
    store = _as_store(policy)
    try:
        async with asyncio.timeout(handshake_timeout):
            return await _server(reader, writer, bytes(static_key), store, auther, rng)
    except TimeoutError as exc:
        raise HandshakeError(
            f"the Scallop handshake did not complete within {handshake_timeout:g} s",
            hint="the client stalled, or is not a Scallop client",
        ) from exc


async def _server(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    static_key: bytes,
    store: AuthStore | None,
    auther: Auther | None,
    rng: Callable[[int], bytes],
) -> ScallopStream:
    machine = ServerHandshake(static_key, rng=rng)
    hello = await _drive(machine, reader, "client")
    assert isinstance(hello, ClientHello)
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
        writer.write(machine.send_finish(await _auth(auther, "client")))
        await _drain(writer)
    event = machine.next_event()
    assert isinstance(event, Established)
    peer = ScallopPeer(
        static_key=hello.peer_static,
        attestation=peer_attestation,
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


# --- client and server entry points --------------------------------------------------------------


async def connect(
    host: str,
    port: int,
    *,
    static_key: bytes,
    policy: PeerPolicy | AuthStore | None = None,
    auther: Auther | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> ScallopStream:
    """Open a Scallop channel to ``host:port``.

    Args:
        static_key: our 32-byte X25519 static secret (inside an enclave: the attested key).
        policy: what the server must prove (a :class:`PeerPolicy` asks for its attestation,
            :class:`PinnedKeys` accepts fixed keys); ``None`` authenticates nobody.
        auther: produces our attestation if the server asks for it.
        handshake_timeout: seconds for the TCP connect and the whole handshake.

    Raises:
        HandshakeError: the connection or handshake failed, or the server was refused.
    """
    _check_static_key(static_key)
    store = _as_store(policy)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(handshake_timeout):
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError as exc:
                raise HandshakeError(
                    f"could not connect to {host}:{port}: {exc.strerror or exc}",
                    hint="is the Scallop server running and the port right?",
                ) from exc
            return await _client(reader, writer, bytes(static_key), store, auther, os.urandom)
    except TimeoutError as exc:
        if writer is not None:
            writer.transport.abort()
        raise HandshakeError(
            f"could not connect to {host}:{port} and complete the Scallop handshake within "
            f"{handshake_timeout:g} s",
            hint="the server is not a Scallop endpoint, or is overloaded",
        ) from exc
    except BaseException as exc:
        if writer is not None:
            writer.transport.abort()
        if isinstance(exc, HandshakeError):
            logger.info("scallop: handshake with %s:%s failed: %s", host, port, exc)
        raise


class ScallopServer:
    """A listening Scallop server; see :func:`serve`. An async context manager."""

    def __init__(
        self,
        handler: Handler,
        *,
        static_key: bytes,
        store: AuthStore | None,
        auther: Auther | None,
        handshake_timeout: float,
    ) -> None:
        self._handler = handler
        self._static_key = bytes(static_key)
        self.static_public = x25519_public_key(self._static_key)
        self.store = store
        self._auther = auther
        self._handshake_timeout = handshake_timeout
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self.accepted = 0
        self.refused = 0
        self._on_close: list[Callable[[], Awaitable[None]]] = []

    async def _start(self, host: str, port: int) -> None:
        try:
            self._server = await asyncio.start_server(self._on_connection, host, port)
        except OSError as exc:
            raise ChannelError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="choose another port (0 picks a free one)",
            ) from exc

    @property
    def port(self) -> int:
        """The port the server listens on (useful after ``port=0``)."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def host(self) -> str:
        """The address the server listens on."""
        assert self._server is not None
        host: str = self._server.sockets[0].getsockname()[0]
        return host

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        address = _address(writer.get_extra_info("peername"))
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            try:
                stream = await handshake_server(
                    reader,
                    writer,
                    static_key=self._static_key,
                    policy=self.store,
                    auther=self._auther,
                    handshake_timeout=self._handshake_timeout,
                )
            except (ChannelError, OSError) as exc:
                self.refused += 1
                logger.warning("scallop: refused %s: %s", address, exc)
                writer.transport.abort()
                return
            self.accepted += 1
            logger.debug(
                "scallop: accepted %s (key %s…, %s)",
                address,
                stream.peer_static.hex()[:16],
                stream.auth,
            )
            try:
                await self._handler(stream)
            except ChannelError as exc:
                # A broken channel was already logged by the stream; this is the handler ending.
                logger.info("scallop: connection %s ended: %s", address, exc)
            except Exception:
                logger.exception("scallop: the handler failed for %s", address)
            finally:
                await stream.aclose()
        except asyncio.CancelledError:
            # The server is closing: this task is the root of the connection, so ending it
            # quietly is right (asyncio would otherwise log the cancellation as an error).
            writer.transport.abort()
        finally:
            self._connections.pop(task, None)

    def close(self) -> None:
        """Stop listening and close every open connection."""
        if self._server is not None:
            self._server.close()
        for task, writer in list(self._connections.items()):
            writer.transport.abort()
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the listener and every connection are closed."""
        if self._server is not None:
            await self._server.wait_closed()
        if self._connections:
            await asyncio.wait(list(self._connections))

    def on_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``await callback()`` in :meth:`aclose`, after the listener is closed."""
        self._on_close.append(callback)

    async def aclose(self) -> None:
        """``close()``, ``await wait_closed()``, then the :meth:`on_close` callbacks."""
        self.close()
        await self.wait_closed()
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            await callback()

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> ScallopServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def serve(
    handler: Handler,
    host: str,
    port: int,
    *,
    static_key: bytes,
    policy: PeerPolicy | AuthStore | None = None,
    auther: Auther | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> ScallopServer:
    """Listen on ``host:port`` and run ``await handler(stream)`` for every accepted channel.

    Args:
        handler: called with each established :class:`ScallopStream`; the stream is closed
            when it returns.
        static_key: our 32-byte X25519 static secret.
        policy: what clients must prove. A :class:`PeerPolicy` gets one caching store for the
            server's lifetime; pass ``policy.store(cache=False)`` to ask every time.
        auther: produces our attestation for clients that ask.
        handshake_timeout: seconds each client has to finish its handshake.

    Raises:
        ChannelError: the address cannot be listened on.
    """
    _check_static_key(static_key)
    server = ScallopServer(
        handler,
        static_key=static_key,
        store=_as_store(policy),
        auther=auther,
        handshake_timeout=handshake_timeout,
    )
    await server._start(host, port)
    return server
