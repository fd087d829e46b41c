"""The market's billing rules in pure Python: settlement, the withdrawal reserve, rate locks.

These are the rules of ``reef/chain/contracts/Market.vy`` (MarketV1 semantics, reference
§4.1) with time as a parameter, for code that must know what the chain will do without asking
it: the control plane (when does a job's money run out?), ``reef jobs`` (how much can I
withdraw now?), and the tests, whose stateful model drives this module and the contract with the
same random operations and requires identical balances after every step.

Units: amounts in token base units, rates in base units x 10**12 per second, times in Unix
seconds, all ``int``. A settlement over ``d`` seconds charges ``ceil(rate * d / 10**12)``,
capped at the balance.

The whole contract as a state machine, for tests, is :class:`reef.testing.MarketModel`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from reef.chain import (
    RATE_SCALE,
    Address,
    Amount,
    Job,
    check_uint,
)
from reef.errors import MisuseError

__all__ = [
    "Settlement",
    "notice_reserve",
    "paid_until",
    "settle",
    "settlement_amount",
    "withdrawable",
]

_UINT256_MAX = 2**256 - 1
_ZERO = Address("0x0000000000000000000000000000000000000000")


def settlement_amount(rate: int, duration_s: int) -> Amount:
    """What ``duration_s`` seconds cost at ``rate``: ``ceil(rate * duration / 10**12)``, uncapped."""
    check_uint(rate, "rate")
    check_uint(duration_s, "duration")
    return Amount(-(-rate * duration_s // RATE_SCALE))


def notice_reserve(rate: int, lock_wait_s: int) -> Amount:
    """The balance a withdrawal must leave in a job: the cost of one rate-lock wait."""
    return settlement_amount(rate, lock_wait_s)


@dataclass(frozen=True)
class Settlement:
    """The outcome of settling a job: what the provider is paid, and the job afterwards."""

    amount: Amount
    job: Job


def settle(job: Job, now: int) -> Settlement:
    """Settle ``job`` at time ``now`` as ``jobSettle`` does (charge capped at the balance).

    Raises:
        MisuseError: when ``now`` is before the job's last settlement (time only moves forward).
    """
    if now < job.last_settled:
        raise MisuseError(
            f"cannot settle at {now}, before the job's last settlement at {job.last_settled}"
        )
    amount = Amount(min(settlement_amount(job.rate, now - job.last_settled), job.balance))
    after = dataclasses.replace(job, balance=Amount(job.balance - amount), last_settled=now)
    return Settlement(amount=amount, job=after)


def withdrawable(job: Job, now: int, lock_wait_s: int) -> Amount:
    """The most ``jobWithdraw`` lets the owner take at ``now`` (after settling, minus the reserve)."""
    balance = settle(job, now).job.balance
    return Amount(max(0, balance - notice_reserve(job.rate, lock_wait_s)))


def paid_until(job: Job) -> int | None:
    """The last second the job's balance pays for at its current rate (``None`` at rate 0).

    Settling at any time up to this charges at most the balance; one second later it would
    charge more than the balance holds (the provider is then underpaid).
    """
    if job.rate == 0:
        return None
    return job.last_settled + job.balance * RATE_SCALE // job.rate
