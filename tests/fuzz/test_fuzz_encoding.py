"""reef.encoding fuzzed: JSON from strangers in every encoding json.loads reads, base64, hex and
integers as strangers type them.

``loads_bounded`` measures a document's nesting before the standard parser (which recurses in C
once per bracket) sees it. The measurement must be the parser's truth for every text the parser
accepts, bytes in UTF-16 and UTF-32 included: there a quote or bracket byte can be half of
another character.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.fuzz_support import FUZZ, json_values, mutated, mutations
from reef.encoding import (
    json_depth,
    loads_bounded,
    parse_b64,
    parse_bytes32,
    parse_hex,
    parse_uint,
)
from reef.errors import InputError

_ENCODINGS = ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "utf-16", "utf-32")

# Characters whose UTF-16 or UTF-32 form holds a byte that is a quote, a backslash or a bracket
# in ASCII (U+0122 is 22 01 in UTF-16-LE; U+5B22 is 5B 22), mixed with the ASCII ones.
_TRICKY = st.sampled_from(
    ['"', "\\", "[", "]", "{", "}", "\u0122", "\u225b", "\u5b22", "\u7b5d", "\u5c22", "\U0001225b"]
)
_STRINGS = st.text(alphabet=_TRICKY, max_size=4) | st.text(max_size=6)
_NESTED = st.recursive(
    st.none() | st.integers() | _STRINGS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_STRINGS, inner, max_size=3),
    max_leaves=20,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@FUZZ
@given(_NESTED, st.sampled_from(_ENCODINGS), st.booleans())
def test_json_depth_is_the_parsers_depth_in_every_encoding_json_reads(
    value: Any, encoding: str, ascii_only: bool
) -> None:
    data = json.dumps(value, ensure_ascii=ascii_only).encode(encoding)
    assert json.loads(data) == value  # the standard parser reads this encoding
    assert json_depth(data) == _depth(value)


def test_a_utf16_quote_byte_does_not_hide_a_nesting_bomb() -> None:
    # U+0122 is 22 01 in UTF-16-LE: a quote byte that opens no string. Scanned as bytes, every
    # bracket after it was "inside a string", and the bomb measured 1 level deep.
    data = ('["\u0122", ' + "[" * 5000 + "]" * 5000 + "]").encode("utf-16-le")
    assert json_depth(data) == 5001
    with pytest.raises(InputError, match=r"^the body is nested more than 64 levels deep"):
        loads_bounded(data, what="the body")


def test_a_utf16_nesting_bomb_does_not_crash_where_the_recursion_limit_is_raised() -> None:
    # Where web3 or py-evm raised the recursion limit (every chain-facing service), the
    # standard parser overflows the C stack on this 360 KB body: the process died of SIGSEGV.
    script = (
        "import sys; sys.setrecursionlimit(100_000)\n"
        "from reef.encoding import loads_bounded\n"
        "from reef.errors import InputError\n"
        "body = ('[\"\\u0122\", ' + '[' * 90_000 + ']' * 90_000 + ']').encode('utf-16-le')\n"
        "try:\n"
        "    loads_bounded(body, what='the rotation request')\n"
        "except InputError as exc:\n"
        "    print(exc.message)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "the rotation request is nested more than 64 levels deep"


_DOCUMENT = json.dumps(
    {
        "digest": "x" * 8,
        "params": [{"path": "a/b", "contents": "aGk=", "should_attest": True}],
        "nested": [[{"k": ["v", 1, None, 2.5]}]],
    }
).encode()


@FUZZ
@given(mutations, st.sampled_from(_ENCODINGS), st.integers(0, 8))
def test_loads_bounded_of_mutated_json_answers_a_value_or_input_error(
    edits: list[tuple[str, int, bytes]], encoding: str, max_depth: int
) -> None:
    data = mutated(_DOCUMENT.decode().encode(encoding), edits)
    try:
        value = loads_bounded(data, what="the document", max_depth=max_depth)
    except InputError:
        return
    assert _depth(value) <= max_depth


@FUZZ
@given(json_values(), st.text(max_size=40))
def test_loads_bounded_of_any_text_answers_a_value_or_input_error(value: Any, junk: str) -> None:
    for text in (json.dumps(value), json.dumps(value)[: len(junk)] + junk, junk):
        with contextlib.suppress(InputError):
            loads_bounded(text, what="the document")
        with contextlib.suppress(InputError):
            loads_bounded(text.encode("utf-8", "surrogatepass"), what="the document")


@FUZZ
@given(
    st.one_of(st.text(st.characters(exclude_categories=()), max_size=80), st.binary(max_size=80))
)
def test_base64_and_hex_answer_bytes_or_input_error(text: str | bytes) -> None:
    with contextlib.suppress(InputError):
        parse_b64(text, name="the value")
    if isinstance(text, str):
        for length in (None, 32):
            with contextlib.suppress(InputError):
                parse_hex(text, name="the value", length=length)
        with contextlib.suppress(InputError):
            parse_uint(text, name="the value")
    with contextlib.suppress(InputError):
        parse_bytes32(text, name="the value")


def test_base64_with_a_lone_surrogate_is_an_input_error() -> None:
    # json.loads turns the escape "\ud800" into a lone surrogate, which str.encode refuses.
    text = json.loads('"aGk\\ud800="')
    with pytest.raises(InputError, match=r"^the contents is not valid base64"):
        parse_b64(text, name="the contents")


def test_a_large_document_is_measured_in_linear_time() -> None:
    # 60 000 strings of escaped quotes and tricky characters, 3 MB in UTF-32: measured in one
    # pass (no pattern retried from every quote, no quadratic re-encoding).
    piece = '"\\"\u0122\\\\[", '
    text = "[" + piece * 60_000 + "1]"
    assert json.loads(text)[0] == '"\u0122\\['
    for encoding in ("utf-8", "utf-16-le", "utf-32-be"):
        assert json_depth(text.encode(encoding)) == 1
