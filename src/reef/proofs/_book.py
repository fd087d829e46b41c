"""The matching engine's order book: the market's state as its events left it (pure).

The book is a projection of the proof market's events, applied in chain order: markets and
their penalties, provers' stakes and compute, their quotes, the open asks and recent slashes;
the open asks of a market its creator retired are never offered. It holds no I/O: the engine
feeds it the indexer's stored events (which the indexer keeps exactly once), so rebuilding it
after a crash gives the same book. It mirrors the contract's accounting (stake and compute
locked per assignment) so a round never offers a prover more than the contract would accept.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from reef.chain import ChainEvent
from reef.crypto import Secp256k1PublicKey
from reef.errors import InputError, ProofError
from reef.proofs._events import (
    AskCancelled,
    AskCreated,
    AskExpired,
    AskSecret,
    AuctionCreated,
    InvalidInputClosed,
    MarketCreated,
    MarketRetired,
    ProofSubmitted,
    ProverDeregistered,
    ProverJoined,
    ProverKeySet,
    ProverLeaving,
    ProverLeft,
    ProverRegistered,
    ProverSlashed,
    StakeAdded,
    StakeWithdrawn,
    TaskAssigned,
    TeeProofSubmitted,
)
from reef.proofs._matching import MISSED_WINDOW_S, Capacity, OpenAsk, Quote

__all__ = ["OrderBook"]


class _HistoryGapError(ProofError):
    """An event names a prover or quote no earlier event created: the events the book was fed
    do not start at the market's beginning (the engine turns this into advice on its start
    block)."""


def _is_point(key: bytes) -> bool:
    """Whether ``key`` is a secp256k1 public key an ACL can be encrypted to."""
    try:
        Secp256k1PublicKey.from_bytes(bytes(key))
    except InputError:
        return False
    return True


@dataclass
class _Prover:
    stake: int
    compute: int
    stake_locked: int = 0
    compute_used: int = 0
    misses: deque[int] = field(default_factory=deque)


@dataclass
class OrderBook:
    """Open asks, quotes and capacities, updated by :meth:`apply`."""

    penalties: dict[int, int] = field(default_factory=dict)
    quotes: dict[tuple[str, int], Quote] = field(default_factory=dict)
    provers: dict[str, _Prover] = field(default_factory=dict)
    open_asks: dict[int, OpenAsk] = field(default_factory=dict)
    fresh: dict[int, OpenAsk] = field(default_factory=dict)
    """Open asks no round has failed to match yet."""
    parked: dict[int, dict[int, OpenAsk]] = field(default_factory=dict)
    """Market id → open asks a round could not match for want of capacity; tried again when
    their market gains capacity or quotes."""
    priced_out: dict[int, dict[int, OpenAsk]] = field(default_factory=dict)
    """Market id → open asks no quote of the market can take (reward or time too low); tried
    again only when the market gains a quote. So asks nobody can take cost nothing per round."""
    dirty: set[int] = field(default_factory=set)
    """Markets that gained capacity since the last round."""
    requoted: set[int] = field(default_factory=set)
    """Markets that gained quotes since the last round."""
    assigned: dict[int, tuple[str, int]] = field(default_factory=dict)
    """Ask id → (prover, market id) while a prover holds it."""
    deadlines: dict[int, int] = field(default_factory=dict)
    """Ask id → proving deadline while a prover holds it."""
    assignments: int = 0
    """TaskAssigned events seen (each ask is assigned at most once on chain)."""
    secrets: dict[int, AskSecret] = field(default_factory=dict)
    """Ask id → its encrypted private inputs, while it is open."""
    prover_keys: dict[tuple[str, int], bytes] = field(default_factory=dict)
    """(prover, market id) → the key the prover registered for the market's private inputs."""
    retired: set[int] = field(default_factory=set)
    """Markets their creators retired: their open asks are never offered again (they stay
    open until their requesters cancel them or they expire and the sweep refunds them)."""
    sealed_bodies: set[bytes] = field(default_factory=set)
    """SHA-256 of every sealed private-inputs body the market logged: a body logged again is
    another ask's copy, never offered."""

    def apply(self, event: ChainEvent, now: int) -> None:
        """Apply one event (``now``: the time it is applied, for the 48 h miss window)."""
        match event:
            case MarketCreated(market_id=m, penalty=penalty):
                self.penalties[m] = penalty
            case MarketRetired(market_id=m):
                # A retired market is being wound down (reef up retires the example markets of
                # an earlier image, whose prover is gone): the engine assigns nothing more in
                # it. The asks it has keep their terms: an assigned one is proved or slashed,
                # an open one is cancelled or expires and is refunded, as before.
                self.retired.add(m)
                for ask in [a for a in self.open_asks.values() if a.market_id == m]:
                    self.shelve(ask.ask_id)
            case AskCreated():
                ask = OpenAsk(
                    event.ask_id, event.market_id, event.reward, event.expiry, event.proving_time
                )
                self.open_asks[ask.ask_id] = ask
                # The contract sets the deadline to the block's time plus the proving time, so
                # an assignment before the expiry can overflow it unless their sum fits: such
                # an ask would revert its whole batch. It is never offered (it expires and is
                # refunded).
                if ask.expiry + ask.proving_time < 2**256:
                    self.fresh[ask.ask_id] = ask
            case AuctionCreated(ask_id=a):
                self.shelve(a)  # provers lock auctions themselves; the engine only sweeps them
            case AskSecret(ask_id=a):
                created = self.open_asks.get(a)
                body = hashlib.sha256(event.secret).digest()
                if body in self.sealed_bodies:
                    # A copy of an earlier ask's sealed inputs (anyone can read them off the
                    # log and ask again with public inputs of their own). Assigning it would
                    # make the proof an oracle on the other requester's private values. An
                    # honest body is new (fresh AES key and IV) and nobody without its key can
                    # make another that opens, so the first ask to log a body is its owner.
                    self.shelve(a)
                    return
                self.sealed_bodies.add(body)
                if created is not None:  # logged right after its AskCreated, in the same call
                    private = OpenAsk(
                        a, created.market_id, created.reward, created.expiry,
                        created.proving_time, private=True,
                    )  # fmt: skip
                    self.open_asks[a] = private
                    if a in self.fresh:
                        self.fresh[a] = private
                    self.secrets[a] = event
            case ProverKeySet(prover=p, market_id=m, key=key):
                # The contract checks only the key's length: a key that is no curve point
                # counts as none, or the engine would pick this prover for private asks it can
                # never encrypt to (and drop those asks), at no cost to the prover.
                keyed = _is_point(key)
                if keyed:
                    self.prover_keys[(p, m)] = key
                else:
                    self.prover_keys.pop((p, m), None)
                old = self.quotes.get((p, m))
                if old is not None:
                    self.quotes[(p, m)] = Quote(
                        p, m, old.price, old.max_time, old.compute, old.leaving, keyed=keyed
                    )
                self.requoted.add(m)
            case TaskAssigned(ask_id=a, prover=p, market_id=m):
                self._close(a)
                self.assigned[a] = (p, m)
                self.deadlines[a] = event.deadline
                self.assignments += 1
                self._lock(p, m, +1)
            case (
                ProofSubmitted(ask_id=a)
                | TeeProofSubmitted(ask_id=a)
                | InvalidInputClosed(ask_id=a)
            ):
                self._release(a, slashed=0, now=now)
            case ProverSlashed(ask_id=a, amount=amount):
                self._release(a, slashed=amount, now=now)
            case AskExpired(ask_id=a) | AskCancelled(ask_id=a):
                self._close(a)
            case ProverRegistered(prover=p, compute=compute, stake=stake):
                self.provers[p] = _Prover(stake, compute)
            case StakeAdded(prover=p, amount=amount):
                self._known(p, event).stake += amount
                self.dirty.update(m for (q, m) in self.quotes if q == p)
            case StakeWithdrawn(prover=p, amount=amount):
                self._known(p, event).stake -= amount
            case ProverDeregistered(prover=p):
                self.provers.pop(p, None)
            case ProverJoined(prover=p, market_id=m):
                self.quotes[(p, m)] = Quote(
                    p, m, event.price, event.max_time, event.compute,
                    keyed=(p, m) in self.prover_keys,
                )  # fmt: skip
                self.requoted.add(m)
            case ProverLeaving(prover=p, market_id=m):
                old = self.quotes.get((p, m))
                if old is None:
                    raise _HistoryGapError(
                        f"ProverLeaving names prover {p} in market {m}, which no earlier event "
                        "joined to it"
                    )
                self.quotes[(p, m)] = Quote(
                    p, m, old.price, old.max_time, old.compute, True, keyed=old.keyed
                )
            case ProverLeft(prover=p, market_id=m):
                self.quotes.pop((p, m), None)
                self.prover_keys.pop((p, m), None)  # leaving clears the key on chain too
            case _:
                pass  # TeeSignerSet, AssignmentSkipped: nothing the book tracks

    def _known(self, prover: str, event: ChainEvent) -> _Prover:
        """The prover ``event`` names, which an earlier ``ProverRegistered`` must have added."""
        state = self.provers.get(prover)
        if state is None:
            raise _HistoryGapError(
                f"{type(event).__name__} names prover {prover}, which no earlier event registered"
            )
        return state

    def _lock(self, prover: str, market_id: int, sign: int) -> None:
        state = self.provers.get(prover)
        quote = self.quotes.get((prover, market_id))
        if state is None or quote is None:
            return
        state.compute_used += sign * quote.compute
        state.stake_locked += sign * self.penalties.get(market_id, 0)

    def _close(self, ask_id: int) -> None:
        ask = self.open_asks.pop(ask_id, None)
        self.fresh.pop(ask_id, None)
        self.secrets.pop(ask_id, None)
        if ask is not None:
            self.parked.get(ask.market_id, {}).pop(ask_id, None)
            self.priced_out.get(ask.market_id, {}).pop(ask_id, None)

    def _release(self, ask_id: int, *, slashed: int, now: int) -> None:
        held = self.assigned.pop(ask_id, None)
        self.deadlines.pop(ask_id, None)
        if held is None:
            return
        prover, market_id = held
        self._lock(prover, market_id, -1)
        # The prover's freed compute may serve any of its markets.
        self.dirty.update(m for (q, m) in self.quotes if q == prover)
        state = self.provers.get(prover)
        if state is not None and slashed:
            state.stake -= slashed
            state.misses.append(now)

    def capacity(self, now: int) -> dict[str, Capacity]:
        """Each prover's free stake and compute, and its slashes in the last 48 hours."""
        out = {}
        for address, state in self.provers.items():
            while state.misses and state.misses[0] <= now - MISSED_WINDOW_S:
                state.misses.popleft()
            out[address] = Capacity(
                free_stake=state.stake - state.stake_locked,
                free_compute=state.compute - state.compute_used,
                missed=len(state.misses),
            )
        return out

    def candidates(self) -> Iterator[OpenAsk]:
        """The asks a round should try: parked asks of markets that gained capacity (oldest
        first), then fresh asks; clears the dirty markets. Iterate lazily: a round that stops
        early (batch full, every prover busy) touches only what it used."""
        requoted, self.requoted = sorted(self.requoted), set()
        dirty, self.dirty = sorted(self.dirty | set(requoted)), set()
        retry = [list(self.priced_out.pop(m, {}).values()) for m in requoted]
        retry += [list(self.parked.get(m, {}).values()) for m in dirty]
        return itertools.chain(*retry, list(self.fresh.values()))

    def park(self, ask: OpenAsk, priced_out: bool = False) -> None:
        """Set aside an ask a round could not match: until its market gains a quote when it is
        ``priced_out``, else until the market gains capacity."""
        if ask.ask_id in self.open_asks:
            self.fresh.pop(ask.ask_id, None)
            self.parked.get(ask.market_id, {}).pop(ask.ask_id, None)
            shelf = self.priced_out if priced_out else self.parked
            shelf.setdefault(ask.market_id, {})[ask.ask_id] = ask

    def shelve(self, ask_id: int) -> None:
        """Never offer this ask again (its private inputs do not open with the engine's key);
        it stays open until it expires and the sweep refunds it."""
        ask = self.open_asks.get(ask_id)
        if ask is not None:
            self.fresh.pop(ask_id, None)
            self.parked.get(ask.market_id, {}).pop(ask_id, None)
            self.priced_out.get(ask.market_id, {}).pop(ask_id, None)

    def expired(self, now: int) -> list[int]:
        """Open asks past their expiry: nobody can assign them; they await ``refundExpired``."""
        return [a for a, ask in self.open_asks.items() if ask.expiry <= now]

    def crossed(self, now: int) -> list[int]:
        """Assigned asks past their deadline: they await ``slash``."""
        return [a for a, deadline in self.deadlines.items() if deadline < now]
