"""The billing model alone: settlement arithmetic, reserve, locks, and the whole-market state
machine (its agreement with the contract is tests/chain/test_contracts_model.py)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from reef.chain import Address, Amount, Job, JobId, Rate, RateLock, Revert, parse_job_id
from reef.errors import InputError, MarketError, MisuseError
from reef.market import (
    notice_reserve,
    paid_until,
    settle,
    settlement_amount,
    withdrawable,
)
from reef.testing import MarketModel

S = 10**12
MARKET = Address("0x" + "aa" * 20)
MINTER = Address("0x" + "bb" * 20)
ALICE = Address("0x" + "01" * 20)
BOB = Address("0x" + "02" * 20)
PROVIDER = Address("0x" + "03" * 20)

rates = st.integers(0, 2**128 - 1)
durations = st.integers(0, 10**9)
amounts = st.integers(0, 2**96)


def _job(rate: int, balance: int, last: int = 1000) -> Job:
    return Job(
        id=JobId(parse_job_id(0)),
        metadata="",
        owner=ALICE,
        provider=PROVIDER,
        rate=Rate(rate),
        balance=Amount(balance),
        last_settled=last,
    )


# ---- arithmetic ----


@pytest.mark.parametrize(
    ("rate", "seconds", "expected"),
    [
        (S, 10, 10),
        (S + 1, 1, 2),
        (1, 1, 1),
        (1, 0, 0),
        (0, 10**9, 0),
        (52_500_000_000_000, 3600, 189_000),  # reference §4.3: 0.189 USDC per hour
    ],
)
def test_settlement_amount_examples(rate: int, seconds: int, expected: int) -> None:
    assert settlement_amount(rate, seconds) == expected


@given(rates, durations)
def test_settlement_amount_is_the_ceiling(rate: int, seconds: int) -> None:
    amount = settlement_amount(rate, seconds)
    assert amount * S >= rate * seconds
    assert (amount - 1) * S < rate * seconds or amount == 0


@given(rates, durations, durations)
def test_settling_in_two_steps_costs_at_most_one_unit_more(rate: int, a: int, b: int) -> None:
    # Ceil rounding per settlement: frequent settling favours the provider by < 1 unit each time.
    split = settlement_amount(rate, a) + settlement_amount(rate, b)
    assert split - settlement_amount(rate, a + b) in (0, 1)


@given(rates, amounts, durations)
def test_settle_conserves_and_caps(rate: int, balance: int, seconds: int) -> None:
    job = _job(rate, balance)
    outcome = settle(job, job.last_settled + seconds)
    assert outcome.amount == min(settlement_amount(rate, seconds), balance)
    assert outcome.amount + outcome.job.balance == balance
    assert outcome.job.last_settled == job.last_settled + seconds
    assert dataclasses.replace(outcome.job, balance=job.balance, last_settled=1000) == job


def test_settle_refuses_to_go_back_in_time() -> None:
    with pytest.raises(MisuseError, match="before the job's last settlement"):
        settle(_job(1, 1, last=1000), 999)


@given(st.integers(1, 2**128 - 1), amounts)
def test_paid_until_is_the_last_fully_paid_second(rate: int, balance: int) -> None:
    job = _job(rate, balance)
    until = paid_until(job)
    assert until is not None
    assert settlement_amount(rate, until - job.last_settled) <= balance
    assert settlement_amount(rate, until + 1 - job.last_settled) > balance


def test_a_free_job_is_paid_forever() -> None:
    assert paid_until(_job(0, 0)) is None


@given(rates, amounts, st.integers(0, 3600), st.integers(0, 1000))
def test_withdrawable_leaves_exactly_the_reserve(
    rate: int, balance: int, lock: int, seconds: int
) -> None:
    job = _job(rate, balance)
    now = job.last_settled + seconds
    settled = settle(job, now).job.balance
    reserve = notice_reserve(rate, lock)
    assert reserve == settlement_amount(rate, lock)
    assert withdrawable(job, now, lock) == max(0, settled - reserve)


def test_arithmetic_rejects_non_integers() -> None:
    with pytest.raises(InputError):
        settlement_amount(-1, 1)
    with pytest.raises(InputError):
        settlement_amount(1, True)


# ---- the market model ----


@pytest.fixture
def model() -> MarketModel:
    m = MarketModel(market=MARKET, token_owner=MINTER, lock_wait_s=300)
    for who in (ALICE, BOB):
        m.mint(MINTER, who, 10**9)
        m.approve(who, MARKET, 2**256 - 1)
    m.provider_add(PROVIDER, "http://cp")
    return m


def _refused(reason: Revert) -> pytest.RaisesContext[MarketError]:
    return pytest.raises(
        MarketError, match=reason.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")
    )


def test_a_job_lifecycle_in_the_model(model: MarketModel) -> None:
    job = model.job_open(ALICE, "{}", PROVIDER, S, 1000, now=10)
    assert job == parse_job_id(0)
    assert model.balance(MARKET) == 1000
    assert model.job_settle(BOB, job, now=20) == 10
    assert model.balance(PROVIDER) == 10
    with _refused(Revert.WITHDRAW_RESERVE):
        model.job_withdraw(ALICE, job, 691, now=20)  # 990 - 300 reserve = 690 at most
    model.job_withdraw(ALICE, job, 690, now=20)
    assert model.jobs[job].balance == 300
    with _refused(Revert.CLOSE_NEEDS_NOTICE):
        model.job_close(ALICE, job, now=21)
    model.job_revise_rate_initiate(ALICE, job, 0, now=21)
    assert model.locks[job] == RateLock(unlock_time=321, new_rate=Rate(0))
    with _refused(Revert.REVISION_LOCKED):
        model.job_close(ALICE, job, now=320)
    model.job_close(ALICE, job, now=321)
    # 301 more seconds at the old rate, capped at the 300 the reserve kept.
    assert model.balance(PROVIDER) == 10 + 300
    assert model.balance(ALICE) == 10**9 - 1000 + 690
    assert job not in model.jobs
    assert job not in model.locks
    assert model.balance(MARKET) == 0


def test_model_refusals_carry_the_contracts_reason_and_hint(model: MarketModel) -> None:
    job = model.job_open(ALICE, "{}", PROVIDER, 0, 5, now=1)
    with _refused(Revert.ONLY_OWNER_CLOSE) as info:
        model.job_close(BOB, job, now=2)
    assert info.value.hint == "send the transaction from the account that opened the job"
    with _refused(Revert.PROVIDER_NOT_REGISTERED):
        model.job_open(ALICE, "{}", BOB, 0, 0, now=2)
    with _refused(Revert.RATE_TOO_HIGH):
        model.job_open(ALICE, "{}", PROVIDER, 2**128, 0, now=2)
    with _refused(Revert.INSUFFICIENT_BALANCE):
        model.job_open(ALICE, "{}", PROVIDER, 0, 10**10, now=2)
    model.approve(ALICE, MARKET, 3)
    with _refused(Revert.INSUFFICIENT_ALLOWANCE):
        model.job_deposit(ALICE, job, 4, now=2)
    with _refused(Revert.JOB_NOT_FOUND):
        model.job_settle(ALICE, parse_job_id(7), now=2)
    with _refused(Revert.ONLY_TOKEN_OWNER_MINT):
        model.mint(ALICE, ALICE, 1)
    with pytest.raises(MisuseError, match="time went backwards"):
        model.job_settle(ALICE, job, now=1)


def test_a_refused_operation_changes_nothing(model: MarketModel) -> None:
    job = model.job_open(ALICE, "{}", PROVIDER, S, 1000, now=10)
    before = (dict(model.balances), dict(model.jobs), dict(model.locks))
    with _refused(Revert.WITHDRAW_RESERVE):
        model.job_withdraw(ALICE, job, 10**6, now=500)  # would settle first, then refuse
    assert (dict(model.balances), dict(model.jobs), dict(model.locks)) == before


def test_revision_rules(model: MarketModel) -> None:
    job = model.job_open(ALICE, "{}", PROVIDER, S, 10**6, now=0)
    with _refused(Revert.NO_REVISION):
        model.job_revise_rate_cancel(ALICE, job, now=1)
    model.job_revise_rate_initiate(ALICE, job, 2 * S, now=1)
    with _refused(Revert.REVISION_PENDING):
        model.job_revise_rate_initiate(ALICE, job, 3 * S, now=2)
    with _refused(Revert.REVISION_LOCKED):
        model.job_revise_rate_finalize(ALICE, job, now=300)
    with _refused(Revert.CLOSE_REVISION_NOT_ZERO):
        model.job_close(ALICE, job, now=301)
    model.job_revise_rate_finalize(ALICE, job, now=301)
    assert model.jobs[job].rate == 2 * S
    assert model.jobs[job].balance == 10**6 - 301  # the old rate up to the finalize


class ModelConservation(RuleBasedStateMachine):
    """Random histories on the model alone (fast): tokens are neither created nor lost."""

    def __init__(self) -> None:
        super().__init__()
        self.model = MarketModel(market=MARKET, token_owner=MINTER, lock_wait_s=300)
        for who in (ALICE, BOB):
            self.model.mint(MINTER, who, 10**9)
            self.model.approve(who, MARKET, 2**256 - 1)
        self.model.provider_add(PROVIDER, "http://cp")
        self.now = 0

    def _try(self, op: Callable[[], object]) -> None:
        with contextlib.suppress(MarketError):  # refusals are fine; invariants must still hold
            op()

    @rule(
        who=st.sampled_from([ALICE, BOB]),
        rate=st.integers(0, 10**15),
        balance=st.integers(0, 10**7),
        dt=st.integers(0, 1000),
    )
    def open(self, who: Address, rate: int, balance: int, dt: int) -> None:
        self.now += dt
        self._try(lambda: self.model.job_open(who, "", PROVIDER, rate, balance, now=self.now))

    @rule(
        index=st.integers(0, 5),
        who=st.sampled_from([ALICE, BOB]),
        op=st.sampled_from(
            [
                "settle",
                "withdraw",
                "deposit",
                "initiate0",
                "initiate",
                "cancel",
                "finalize",
                "close",
            ]
        ),
        amount=st.integers(0, 10**6),
        dt=st.integers(0, 1000),
    )
    def act(self, index: int, who: Address, op: str, amount: int, dt: int) -> None:
        self.now += dt
        job, m, now = parse_job_id(index), self.model, self.now
        actions = {
            "settle": lambda: m.job_settle(who, job, now=now),
            "withdraw": lambda: m.job_withdraw(who, job, amount, now=now),
            "deposit": lambda: m.job_deposit(who, job, amount, now=now),
            "initiate0": lambda: m.job_revise_rate_initiate(who, job, 0, now=now),
            "initiate": lambda: m.job_revise_rate_initiate(who, job, amount * 10**6, now=now),
            "cancel": lambda: m.job_revise_rate_cancel(who, job, now=now),
            "finalize": lambda: m.job_revise_rate_finalize(who, job, now=now),
            "close": lambda: m.job_close(who, job, now=now),
        }
        self._try(actions[op])

    @invariant()
    def conserved(self) -> None:
        m = self.model
        assert sum(m.balances.values()) == m.total_supply == 2 * 10**9
        assert m.balance(MARKET) == sum(j.balance for j in m.jobs.values())
        assert set(m.locks) <= set(m.jobs)


TestModelConservation = ModelConservation.TestCase
TestModelConservation.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
