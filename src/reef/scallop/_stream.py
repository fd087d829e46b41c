"""The :class:`ScallopStream`: an established Scallop channel with the asyncio-stream API.

After the handshake (``_handshake``) a stream reads and writes Scallop records: each read takes a
length prefix, checks it (at most 64016 bytes) before awaiting the body, and authenticates and
decrypts the body; each write encrypts into records of at most 64000 plaintext bytes. A record
that fails (modified, replayed, reordered, oversized, cut short) breaks the channel: it is closed
at once, the reason logged on the ``reef.scallop`` logger, and every later call raises the same
:class:`~reef.errors.ChannelBrokenError`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn, Self

from reef.errors import ChannelBrokenError, ChannelClosedError, MisuseError
from reef.scallop._wire import RecordLayer

if TYPE_CHECKING:
    from reef.attestation import VerifiedAttestation

__all__ = ["AuthKind", "ScallopPeer", "ScallopStream"]

logger = logging.getLogger("reef.scallop")

_U16: Final = struct.Struct(">H")

AuthKind = Literal["attested", "cached", "pinned", "none"]
"""How the peer's static key came to be trusted: it attested during this handshake, the auth
store remembered an earlier attestation, the store approves the key as such, or no policy."""


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


class _Closing(abc.ABC):
    """An async resource ``async with`` closes: ``__aexit__`` awaits :meth:`aclose`."""

    @abc.abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class ScallopStream(_Closing):
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
        self._check_open()
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

    def _fail(self, error: ChannelBrokenError) -> NoReturn:
        """Close at once and remember why; raises ``error``."""
        self._broken = error
        peer = self.get_extra_info("peername")
        logger.warning("scallop: channel with %s broken: %s", _address(peer), error)
        self._writer.transport.abort()
        raise error

    @contextlib.contextmanager
    def _read_guard(self) -> Iterator[None]:
        if self._reading:
            raise MisuseError(
                "another task is already reading this Scallop stream",
                hint="read from one task at a time",
            )
        self._reading = True
        try:
            yield
        finally:
            self._reading = False

    # -- writing --

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` into records and queue them (``await drain()`` to wait).

        Raises:
            ChannelClosedError: we closed the stream.
            ChannelBrokenError: the channel broke earlier.
        """
        self._check_open()
        frames = self._records.seal(data)
        if frames:
            self._writer.write(frames)

    async def drain(self) -> None:
        """Wait until the transport's buffer is small enough to write more.

        Raises:
            ChannelBrokenError: the connection was lost.
        """
        self._check_open()
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
        self._check_open()
        self._writer.write_eof()

    def _check_open(self) -> None:
        """Raise why the stream cannot be used any more, if it cannot."""
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

    def abort(self) -> None:
        """Close the connection at once, dropping what is not sent yet (idempotent).

        :meth:`close` sends what is buffered first, so a peer that stopped reading keeps a
        closed stream's connection open for as long as it likes; a server drops such a peer
        with this instead.
        """
        self._closed = True
        self._writer.transport.abort()

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
