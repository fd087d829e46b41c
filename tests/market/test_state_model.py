"""The control plane's state machine against C1's billing model of the market (an independent
implementation of the contract's rules), driven by hypothesis with random operations and clock
jumps: the events the contract would emit go to the machine, and after every step

* a job the provider keeps running still has money for the whole safety margin at the rate the
  market really charges (safety: terminated *before* the money runs out);
* a job the market no longer has (closed) is never running;
* a running job pays at least the instance's minimum rate;
* and a job with a full second of money beyond the margin at the real rate, no pending revision
  and an acceptable rate is never stopped for insolvency (liveness)."""

from __future__ import annotations

from typing import Any

from event_support import market_event as Ev
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from reef.chain import JobId
from reef.errors import MarketError
from reef.market import JobBook, JobMetadata, JobPolicy, RateCard, settlement_amount
from reef.testing import MarketModel, dev_job_metadata

MARKET = "0x" + "5A" * 20
OWNER = "0x" + "0C" * 20
PROVIDER = "0x" + "0B" * 20
LOCK = 60
MARGIN = 60
MIN = RateCard.dev().lookup("local", "dev.small").min_rate
# Acceptable rates first: hypothesis favours (and shrinks towards) the first elements.
RATES = st.sampled_from([5 * MIN, 2 * MIN, MIN, MIN - 1, 0])
META = dev_job_metadata("http://x/a", memory=512)


