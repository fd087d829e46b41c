"""Revert reasons of the serverless contracts, and what a user should do about each.

The strings are the exact ``assert`` messages of ``ServerlessJobs.vy`` (a test checks both
ways), so the clients, the billing model and the contract agree on them: the model refuses with
the same text the contract reverts with, and the clients add a hint in terms of ``reef``
commands.
"""

# ruff: noqa: S105  (TOKEN_* names are revert reasons, not passwords)
from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

__all__ = ["RelayRevert", "ServerlessRevert", "serverless_hint"]


class ServerlessRevert(StrEnum):
    """Every revert reason ``ServerlessJobs`` gives."""

    # deployment
    TOKEN_ZERO = "the token address must not be zero"
    MIN_STAKE_ZERO = "the minimum stake must be at least 1 base unit"
    SLASH_TOO_HIGH = "the slash share must be at most 10000 bips"
    SELECT_RANGE = "a job selects 1 to 6 executors"
    DEADLINE_BOUNDS = "the deadline bounds are invalid"
    DEADLINE_BOUND_TOO_LONG = "the longest deadline is one hour"
    # signatures
    SIGNATURE_LENGTH = "a signature is 65 bytes (r || s || v)"
    SIGNATURE_V = "the signature's v must be 27 or 28"
    SIGNATURE_HIGH_S = "the signature is not canonical (high s)"
    SIGNATURE_INVALID = "the signature is invalid"
    SIGNATURE_OLD = "the signature is too old"
    SIGNATURE_FUTURE = "the signature is from the future"
    # administration
    ONLY_ADMIN_WHITELIST = "only the admin can whitelist images"
    ONLY_ADMIN_REVOKE = "only the admin can revoke images"
    ONLY_ADMIN_VERIFIER = "only the admin can change the verifier"
    ONLY_ADMIN_TRANSFER = "only the admin can transfer the admin role"
    ADMIN_ZERO = "the new admin cannot be the zero address"
    # executors
    IMAGE_NOT_WHITELISTED = "the enclave image is not whitelisted"
    PUBLIC_KEY_LENGTH = "the enclave public key must be 64 bytes (x || y)"
    ATTESTATION_OLD = "the attestation is too old"
    STATEMENT_SIGNER = "the attestation statement is not signed by the verifier"
    REGISTRATION_SIGNER = "the registration is not signed by the attested enclave key"
    ALREADY_REGISTERED = "the executor is already registered"
    LIST_FULL = "the executor list is full"
    CAPACITY_ZERO = "the job capacity must be at least 1"
    STAKE_TOO_LOW = "the stake is below the minimum"
    EXECUTOR_NOT_FOUND = "executor not found"
    ONLY_EXECUTOR_OWNER = "only the executor's owner can do this"
    ALREADY_DRAINING = "the executor is already draining"
    NOT_DRAINING = "the executor is not draining"
    DRAIN_FIRST = "drain the executor before deregistering it"
    ACTIVE_JOBS = "the executor still has active jobs"
    # jobs
    DEADLINE_TOO_SHORT = "the deadline is shorter than the minimum"
    DEADLINE_TOO_LONG = "the deadline is longer than the maximum"
    CALLBACK_GAS = "the callback gas limit is above the maximum"
    NOT_ENOUGH_EXECUTORS = "fewer executors are available than a job needs"
    JOB_NOT_FOUND = "job not found"
    JOB_CLOSED = "the job is closed"
    EXECUTION_OVER = "the execution time is over"
    EXECUTION_NOT_OVER = "the execution time is not over yet"
    UNKNOWN_ERROR_CODE = "unknown error code"
    NOT_SELECTED = (
        "the signer is not a selected executor of this job, "
        "or the output is not for this job's code and input"
    )
    ALREADY_SUBMITTED = "the executor already submitted an output"
    EXECUTOR_IMAGE_REVOKED = "the executor's image is not whitelisted"
    CALLBACK_GAS_LEFT = "not enough gas left for the callback"
    # token
    TOKEN_TRANSFER_FROM_FAILED = "token transferFrom failed"
    TOKEN_TRANSFER_FAILED = "token transfer failed"


