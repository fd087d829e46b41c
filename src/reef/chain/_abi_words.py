"""Decode the ABI encoding of event fields, for the elementary types events carry.

An indexer decodes every log it reads, and eth-abi's general decoder (stream objects, a
registry lookup and validation layers per value) costs more per log than reading it from the
node. Events carry elementary values: ``uint<N>``, ``int<N>``, ``address``, ``bool``,
``bytes<N>``, and dynamic ``bytes`` / ``string``. Those decode with a few slices of the data,
checked as strictly as eth-abi checks them (padding, ranges, offsets inside the data), so a
malformed log is still refused. Any other type (arrays, tuples) goes to eth-abi.

An indexer that stores logs as they came (and decodes them when read) still refuses a malformed
log before storing it: :func:`words_checker` accepts the hex data :func:`words_decoder` accepts
as bytes, and reads only the words that can be invalid.

``tests/chain/test_abi_words.py`` holds this to eth-abi on random values and malformed data;
``tests/chain/test_indexer_words.py`` holds the checker to the decoder.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

from reef.errors import InputError

__all__ = ["decode_words", "words_checker", "words_decoder"]

_WORD = 32
_SIZED = re.compile(r"^(u?int|bytes)(\d+)$")


def _uint(bits: int) -> Callable[[bytes], int]:
    limit = 1 << bits

    def read(word: bytes) -> int:
        value = int.from_bytes(word, "big")
        if value >= limit:
            raise InputError(f"a uint{bits} word holds {value}, out of range")
        return value

    return read


def _int(bits: int) -> Callable[[bytes], int]:
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def read(word: bytes) -> int:
        value = int.from_bytes(word, "big", signed=True)
        if not low <= value <= high:
            raise InputError(f"an int{bits} word holds {value}, out of range")
        return value

    return read


def _fixed_bytes(size: int) -> Callable[[bytes], bytes]:
    def read(word: bytes) -> bytes:
        if any(word[size:]):
            raise InputError(f"a bytes{size} word has non-zero padding")
        return word[:size]

    return read


def _address(word: bytes) -> bytes:
    if any(word[:12]):
        raise InputError("an address word has non-zero padding")
    return word[12:]


def _bool(word: bytes) -> bool:
    value = int.from_bytes(word, "big")
    if value > 1:
        raise InputError(f"a bool word holds {value}")
    return value == 1


def _static_reader(typ: str) -> Callable[[bytes], Any] | None:
    if typ == "address":
        return _address
    if typ == "bool":
        return _bool
    match = _SIZED.match(typ)
    if match is None:
        return None
    kind, size = match.group(1), int(match.group(2))
    if kind == "bytes":
        return _fixed_bytes(size) if 1 <= size <= 32 else None
    if not (8 <= size <= 256 and size % 8 == 0):
        return None
    return _uint(size) if kind == "uint" else _int(size)


def _dynamic(data: bytes, head: bytes) -> bytes:
    offset = int.from_bytes(head, "big")
    if offset % _WORD or offset + _WORD > len(data):
        raise InputError(f"a dynamic value's offset {offset} points outside the data")
    length = int.from_bytes(data[offset : offset + _WORD], "big")
    start = offset + _WORD
    padded = start + -(-length // _WORD) * _WORD
    if padded > len(data):
        raise InputError(f"a dynamic value of {length} bytes runs past the data")
    if any(data[start + length : padded]):
        raise InputError("a dynamic value has non-zero padding")
    return data[start : start + length]


def words_decoder(types: Sequence[str]) -> Callable[[bytes], tuple[Any, ...]]:
    """A decoder for the ABI encoding of ``types``, built once (``decode_words`` per call).

    ``bytes``/``string`` decode to ``bytes``/``str``; ``address`` to its 20 raw bytes. The
    decoder raises :class:`~reef.errors.InputError` (a ``ValueError``) when the data is too short,
    badly padded, out of range or not UTF-8.
    """
    kinds = tuple(types)
    readers = [_static_reader(t) for t in kinds]
    if any(r is None for r, t in zip(readers, kinds, strict=True) if t not in ("bytes", "string")):
        return functools.partial(_eth_abi, list(kinds))
    words = _WORD * len(kinds)
    plan = [
        (index * _WORD, reader, kind == "string")
        for index, (kind, reader) in enumerate(zip(kinds, readers, strict=True))
    ]

    def decode(data: bytes) -> tuple[Any, ...]:
        if len(data) < words:
            raise InputError(f"{len(data)} bytes of data hold fewer than {len(kinds)} words")
        values: list[Any] = []
        for at, reader, text in plan:
            head = data[at : at + _WORD]
            if reader is not None:
                values.append(reader(head))
            elif text:
                values.append(_dynamic(data, head).decode("utf-8"))
            else:
                values.append(_dynamic(data, head))
        return tuple(values)

    return decode


def words_checker(types: Sequence[str]) -> Callable[[str], None]:
    """A check that ``data`` (``0x`` + hex, as a node sends it) is a valid ABI encoding of
    ``types``, built once.

    It refuses what :func:`words_decoder` refuses, except that a ``string``'s bytes are not
    checked to be UTF-8 (event decoders read them with replacement), and looks only at the words
    that can be invalid: a ``uint256`` word needs no look at all, an ``address`` word a compare
    of its padding, and only data with a dynamic value is decoded.

    Raises:
        InputError: (from the check) as :func:`words_decoder` does, or data that is not
            ``0x`` + an even number of hex digits.
    """
    kinds = tuple(types)
    if any(_static_reader(t) is None for t in kinds if t not in ("bytes", "string")):
        full = words_decoder(kinds)

        def check_all(data: str) -> None:
            full(_from_hex(data))

        return check_all
    chars = 2 + 2 * _WORD * len(kinds)
    padding: list[int] = []  # where an address word's 12 zero bytes are, in characters
    words: list[tuple[int, Callable[[bytes], object]]] = []  # other words that need reading
    dynamic = False
    for index, kind in enumerate(kinds):
        at = 2 + 2 * _WORD * index
        if kind in ("bytes", "string"):
            dynamic = True
        elif kind == "address":
            padding.append(at)
        elif kind not in ("uint256", "int256", "bytes32"):
            reader = _static_reader(kind)
            assert reader is not None  # every other kind has one (checked above)
            words.append((at, reader))
    zeros = "0" * 24
    full_decode = words_decoder(["bytes" if k == "string" else k for k in kinds])

    def check(data: str) -> None:
        if len(data) < chars or data[:2] != "0x":
            raise InputError(f"data of {len(data)} characters holds fewer than {len(kinds)} words")
        raw = _from_hex(data)  # also what reading it back will do
        for at in padding:
            if data[at : at + 24] != zeros:
                raise InputError("an address word has non-zero padding")
        for at, read in words:
            start = (at - 2) // 2
            read(raw[start : start + _WORD])
        if dynamic:
            full_decode(raw)

    return check


def _from_hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text[2:] if text[:2] in ("0x", "0X") else text)
    except ValueError as exc:
        raise InputError(f"not hex: {text[:80]!r}") from exc


def decode_words(types: Sequence[str], data: bytes) -> tuple[Any, ...]:
    """Decode ``data`` as the ABI encoding of ``types`` (as ``eth_abi.decode`` does).

    Raises:
        InputError: see :func:`words_decoder`.
    """
    return words_decoder(types)(data)


def _eth_abi(types: list[str], data: bytes) -> tuple[Any, ...]:
    from eth_abi.abi import decode as abi_decode
    from eth_abi.exceptions import DecodingError

    try:
        return tuple(abi_decode(types, data))
    except DecodingError as exc:
        raise InputError(str(exc)) from exc
