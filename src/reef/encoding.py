"""Hex, base64 and unsigned integers at the edges: parse what users type, print what programs
read, and the key files users hand over (32 raw bytes or 64 hex digits).

reef prints bytes as lowercase hex without ``0x`` (Oyster's convention), except Ethereum addresses
and job ids, which keep their ``0x``. On input both forms are accepted.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from reef.errors import InputError, UintInputError

__all__ = ["parse_b64", "parse_hex", "parse_uint", "read_key_file", "to_hex"]

_MAX_UINT_TEXT = 1000
"""The longest text :func:`parse_uint` reads (2**256 has 78 decimal digits)."""


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


def parse_uint(value: object, *, name: str = "value", bits: int = 256) -> int:
    """An unsigned integer a user gave, as a JSON or Python ``int`` or as text: decimal digits
    or ``0x`` hex, surrounding whitespace allowed (circuit signals, amounts in input files).

    Python's own spellings (``1_000``, ``0o17``, a sign) are refused rather than guessed at,
    and ``True`` is not 1: booleans are refused. Leading zeros are fine (``007`` is 7).

    Raises:
        UintInputError: naming ``name`` when ``value`` is not such an integer or needs more
            than ``bits`` bits.
    """
    hint = f"give a whole number from 0 to 2**{bits}-1, in decimal or 0x hex"
    number: int | None = None
    if isinstance(value, str):
        if len(value) > _MAX_UINT_TEXT:
            # Python refuses decimals of over 4300 digits (CVE-2020-10735); nothing this long
            # is a number reef takes, so say so instead of converting it.
            raise UintInputError(
                f"{name} is {len(value)} characters long, too long for an integer", hint=hint
            )
        number = _uint_text(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    if number is None:
        raise UintInputError(f"{name} is not an integer: {value!r:.80}", hint=hint)
    if not 0 <= number < 2**bits:
        # Printing a huge number would bury the message: its width says enough.
        shown = str(number) if number.bit_length() <= 512 else f"a {number.bit_length()}-bit number"
        raise UintInputError(f"{name} does not fit in {bits} bits: {shown}", hint=hint)
    return number


def _uint_text(text: str) -> int | None:
    """The integer ``text`` spells in decimal or ``0x`` hex (ASCII digits only), or None."""
    digits, base = (text[2:], 16) if text[:2].lower() == "0x" else (text, 10)
    allowed = "0123456789abcdefABCDEF" if base == 16 else "0123456789"
    if not digits or any(c not in allowed for c in digits):
        return None
    return int(digits, base)


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
