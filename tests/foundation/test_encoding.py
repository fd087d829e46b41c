from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reef.encoding import parse_b64, parse_hex, parse_uint, read_key_file, to_hex
from reef.errors import InputError, UintInputError


def test_parse_hex_accepts_prefix_and_whitespace() -> None:
    assert parse_hex(" 0xABcd\n") == b"\xab\xcd"
    assert parse_hex("abcd", length=2) == b"\xab\xcd"


def test_parse_hex_names_the_bad_value() -> None:
    with pytest.raises(InputError, match="image id is not valid hex"):
        parse_hex("zz", name="image id")
    with pytest.raises(InputError, match="must be 32 bytes"):
        parse_hex("00", name="image id", length=32)


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
