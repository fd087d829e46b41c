"""The Noise Protocol Framework, revision 34, as a sans-IO core (bytes in, bytes out).

Scallop runs ``Noise_IX_25519_ChaChaPoly_BLAKE2b``. The PyPI ``noiseprotocol`` package has not
been maintained since 2020, so reef implements the specification itself on primitives that are
kept: ``cryptography`` (X25519/X448, ChaCha20-Poly1305, AES-GCM) and ``hashlib`` (SHA-2, BLAKE2,
with the standard-library HMAC of RFC 2104). The objects follow the spec's §5 one to one:

* :class:`CipherState` (§5.1): a key ``k`` and a 64-bit nonce ``n``;
* :class:`SymmetricState` (§5.2): the chaining key ``ck`` and handshake hash ``h``;
* :class:`HandshakeState` (§5.3): the token-by-token processing of a handshake pattern (§7).

Besides IX, the one-way, interactive and deferred patterns (§7.4, §7.5, §18) and the ``psk``
modifiers (§9) are supported with every DH, cipher and hash function of §12, because the same
code covers them at little cost and the published vectors for them exercise this core further.
The ``fallback`` and ``hfs`` modifiers are not; :meth:`NoiseProtocol.from_name` refuses them with
:class:`NotSupportedError`.

Nothing here reads the clock or does I/O; ephemeral keys come from an injectable ``rng``.

One module (about 670 lines): the Noise protocol framework's CipherState, SymmetricState and
HandshakeState are specified together (Noise rev. 34 §5) and tested together with the
published vectors; splitting them would split the specification.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import x448, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from reef.errors import ChannelBrokenError, HandshakeError, InputError, MisuseError

__all__ = [
    "MAX_MESSAGE_LEN",
    "TAG_LEN",
    "CipherState",
    "HandshakeState",
    "NoiseProtocol",
    "NotSupportedError",
    "SymmetricState",
]

MAX_MESSAGE_LEN: Final = 65535
"""The largest Noise message, handshake or transport (spec §3)."""

TAG_LEN: Final = 16
"""The AEAD authentication tag appended to every encrypted payload."""

_MAX_NONCE: Final = 2**64 - 1  # reserved by §5.1: never used to encrypt a message


class NotSupportedError(InputError):
    """A Noise protocol name reef does not implement (a modifier, an unknown function)."""


# --- crypto functions (§12) ----------------------------------------------------------------------


_PrivateKey = x25519.X25519PrivateKey | x448.X448PrivateKey


@dataclass(frozen=True)
class _DH:
    name: str
    dhlen: int

    def load(self, secret: bytes) -> _PrivateKey:
        """A key object for ``secret``; loading computes the public key, so it is done once."""
        if len(secret) != self.dhlen:
            raise InputError(f"a {self.name} secret key is {self.dhlen} bytes, got {len(secret)}")
        if self.dhlen == 32:
            return x25519.X25519PrivateKey.from_private_bytes(secret)
        return x448.X448PrivateKey.from_private_bytes(secret)

    def public_key(self, key: _PrivateKey) -> bytes:
        return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def dh(self, key: _PrivateKey, public: bytes) -> bytes:
        if len(public) != self.dhlen:
            raise HandshakeError(
                f"a {self.name} public key is {self.dhlen} bytes, got {len(public)}"
            )
        try:
            if isinstance(key, x25519.X25519PrivateKey):
                return key.exchange(x25519.X25519PublicKey.from_public_bytes(public))
            return key.exchange(x448.X448PublicKey.from_public_bytes(public))
        except ValueError as exc:
            # cryptography refuses low-order points (an all-zero shared secret); §12.1 allows
            # signalling an error for them, and a peer that sends one is not honest.
            raise HandshakeError(
                f"the peer's {self.name} public key is invalid (low-order point)"
            ) from exc


@dataclass(frozen=True)
class _Cipher:
    name: str
    nonce_order: Literal["little", "big"]  # ChaChaPoly: little-endian n; AESGCM: big-endian n

    def make(self, key: bytes) -> ChaCha20Poly1305 | AESGCM:
        return ChaCha20Poly1305(key) if self.name == "ChaChaPoly" else AESGCM(key)

    def nonce(self, n: int) -> bytes:
        return b"\x00\x00\x00\x00" + n.to_bytes(8, self.nonce_order)


@dataclass(frozen=True)
class _Hash:
    name: str
    hashlen: int
    algorithm: str  # hashlib name; hmac uses the algorithm's own block size (BLOCKLEN)

    def hash(self, data: bytes) -> bytes:
        return hashlib.new(self.algorithm, data).digest()

    def hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, self.algorithm)

    def hkdf(self, chaining_key: bytes, ikm: bytes, outputs: int) -> list[bytes]:
        temp_key = self.hmac(chaining_key, ikm)
        out: list[bytes] = []
        previous = b""
        for i in range(1, outputs + 1):
            previous = self.hmac(temp_key, previous + bytes([i]))
            out.append(previous)
        return out


_DHS: Final = {"25519": _DH("25519", 32), "448": _DH("448", 56)}
_CIPHERS: Final = {
    "ChaChaPoly": _Cipher("ChaChaPoly", "little"),
    "AESGCM": _Cipher("AESGCM", "big"),
}
_HASHES: Final = {
    "SHA256": _Hash("SHA256", 32, "sha256"),
    "SHA512": _Hash("SHA512", 64, "sha512"),
    "BLAKE2s": _Hash("BLAKE2s", 32, "blake2s"),
    "BLAKE2b": _Hash("BLAKE2b", 64, "blake2b"),
}

# --- handshake patterns (§7.4 one-way, §7.5 interactive) ---------------------------------------

Token = Literal["e", "s", "ee", "es", "se", "ss", "psk"]


@dataclass(frozen=True)
class _Pattern:
    initiator_pre: tuple[Token, ...]
    responder_pre: tuple[Token, ...]
    messages: tuple[tuple[Token, ...], ...]

    @property
    def one_way(self) -> bool:
        return len(self.messages) == 1


_PATTERNS: Final[dict[str, _Pattern]] = {
    "N": _Pattern((), ("s",), (("e", "es"),)),
    "K": _Pattern(("s",), ("s",), (("e", "es", "ss"),)),
    "X": _Pattern((), ("s",), (("e", "es", "s", "ss"),)),
    "NN": _Pattern((), (), (("e",), ("e", "ee"))),
    "NK": _Pattern((), ("s",), (("e", "es"), ("e", "ee"))),
    "NX": _Pattern((), (), (("e",), ("e", "ee", "s", "es"))),
    "KN": _Pattern(("s",), (), (("e",), ("e", "ee", "se"))),
    "KK": _Pattern(("s",), ("s",), (("e", "es", "ss"), ("e", "ee", "se"))),
    "KX": _Pattern(("s",), (), (("e",), ("e", "ee", "se", "s", "es"))),
    "XN": _Pattern((), (), (("e",), ("e", "ee"), ("s", "se"))),
    "XK": _Pattern((), ("s",), (("e", "es"), ("e", "ee"), ("s", "se"))),
    "XX": _Pattern((), (), (("e",), ("e", "ee", "s", "es"), ("s", "se"))),
    "IN": _Pattern((), (), (("e", "s"), ("e", "ee", "se"))),
    "IK": _Pattern((), ("s",), (("e", "es", "s", "ss"), ("e", "ee", "se"))),
    "IX": _Pattern((), (), (("e", "s"), ("e", "ee", "se", "s", "es"))),
    # Deferred patterns (§18.1): a DH moved to a later message, marked by "1".
    "NK1": _Pattern((), ("s",), (("e",), ("e", "ee", "es"))),
    "NX1": _Pattern((), (), (("e",), ("e", "ee", "s"), ("es",))),
    "X1N": _Pattern((), (), (("e",), ("e", "ee"), ("s",), ("se",))),
    "X1K": _Pattern((), ("s",), (("e", "es"), ("e", "ee"), ("s",), ("se",))),
    "XK1": _Pattern((), ("s",), (("e",), ("e", "ee", "es"), ("s", "se"))),
    "X1K1": _Pattern((), ("s",), (("e",), ("e", "ee", "es"), ("s",), ("se",))),
    "X1X": _Pattern((), (), (("e",), ("e", "ee", "s", "es"), ("s",), ("se",))),
    "XX1": _Pattern((), (), (("e",), ("e", "ee", "s"), ("es", "s", "se"))),
    "X1X1": _Pattern((), (), (("e",), ("e", "ee", "s"), ("es", "s"), ("se",))),
    "K1N": _Pattern(("s",), (), (("e",), ("e", "ee"), ("se",))),
    "K1K": _Pattern(("s",), ("s",), (("e", "es"), ("e", "ee"), ("se",))),
    "KK1": _Pattern(("s",), ("s",), (("e",), ("e", "ee", "se", "es"))),
    "K1K1": _Pattern(("s",), ("s",), (("e",), ("e", "ee", "es"), ("se",))),
    "K1X": _Pattern(("s",), (), (("e",), ("e", "ee", "s", "es"), ("se",))),
    "KX1": _Pattern(("s",), (), (("e",), ("e", "ee", "se", "s"), ("es",))),
    "K1X1": _Pattern(("s",), (), (("e",), ("e", "ee", "s"), ("se", "es"))),
    "I1N": _Pattern((), (), (("e", "s"), ("e", "ee"), ("se",))),
    "I1K": _Pattern((), ("s",), (("e", "es", "s"), ("e", "ee"), ("se",))),
    "IK1": _Pattern((), ("s",), (("e", "s"), ("e", "ee", "se", "es"))),
    "I1K1": _Pattern((), ("s",), (("e", "s"), ("e", "ee", "es"), ("se",))),
    "I1X": _Pattern((), (), (("e", "s"), ("e", "ee", "s", "es"), ("se",))),
    "IX1": _Pattern((), (), (("e", "s"), ("e", "ee", "se", "s"), ("es",))),
    "I1X1": _Pattern((), (), (("e", "s"), ("e", "ee", "s"), ("se", "es"))),
}


def _with_psks(pattern: _Pattern, modifiers: str, name: str) -> _Pattern:
    """Apply ``psk0+psk2``-style modifiers (§9.2): psk0 opens the first message, pskN ends the
    Nth."""
    messages = [list(m) for m in pattern.messages]
    for modifier in modifiers.split("+"):
        digits = modifier.removeprefix("psk")
        # isascii: str.isdigit also takes digits such as "²", which int() refuses.
        if not modifier.startswith("psk") or not (digits.isascii() and digits.isdigit()):
            raise NotSupportedError(f"modifier {modifier!r} in {name!r} is not supported")
        position = int(digits)
        if position > len(messages):
            raise NotSupportedError(f"{name!r}: {modifier} is past the last message")
        if position == 0:
            messages[0].insert(0, "psk")
        else:
            messages[position - 1].append("psk")
    return _Pattern(pattern.initiator_pre, pattern.responder_pre, tuple(tuple(m) for m in messages))


def _parse_pattern(pattern_name: str) -> _Pattern:
    base = pattern_name
    modifiers = ""
    if "psk" in pattern_name:
        split = pattern_name.index("psk")
        base, modifiers = pattern_name[:split], pattern_name[split:]
    pattern = _PATTERNS.get(base)
    if pattern is None:
        raise NotSupportedError(
            f"handshake pattern {pattern_name!r} is not supported",
            hint="reef implements the fundamental and deferred patterns, with psk modifiers",
        )
    return _with_psks(pattern, modifiers, pattern_name) if modifiers else pattern


@dataclass(frozen=True)
class NoiseProtocol:
    """A concrete Noise protocol: a handshake pattern and its DH, cipher and hash functions."""

    name: str
    pattern_name: str
    _pattern: _Pattern
    _dh: _DH
    _cipher: _Cipher
    _hash: _Hash

    @classmethod
    def from_name(cls, name: str) -> NoiseProtocol:
        """Parse a protocol name such as ``Noise_IX_25519_ChaChaPoly_BLAKE2b`` (spec §8).

        Raises:
            NotSupportedError: the name is malformed, or uses a pattern, modifier or function
                reef does not implement.
        """
        parts = name.split("_")
        if len(parts) != 5 or parts[0] != "Noise":
            raise NotSupportedError(
                f"{name!r} is not a Noise protocol name",
                hint="expected Noise_<pattern>_<dh>_<cipher>_<hash>",
            )
        _, pattern_name, dh, cipher, hash_name = parts
        pattern = _parse_pattern(pattern_name)
        for value, table, what in (
            (dh, _DHS, "DH function"),
            (cipher, _CIPHERS, "cipher"),
            (hash_name, _HASHES, "hash"),
        ):
            if value not in table:
                raise NotSupportedError(
                    f"{what} {value!r} is not supported", hint=f"choose one of {', '.join(table)}"
                )
        return cls(name, pattern_name, pattern, _DHS[dh], _CIPHERS[cipher], _HASHES[hash_name])

    @property
    def dhlen(self) -> int:
        """The length of public keys and DH outputs (32 for 25519)."""
        return self._dh.dhlen

    @property
    def hashlen(self) -> int:
        """The length of the handshake hash (64 for BLAKE2b)."""
        return self._hash.hashlen

    @property
    def one_way(self) -> bool:
        """True for N, K and X: only the initiator ever sends."""
        return self._pattern.one_way

    @property
    def psk_count(self) -> int:
        """How many pre-shared keys the pattern's psk modifiers consume."""
        return sum(message.count("psk") for message in self._pattern.messages)

    def public_key(self, secret: bytes) -> bytes:
        """The DH public key of ``secret``."""
        return self._dh.public_key(self._dh.load(secret))


