"""libsodium sealed boxes (``crypto_box_seal``), the format Oyster encrypts init params with.

PyNaCl binds libsodium itself, so sealed boxes made here open in Oyster enclaves and back.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.public

from reef.errors import InputError

__all__ = ["SEALED_BOX_OVERHEAD", "open_sealed", "seal"]

# Ephemeral X25519 public key (32) + Poly1305 tag (16).
SEALED_BOX_OVERHEAD = 48


def seal(plaintext: bytes, recipient_public_key: bytes) -> bytes:
    """Encrypt to an X25519 public key; only its secret opens the result.

    Raises:
        InputError: when the key is not 32 bytes, or is a point libsodium refuses.
    """
    if len(recipient_public_key) != 32:
        raise InputError("a sealed-box recipient key is a 32-byte X25519 public key")
    box = nacl.public.SealedBox(nacl.public.PublicKey(recipient_public_key))
    try:
        return bytes(box.encrypt(plaintext))
    except nacl.exceptions.CryptoError as exc:
        # libsodium refuses a point of small order (the shared secret would be all zeros).
        raise InputError(
            "the sealed-box recipient key is not a usable X25519 public key (a low-order point)",
            hint="seal to the key the recipient's KMS or enclave derived, not to a crafted one",
        ) from exc


def open_sealed(ciphertext: bytes, recipient_secret_key: bytes) -> bytes:
    """Open a sealed box with the recipient's X25519 secret.

    Raises:
        InputError: when the box is malformed or was sealed to another key.
    """
    if len(recipient_secret_key) != 32:
        raise InputError("a sealed-box secret key is 32 bytes")
    box = nacl.public.SealedBox(nacl.public.PrivateKey(recipient_secret_key))
    try:
        return bytes(box.decrypt(ciphertext))
    except nacl.exceptions.CryptoError as exc:
        raise InputError(
            "the sealed box does not open with this key",
            hint="it was sealed to another key, or it is corrupted",
        ) from exc
