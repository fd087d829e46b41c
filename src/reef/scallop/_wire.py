"""Scallop's wire protocol as sans-IO state machines (reference oyster_cvm.md §6.4).

Scallop is ``Noise_IX_25519_ChaChaPoly_BLAKE2b`` framed as NoiseSocket, followed by one
exchange of optional attestations. Every length is a big-endian u16::

    C→S  handshake 1   00 00 ‖ len ‖ noise(-> e, s)                         len == 64
    S→C  handshake 2   00 00 ‖ len ‖ noise(<- e, ee, se, s, es; 00 01 F)    len == 99
    C→S  CLIENTFIN     len ‖ enc(A ‖ u16 n ‖ attestation[n])                 n > 0 only if F
    S→C  SERVERFIN     len ‖ enc(u16 n ‖ attestation[n])                     only if A
    both records       len ‖ enc(data)                                       data ≤ 64000 bytes

The prologue is NoiseSocket's ``"NoiseSocketInit1" ‖ u16 negotiation length`` with empty
negotiation data. ``F`` is the server asking for the client's attestation, ``A`` the client
asking for the server's. Message sizes equal Oyster's, so a reef client talks to an Oyster
enclave and back.

Each machine is fed bytes (:meth:`receive_data`) and asked for events (:meth:`next_event`); it
never does I/O, never verifies an attestation and never reads a clock: the decisions (whether to
ask for an attestation, whether one is acceptable) stay with the caller. Every length is checked
*before* its body is awaited, so a peer cannot make us buffer more than the step allows.
"""

from __future__ import annotations

import abc
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Final

from reef.errors import ChannelBrokenError, HandshakeError, InputError, MisuseError
from reef.scallop._noise import TAG_LEN, CipherState, HandshakeState, NoiseProtocol

__all__ = [
    "HANDSHAKE1_LEN",
    "HANDSHAKE2_LEN",
    "MAX_ATTESTATION_LEN",
    "MAX_RECORD_LEN",
    "MAX_RECORD_PLAINTEXT",
    "PROLOGUE",
    "PROTOCOL_NAME",
    "AttestationReceived",
    "ClientFinished",
    "ClientHandshake",
    "ClientHello",
    "Established",
    "Event",
    "NeedData",
    "RecordLayer",
    "ServerHandshake",
    "ServerHello",
]

PROTOCOL_NAME: Final = "Noise_IX_25519_ChaChaPoly_BLAKE2b"
PROLOGUE: Final = b"NoiseSocketInit1\x00\x00"
HANDSHAKE1_LEN: Final = 64  # e 32 ‖ s 32, both in clear; the payload is empty
HANDSHAKE2_LEN: Final = 99  # e 32 ‖ enc(s) 48 ‖ enc(00 01 F) 19
MAX_ATTESTATION_LEN: Final = 60000
MAX_RECORD_PLAINTEXT: Final = 64000
MAX_RECORD_LEN: Final = MAX_RECORD_PLAINTEXT + TAG_LEN
_CLIENTFIN_MIN: Final = 3 + TAG_LEN
_CLIENTFIN_MAX: Final = 3 + MAX_ATTESTATION_LEN + TAG_LEN
_SERVERFIN_MIN: Final = 2 + TAG_LEN
_SERVERFIN_MAX: Final = 2 + MAX_ATTESTATION_LEN + TAG_LEN

_U16: Final = struct.Struct(">H")


# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NeedData:
    """The machine needs ``size`` more bytes from the peer before it can go on."""

    size: int


@dataclass(frozen=True)
class ClientHello:
    """Server side: handshake 1 arrived. Decide with :meth:`ServerHandshake.send_hello`."""

    peer_static: bytes


@dataclass(frozen=True)
class ServerHello:
    """Client side: handshake 2 arrived. Answer with :meth:`ClientHandshake.send_finish`."""

    peer_static: bytes
    attestation_requested: bool


@dataclass(frozen=True)
class ClientFinished:
    """Server side: CLIENTFIN arrived, with the client's attestation if the server asked."""

    attestation: bytes
    attestation_requested: bool  # the client wants the server's attestation (SERVERFIN)


@dataclass(frozen=True)
class AttestationReceived:
    """Client side: SERVERFIN arrived with the server's attestation."""

    attestation: bytes


