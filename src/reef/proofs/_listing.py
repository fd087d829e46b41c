"""What a market, an ask and a prover are, read whole from the chain: the contract's record plus
what its events and other views add (a market's metadata, provers and retirement; an ask's
inputs, price, auction terms and proof; a prover's offers). How they print is the caller's business (``reef proofs market
show``, ``reef proofs show``, ``reef prover status``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reef.chain import Address, Amount
from reef.encoding import loads_bounded
from reef.errors import InputError
from reef.proofs._client import ProofMarketClient
from reef.proofs._events import (
    AuctionCreated,
    MarketCreated,
    MarketRetired,
    ProofSubmitted,
    ProverJoined,
    decode_proof,
)
from reef.proofs._groth16 import Groth16Proof, proof_from_words
from reef.proofs._types import Ask, Market, MarketKind, Offer, ProverInfo

__all__ = [
    "AskListing",
    "MarketListing",
    "ProverListing",
    "describe_ask",
    "describe_market",
    "describe_prover",
]


@dataclass(frozen=True)
class MarketListing:
    """A market, the metadata its creator recorded in ``MarketCreated``, and who proves in it."""

    market: Market
    metadata: Mapping[str, Any] = field(hash=False)
    """The metadata JSON object (``name``, ``public_inputs``, ``private_inputs``,
    ``artifacts``), ``{"raw": text}`` when it is not such an object (anyone may create a
    market, with any text), empty when there is no event."""
    provers: tuple[Address, ...] = ()
    """The provers taking its asks now: joined, and not leaving."""
    retired: bool = False
    """Its creator retired it: it takes no new asks (``MarketRetired``)."""
    successors: tuple[int, ...] = ()
    """For a retired Groth16 market: the markets that are not retired and prove the same
    circuit (the same artifacts and kind of inputs), e.g. the example markets ``reef up``
    created for a newer image."""


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


@dataclass(frozen=True)
class ProverListing:
    """A prover and its offers in the markets it has joined."""

    info: ProverInfo
    offers: Mapping[int, Offer] = field(hash=False)
    """By market id, in market order."""


_METADATA_DEPTH = 4  # reef's metadata: an object holding lists of names and an object


def _metadata(text: str) -> Mapping[str, Any]:
    """A market's metadata as its creator (anyone) wrote it: the JSON object, when it is one
    whose fields reef reads have their types (``name`` a string, ``public_inputs`` and
    ``private_inputs`` lists of strings, ``artifacts`` an object of strings), else
    ``{"raw": text}``, so that what callers do with those fields cannot fail. It is measured
    before parsing: json recurses per bracket (see reef.encoding.loads_bounded)."""
    raw = {"raw": text}
    try:
        data = loads_bounded(text, what="the market's metadata", max_depth=_METADATA_DEPTH)
    except InputError:
        return raw
    if not isinstance(data, dict):
        return raw

    def strings(value: object) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    typed = (
        isinstance(data.get("name", ""), str)
        and strings(data.get("public_inputs", []))
        and strings(data.get("private_inputs", []))
        and isinstance(data.get("artifacts", {}), dict)
        and strings(list(data.get("artifacts", {}).values()))
    )
    return data if typed else raw


def describe_market(client: ProofMarketClient, market_id: int) -> MarketListing:
    """Market ``market_id`` with its metadata.

    Raises:
        ProofError: there is no such market.
    """
    market = client.market(market_id)
    metadata: Mapping[str, Any] = {}
    joined: dict[Address, None] = {}  # in the order they joined
    retired: set[int] = set()
    same: list[int] = []  # markets over the same circuit
    for event in client.events():
        if isinstance(event, MarketCreated) and event.market_id == market_id:
            metadata = _metadata(event.metadata)
        elif isinstance(event, MarketCreated) and _same_circuit(market, event):
            same.append(event.market_id)
        elif isinstance(event, ProverJoined) and event.market_id == market_id:
            joined[event.prover] = None
        elif isinstance(event, MarketRetired):
            retired.add(event.market_id)
    serving = tuple(p for p in joined if client.offer(p, market_id).serving)
    if market_id not in retired:
        return MarketListing(market, metadata, serving)
    successors = tuple(
        m
        for m in same
        if m not in retired and client.market(m).private_inputs == market.private_inputs
    )
    return MarketListing(market, metadata, serving, retired=True, successors=successors)


def _same_circuit(market: Market, event: MarketCreated) -> bool:
    """Whether ``event`` created another Groth16 market over ``market``'s circuit files."""
    return (
        market.kind == MarketKind.GROTH16
        and event.kind == MarketKind.GROTH16
        and event.market_id != market.market_id
        and event.artifacts_hash == market.artifacts_hash
    )


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


def describe_prover(client: ProofMarketClient, address: str) -> ProverListing:
    """The prover at ``address`` (registered or not) and its offers in every market it joined."""
    offers = {}
    for market_id in range(1, client.market_count() + 1):
        offer = client.offer(address, market_id)
        if offer.joined:
            offers[market_id] = offer
    return ProverListing(client.prover(address), offers)