class ProviderVersusMarket(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000_000
        self.model = MarketModel(market=MARKET, token_owner=OWNER, lock_wait_s=LOCK)
        self.model.mint(OWNER, OWNER, 10**15)
        self.model.approve(OWNER, MARKET, 10**15)
        self.model.provider_add(PROVIDER, "http://cp")
        self.book = JobBook(JobPolicy(RateCard.dev(), provider=PROVIDER, safety_margin_s=MARGIN))
        self.job: JobId | None = None

    # -- helpers ---------------------------------------------------------------------------

    def _emit(self, name: str, **data: Any) -> None:
        assert self.job is not None
        self.book.apply(Ev(name, self.job, {"job_id": self.job, **data}))

    def _paid(self) -> int:
        return int(self.model.balance(PROVIDER))

    def _settled_since(self, before: int) -> None:
        self._emit("Settled", amount=hex(self._paid() - before), timestamp=hex(self.now))

    # -- rules -------------------------------------------------------------------------------

    @precondition(lambda self: self.job is None)
    @rule(rate=RATES, balance=st.integers(10**4, 10**5) | st.integers(0, 10**4))
    def open(self, rate: int, balance: int) -> None:
        self.job = self.model.job_open(OWNER, META.to_json(), PROVIDER, rate, balance, now=self.now)
        self._emit(
            "Opened",
            owner=OWNER.lower(),
            provider=PROVIDER.lower(),
            metadata=META.to_json(),
            rate=hex(rate),
            balance=hex(balance),
            timestamp=hex(self.now),
        )

    @rule(seconds=st.integers(1, 600))
    def wait(self, seconds: int) -> None:
        self.now += seconds

    @precondition(lambda self: self.job is not None and self.job in self.model.jobs)
    @rule(offset=st.integers(-3, 3))
    def wait_until_the_margin(self, offset: int) -> None:
        """Jump to just around the instant the real money leaves less than the margin: where
        a provider that misjudges the rate would be caught."""
        assert self.job is not None
        job = self.model.jobs[self.job]
        if job.rate:
            target = job.last_settled + job.balance * 10**12 // job.rate - MARGIN + offset
            self.now = max(self.now, target)

    @precondition(lambda self: self.job is not None)
    @rule(amount=st.integers(0, 5 * 10**4))
    def deposit(self, amount: int) -> None:
        assert self.job is not None
        try:
            self.model.job_deposit(OWNER, self.job, amount, now=self.now)
        except MarketError:
            return
        self._emit("Deposited", amount=hex(amount))

    @precondition(lambda self: self.job is not None)
    @rule(amount=st.integers(0, 5 * 10**4))
    def withdraw(self, amount: int) -> None:
        assert self.job is not None
        before = self._paid()
        try:
            self.model.job_withdraw(OWNER, self.job, amount, now=self.now)
        except MarketError:
            return
        self._settled_since(before)
        self._emit("Withdrew", amount=hex(amount))

    @precondition(lambda self: self.job is not None)
    @rule()
    def settle(self) -> None:
        assert self.job is not None
        before = self._paid()
        try:
            self.model.job_settle(PROVIDER, self.job, now=self.now)
        except MarketError:
            return
        self._settled_since(before)

    @precondition(lambda self: self.job is not None)
    @rule(rate=RATES)
    def revise(self, rate: int) -> None:
        assert self.job is not None
        try:
            self.model.job_revise_rate_initiate(OWNER, self.job, rate, now=self.now)
        except MarketError:
            return
        self._emit("ReviseRateInitiated", new_rate=hex(rate))

    @precondition(lambda self: self.job is not None)
    @rule()
    def cancel(self) -> None:
        assert self.job is not None
        try:
            self.model.job_revise_rate_cancel(OWNER, self.job, now=self.now)
        except MarketError:
            return
        self._emit("ReviseRateCancelled")

    @precondition(lambda self: self.job is not None)
    @rule()
    def finalize(self) -> None:
        assert self.job is not None
        before = self._paid()
        lock = self.model.locks.get(self.job)
        try:
            self.model.job_revise_rate_finalize(OWNER, self.job, now=self.now)
        except MarketError:
            return
        assert lock is not None
        self._settled_since(before)
        self._emit("ReviseRateFinalized", new_rate=hex(lock.new_rate))

    @precondition(lambda self: self.job is not None)
    @rule()
    def close(self) -> None:
        assert self.job is not None
        before = self._paid()
        try:
            self.model.job_close(OWNER, self.job, now=self.now)
        except MarketError:
            return
        self._settled_since(before)
        self._emit("Closed")

    @precondition(lambda self: self.job is not None)
    @rule(change=st.sampled_from(["url", "debug", "instance"]))
    def update(self, change: str) -> None:
        assert self.job is not None
        meta = {
            "url": JobMetadata(**{**META.__dict__, "url": "http://x/b"}),
            "debug": JobMetadata(**{**META.__dict__, "debug": True}),
            "instance": JobMetadata(**{**META.__dict__, "instance": "dev.medium"}),
        }[change]
        try:
            self.model.job_metadata_update(OWNER, self.job, meta.to_json(), now=self.now)
        except MarketError:
            return
        self._emit("MetadataUpdated", new_metadata=meta.to_json())

    # -- the provider decides after every step ------------------------------------------------

    @invariant()
    def provider_is_safe_and_live(self) -> None:
        if self.job is None:
            return
        was_running = self.book.jobs[self.job].phase == "running"
        self.book.decide(self.now)
        machine = self.book.jobs[self.job]
        chain_job = self.model.jobs.get(self.job)
        if machine.phase == "running":
            assert chain_job is not None, "a closed job is still running"
            assert machine.offered_rate >= MIN
            owed = settlement_amount(chain_job.rate, self.now + MARGIN - chain_job.last_settled)
            assert owed <= chain_job.balance, "running without money for the margin"
        elif was_running and "would run out" in machine.reason and chain_job is not None:
            lock = self.model.locks.get(self.job)
            if lock is None:
                one_more = settlement_amount(
                    chain_job.rate, self.now + MARGIN + 1 - chain_job.last_settled
                )
                assert one_more > chain_job.balance, "stopped although the money lasts"


ProviderVersusMarket.TestCase.settings = settings(
    max_examples=500, stateful_step_count=25, deadline=None
)
TestProviderVersusMarket = ProviderVersusMarket.TestCase