# --- CipherState (§5.1) ---------------------------------------------------------------------------


class CipherState:
    """An AEAD key and the nonce counter of one direction.

    Before :meth:`initialize_key` the state has no key and passes plaintext through, as §5.1
    requires during the first handshake messages.
    """

    __slots__ = ("_aead", "_cipher", "_key", "n")

    def __init__(self, cipher: _Cipher, key: bytes | None = None) -> None:
        self._cipher = cipher
        self._key: bytes | None = None
        self._aead: ChaCha20Poly1305 | AESGCM | None = None
        self.n = 0
        if key is not None:
            self.initialize_key(key)

    def initialize_key(self, key: bytes) -> None:
        """Set ``k`` (32 bytes) and reset ``n`` to zero."""
        if len(key) != 32:
            raise InputError(f"a Noise cipher key is 32 bytes, got {len(key)}")
        self._key = key
        self._aead = self._cipher.make(key)
        self.n = 0

    def has_key(self) -> bool:
        """Whether a key is set."""
        return self._aead is not None

    def set_nonce(self, n: int) -> None:
        """Set ``n`` (for protocols that carry explicit nonces; Scallop never does)."""
        if not 0 <= n <= _MAX_NONCE:
            raise InputError(f"a Noise nonce is a 64-bit counter, got {n}")
        self.n = n

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        """Encrypt under the next nonce; without a key return the plaintext.

        Raises:
            ChannelBrokenError: the nonce space is used up (2^64-1 messages).
        """
        if self._aead is None:
            return bytes(plaintext)
        nonce = self._next_nonce()
        out = self._aead.encrypt(nonce, plaintext, ad)
        self.n += 1
        return out

    def encrypt_into(self, ad: bytes, plaintext: bytes | memoryview, out: memoryview) -> None:
        """Encrypt into ``out`` (exactly ``len(plaintext) + 16`` bytes), avoiding a copy.

        The record layer uses this to place ciphertext right after its length prefix.
        """
        if self._aead is None:
            raise MisuseError("encrypt_into needs a keyed CipherState")
        nonce = self._next_nonce()
        self._aead.encrypt_into(nonce, plaintext, ad, out)
        self.n += 1

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """Decrypt and authenticate under the next nonce; without a key return the input.

        On failure ``n`` is left unchanged (§5.1).

        Raises:
            ChannelBrokenError: authentication failed (modified, replayed or misdirected data),
                or the nonce space is used up.
        """
        if self._aead is None:
            return bytes(ciphertext)
        nonce = self._next_nonce()
        try:
            out = self._aead.decrypt(nonce, ciphertext, ad)
        except InvalidTag as exc:
            raise ChannelBrokenError(
                f"a message failed authentication at nonce {self.n}",
                hint="the data was modified, replayed or reordered in transit",
            ) from exc
        self.n += 1
        return out

    def rekey(self) -> None:
        """Replace ``k`` with ``REKEY(k)`` (§4.2, §11.3); ``n`` is kept."""
        if self._aead is None:
            raise MisuseError("rekey needs a keyed CipherState")
        nonce = self._cipher.nonce(_MAX_NONCE)
        new_key = self._aead.encrypt(nonce, bytes(32), b"")[:32]
        n = self.n
        self.initialize_key(new_key)
        self.n = n

    def _next_nonce(self) -> bytes:
        if self.n >= _MAX_NONCE:
            raise ChannelBrokenError(
                "the channel's nonce counter is exhausted", hint="open a new channel"
            )
        return self._cipher.nonce(self.n)


