"""Private inputs: how a requester hides them from the chain and only the assigned prover reads them.

The formats are Kalypso's (reference kalypso.md §8), so its SDK's asks decrypt here and ours there:

* the secret (a JSON object of private signal values) is deflated (zlib), then sealed with
  AES-256-GCM under a fresh random 32-byte key: ``iv(12) || ciphertext || tag(16)``, with the
  **market id as minimal big-endian bytes** as associated data (so a body cannot be replayed
  into another market);
* the AES key travels as an *ACL*: ECIES over secp256k1 to a reader's public key, in the layout
  of Rust ``ecies`` 0.2 / ``eciesjs`` / Python ``eciespy``: ``ephemeral public key (65,
  uncompressed) || nonce(16) || tag(16) || AES-256-GCM(key)``, the AES key being
  HKDF-SHA256(ephemeral point || shared point, both uncompressed), no salt, no info. A 32-byte
  key thus makes a 129-byte ACL.

The requester encrypts the ACL to the matching engine's key; at assignment the engine opens it
and re-encrypts the same AES key to the chosen prover's market key (:func:`reencrypt_acl`); the
body on chain is never re-encrypted. Built on ``cryptography`` (HKDF, AES-GCM) and ``coincurve``
(the ECDH point) that reef already depends on, rather than a further ECIES package; the tests
check it against the vectors of Kalypso's own Rust helpers.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import coincurve
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from reef.crypto import Secp256k1PrivateKey, Secp256k1PublicKey
from reef.encoding import json_depth, parse_uint
from reef.errors import InputError, InvalidProofInputError, ProofError, UintInputError

__all__ = [
    "ACL_SIZE",
    "MAX_SECRET_BYTES",
    "MAX_SECRET_PLAINTEXT",
    "EncryptedSecret",
    "decrypt_secret",
    "ecies_decrypt",
    "ecies_encrypt",
    "encrypt_secret",
    "market_aad",
    "open_secret",
    "parse_private_inputs",
    "reencrypt_acl",
]

ACL_SIZE = 129
"""Bytes of an ECIES-encrypted 32-byte AES key (the contract caps an ACL at 130, as Kalypso)."""
MAX_SECRET_BYTES = 4096
"""Largest encrypted body the contract accepts (``ProofMarket.vy``'s ``MAX_SECRET``)."""

MAX_SECRET_PLAINTEXT = 1 << 20
"""Largest inflated body the prover, the engine and the IVS open (1 MiB: a body of at most
:data:`MAX_SECRET_BYTES` holds a few kilobytes of honest JSON, while deflate packs megabytes of
one repeated byte into it)."""
_MAX_DEPTH = 8  # an object of integers nests 1 deep; this leaves room to name what is wrong

_EPHEMERAL = 65
_NONCE = 16
_TAG = 16
_IV = 12

Random = Callable[[int], bytes]


def market_aad(market_id: int) -> bytes:
    """The associated data of a market's bodies: its id as minimal big-endian bytes (0 → b"")."""
    return market_id.to_bytes((market_id.bit_length() + 7) // 8, "big")


def _public_point(public_key: bytes) -> coincurve.PublicKey:
    raw = Secp256k1PublicKey.from_bytes(bytes(public_key)).raw
    return coincurve.PublicKey(b"\x04" + raw)


def _hkdf(master: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=None).derive(master)


def ecies_encrypt(public_key: bytes, plaintext: bytes, *, random: Random = os.urandom) -> bytes:
    """ECIES-encrypt ``plaintext`` to a secp256k1 key (64, 65 or 33 bytes); see the module
    docstring for the layout. ``random`` gives the ephemeral key and nonce (a parameter for
    tests)."""
    receiver = _public_point(public_key)
    ephemeral = coincurve.PrivateKey(Secp256k1PrivateKey(random(32)).secret)
    sender = ephemeral.public_key.format(compressed=False)
    shared = receiver.multiply(ephemeral.secret).format(compressed=False)
    nonce = random(_NONCE)
    sealed = AESGCM(_hkdf(sender + shared)).encrypt(nonce, plaintext, None)
    body, tag = sealed[:-_TAG], sealed[-_TAG:]
    return sender + nonce + tag + body


def ecies_decrypt(private_key: bytes, data: bytes) -> bytes:
    """Open an ECIES ciphertext with a secp256k1 secret key.

    Raises:
        ProofError: not an ECIES ciphertext for this key (wrong key, tampered or truncated).
    """
    secret = Secp256k1PrivateKey(bytes(private_key)).secret
    if len(data) < _EPHEMERAL + _NONCE + _TAG:
        raise ProofError(f"an ECIES ciphertext is at least 97 bytes, got {len(data)}")
    sender, nonce = data[:_EPHEMERAL], data[_EPHEMERAL : _EPHEMERAL + _NONCE]
    tag, body = data[_EPHEMERAL + _NONCE : _EPHEMERAL + _NONCE + _TAG], data[97:]
    try:
        point = coincurve.PublicKey(sender)
    except ValueError as exc:
        raise ProofError("the ECIES ciphertext's ephemeral key is not a curve point") from exc
    shared = point.multiply(secret).format(compressed=False)
    try:
        return AESGCM(_hkdf(point.format(compressed=False) + shared)).decrypt(
            nonce, body + tag, None
        )
    except InvalidTag as exc:
        raise ProofError(
            "the ECIES ciphertext does not open with this key",
            hint="it was encrypted to another key, or altered",
        ) from exc


@dataclass(frozen=True)
class EncryptedSecret:
    """What an ask carries on chain for its private inputs."""

    body: bytes
    """``iv || AES-256-GCM(deflate(secret)) || tag``, associated data the market id."""
    acl: bytes
    """The body's AES key, ECIES-encrypted to one reader (the engine, then the prover)."""


def encrypt_secret(
    secret: bytes, market_id: int, reader_public_key: bytes, *, random: Random = os.urandom
) -> EncryptedSecret:
    """Deflate and seal ``secret`` for ``market_id`` and give its key to ``reader_public_key``.

    Raises:
        InputError: the sealed body is larger than the contract takes.
    """
    key, iv = random(32), random(_IV)
    body = iv + AESGCM(key).encrypt(iv, zlib.compress(secret, 9), market_aad(market_id))
    if len(body) > MAX_SECRET_BYTES:
        raise InputError(
            f"the private inputs take {len(body)} bytes encrypted; the market takes at most "
            f"{MAX_SECRET_BYTES}",
            hint="send fewer or smaller private inputs",
        )
    return EncryptedSecret(body, ecies_encrypt(reader_public_key, key, random=random))


def open_secret(body: bytes, key: bytes, market_id: int) -> bytes:
    """Decrypt and inflate a body with its AES key (what the prover and the IVS do).

    Raises:
        ProofError: the key does not open the body (GCM authenticates: then it is not the
            body's key, or the body is of another market).
        InvalidProofInputError: the key opens the body but it is not deflated data, or
            inflates past :data:`MAX_SECRET_PLAINTEXT` (the requester sealed garbage: an
            invalid input).
    """
    if len(key) != 32:
        raise ProofError(f"an AES-256 key is 32 bytes, got {len(key)}")
    if len(body) <= _IV + _TAG:
        raise ProofError(f"an encrypted body is more than 28 bytes, got {len(body)}")
    try:
        compressed = AESGCM(key).decrypt(body[:_IV], body[_IV:], market_aad(market_id))
    except InvalidTag as exc:
        raise ProofError(
            f"the key does not open this body for market {market_id}",
            hint="the ACL was not for this body, or the body was sealed for another market",
        ) from exc
    inflater = zlib.decompressobj()
    try:
        plaintext = inflater.decompress(compressed, MAX_SECRET_PLAINTEXT)
    except zlib.error as exc:
        raise InvalidProofInputError(f"the private inputs are not deflated data: {exc}") from exc
    if not inflater.eof and len(plaintext) >= MAX_SECRET_PLAINTEXT:
        raise InvalidProofInputError(
            f"the private inputs inflate to more than {MAX_SECRET_PLAINTEXT} bytes",
            hint="private inputs are a JSON object of a few integers",
        )
    if not inflater.eof:
        raise InvalidProofInputError("the private inputs are not deflated data: it is cut short")
    return plaintext


def decrypt_secret(secret: EncryptedSecret, private_key: bytes, market_id: int) -> bytes:
    """Open the ACL with ``private_key`` and the body with the key it holds."""
    return open_secret(secret.body, ecies_decrypt(private_key, secret.acl), market_id)


def reencrypt_acl(acl: bytes, private_key: bytes, reader_public_key: bytes) -> bytes:
    """The matching engine's step at assignment: the same AES key, for another reader."""
    return ecies_encrypt(reader_public_key, ecies_decrypt(private_key, acl))


def parse_private_inputs(
    plaintext: bytes, names: list[str], *, quote: bool = True
) -> dict[str, str]:
    """The private signals of a decrypted secret: a JSON object holding exactly ``names``, each
    an unsigned 256-bit integer (:func:`reef.encoding.parse_uint`), as snarkjs's decimal strings.

    ``quote=False`` keeps a bad value out of the error's message: the prover and the IVS pass
    it, since what they report is logged where their host reads it, and the value is private
    (the requester checking its own file keeps the quote).

    Raises:
        InvalidProofInputError: it is not such an object (the requester's fault: no proof
            can be made, so the IVS may close the ask as invalid); a bad integer's
            :class:`~reef.errors.UintInputError` is its cause.
    """
    try:
        # (The encodings json.loads accepts in bytes: UTF-8, with or without a BOM, or UTF-16/32.)
        text = plaintext.decode(json.detect_encoding(plaintext))
    except UnicodeDecodeError as exc:
        raise InvalidProofInputError(f"the private inputs are not JSON: {exc}") from exc
    # Measured before parsing: json recurses per bracket, and a deep enough text kills the
    # process (see reef.encoding.json_depth).
    depth = json_depth(text, beyond=_MAX_DEPTH)
    if depth > _MAX_DEPTH:
        raise InvalidProofInputError(
            f"the private inputs nest {depth} arrays or objects deep; they are a JSON object "
            "of integers"
        )
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidProofInputError(f"the private inputs are not JSON: {exc}") from exc
    if not isinstance(data, Mapping):
        raise InvalidProofInputError("the private inputs are not a JSON object")
    if sorted(data) != sorted(names):
        given = sorted(data)
        # A megabyte of keys would be a megabyte of message (and of the prover's log).
        shown = f"{given[:8]}"[:300] + (f" and {len(given) - 8} more" if len(given) > 8 else "")
        raise InvalidProofInputError(
            f"the private inputs name {shown}; the market takes {sorted(names)}"
        )
    out = {}
    for name in names:
        try:
            out[name] = str(parse_uint(data[name], name=f"private input {name}"))
        except UintInputError as exc:
            # The same refusal as any bad integer, classed as the proof market's: a value no
            # circuit signal can take makes the ask unprovable, the requester's fault.
            message = exc.message
            if not quote:
                message = f"private input {name} is not an integer that fits in 256 bits"
            raise InvalidProofInputError(message, hint=exc.hint) from exc
    return out
