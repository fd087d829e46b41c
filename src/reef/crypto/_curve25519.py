"""Raw-bytes helpers for X25519 and Ed25519 keys, on pyca/cryptography.

KMS, Scallop and init-params sealing pass keys around as raw 32-byte strings (Oyster's format);
these helpers keep the conversions in one place. base58 loads in :func:`solana_address`, its only
user: a process that never prints a Solana address (an enclave's supervisor) does without it.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from reef.crypto._scalars import clamp_x25519
from reef.errors import InputError

__all__ = [
    "ed25519_public_key",
    "generate_x25519",
    "solana_address",
    "x25519_public_key",
]


def _need32(data: bytes, what: str) -> None:
    if len(data) != 32:
        raise InputError(f"{what} is 32 bytes, got {len(data)}")


def x25519_public_key(secret: bytes) -> bytes:
    """The X25519 public key (32 bytes) of a 32-byte secret."""
    _need32(secret, "an X25519 secret")
    key = x25519.X25519PrivateKey.from_private_bytes(secret)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def generate_x25519() -> tuple[bytes, bytes]:
    """A fresh X25519 key pair ``(secret, public)``, the secret clamped."""
    secret = clamp_x25519(os.urandom(32))
    return secret, x25519_public_key(secret)


def ed25519_public_key(seed: bytes) -> bytes:
    """The Ed25519 public key (32 bytes) of an RFC 8032 32-byte seed."""
    _need32(seed, "an Ed25519 seed")
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def solana_address(public_key: bytes) -> str:
    """A Solana address: base58 of the 32-byte Ed25519 public key."""
    _need32(public_key, "an Ed25519 public key")
    import base58

    return str(base58.b58encode(public_key).decode())
