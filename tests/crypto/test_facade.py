"""reef.crypto's facade: every name loads from its module on first use, and a secret's scalar
rules (the secp256k1 group order, X25519 clamping) load no curve library, so that an enclave's
supervisor derives secrets without coincurve, pysha3 or base58."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_keys.constants import SECPK1_N
from hypothesis import given
from hypothesis import strategies as st

import reef.crypto
from imports_support import loaded_after
from reef.crypto import SECP256K1_N, clamp_x25519, x25519_public_key
from reef.errors import InputError

HEAVY = ("coincurve", "sha3", "base58", "nacl", "eth_abi")


def test_importing_the_package_loads_none_of_its_modules() -> None:
    loaded = loaded_after("import reef.crypto")
    assert {m for m in loaded if m.startswith("reef.crypto")} == {"reef.crypto"}
    for module in (*HEAVY, "cryptography"):
        assert module not in loaded, module


def test_the_scalar_rules_load_no_curve_library() -> None:
    loaded = loaded_after(
        "from reef.crypto import SECP256K1_N, clamp_x25519\nclamp_x25519(bytes(32)), SECP256K1_N"
    )
    assert {m for m in loaded if m.startswith("reef.crypto")} == {
        "reef.crypto",
        "reef.crypto._scalars",
    }
    for module in (*HEAVY, "cryptography"):
        assert module not in loaded, module


def test_the_curve25519_helpers_load_base58_only_for_a_solana_address() -> None:
    keys = "import reef.crypto._curve25519 as c\nc.x25519_public_key(c.generate_x25519()[0])"
    loaded = loaded_after(keys)
    for module in HEAVY:
        assert module not in loaded, module
    assert "base58" in loaded_after(f"{keys}\nc.solana_address(c.ed25519_public_key(bytes(32)))")


def test_every_exported_name_is_its_modules_object() -> None:
    """The facade's table (read from its source, as the trusted base's measurement reads it)
    names, for each exported name, the module that defines it."""
    source = Path(reef.crypto.__file__).read_text()
    calls = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "lazy_attributes"
    ]
    assert len(calls) == 1
    table = ast.literal_eval(calls[0].args[1])
    assert sorted(table) == sorted(reef.crypto.__all__)
    for name, module in table.items():
        defined = getattr(importlib.import_module(f"reef.crypto.{module}"), name)
        assert getattr(reef.crypto, name) is defined, name
        if callable(defined) and hasattr(defined, "__module__"):
            assert defined.__module__ == f"reef.crypto.{module}", name  # defined there, once


def test_the_group_order_is_secp256k1s() -> None:
    assert SECP256K1_N == SECPK1_N  # eth-keys, an independent implementation


@given(secret=st.binary(min_size=32, max_size=32))
def test_clamping_keeps_the_x25519_key(secret: bytes) -> None:
    """X25519 clamps a scalar itself (RFC 7748): a clamped secret has the same public key, per
    pyca/cryptography; and clamping twice changes nothing."""
    clamped = clamp_x25519(secret)
    independent = X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()
    assert x25519_public_key(clamped) == independent
    assert clamp_x25519(clamped) == clamped
    assert clamped[0] % 8 == 0
    assert clamped[31] >> 6 == 1


def test_clamping_wants_32_bytes() -> None:
    with pytest.raises(InputError, match="an X25519 secret is 32 bytes, got 31"):
        clamp_x25519(bytes(31))
