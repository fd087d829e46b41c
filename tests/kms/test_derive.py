"""Derivation: Oyster's published vectors, properties, versions, and `reef kms derive`."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import nacl.public
import nacl.signing
import pytest
from eth_keys import keys as eth_keys
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from imports_support import loaded_after
from reef.cli import app
from reef.crypto import SECP256K1_N
from reef.errors import InputError
from reef.kms import (
    KEY_TYPES,
    RootSeed,
    contract_seed,
    derive_key,
    derive_secret,
    enclave_seed,
    key_from_seed,
    path_seed,
)

seeds = st.binary(min_size=64, max_size=64)
image_ids = st.binary(min_size=32, max_size=32)


@pytest.fixture(scope="module")
def kms_vectors(vectors: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((vectors / "kms" / "oyster_derive.json").read_text())
    return data


def test_image_seed_vector(kms_vectors: dict[str, Any]) -> None:
    root = RootSeed(bytes.fromhex(kms_vectors["root_seed"]))
    seed = enclave_seed(root, bytes.fromhex(kms_vectors["image_id"]))
    assert seed.hex() == kms_vectors["image_seed"]


def test_contract_seed_vector(kms_vectors: dict[str, Any]) -> None:
    root = RootSeed(bytes.fromhex(kms_vectors["root_seed"]))
    contract = kms_vectors["contract"]
    seed = contract_seed(root, contract["chain_id"], contract["address"])
    assert seed.hex() == contract["seed"]
    # The address is hashed as given after lowercasing: case does not matter, 0x does.
    assert contract_seed(root, contract["chain_id"], contract["address"].upper()[2:]) != seed
    assert contract_seed(root, contract["chain_id"], "0x" + contract["address"][2:].upper()) == seed


def test_path_seed_vector(kms_vectors: dict[str, Any]) -> None:
    path = kms_vectors["path"]
    seed = path_seed(bytes.fromhex(path["parent"]), bytes.fromhex(path["path_hex"]))
    assert seed.hex() == path["seed"]


def test_key_vectors(kms_vectors: dict[str, Any]) -> None:
    root = bytes.fromhex(kms_vectors["root_seed"])
    want = kms_vectors["keys_of_root_seed"]
    secp = key_from_seed(root, "secp256k1")
    assert secp.secret.hex() == want["secp256k1_secret"]
    assert secp.public_key.hex() == want["secp256k1_public"]
    assert secp.address == want["eth_address"]
    ed = key_from_seed(root, "ed25519")
    assert ed.secret.hex() == want["ed25519_secret"]
    assert ed.public_key.hex() == want["ed25519_public"]
    assert ed.address == "BEYzkmcGNdhqHAPKQ7oz89n1RbAumm2kwtX113pPuCax"
    x = key_from_seed(root, "x25519")
    assert x.secret.hex() == want["x25519_secret"]
    assert x.public_key.hex() == want["x25519_public"]
    assert x.address is None


def test_secp256k1_edge_vectors(kms_vectors: dict[str, Any]) -> None:
    ff = key_from_seed(b"\xff" * 64, "secp256k1")
    assert ff.secret.hex() == kms_vectors["secp256k1_secret_of_all_ff"]
    zero = key_from_seed(bytes(64), "secp256k1")
    assert zero.secret.hex() == kms_vectors["secp256k1_secret_of_all_00"]


def test_derive_secret_matches_the_vectors(kms_vectors: dict[str, Any]) -> None:
    """The secrets-only path (an enclave's derive server) gives the vectors' secrets."""
    root = bytes.fromhex(kms_vectors["root_seed"])
    want = kms_vectors["keys_of_root_seed"]
    from reef.kms._derive import _secret_from_seed

    for key_type in KEY_TYPES:
        assert _secret_from_seed(root, key_type).hex() == want[f"{key_type}_secret"]
    assert (
        _secret_from_seed(b"\xff" * 64, "secp256k1").hex()
        == (kms_vectors["secp256k1_secret_of_all_ff"])
    )
    assert (
        _secret_from_seed(bytes(64), "secp256k1").hex()
        == (kms_vectors["secp256k1_secret_of_all_00"])
    )
    with pytest.raises(InputError, match="unknown key type"):
        derive_secret(root, "p", "rsa")  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(seed=seeds, path=st.text(max_size=20))
def test_derive_secret_is_derive_key_secret(seed: bytes, path: str) -> None:
    for key_type in KEY_TYPES:
        assert derive_secret(seed, path, key_type) == derive_key(seed, path, key_type).secret


def test_derive_secret_loads_no_public_key_library() -> None:
    """An enclave's derive server answers secrets with reef.crypto's pure-Python scalar rules
    alone: none of reef.crypto's key modules (coincurve, pysha3, base58, cryptography), which
    its supervisor would otherwise load; and the derivation keeps no copy of those rules."""
    import inspect

    from reef.crypto import clamp_x25519
    from reef.kms import _derive

    source = inspect.getsource(_derive).upper()
    assert "BAAEDCE6AF48A03BBFD25E8CD0364141" not in source  # secp256k1's order, written out
    assert "&= 248" not in source
    assert "&= 0XF8" not in source
    seed = bytes(range(64))
    assert derive_secret(seed, "a", "x25519") == clamp_x25519(path_seed(seed, "a")[:32])
    loaded = loaded_after(
        "from reef.kms import derive_secret; "
        "derive_secret(bytes(64), 'a', 'secp256k1'); derive_secret(bytes(64), 'a', 'x25519')"
    )
    assert "reef.kms._derive" in loaded
    assert {m for m in loaded if m.startswith("reef.crypto")} == {
        "reef.crypto",
        "reef.crypto._scalars",
    }
    for module in ("coincurve", "sha3", "base58", "cryptography", "nacl", "eth_abi"):
        assert module not in loaded, module


def _reference_twice(key: bytes, message: bytes) -> bytes:
    first = hmac.new(key, message, hashlib.sha512).digest()
    return hmac.new(first, message, hashlib.sha512).digest()


@settings(max_examples=200, deadline=None)
@given(seed=seeds)
def test_secp256k1_secret_always_in_range(seed: bytes) -> None:
    key = key_from_seed(seed, "secp256k1")
    value = int.from_bytes(key.secret, "big")
    assert 1 <= value <= SECP256K1_N - 1
    assert value == int.from_bytes(seed[:32], "big") % (SECP256K1_N - 1) + 1
    # eth-keys (an independent implementation) agrees on the public key and the address.
    independent = eth_keys.PrivateKey(key.secret)
    assert independent.public_key.to_bytes() == key.public_key
    assert independent.public_key.to_address() == key.address


@settings(max_examples=100, deadline=None)
@given(seed=seeds)
def test_ed25519_and_x25519_match_libsodium(seed: bytes) -> None:
    ed = key_from_seed(seed, "ed25519")
    signing = nacl.signing.SigningKey(ed.secret)
    assert bytes(signing.verify_key) == ed.public_key
    x = key_from_seed(seed, "x25519")
    assert bytes(nacl.public.PrivateKey(x.secret).public_key) == x.public_key
    assert x.secret[0] & 7 == 0
    assert x.secret[31] & 0xC0 == 0x40


@settings(max_examples=100, deadline=None)
@given(root=seeds, a=image_ids, b=image_ids, path=st.text(max_size=40))
def test_different_images_never_collide(root: bytes, a: bytes, b: bytes, path: str) -> None:
    seed = RootSeed(root)
    if a == b:
        return
    seed_a, seed_b = enclave_seed(seed, a), enclave_seed(seed, b)
    assert seed_a != seed_b
    for key_type in KEY_TYPES:
        key_a = derive_key(seed_a, path, key_type)
        key_b = derive_key(seed_b, path, key_type)
        assert key_a.secret != key_b.secret
        assert key_a.public_key != key_b.public_key


@settings(max_examples=100, deadline=None)
@given(root=seeds, image=image_ids, p=st.text(max_size=40), q=st.text(max_size=40))
def test_different_paths_never_collide(root: bytes, image: bytes, p: str, q: str) -> None:
    if p == q:
        return
    parent = enclave_seed(RootSeed(root), image)
    for key_type in KEY_TYPES:
        assert (
            derive_key(parent, p, key_type).public_key != derive_key(parent, q, key_type).public_key
        )


@settings(max_examples=100, deadline=None)
@given(root=seeds, image=image_ids, path=st.text(max_size=20))
def test_derivation_is_the_double_hmac_recipe(root: bytes, image: bytes, path: str) -> None:
    parent = enclave_seed(RootSeed(root), image)
    assert parent == _reference_twice(root, image)
    assert path_seed(parent, path) == _reference_twice(parent, path.encode())


@settings(max_examples=50, deadline=None)
@given(root=seeds, image=image_ids, v=st.integers(min_value=1, max_value=2**32 - 1))
def test_versions_are_domain_separated(root: bytes, image: bytes, v: int) -> None:
    v0 = enclave_seed(RootSeed(root, 0), image)
    vn = enclave_seed(RootSeed(root, v), image)
    assert v0 != vn
    assert vn != enclave_seed(RootSeed(root, v % (2**32 - 1) + 1), image)
    # The documented recipe, recomputed independently.
    base = _reference_twice(root, b"reef.kms.root.v" + v.to_bytes(4, "big"))
    assert vn == _reference_twice(base, image)


def test_version_zero_is_oyster(kms_vectors: dict[str, Any]) -> None:
    root = bytes.fromhex(kms_vectors["root_seed"])
    image = bytes.fromhex(kms_vectors["image_id"])
    assert enclave_seed(RootSeed(root, 0), image).hex() == kms_vectors["image_seed"]
    assert enclave_seed(RootSeed(root, 1), image).hex() != kms_vectors["image_seed"]


def test_root_seed_hides_secret_and_checks_input() -> None:
    seed = RootSeed(b"\x42" * 64, 3)
    assert "42" not in repr(seed)
    assert "42" * 4 not in repr(derive_key(seed.seed, "p", "secp256k1"))
    with pytest.raises(InputError, match="64 bytes"):
        RootSeed(b"\x00" * 32)
    with pytest.raises(InputError, match="version"):
        RootSeed(bytes(64), -1)
    with pytest.raises(InputError, match="image id is 32 bytes"):
        enclave_seed(seed, b"\x00" * 31)
    with pytest.raises(InputError, match="chain id"):
        contract_seed(seed, -1, "0xabc")
    with pytest.raises(InputError, match="unknown key type"):
        key_from_seed(bytes(64), "rsa")  # type: ignore[arg-type]


runner = CliRunner()


def test_cli_derive_image_based(kms_vectors: dict[str, Any]) -> None:
    result = runner.invoke(
        app,
        [
            "kms", "derive", "--seed", kms_vectors["root_seed"], "--image-id",
            kms_vectors["image_id"], "--path", "app", "--type", "secp256k1", "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    parent = bytes.fromhex(kms_vectors["image_seed"])
    key = derive_key(parent, "app", "secp256k1")
    assert out == {
        "type": "secp256k1",
        "version": 0,
        "path": "app",
        "secret": key.secret.hex(),
        "public_key": key.public_key.hex(),
        "address": key.address,
    }
    assert out["address"].startswith("0x")
    assert not out["public_key"].startswith("0x")


def test_cli_derive_contract_based_and_version(kms_vectors: dict[str, Any]) -> None:
    contract = kms_vectors["contract"]
    args = [
        "kms", "derive", "--seed", "-", "--chain-id", str(contract["chain_id"]),
        "--address", contract["address"], "--path", "sol", "--type", "ed25519", "--json",
    ]  # fmt: skip
    result = runner.invoke(app, args, input=kms_vectors["root_seed"] + "\n")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    key = derive_key(bytes.fromhex(contract["seed"]), "sol", "ed25519")
    assert out["public_key"] == key.public_key.hex()
    assert out["address"] == key.address
    rotated = runner.invoke(app, [*args, "--version", "2"], input=kms_vectors["root_seed"])
    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.stdout)["public_key"] != out["public_key"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--image-id", "00"], "--image-id must be 32 bytes"),
        ([], "either --image-id"),
        (["--image-id", "00" * 32, "--chain-id", "1", "--address", "0xab"], "either --image-id"),
        (["--chain-id", "1"], "both --chain-id and --address"),
        (["--image-id", "00" * 32, "--type", "rsa"], "--type must be one of"),
    ],
)
def test_cli_derive_bad_input(extra: list[str], message: str) -> None:
    args = ["kms", "derive", "--seed", "11" * 64, "--path", "p", "--type", "x25519", *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
