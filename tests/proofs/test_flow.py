"""The market's whole flow in one process on a real EVM: the matching engine (indexer + book +
batches) assigns, the prover service proves with snarkjs, the contract verifies and pays, and
each terminal state happens as the issue asks (proof, deadline crossed, expiry, invalid input)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proofs.proofs_support import EXAMPLE, Groth16Market, settle
from reef.proofs import (
    AskState,
    MatchingEngine,
    ProofSubmitted,
    decode_proof,
    load_verification_key,
    proof_from_words,
    verify_with_snarkjs,
)

PENALTY, STAKE, PRICE, REWARD = 50, 500, 30, 100


class Flow(Groth16Market):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, EXAMPLE, public_inputs=["x"], penalty=PENALTY, name="poseidon")
        self.database = tmp / "engine.db"
        self.prover_account = self.chain.users[1]
        self.prover = self.prover_service(self.prover_account, price=PRICE, stake=STAKE)
        self.engine = self.chain.matching_engine(self.database)

    def ask(self, x: int, *, expiry: int = 120, proving: int = 300) -> int:
        now = self.chain.next_time()
        ask_id, _ = self.chain.market(self.requester).create_ask(
            self.market_id, [x], reward=REWARD, expiry=now + expiry, proving_time=proving
        )
        return ask_id


@pytest.fixture
def flow(tmp_path: Path) -> Flow:
    return Flow(tmp_path)


@pytest.mark.slow
def test_a_requested_proof_is_assigned_proved_verified_and_paid(flow: Flow) -> None:
    chain, market = flow.chain, flow.chain.market()
    before_requester = chain.balance(flow.requester.address)
    before_prover = chain.balance(flow.prover_account.address)
    ask_id = flow.ask(12345)
    step = flow.engine.step()
    assert step.assigned == 1
    assert market.ask(ask_id).state == AskState.ASSIGNED
    assert market.ask(ask_id).prover == flow.prover_account.address
    [outcome] = settle(flow.prover)
    assert outcome.outcome == "proved", outcome
    assert market.ask(ask_id).state == AskState.COMPLETE
    assert chain.balance(flow.prover_account.address) == before_prover + PRICE
    assert chain.balance(flow.requester.address) == before_requester - PRICE
    # The proof as the chain recorded it verifies with snarkjs itself.
    [submitted] = [e for e in market.ask_events(ask_id) if isinstance(e, ProofSubmitted)]
    words, signals = decode_proof(submitted.proof)
    assert signals[1] == 12345
    vkey = load_verification_key(EXAMPLE / "verification_key.json")
    assert verify_with_snarkjs(flow.runtime, vkey, proof_from_words(words, signals))
    # The engine's book released the prover's locks when the proof landed.
    flow.engine.step()
    capacity = flow.engine.book.capacity(chain.next_time())[flow.prover_account.address]
    assert (capacity.free_compute, capacity.free_stake) == (2, STAKE)


def test_a_missed_deadline_slashes_the_prover_and_refunds_the_requester(flow: Flow) -> None:
    chain, market = flow.chain, flow.chain.market()
    ask_id = flow.ask(7, proving=60)
    assert flow.engine.step().assigned == 1
    before = chain.balance(flow.requester.address)
    deadline = market.ask(ask_id).deadline
    chain.at(deadline + 1)
    assert market.ask_state(ask_id) == AskState.DEADLINE_CROSSED
    chain.market(chain.users[3]).slash(ask_id)  # anyone may slash
    assert market.ask(ask_id).state == AskState.SLASHED
    assert chain.balance(flow.requester.address) == before + REWARD + PENALTY
    info = market.prover(flow.prover_account.address)
    assert (info.stake, info.stake_locked, info.compute_used) == (STAKE - PENALTY, 0, 0)
    flow.engine.step()
    assert flow.engine.book.capacity(chain.next_time())[flow.prover_account.address].missed == 1


def test_an_ask_nobody_takes_expires_and_is_refunded(flow: Flow) -> None:
    chain, market = flow.chain, flow.chain.market()
    chain.market(flow.prover_account).request_leave(flow.market_id)  # no prover left to take it
    before = chain.balance(flow.requester.address)
    ask_id = flow.ask(7, expiry=30)
    assert flow.engine.step().assigned == 0
    chain.at(chain.next_time() + 31)
    assert market.ask_state(ask_id) == AskState.UNASSIGNED
    chain.market(chain.users[3]).refund_expired(ask_id)
    assert market.ask(ask_id).state == AskState.EXPIRED
    assert chain.balance(flow.requester.address) == before


@pytest.mark.slow
def test_invalid_inputs_close_the_ask_without_slashing(flow: Flow) -> None:
    chain, market = flow.chain, flow.chain.market()
    before_prover = chain.balance(flow.prover_account.address)
    ask_id = flow.ask(2**64)  # the circuit's range check fails: no proof exists
    assert flow.engine.step().assigned == 1
    [outcome] = settle(flow.prover)
    assert outcome.outcome == "invalid", outcome
    assert market.ask(ask_id).state == AskState.INVALID
    info = market.prover(flow.prover_account.address)
    assert (info.stake, info.stake_locked) == (STAKE, 0)
    assert chain.balance(flow.prover_account.address) == before_prover + PRICE


def test_the_ivs_refuses_to_call_valid_inputs_invalid(flow: Flow) -> None:
    from reef.errors import ProofError

    ask_id = flow.ask(5)
    flow.engine.step()
    metadata = flow.prover._metadata if flow.prover.poll() is not None else {}
    with pytest.raises(ProofError, match="admit a proof"):
        flow.ivs.attest_invalid(flow.chain.market(), ask_id, metadata[flow.market_id])


def test_a_failed_submission_is_retried_while_the_task_is_still_assigned(flow: Flow) -> None:
    from reef.errors import RPCError

    ask_id = flow.ask(9)
    assert flow.engine.step().assigned == 1
    real_submit = flow.prover.client.submit_proof
    calls = []

    def flaky(ask: int, proof: object) -> object:
        calls.append(ask)
        if len(calls) == 1:
            raise RPCError("the node timed out")  # a transient failure on the first try
        return real_submit(ask, proof)  # type: ignore[arg-type]

    flow.prover.client.submit_proof = flaky  # type: ignore[method-assign]
    [first] = flow.prover.step()
    assert first.outcome == "failed"
    [second] = settle(flow.prover)  # the retry (itself retried if the loaded devnet times out)
    assert second.outcome == "proved", second
    assert flow.chain.market().ask(ask_id).state == AskState.COMPLETE


def test_the_engine_closes_expired_and_deadline_crossed_asks_itself(flow: Flow) -> None:
    chain, market = flow.chain, flow.chain.market()
    late = flow.ask(7, proving=60)
    assert flow.engine.step().assigned == 1  # the prover never proves it
    chain.market(flow.prover_account).request_leave(flow.market_id)  # nobody takes the next
    lonely = flow.ask(8, expiry=30)
    before = chain.balance(flow.requester.address)
    chain.at(market.ask(late).deadline + 1)
    flow.engine.step()
    assert market.ask(late).state == AskState.SLASHED
    assert market.ask(lonely).state == AskState.EXPIRED
    assert chain.balance(flow.requester.address) == before + 2 * REWARD + PENALTY
    flow.engine.step()  # the book saw both close: nothing left to sweep
    assert flow.engine.book.crossed(chain.next_time()) == []
    assert flow.engine.book.expired(chain.next_time()) == []


def _restarted(flow: Flow) -> MatchingEngine:
    """A new engine process on the same database (what a restart after kill -9 builds)."""
    return flow.chain.matching_engine(flow.database)


def test_a_batch_recorded_but_never_sent_is_sent_after_a_restart(flow: Flow) -> None:
    ask_id = flow.ask(3)
    flow.engine.record_batch([(ask_id, flow.prover_account.address)])  # then: kill -9
    step = _restarted(flow).step()
    assert step.resent
    assert step.assigned == 1
    assert flow.chain.market().ask(ask_id).state == AskState.ASSIGNED


def test_a_batch_sent_but_not_marked_done_assigns_nothing_twice_after_a_restart(flow: Flow) -> None:
    from reef.proofs import AssignmentSkipped, SkipReason, TaskAssigned

    ask_id = flow.ask(4)
    pairs = [(ask_id, flow.prover_account.address)]
    flow.engine.record_batch(pairs)
    flow.chain.market(flow.chain.engine).assign([ask_id], [flow.prover_account.address])
    # kill -9 here: the transaction was mined, the batch is still marked pending
    step = _restarted(flow).step()
    assert step.resent
    assert step.assigned == 0
    events = flow.chain.market().ask_events(ask_id)
    assert sum(isinstance(e, TaskAssigned) for e in events) == 1
    skipped = [e for e in events if isinstance(e, AssignmentSkipped)]
    assert [SkipReason(e.reason) for e in skipped] == [SkipReason.NOT_OPEN]
