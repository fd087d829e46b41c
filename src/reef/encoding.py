"""What crosses reef's edges: hex, base64 and unsigned integers users type, the key files they
hand over (32 raw bytes or 64 hex digits), JSON strangers send, and strangers' text shown on a
terminal.

reef prints bytes as lowercase hex without ``0x`` (Oyster's convention), except Ethereum addresses
and job ids, which keep their ``0x``. On input both forms are accepted.

**JSON from strangers** (request bodies, chain data any tenant writes, other servers' answers) is
measured before it is parsed. The standard parser recurses once per ``[`` or ``{``, and importing
web3 or py-evm raises the interpreter's recursion limit to 100 000, so about 70 000 brackets no
longer end in a RecursionError: they overflow the C stack and the whole process dies of SIGSEGV.
:func:`json_depth` measures without recursing, in time linear in the text (C-level passes: a
regular expression that drops strings, a translation that keeps brackets, a running sum).

**Values from strangers in messages** go through :func:`describe_value`: ``repr`` of a parsed
document can be as long as the document, as deep as its nesting (where the C stack is the limit),
and raises ValueError for an integer of over 4 300 digits.

**Text from strangers on a terminal** (a provider's status, a tenant's console, a server's error)
has its controls written out by :func:`terminal_text`: printed raw, an escape sequence can set the
window title, clear the screen or rewrite earlier lines, and a direction override can make the
text read otherwise than it is.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import reprlib
from pathlib import Path
from typing import Any, Final

from reef.errors import InputError, UintInputError

__all__ = [
    "MAX_JSON_DEPTH",
    "describe_value",
    "json_depth",
    "loads_bounded",
    "parse_b64",
    "parse_bytes32",
    "parse_hex",
    "parse_uint",
    "read_key_file",
    "terminal_text",
    "to_hex",
]

_MAX_UINT_TEXT = 1000
"""The longest text :func:`parse_uint` reads (2**256 has 78 decimal digits)."""


def parse_hex(
    text: str, *, name: str = "value", length: int | None = None, hint: str | None = None
) -> bytes:
    """Decode hex typed by a user, with or without ``0x`` and surrounding whitespace.

    Args:
        text: the hex.
        name: what it is, for the messages (``"--image-id"``).
        length: the number of bytes it must decode to, if any.
        hint: what to do when it is wrong (what the value is, where to find it); a generic
            word on hex otherwise.

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
            hint=hint or "give an even number of hex digits, with or without 0x",
        ) from exc
    if length is not None and len(raw) != length:
        raise _wrong_length(name, length, len(raw), hint)
    return raw


def parse_bytes32(value: bytes | str, *, name: str, hint: str | None = None) -> bytes:
    """32 bytes (a hash, an image id, an ABI word) a caller gave either as bytes or as hex text
    (``0x`` optional): library functions take both, since some callers hold the raw digest and
    others the hex a user typed or a JSON document carried.

    It lives here, beside :func:`parse_hex`, which reads the text form: chain clients, the
    serverless signer, the proof market and the KMS all check such values, with one message.

    Args:
        value: the 32 bytes, or their hex.
        name: what it is, for the messages (``"image id"``, ``"codehash"``).
        hint: what to do when it is wrong (what the value is, where to find it).

    Raises:
        InputError: naming ``name`` when ``value`` is neither bytes nor text, is not hex, or
            is not 32 bytes long.
    """
    if isinstance(value, str):
        return parse_hex(value, name=name, length=32, hint=hint)
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InputError(
            f"{name} must be 32 bytes or their hex, got {type(value).__name__}",
            hint=hint or _length_hint(32),
        )
    if len(value) != 32:
        raise _wrong_length(name, 32, len(value), hint)
    return bytes(value)


def _wrong_length(name: str, length: int, got: int, hint: str | None) -> InputError:
    """The refusal of a value of ``got`` bytes where ``length`` were due (as bytes or as hex)."""
    return InputError(
        f"{name} must be {length} bytes, got {got} bytes", hint=hint or _length_hint(length)
    )


def _length_hint(length: int) -> str:
    return f"give {length} bytes, or {2 * length} hex digits with or without 0x"


def parse_b64(text: str | bytes, *, name: str = "value") -> bytes:
    """Decode standard or URL-safe base64, padded or not.

    Raises:
        InputError: naming ``name`` when the text is not base64.
    """
    try:
        data = text.encode() if isinstance(text, str) else text
    except UnicodeEncodeError as exc:  # a lone surrogate, as a JSON "\\ud800" escape gives
        raise InputError(f"{name} is not valid base64: it holds a lone surrogate") from exc
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


