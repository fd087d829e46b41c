"""What a market, an ask and a prover are, read whole from the chain: the contract's record plus
what its events and other views add (a market's metadata, provers and retirement; an ask's
inputs, price, auction terms and proof; a prover's offers). Each has a ``record()``: the JSON
object ``reef proofs market show``, ``reef proofs show`` and ``reef prover status`` print with
``--json`` (amounts as rUSD decimal strings, times as unix seconds); how they print for people
is the caller's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reef.chain import Address, Amount, format_amount
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
    "ask_record",
    "describe_ask",
    "describe_asks",
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

    def record(self) -> dict[str, Any]:
        market, metadata = self.market, self.metadata
        return {
            "market_id": market.market_id,
            "kind": market.kind.label,
            "name": metadata.get("name", ""),
            "public_inputs": metadata.get("public_inputs", []),
            "private_inputs": metadata.get("private_inputs", []),
            "private": market.private_inputs,
            "verifier": market.verifier,
            "image_id": "0x" + market.image_id.hex(),
            "artifacts_hash": "0x" + market.artifacts_hash.hex(),
            "artifacts": metadata.get("artifacts", {}),
            "penalty": format_amount(market.penalty),
            "ivs": market.ivs,
            "creator": market.creator,
            "provers": list(self.provers),
            "retired": self.retired,
        }


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

    def record(self) -> dict[str, Any]:
        ask = self.ask
        row: dict[str, Any] = {
            "ask_id": ask.ask_id,
            "market_id": ask.market_id,
            "state": ask.state.label,
            "reward": format_amount(ask.reward),
            "requester": ask.requester,
            "prover": _assigned(ask),
            "expiry": ask.expiry,
            "deadline": ask.deadline or None,
            "inputs": [str(v) for v in self.inputs],
            "private_inputs": ask.has_secret,
            "price": None if self.price is None else format_amount(self.price),
        }
        if self.auction is not None:
            row["auction"] = {
                "min_price": format_amount(self.auction.min_price),
                "max_price": format_amount(self.auction.max_price),
                "ramp_end": self.auction.ramp_end,
            }
        if self.proof is not None:
            row["proof"] = dict(self.proof.proof)
            row["public_signals"] = self.proof.signals_json()
        return row


def _assigned(ask: Ask) -> Address | None:
    """The prover assigned ``ask`` (None while the contract holds the zero address)."""
    return ask.prover if int(ask.prover, 16) else None


def ask_record(ask: Ask) -> dict[str, Any]:
    """An ask's line in ``reef proofs list`` (``prover`` empty while none is assigned)."""
    return {
        "ask_id": ask.ask_id,
        "market_id": ask.market_id,
        "state": ask.state.label,
        "reward": format_amount(ask.reward),
        "prover": _assigned(ask) or "",
    }


@dataclass(frozen=True)
class ProverListing:
    """A prover and its offers in the markets it has joined."""

    info: ProverInfo
    offers: Mapping[int, Offer] = field(hash=False)
    """By market id, in market order."""

    def record(self) -> dict[str, Any]:
        info = self.info
        markets = [
            {"market_id": market_id, "price": format_amount(offer.price),
             "max_time": offer.max_time, "compute": offer.compute, "active": offer.active,
             "leaving": offer.leave_at != 0}
            for market_id, offer in self.offers.items()
        ]  # fmt: skip
        return {
            "prover": info.address,
            "registered": info.registered,
            "stake": format_amount(info.stake),
            "stake_locked": format_amount(info.stake_locked),
            "compute": info.compute,
            "compute_used": info.compute_used,
            "markets": markets,
        }

    def idle(self) -> str | None:
        """Why no ask can come to this prover (not registered, or in no market but on its way
        out), for a prover that runs anyway; None when one can."""
        if not self.info.registered:
            return f"{self.info.address} is not a registered prover"
        if not any(offer.serving for offer in self.offers.values()):
            return f"{self.info.address} has joined no market (or is leaving every one)"
        return None


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


def describe_asks(client: ProofMarketClient) -> list[Ask]:
    """Every ask of the proof market, oldest first."""
    return [client.ask(ask_id) for ask_id in range(1, client.ask_count() + 1)]


def describe_prover(client: ProofMarketClient, address: str) -> ProverListing:
    """The prover at ``address`` (registered or not) and its offers in every market it joined."""
    offers = {}
    for market_id in range(1, client.market_count() + 1):
        offer = client.offer(address, market_id)
        if offer.joined:
            offers[market_id] = offer
    return ProverListing(client.prover(address), offers)
