"""Keccak-256, the hash Ethereum uses (not NIST SHA3-256: the padding differs)."""

from __future__ import annotations

from eth_hash.auto import keccak as _keccak

__all__ = ["keccak256"]


def keccak256(data: bytes) -> bytes:
    """Keccak-256 of ``data`` (32 bytes)."""
    return bytes(_keccak(data))
