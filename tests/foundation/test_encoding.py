from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reef.encoding import (
    json_depth,
    loads_bounded,
    parse_b64,
    parse_bytes32,
    parse_hex,
    parse_uint,
    read_key_file,
    terminal_text,
    to_hex,
)
from reef.errors import InputError, UintInputError


def test_parse_hex_accepts_prefix_and_whitespace() -> None:
    assert parse_hex(" 0xABcd\n") == b"\xab\xcd"
    assert parse_hex("abcd", length=2) == b"\xab\xcd"


def test_parse_hex_names_the_bad_value() -> None:
    with pytest.raises(InputError, match="image id is not valid hex"):
        parse_hex("zz", name="image id")
    with pytest.raises(InputError, match="must be 32 bytes"):
        parse_hex("00", name="image id", length=32)


def test_parse_bytes32_takes_bytes_or_hex_alike() -> None:
    digest = bytes(range(32))
    assert parse_bytes32(digest, name="hash") == digest
    assert parse_bytes32(bytearray(digest), name="hash") == digest
    assert type(parse_bytes32(bytearray(digest), name="hash")) is bytes
    assert parse_bytes32(digest.hex(), name="hash") == digest
    assert parse_bytes32(" 0x" + digest.hex().upper() + "\n", name="hash") == digest


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"\x00" * 31, "codehash must be 32 bytes, got 31 bytes"),
        (b"\x00" * 33, "codehash must be 32 bytes, got 33 bytes"),
        ("00" * 31, "codehash must be 32 bytes, got 31 bytes"),
        ("0x" + "zz" * 32, "codehash is not valid hex"),
        (32, "codehash must be 32 bytes or their hex, got int"),
        (None, "codehash must be 32 bytes or their hex, got NoneType"),
    ],
)
def test_parse_bytes32_names_the_value_and_says_what_to_do(value: Any, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        parse_bytes32(value, name="codehash", hint="a codehash is a tx hash")
    assert caught.value.hint == "a codehash is a tx hash"
    # Without a hint of the caller's, the refusal still says what a right value looks like.
    with pytest.raises(InputError) as plain:
        parse_bytes32(value, name="codehash")
    assert plain.value.hint


def test_parse_b64_both_alphabets() -> None:
    assert parse_b64("+/8=") == b"\xfb\xff"
    assert parse_b64("-_8") == b"\xfb\xff"
    with pytest.raises(InputError, match="not valid base64"):
        parse_b64("@@@@")


def test_to_hex_of_nothing_is_empty() -> None:
    assert to_hex(None) == ""
    assert to_hex(b"") == ""
    assert to_hex(b"\x01") == "01"


@pytest.mark.parametrize(
    "content",
    [
        bytes(range(32)),
        bytes(range(32)).hex().encode(),
        b"0x" + bytes(range(32)).hex().encode() + b"\n",
    ],
)
def test_a_key_file_holds_32_raw_bytes_or_64_hex_digits(tmp_path: Path, content: bytes) -> None:
    key = tmp_path / "key"
    key.write_bytes(content)
    assert read_key_file(key) == bytes(range(32))


@pytest.mark.parametrize("content", [b"", b"\x01" * 31, b"ab" * 33, b"\xff" * 64, b"zz" * 32])
def test_a_key_file_in_neither_form_is_named_with_what_a_key_file_is(
    tmp_path: Path, content: bytes
) -> None:
    key = tmp_path / "key"
    key.write_bytes(content)
    with pytest.raises(InputError, match="neither 32 raw bytes nor 64 hex digits") as caught:
        read_key_file(key, kind="X25519 secret key")
    assert str(key) in caught.value.message
    assert "X25519 secret key file is 32 raw bytes" in (caught.value.hint or "")


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot read the key file .*missing"):
        read_key_file(tmp_path / "missing")


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (0, 0),
        (5, 5),
        ("42", 42),
        (" 007\n", 7),
        ("0x10", 16),
        ("0XfF", 255),
        (2**256 - 1, 2**256 - 1),
    ],
)
def test_parse_uint_reads_ints_decimal_and_hex(value: object, number: int) -> None:
    assert parse_uint(value) == number


@given(st.integers(min_value=0, max_value=2**256 - 1))
def test_parse_uint_reads_back_what_decimal_and_hex_print(number: int) -> None:
    assert parse_uint(str(number)) == parse_uint(hex(number)) == parse_uint(number) == number


