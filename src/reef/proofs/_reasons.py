"""Revert reasons of the proof market contract (``ProofMarket.vy``), exactly as it gives them.

A test compares this enum with the contract's ``assert`` strings both ways, so the client, the
pure-Python model (``_model``) and the contract agree: the model raises
:class:`reef.errors.ProofError` with the same text the contract reverts with.
"""

# ruff: noqa: S105  (TOKEN_* names are revert reasons, not passwords)
from __future__ import annotations

from enum import StrEnum

__all__ = ["ProofRevert"]


class ProofRevert(StrEnum):
    """Every revert reason ``ProofMarket.vy`` gives."""

    # set-up
    TOKEN_ZERO = "the token address must not be zero"
    ENGINE_ZERO = "the matching engine address must not be zero"
    ONLY_ADMIN_ENGINE = "only the admin can change the matching engine"
    KEY_LENGTH = "a public key is 64 bytes (x || y)"
    NOT_ENGINE_KEY = "the key is not the matching engine's"
    TOKEN_TRANSFER = "token transfer failed"
    # markets
    MARKET_NOT_FOUND = "market not found"
    VERIFIER_NOT_CONTRACT = "the verifier is not a contract"
    VERIFIER_TOO_WIDE = "the verifier takes more than 32 public signals"
    TOO_MANY_INPUTS_FOR_VERIFIER = "more public inputs than the verifier has public signals"
    TEE_NEEDS_IMAGE = "a TEE market needs the prover image id"
    TEE_TOO_MANY_INPUTS = "at most 32 public inputs"
    NOT_TEE = "not a TEE market"
    NOT_GROTH16 = "not a Groth16 market"
    ONLY_CREATOR_SIGNERS = "only the market creator can set its enclave signers"
    ONLY_CREATOR_RETIRE = "only its creator can retire it"
    # asks
    ASK_NOT_FOUND = "ask not found"
    MARKET_RETIRED = "market retired: no new asks"
    WRONG_INPUT_COUNT = "wrong number of public inputs for this market"
    REWARD_ZERO = "the reward must be positive"
    EXPIRY_PAST = "the expiry must be in the future"
    PROVING_TIME_ZERO = "the proving time must be positive"
    REFUND_ZERO = "the refund address must not be zero"
    NEEDS_PRIVATE = "this market's asks need private inputs"
    NO_PRIVATE = "this market takes no private inputs"
    SECRET_EMPTY = "private inputs need a body and an ACL"
    AUCTION_PRICES = "the auction's minimum price is above its maximum"
    AUCTION_RAMP = "the auction's price ramp must take time"
    NOT_AUCTION = "not an auction ask"
    LOCK_NOT_OPEN = "the ask is not open"
    LOCK_EXPIRED = "the ask has expired"
    LOCK_TIME = "the ask's proving time is below your bound"
    LOCK_COMPUTE = "not enough free compute"
    LOCK_STAKE = "not enough free stake for the collateral"
    ONLY_REQUESTER_CANCEL = "only the requester can cancel an ask"
    CANCEL_NOT_OPEN = "only an unassigned ask can be cancelled"
    NOT_EXPIRED = "the ask is not an expired unassigned ask"
    NOT_ASSIGNED = "the ask is not assigned"
    DEADLINE_PASSED = "the proving deadline has passed"
    DEADLINE_NOT_CROSSED = "the ask's deadline has not been crossed"
    # assignment
    ONLY_ENGINE = "only the matching engine can assign asks"
    BATCH_ARITY = "ask, prover and ACL lists differ in length"
    # proofs
    WRONG_SIGNAL_COUNT = "wrong number of public signals"
    SIGNALS_MISMATCH = "the public signals do not match the ask's inputs"
    INVALID_PROOF = "invalid proof"
    SIGNATURE_LENGTH = "a signature is 65 bytes"
    NOT_TEE_SIGNER = "the signer is not an enclave key of this market"
    NO_IVS = "this market has no input verification service"
    NOT_IVS = "not signed by the market's input verification service"
    # provers
    ALREADY_REGISTERED = "prover already registered"
    REWARD_ADDRESS_ZERO = "the reward address must not be zero"
    COMPUTE_ZERO = "the declared compute must be positive"
    NOT_PROVER = "the caller is not a registered prover"
    STAKE_LOCKED = "the stake is locked by assigned asks"
    LEAVE_MARKETS_FIRST = "leave every market first"
    ALREADY_JOINED = "already joined this market"
    MAX_TIME_ZERO = "the proving time bound must be positive"
    COMPUTE_PER_REQUEST_ZERO = "the compute per request must be positive"
    NOT_ENOUGH_COMPUTE = "not enough declared compute for this market"
    NOT_IN_MARKET = "not in this market"
    ALREADY_LEAVING = "already leaving this market"
    REQUEST_LEAVE_FIRST = "request to leave first"
    LEAVE_DELAY = "the leave delay has not passed"
    STILL_ASSIGNED = "the prover still has assigned asks in this market"
