"""secp256k1 keys, Ethereum addresses and recoverable signatures.

coincurve binds libsecp256k1, the library Bitcoin Core and most Ethereum clients use: constant
time, RFC 6979 deterministic nonces and low-s signatures by default, which is exactly what
Oyster's verifier and KMS produce, so reef's signatures match theirs byte for byte.

Public keys travel as 64 bytes ``x || y`` (no ``04`` prefix), Oyster's format.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import coincurve

from reef.crypto._hashes import keccak256
from reef.crypto._scalars import SECP256K1_N
from reef.errors import InputError

__all__ = [
    "Secp256k1PrivateKey",
    "Secp256k1PublicKey",
    "eip191_digest",
    "recover_digest",
]


@dataclass(frozen=True)
class Secp256k1PublicKey:
    """A secp256k1 public key as 64 bytes ``x || y``."""

    raw: bytes

    def __reduce__(self) -> tuple[type[Secp256k1PublicKey], tuple[bytes]]:
        return (type(self), (self.raw,))

    def __post_init__(self) -> None:
        if len(self.raw) != 64:
            raise InputError(f"a secp256k1 public key is 64 bytes (x || y), got {len(self.raw)}")
        try:
            coincurve.PublicKey(b"\x04" + self.raw)
        except ValueError as exc:
            raise InputError("the secp256k1 public key is not a point on the curve") from exc

    @classmethod
    def from_bytes(cls, data: bytes) -> Secp256k1PublicKey:
        """Accept 64-byte ``x || y``, 65-byte uncompressed (``04 ...``) or 33-byte compressed."""
        if len(data) == 64:
            return cls(bytes(data))
        try:
            point = coincurve.PublicKey(bytes(data))
        except ValueError as exc:
            raise InputError("not a secp256k1 public key (64, 65 or 33 bytes expected)") from exc
        return cls(point.format(compressed=False)[1:])

    @cached_property
    def address(self) -> str:
        """The Ethereum address, ``0x`` + 40 lowercase hex digits."""
        return "0x" + keccak256(self.raw)[12:].hex()

    @property
    def checksum_address(self) -> str:
        """The Ethereum address in EIP-55 mixed case."""
        from reef.crypto._hashes import eip55_address

        return eip55_address(self.address)


@dataclass(frozen=True, repr=False)
class Secp256k1PrivateKey:
    """A secp256k1 secret key (32 bytes, in [1, n-1]). Its repr never shows the secret."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != 32:
            raise InputError(f"a secp256k1 secret key is 32 bytes, got {len(self.secret)}")
        value = int.from_bytes(self.secret, "big")
        if not 1 <= value < SECP256K1_N:
            raise InputError("the secp256k1 secret key is out of range [1, n-1]")

    def __repr__(self) -> str:
        return f"Secp256k1PrivateKey(address={self.public_key.address})"

    def __reduce__(self) -> tuple[type[Secp256k1PrivateKey], tuple[bytes]]:
        # Pickled (and copied) as its secret alone: the cached libsecp256k1 objects stay behind.
        return (type(self), (self.secret,))

    @classmethod
    def generate(cls) -> Secp256k1PrivateKey:
        """A fresh random key from the operating system's CSPRNG."""
        return cls(coincurve.PrivateKey().secret)

    # Kept once per key (cached_property writes the instance dict, so frozen is kept): building
    # a coincurve key computes its public point, which cost a verifier a third of its signing.
    @cached_property
    def _signer(self) -> coincurve.PrivateKey:
        return coincurve.PrivateKey(self.secret)

    @cached_property
    def public_key(self) -> Secp256k1PublicKey:
        """The key's public half (64 bytes ``x || y``)."""
        return Secp256k1PublicKey(self._signer.public_key.format(compressed=False)[1:])

    def sign_digest(self, digest: bytes) -> bytes:
        """Sign a 32-byte digest; return ``r || s || v`` with v = 27 or 28 (Ethereum style)."""
        if len(digest) != 32:
            raise InputError(f"a digest to sign is 32 bytes, got {len(digest)}")
        sig = self._signer.sign_recoverable(digest, hasher=None)
        return sig[:64] + bytes([sig[64] + 27])


def recover_digest(digest: bytes, signature: bytes) -> Secp256k1PublicKey:
    """Recover the signer of a 32-byte digest from ``r || s || v`` (v in {0, 1, 27, 28}).

    Raises:
        InputError: when the signature is malformed or recovers no key.
    """
    if len(digest) != 32:
        raise InputError(f"a signed digest is 32 bytes, got {len(digest)}")
    if len(signature) != 65:
        raise InputError(f"a recoverable signature is 65 bytes (r || s || v), got {len(signature)}")
    v = signature[64]
    if v >= 27:
        v -= 27
    if v not in (0, 1):
        raise InputError(f"signature v must be 27/28 (or 0/1), got {signature[64]}")
    try:
        point = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes([v]), digest, hasher=None
        )
    except ValueError as exc:
        raise InputError("the signature recovers no public key") from exc
    return Secp256k1PublicKey(point.format(compressed=False)[1:])


def eip191_digest(message: bytes) -> bytes:
    """The EIP-191 ``personal_sign`` digest of ``message``."""
    prefix = b"\x19Ethereum Signed Message:\n" + str(len(message)).encode()
    return keccak256(prefix + message)
