"""What a requester or a prover should hear when the chain accepts a transaction that will not do
what they want, and what an ask's ending means: an ask no prover takes as its terms stand
(:func:`unmatched_ask`), a prover whose free stake cannot cover a market's penalty
(:func:`short_stake`), an ask that ended otherwise than proved and where its money went
(:func:`ask_ending`).

Each decision is a pure function over a typed snapshot of the chain, so it is tested without
sockets, and it reuses the matching engine's own rule (:func:`~reef.proofs.quote_takes`,
:func:`~reef.proofs.covers_penalty`) rather than restating it: a warning that no prover takes an
ask is true exactly when the engine would not assign it. The readers beside them
(:func:`ask_advice`, :func:`stake_advice`) take those snapshots from a
:class:`~reef.proofs.ProofMarketClient`. The results are dataclasses whose ``message`` is the
line ``reef proofs`` and ``reef prover`` print.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from reef.chain import Amount, format_amount
from reef.proofs._client import ProofMarketClient
from reef.proofs._listing import AskListing, MarketListing
from reef.proofs._matching import OpenAsk, Quote, covers_penalty, quote_takes
from reef.proofs._types import AskState, Market, ProverInfo

__all__ = [
    "AskEnding",
    "ShortStake",
    "UnmatchedAsk",
    "ask_advice",
    "ask_ending",
    "market_quotes",
    "short_stake",
    "stake_advice",
    "unmatched_ask",
]


def _rusd(amount: int) -> str:
    return f"{format_amount(amount)} rUSD"


@dataclass(frozen=True)
class UnmatchedAsk:
    """An ask that no prover serving its market takes as its terms stand: it expires
    unassigned unless a prover joins or changes its terms before its expiry."""

    ask: OpenAsk
    """The ask's terms (its id and expiry unknown before it is sent: 0)."""
    quotes: tuple[Quote, ...]
    """The quotes of the provers serving the market; none: nobody has joined, or all leave."""

    @property
    def cheapest(self) -> Amount | None:
        """The lowest price a serving prover asks (None: no prover serves)."""
        return Amount(min(q.price for q in self.quotes)) if self.quotes else None

    @property
    def quickest(self) -> int | None:
        """The shortest time bound a serving prover gives (None: no prover serves)."""
        return min(q.max_time for q in self.quotes) if self.quotes else None

    def reasons(self) -> list[str]:
        """Why the serving provers pass the ask by, one clause each (none when only the
        pairing fails: the cheap ones are slow and the quick ones dear)."""
        ask, cheapest, quickest = self.ask, self.cheapest, self.quickest
        why = []
        if cheapest is not None and cheapest > ask.reward:
            why.append(
                f"the cheapest asks {_rusd(cheapest)} per proof (--reward is {_rusd(ask.reward)})"
            )
        if quickest is not None and quickest > ask.proving_time:
            why.append(
                f"the quickest needs {quickest} s to prove (--deadline gives {ask.proving_time} s)"
            )
        if ask.private and self.quotes and not any(q.keyed for q in self.quotes):
            why.append("none has registered a key for its private inputs")
        return why

    def message(self, expiry: str) -> str:
        """The warning, ``expiry`` being the ask's ``--expiry`` as the requester gave it."""
        market_id = self.ask.market_id
        if not self.quotes:
            return (
                f"no prover takes market {market_id}'s asks now (none has joined, or all are "
                "leaving): the ask will expire unless one joins. `reef proofs market list` "
                "shows which markets have provers"
            )
        why = " and ".join(self.reasons()) or "none takes both its reward and its deadline"
        return (
            f"no prover of market {market_id} takes this ask as it is: {why}. Unless one does "
            f"within --expiry ({expiry}), it expires unassigned and the reward comes back"
        )


def unmatched_ask(
    ask: OpenAsk, quotes: Iterable[Quote], *, auction: bool = False
) -> UnmatchedAsk | None:
    """Whether ``ask`` will wait in vain: no quote of its market serves (joined and not
    leaving), or, for an ask the engine assigns (not an ``auction``, which provers lock at a
    price of their own), none takes its terms by the engine's rule
    (:func:`~reef.proofs.quote_takes`). None when some prover takes it. Capacity is not
    counted: a busy prover frees compute and stake as its asks end."""
    serving = tuple(q for q in quotes if q.market_id == ask.market_id and not q.leaving)
    if serving and (auction or any(quote_takes(q, ask) for q in serving)):
        return None
    return UnmatchedAsk(ask, serving)


def market_quotes(client: ProofMarketClient, listing: MarketListing) -> tuple[Quote, ...]:
    """The standing quotes of the provers serving ``listing``'s market, as the engine's book
    holds them (a key counted only in a market with private inputs)."""
    market = listing.market
    quotes = []
    for prover in listing.provers:
        offer = client.offer(prover, market.market_id)
        keyed = market.private_inputs and bool(client.prover_key(prover, market.market_id))
        quotes.append(
            Quote(
                prover, market.market_id, offer.price, offer.max_time, offer.compute,
                leaving=offer.leave_at != 0, keyed=keyed,
            )
        )  # fmt: skip
    return tuple(quotes)


