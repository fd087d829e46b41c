"""Keccak-256, the hash Ethereum uses (not NIST SHA3-256: the padding differs).

From safe-pysha3 (a C extension; eth-hash's pysha3 backend, ``eth-hash[pysha3]``), called
directly: a call costs about a microsecond, against five to seven through the pycryptodome
backend ``eth_hash.auto`` picks first, and a verifier statement, a transaction or a log hashes
several times. Importing ``sha3`` rather than ``eth_hash`` also spares one-shot commands
eth-hash's package import (it reads its version through ``importlib.metadata``).

:func:`eip55_address` is the EIP-55 mixed-case checksum, from Keccak-256 alone: eth-utils, which
computes it too, takes 0.25 to 0.45 s to import, more than a chain command's reads.
"""

from __future__ import annotations

from sha3 import keccak_256  # type: ignore[import-untyped]

from reef.errors import InputError

__all__ = ["eip55_address", "keccak256"]

_HEX = frozenset("0123456789abcdefABCDEF")


def keccak256(data: bytes) -> bytes:
    """Keccak-256 of ``data`` (32 bytes)."""
    return bytes(keccak_256(data).digest())


def eip55_address(value: str | bytes) -> str:
    """The Ethereum address ``value`` (20 bytes, or 40 hex digits in any case, ``0x``
    optional) in EIP-55 mixed case: each letter of the lowercase hex is upper case where the
    matching nibble of its Keccak-256 is 8 or more.

    Does not check a mixed-case ``value``'s own checksum (a caller that must, compares).

    Raises:
        InputError: ``value`` is not 20 bytes or 40 hex digits.
    """
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 20:
            raise InputError(f"an address is 20 bytes, not {len(value)}")
        digits = bytes(value).hex()
    else:
        digits = value[2:] if value[:2] in ("0x", "0X") else value
        if len(digits) != 40 or not _HEX.issuperset(digits):
            raise InputError(f"not an address (0x and 40 hex digits): {value[:50]!r}")
        digits = digits.lower()
    nibbles = keccak256(digits.encode("ascii")).hex()[:40]
    return "0x" + "".join(
        c.upper() if c > "9" and n >= "8" else c for c, n in zip(digits, nibbles, strict=True)
    )
