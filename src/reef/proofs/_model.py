"""A pure-Python model of ``ProofMarket.vy``: the same rules, reasons and token movements.

Used by the stateful property test (random sequences of operations against the contract and
this model must agree on every outcome and balance, and conserve tokens) and as the executable
statement of the rules: every method either raises :class:`~reef.errors.ProofError` with the
contract's exact revert reason or applies the same change. Time is a parameter (``now``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from reef.errors import ProofError
from reef.proofs._auction import auction_price
from reef.proofs._reasons import ProofRevert
from reef.proofs._types import AskState, MarketKind, SkipReason

__all__ = ["LEAVE_DELAY", "ModelAsk", "ModelOffer", "ModelProver", "ProofMarketModel"]

LEAVE_DELAY = 60
"""Seconds between ``requestLeave`` and ``leaveMarket`` (the contract's constant)."""
_T = TypeVar("_T")


def _require(condition: bool, reason: ProofRevert) -> None:
    if not condition:
        raise ProofError(str(reason))


def _found(value: _T | None, reason: ProofRevert) -> _T:
    """``value``, or the revert ``reason`` when there is none (a missing record)."""
    if value is None:
        raise ProofError(str(reason))
    return value


@dataclass
class ModelMarket:
    kind: MarketKind
    creator: str
    penalty: int
    ivs: str
    n_inputs: int
    signers: set[str] = field(default_factory=set)
    private_inputs: bool = False
    retired: bool = False


@dataclass
class ModelAsk:
    market_id: int
    requester: str
    refund: str
    reward: int
    expiry: int
    proving_time: int
    inputs: tuple[int, ...]
    deadline: int = 0
    prover: str = ""
    state: AskState = AskState.OPEN
    has_secret: bool = False
    auction: tuple[int, int, int] | None = None
    """(minimum price, start, ramp end) of an auction ask."""
    price: int = 0
    """What a proof pays the prover: its quote at assignment, or the price it locked at."""


@dataclass
class ModelProver:
    reward_address: str
    stake: int
    compute: int
    stake_locked: int = 0
    compute_allocated: int = 0
    compute_used: int = 0
    markets: int = 0


@dataclass
class ModelOffer:
    price: int
    max_time: int
    compute: int
    active: int = 0
    leave_at: int = 0


@dataclass
class ProofMarketModel:
    """The market's state; ``balances`` are token balances of everyone, the contract included
    under the key ``"market"``."""

    balances: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    markets: dict[int, ModelMarket] = field(default_factory=dict)
    asks: dict[int, ModelAsk] = field(default_factory=dict)
    provers: dict[str, ModelProver] = field(default_factory=dict)
    offers: dict[tuple[str, int], ModelOffer] = field(default_factory=dict)
    prover_keys: dict[tuple[str, int], str] = field(default_factory=dict)
    """(prover, market) → the address of the key it registered for private inputs."""

    # ---- tokens ----

    def _move(self, src: str, dst: str, amount: int) -> None:
        if amount:
            _require(self.balances[src] >= amount, ProofRevert.TOKEN_TRANSFER)
            self.balances[src] -= amount
            self.balances[dst] += amount

    def escrow(self) -> int:
        """What the contract must hold: open and assigned rewards plus every stake."""
        rewards = sum(
            a.reward for a in self.asks.values() if a.state in (AskState.OPEN, AskState.ASSIGNED)
        )
        return rewards + sum(p.stake for p in self.provers.values())

    # ---- markets and asks ----

    def create_tee_market(
        self, creator: str, *, penalty: int, ivs: str, n_inputs: int, private_inputs: bool = False
    ) -> int:
        _require(n_inputs <= 32, ProofRevert.TEE_TOO_MANY_INPUTS)
        market_id = len(self.markets) + 1
        self.markets[market_id] = ModelMarket(
            MarketKind.TEE, creator, penalty, ivs, n_inputs, private_inputs=private_inputs
        )
        return market_id

    def set_tee_signer(self, sender: str, market_id: int, signer: str, allowed: bool) -> None:
        market = self.markets.get(market_id)
        _require(market is not None and market.kind == MarketKind.TEE, ProofRevert.NOT_TEE)
        assert market is not None
        _require(sender == market.creator, ProofRevert.ONLY_CREATOR_SIGNERS)
        (market.signers.add if allowed else market.signers.discard)(signer)

    def retire_market(self, sender: str, market_id: int) -> None:
        """``retireMarket``: its creator's only (a market that does not exist has none)."""
        market = self.markets.get(market_id)
        _require(market is not None and sender == market.creator, ProofRevert.ONLY_CREATOR_RETIRE)
        assert market is not None
        market.retired = True

    def state(self, ask_id: int, now: int) -> AskState:
        ask = self.asks.get(ask_id)
        if ask is None:
            return AskState.NULL
        if ask.state == AskState.OPEN and now >= ask.expiry:
            return AskState.UNASSIGNED
        if ask.state == AskState.ASSIGNED and now > ask.deadline:
            return AskState.DEADLINE_CROSSED
        return ask.state

    def create_ask(
        self,
        sender: str,
        market_id: int,
        inputs: Sequence[int],
        *,
        reward: int,
        expiry: int,
        proving_time: int,
        refund: str,
        now: int,
        secret: bytes | None = None,
        acl: bytes = b"",
    ) -> int:
        """``createAsk``, or with ``secret`` (and ``acl``) ``createPrivateAsk``."""
        market = self.markets.get(market_id)
        if secret is None:
            _require(market is None or not market.private_inputs, ProofRevert.NEEDS_PRIVATE)
        market = _found(market, ProofRevert.MARKET_NOT_FOUND)
        if secret is not None:
            _require(market.private_inputs, ProofRevert.NO_PRIVATE)
            _require(len(secret) > 0 and len(acl) > 0, ProofRevert.SECRET_EMPTY)
        _require(not market.retired, ProofRevert.MARKET_RETIRED)
        _require(len(inputs) == market.n_inputs, ProofRevert.WRONG_INPUT_COUNT)
        _require(reward > 0, ProofRevert.REWARD_ZERO)
        _require(expiry > now, ProofRevert.EXPIRY_PAST)
        _require(proving_time > 0, ProofRevert.PROVING_TIME_ZERO)
        self._move(sender, "market", reward)
        ask_id = len(self.asks) + 1
        self.asks[ask_id] = ModelAsk(
            market_id, sender, refund, reward, expiry, proving_time, tuple(inputs),
            has_secret=secret is not None,
        )  # fmt: skip
        return ask_id

    def create_auction_ask(
        self,
        sender: str,
        market_id: int,
        inputs: Sequence[int],
        *,
        min_price: int,
        max_price: int,
        ramp_time: int,
        expiry: int,
        proving_time: int,
        refund: str,
        now: int,
    ) -> int:
        market = self.markets.get(market_id)
        _require(market is None or not market.private_inputs, ProofRevert.NEEDS_PRIVATE)
        _require(min_price <= max_price, ProofRevert.AUCTION_PRICES)
        _require(ramp_time > 0, ProofRevert.AUCTION_RAMP)
        ask_id = self.create_ask(
            sender, market_id, inputs, reward=max_price, expiry=expiry,
            proving_time=proving_time, refund=refund, now=now,
        )  # fmt: skip
        self.asks[ask_id].auction = (min_price, now, now + ramp_time)
        return ask_id

    def auction_price(self, ask_id: int, now: int) -> int:
        ask = self.asks.get(ask_id)
        _require(ask is not None and ask.auction is not None, ProofRevert.NOT_AUCTION)
        assert ask is not None
        assert ask.auction is not None
        low, start, end = ask.auction
        return auction_price(low, ask.reward, start, end, now)

    def _ask(self, ask_id: int) -> ModelAsk:
        return _found(self.asks.get(ask_id), ProofRevert.ASK_NOT_FOUND)

    def cancel_ask(self, sender: str, ask_id: int) -> None:
        ask = self._ask(ask_id)
        _require(sender == ask.requester, ProofRevert.ONLY_REQUESTER_CANCEL)
        _require(ask.state == AskState.OPEN, ProofRevert.CANCEL_NOT_OPEN)
        ask.state = AskState.CANCELLED
        self._move("market", ask.refund, ask.reward)

    def refund_expired(self, ask_id: int, now: int) -> None:
        ask = self._ask(ask_id)
        _require(self.state(ask_id, now) == AskState.UNASSIGNED, ProofRevert.NOT_EXPIRED)
        ask.state = AskState.EXPIRED
        self._move("market", ask.refund, ask.reward)

    # ---- assignment ----

    def try_assign(self, ask_id: int, prover: str, now: int, acl: bytes = b"") -> SkipReason | None:
        """Assign one pair as ``assign`` does; the reason it was skipped, or None."""
        ask = self.asks.get(ask_id)
        if ask is None or ask.state != AskState.OPEN:
            return SkipReason.NOT_OPEN
        if now >= ask.expiry:
            return SkipReason.EXPIRED
        if ask.auction is not None:
            return SkipReason.AUCTION
        offer = self.offers.get((prover, ask.market_id))
        if offer is None or offer.leave_at != 0:
            return SkipReason.NOT_JOINED
        if offer.price > ask.reward:
            return SkipReason.PRICE
        if offer.max_time > ask.proving_time:
            return SkipReason.TIME
        if ask.has_secret and (not acl or (prover, ask.market_id) not in self.prover_keys):
            return SkipReason.NO_KEY
        return self._take(ask, prover, offer, offer.price, now)

    def _take(
        self, ask: ModelAsk, prover: str, offer: ModelOffer, price: int, now: int
    ) -> SkipReason | None:
        p = self.provers[prover]
        if p.compute_used + offer.compute > p.compute:
            return SkipReason.COMPUTE
        penalty = self.markets[ask.market_id].penalty
        if p.stake_locked + penalty > p.stake:
            return SkipReason.STAKE
        p.compute_used += offer.compute
        p.stake_locked += penalty
        offer.active += 1
        ask.state, ask.prover, ask.deadline = AskState.ASSIGNED, prover, now + ask.proving_time
        ask.price = price
        return None

    def lock(self, sender: str, ask_id: int, now: int) -> int:
        """``lock``: take an auction ask at its current price; returns the price."""
        ask = self._ask(ask_id)
        _require(ask.auction is not None, ProofRevert.NOT_AUCTION)
        _require(ask.state == AskState.OPEN, ProofRevert.LOCK_NOT_OPEN)
        _require(now < ask.expiry, ProofRevert.LOCK_EXPIRED)
        offer = self.offers.get((sender, ask.market_id))
        _require(offer is not None and offer.leave_at == 0, ProofRevert.NOT_IN_MARKET)
        assert offer is not None
        _require(offer.max_time <= ask.proving_time, ProofRevert.LOCK_TIME)
        price = self.auction_price(ask_id, now)
        reason = self._take(ask, sender, offer, price, now)
        _require(reason != SkipReason.COMPUTE, ProofRevert.LOCK_COMPUTE)
        _require(reason != SkipReason.STAKE, ProofRevert.LOCK_STAKE)
        return price

    def _assigned_in_time(self, ask_id: int, now: int) -> ModelAsk:
        ask = self._ask(ask_id)
        _require(ask.state == AskState.ASSIGNED, ProofRevert.NOT_ASSIGNED)
        _require(now <= ask.deadline, ProofRevert.DEADLINE_PASSED)
        return ask

    def _release(self, ask: ModelAsk, slashed: int) -> None:
        offer = self.offers[(ask.prover, ask.market_id)]
        p = self.provers[ask.prover]
        p.compute_used -= offer.compute
        p.stake_locked -= self.markets[ask.market_id].penalty
        p.stake -= slashed
        offer.active -= 1

    def _pay(self, ask: ModelAsk, state: AskState) -> None:
        price = ask.price
        ask.state = state
        self._release(ask, 0)
        self._move("market", self.provers[ask.prover].reward_address, price)
        self._move("market", ask.refund, ask.reward - price)

    def submit_tee_proof(self, ask_id: int, signer: str, now: int) -> None:
        ask = self._assigned_in_time(ask_id, now)
        market = self.markets[ask.market_id]
        _require(market.kind == MarketKind.TEE, ProofRevert.NOT_TEE)
        _require(signer in market.signers, ProofRevert.NOT_TEE_SIGNER)
        self._pay(ask, AskState.COMPLETE)

    def submit_invalid_input(self, ask_id: int, signer: str, now: int) -> None:
        ask = self._assigned_in_time(ask_id, now)
        ivs = self.markets[ask.market_id].ivs
        _require(ivs != "", ProofRevert.NO_IVS)
        _require(signer == ivs, ProofRevert.NOT_IVS)
        self._pay(ask, AskState.INVALID)

    def slash(self, ask_id: int, now: int) -> None:
        ask = self._ask(ask_id)
        _require(
            self.state(ask_id, now) == AskState.DEADLINE_CROSSED, ProofRevert.DEADLINE_NOT_CROSSED
        )
        penalty = self.markets[ask.market_id].penalty
        ask.state = AskState.SLASHED
        self._release(ask, penalty)
        self._move("market", ask.refund, ask.reward + penalty)

    # ---- provers ----

    def register(self, sender: str, *, compute: int, stake: int) -> None:
        _require(sender not in self.provers, ProofRevert.ALREADY_REGISTERED)
        _require(compute > 0, ProofRevert.COMPUTE_ZERO)
        self._move(sender, "market", stake)
        self.provers[sender] = ModelProver(sender, stake, compute)

    def _prover(self, sender: str) -> ModelProver:
        return _found(self.provers.get(sender), ProofRevert.NOT_PROVER)

    def add_stake(self, sender: str, amount: int) -> None:
        p = self._prover(sender)
        self._move(sender, "market", amount)
        p.stake += amount

    def withdraw_stake(self, sender: str, amount: int) -> None:
        p = self._prover(sender)
        _require(amount + p.stake_locked <= p.stake, ProofRevert.STAKE_LOCKED)
        p.stake -= amount
        self._move("market", sender, amount)

    def deregister(self, sender: str) -> None:
        p = self._prover(sender)
        _require(p.markets == 0, ProofRevert.LEAVE_MARKETS_FIRST)
        del self.provers[sender]
        self._move("market", sender, p.stake)

    def join_market(
        self, sender: str, market_id: int, *, price: int, max_time: int, compute: int
    ) -> None:
        p = self._prover(sender)
        _require(market_id in self.markets, ProofRevert.MARKET_NOT_FOUND)
        _require((sender, market_id) not in self.offers, ProofRevert.ALREADY_JOINED)
        _require(max_time > 0, ProofRevert.MAX_TIME_ZERO)
        _require(compute > 0, ProofRevert.COMPUTE_PER_REQUEST_ZERO)
        _require(p.compute_allocated + compute <= p.compute, ProofRevert.NOT_ENOUGH_COMPUTE)
        p.compute_allocated += compute
        p.markets += 1
        self.offers[(sender, market_id)] = ModelOffer(price, max_time, compute)

    def set_prover_key(self, sender: str, market_id: int, key_address: str) -> None:
        """``setProverKey`` with a well-formed key whose address is ``key_address``."""
        _require((sender, market_id) in self.offers, ProofRevert.NOT_IN_MARKET)
        market = self.markets[market_id]
        _require(market.private_inputs, ProofRevert.NO_PRIVATE)
        if market.kind == MarketKind.TEE:
            _require(key_address in market.signers, ProofRevert.NOT_TEE_SIGNER)
        self.prover_keys[(sender, market_id)] = key_address

    def request_leave(self, sender: str, market_id: int, now: int) -> None:
        offer = _found(self.offers.get((sender, market_id)), ProofRevert.NOT_IN_MARKET)
        _require(offer.leave_at == 0, ProofRevert.ALREADY_LEAVING)
        offer.leave_at = now + LEAVE_DELAY

    def leave_market(self, sender: str, market_id: int, now: int) -> None:
        offer = _found(self.offers.get((sender, market_id)), ProofRevert.NOT_IN_MARKET)
        _require(offer.leave_at != 0, ProofRevert.REQUEST_LEAVE_FIRST)
        _require(now >= offer.leave_at, ProofRevert.LEAVE_DELAY)
        _require(offer.active == 0, ProofRevert.STILL_ASSIGNED)
        del self.offers[(sender, market_id)]
        self.prover_keys.pop((sender, market_id), None)
        p = self.provers[sender]
        p.compute_allocated -= offer.compute
        p.markets -= 1
