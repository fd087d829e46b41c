"""reef's EIP-55 checksum (:func:`reef.crypto.eip55_address`, from Keccak-256 alone) against the
EIP's own examples and against eth-utils on many addresses; :func:`reef.chain.parse_address`
accepts and refuses what eth-utils' ``is_address`` does (any case: a mixed-case address is not
held to its checksum, as before)."""

from __future__ import annotations

import random

import pytest
from eth_utils.address import is_address, to_checksum_address

from reef.chain import parse_address
from reef.crypto import eip55_address
from reef.errors import InputError

# EIP-55's test cases (eips.ethereum.org/EIPS/eip-55): all caps, all lower, and mixed.
EIP55_EXAMPLES = [
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]


@pytest.mark.parametrize("address", EIP55_EXAMPLES)
def test_the_eips_examples(address: str) -> None:
    assert eip55_address(address.lower()) == address
    assert eip55_address(address.upper().replace("0X", "0x")) == address
    assert eip55_address(bytes.fromhex(address[2:])) == address
    assert parse_address(address) == address


def test_many_addresses_agree_with_eth_utils() -> None:
    rng = random.Random(55)
    for _ in range(3000):
        raw = rng.randbytes(20)
        expected = to_checksum_address(raw)
        assert eip55_address(raw) == expected
        assert eip55_address(raw.hex()) == expected
        assert eip55_address("0X" + raw.hex().upper()) == expected
        assert parse_address("0x" + raw.hex()) == str(expected)


def test_parse_address_accepts_and_refuses_what_eth_utils_does() -> None:
    rng = random.Random(56)
    good = to_checksum_address(rng.randbytes(20))
    flipped = good[:2] + "".join(c.swapcase() if c.isalpha() else c for c in good[2:])
    one_off = good[:-1] + good[-1].swapcase() if good[-1].isalpha() else good[:3] + good[3:]
    candidates = [
        good,
        good.lower(),
        good.upper(),  # 0X prefix, all caps
        good[2:],  # no prefix
        "0x" + "0" * 40,
        "0x" + "1" * 40,
        flipped,
        one_off,
        good + "0",
        good[:-1],
        "0x" + "g" * 40,
        "",
        "0x",
        " " + good,  # parse_address strips; eth-utils is asked the stripped text below
    ]
    for text in candidates:
        stripped = text.strip()
        accepted = is_address(stripped)
        if accepted:
            assert parse_address(text) == str(to_checksum_address(stripped)), text
        else:
            with pytest.raises(InputError):
                parse_address(text)


@pytest.mark.parametrize("bad", ["0x1234", "0x" + "zz" * 20, b"\x00" * 19, "0x" + "00" * 21])
def test_non_addresses_are_refused(bad: str | bytes) -> None:
    with pytest.raises(InputError):
        eip55_address(bad)
