"""What a market and an ask are, read whole from the chain: the contract's record plus what its
events add (a market's metadata; an ask's inputs, price, auction terms and proof). How they
print is the caller's business (``reef proofs market show``, ``reef proofs show``).
:func:`wait_for_ask` is what ``reef proofs wait`` waits for: an ask that needs nobody else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reef.chain import Amount
from reef.errors import ProofError
from reef.proofs._client import ProofMarketClient
from reef.proofs._events import AuctionCreated, MarketCreated, ProofSubmitted, decode_proof
from reef.proofs._groth16 import Groth16Proof, proof_from_words
from reef.proofs._types import Ask, AskState, Market

__all__ = ["AskListing", "MarketListing", "describe_ask", "describe_market", "wait_for_ask"]


@dataclass(frozen=True)
class MarketListing:
    """A market and the metadata its creator recorded in ``MarketCreated``."""

    market: Market
    metadata: Mapping[str, Any] = field(hash=False)
    """The metadata JSON object (``name``, ``public_inputs``, ``private_inputs``,
    ``artifacts``), ``{"raw": text}`` when it is not JSON, empty when there is no event."""


@dataclass(frozen=True)
class AskListing:
    """An ask, its public inputs, and what happened to it."""

    ask: Ask
    inputs: tuple[int, ...]
    price: Amount | None
    """What the assigned prover is paid (None before an assignment)."""
    auction: AuctionCreated | None
    """The auction's terms, for an auction ask."""
    proof: Groth16Proof | None
    """The proof submitted for it, once there is one."""


def describe_market(client: ProofMarketClient, market_id: int) -> MarketListing:
    """Market ``market_id`` with its metadata.

    Raises:
        ProofError: there is no such market.
    """
    market = client.market(market_id)
    metadata: Mapping[str, Any] = {}
    for event in client.events():
        if isinstance(event, MarketCreated) and event.market_id == market_id:
            try:
                metadata = json.loads(event.metadata)
            except ValueError:
                metadata = {"raw": event.metadata}
    return MarketListing(market, metadata)


def describe_ask(client: ProofMarketClient, ask_id: int) -> AskListing:
    """Ask ``ask_id`` with its inputs, price, auction and proof.

    Raises:
        ProofError: there is no such ask.
    """
    ask = client.ask(ask_id)
    auction: AuctionCreated | None = None
    proof: Groth16Proof | None = None
    for event in client.ask_events(ask_id):
        if isinstance(event, AuctionCreated):
            auction = event
        if isinstance(event, ProofSubmitted):
            proof = proof_from_words(*decode_proof(event.proof))
    return AskListing(
        ask=ask,
        inputs=client.inputs(ask_id),
        price=client.ask_price(ask_id) if ask.deadline else None,
        auction=auction,
        proof=proof,
    )


def wait_for_ask(
    client: ProofMarketClient,
    ask_id: int,
    *,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> AskState:
    """Ask ``ask_id``'s state once it has ended (complete, expired, slashed, invalid,
    cancelled) or waits only for its requester (unassigned past its expiry, or its prover past
    the deadline), or its state after ``timeout_s``; the caller tells these apart with
    :func:`ask_settled`.

    Raises:
        ProofError: there is no such ask.
    """
    limit = clock() + timeout_s
    while True:
        state = client.ask_state(ask_id)
        if state == AskState.NULL:
            raise ProofError(
                f"ask {ask_id} does not exist", hint="list asks with `reef proofs list`"
            )
        if ask_settled(state) or clock() > limit:
            return state
        sleep(0.5)


def ask_settled(state: AskState) -> bool:
    """Whether an ask in ``state`` has ended or waits only for its requester."""
    return state.terminal or state in (AskState.UNASSIGNED, AskState.DEADLINE_CROSSED)
