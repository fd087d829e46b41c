from __future__ import annotations

import pytest

from reef.encoding import parse_b64, parse_hex, to_hex
from reef.errors import InputError


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
