"""Private inputs end to end on a real EVM: the requester encrypts them to the engine's published
key, the engine re-encrypts the key to the assigned prover's market key, the prover proves with
public and private inputs together, and the private value is never on chain in the clear.
Markets refuse the wrong kind of ask; an ask whose secret the engine cannot open is never
assigned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proofs.proofs_support import EXAMPLE, Groth16Market, settle
from reef.crypto import Secp256k1PrivateKey
from reef.errors import ContractRevertError
from reef.proofs import (
    AskState,
    ProofRevert,
    ProofSubmitted,
    SecretAssigned,
    SkipReason,
    decode_proof,
    ecies_decrypt,
    encrypt_secret,
    load_verification_key,
    proof_from_words,
    verify_with_snarkjs,
)

COMMITMENT = EXAMPLE.parent / "commitment"
PENALTY, STAKE, PRICE, REWARD = 50, 500, 30, 100
SALT, X = 7, 987654321987


class PrivateFlow(Groth16Market):
    def __init__(self, tmp: Path) -> None:
        super().__init__(
            tmp,
            COMMITMENT,
            public_inputs=["salt"],
            private_inputs=["x"],
            penalty=PENALTY,
            name="commitment",
        )
        self.prover_account = self.chain.users[1]
        self.prover = self.prover_service(self.prover_account, price=PRICE, stake=STAKE)
        self.engine = self.chain.matching_engine(tmp / "engine.db")

    def register_key(self) -> None:
        key = self.prover.public_key
        assert key is not None
        self.prover.client.set_prover_key(self.market_id, key)

    def ask(self, x: int | str, *, engine_key: bytes | None = None, expiry: int = 120) -> int:
        market = self.chain.market(self.requester)
        key = engine_key or market.engine_key()
        sealed = encrypt_secret(json.dumps({"x": x}).encode(), self.market_id, key)
        now = self.chain.next_time()
        ask_id, _ = market.create_private_ask(
            self.market_id, [SALT], secret=sealed.body, acl=sealed.acl, reward=REWARD,
            expiry=now + expiry, proving_time=300,
        )  # fmt: skip
        return ask_id


@pytest.fixture
def flow(tmp_path: Path) -> PrivateFlow:
    flow = PrivateFlow(tmp_path)
    flow.engine.publish_key()
    return flow


def test_the_engine_publishes_its_key_and_only_its_own(flow: PrivateFlow) -> None:
    market = flow.chain.market()
    assert market.engine_key() == flow.engine.public_key
    assert market.market(flow.market_id).private_inputs
    impostor = Secp256k1PrivateKey(b"\x55" * 32).public_key.raw
    with pytest.raises(ContractRevertError) as info:
        market.publish_engine_key(impostor)
    assert info.value.reason == ProofRevert.NOT_ENGINE_KEY


def test_markets_refuse_the_wrong_kind_of_ask(flow: PrivateFlow, tmp_path: Path) -> None:
    market = flow.chain.market(flow.requester)
    now = flow.chain.next_time()
    with pytest.raises(ContractRevertError) as info:
        market.create_ask(flow.market_id, [SALT], reward=REWARD, expiry=now + 60, proving_time=60)
    assert info.value.reason == ProofRevert.NEEDS_PRIVATE
    public_id, _ = flow.chain.market().create_tee_market(
        image_id=b"\x01" * 32, penalty=1, n_inputs=1
    )
    with pytest.raises(ContractRevertError) as info:
        market.create_private_ask(
            public_id, [1], secret=b"s", acl=b"a", reward=REWARD, expiry=now + 60,
            proving_time=60,
        )  # fmt: skip
    assert info.value.reason == ProofRevert.NO_PRIVATE


def test_a_prover_without_a_key_is_never_given_a_private_ask(flow: PrivateFlow) -> None:
    ask_id = flow.ask(X)
    assert flow.engine.step().assigned == 0  # the only prover has no key yet
    # Nor does the contract accept it if an engine tried.
    result = flow.chain.market(flow.chain.engine).assign(
        [ask_id], [flow.prover_account.address], [b"\x01" * 129]
    )
    skipped = [e for e in result.events if type(e).__name__ == "AssignmentSkipped"]
    assert [SkipReason(e.reason) for e in skipped] == [SkipReason.NO_KEY]
    flow.register_key()  # the key arrives: the parked ask is matched
    assert flow.engine.step().assigned == 1
    assert flow.chain.market().ask(ask_id).state == AskState.ASSIGNED


def test_an_ask_the_engine_cannot_decrypt_is_never_assigned_and_is_refunded(
    flow: PrivateFlow,
) -> None:
    flow.register_key()
    stranger = Secp256k1PrivateKey(b"\x66" * 32).public_key.raw
    ask_id = flow.ask(X, engine_key=stranger, expiry=30)  # sealed for someone else
    before = flow.chain.balance(flow.requester.address)
    assert flow.engine.step().assigned == 0
    assert flow.engine.step().assigned == 0  # shelved, not retried
    flow.chain.at(flow.chain.next_time() + 31)
    flow.engine.step()  # the sweep refunds it
    assert flow.chain.market().ask(ask_id).state == AskState.EXPIRED
    assert flow.chain.balance(flow.requester.address) == before + REWARD


@pytest.mark.slow
def test_a_private_ask_is_proved_with_inputs_only_the_prover_can_read(flow: PrivateFlow) -> None:
    flow.register_key()
    market = flow.chain.market()
    ask_id = flow.ask(X)
    assert flow.engine.step().assigned == 1
    [acl] = [e for e in market.ask_events(ask_id) if isinstance(e, SecretAssigned)]
    secret = market.ask_secret(ask_id)
    # The new ACL opens with the prover's key, not the engine's; it holds the requester's key.
    assert flow.prover._key is not None
    assert ecies_decrypt(flow.prover._key.secret, acl.acl) == ecies_decrypt(
        flow.chain.engine.key, secret.acl
    )
    [outcome] = settle(flow.prover)
    assert outcome.outcome == "proved", outcome
    assert market.ask(ask_id).state == AskState.COMPLETE
    [submitted] = [e for e in market.ask_events(ask_id) if isinstance(e, ProofSubmitted)]
    words, signals = decode_proof(submitted.proof)
    assert signals[1] == SALT
    assert len(signals) == 2
    vkey = load_verification_key(COMMITMENT / "verification_key.json")
    assert verify_with_snarkjs(flow.runtime, vkey, proof_from_words(words, signals))
    # x is nowhere on chain in the clear: not in any log, not in any transaction's input.
    w3 = flow.chain.w3
    needles = [str(X).encode(), X.to_bytes(32, "big"), X.to_bytes(8, "big")]
    for log in w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest"}):
        assert not any(n in bytes(log["data"]) for n in needles)
    for number in range(w3.eth.block_number + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            assert not any(n in bytes(tx["input"]) for n in needles)  # type: ignore[index]


@pytest.mark.slow
def test_an_invalid_private_input_closes_without_slashing(flow: PrivateFlow) -> None:
    flow.register_key()
    ask_id = flow.ask(str(2**64))  # x out of the circuit's 64-bit range: no proof exists
    assert flow.engine.step().assigned == 1
    [outcome] = settle(flow.prover)
    assert outcome.outcome == "invalid", outcome
    assert flow.chain.market().ask(ask_id).state == AskState.INVALID
    info = flow.chain.market().prover(flow.prover_account.address)
    assert (info.stake, info.stake_locked) == (STAKE, 0)


def test_the_ivs_will_not_sign_a_private_ask_without_the_key_that_opens_it(
    flow: PrivateFlow,
) -> None:
    from reef.errors import ProofError

    flow.register_key()
    ask_id = flow.ask(str(2**64))
    flow.engine.step()
    flow.prover.poll()
    metadata = flow.prover._metadata[flow.market_id]
    with pytest.raises(ProofError, match="needs their key"):
        flow.ivs.attest_invalid(flow.chain.market(), ask_id, metadata)
    with pytest.raises(ProofError, match="does not open"):
        flow.ivs.attest_invalid(flow.chain.market(), ask_id, metadata, b"\x09" * 32)