@dataclass(frozen=True)
class Established:
    """The handshake is over: take the :class:`RecordLayer` with ``transport()``."""


Event = NeedData | ClientHello | ServerHello | ClientFinished | AttestationReceived | Established


# --- framing helpers -----------------------------------------------------------------------------


class _Buffer:
    """Bytes received and not consumed yet."""

    def __init__(self) -> None:
        self.data = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data

    def peek_u16(self, offset: int = 0) -> int | None:
        if len(self.data) < offset + 2:
            return None
        value: int = _U16.unpack_from(self.data, offset)[0]
        return value

    def take(self, size: int) -> bytes:
        out = bytes(self.data[:size])
        del self.data[:size]
        return out


def _length_error(what: str, size: int, expected: str) -> HandshakeError:
    return HandshakeError(
        f"{what} is {size} bytes; Scallop's is {expected}",
        hint="the peer does not speak Scallop (Noise_IX_25519_ChaChaPoly_BLAKE2b over NoiseSocket)",
    )


def _new_handshake(
    *, initiator: bool, static_key: bytes, rng: Callable[[int], bytes]
) -> HandshakeState:
    if len(static_key) != 32:
        raise InputError(f"a Scallop static key is a 32-byte X25519 secret, got {len(static_key)}")
    return HandshakeState(
        NoiseProtocol.from_name(PROTOCOL_NAME),
        initiator=initiator,
        prologue=PROLOGUE,
        s=static_key,
        rng=rng,
    )


# --- the two sides ------------------------------------------------------------------------------


