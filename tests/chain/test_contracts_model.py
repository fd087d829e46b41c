"""The market contract and the pure-Python billing model agree on every random history.

A hypothesis ``RuleBasedStateMachine`` sends the same random operations, at the same random
block times, to the contract (through reef's clients, on py-evm) and to
:class:`reef.testing.MarketModel`. At every step both must take the same decision (both succeed,
or both refuse with the same revert reason), and after every step that changed the chain both
must have:

- the same jobs (balance, rate, last settlement, metadata, owner, provider) and rate locks;
- the same token balance for every account and for the market;

and the chain must conserve tokens: the market holds exactly the sum of the job balances, and
every minted token is in some account.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from market_support import FUNDS, LOCK, TestChain

from reef.chain import MarketClient, TokenClient, parse_job_id
from reef.errors import ContractRevertError, MarketError
from reef.market import withdrawable
from reef.testing import MarketModel

MAX_JOBS = 6  # job indices drawn from [0, MAX_JOBS]: some never exist, some get closed

rates = st.one_of(
    st.sampled_from([0, 1, 10**12 - 1, 10**12, 10**12 + 1, 52_500_000_000_000, 10**15, 2**128 - 1]),
    st.integers(0, 10**16),
)
balances = st.one_of(st.integers(0, 10**9), st.sampled_from([0, 1, 299, 300, FUNDS + 1]))
# Block-time steps: mostly small, some around the lock wait time, some long idle periods.
delays = st.one_of(
    st.integers(0, 120),
    st.sampled_from([LOCK - 1, LOCK, LOCK + 1]),
    st.integers(1000, 10**6),
)
job_indices = st.integers(0, MAX_JOBS)
cps = st.sampled_from(["", "http://127.0.0.1:8080", "http://provider.example:9000/cp"])
metadata = st.text(max_size=30)


class MarketAgreement(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.chain = TestChain.create(n_users=3, n_providers=2)
        chain = self.chain
        self.accounts = [a.address for a in (*chain.users, *chain.providers)]
        self.markets: dict[str, MarketClient] = {
            a.address: chain.market(a) for a in (*chain.users, *chain.providers)
        }
        self.tokens: dict[str, TokenClient] = {
            a.address: chain.token(a) for a in (*chain.users, *chain.providers)
        }
        # Readers name a funded sender: eth-tester otherwise asks for its accounts on every call.
        self.reader = chain.market(chain.deployer.address)
        self.token = chain.token(chain.deployer.address)
        model = MarketModel(
            market=chain.deployment.market,
            token_owner=chain.deployer.address,
            lock_wait_s=LOCK,
        )
        # Mirror the set-up TestChain.create did on chain.
        for user in chain.users:
            model.mint(chain.deployer.address, user.address, FUNDS)
            model.approve(user.address, chain.deployment.market, 2**256 - 1)
        for provider in chain.providers:
            model.provider_add(provider.address, chain.cp[provider.address])
        self.model = model
        self.touched: set[str] = set()
        self.last_job: str | None = None
        self.changed = True

    # ---- driving both sides ----

    def _at(self, delay: int) -> int:
        return self.chain.at(self.chain.next_time() + delay)

    def _both(self, on_model: Callable[[int], Any], on_chain: Callable[[], Any], delay: int) -> Any:
        now = self._at(delay)
        try:
            expected = on_model(now)
            model_refusal = None
        except MarketError as exc:
            model_refusal = exc.message
        chain_refusal = None
        try:
            got = on_chain()
        except ContractRevertError as exc:
            chain_refusal = exc.reason
        assert chain_refusal == model_refusal, (
            f"chain said {chain_refusal or 'ok'!r}, model said {model_refusal or 'ok'!r}"
        )
        if chain_refusal is not None:
            # Nothing was mined; a model that changed anyway shows up at the next comparison.
            return None
        self.changed = True
        block = getattr(got, "block_number", None)
        if block is not None:
            assert self.chain.block_time(block) == now
        if isinstance(got, str):  # open_job returns the job id
            assert got == expected
        return got

    def _job(self, index: int) -> str:
        # A job that exists or existed; the highest index drawn stands for one never opened.
        count = self.model.job_count
        if index == MAX_JOBS:
            job = parse_job_id(count)
        elif index < 2 and self.last_job is not None:  # often the job just worked on
            job = self.last_job
        else:
            job = parse_job_id(index % count)
        self.last_job = job
        self.touched.add(job)
        return job

    def _sender(self, job: str, who: int) -> str:
        """Mostly the job's owner (so owner-only operations get exercised), sometimes anyone."""
        found = self.model.jobs.get(job)  # type: ignore[call-overload]
        if found is not None and who < len(self.accounts):
            return found.owner
        return self.accounts[who % len(self.accounts)]

    # ---- rules ----

    @initialize(rate=rates, balance=balances, delay=delays)
    def first_jobs(self, rate: int, balance: int, delay: int) -> None:
        # Start from a market with a paying job and a free one, so job rules bite at once.
        self.open_job(0, 3, rate, balance, "first", delay)
        self.open_job(1, 4, 0, balance, "free", 0)

    @rule(
        user=st.integers(0, 2),
        provider=st.sampled_from([3, 4, 3, 4, 0]),
        rate=rates,
        balance=balances,
        text=metadata,
        delay=delays,
    )
    def open_job(
        self, user: int, provider: int, rate: int, balance: int, text: str, delay: int
    ) -> None:
        sender, target = self.chain.users[user].address, self.accounts[provider]
        job = self._both(
            lambda now: self.model.job_open(sender, text, target, rate, balance, now=now),
            lambda: self.markets[sender].open_job(text, target, rate, balance, approve=False),
            delay,
        )
        if job is not None:
            self.touched.add(job)
            self.last_job = job

    @precondition(lambda self: self.model.job_count > 0)
    @rule(user=st.integers(0, 4), index=job_indices, amount=balances, delay=delays)
    def deposit(self, user: int, index: int, amount: int, delay: int) -> None:
        sender, job = self.accounts[user], self._job(index)
        self._both(
            lambda now: self.model.job_deposit(sender, job, amount, now=now),  # type: ignore[arg-type]
            lambda: self.markets[sender].deposit(job, amount, approve=False),
            delay,
        )

    @precondition(lambda self: self.model.job_count > 0)
    @rule(
        who=st.integers(0, 6),
        index=job_indices,
        delay=delays,
        mode=st.sampled_from(["max", "max+1", "zero", "any"]),
        amount=balances,
    )
    def withdraw(self, who: int, index: int, delay: int, mode: str, amount: int) -> None:
        job = self._job(index)
        sender = self._sender(job, who)
        found = self.model.jobs.get(job)  # type: ignore[call-overload]
        if (
            found is not None
            and mode != "any"
            and self.chain.next_time() + delay >= found.last_settled
        ):
            now = self.chain.next_time() + delay
            limit = withdrawable(found, now, LOCK)
            amount = {"max": limit, "max+1": limit + 1, "zero": 0}[mode]
        self._both(
            lambda now: self.model.job_withdraw(sender, job, amount, now=now),  # type: ignore[arg-type]
            lambda: self.markets[sender].withdraw(job, amount),
            delay,
        )

    @precondition(lambda self: self.model.job_count > 0)
    @rule(user=st.integers(0, 4), index=job_indices, delay=delays)
    def settle(self, user: int, index: int, delay: int) -> None:
        sender, job = self.accounts[user], self._job(index)
        self._both(
            lambda now: self.model.job_settle(sender, job, now=now),  # type: ignore[arg-type]
            lambda: self.markets[sender].settle(job),
            delay,
        )

    @precondition(lambda self: self.model.job_count > 0)
    @rule(who=st.integers(0, 6), index=job_indices, rate=st.one_of(st.just(0), rates), delay=delays)
    def revise_rate_initiate(self, who: int, index: int, rate: int, delay: int) -> None:
        job = self._job(index)
        sender = self._sender(job, who)
        self._both(
            lambda now: self.model.job_revise_rate_initiate(sender, job, rate, now=now),  # type: ignore[arg-type]
            lambda: self.markets[sender].revise_rate_initiate(job, rate),
            delay,
        )

    @precondition(lambda self: self.model.job_count > 0)
    @rule(who=st.integers(0, 6), index=job_indices, delay=delays)
    def revise_rate_cancel(self, who: int, index: int, delay: int) -> None:
        job = self._job(index)
        sender = self._sender(job, who)
        self._both(
            lambda now: self.model.job_revise_rate_cancel(sender, job, now=now),  # type: ignore[arg-type]
            lambda: self.markets[sender].revise_rate_cancel(job),
            delay,
        )

    @precondition(lambda self: self.model.job_count > 0)
    @rule(who=st.integers(0, 6), index=job_indices, delay=delays)
    def revise_rate_finalize(self, who: int, index: int, delay: int) -> None:
        job = self._job(index)
        sender = self._sender(job, who)
        self._both(
            lambda now: self.model.job_revise_rate_finalize(sender, job, now=now),  # type: ignore[arg-type]
            lambda: self.markets[sender].revise_rate_finalize(job),
            delay,
        )

    @precondition(lambda self: self.model.job_count > 0)
    @rule(who=st.integers(0, 6), index=job_indices, delay=delays)
    def close(self, who: int, index: int, delay: int) -> None:
        job = self._job(index)
        sender = self._sender(job, who)
        self._both(
            lambda now: self.model.job_close(sender, job, now=now),  # type: ignore[arg-type]
            lambda: self.markets[sender].close(job),
            delay,
        )

    @precondition(lambda self: self.model.job_count > 0)
    @rule(who=st.integers(0, 6), index=job_indices, text=metadata, delay=delays)
    def update_metadata(self, who: int, index: int, text: str, delay: int) -> None:
        job = self._job(index)
        sender = self._sender(job, who)
        self._both(
            lambda now: self.model.job_metadata_update(sender, job, text, now=now),  # type: ignore[arg-type]
            lambda: self.markets[sender].update_metadata(job, text),
            delay,
        )

    @precondition(lambda self: self.model.job_count > 0)
    @rule(
        index=job_indices,
        rate=st.one_of(st.just(0), rates),
        # Block time of the second step relative to the unlock time: before, at, after.
        wait=st.sampled_from([0, LOCK - 2, LOCK - 1, LOCK, 2 * LOCK]),
        then=st.sampled_from(["close", "finalize", "cancel", "withdraw"]),
        delay=delays,
    )
    def revise_then(self, index: int, rate: int, wait: int, then: str, delay: int) -> None:
        """The notice flows as users run them: initiate, then act around the unlock time."""
        job = self._job(index)
        sender = self._sender(job, 0)
        self._both(
            lambda now: self.model.job_revise_rate_initiate(sender, job, rate, now=now),  # type: ignore[arg-type]
            lambda: self.markets[sender].revise_rate_initiate(job, rate),
            delay,
        )
        market, model = self.markets[sender], self.model
        second = {
            "close": (
                lambda now: model.job_close(sender, job, now=now),  # type: ignore[arg-type]
                lambda: market.close(job),
            ),
            "finalize": (
                lambda now: model.job_revise_rate_finalize(sender, job, now=now),  # type: ignore[arg-type]
                lambda: market.revise_rate_finalize(job),
            ),
            "cancel": (
                lambda now: model.job_revise_rate_cancel(sender, job, now=now),  # type: ignore[arg-type]
                lambda: market.revise_rate_cancel(job),
            ),
            "withdraw": (
                lambda now: model.job_withdraw(sender, job, 0, now=now),  # type: ignore[arg-type]
                lambda: market.withdraw(job, 0),
            ),
        }[then]
        self._both(second[0], second[1], wait)

    @rule(
        who=st.integers(0, 4),
        cp=cps,
        action=st.sampled_from(["add", "update", "remove"]),
        delay=delays,
    )
    def provider(self, who: int, cp: str, action: str, delay: int) -> None:
        sender = self.accounts[who]
        market = self.markets[sender]
        if action == "add":
            self._both(
                lambda now: self.model.provider_add(sender, cp),
                lambda: market.add_provider(cp),
                delay,
            )
        elif action == "update":
            self._both(
                lambda now: self.model.provider_update(sender, cp),
                lambda: market.update_provider(cp),
                delay,
            )
        else:
            self._both(
                lambda now: self.model.provider_remove(sender),
                lambda: market.remove_provider(),
                delay,
            )

    @rule(
        user=st.integers(0, 2), amount=st.sampled_from([0, 10**6, 10**9, 2**256 - 1]), delay=delays
    )
    def approve(self, user: int, amount: int, delay: int) -> None:
        sender, market = self.chain.users[user].address, self.chain.deployment.market
        self._both(
            lambda now: self.model.approve(sender, market, amount),
            lambda: self.tokens[sender].approve(market, amount),
            delay,
        )

    @rule(source=st.integers(0, 4), to=st.integers(0, 4), amount=balances, delay=delays)
    def transfer(self, source: int, to: int, amount: int, delay: int) -> None:
        sender, recipient = self.accounts[source], self.accounts[to]
        self._both(
            lambda now: self.model.transfer(sender, recipient, amount),
            lambda: self.tokens[sender].transfer(recipient, amount),
            delay,
        )

    # ---- what must hold after every step ----

    @invariant()
    def chain_and_model_agree(self) -> None:
        """After every step that changed something: balances, conservation, touched jobs."""
        if not self.changed:
            return
        market = self.chain.deployment.market
        holders = [*self.accounts, market]
        chain_balances = {a: self.token.balance(a) for a in holders}
        assert chain_balances == {a: self.model.balance(a) for a in holders}
        supply = self.token.total_supply()
        # The deployer mints but never holds tokens, so every token is with these holders.
        assert supply == self.model.total_supply == sum(chain_balances.values())
        assert chain_balances[market] == sum(j.balance for j in self.model.jobs.values())
        for job in self.touched:
            assert self.reader.find_job(job) == self.model.jobs.get(job)  # type: ignore[call-overload]
            assert self.reader.rate_lock(job) == self.model.locks.get(job)  # type: ignore[call-overload]
        self.touched.clear()
        self.changed = False

    def teardown(self) -> None:
        # A last full sweep: every job and lock that ever existed, and every provider.
        for index in range(self.model.job_count + 1):
            job = parse_job_id(index)
            assert self.reader.find_job(job) == self.model.jobs.get(job)
            assert self.reader.rate_lock(job) == self.model.locks.get(job)
        assert self.reader.job_count() == self.model.job_count
        assert self.token.balance(self.chain.deployer.address) == 0
        for account in self.accounts:
            assert self.reader.provider(account) == self.model.providers.get(account)


MarketAgreement.TestCase.settings = settings(
    # About 400 steps, ~25 s of CPU (40-60 s on a loaded 2-core runner). Mutations of the model
    # (floor settlement or reserve, close ignoring the lock, finalize at the new rate) fail it.
    max_examples=10,
    stateful_step_count=40,
    deadline=None,
    # No shrinking: with a chain per example it takes many minutes. A failure prints the whole
    # (at most 40-step) history, which replays exactly because every chain starts at START.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.slow
class TestMarketAgreement(MarketAgreement.TestCase):  # type: ignore[name-defined,misc]
    """The stateful comparison above, collected by pytest (marked slow: about a minute)."""
