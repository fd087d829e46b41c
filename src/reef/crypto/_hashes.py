"""Keccak-256, the hash Ethereum uses (not NIST SHA3-256: the padding differs).

From safe-pysha3 (a C extension; eth-hash's pysha3 backend, ``eth-hash[pysha3]``), called
directly: a call costs about a microsecond, against five to seven through the pycryptodome
backend ``eth_hash.auto`` picks first, and a verifier statement, a transaction or a log hashes
several times. Importing ``sha3`` rather than ``eth_hash`` also spares one-shot commands
eth-hash's package import (it reads its version through ``importlib.metadata``).
"""

from __future__ import annotations

from sha3 import keccak_256  # type: ignore[import-untyped]

__all__ = ["keccak256"]


def keccak256(data: bytes) -> bytes:
    """Keccak-256 of ``data`` (32 bytes)."""
    return bytes(keccak_256(data).digest())