class _Handshake(abc.ABC):
    """What both sides of a Scallop handshake share: the Noise state, the bytes received and not
    consumed yet, the transport ciphers once split, and the step the machine is at (``_state``).

    A machine that raises a :class:`~reef.errors.HandshakeError` moves to ``"failed"`` and
    answers nothing more.
    """

    def __init__(
        self, static_key: bytes, *, initiator: bool, rng: Callable[[int], bytes], state: str
    ) -> None:
        self._noise = _new_handshake(initiator=initiator, static_key=static_key, rng=rng)
        self._buffer = _Buffer()
        self._state = state
        self._send: CipherState | None = None
        self._recv: CipherState | None = None

    @property
    def handshake_hash(self) -> bytes:
        """The Noise handshake hash (final once handshake 2 is written or read)."""
        return self._noise.handshake_hash

    @property
    def peer_static(self) -> bytes | None:
        """The peer's static public key, once its handshake message is read."""
        return self._noise.remote_static

    @property
    def local_static(self) -> bytes:
        """Our static public key."""
        key = self._noise.local_static
        assert key is not None
        return key

    _WAITING: ClassVar[Mapping[str, str]] = {}
    """States in which the machine waits for a call of ours, and what to call."""

    @abc.abstractmethod
    def _reads(self) -> dict[str, Callable[[], Event]]:
        """The states in which the machine waits for the peer, and the step that reads it."""

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from the peer."""
        self._buffer.feed(data)

    def next_event(self) -> Event:
        """What happened, or :class:`NeedData` with how many more bytes are needed.

        Raises:
            HandshakeError: the peer sent something Scallop does not allow.
            MisuseError: the machine waits for a call of ours (or has failed, or is done).
        """
        if self._state == "done":
            return Established()
        read = self._reads().get(self._state)
        if read is not None:
            return read()
        waiting = self._WAITING.get(self._state)
        raise MisuseError(waiting or f"no event to read in handshake state {self._state!r}")

    def transport(self) -> RecordLayer:
        """The record layer, with any bytes that arrived after the handshake already fed."""
        self._expect("done", "transport")
        assert self._send is not None
        assert self._recv is not None
        self._state = "taken"
        records = RecordLayer(self._send, self._recv)
        records.receive_data(self._buffer.take(len(self._buffer.data)))
        return records

    def _expect(self, state: str, action: str) -> None:
        if self._state != state:
            raise MisuseError(f"cannot {action} in handshake state {self._state!r}")

    def _fail(self, error: HandshakeError) -> HandshakeError:
        self._state = "failed"
        return error

    def _write_handshake(self, payload: bytes) -> bytes:
        """A NoiseSocket handshake frame: ``00 00 ‖ len ‖ noise message``."""
        message = self._noise.write_message(payload)
        return b"\x00\x00" + _U16.pack(len(message)) + message

    def _read_handshake(self, size_wanted: int, what: str, peer: str) -> bytes | NeedData:
        """The payload of the peer's NoiseSocket handshake frame, once all of it arrived.

        Both lengths are checked before the message is awaited: Scallop's are fixed.
        """
        buf = self._buffer
        negotiation = buf.peek_u16(0)
        if negotiation is None:
            return NeedData(4 - len(buf.data))
        if negotiation != 0:
            raise self._fail(_length_error(f"the {peer}'s negotiation data", negotiation, "0"))
        size = buf.peek_u16(2)
        if size is None:
            return NeedData(4 - len(buf.data))
        if size != size_wanted:
            raise self._fail(_length_error(what, size, str(size_wanted)))
        if len(buf.data) < 4 + size:
            return NeedData(4 + size - len(buf.data))
        buf.take(4)
        try:
            return self._noise.read_message(buf.take(size))
        except HandshakeError:
            self._state = "failed"
            raise

    def _seal_finish(self, plaintext: bytes) -> bytes:
        """CLIENTFIN or SERVERFIN: ``len ‖ enc(plaintext)``."""
        assert self._send is not None
        ciphertext = self._send.encrypt_with_ad(b"", plaintext)
        return _U16.pack(len(ciphertext)) + ciphertext

    def _open_finish(
        self, minimum: int, maximum: int, what: str, *, length_at: int
    ) -> bytes | NeedData:
        """The plaintext of the peer's CLIENTFIN or SERVERFIN, length checked before the body;
        the attestation length it declares (a u16 at ``length_at``, the attestation after it)
        checked against the bytes it carries."""
        assert self._recv is not None
        buf = self._buffer
        size = buf.peek_u16(0)
        if size is None:
            return NeedData(2 - len(buf.data))
        if not minimum <= size <= maximum:
            raise self._fail(
                HandshakeError(
                    f"{what} is {size} bytes; Scallop's is {minimum} to {maximum}",
                    hint="the peer does not speak Scallop, or its attestation is too large",
                )
            )
        if len(buf.data) < 2 + size:
            return NeedData(2 + size - len(buf.data))
        buf.take(2)
        try:
            plaintext = self._recv.decrypt_with_ad(b"", buf.take(size))
        except ChannelBrokenError as exc:
            raise self._fail(
                HandshakeError(f"the handshake failed: {exc.message}", hint=exc.hint)
            ) from exc
        declared = _U16.unpack_from(plaintext, length_at)[0]
        carried = len(plaintext) - length_at - 2
        if declared != carried:
            raise self._fail(
                HandshakeError(
                    f"{what} declares a {declared}-byte attestation but carries {carried}"
                )
            )
        return plaintext

    def _check_own_attestation(self, attestation: bytes) -> None:
        if len(attestation) > MAX_ATTESTATION_LEN:
            raise self._fail(
                HandshakeError(
                    f"our attestation is {len(attestation)} bytes; Scallop carries at most "
                    f"{MAX_ATTESTATION_LEN}"
                )
            )


class ClientHandshake(_Handshake):
    """The client (Noise initiator) side of a Scallop handshake.

    Flow: ``start()`` → send; feed bytes until :class:`ServerHello`; ``send_finish(...)`` → send;
    if it asked for the server's attestation, feed bytes until :class:`AttestationReceived`;
    then :class:`Established` and ``transport()``.
    """

    def __init__(self, static_key: bytes, *, rng: Callable[[int], bytes] = os.urandom) -> None:
        super().__init__(static_key, initiator=True, rng=rng, state="new")
        self._hello: ServerHello | None = None

    def start(self) -> bytes:
        """Handshake 1, to send first."""
        self._expect("new", "start")
        frame = self._write_handshake(b"")
        self._state = "await_hello"
        return frame

    _WAITING: ClassVar[Mapping[str, str]] = {
        "decide": "the ServerHello was returned already; call send_finish next"
    }

    def _reads(self) -> dict[str, Callable[[], Event]]:
        return {"await_hello": self._read_hello, "await_serverfin": self._read_serverfin}

    def send_finish(self, *, request_attestation: bool, attestation: bytes | None) -> bytes:
        """CLIENTFIN, after :class:`ServerHello`.

        Args:
            request_attestation: ask for the server's attestation (SERVERFIN follows).
            attestation: ours, which must be given exactly when the server asked for it.

        Raises:
            HandshakeError: the server asked for an attestation and there is none, or it is
                larger than Scallop allows.
            MisuseError: called out of order, or with an attestation nobody asked for.
        """
        self._expect("decide", "send_finish")
        hello = self._hello
        assert hello is not None
        if hello.attestation_requested and attestation is None:
            raise self._fail(
                HandshakeError(
                    "the server asks for our attestation and this client has none",
                    hint="pass an auther (a callable returning an attestation of our static key)",
                )
            )
        if not hello.attestation_requested and attestation is not None:
            raise MisuseError("the server did not ask for an attestation; pass attestation=None")
        body = attestation or b""
        self._check_own_attestation(body)
        flag = b"\x01" if request_attestation else b"\x00"
        frame = self._seal_finish(flag + _U16.pack(len(body)) + body)
        self._state = "await_serverfin" if request_attestation else "done"
        return frame

    def _read_hello(self) -> Event:
        payload = self._read_handshake(HANDSHAKE2_LEN, "handshake 2", "server")
        if isinstance(payload, NeedData):
            return payload
        if len(payload) != 3 or payload[:2] != b"\x00\x01":
            raise self._fail(
                HandshakeError(
                    f"handshake 2 carries a {len(payload)}-byte payload {payload.hex()!r}; "
                    "Scallop's is 00 01 F"
                )
            )
        if payload[2] > 1:
            raise self._fail(
                HandshakeError(f"the server's attestation request flag is {payload[2]}, not 0 or 1")
            )
        self._send, self._recv = self._noise.transport()
        peer = self._noise.remote_static
        assert peer is not None
        self._state = "decide"
        self._hello = ServerHello(peer_static=peer, attestation_requested=payload[2] == 1)
        return self._hello

    def _read_serverfin(self) -> Event:
        plaintext = self._open_finish(_SERVERFIN_MIN, _SERVERFIN_MAX, "SERVERFIN", length_at=0)
        if isinstance(plaintext, NeedData):
            return plaintext
        self._state = "done"
        return AttestationReceived(attestation=plaintext[2:])


class ServerHandshake(_Handshake):
    """The server (Noise responder) side of a Scallop handshake.

    Flow: feed bytes until :class:`ClientHello`; ``send_hello(...)`` → send; feed bytes until
    :class:`ClientFinished`; if the client asked, ``send_finish(attestation)`` → send; then
    :class:`Established` and ``transport()``.
    """

    def __init__(self, static_key: bytes, *, rng: Callable[[int], bytes] = os.urandom) -> None:
        super().__init__(static_key, initiator=False, rng=rng, state="await_hello")
        self._asked = False

    _WAITING: ClassVar[Mapping[str, str]] = {
        "decide_hello": "the ClientHello was returned already; call send_hello next",
        "decide_finish": "the client asked for our attestation; call send_finish next",
    }

    def _reads(self) -> dict[str, Callable[[], Event]]:
        return {"await_hello": self._read_hello, "await_clientfin": self._read_clientfin}

    def send_hello(self, *, request_attestation: bool) -> bytes:
        """Handshake 2, after :class:`ClientHello`; ``request_attestation`` sets the flag F."""
        self._expect("decide_hello", "send_hello")
        frame = self._write_handshake(b"\x00\x01" + (b"\x01" if request_attestation else b"\x00"))
        self._send, self._recv = self._noise.transport()
        self._asked = request_attestation
        self._state = "await_clientfin"
        return frame

    def send_finish(self, attestation: bytes) -> bytes:
        """SERVERFIN, only after a :class:`ClientFinished` that asked for it.

        Raises:
            HandshakeError: the attestation is larger than Scallop allows.
        """
        self._expect("decide_finish", "send_finish")
        self._check_own_attestation(attestation)
        frame = self._seal_finish(_U16.pack(len(attestation)) + attestation)
        self._state = "done"
        return frame

    def transport(self) -> RecordLayer:
        """The record layer, with any bytes that arrived after CLIENTFIN already fed."""
        if self._state == "decide_finish":
            raise MisuseError("the client asked for our attestation: call send_finish first")
        return super().transport()

    def _read_hello(self) -> Event:
        payload = self._read_handshake(HANDSHAKE1_LEN, "handshake 1", "client")
        if isinstance(payload, NeedData):
            return payload
        if payload:  # unreachable with a 64-byte message, kept as the spec's explicit check
            raise self._fail(HandshakeError("handshake 1 carries a payload; Scallop's is empty"))
        peer = self._noise.remote_static
        assert peer is not None
        self._state = "decide_hello"
        return ClientHello(peer_static=peer)

    def _read_clientfin(self) -> Event:
        plaintext = self._open_finish(_CLIENTFIN_MIN, _CLIENTFIN_MAX, "CLIENTFIN", length_at=1)
        if isinstance(plaintext, NeedData):
            return plaintext
        flag, attestation = plaintext[0], plaintext[3:]
        if flag > 1:
            raise self._fail(
                HandshakeError(f"the client's attestation request flag is {flag}, not 0 or 1")
            )
        if attestation and not self._asked:
            raise self._fail(
                HandshakeError("the client sent an attestation the server did not ask for")
            )
        self._state = "decide_finish" if flag else "done"
        return ClientFinished(attestation=attestation, attestation_requested=flag == 1)


# --- records -------------------------------------------------------------------------------------


class RecordLayer:
    """Application data after the handshake: ``u16 len ‖ ChaChaPoly(data)`` records.

    Each record carries at most 64000 plaintext bytes, as Oyster writes them; a longer frame is
    refused as oversized before its body is read. Empty records are never written (an Oyster
    reader takes one for end of stream) and are skipped when read.
    """

    def __init__(self, send: CipherState, recv: CipherState) -> None:
        self._send = send
        self._recv = recv
        self._buffer = _Buffer()

    def seal(self, data: bytes | bytearray | memoryview) -> bytearray:
        """Encrypt ``data`` into as many records as needed (no record for empty data).

        The records are written straight into one buffer, each ciphertext after its length
        prefix, so sealing costs the AEAD and nothing more than one allocation.
        """
        view = memoryview(data).cast("B")
        total = len(view)
        if total == 0:
            return bytearray()
        count = -(-total // MAX_RECORD_PLAINTEXT)
        out = bytearray(total + count * (2 + TAG_LEN))
        out_view = memoryview(out)
        position = 0
        for start in range(0, total, MAX_RECORD_PLAINTEXT):
            chunk = view[start : start + MAX_RECORD_PLAINTEXT]
            size = len(chunk) + TAG_LEN
            _U16.pack_into(out, position, size)
            self._send.encrypt_into(b"", chunk, out_view[position + 2 : position + 2 + size])
            position += 2 + size
        return out

    @staticmethod
    def check_length(size: int) -> None:
        """Validate a record's length prefix before reading its body.

        Raises:
            ChannelBrokenError: the frame is oversized or shorter than a tag.
        """
        if size > MAX_RECORD_LEN:
            raise ChannelBrokenError(
                f"the peer sent a {size}-byte record; Scallop records are at most {MAX_RECORD_LEN}",
                hint="the peer is not a Scallop implementation, or is misbehaving",
            )
        if size < TAG_LEN:
            raise ChannelBrokenError(f"the peer sent a {size}-byte record, shorter than its tag")

    def open(self, ciphertext: bytes) -> bytes:
        """Decrypt one record's body (the length prefix already consumed and checked).

        Raises:
            ChannelBrokenError: the record was modified, replayed, reordered or truncated.
        """
        return self._recv.decrypt_with_ad(b"", ciphertext)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes from the peer for :meth:`next_record`."""
        if data:
            self._buffer.feed(data)

    def next_record(self) -> bytes | NeedData:
        """The next non-empty record's plaintext, or :class:`NeedData`.

        Raises:
            ChannelBrokenError: an oversized or corrupt record.
        """
        buf = self._buffer
        while True:
            size = buf.peek_u16(0)
            if size is None:
                return NeedData(2 - len(buf.data))
            self.check_length(size)
            if len(buf.data) < 2 + size:
                return NeedData(2 + size - len(buf.data))
            buf.take(2)
            plaintext = self.open(buf.take(size))
            if plaintext:
                return plaintext

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as records (non-zero at EOF means truncation)."""
        return len(self._buffer.data)
