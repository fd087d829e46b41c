"""The proof market's values: ask states, market kinds and the contract's records, typed.

The numbers are the contract's (``ProofMarket.vy``); names are what the CLI and JSON print.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from reef.chain import Address, Amount

__all__ = [
    "TERMINAL_STATES",
    "Ask",
    "AskState",
    "Market",
    "MarketKind",
    "Offer",
    "ProverInfo",
    "SkipReason",
]


class AskState(IntEnum):
    """An ask's state. UNASSIGNED and DEADLINE_CROSSED are derived from the clock by the
    contract's ``askState`` (an open ask past its expiry, an assigned one past its deadline);
    the others are stored."""

    NULL = 0
    OPEN = 1
    ASSIGNED = 2
    COMPLETE = 3
    EXPIRED = 4
    SLASHED = 5
    INVALID = 6
    CANCELLED = 7
    UNASSIGNED = 8
    DEADLINE_CROSSED = 9

    @property
    def label(self) -> str:
        """The lowercase name the CLI prints (``complete``, ``deadline_crossed``)."""
        return self.name.lower()

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {AskState.COMPLETE, AskState.EXPIRED, AskState.SLASHED, AskState.INVALID, AskState.CANCELLED}
)
"""The states an ask ends in; none of them changes again."""


class MarketKind(IntEnum):
    GROTH16 = 1
    TEE = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class SkipReason(IntEnum):
    """Why ``assign`` skipped an (ask, prover) pair (``AssignmentSkipped.reason``)."""

    NOT_OPEN = 1
    EXPIRED = 2
    NOT_JOINED = 3
    PRICE = 4
    TIME = 5
    COMPUTE = 6
    STAKE = 7
    NO_KEY = 8
    """A private ask, and the prover has no key for the market (or the batch no ACL)."""
    AUCTION = 9
    """An auction ask: provers lock it themselves; the engine never assigns it."""


@dataclass(frozen=True)
class Market:
    market_id: int
    kind: MarketKind
    creator: Address
    verifier: Address
    image_id: bytes
    artifacts_hash: bytes
    penalty: Amount
    ivs: Address
    n_public: int
    n_inputs: int
    private_inputs: bool = False
    """Its asks carry encrypted private inputs (and only such asks)."""


@dataclass(frozen=True)
class Ask:
    ask_id: int
    market_id: int
    requester: Address
    refund_address: Address
    reward: Amount
    expiry: int
    proving_time: int
    deadline: int
    prover: Address
    state: AskState
    """The contract's derived state at the block read (``askState``)."""
    has_secret: bool = False
    """It carries encrypted private inputs (``AskSecret``)."""


@dataclass(frozen=True)
class ProverInfo:
    address: Address
    reward_address: Address
    stake: Amount
    stake_locked: Amount
    compute: int
    compute_allocated: int
    compute_used: int
    markets: int

    @property
    def registered(self) -> bool:
        return self.compute > 0


@dataclass(frozen=True)
class Offer:
    """A prover's standing quote in one market."""

    joined: bool
    price: Amount
    max_time: int
    compute: int
    active: int
    leave_at: int

    @property
    def serving(self) -> bool:
        """It takes new asks: joined, and not on its way out."""
        return self.joined and self.leave_at == 0
