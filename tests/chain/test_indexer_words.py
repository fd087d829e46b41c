"""The indexer's check of a log's data (``words_checker``, on the node's hex text) against the
decoder events are read back with (``words_decoder``): it accepts exactly what the decoder
accepts (strings read as bytes, as event decoders read them), on eth-abi's encodings and on
damaged ones, so a log the indexer stores is always one it can read back."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode as eth_encode
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.abi_support import abi_values
from reef.chain._abi_words import words_checker, words_decoder
from reef.errors import InputError


def _decodes(types: list[str], data: bytes) -> bool:
    try:
        words_decoder(["bytes" if t == "string" else t for t in types])(data)
    except InputError:
        return False
    return True


def _checks(types: list[str], data: bytes) -> bool:
    try:
        words_checker(types)("0x" + data.hex())
    except InputError:
        return False
    return True


@st.composite
def _encoded(draw: st.DrawFn) -> tuple[list[str], bytes]:
    types, values = draw(abi_values())
    return types, eth_encode(types, values)


@settings(max_examples=300, deadline=None)
@given(_encoded())
def test_every_encoding_passes(case: tuple[list[str], bytes]) -> None:
    types, data = case
    assert _checks(types, data)


@settings(max_examples=500, deadline=None)
@given(_encoded(), st.data())
def test_a_damaged_encoding_is_refused_exactly_when_the_decoder_refuses_it(
    case: tuple[list[str], bytes], data: st.DataObject
) -> None:
    types, encoded = case
    damaged = bytearray(encoded)
    if data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(damaged) - 1))
        damaged[index] ^= data.draw(st.integers(1, 255))
    else:
        del damaged[data.draw(st.integers(0, len(damaged) - 1)) :]
    assert _checks(types, bytes(damaged)) == _decodes(types, bytes(damaged))


def test_text_that_is_not_hex_data_is_refused() -> None:
    check = words_checker(["uint256", "string"])
    good = "0x" + eth_encode(["uint256", "string"], [1, "x"]).hex()
    check(good)
    for bad in (good[2:], good[:-1], good[:-2] + "zz", "0x"):
        with pytest.raises(InputError):
            check(bad)
    static = words_checker(["uint256"])
    static("0x" + "ab" * 32)
    for bad in ("0x" + "zz" * 32, "0x" + "0" * 63, "0x"):
        with pytest.raises(InputError):
            static(bad)


def test_other_types_are_checked_by_decoding() -> None:
    check = words_checker(["uint256[]"])
    check("0x" + eth_encode(["uint256[]"], [[1, 2]]).hex())
    with pytest.raises(InputError):
        check("0x" + "00" * 5)
