"""The proof market's events, typed, and the decoder reef.chain's indexer stores them with.

Array fields travel as ABI-encoded bytes (see ``ProofMarket.vy``): :func:`decode_inputs` and
:func:`decode_proof` turn them back into integers.
"""

from __future__ import annotations

from typing import get_args

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError

from reef.chain import Address, Amount, ChainEvent, EventDecoder, load_artifact
from reef.errors import ProofError

__all__ = [
    "AskCancelled",
    "AskCreated",
    "AskExpired",
    "AskSecret",
    "AssignmentSkipped",
    "AuctionCreated",
    "EngineKeySet",
    "InvalidInputClosed",
    "MarketCreated",
    "MarketRetired",
    "ProofMarketEvent",
    "ProofSubmitted",
    "ProverDeregistered",
    "ProverJoined",
    "ProverKeySet",
    "ProverLeaving",
    "ProverLeft",
    "ProverRegistered",
    "ProverSlashed",
    "SecretAssigned",
    "StakeAdded",
    "StakeWithdrawn",
    "TaskAssigned",
    "TeeProofSubmitted",
    "TeeSignerSet",
    "decode_inputs",
    "decode_proof",
    "proof_market_decoder",
]


class MarketCreated(ChainEvent):
    market_id: int
    creator: Address
    kind: int
    verifier: Address
    image_id: bytes
    artifacts_hash: bytes
    penalty: Amount
    ivs: Address
    n_inputs: int
    metadata: str


class MarketRetired(ChainEvent):
    """The market's creator retired it: it takes no new asks (those it has end as before)."""

    market_id: int


class TeeSignerSet(ChainEvent):
    market_id: int
    signer: Address
    allowed: int


class AskCreated(ChainEvent):
    ask_id: int
    market_id: int
    requester: Address
    refund_address: Address
    reward: Amount
    expiry: int
    proving_time: int
    inputs: bytes


class AuctionCreated(ChainEvent):
    """The ask logged just before is a reverse Dutch auction (see ``_auction``)."""

    ask_id: int
    market_id: int
    min_price: Amount
    max_price: Amount
    start: int
    ramp_end: int


class AskSecret(ChainEvent):
    """An ask's encrypted private inputs: the body and its key's ACL for the engine."""

    ask_id: int
    market_id: int
    secret: bytes
    acl: bytes


class SecretAssigned(ChainEvent):
    """The ACL the engine made for the assigned prover's market key."""

    ask_id: int
    prover: Address
    acl: bytes


class EngineKeySet(ChainEvent):
    engine: Address
    key: bytes


class ProverKeySet(ChainEvent):
    prover: Address
    market_id: int
    key: bytes


class TaskAssigned(ChainEvent):
    ask_id: int
    prover: Address
    market_id: int
    deadline: int
    price: Amount


class AssignmentSkipped(ChainEvent):
    ask_id: int
    prover: Address
    reason: int


class ProofSubmitted(ChainEvent):
    ask_id: int
    prover: Address
    market_id: int
    proof: bytes


class TeeProofSubmitted(ChainEvent):
    ask_id: int
    prover: Address
    market_id: int
    output: bytes
    signer: Address


class InvalidInputClosed(ChainEvent):
    ask_id: int
    prover: Address
    market_id: int


class AskExpired(ChainEvent):
    ask_id: int


class AskCancelled(ChainEvent):
    ask_id: int


class ProverSlashed(ChainEvent):
    ask_id: int
    prover: Address
    market_id: int
    amount: Amount


class ProverRegistered(ChainEvent):
    prover: Address
    reward_address: Address
    compute: int
    stake: Amount


class StakeAdded(ChainEvent):
    prover: Address
    amount: Amount


class StakeWithdrawn(ChainEvent):
    prover: Address
    amount: Amount


class ProverDeregistered(ChainEvent):
    prover: Address


class ProverJoined(ChainEvent):
    prover: Address
    market_id: int
    price: Amount
    max_time: int
    compute: int


class ProverLeaving(ChainEvent):
    prover: Address
    market_id: int
    leave_at: int


class ProverLeft(ChainEvent):
    prover: Address
    market_id: int


ProofMarketEvent = (
    MarketCreated
    | MarketRetired
    | TeeSignerSet
    | AskCreated
    | AuctionCreated
    | AskSecret
    | SecretAssigned
    | EngineKeySet
    | ProverKeySet
    | TaskAssigned
    | AssignmentSkipped
    | ProofSubmitted
    | TeeProofSubmitted
    | InvalidInputClosed
    | AskExpired
    | AskCancelled
    | ProverSlashed
    | ProverRegistered
    | StakeAdded
    | StakeWithdrawn
    | ProverDeregistered
    | ProverJoined
    | ProverLeaving
    | ProverLeft
)
_CLASSES: tuple[type[ChainEvent], ...] = get_args(ProofMarketEvent)


def proof_market_decoder() -> EventDecoder:
    """A decoder for every ``ProofMarket`` event (give it to ``IndexedContract(events=...)``)."""
    return EventDecoder(load_artifact("ProofMarket").abi, _CLASSES)


def decode_inputs(data: bytes) -> tuple[int, ...]:
    """``AskCreated.inputs`` / ``TeeProofSubmitted.output``: abi.encode(uint256[])."""
    try:
        (values,) = abi_decode(["uint256[]"], data)
    except DecodingError as exc:
        raise ProofError(f"malformed encoded inputs: {exc}") from exc
    return tuple(int(v) for v in values)


def decode_proof(data: bytes) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``ProofSubmitted.proof``: abi.encode(uint256[8] proof, uint256[] signals)."""
    try:
        words, signals = abi_decode(["uint256[8]", "uint256[]"], data)
    except DecodingError as exc:
        raise ProofError(f"malformed encoded proof: {exc}") from exc
    return tuple(int(w) for w in words), tuple(int(s) for s in signals)