@pytest.mark.parametrize(
    "value",
    ["abc", "", "0x", "-1", "+1", "1_000", "0o17", "1.5", "١", True, 1.5, None, [1], {"x": 1}],
)
def test_parse_uint_refuses_what_is_not_a_whole_number_naming_it(value: object) -> None:
    with pytest.raises(UintInputError, match="signal x is not an integer") as caught:
        parse_uint(value, name="signal x")
    assert isinstance(caught.value, InputError)
    assert "decimal or 0x hex" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("value", "bits"), [(2**256, 256), (-1, 256), (str(2**64), 64), (hex(2**64), 64)]
)
def test_parse_uint_refuses_numbers_wider_than_asked(value: object, bits: int) -> None:
    with pytest.raises(UintInputError, match=f"x does not fit in {bits} bits") as caught:
        parse_uint(value, name="x", bits=bits)
    assert f"2**{bits}-1" in (caught.value.hint or "")


def test_parse_uint_refuses_huge_text_without_converting_it() -> None:
    # Python itself refuses to convert decimals of over 4300 digits (with a ValueError).
    with pytest.raises(UintInputError, match="10000 characters long"):
        parse_uint("9" * 10_000, name="x")
    with pytest.raises(UintInputError, match="a 5001-bit number"):
        parse_uint(2**5000, name="x")


# ---- JSON from strangers ----

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n\u00e9'),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=4), inner, max_size=3)
    ),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@given(_JSON, st.integers(0, 6))
def test_json_depth_is_the_depth_the_parser_builds(value: Any, limit: int) -> None:
    # Strings full of brackets, quotes and backslashes must not count: the standard library's
    # encoder writes them, and the depth of the parsed value is the truth.
    text = json.dumps(value, ensure_ascii=False)
    assert json_depth(text) == _depth(json.loads(text))
    assert json_depth(text.encode()) == _depth(value)
    # The free answer for few brackets never hides a document deeper than the limit.
    assert json_depth(text, beyond=limit) > limit or _depth(value) <= limit


def test_json_depth_counts_what_an_unbalanced_text_opens() -> None:
    assert json_depth(b"[" * 500) == 500
    assert json_depth(b'["' + b"[" * 500) == 1  # the rest is one string that never closes
    assert json_depth(b'["\\') == 1  # a lone backslash last
    # Few brackets answer without the scan; the answer cannot pass the limit asked about.
    assert json_depth(b"[[[]]]", beyond=3) == 0
    assert json_depth(b"[[[[]]]]", beyond=3) == 4


def test_a_nesting_bomb_is_refused_even_where_the_recursion_limit_is_raised() -> None:
    # In a child process: where py_ecc or py-evm raised the limit, json.loads of the bomb is a
    # segmentation fault, and loads_bounded must refuse it before parsing.
    script = (
        "import sys; sys.setrecursionlimit(100_000)\n"
        "from reef.encoding import loads_bounded\n"
        "from reef.errors import InputError\n"
        "try:\n"
        "    loads_bounded(b'[' * 100_000 + b']' * 100_000, what='the body')\n"
        "except InputError as exc:\n"
        "    print(exc.message)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "the body is nested more than 64 levels deep"


def test_loads_bounded_names_what_is_not_json() -> None:
    assert loads_bounded('{"a": [1, {"b": null}]}', what="metadata") == {"a": [1, {"b": None}]}
    assert loads_bounded(b"[" * 3 + b"]" * 3, what="x", max_depth=3) == [[[]]]
    with pytest.raises(InputError, match=r"^job metadata is nested more than 2 levels deep"):
        loads_bounded(b"[[[]]]", what="job metadata", max_depth=2)
    with pytest.raises(InputError, match=r"^job metadata is not JSON"):
        loads_bounded("{", what="job metadata")
    with pytest.raises(InputError, match=r"^the answer is not JSON"):
        loads_bounded("9" * 5000, what="the answer")  # over Python's integer digit limit
    with pytest.raises(InputError, match=r"^the answer is not JSON"):
        loads_bounded(b"\xff\xfe\x00", what="the answer")


# ---- text from strangers on a terminal ----


def test_terminal_text_writes_out_what_a_terminal_would_obey() -> None:
    hostile = "ok\x1b]0;owned\x07\x1b[2J\r\nnext\u202etxt.exe\x9b\x7f"
    shown = terminal_text(hostile)
    assert shown == "ok\\x1b]0;owned\\x07\\x1b[2J\\x0d\\x0anext\\u202etxt.exe\\x9b\\x7f"
    assert all(ch.isprintable() for ch in shown)
    assert terminal_text("tab\tand é ✓ [::1]") == "tab\tand é ✓ [::1]"
