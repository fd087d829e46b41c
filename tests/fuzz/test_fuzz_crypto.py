"""reef.crypto and the verifier's signed statement, fuzzed: sealed boxes, keys, signatures and
EIP-712 domains as strangers hand them over.

A sealed box arrives from whoever sealed it, a recipient key from a stranger's KMS or enclave,
a statement and its signature from any verifier. Each function answers a value or an
``InputError`` (``SignatureError`` for statements), never a libsodium, coincurve or eth-abi
exception.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.fuzz_support import FUZZ, json_values, mutated, mutations, replace_somewhere
from reef.attestation import VerifierStatement, sign_statement, verify_statement
from reef.crypto import (
    Secp256k1PrivateKey,
    Secp256k1PublicKey,
    eip712_domain_separator,
    generate_x25519,
    open_sealed,
    recover_digest,
    seal,
)
from reef.errors import InputError, SignatureError

# The X25519 points of small order (libsodium's blocklist, RFC 7748 §7): a shared secret with
# any of them is all zeros, which libsodium refuses to seal to.
LOW_ORDER_POINTS = (
    bytes(32),
    b"\x01" + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
)


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8])
def test_sealing_to_a_low_order_point_is_an_input_error(point: bytes) -> None:
    # libsodium refuses, and PyNaCl raised its own RuntimeError ("Unexpected library error").
    with pytest.raises(InputError, match="not a usable X25519 public key"):
        seal(b"secret init param", point)


@FUZZ
@given(st.binary(min_size=32, max_size=32) | st.sampled_from(LOW_ORDER_POINTS), st.binary())
def test_sealing_to_any_32_bytes(key: bytes, plaintext: bytes) -> None:
    with contextlib.suppress(InputError):
        assert len(seal(plaintext, key)) == len(plaintext) + 48


@FUZZ
@given(st.binary(max_size=64), mutations)
def test_edited_sealed_boxes_do_not_open(
    plaintext: bytes, edits: list[tuple[str, int, bytes]]
) -> None:
    secret, public = generate_x25519()
    box = seal(plaintext, public)
    changed = mutated(box, edits)
    if changed == box:
        assert open_sealed(changed, secret) == plaintext
        return
    with pytest.raises(InputError):
        open_sealed(changed, secret)


@FUZZ
@given(st.binary(max_size=80))
def test_any_bytes_as_a_secp256k1_public_key(data: bytes) -> None:
    with contextlib.suppress(InputError):
        key = Secp256k1PublicKey.from_bytes(data)
        assert Secp256k1PublicKey.from_bytes(b"\x04" + key.raw) == key


@FUZZ
@given(
    st.binary(min_size=32, max_size=32), st.binary(min_size=64, max_size=64), st.integers(0, 255)
)
def test_any_signature_recovers_a_key_or_is_an_input_error(
    digest: bytes, rs: bytes, v: int
) -> None:
    with contextlib.suppress(InputError):
        recover_digest(digest, rs + bytes([v]))


_addresses = st.one_of(
    st.text(max_size=44),
    st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
    st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex().upper()),
    st.sampled_from(["0x12", "0x" + "zz" * 20, "0x" + "aB" * 20, "\ud800"]),
)


@FUZZ
@given(
    st.text(st.characters(exclude_categories=()), max_size=12),
    st.none() | st.integers(min_value=-(2**260), max_value=2**260) | st.booleans(),
    st.none() | _addresses,
)
def test_any_eip712_domain_is_a_separator_or_an_input_error(
    name: str, chain_id: int | None, contract: str | None
) -> None:
    with contextlib.suppress(InputError):
        separator = eip712_domain_separator(
            name, "1", chain_id=chain_id, verifying_contract=contract
        )
        assert len(separator) == 32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chain_id": -1}, "chain id"),
        ({"chain_id": 2**256}, "chain id"),
        ({"chain_id": True}, "chain id"),
        ({"verifying_contract": "0x12"}, "verifying contract"),
        ({"verifying_contract": "0x" + "zz" * 20}, "verifying contract"),
    ],
)
def test_an_eip712_domain_eth_abi_cannot_encode_is_an_input_error(
    kwargs: dict[str, Any], message: str
) -> None:
    # eth-abi's ValueOutOfBounds and EncodingTypeError came out as they were.
    with pytest.raises(InputError, match=message):
        eip712_domain_separator("reef.jobs", "1", **kwargs)
    with pytest.raises(InputError, match="not UTF-8"):
        eip712_domain_separator("\ud800", "1")


# ---- the verifier's signed statement ----

_KEY = Secp256k1PrivateKey(bytes(31) + b"\x07")
_STATEMENT = sign_statement(
    _KEY, image_id=bytes(range(32)), timestamp_ms=1_700_000_000_000, public_key=b"k" * 64,
    user_data=b"u" * 5,
)  # fmt: skip


@FUZZ
@given(
    st.lists(st.integers(0, 10), min_size=1, max_size=2),
    json_values() | st.sampled_from(["", "0x", "zz", "\u00e9", "\ud800", "00" * 65, "1" * 5000]),
)
def test_a_statement_with_any_value_anywhere(path: list[int], value: Any) -> None:
    doc = replace_somewhere(_STATEMENT.to_json(), path, value)
    try:
        verify_statement(doc, _KEY.public_key)
    except (InputError, SignatureError):
        return
    assert VerifierStatement.from_json(doc) == _STATEMENT


@FUZZ
@given(mutations)
def test_edited_statement_json(edits: list[tuple[str, int, bytes]]) -> None:
    text = mutated(json.dumps(_STATEMENT.to_json()).encode(), edits)
    try:
        doc = json.loads(text)
    except ValueError:
        return
    try:
        verified = verify_statement(doc, _KEY.public_key)
    except (InputError, SignatureError):
        return
    assert verified == _STATEMENT  # only an edit that changed nothing the signature covers
