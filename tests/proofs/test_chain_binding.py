"""The IVS's and TEE enclaves' signatures are bound to the chain they were made for.

Every fresh chain deploys the market from dev account 0 at the same address, and a market's
IVS and enclave keys may serve it on several chains. ``invalidInputDigest`` and ``teeDigest``
covered the contract's address, the ask id and its inputs but not the chain id, so a signature
seen on one chain (it is in the calldata of the transaction that used it) closed the
same-numbered ask with the same inputs on another: the replay below went through before the
fix. The digests are also recomputed here with eth_abi, independently of the contract. An IVS
keeps its verdicts apart by the same digest (and the circuit), not by the market's address and
the ask's id, which a fresh chain gives again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_defunct

from proofs.proofs_support import EXAMPLE, Groth16Market, ProofChain
from reef.crypto import keccak256
from reef.errors import ContractRevertError, ProofError
from reef.proofs import (
    AskState,
    InputVerifier,
    MarketCreated,
    ProofMarketClient,
    ProofRevert,
    TeeWorker,
)

IVS = Account.from_key(b"\x33" * 32)
ENCLAVE = Account.from_key(b"\x44" * 32)
IMAGE_ID = b"\x1f" * 32
INPUTS = [20]


@dataclass
class AssignedAsk:
    """One chain with a TEE market (IVS ``IVS``, enclave key ``ENCLAVE``) and ask 1 on it
    assigned to user 1."""

    chain: ProofChain
    prover: ProofMarketClient
    ask_id: int


def _assigned_ask(chain_id: int) -> AssignedAsk:
    chain = ProofChain.create(n_users=2, chain_id=chain_id)
    creator = chain.market()
    market_id, _ = creator.create_tee_market(
        image_id=IMAGE_ID, penalty=5, n_inputs=1, ivs=IVS.address
    )
    creator.set_tee_signer(market_id, ENCLAVE.address)
    prover = chain.market(chain.users[1])
    prover.register(compute=1, stake=100)
    prover.join_market(market_id, price=10, max_time=60, compute=1)
    now = chain.next_time()
    ask_id, _ = chain.market(chain.users[0]).create_ask(
        market_id, INPUTS, reward=50, expiry=now + 100, proving_time=100
    )
    chain.market(chain.engine).assign([ask_id], [chain.users[1].address])
    assert prover.ask_state(ask_id) == AskState.ASSIGNED
    return AssignedAsk(chain, prover, ask_id)


@pytest.fixture
def two_chains() -> tuple[AssignedAsk, AssignedAsk]:
    """The same market at the same address, with the same ask, on chains 31337 and 1337."""
    first, second = _assigned_ask(31337), _assigned_ask(1337)
    assert first.chain.market_address == second.chain.market_address
    assert first.ask_id == second.ask_id
    return first, second


def _ivs_signature(ask: AssignedAsk) -> bytes:
    digest = ask.prover.invalid_input_digest(ask.ask_id)
    return bytes(IVS.sign_message(encode_defunct(primitive=digest)).signature)


def test_an_ivs_signature_for_one_chain_does_not_close_the_ask_on_another(
    two_chains: tuple[AssignedAsk, AssignedAsk],
) -> None:
    first, second = two_chains
    signature = _ivs_signature(first)
    with pytest.raises(ContractRevertError) as info:
        second.prover.submit_invalid_input(second.ask_id, signature)
    assert info.value.reason == ProofRevert.NOT_IVS
    assert second.prover.ask_state(second.ask_id) == AskState.ASSIGNED
    # On its own chain the same signature closes the ask.
    first.prover.submit_invalid_input(first.ask_id, signature)
    assert first.prover.ask_state(first.ask_id) == AskState.INVALID


def test_an_enclave_signature_for_one_chain_does_not_complete_the_ask_on_another(
    two_chains: tuple[AssignedAsk, AssignedAsk],
) -> None:
    first, second = two_chains
    worker = TeeWorker(ENCLAVE, lambda xs: [x * 2 for x in xs])
    signature = worker.sign(first.prover, first.ask_id, [40])
    with pytest.raises(ContractRevertError) as info:
        second.prover.submit_tee_proof(second.ask_id, [40], signature)
    assert info.value.reason == ProofRevert.NOT_TEE_SIGNER
    assert second.prover.ask_state(second.ask_id) == AskState.ASSIGNED
    first.prover.submit_tee_proof(first.ask_id, [40], signature)
    assert first.prover.ask_state(first.ask_id) == AskState.COMPLETE


def test_the_digests_bind_the_chain_id_market_ask_and_inputs(
    two_chains: tuple[AssignedAsk, AssignedAsk],
) -> None:
    for ask in two_chains:
        chain_id, market = ask.chain.w3.eth.chain_id, ask.chain.market_address
        assert ask.prover.invalid_input_digest(ask.ask_id) == keccak256(
            encode(
                ["uint256", "address", "uint256", "uint256[]"],
                [chain_id, market, ask.ask_id, INPUTS],
            )
        )
        assert ask.prover.tee_digest(ask.ask_id, [40]) == keccak256(
            encode(
                ["uint256", "address", "uint256", "uint256[]", "uint256[]"],
                [chain_id, market, ask.ask_id, INPUTS, [40]],
            )
        )


def _poseidon_ask(tmp: Path, ivs: InputVerifier | None, x: int) -> tuple[Groth16Market, int]:
    """A fresh chain (chain id 31337) with the example Poseidon market, whose IVS is ``ivs``'s
    key, and ask 1 (input ``x``) assigned to user 1."""
    market = Groth16Market(tmp, EXAMPLE, public_inputs=["x"], penalty=5)
    if ivs is not None:
        market.ivs = ivs
    chain, prover = market.chain, market.chain.users[1]
    client = chain.market(prover)
    client.register(compute=2, stake=100)
    client.join_market(market.market_id, price=10, max_time=60, compute=1)
    ask_id, _ = chain.market(market.requester).create_ask(
        market.market_id, [x], reward=50, expiry=chain.next_time() + 300, proving_time=300
    )
    chain.market(chain.engine).assign([ask_id], [prover.address])
    return market, ask_id


def _metadata(market: Groth16Market) -> str:
    [created] = market.chain.market().events_of(MarketCreated, 0, topics=[market.market_id])
    return created.metadata


def test_an_ivs_judges_the_same_numbered_ask_of_a_fresh_chain_afresh(tmp_path: Path) -> None:
    # The IVS keeps each verdict (an ask's inputs never change). It kept them by market address
    # and ask id, which a fresh devnet (same chain id, same market address) gives again: its
    # refusal for the old chain's valid ask 1 was its answer for the new chain's invalid ask 1,
    # whose honest prover was then slashed.
    old, old_ask = _poseidon_ask(tmp_path / "old", None, 12345)
    with pytest.raises(ProofError, match="admit a proof"):
        old.ivs.attest_invalid(old.chain.market(), old_ask, _metadata(old))
    new, new_ask = _poseidon_ask(tmp_path / "new", old.ivs, 2**64)
    assert (new.chain.market_address, new_ask) == (old.chain.market_address, old_ask)
    assert new.chain.w3.eth.chain_id == old.chain.w3.eth.chain_id
    client = new.chain.market(new.chain.users[1])
    signature = new.ivs.attest_invalid(client, new_ask, _metadata(new))
    client.submit_invalid_input(new_ask, signature)
    assert client.ask_state(new_ask) == AskState.INVALID
