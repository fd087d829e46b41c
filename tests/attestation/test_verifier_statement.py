"""The verifier's EIP-712 statement: Oyster's published signatures byte for byte, and agreement with
independent implementations (eth-account's EIP-712 encoder and signer, eth-keys' recovery)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_keys.datatypes import Signature as EthKeysSignature
from hypothesis import given, settings
from hypothesis import strategies as st

from attestation.nitro_support import statement_typed_data
from reef.attestation import (
    TrustedRoot,
    VerifierStatement,
    sign_statement,
    statement_digest,
    verify_statement,
)
from reef.attestation._verifier_service import load_verifier_key, verify_and_sign
from reef.crypto import SECP256K1_N, Secp256k1PrivateKey
from reef.errors import ConfigError, InputError, SignatureError, StaleAttestationError

# reference oyster_cvm.md §1.6
DOMAIN_SEPARATOR = "0de834feb03c214f785e75b2828ffeceb322312d4487e2fb9640ca5fc32542c7"


def _typed_data(image_id: bytes, timestamp_ms: int, public_key: bytes, user_data: bytes) -> Any:
    """The statement as EIP-712 JSON typed data, for eth-account's independent encoder."""
    return encode_typed_data(
        full_message=statement_typed_data(image_id, timestamp_ms, public_key, user_data)
    )


def _eth_keys_signer(statement: VerifierStatement) -> bytes:
    """Recover the signer with eth-keys (v as 0/1), independently of reef.crypto (coincurve)."""
    signature = statement.signature
    vrs = (signature[64] - 27, int.from_bytes(signature[:32]), int.from_bytes(signature[32:64]))
    public = EthKeysSignature(vrs=vrs).recover_public_key_from_msg_hash(statement.digest)
    return bytes(public.to_bytes())


@pytest.fixture(scope="module")
def verifier_vectors(vectors: Path) -> dict[str, Any]:
    return dict(json.loads((vectors / "verifier" / "expected.json").read_text()))


@pytest.fixture(scope="module")
def key(vectors: Path) -> Secp256k1PrivateKey:
    return load_verifier_key(vectors / "verifier" / "secp256k1.sec")


def test_the_test_key_matches_its_public_half(
    vectors: Path, key: Secp256k1PrivateKey, verifier_vectors: dict[str, Any]
) -> None:
    public = (vectors / "verifier" / "secp256k1.pub").read_bytes()
    assert key.public_key.raw == public
    assert public.hex() == verifier_vectors["key_public"]


def test_oyster_statements_byte_for_byte(
    vectors: Path, key: Secp256k1PrivateKey, verifier_vectors: dict[str, Any]
) -> None:
    """Verify each real document (chain at its own time) and sign: Oyster's exact signatures."""
    assert len(verifier_vectors["signatures"]) == 2
    for relative, expected in verifier_vectors["signatures"].items():
        document = (vectors / relative).read_bytes()
        statement = verify_and_sign(document, key, root=TrustedRoot.aws())
        assert statement.signature.hex() == expected, relative
        assert statement.verifier_public_key.hex() == verifier_vectors["key_public"]
        nitro = json.loads((vectors / "nitro" / "expected.json").read_text())[Path(relative).name]
        assert statement.image_id.hex() == nitro["image_id"]
        assert statement.timestamp_ms == nitro["timestamp_ms"]
        assert statement.public_key.hex() == nitro["public_key"]
        assert statement.user_data.hex() == nitro["user_data"]
        assert verify_statement(statement.to_json(), key.public_key) == statement


def test_digest_matches_eth_account_encoding() -> None:
    cases = [
        (bytes(32), 0, b"", b""),
        (bytes(range(32)), 1723012689640, b"\x04" * 64, b"user data"),
        (b"\xff" * 32, (1 << 64) - 1, b"k" * 1024, bytes(300)),
    ]
    for image_id, timestamp_ms, public_key, user_data in cases:
        signable = _typed_data(image_id, timestamp_ms, public_key, user_data)
        assert signable.header.hex() == DOMAIN_SEPARATOR
        ours = statement_digest(
            image_id=image_id, timestamp_ms=timestamp_ms, public_key=public_key, user_data=user_data
        )
        assert ours == _hash_eip191_message(signable)


