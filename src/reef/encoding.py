"""Hex and base64 at the edges: parse what users type, print what programs read, and the key
files users hand over (32 raw bytes or 64 hex digits).

reef prints bytes as lowercase hex without ``0x`` (Oyster's convention), except Ethereum addresses
and job ids, which keep their ``0x``. On input both forms are accepted.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from reef.errors import InputError

__all__ = ["parse_b64", "parse_hex", "read_key_file", "to_hex"]


def parse_hex(text: str, *, name: str = "value", length: int | None = None) -> bytes:
    """Decode hex typed by a user, with or without ``0x`` and surrounding whitespace.

    Raises:
        InputError: naming ``name`` when the text is not hex or has the wrong length.
    """
    cleaned = text.strip()
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError as exc:
        raise InputError(
            f"{name} is not valid hex: {text[:40]!r}",
            hint="give an even number of hex digits, with or without 0x",
        ) from exc
    if length is not None and len(raw) != length:
        raise InputError(
            f"{name} must be {length} bytes ({2 * length} hex digits), got {len(raw)} bytes"
        )
    return raw


def parse_b64(text: str | bytes, *, name: str = "value") -> bytes:
    """Decode standard or URL-safe base64, padded or not.

    Raises:
        InputError: naming ``name`` when the text is not base64.
    """
    data = text.encode() if isinstance(text, str) else text
    data = b"".join(data.split())
    data += b"=" * (-len(data) % 4)
    try:
        if b"-" in data or b"_" in data:
            return base64.urlsafe_b64decode(data)
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"{name} is not valid base64") from exc


def to_hex(data: bytes | None) -> str:
    """Lowercase hex without ``0x``; ``None`` prints as the empty string."""
    return data.hex() if data else ""


def read_key_file(path: str | Path, *, kind: str = "secret key") -> bytes:
    """The 32-byte secret in a key file: 32 raw bytes (Oyster's ``/app/*.sec`` format), or 64
    hex digits (``0x`` and surrounding whitespace allowed), the usual text form.

    Whether the bytes are a valid key of its curve is the caller's check.

    Raises:
        InputError: naming the file when it cannot be read or holds neither form.
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InputError(
            f"cannot read the key file {file}: {exc.strerror or exc}",
            hint=f"give a file holding the {kind}: 32 raw bytes or 64 hex digits",
        ) from exc
    if len(data) == 32:
        return data
    try:
        return parse_hex(data.decode("ascii"), name=f"the key in {file}", length=32)
    except (UnicodeDecodeError, InputError) as exc:
        raise InputError(
            f"{file} holds neither 32 raw bytes nor 64 hex digits ({len(data)} bytes)",
            hint=f"a {kind} file is 32 raw bytes or 64 hex digits",
        ) from exc