def ask_advice(
    client: ProofMarketClient,
    listing: MarketListing,
    *,
    reward: int | None,
    proving_time: int,
    private: bool = False,
) -> UnmatchedAsk | None:
    """:func:`unmatched_ask` for an ask about to be sent to ``listing``'s market, paying
    ``reward`` (None: an auction ask), with the provers' quotes read from the chain."""
    ask = OpenAsk(0, listing.market.market_id, reward or 0, 0, proving_time, private=private)
    quotes = market_quotes(client, listing) if listing.provers else ()
    return unmatched_ask(ask, quotes, auction=reward is None)


@dataclass(frozen=True)
class ShortStake:
    """A prover whose free stake is below a market's penalty: the contract lets it join, but
    no ask of the market is assigned to it (each locks the penalty) until it adds stake."""

    market_id: int
    free_stake: Amount
    penalty: Amount

    @property
    def missing(self) -> Amount:
        """The stake to add before one ask of the market can be assigned."""
        return Amount(self.penalty - self.free_stake)

    @property
    def message(self) -> str:
        return (
            f"your free stake ({_rusd(self.free_stake)}) is below market {self.market_id}'s "
            f"penalty ({_rusd(self.penalty)}), which each ask assigned to you locks: you get "
            f"none of its asks until you add stake (`reef prover stake "
            f"{format_amount(self.missing)}`)"
        )


def short_stake(prover: ProverInfo, market: Market) -> ShortStake | None:
    """Whether ``prover`` lacks the free stake for one ask of ``market``, by the engine's rule
    (:func:`~reef.proofs.covers_penalty`); None when it has it."""
    free = prover.stake - prover.stake_locked
    if covers_penalty(free, market.penalty):
        return None
    return ShortStake(market.market_id, Amount(free), market.penalty)


def stake_advice(client: ProofMarketClient, address: str, market_id: int) -> ShortStake | None:
    """:func:`short_stake` for the prover at ``address`` in ``market_id``, read from the chain."""
    return short_stake(client.prover(address), client.market(market_id))


@dataclass(frozen=True)
class AskEnding:
    """An ask that ended (or stopped) otherwise than proved, and where its reward went: the
    contract's settlement (``ProofMarket.vy``, :class:`~reef.proofs.ProofMarketModel`)."""

    ask_id: int
    market_id: int
    state: AskState
    reward: Amount
    price: Amount | None
    """What the assigned prover is paid (None when none was assigned)."""

    @property
    def to_prover(self) -> Amount:
        """What the prover was paid: its price for inputs the IVS showed admit no proof."""
        return Amount(self.price or 0) if self.state == AskState.INVALID else Amount(0)

    @property
    def to_requester(self) -> Amount:
        """What came back to the requester (its refund address) of the reward: all of it
        unless a prover was paid; nothing yet for an ask still waiting to be closed
        (unassigned past its expiry, or its deadline crossed but not yet slashed). A slash
        also pays it the prover's penalty, which is not counted here."""
        if self.state in (AskState.UNASSIGNED, AskState.DEADLINE_CROSSED):
            return Amount(0)
        return Amount(self.reward - self.to_prover)

    @property
    def message(self) -> str:
        """What the ending means for the requester, and what to do."""
        ask_id, reward = self.ask_id, _rusd(self.reward)
        if self.state == AskState.INVALID:
            return (
                f"ask {ask_id} ended invalid: its inputs admit no proof (the market's input "
                "verification service checked and signed that); its prover was paid its price "
                f"({_rusd(self.to_prover)}) and the rest of the {reward} came back to the "
                "requester"
            )
        if self.state == AskState.EXPIRED:
            return (
                f"ask {ask_id} expired: no prover took it before its expiry, and its {reward} "
                f"came back to the requester. `reef proofs market show {self.market_id}` shows "
                "who proves there; ask again with a higher --reward, a longer --deadline or "
                "--expiry"
            )
        if self.state == AskState.UNASSIGNED:
            return (
                f"ask {ask_id} expired: no prover took it before its expiry. `reef proofs cancel "
                f"{ask_id}` takes its {reward} back (the matching engine does within seconds)"
            )
        if self.state == AskState.SLASHED:
            return (
                f"ask {ask_id}'s prover missed its deadline and was slashed: the {reward} and "
                "the prover's penalty went to the requester; ask again for the proof"
            )
        if self.state == AskState.DEADLINE_CROSSED:
            return (
                f"ask {ask_id}'s prover missed its deadline: anyone may slash it (the matching "
                f"engine does within seconds), which pays the requester back its {reward} and "
                "the prover's penalty"
            )
        return f"ask {ask_id} was cancelled; its {reward} came back to the requester"


_ENDINGS = frozenset(
    {
        AskState.INVALID,
        AskState.EXPIRED,
        AskState.UNASSIGNED,
        AskState.SLASHED,
        AskState.DEADLINE_CROSSED,
        AskState.CANCELLED,
    }
)


def ask_ending(listing: AskListing) -> AskEnding | None:
    """What ``listing``'s ask ending otherwise than proved means; None for an ask that is
    complete or still under way (open, assigned)."""
    ask = listing.ask
    if ask.state not in _ENDINGS:
        return None
    return AskEnding(ask.ask_id, ask.market_id, ask.state, ask.reward, listing.price)
