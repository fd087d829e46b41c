"""Revert reasons of reef's contracts, and what a user should do about each.

The strings are the exact ``assert`` messages in ``contracts/*.vy`` (a test checks both ways),
so the client, the pure-Python billing model and the contracts agree on them: the model raises
:class:`reef.errors.MarketError` with the same text the contract reverts with. Hints speak to the
person who met the error, in terms of the ``reef`` commands that fix it, never of contract
internals (``lockWaitTime(RATE_LOCK_SELECTOR)``, ``jobReviseRateInitiate``); the CLI adds the
exact time where one matters.

:func:`decode_revert_data` reads the reason out of the data of a revert, for the clients (which
get it from the node) and the devnet (which answers with it): one reader, each side wording a
``Panic`` its own way.
"""

# ruff: noqa: S105  (TOKEN_* names are revert reasons, not passwords)
from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError

__all__ = ["Revert", "decode_revert_data", "hint_for"]

_ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)


class Revert(StrEnum):
    """Every revert reason the market, token and KMS registry contracts give."""

    # market: jobs
    JOB_NOT_FOUND = "job not found"
    ONLY_OWNER_WITHDRAW = "only the job owner can withdraw from it"
    ONLY_OWNER_REVISE = "only the job owner can revise its rate"
    ONLY_OWNER_CANCEL = "only the job owner can cancel a rate revision"
    ONLY_OWNER_FINALIZE = "only the job owner can finalize a rate revision"
    ONLY_OWNER_CLOSE = "only the job owner can close it"
    ONLY_OWNER_METADATA = "only the job owner can update its metadata"
    PROVIDER_NOT_REGISTERED = "the provider is not registered in the market"
    RATE_TOO_HIGH = "the rate is above MAX_RATE (2**128-1)"
    WITHDRAW_RESERVE = (
        "withdrawal would leave less than the notice reserve (rate x lock wait time) in the job"
    )
    REVISION_PENDING = "a rate revision is already pending; cancel or finalize it first"
    NO_REVISION = "no rate revision is pending"
    REVISION_LOCKED = "the rate revision is still locked; wait until its unlock time"
    CLOSE_NEEDS_NOTICE = (
        "a job with a non-zero rate can only be closed after a rate revision to 0 has been"
        " initiated and its lock has passed"
    )
    CLOSE_REVISION_NOT_ZERO = (
        "the pending rate revision is not to 0; cancel it and initiate a revision to 0"
    )
    TOKEN_TRANSFER_FROM_FAILED = "token transferFrom failed"
    TOKEN_TRANSFER_FAILED = "token transfer failed"
    # market: providers
    PROVIDER_EXISTS = (
        "provider already registered; use providerUpdateWithCp to change its control-plane URL"
    )
    CP_EMPTY = "the control-plane URL must not be empty"
    NOT_A_PROVIDER = "the caller is not a registered provider"
    # market: deployment
    TOKEN_ZERO = "the token address must not be zero"
    LOCK_WAIT_TOO_LONG = "the rate lock wait time must be below 2**64 seconds"
    # token
    TRANSFER_TO_ZERO = "cannot transfer to the zero address"
    INSUFFICIENT_BALANCE = "transfer amount exceeds balance"
    INSUFFICIENT_ALLOWANCE = "transfer amount exceeds allowance; approve the spender first"
    APPROVE_ZERO = "cannot approve the zero address"
    ONLY_TOKEN_OWNER_MINT = "only the token owner can mint"
    MINT_TO_ZERO = "cannot mint to the zero address"
    ONLY_TOKEN_OWNER_TRANSFER = "only the token owner can transfer ownership"
    NEW_OWNER_ZERO = "the new owner cannot be the zero address"
    # KMS registry
    ONLY_REGISTRY_OWNER_APPROVE = "only the registry owner can approve images"
    ONLY_REGISTRY_OWNER_REVOKE = "only the registry owner can revoke images"
    ONLY_REGISTRY_OWNER_TRANSFER = "only the registry owner can transfer ownership"


_SAME_ACCOUNT = "send the transaction from the account that opened the job"