# ---- JSON from strangers ---------------------------------------------------------------------

MAX_JSON_DEPTH: Final = 64
"""How deeply :func:`loads_bounded` lets arrays and objects nest by default: reef's own documents
nest three or four levels, EIP-712 typed data a dozen."""

# A string to its closing quote, or to the end of a text where it never closes (a lone backslash
# last included). The scan of each string then always succeeds, and the text is read once: a
# pattern that needs the closing quote fails after scanning to the end, and is tried again from
# every escaped quote inside (``"\"\"\"…``), quadratic in the length, with the GIL held.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
for _open, _close in (b"[]", b"{}"):
    _STEP[_open], _STEP[_close] = 1, -1
del _open, _close


def json_depth(text: str | bytes, *, beyond: int = 0) -> int:
    """How deeply arrays and objects nest in ``text`` read as JSON (0 for a scalar).

    Brackets in strings do not count; an unbalanced text counts the brackets it opens, which is
    how deep a parser would go before failing. With ``beyond``, a text with at most that many
    opening brackets is answered without the scan (it cannot nest deeper than it has brackets):
    ``json_depth(text, beyond=limit) > limit`` is the check, free for most honest documents.
    """
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if raw.count(b"[") + raw.count(b"{") <= beyond:
        return 0
    if not isinstance(text, str):
        raw = _as_utf8(raw)
    # Without a backslash no quote is escaped, so every other piece between quotes is a
    # string: dropping those is 15 times cheaper than the regex, which an indexer reading
    # thousands of logs per answer paid on each (half its time).
    outside = b"".join(raw.split(b'"')[::2]) if b"\\" not in raw else _JSON_STRING.sub(b"", raw)
    brackets = outside.translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _as_utf8(data: bytes) -> bytes:
    """JSON bytes as the UTF-8 text ``json.loads`` reads from them.

    ``json.loads`` also reads UTF-16 and UTF-32 (``json.detect_encoding``), where a byte that
    looks like a quote or a bracket can be half of another character (``\u0122`` is ``22 01``
    in UTF-16-LE): scanned as bytes, such a text could pass a quote byte that opens no string and
    hide every bracket after it. Only in UTF-8 is each of those bytes always its own character.
    """
    encoding = json.detect_encoding(data)
    if encoding.startswith("utf-8"):
        return data
    try:
        return data.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")
    except UnicodeError:
        return data  # json.loads cannot decode it either, and refuses it without parsing


def loads_bounded(text: str | bytes, *, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads(text)`` for a document a stranger wrote: one nested deeper than
    ``max_depth`` is refused before it is parsed.

    Args:
        text: the document.
        what: what it is, for the message (``"job metadata"``).
        max_depth: the deepest nesting accepted.

    Raises:
        InputError: naming ``what``, when the text nests too deeply or is not JSON (an integer
            literal over Python's 4 300-digit limit included).
    """
    if json_depth(text, beyond=max_depth) > max_depth:
        raise InputError(
            f"{what} is nested more than {max_depth} levels deep",
            hint="send a flatter JSON document",
        )
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        # JSONDecodeError and UnicodeDecodeError are ValueErrors; so is an over-long integer.
        raise InputError(f"{what} is not JSON: {exc}"[:300]) from exc


# ---- values from strangers in messages ------------------------------------------------------


class _ShortRepr(reprlib.Repr):
    """reprlib's bounded repr, with integers too wide to print shown by their width."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = self.maxlong = self.maxother = width

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:
            return f"<a {x.bit_length()}-bit integer>"
        return super().repr_int(x, level)


_SHORT_REPRS = {40: _ShortRepr(40)}


def describe_value(value: object, *, width: int = 40) -> str:
    """``repr(value)`` for a message about a stranger's value (a field of a parsed document):
    at most about ``width`` characters per string or number, three levels of nesting, a few
    items per container, and a huge integer as its width in bits. Never raises."""
    short = _SHORT_REPRS.get(width) or _ShortRepr(width)
    return short.repr(value)


# ---- text from strangers on a terminal -------------------------------------------------------

# What a terminal obeys rather than shows (C0 and C1 controls but the tab, DEL) and what reorders
# what it shows (bidirectional embeddings, overrides and isolates).
_TERMINAL_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_text(text: str) -> str:
    """``text`` as it may be printed on a terminal: controls and direction overrides written out
    (``\\x1b``, ``\\u202e``), so a stranger's words cannot drive the reader's terminal. Tabs stay;
    a newline is written out too, so one value stays one line."""
    return _TERMINAL_CONTROLS.sub(_written_out, text)


def _written_out(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
