"""Groth16 end to end below the market: snarkjs proves, reef's generated Vyper verifier accepts
on a real EVM (bn256 precompiles), tampering is refused, and snarkjs's own verifier (an
implementation nobody here wrote) accepts what reef hands back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from py_ecc.bn128 import FQ, add, curve_order, multiply
from py_ecc.bn128 import G1 as _G1

from proofs.proofs_support import EXAMPLE
from reef.chain import Devnet
from reef.errors import InputError, InvalidProofInputError
from reef.proofs import (
    SCALAR_FIELD,
    Groth16Proof,
    deploy_verifier,
    ensure_snarkjs,
    load_verification_key,
    proof_from_words,
    prove,
    verifier_source,
    verify_with_snarkjs,
)

WASM, ZKEY, VKEY = (
    EXAMPLE / "circuit.wasm",
    EXAMPLE / "circuit.zkey",
    EXAMPLE / "verification_key.json",
)


@pytest.fixture(scope="module")
def proved() -> Groth16Proof:
    return prove(ensure_snarkjs(), WASM, ZKEY, {"x": 12345})


@pytest.fixture(scope="module")
def verifier() -> tuple[Devnet, str]:
    devnet = Devnet(accounts=1)
    w3 = devnet.web3()
    from eth_account import Account

    account = Account.from_key(devnet.accounts[0].private_key)
    return devnet, deploy_verifier(w3, account, load_verification_key(VKEY))


def _verify_on_chain(verifier: tuple[Devnet, str], words: list[int], signals: list[int]) -> bool:
    devnet, address = verifier
    w3 = devnet.web3()
    abi = [
        {
            "type": "function",
            "name": "verifyProof",
            "stateMutability": "view",
            "inputs": [
                {"name": "proof", "type": "uint256[8]"},
                {"name": "signals", "type": "uint256[]"},
            ],
            "outputs": [{"name": "", "type": "bool"}],
        }
    ]
    contract = w3.eth.contract(address=address, abi=abi)  # type: ignore[call-overload]
    return bool(contract.functions.verifyProof(words, signals).call())


def test_scalar_field_is_bn254s_group_order() -> None:
    assert curve_order == SCALAR_FIELD


def test_snarkjs_accepts_the_proof_and_the_public_signals_are_poseidon_of_x(
    proved: Groth16Proof,
) -> None:
    assert proved.public_signals[1] == 12345  # circom: outputs first, then public inputs
    vkey = load_verification_key(VKEY)
    assert verify_with_snarkjs(ensure_snarkjs(), vkey, proved)
    # The words round-trip into snarkjs's JSON, which snarkjs still accepts.
    again = proof_from_words(proved.words(), proved.public_signals)
    assert verify_with_snarkjs(ensure_snarkjs(), vkey, again)
    wrong = Groth16Proof(proved.proof, (proved.public_signals[0] + 1, 12345))
    assert not verify_with_snarkjs(ensure_snarkjs(), vkey, wrong)


def test_the_generated_verifier_accepts_a_real_proof_and_refuses_tampering(
    proved: Groth16Proof, verifier: tuple[Devnet, str]
) -> None:
    words, signals = list(proved.words()), list(proved.public_signals)
    assert _verify_on_chain(verifier, words, signals)
    assert not _verify_on_chain(verifier, words, [signals[0], signals[1] + 1])
    # A valid curve point that is not the proof's C: 2*G1 instead.
    g2 = multiply(_G1, 2)
    assert not _verify_on_chain(verifier, [*words[:6], int(g2[0]), int(g2[1])], signals)
    # Not a point on the curve at all: the precompile fails, the verifier says no (no revert).
    assert not _verify_on_chain(verifier, [*words[:6], 1, 3], signals)
    # A signal plus the group order is the same field element: refused (malleability).
    assert not _verify_on_chain(verifier, words, [signals[0] + SCALAR_FIELD, signals[1]])
    assert not _verify_on_chain(verifier, words, signals[:1])


def test_inputs_that_violate_the_circuit_are_invalid_not_a_failure() -> None:
    with pytest.raises(InvalidProofInputError):
        prove(ensure_snarkjs(), WASM, ZKEY, {"x": 2**64})


def test_verifier_source_refuses_a_key_that_is_not_groth16(tmp_path: Path) -> None:
    vkey = json.loads(VKEY.read_text())
    with pytest.raises(InputError, match="Groth16"):
        verifier_source({**vkey, "protocol": "plonk"})
    with pytest.raises(InputError, match="IC"):
        verifier_source({**vkey, "IC": vkey["IC"][:1]})
    with pytest.raises(InputError, match="field"):
        verifier_source({**vkey, "vk_alpha_1": [str(int(FQ.field_modulus)), "1", "1"]})
    assert add  # py_ecc is the independent curve implementation used above
