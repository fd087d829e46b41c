"""Private inputs' encryption: Kalypso's own vectors open here, and what reef seals opens only
for the key, the market and the body it was made for."""

from __future__ import annotations

import json
import zlib

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reef.crypto import Secp256k1PrivateKey
from reef.errors import InputError, InvalidProofInputError, ProofError
from reef.proofs import (
    decrypt_secret,
    ecies_decrypt,
    ecies_encrypt,
    encrypt_secret,
    market_aad,
    open_secret,
    parse_private_inputs,
    reencrypt_acl,
)
from reef.proofs._secret import ACL_SIZE, MAX_SECRET_BYTES

# Interop vectors from Kalypso's Rust helpers (marlinprotocol/kalypso-unified,
# helper/src/secret_inputs_helpers.rs, commit 06b4e8507d79df2c42afac944ddc2fa66fd77aa8, tests
# test_cipher_dec and test_aes_gcm_dec): made by the Rust `ecies` and `aes-gcm` crates, an
# implementation nobody here wrote.
KALYPSO_ECIES_KEY = "ca9cbf143a43e422a307b03ec61a82ce99c053290c3053655d0ad69e863a18c4"
KALYPSO_ECIES_CIPHERTEXT = (
    "0438f743cfbb1f980640ccdbe156f84ebccbf7eb10423e5b7a29ef0efc1d41e5bfa2484e95cf6d819c7778d06cb9"
    "ea0461ea3fa0d9119fc41f6fe80e66e9feb37fa08d9cd5524956bd7b718d6ffb9f74636336daa6590a05d1063ee2"
    "4f1d6db0cc78c84e5337f3cbd4a865a90ea1e047a0e2ae5beeb2576c00e4cae8363d051b71"
)
KALYPSO_AES_KEY = "0000111100001111000011110000111100001111000011110000111100001111"
KALYPSO_GCM_BODY = (
    "c80bbd5590cac0d3ee6a1586473539242711d3fcd1f9ea871e9efdbe07896081c37b5124e0dcc6c50bcb0d46f798"
    "f5f0bf4d31310fd7b5508277b041ced1f6ae4c1a6eeb"
)
KALYPSO_MARKET = 1234567890

ENGINE = Secp256k1PrivateKey(b"\x41" * 32)
PROVER = Secp256k1PrivateKey(b"\x42" * 32)


def test_kalypso_ecies_vector_opens() -> None:
    plain = ecies_decrypt(bytes.fromhex(KALYPSO_ECIES_KEY), bytes.fromhex(KALYPSO_ECIES_CIPHERTEXT))
    assert plain == bytes.fromhex(KALYPSO_AES_KEY)
    assert len(bytes.fromhex(KALYPSO_ECIES_CIPHERTEXT)) == ACL_SIZE


def test_kalypso_body_uses_the_market_id_as_minimal_big_endian_aad() -> None:
    body = bytes.fromhex(KALYPSO_GCM_BODY)
    key = bytes.fromhex(KALYPSO_AES_KEY)
    assert market_aad(KALYPSO_MARKET) == bytes.fromhex("499602d2")
    plain = AESGCM(key).decrypt(body[:12], body[12:], market_aad(KALYPSO_MARKET))
    assert plain == b"this is the data that we wish to encrypt"


def test_ecies_round_trip_and_layout() -> None:
    acl = ecies_encrypt(ENGINE.public_key.raw, b"k" * 32)
    assert len(acl) == ACL_SIZE
    assert acl[0] == 4
    assert ecies_decrypt(ENGINE.secret, acl) == b"k" * 32
    with pytest.raises(ProofError, match="does not open"):
        ecies_decrypt(PROVER.secret, acl)
    tampered = acl[:-1] + bytes([acl[-1] ^ 1])
    with pytest.raises(ProofError, match="does not open"):
        ecies_decrypt(ENGINE.secret, tampered)
    with pytest.raises(ProofError, match="at least 97 bytes"):
        ecies_decrypt(ENGINE.secret, acl[:50])


def test_a_secret_opens_for_its_reader_and_market_only() -> None:
    secret = b'{"x":"12345"}'
    sealed = encrypt_secret(secret, 7, ENGINE.public_key.raw)
    assert secret not in sealed.body
    assert decrypt_secret(sealed, ENGINE.secret, 7) == secret
    with pytest.raises(ProofError, match="market 8"):
        decrypt_secret(sealed, ENGINE.secret, 8)  # the market id is authenticated
    with pytest.raises(ProofError):
        decrypt_secret(sealed, PROVER.secret, 7)
    # The body is deflated before sealing (Kalypso's SDK does the same).
    key = ecies_decrypt(ENGINE.secret, sealed.acl)
    raw = AESGCM(key).decrypt(sealed.body[:12], sealed.body[12:], market_aad(7))
    assert zlib.decompress(raw) == secret


def test_the_engine_re_encrypts_the_same_key_to_the_prover() -> None:
    sealed = encrypt_secret(b'{"x":"1"}', 3, ENGINE.public_key.raw)
    new_acl = reencrypt_acl(sealed.acl, ENGINE.secret, PROVER.public_key.raw)
    key = ecies_decrypt(PROVER.secret, new_acl)
    assert key == ecies_decrypt(ENGINE.secret, sealed.acl)
    assert open_secret(sealed.body, key, 3) == b'{"x":"1"}'


def test_a_body_that_opens_but_is_not_deflated_is_an_invalid_input() -> None:
    key = b"\x07" * 32
    body = b"\x00" * 12 + AESGCM(key).encrypt(b"\x00" * 12, b"not zlib", market_aad(1))
    with pytest.raises(InvalidProofInputError, match="deflated"):
        open_secret(body, key, 1)


def test_a_too_large_secret_is_refused_before_sending() -> None:
    noise = b"".join(Secp256k1PrivateKey.generate().secret for _ in range(MAX_SECRET_BYTES // 16))
    with pytest.raises(InputError, match="at most"):
        encrypt_secret(noise, 1, ENGINE.public_key.raw)


@pytest.mark.parametrize(
    ("plaintext", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"y": 1}).encode(), "the market takes"),
        (json.dumps({"x": "abc"}).encode(), "not an integer"),
        (json.dumps({"x": True}).encode(), "not an integer"),
        (json.dumps({"x": 2**256}).encode(), "256 bits"),
    ],
)
def test_malformed_private_inputs_are_invalid_inputs(plaintext: bytes, message: str) -> None:
    with pytest.raises(InvalidProofInputError, match=message):
        parse_private_inputs(plaintext, ["x"])


def test_private_inputs_parse_to_snarkjs_decimal_strings() -> None:
    assert parse_private_inputs(b'{"x": "0x10", "y": 5}', ["x", "y"]) == {"x": "16", "y": "5"}