# --- SymmetricState (§5.2) ------------------------------------------------------------------------


class SymmetricState:
    """The chaining key ``ck``, the handshake hash ``h`` and the handshake's CipherState."""

    def __init__(self, protocol: NoiseProtocol) -> None:
        self._hash = protocol._hash
        self._cipher = protocol._cipher
        name = protocol.name.encode()
        if len(name) <= self._hash.hashlen:
            self.h = name + bytes(self._hash.hashlen - len(name))
        else:
            self.h = self._hash.hash(name)
        self.ck = self.h
        self.cipher_state = CipherState(self._cipher)

    def mix_key(self, ikm: bytes) -> None:
        """``ck, temp_k = HKDF(ck, ikm, 2)``; key the cipher with ``temp_k`` (truncated to 32)."""
        self.ck, temp_k = self._hash.hkdf(self.ck, ikm, 2)
        self.cipher_state.initialize_key(temp_k[:32])

    def mix_hash(self, data: bytes) -> None:
        """``h = HASH(h || data)``."""
        self.h = self._hash.hash(self.h + data)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        """The PSK step of §5.2: mix ``ikm`` into the chaining key, the hash and the key."""
        self.ck, temp_h, temp_k = self._hash.hkdf(self.ck, ikm, 3)
        self.mix_hash(temp_h)
        self.cipher_state.initialize_key(temp_k[:32])

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """Encrypt with ``h`` as associated data, then mix the ciphertext into ``h``."""
        ciphertext = self.cipher_state.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """Decrypt with ``h`` as associated data, then mix the ciphertext into ``h``."""
        plaintext = self.cipher_state.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """The two transport CipherStates: initiator→responder, then responder→initiator."""
        temp_k1, temp_k2 = self._hash.hkdf(self.ck, b"", 2)
        return CipherState(self._cipher, temp_k1[:32]), CipherState(self._cipher, temp_k2[:32])