@settings(max_examples=40, deadline=None)
@given(
    secret=st.integers(1, SECP256K1_N - 1),
    image_id=st.binary(min_size=32, max_size=32),
    timestamp_ms=st.integers(0, (1 << 64) - 1),
    public_key=st.binary(max_size=100),
    user_data=st.binary(max_size=100),
)
def test_statements_agree_with_eth_account_and_eth_keys(
    secret: int, image_id: bytes, timestamp_ms: int, public_key: bytes, user_data: bytes
) -> None:
    key = Secp256k1PrivateKey(secret.to_bytes(32, "big"))
    statement = sign_statement(
        key,
        image_id=image_id,
        timestamp_ms=timestamp_ms,
        public_key=public_key,
        user_data=user_data,
    )
    # eth-account signs the same typed data with its own RFC 6979 implementation (eth-keys):
    # deterministic low-s ECDSA must give the very same 65 bytes.
    theirs = Account.sign_message(
        _typed_data(image_id, timestamp_ms, public_key, user_data), private_key=key.secret
    )
    assert statement.signature == bytes(theirs.signature)
    assert int.from_bytes(statement.signature[32:64]) <= SECP256K1_N // 2  # low s
    assert statement.signature[64] in (27, 28)
    assert _eth_keys_signer(statement) == key.public_key.raw


def test_json_round_trip_and_shape(key: Secp256k1PrivateKey) -> None:
    statement = sign_statement(
        key, image_id=b"\x11" * 32, timestamp_ms=42, public_key=b"", user_data=b"\x00\x01"
    )
    data = statement.to_json()
    assert list(data) == [
        "signature",
        "image_id",
        "timestamp_ms",
        "public_key",
        "user_data",
        "verifier_public_key",
    ]
    assert data["public_key"] == ""
    assert data["user_data"] == "0001"
    assert data["timestamp_ms"] == 42
    assert VerifierStatement.from_json(json.loads(json.dumps(data))) == statement
    prefixed = {k: ("0x" + v if isinstance(v, str) and v else v) for k, v in data.items()}
    assert VerifierStatement.from_json(prefixed) == statement


def test_verify_statement_refuses_an_old_document_only_when_asked(
    key: Secp256k1PrivateKey,
) -> None:
    """Freshness is checked after the signature (a forged old statement says forged, not old),
    against the caller's clock; at exactly ``max_age_ms`` it still passes."""
    statement = sign_statement(
        key, image_id=b"\x22" * 32, timestamp_ms=100_000, public_key=b"pk", user_data=b"ud"
    )
    assert verify_statement(statement, key.public_key, clock_ms=lambda: 10**12) == statement
    fresh = verify_statement(statement, key.public_key, max_age_ms=60_000, clock_ms=lambda: 160_000)
    assert fresh == statement
    with pytest.raises(StaleAttestationError, match="160 s old, more than 60 s") as caught:
        verify_statement(statement, key.public_key, max_age_ms=60_000, clock_ms=lambda: 260_000)
    assert "fresh" in (caught.value.hint or "")
    other = Secp256k1PrivateKey.generate()
    with pytest.raises(SignatureError):
        verify_statement(statement, other.public_key, max_age_ms=1, clock_ms=lambda: 10**12)


