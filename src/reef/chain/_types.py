"""Domain types of the market: addresses, job ids, rates and token amounts, and the Job record.

Amounts are plain ``int`` in token base units (6 decimals for the test stable token, as USDC);
rates are token base units x 10**12 per second (MarketV1's ``EXTRA_DECIMALS``). ``NewType``
keeps them apart for the type checker at no run-time cost. Job ids are MarketV1's ``bytes32``,
written as ``0x`` + 64 lowercase hex digits, the form Oyster's indexers print; people see and
type the job's index in decimal (``17``), as Oyster's CLI does (:func:`parse_job_id`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import NewType

from reef.crypto import eip55_address
from reef.errors import InputError

__all__ = [
    "EXTRA_DECIMALS",
    "MAX_RATE",
    "RATE_SCALE",
    "TOKEN_DECIMALS",
    "Address",
    "Amount",
    "Job",
    "JobId",
    "Rate",
    "RateLock",
    "amount_per_hour",
    "check_uint",
    "format_amount",
    "job_index",
    "parse_address",
    "parse_amount",
    "parse_job_id",
    "rate_per_hour",
]

Address = NewType("Address", str)
"""An EIP-55 checksummed Ethereum address, ``0x`` + 40 hex digits."""

JobId = NewType("JobId", str)
"""A MarketV1 job id: ``0x`` + 64 lowercase hex digits (a ``bytes32``)."""

Rate = NewType("Rate", int)
"""Token base units x 10**12 per second."""

Amount = NewType("Amount", int)
"""Token base units."""

EXTRA_DECIMALS = 12
RATE_SCALE: int = 10**EXTRA_DECIMALS
MAX_RATE = Rate(2**128 - 1)
TOKEN_DECIMALS = 6
_UINT256_MAX = 2**256 - 1


def check_uint(value: int, name: str, *, bits: int = 256) -> int:
    """``value`` if it is an int in [0, 2**bits), else :class:`InputError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= value < 2**bits:
        raise InputError(f"{name} must be between 0 and 2**{bits}-1, got {value}")
    return value


def parse_address(value: str, *, name: str = "address") -> Address:
    """Check and checksum an Ethereum address given as hex (any case, ``0x`` optional).

    As eth-utils' ``is_address`` (which this replaced), any case is accepted: a mixed-case
    address is not held to its own checksum.

    Raises:
        InputError: naming ``name`` when ``value`` is not a 20-byte hex address.
    """
    text = value.strip() if isinstance(value, str) else value
    try:
        if not isinstance(text, str):
            raise InputError("not a string")
        return Address(eip55_address(text))
    except InputError as exc:
        raise InputError(
            f"{name} is not an Ethereum address: {str(value)[:50]!r}",
            hint="give 0x followed by 40 hex digits",
        ) from exc


def parse_job_id(value: int | str | bytes, *, name: str = "job id") -> JobId:
    """The job a user or a caller names: its index, or its full id.

    This is the one place a job is parsed (the CLI and every client method use it), so a number
    means the same job everywhere:

    * an ``int``, or a string of decimal digits (``"17"``), is the job's **index**, the number
      ``reef jobs list`` and ``reef deploy`` print and Oyster's CLI takes;
    * a ``0x``-prefixed hex string (``"0x11"`` or all 64 digits) is the **full id**;
    * exactly 64 hex digits without ``0x`` are also the full id (as indexers print it);
    * ``bytes`` are the big-endian ``bytes32``.

    So ``"17"`` and ``"0x11"`` name the same job; ``"1f"`` is refused rather than guessed.

    Raises:
        InputError: naming ``name`` when the value is negative, neither a decimal number nor
            ``0x`` hex, or longer than 32 bytes.
    """
    if isinstance(value, bool):
        raise InputError(f"{name} must be an integer, hex string or bytes, not a bool")
    if isinstance(value, int):
        number = value
    elif isinstance(value, bytes | bytearray):
        if len(value) > 32:
            raise InputError(f"{name} is longer than 32 bytes ({len(value)} bytes)")
        number = int.from_bytes(value, "big")
    elif isinstance(value, str):
        number = _job_number(value.strip(), name)
    else:
        raise InputError(f"{name} must be an integer, hex string or bytes")
    if not 0 <= number <= _UINT256_MAX:
        raise InputError(f"{name} does not fit in 32 bytes: {value!r}")
    return JobId(f"0x{number:064x}")


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _job_number(text: str, name: str) -> int:
    hint = "give the job's number as `reef jobs list` prints it (e.g. 17), or its full id as 0x…"
    if text[:2].lower() == "0x":
        digits = text[2:]
        if not digits or not set(digits) <= _HEX_DIGITS:
            raise InputError(f"{name} is not hex: {text[:70]!r}", hint=hint)
        if len(digits) > 64:
            raise InputError(f"{name} does not fit in 32 bytes: {text[:70]!r}…", hint=hint)
        return int(digits, 16)
    if text.isascii() and text.isdigit() and len(text) != 64:
        return int(text, 10)
    if len(text) == 64 and set(text) <= _HEX_DIGITS:
        return int(text, 16)
    raise InputError(f"{name} is not hex (0x…) nor a decimal job number: {text[:70]!r}", hint=hint)


def job_index(job: JobId) -> int:
    """The market's index of a job (MarketV1 ids are ``bytes32(index)``): the number users see."""
    return int(job, 16)


def parse_amount(text: str, *, decimals: int = TOKEN_DECIMALS, name: str = "amount") -> Amount:
    """Parse a decimal token amount typed by a user (``"1.5"``) into base units, exactly.

    Raises:
        InputError: when the text is not a non-negative decimal number or has more fractional
            digits than the token has decimals.
    """
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError) as exc:
        raise InputError(f"{name} is not a number: {text!r}") from exc
    if not value.is_finite() or value < 0:
        raise InputError(f"{name} must be a non-negative number, got {text!r}")
    scaled = value.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise InputError(
            f"{name} {text!r} has more than {decimals} decimal places",
            hint=f"the token has {decimals} decimals",
        )
    return Amount(int(scaled))


def format_amount(amount: int, *, decimals: int = TOKEN_DECIMALS) -> str:
    """Base units as an exact decimal string (``1500000`` -> ``"1.5"``)."""
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**decimals)
    if not frac or decimals == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{decimals}d}".rstrip("0")


def amount_per_hour(rate: int) -> Amount:
    """What ``rate`` charges per hour, in base units (rounded down): :func:`rate_per_hour`'s
    inverse."""
    return Amount(rate * 3600 // RATE_SCALE)


def rate_per_hour(amount_per_hour: int) -> Rate:
    """The rate that charges ``amount_per_hour`` base units per hour, rounded down.

    Settlement rounds up per settlement, so a job never pays less than this per hour.
    """
    return Rate(amount_per_hour * RATE_SCALE // 3600)


@dataclass(frozen=True, kw_only=True)
class Job:
    """A job as the market stores it (``jobs(id)`` on chain, or the billing model)."""

    id: JobId
    metadata: str
    owner: Address
    provider: Address
    rate: Rate
    balance: Amount
    last_settled: int
    """Unix time (seconds) up to which the job has been charged."""


@dataclass(frozen=True, kw_only=True)
class RateLock:
    """A pending rate revision: ``new_rate`` may be finalized from ``unlock_time`` on."""

    unlock_time: int
    new_rate: Rate
