"""The reverse Dutch auction on a real EVM: the price ramps from the minimum to the maximum, the
engine never assigns an auction ask, the prover whose quote the price reaches first locks it
(with its stake as collateral) and is paid the price it locked at; the rest is refunded."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from proofs.proofs_support import EXAMPLE, Groth16Market, settle
from reef.errors import ContractRevertError
from reef.proofs import (
    AskState,
    AuctionTerms,
    ProofRevert,
    SkipReason,
    auction_price,
)

PENALTY, STAKE = 50, 500
LOW, HIGH, RAMP = 10, 100, 90
CHEAP, DEAR = 40, 70


def test_the_price_curve_is_linear_and_rounds_down() -> None:
    assert auction_price(10, 100, 1000, 1090, 999) == 10
    assert auction_price(10, 100, 1000, 1090, 1000) == 10
    assert auction_price(10, 100, 1000, 1090, 1001) == 11
    assert auction_price(10, 100, 1000, 1090, 1045) == 55
    assert auction_price(10, 100, 1000, 1090, 5000) == 100
    assert auction_price(0, 7, 0, 3, 1) == 2  # 7 * 1 // 3
    terms = AuctionTerms(1, 1, 10, 100, 1000, 1090)
    for price in range(10, 101):
        at = terms.reaches(price)
        assert terms.price(at) >= price
        assert at == 1000 or terms.price(at - 1) < price


class Auction(Groth16Market):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, EXAMPLE, public_inputs=["x"], penalty=PENALTY)
        self.services = [
            self.prover_service(self.chain.users[1], price=CHEAP, stake=STAKE),
            self.prover_service(self.chain.users[2], price=DEAR, stake=STAKE),
        ]
        self.engine = self.chain.matching_engine(tmp / "engine.db")

    def ask(self, x: int = 5) -> int:
        now = self.chain.next_time()
        ask_id, _ = self.chain.market(self.requester).create_auction_ask(
            self.market_id, [x], min_price=LOW, max_price=HIGH, ramp_time=RAMP,
            expiry=now + 600, proving_time=300,
        )  # fmt: skip
        return ask_id

    def bids(self) -> list[str]:
        """Each prover reads the chain and locks what its quote allows (without proving)."""
        out = []
        for service in self.services:
            service.poll()
            out += [o.outcome for o in service.bid()]
        return out


@pytest.fixture
def auction(tmp_path: Path) -> Auction:
    return Auction(tmp_path)


def test_the_cheapest_prover_locks_when_the_price_reaches_its_quote(auction: Auction) -> None:
    chain, market = auction.chain, auction.chain.market()
    ask_id = auction.ask()
    terms = market.auction(ask_id)
    assert terms is not None
    assert (terms.min_price, terms.max_price, terms.ramp_end - terms.start) == (LOW, HIGH, RAMP)
    assert auction.engine.step().assigned == 0  # the engine leaves auctions to the provers
    refused = chain.market(chain.engine).assign([ask_id], [auction.services[0].client.sender])
    skipped = [e for e in refused.events if type(e).__name__ == "AssignmentSkipped"]
    assert [SkipReason(e.reason) for e in skipped] == [SkipReason.AUCTION]
    assert auction.bids() == []  # price 10: below both quotes
    at = AuctionTerms(ask_id, 1, LOW, HIGH, terms.start, terms.ramp_end).reaches(CHEAP)
    chain.at(at)  # the provers read the price at the pending block
    assert auction.bids() == ["locked"]  # only the cheaper prover's quote is reached
    ask = market.ask(ask_id)
    assert ask.state == AskState.ASSIGNED
    assert ask.prover == auction.services[0].client.sender
    assert CHEAP <= market.ask_price(ask_id) < DEAR
    assert auction.services[1].auctions == {}  # taken: the dearer prover forgot it
    info = market.prover(ask.prover)
    assert info.stake_locked == PENALTY  # the collateral


def test_lock_refusals(auction: Auction) -> None:
    chain = auction.chain
    ask_id = auction.ask()
    stranger = chain.market(chain.users[3])
    with pytest.raises(ContractRevertError) as info:
        stranger.lock(ask_id)
    assert info.value.reason == ProofRevert.NOT_IN_MARKET
    now = chain.next_time()
    plain, _ = chain.market(auction.requester).create_ask(
        auction.market_id, [1], reward=10, expiry=now + 60, proving_time=60
    )
    with pytest.raises(ContractRevertError) as info:
        auction.services[0].client.lock(plain)
    assert info.value.reason == ProofRevert.NOT_AUCTION
    auction.services[0].client.lock(ask_id)
    with pytest.raises(ContractRevertError) as info:
        auction.services[1].client.lock(ask_id)
    assert info.value.reason == ProofRevert.LOCK_NOT_OPEN
    with pytest.raises(ContractRevertError) as info:
        chain.market(auction.requester).create_auction_ask(
            auction.market_id, [1], min_price=5, max_price=4, ramp_time=10, expiry=now + 60,
            proving_time=60,
        )  # fmt: skip
    assert info.value.reason == ProofRevert.AUCTION_PRICES


@pytest.mark.slow
def test_a_locked_auction_is_proved_and_paid_the_locked_price(auction: Auction) -> None:
    chain, market = auction.chain, auction.chain.market()
    prover = auction.services[0].client.sender
    before_requester = chain.balance(auction.requester.address)
    before_prover = chain.balance(prover)
    ask_id = auction.ask(12345)
    chain.at(chain.next_time() + RAMP + 5)  # past the ramp: the price is the maximum
    outcomes = [o.outcome for o in auction.services[0].step()]
    assert outcomes[0] == "locked"
    if outcomes != ["locked", "proved"]:  # a retry after the devnet's call budget ran out
        assert [o.outcome for o in settle(auction.services[0])] == ["proved"]
    assert market.ask(ask_id).state == AskState.COMPLETE
    assert chain.balance(prover) == before_prover + HIGH
    assert chain.balance(auction.requester.address) == before_requester - HIGH


def test_the_cli_requests_an_auction(auction: Auction, tmp_path: Path) -> None:
    from reef.cli import app

    runner = CliRunner()
    key = tmp_path / "user.key"
    key.write_text(auction.requester.key.hex())
    inputs = tmp_path / "input.json"
    inputs.write_text('{"x": 9}')
    # An in-process devnet has no URL: the CLI's own checks run before it needs the chain.
    both = runner.invoke(
        app, ["proofs", "request", "1", "--input", str(inputs), "--reward", "1", "--auction", "1:2"]
    )
    assert both.exit_code == 2
    assert "one of --reward" in both.output