# --- HandshakeState (§5.3) ------------------------------------------------------------------------


class HandshakeState:
    """One party's side of a Noise handshake: write and read messages until :attr:`complete`.

    Args:
        protocol: the protocol (pattern and functions).
        initiator: which role this party plays.
        prologue: data both parties must agree on (bound into the handshake hash).
        s: our static secret key, if the pattern uses one.
        e: a fixed ephemeral secret key; only test vectors set it (never reuse ephemerals).
        rs: the peer's static public key, for patterns where it is known in advance.
        re: the peer's ephemeral public key (pre-messages; unused by supported patterns).
        psks: the 32-byte pre-shared keys a ``psk`` pattern consumes, in order.
        rng: where fresh ephemeral secrets come from.

    After a failed :meth:`read_message` the handshake is dead: start a new one.
    """

    def __init__(
        self,
        protocol: NoiseProtocol,
        *,
        initiator: bool,
        prologue: bytes = b"",
        s: bytes | None = None,
        e: bytes | None = None,
        rs: bytes | None = None,
        re: bytes | None = None,
        psks: Sequence[bytes] = (),
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(psks) != protocol.psk_count or any(len(k) != 32 for k in psks):
            raise MisuseError(
                f"{protocol.pattern_name} needs {protocol.psk_count} pre-shared keys of 32 bytes, "
                f"got {len(psks)}"
            )
        self._psks = list(psks)
        # In psk mode an ephemeral key is also mixed into the key (§9.2), so that encryption
        # with a psk-derived key never happens without a fresh ephemeral.
        self._psk_mode = protocol.psk_count > 0
        self.protocol = protocol
        self.initiator = initiator
        self._dh = protocol._dh
        self._rng = rng
        self._s = self._dh.load(s) if s is not None else None
        self._s_pub = self._dh.public_key(self._s) if self._s is not None else None
        self._e = self._dh.load(e) if e is not None else None
        self._e_pub: bytes | None = None
        self.rs = rs
        self.re = re
        self._symmetric = SymmetricState(protocol)
        self._symmetric.mix_hash(prologue)
        pattern = protocol._pattern
        # Pre-messages (§5.3): the initiator's keys are hashed first, then the responder's.
        for owner_is_initiator, tokens in (
            (True, pattern.initiator_pre),
            (False, pattern.responder_pre),
        ):
            for _token in tokens:
                key = self._s_pub if owner_is_initiator == initiator else self.rs
                if key is None:
                    who = "our" if owner_is_initiator == initiator else "the peer's"
                    raise MisuseError(
                        f"{protocol.pattern_name} needs {who} static key before the handshake"
                    )
                self._symmetric.mix_hash(key)
        self._messages: Sequence[tuple[Token, ...]] = pattern.messages
        self._index = 0
        self._failed = False
        self._transport: tuple[CipherState, CipherState] | None = None

    # -- state --

    @property
    def complete(self) -> bool:
        """Whether every handshake message has been written or read."""
        return self._transport is not None

    @property
    def handshake_hash(self) -> bytes:
        """``h``: after completion, a unique identifier of this session (channel binding)."""
        return self._symmetric.h

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static public key, once received (or given in advance)."""
        return self.rs

    @property
    def local_static(self) -> bytes | None:
        """Our static public key."""
        return self._s_pub

    def is_my_turn(self) -> bool:
        """Whether the next handshake message is ours to write."""
        return (self._index % 2 == 0) == self.initiator

    def transport(self) -> tuple[CipherState, CipherState]:
        """The transport ciphers ``(send, receive)`` after completion (§5.3 Split)."""
        if self._transport is None:
            raise MisuseError("the handshake is not complete yet")
        c1, c2 = self._transport
        return (c1, c2) if self.initiator else (c2, c1)

    # -- messages --

    def write_message(self, payload: bytes = b"") -> bytes:
        """Write the next handshake message carrying ``payload``.

        Raises:
            MisuseError: it is not our turn, the handshake is over or has failed.
            InputError: the message would exceed 65535 bytes.
        """
        tokens = self._next_tokens(writing=True)
        sym = self._symmetric
        out = bytearray()
        for op in tokens:
            if op == "e":
                if self._e is None:
                    self._e = self._dh.load(self._rng(self._dh.dhlen))
                self._e_pub = self._dh.public_key(self._e)
                out += self._e_pub
                sym.mix_hash(self._e_pub)
                if self._psk_mode:
                    sym.mix_key(self._e_pub)
            elif op == "psk":
                sym.mix_key_and_hash(self._psks.pop(0))
            elif op == "s":
                if self._s_pub is None:
                    raise MisuseError(f"{self.protocol.pattern_name} needs our static key")
                out += sym.encrypt_and_hash(self._s_pub)
            else:
                sym.mix_key(self._dh_token(op))
        out += sym.encrypt_and_hash(payload)
        if len(out) > MAX_MESSAGE_LEN:
            self._failed = True
            raise InputError(
                f"a Noise message is at most {MAX_MESSAGE_LEN} bytes, this one is {len(out)}"
            )
        self._advance()
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        """Read the peer's next handshake message and return its payload.

        Raises:
            HandshakeError: the message is malformed, too short, fails authentication or
                carries an invalid public key. The handshake cannot continue after this.
            MisuseError: it is not the peer's turn, or the handshake is over.
        """
        tokens = self._next_tokens(writing=False)
        if len(message) > MAX_MESSAGE_LEN:
            self._failed = True
            raise HandshakeError(f"a Noise message is at most {MAX_MESSAGE_LEN} bytes")
        sym = self._symmetric
        dhlen = self._dh.dhlen
        view = memoryview(message)
        try:
            for op in tokens:
                if op == "e":
                    if len(view) < dhlen:
                        raise HandshakeError(
                            "the handshake message is too short for an ephemeral key"
                        )
                    self.re = bytes(view[:dhlen])
                    view = view[dhlen:]
                    sym.mix_hash(self.re)
                    if self._psk_mode:
                        sym.mix_key(self.re)
                elif op == "psk":
                    sym.mix_key_and_hash(self._psks.pop(0))
                elif op == "s":
                    size = dhlen + (TAG_LEN if sym.cipher_state.has_key() else 0)
                    if len(view) < size:
                        raise HandshakeError("the handshake message is too short for a static key")
                    self.rs = sym.decrypt_and_hash(bytes(view[:size]))
                    view = view[size:]
                else:
                    sym.mix_key(self._dh_token(op))
            if sym.cipher_state.has_key() and len(view) < TAG_LEN:
                raise HandshakeError("the handshake message is too short for its payload tag")
            payload = sym.decrypt_and_hash(bytes(view))
        except ChannelBrokenError as exc:
            self._failed = True
            raise HandshakeError(
                "a handshake message failed authentication",
                hint="the peer uses different keys, prologue or protocol, or the data was modified",
            ) from exc
        except HandshakeError:
            self._failed = True
            raise
        self._advance()
        return payload

    # -- internals --

    def _next_tokens(self, *, writing: bool) -> tuple[Token, ...]:
        if self._failed:
            raise MisuseError("this handshake failed earlier; start a new one")
        if self._transport is not None or self._index >= len(self._messages):
            raise MisuseError("the handshake is already complete")
        if self.is_my_turn() != writing:
            action = "write" if writing else "read"
            raise MisuseError(f"it is not our turn to {action} handshake message {self._index + 1}")
        return self._messages[self._index]

    def _advance(self) -> None:
        self._index += 1
        if self._index == len(self._messages):
            self._transport = self._symmetric.split()

    def _dh_token(self, token: Token) -> bytes:
        # "es" is DH(initiator's e, responder's s); "se" is DH(initiator's s, responder's e).
        first, second = token[0], token[1]
        mine = first if self.initiator else second
        theirs = second if self.initiator else first
        secret = self._e if mine == "e" else self._s
        public = self.re if theirs == "e" else self.rs
        if secret is None or public is None:
            raise MisuseError(f"token {token!r} needs keys this handshake does not have")
        return self._dh.dh(secret, public)
