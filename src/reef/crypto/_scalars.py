"""Which numbers are secret keys: the secp256k1 group order and X25519 clamping, in pure Python.

Apart from the key modules so that deriving a secret loads no curve library: an enclave's KMS
derive server (reef.kms) answers secrets only, and its supervisor, whose memory is the code it
imports, never needs coincurve or pysha3 for that.
"""

from __future__ import annotations

from reef.errors import InputError

__all__ = ["SECP256K1_N", "clamp_x25519"]

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""The order of the secp256k1 group: a secret key is an integer in [1, n - 1]."""


def clamp_x25519(secret: bytes) -> bytes:
    """Clamp 32 bytes into an X25519 scalar as RFC 7748 and libsodium do.

    Raises:
        InputError: when ``secret`` is not 32 bytes.
    """
    if len(secret) != 32:
        raise InputError(f"an X25519 secret is 32 bytes, got {len(secret)}")
    b = bytearray(secret)
    b[0] &= 0xF8
    b[31] &= 0x7F
    b[31] |= 0x40
    return bytes(b)
