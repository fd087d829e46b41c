"""The market contract (and its token) as a pure-Python state machine, for tests.

It checks every condition in ``Market.vy``'s order and raises :class:`~reef.errors.MarketError`
whose message is the contract's exact revert reason (:class:`reef.chain.Revert`), so a model and
a chain that disagree are caught even when both refuse. The money arithmetic is the market's own
(:mod:`reef.market`'s settlement functions), so the model tests those too.
"""

from __future__ import annotations

import dataclasses

from reef.chain import (
    MAX_CP_BYTES,
    MAX_METADATA_BYTES,
    MAX_RATE,
    Address,
    Amount,
    Job,
    JobId,
    Rate,
    RateLock,
    Revert,
    check_uint,
    parse_job_id,
)
from reef.chain._market import check_text
from reef.chain._reasons import hint_for
from reef.errors import MarketError, MisuseError
from reef.market import notice_reserve, settle

__all__ = ["MarketModel"]

_UINT256_MAX = 2**256 - 1
_ZERO = Address("0x0000000000000000000000000000000000000000")


def _refuse(reason: Revert) -> MarketError:
    return MarketError(str(reason), hint=hint_for(reason))


class MarketModel:
    """The market contract and its token as a pure-Python state machine.

    Every method takes the ``sender`` (and, for job operations, the block time ``now``),
    applies the contract's checks in the contract's order, and either changes nothing and
    raises :class:`MarketError` with the contract's revert reason, or applies the whole
    operation. Time must not go backwards across calls.

    Args:
        market: the market's address (it holds the jobs' tokens).
        token_owner: the account allowed to mint.
        lock_wait_s: the rate lock wait time the market was deployed with.
    """

    def __init__(self, *, market: str, token_owner: str, lock_wait_s: int = 300) -> None:
        self.market = Address(market)
        self.token_owner = Address(token_owner)
        self.lock_wait_s = lock_wait_s
        self.balances: dict[Address, Amount] = {}
        self.allowances: dict[tuple[Address, Address], Amount] = {}
        self.total_supply = Amount(0)
        self.providers: dict[Address, str] = {}
        self.jobs: dict[JobId, Job] = {}
        self.locks: dict[JobId, RateLock] = {}
        self.job_count = 0
        self.now = 0

    # ---- time ----

    def _at(self, now: int) -> None:
        if now < self.now:
            raise MisuseError(f"time went backwards: {now} after {self.now}")
        self.now = now

    # ---- token ----

    def balance(self, address: str) -> Amount:
        return self.balances.get(Address(address), Amount(0))

    def allowance(self, owner: str, spender: str) -> Amount:
        return self.allowances.get((Address(owner), Address(spender)), Amount(0))

    def _move(self, source: Address, to: Address, amount: int) -> None:
        """ERC-20 ``_transfer``, checks then effects."""
        if to == _ZERO:
            raise _refuse(Revert.TRANSFER_TO_ZERO)
        if self.balance(source) < amount:
            raise _refuse(Revert.INSUFFICIENT_BALANCE)
        self.balances[source] = Amount(self.balance(source) - amount)
        self.balances[to] = Amount(self.balance(to) + amount)

    def _check_pull(self, source: Address, amount: int) -> None:
        """What ``transferFrom(source, market, amount)`` would refuse, without doing it."""
        if amount == 0:
            return
        allowed = self.allowance(source, self.market)
        if allowed != _UINT256_MAX and allowed < amount:
            raise _refuse(Revert.INSUFFICIENT_ALLOWANCE)
        if self.balance(source) < amount:
            raise _refuse(Revert.INSUFFICIENT_BALANCE)

    def _pull(self, source: Address, amount: int) -> None:
        if amount == 0:
            return
        self._check_pull(source, amount)
        allowed = self.allowance(source, self.market)
        if allowed != _UINT256_MAX:
            self.allowances[(source, self.market)] = Amount(allowed - amount)
        self._move(source, self.market, amount)

    def _push(self, to: Address, amount: int) -> None:
        if amount:
            self._move(self.market, to, amount)

    def mint(self, sender: str, to: str, amount: int) -> None:
        check_uint(amount, "amount")
        if Address(sender) != self.token_owner:
            raise _refuse(Revert.ONLY_TOKEN_OWNER_MINT)
        if Address(to) == _ZERO:
            raise _refuse(Revert.MINT_TO_ZERO)
        self.total_supply = Amount(self.total_supply + amount)
        self.balances[Address(to)] = Amount(self.balance(to) + amount)

    def transfer(self, sender: str, to: str, amount: int) -> None:
        check_uint(amount, "amount")
        self._move(Address(sender), Address(to), amount)

    def approve(self, sender: str, spender: str, amount: int) -> None:
        check_uint(amount, "amount")
        if Address(spender) == _ZERO:
            raise _refuse(Revert.APPROVE_ZERO)
        self.allowances[(Address(sender), Address(spender))] = Amount(amount)

    # ---- providers ----

    def provider_add(self, sender: str, cp: str) -> None:
        check_text(cp, "control-plane URL", MAX_CP_BYTES)
        if self.providers.get(Address(sender)):
            raise _refuse(Revert.PROVIDER_EXISTS)
        if not cp:
            raise _refuse(Revert.CP_EMPTY)
        self.providers[Address(sender)] = cp

    def provider_remove(self, sender: str) -> None:
        if not self.providers.get(Address(sender)):
            raise _refuse(Revert.NOT_A_PROVIDER)
        del self.providers[Address(sender)]

    def provider_update(self, sender: str, cp: str) -> None:
        check_text(cp, "control-plane URL", MAX_CP_BYTES)
        if not self.providers.get(Address(sender)):
            raise _refuse(Revert.NOT_A_PROVIDER)
        if not cp:
            raise _refuse(Revert.CP_EMPTY)
        self.providers[Address(sender)] = cp

    # ---- jobs ----

    def _job(self, job: JobId) -> Job:
        found = self.jobs.get(job)
        if found is None:
            raise _refuse(Revert.JOB_NOT_FOUND)
        return found

    def _owned(self, sender: str, job: JobId, reason: Revert) -> Job:
        found = self._job(job)
        if found.owner != Address(sender):
            raise _refuse(reason)
        return found

    def _settle(self, job: JobId) -> Amount:
        outcome = settle(self.jobs[job], self.now)
        self.jobs[job] = outcome.job
        self._push(outcome.job.provider, outcome.amount)
        return outcome.amount

    def job_open(
        self, sender: str, metadata: str, provider: str, rate: int, balance: int, *, now: int
    ) -> JobId:
        """``jobOpen``: returns the new job's id."""
        check_text(metadata, "job metadata", MAX_METADATA_BYTES)
        check_uint(rate, "rate")
        check_uint(balance, "balance")
        self._at(now)
        if not self.providers.get(Address(provider)):
            raise _refuse(Revert.PROVIDER_NOT_REGISTERED)
        if rate > MAX_RATE:
            raise _refuse(Revert.RATE_TOO_HIGH)
        self._check_pull(Address(sender), balance)
        job = parse_job_id(self.job_count)
        self.job_count += 1
        self.jobs[job] = Job(
            id=job,
            metadata=metadata,
            owner=Address(sender),
            provider=Address(provider),
            rate=Rate(rate),
            balance=Amount(balance),
            last_settled=now,
        )
        self._pull(Address(sender), balance)
        return job

    def job_settle(self, sender: str, job: JobId, *, now: int) -> Amount:
        """``jobSettle`` (anyone): returns the amount paid to the provider."""
        self._at(now)
        self._job(job)
        return self._settle(job)

    def job_deposit(self, sender: str, job: JobId, amount: int, *, now: int) -> None:
        """``jobDeposit`` (anyone; the tokens come from ``sender``)."""
        check_uint(amount, "amount")
        self._at(now)
        found = self._job(job)
        self._check_pull(Address(sender), amount)
        self.jobs[job] = dataclasses.replace(found, balance=Amount(found.balance + amount))
        self._pull(Address(sender), amount)

    def job_withdraw(self, sender: str, job: JobId, amount: int, *, now: int) -> None:
        """``jobWithdraw`` (owner): settles, then keeps the notice reserve."""
        check_uint(amount, "amount")
        self._at(now)
        found = self._owned(sender, job, Revert.ONLY_OWNER_WITHDRAW)
        balance = settle(found, now).job.balance
        reserve = notice_reserve(found.rate, self.lock_wait_s)
        if not (balance >= reserve and amount <= balance - reserve):  # as Market.vy says it
            raise _refuse(Revert.WITHDRAW_RESERVE)
        self._settle(job)
        settled = self.jobs[job]
        self.jobs[job] = dataclasses.replace(settled, balance=Amount(settled.balance - amount))
        self._push(Address(sender), amount)

    def job_revise_rate_initiate(self, sender: str, job: JobId, new_rate: int, *, now: int) -> None:
        """``jobReviseRateInitiate`` (owner): locks ``new_rate`` for the lock wait time."""
        check_uint(new_rate, "new rate")
        self._at(now)
        self._owned(sender, job, Revert.ONLY_OWNER_REVISE)
        if new_rate > MAX_RATE:
            raise _refuse(Revert.RATE_TOO_HIGH)
        if job in self.locks:
            raise _refuse(Revert.REVISION_PENDING)
        self.locks[job] = RateLock(unlock_time=now + self.lock_wait_s, new_rate=Rate(new_rate))

    def job_revise_rate_cancel(self, sender: str, job: JobId, *, now: int) -> None:
        """``jobReviseRateCancel`` (owner)."""
        self._at(now)
        self._owned(sender, job, Revert.ONLY_OWNER_CANCEL)
        if job not in self.locks:
            raise _refuse(Revert.NO_REVISION)
        del self.locks[job]

    def job_revise_rate_finalize(self, sender: str, job: JobId, *, now: int) -> None:
        """``jobReviseRateFinalize`` (owner): settles at the old rate, then applies the new one."""
        self._at(now)
        self._owned(sender, job, Revert.ONLY_OWNER_FINALIZE)
        lock = self.locks.get(job)
        if lock is None:
            raise _refuse(Revert.NO_REVISION)
        if lock.unlock_time > now:
            raise _refuse(Revert.REVISION_LOCKED)
        del self.locks[job]
        self._settle(job)
        self.jobs[job] = dataclasses.replace(self.jobs[job], rate=lock.new_rate)

    def job_close(self, sender: str, job: JobId, *, now: int) -> None:
        """``jobClose`` (owner): settles, refunds the rest, deletes the job and its lock."""
        self._at(now)
        found = self._owned(sender, job, Revert.ONLY_OWNER_CLOSE)
        lock = self.locks.get(job)
        if found.rate != 0:
            if lock is None:
                raise _refuse(Revert.CLOSE_NEEDS_NOTICE)
            if lock.unlock_time > now:
                raise _refuse(Revert.REVISION_LOCKED)
            if lock.new_rate != 0:
                raise _refuse(Revert.CLOSE_REVISION_NOT_ZERO)
        self.locks.pop(job, None)
        self._settle(job)
        refund = self.jobs.pop(job).balance
        self._push(found.owner, refund)

    def job_metadata_update(self, sender: str, job: JobId, metadata: str, *, now: int) -> None:
        """``jobMetadataUpdate`` (owner)."""
        check_text(metadata, "job metadata", MAX_METADATA_BYTES)
        self._at(now)
        found = self._owned(sender, job, Revert.ONLY_OWNER_METADATA)
        self.jobs[job] = dataclasses.replace(found, metadata=metadata)
