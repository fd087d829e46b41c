"""The image id: the one identity of an enclave image that KMS, contracts and clients use.

``image_id = SHA-256(00 01 00 07 || PCR0 || PCR1 || PCR2 || PCR16)`` (reference §1.2). The leading
flags word is the bit set of the PCR indices that take part, big-endian; PCR16 is 48 zero bytes when
the document has none (init params were not measured).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from reef.errors import InputError

__all__ = ["IMAGE_ID_PCRS", "PCR_LENGTH", "image_id"]

PCR_LENGTH = 48
IMAGE_ID_PCRS = (0, 1, 2, 16)
_FLAGS = sum(1 << i for i in IMAGE_ID_PCRS).to_bytes(4, "big")
_ZERO_PCR = bytes(PCR_LENGTH)


def image_id(pcrs: Mapping[int, bytes]) -> bytes:
    """The 32-byte image id of a PCR set; PCR0–2 are required, PCR16 defaults to zero.

    Raises:
        InputError: when PCR0, PCR1 or PCR2 is missing, or a PCR is not 48 bytes (or not bytes).
    """
    parts = [_FLAGS]
    for index in IMAGE_ID_PCRS:
        value = pcrs.get(index)
        if value is None:
            if index == 16:
                value = _ZERO_PCR
            else:
                raise InputError(f"PCR{index} is required to compute an image id")
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InputError(f"PCR{index} must be bytes, got {type(value).__name__}")
        if len(value) != PCR_LENGTH:
            raise InputError(f"PCR{index} must be {PCR_LENGTH} bytes, got {len(value)}")
        parts.append(value)
    return hashlib.sha256(b"".join(parts)).digest()