# Keyed by the reasons (StrEnum members hash and compare as their text, so a reason string looks
# its hint up directly).
_HINTS: Mapping[str, str] = {
    Revert.JOB_NOT_FOUND: "check the job id; a closed job is deleted from the market",
    Revert.ONLY_OWNER_WITHDRAW: _SAME_ACCOUNT,
    Revert.ONLY_OWNER_REVISE: _SAME_ACCOUNT,
    Revert.ONLY_OWNER_CANCEL: _SAME_ACCOUNT,
    Revert.ONLY_OWNER_FINALIZE: _SAME_ACCOUNT,
    Revert.ONLY_OWNER_CLOSE: _SAME_ACCOUNT,
    Revert.ONLY_OWNER_METADATA: _SAME_ACCOUNT,
    Revert.PROVIDER_NOT_REGISTERED: (
        "open the job for an address that registered a control-plane URL with providerAdd"
    ),
    Revert.RATE_TOO_HIGH: "a rate is token base units x 10**12 per second",
    Revert.WITHDRAW_RESERVE: (
        "withdraw less (`reef jobs withdraw JOB --max` takes all it can): a job keeps its rate"
        " times the rate lock for the provider's notice; to take everything back, `reef jobs"
        " stop JOB`, then `reef jobs close JOB` at the time it prints"
    ),
    Revert.REVISION_PENDING: (
        "a rate change (or a stop) is already pending: `reef jobs show JOB` prints its new rate"
        " and from when it applies; cancel it first to start another"
    ),
    Revert.NO_REVISION: "start a rate change first (`reef jobs stop JOB` starts one to rate 0)",
    Revert.REVISION_LOCKED: (
        "the market's rate lock has not ended yet: `reef jobs show JOB` prints when it does"
        " (pending_rate … from TIME); try again then"
    ),
    Revert.CLOSE_NEEDS_NOTICE: (
        "stop the job first (a rate revision to 0): `reef jobs stop JOB` stops its enclave at"
        " once and prints the time"
        " from which `reef jobs close JOB` works (the market's rate lock, 300 s on Oyster)"
    ),
    Revert.CLOSE_REVISION_NOT_ZERO: (
        "a rate change other than a stop is pending: `reef jobs stop JOB` replaces it with a stop"
    ),
    Revert.PROVIDER_EXISTS: "a provider is registered once per address",
    Revert.CP_EMPTY: "give the provider's control-plane URL, e.g. http://127.0.0.1:8080",
    Revert.NOT_A_PROVIDER: "register the address first with providerAdd(cp)",
    Revert.INSUFFICIENT_BALANCE: "the sender needs more tokens: transfer or mint some first",
    Revert.INSUFFICIENT_ALLOWANCE: "approve the market to spend the amount (token approve)",
    Revert.TRANSFER_TO_ZERO: "give a non-zero recipient address",
    Revert.ONLY_TOKEN_OWNER_MINT: "send the transaction from the token's owner (its deployer)",
    Revert.ONLY_REGISTRY_OWNER_APPROVE: "send it from the registry's owner (its deployer)",
    Revert.ONLY_REGISTRY_OWNER_REVOKE: "send it from the registry's owner (its deployer)",
}


def hint_for(reason: str) -> str | None:
    """What to do about a revert reason, or ``None`` when the reason says it all."""
    return _HINTS.get(reason)


def decode_revert_data(data: bytes) -> str | int | None:
    """What the data of a revert says: the text of an ``Error(string)`` (bytes that are not
    UTF-8 replaced, as geth shows them), the code of a ``Panic(uint256)``, or ``None`` for
    anything else (no data, a custom error, malformed data)."""
    try:
        if data[:4] == _ERROR_SELECTOR:
            (raw,) = abi_decode(["bytes"], data[4:])
            return bytes(raw).decode("utf-8", errors="replace")
        if data[:4] == _PANIC_SELECTOR:
            (code,) = abi_decode(["uint256"], data[4:])
            return int(code)
    # OverflowError: a length or offset too large for an index (eth-abi does not wrap it).
    except (DecodingError, ValueError, OverflowError):
        return None
    return None