def test_verify_statement_rejects_forgeries(key: Secp256k1PrivateKey) -> None:
    other = Secp256k1PrivateKey.generate()
    statement = sign_statement(
        key, image_id=b"\x22" * 32, timestamp_ms=7, public_key=b"pk", user_data=b"ud"
    )
    verify_statement(statement, key.public_key.raw)
    verify_statement(statement, b"\x04" + key.public_key.raw)

    with pytest.raises(SignatureError, match="not by the trusted verifier") as caught:
        verify_statement(statement, other.public_key)
    assert caught.value.reason == "statement_signer"

    for field, value in [
        ("image_id", b"\x23" * 32),
        ("timestamp_ms", 8),
        ("public_key", b"pK"),
        ("user_data", b""),
    ]:
        altered = VerifierStatement(**{**statement.__dict__, field: value})
        with pytest.raises(SignatureError):
            verify_statement(altered, key.public_key)

    # Signed by someone else but claiming to be the trusted verifier.
    impostor = sign_statement(
        other, image_id=b"\x22" * 32, timestamp_ms=7, public_key=b"pk", user_data=b"ud"
    )
    claimed = replace(impostor, verifier_public_key=key.public_key.raw)
    with pytest.raises(SignatureError, match="not by the trusted verifier"):
        verify_statement(claimed, key.public_key)
    # Signed by the trusted key but naming another key.
    misnamed = replace(statement, verifier_public_key=other.public_key.raw)
    with pytest.raises(SignatureError, match="names a verifier_public_key"):
        verify_statement(misnamed, key.public_key)

    # The same signature with s' = n - s and v flipped recovers the same key: a re-encoding
    # that on-chain checks (OpenZeppelin) refuse, and so does reef.
    r, s, v = statement.signature[:32], statement.signature[32:64], statement.signature[64]
    high_s = (SECP256K1_N - int.from_bytes(s)).to_bytes(32, "big")
    refused = [
        (r + high_s + bytes([55 - v]), "high s"),  # malleated
        (statement.signature[:64] + bytes([v - 27]), "not 27 or 28"),  # v as 0/1
        (statement.signature[:64] + b"\x05", "not 27 or 28"),
        (bytes(64) + statement.signature[64:], "invalid"),  # unrecoverable
        (statement.signature[:64], "65 bytes"),  # short
    ]
    for signature, needle in refused:
        with pytest.raises(SignatureError, match=needle):
            verify_statement(replace(statement, signature=signature), key.public_key)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"image_id": "00" * 31}, "image_id must be 32 bytes"),
        ({"signature": "zz"}, "signature is not valid hex"),
        ({"timestamp_ms": "5"}, "timestamp_ms must be an integer"),
        ({"timestamp_ms": -1}, "uint64"),
        ({"timestamp_ms": 1 << 64}, "uint64"),
        ({"user_data": 5}, "user_data must be a hex string"),
        ({"verifier_public_key": "00" * 63}, "verifier_public_key must be 64 bytes"),
    ],
)
def test_malformed_statement_json(
    key: Secp256k1PrivateKey, change: dict[str, Any], needle: str
) -> None:
    data = sign_statement(
        key, image_id=bytes(32), timestamp_ms=1, public_key=b"", user_data=b""
    ).to_json()
    data.update(change)
    with pytest.raises(InputError, match=needle):
        verify_statement(data, key.public_key)


def test_missing_fields_and_wrong_types(key: Secp256k1PrivateKey) -> None:
    with pytest.raises(InputError, match="lacks signature, image_id"):
        VerifierStatement.from_json({"timestamp_ms": 1})
    with pytest.raises(InputError, match="JSON object"):
        VerifierStatement.from_json([1, 2])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="needs image_id"):
        sign_statement(key, image_id=bytes(32))
    with pytest.raises(InputError, match="not a secp256k1 public key"):
        verify_statement(
            sign_statement(key, image_id=bytes(32), timestamp_ms=1, public_key=b"", user_data=b""),
            b"\x01\x02",
        )


# --- key files -------------------------------------------------------------------------------------


def test_key_files(tmp_path: Path, key: Secp256k1PrivateKey) -> None:
    secret = key.secret
    forms = {
        "raw": secret,
        "hex": secret.hex().encode(),
        "hex_newline": secret.hex().encode() + b"\n",
        "prefixed": b"0x" + secret.hex().upper().encode() + b"\r\n",
    }
    for name, content in forms.items():
        path = tmp_path / name
        path.write_bytes(content)
        assert load_verifier_key(path) == key, name


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\x00" * 32, "not a valid secp256k1 key"),
        (b"\x01" * 31, "neither 32 raw bytes nor 64 hex digits"),
        (b"ab" * 33, "neither 32 raw bytes nor 64 hex digits"),
        (b"\xff" * 64, "neither 32 raw bytes nor 64 hex digits"),
        (b"", "neither 32 raw bytes nor 64 hex digits"),
    ],
)
def test_bad_key_files(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=needle):
        load_verifier_key(path)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the key file"):
        load_verifier_key(tmp_path / "absent")
