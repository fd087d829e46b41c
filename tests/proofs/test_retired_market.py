"""A retired market on a real EVM: it refuses new asks (on chain, and in reef's use cases before
anything is sent); the asks it has end as before (an assigned one is proved and paid, an open
one is cancelled or expires and is refunded); the matching engine assigns nothing more in it
(also when its book is rebuilt from the events), and the prover locks none of its auctions,
joins nothing retired, but proves what it holds there."""

from __future__ import annotations

from pathlib import Path

import pytest

from proofs.proofs_support import settle
from proofs.test_flow import PRICE, REWARD, STAKE, Flow
from reef.errors import ContractRevertError, ProofError
from reef.proofs import (
    AskState,
    AuctionRamp,
    MarketJoin,
    MarketRetired,
    ProofRevert,
    ProverSetup,
    describe_market,
    enroll_prover,
    join_as_prover,
    request_proof,
)


def _retire(flow: Flow) -> None:
    result = flow.chain.market().retire_market(flow.market_id)  # its creator: dev account 0
    assert result.first(MarketRetired).market_id == flow.market_id


@pytest.mark.slow
def test_retiring_refuses_new_asks_and_the_open_ones_end_as_before(tmp_path: Path) -> None:
    flow = Flow(tmp_path)
    chain, market = flow.chain, flow.chain.market()
    held = flow.ask(12345)
    assert flow.engine.step().assigned == 1
    cancelled, expiring = flow.ask(1), flow.ask(2, expiry=30)
    # Only its creator may retire it.
    with pytest.raises(ContractRevertError) as refused:
        chain.market(flow.requester).retire_market(flow.market_id)
    assert refused.value.reason == ProofRevert.ONLY_CREATOR_RETIRE
    assert not market.retired(flow.market_id)
    _retire(flow)
    assert market.retired(flow.market_id)
    with pytest.raises(ContractRevertError) as refused:
        flow.ask(3)
    assert refused.value.reason == ProofRevert.MARKET_RETIRED
    # The engine assigns nothing more there, though its prover has room for both open asks;
    # an engine whose book is rebuilt from the events (a restart on a new database) neither.
    assert flow.engine.step().assigned == 0
    assert chain.matching_engine(tmp_path / "rebuilt.db").step().assigned == 0
    assert {market.ask_state(a) for a in (cancelled, expiring)} == {AskState.OPEN}
    # The prover proves the ask it holds there (else it would be slashed), and is paid.
    before = chain.balance(flow.prover_account.address)
    assert [o.outcome for o in settle(flow.prover)] == ["proved"]
    assert market.ask_state(held) == AskState.COMPLETE
    assert chain.balance(flow.prover_account.address) == before + PRICE
    # Its requester takes one open ask back; the other expires and the engine refunds it.
    funds = chain.balance(flow.requester.address)
    chain.market(flow.requester).cancel_ask(cancelled)
    chain.at(market.ask(expiring).expiry + 1)
    flow.engine._next_sweep = 0  # the sweep's period is wall-clock seconds
    flow.engine.step()
    assert market.ask_state(cancelled) == AskState.CANCELLED
    assert market.ask_state(expiring) == AskState.EXPIRED
    assert chain.balance(flow.requester.address) == funds + 2 * REWARD
    assert chain.balance(chain.market_address) == STAKE  # only the prover's stake is left


def test_reefs_use_cases_refuse_a_retired_market_before_sending(tmp_path: Path) -> None:
    flow = Flow(tmp_path)
    chain = flow.chain
    _retire(flow)
    listing = describe_market(chain.market(), flow.market_id)
    assert (listing.retired, listing.successors) == (True, ())
    requester = chain.market(flow.requester)
    nonce = chain.w3.eth.get_transaction_count(flow.requester.address)
    expiry = chain.next_time() + 60
    with pytest.raises(ProofError, match=f"market {flow.market_id} is retired"):
        request_proof(requester, flow.market_id, [1], reward=REWARD, expiry=expiry, proving_time=60)
    ramp = AuctionRamp(min_price=1, max_price=REWARD, ramp_time=10)
    with pytest.raises(ProofError, match="retired"):
        request_proof(requester, flow.market_id, [1], auction=ramp, expiry=expiry, proving_time=60)
    assert chain.w3.eth.get_transaction_count(flow.requester.address) == nonce
    # A prover is not let join it; one enrolling as its settings say skips it.
    newcomer = chain.market(chain.users[2])
    join = MarketJoin(market_id=flow.market_id, price=PRICE, max_time=60)
    with pytest.raises(ProofError, match="retired"):
        join_as_prover(newcomer, join, private_key=bytes(chain.users[2].key))
    enroll_prover(newcomer, ProverSetup(stake=10, compute=1, markets=(join,)), wait_s=0)
    assert newcomer.prover(newcomer.sender).registered
    assert not newcomer.offer(newcomer.sender, flow.market_id).joined


def test_the_prover_locks_no_auction_of_a_retired_market(tmp_path: Path) -> None:
    flow = Flow(tmp_path)
    now = flow.chain.next_time()
    # Its price starts at the prover's quote: the prover would lock it at once.
    ask_id, _ = flow.chain.market(flow.requester).create_auction_ask(
        flow.market_id, [5], min_price=PRICE, max_price=REWARD, ramp_time=60,
        expiry=now + 120, proving_time=120,
    )  # fmt: skip
    flow.prover.poll()
    assert ask_id in flow.prover.auctions
    _retire(flow)
    assert [o.outcome for o in flow.prover.step()] == []
    assert flow.prover.retired == {flow.market_id}
    assert flow.chain.market().ask_state(ask_id) == AskState.OPEN
