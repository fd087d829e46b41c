"""What a market and an ask are, read whole from the chain: the contract's record plus what its
events add (a market's metadata; an ask's inputs, price, auction terms and proof). How they
print is the caller's business (``reef proofs market show``, ``reef proofs show``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reef.chain import Amount
from reef.proofs._client import ProofMarketClient
from reef.proofs._events import AuctionCreated, MarketCreated, ProofSubmitted, decode_proof
from reef.proofs._groth16 import Groth16Proof, proof_from_words
from reef.proofs._types import Ask, Market

__all__ = ["AskListing", "MarketListing", "describe_ask", "describe_market"]


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
