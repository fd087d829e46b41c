from __future__ import annotations

import hashlib

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from attestation.nitro_support import statement_typed_data
from reef.crypto import (
    Secp256k1PrivateKey,
    Secp256k1PublicKey,
    clamp_x25519,
    eip191_digest,
    eip712_digest,
    eip712_domain_separator,
    keccak256,
    open_sealed,
    recover_digest,
    seal,
    x25519_public_key,
)
from reef.errors import InputError


def test_keccak_is_not_sha3() -> None:
    assert (
        keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )
    assert keccak256(b"") != hashlib.sha3_256(b"").digest()


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=32, max_size=32).filter(lambda b: 0 < int.from_bytes(b, "big") < 2**255))
def test_address_and_personal_sign_match_eth_account(secret: bytes) -> None:
    key = Secp256k1PrivateKey(secret)
    account = Account.from_key(secret)
    assert key.public_key.checksum_address == account.address
    message = b"reef says hello"
    ours = key.sign_digest(eip191_digest(message))
    theirs = account.sign_message(encode_defunct(message)).signature
    assert ours == bytes(theirs)
    assert recover_digest(eip191_digest(message), ours) == key.public_key


def test_eip712_matches_eth_account() -> None:
    data = statement_typed_data(b"\x02" * 32, 1234, b"\x01\x02", b"")
    signable = encode_typed_data(full_message=data)
    separator = eip712_domain_separator("marlin.oyster.AttestationVerifier", "1")
    # Oyster's published domain separator (reference §1.6).
    assert separator.hex() == "0de834feb03c214f785e75b2828ffeceb322312d4487e2fb9640ca5fc32542c7"
    typehash = keccak256(
        b"Attestation(bytes32 imageId,uint64 timestampMs,bytes publicKey,bytes userData)"
    )
    struct = (
        typehash
        + b"\x02" * 32
        + (1234).to_bytes(32, "big")
        + keccak256(b"\x01\x02")
        + keccak256(b"")
    )
    ours = eip712_digest(separator, keccak256(struct))
    theirs = keccak256(b"\x19" + signable.version + signable.header + signable.body)
    assert ours == theirs


def test_recover_rejects_malformed_signatures() -> None:
    with pytest.raises(InputError, match="65 bytes"):
        recover_digest(b"\x00" * 32, b"\x00" * 64)
    with pytest.raises(InputError, match="v must be"):
        recover_digest(b"\x00" * 32, b"\x01" * 64 + b"\x05")


def test_secret_range_is_checked() -> None:
    with pytest.raises(InputError, match="out of range"):
        Secp256k1PrivateKey(b"\x00" * 32)
    with pytest.raises(InputError, match="32 bytes"):
        Secp256k1PrivateKey(b"\x01" * 31)


def test_public_key_forms() -> None:
    key = Secp256k1PrivateKey.generate().public_key
    assert Secp256k1PublicKey.from_bytes(b"\x04" + key.raw) == key
    with pytest.raises(InputError, match="not a point"):
        Secp256k1PublicKey(b"\x01" * 64)


def test_repr_hides_secret() -> None:
    key = Secp256k1PrivateKey(b"\x11" * 32)
    assert "11" * 8 not in repr(key)


def test_sealed_box_round_trip_and_wrong_key() -> None:
    secret = clamp_x25519(b"\x07" * 32)
    box = seal(b"top secret", x25519_public_key(secret))
    assert len(box) == len(b"top secret") + 48
    assert open_sealed(box, secret) == b"top secret"
    with pytest.raises(InputError, match="does not open"):
        open_sealed(box, clamp_x25519(b"\x08" * 32))