class RelayRevert(StrEnum):
    """Every revert reason ``ServerlessRelay`` gives."""

    TOKEN_ZERO = "the token address must not be zero"
    DEADLINE_BOUNDS = "the deadline bounds are invalid"
    OVERALL_TIMEOUT = "the overall timeout must exceed the longest deadline"
    ONLY_ADMIN_REGISTER = "only the admin can register gateways"
    ONLY_ADMIN_REMOVE = "only the admin can remove gateways"
    GATEWAY_OWNER = "a gateway needs an owner"
    DEADLINE_TOO_SHORT = "the deadline is shorter than the minimum"
    DEADLINE_TOO_LONG = "the deadline is longer than the maximum"
    CALLBACK_GAS = "the callback gas limit is above the maximum"
    JOB_NOT_FOUND = "job not found"
    NOT_A_GATEWAY = "the sender is not a registered gateway"
    ALREADY_CLAIMED = "the job is already claimed"
    SIGNATURE_LENGTH = "a signature is 65 bytes (r || s || v)"
    SIGNATURE_V = "the signature's v must be 27 or 28"
    SIGNATURE_HIGH_S = "the signature is not canonical (high s)"
    SIGNATURE_INVALID = "the signature is invalid"
    SIGNATURE_OLD = "the signature is too old"
    SIGNATURE_FUTURE = "the signature is from the future"
    TIMED_OUT = "the job timed out; it can only be cancelled"
    WRONG_GATEWAY = (
        "the response is not signed by the gateway that claimed the job, "
        "or is not for this job's code and input"
    )
    NOT_TIMED_OUT = "the job has not timed out yet"
    CALLBACK_GAS_LEFT = "not enough gas left for the callback"
    TOKEN_TRANSFER_FROM_FAILED = "token transferFrom failed"
    TOKEN_TRANSFER_FAILED = "token transfer failed"


# Keyed by the reasons (StrEnum members hash and compare as their text, so a reason string looks
# its hint up directly).
_HINTS: Mapping[str, str] = {
    ServerlessRevert.NOT_ENOUGH_EXECUTORS: (
        "nothing was charged; `reef fn executors` lists the executors and their active jobs:"
        " wait for capacity, or start more executors (`reef executor run`)"
    ),
    ServerlessRevert.IMAGE_NOT_WHITELISTED: (
        "the Jobs contract's admin whitelists executor images (`reef executor whitelist"
        " IMAGE_ID --key ADMIN_KEY`; reef up whitelists its own)"
    ),
    ServerlessRevert.ATTESTATION_OLD: "fetch a fresh attestation and have it verified again",
    ServerlessRevert.STATEMENT_SIGNER: (
        "use the attestation verifier the Jobs contract trusts (its `verifier` address)"
    ),
    ServerlessRevert.ALREADY_REGISTERED: (
        "nothing to do: `reef fn executors` lists it; to register it again (another stake or"
        " owner), its owner runs `reef executor drain ADDRESS`, then `reef executor deregister"
        " ADDRESS`"
    ),
    ServerlessRevert.EXECUTOR_NOT_FOUND: (
        "check the address (the enclave key's): `reef fn executors` lists the registered ones"
    ),
    ServerlessRevert.ONLY_EXECUTOR_OWNER: (
        "send it with the owner's key (--key FILE): `reef fn executors` shows each one's owner"
    ),
    ServerlessRevert.ALREADY_DRAINING: (
        "it takes no new jobs already; `reef executor deregister ADDRESS` returns its stake once"
        " its active jobs end"
    ),
    ServerlessRevert.JOB_CLOSED: "the job is over; `reef fn job ID` shows its outputs",
    ServerlessRevert.TOKEN_TRANSFER_FROM_FAILED: (
        "the sending account needs the rUSD (a job's deposit, an executor's stake) and to have"
        " approved the Jobs contract for it: `reef wallet` shows its balance"
    ),
    ServerlessRevert.DRAIN_FIRST: "run `reef executor drain` first",
    ServerlessRevert.ACTIVE_JOBS: "wait until its jobs end (or are slashed), then retry",
    ServerlessRevert.EXECUTION_NOT_OVER: (
        "an unanswered job can be closed after its deadline plus the execution buffer"
    ),
    ServerlessRevert.DEADLINE_TOO_SHORT: "pass a longer --timeout-ms",
    ServerlessRevert.DEADLINE_TOO_LONG: "pass a shorter --timeout-ms",
    ServerlessRevert.JOB_NOT_FOUND: "check the job id (`reef fn job ID`)",
    ServerlessRevert.STAKE_TOO_LOW: "stake at least the contract's MIN_STAKE",
    ServerlessRevert.NOT_SELECTED: (
        "the output's signer was not selected for this job, or signed other code or input than "
        "the job's (an output is signed over the job's codehash and keccak256 of its input as "
        "the contract holds them): check that the executor's JSON-RPC node reports jobs truthfully"
    ),
    RelayRevert.WRONG_GATEWAY: (
        "the answer's signer did not claim this job, or signed other code or input than the "
        "user's (an answer is signed over the job's codehash and keccak256 of its input as the "
        "Relay holds them): check that the gateway's JSON-RPC node reports jobs truthfully"
    ),
}


def serverless_hint(reason: str) -> str | None:
    """What to do about a revert reason, or None when the reason says it all."""
    return _HINTS.get(reason)
