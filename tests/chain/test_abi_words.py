"""reef's event-field decoder against eth-abi, an implementation nobody here wrote: the same
values for every encoding eth-abi makes, and never a value eth-abi would refuse."""

from __future__ import annotations

import pytest
from eth_abi.abi import decode as eth_decode
from eth_abi.abi import encode as eth_encode
from eth_abi.exceptions import DecodingError
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.abi_support import abi_values
from reef.chain._abi_words import decode_words


def _normal(typ: str, value: object) -> object:
    """eth-abi gives addresses as checksummed text; reef gives the 20 bytes."""
    if typ == "address" and isinstance(value, str):
        return bytes.fromhex(value[2:])
    return value


@settings(max_examples=300, deadline=None)
@given(abi_values())
def test_every_encoding_decodes_as_eth_abi_decodes_it(case: tuple[list[str], list[object]]) -> None:
    types, values = case
    data = eth_encode(types, values)
    ours = decode_words(types, data)
    theirs = eth_decode(types, data)
    assert list(ours) == [_normal(t, v) for t, v in zip(types, theirs, strict=True)]


@settings(max_examples=400, deadline=None)
@given(abi_values(), st.data())
def test_a_damaged_encoding_is_never_accepted_where_eth_abi_refuses_it(
    case: tuple[list[str], list[object]], data: st.DataObject
) -> None:
    types, values = case
    encoded = bytearray(eth_encode(types, values))
    if data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(encoded) - 1))
        encoded[index] ^= data.draw(st.integers(1, 255))
    else:
        del encoded[data.draw(st.integers(0, len(encoded) - 1)) :]
    try:
        ours = decode_words(types, bytes(encoded))
    except ValueError:
        return  # refusing more than eth-abi is allowed; accepting more is not
    try:
        theirs = eth_decode(types, bytes(encoded))
    except DecodingError as exc:
        pytest.fail(f"reef accepted {bytes(encoded).hex()} as {types}, eth-abi refused: {exc}")
    assert list(ours) == [_normal(t, v) for t, v in zip(types, theirs, strict=True)]


def test_other_types_go_to_eth_abi() -> None:
    data = eth_encode(["uint256[]", "(uint8,bool)"], [[1, 2, 3], (7, True)])
    assert decode_words(["uint256[]", "(uint8,bool)"], data) == ((1, 2, 3), (7, True))
    with pytest.raises(ValueError, match="read 32 bytes"):
        decode_words(["uint256[]"], b"\x00" * 5)
