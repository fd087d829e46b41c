"""Stopping, closing and withdrawing from a job (:mod:`reef.node`'s job use cases), without a
chain.

The market is :class:`reef.testing.MarketModel` behind the few :class:`reef.chain.MarketClient`
methods the use case calls; its refusals reach the code as the client's
:class:`~reef.errors.ContractRevertError` with the contract's revert reason, as from a chain. The
session's clock and the chain's next block time are set by the test, so the cases a chain makes
hard to hit on purpose are hit here: the next block stamped before the unlock time the clock
has passed, a close that stays refused, a refusal that is not about the lock.

- a running job is refused with its rate and the command that stops it;
- ``stop`` without waiting revises the rate to 0 and says when a close works; a close before
  then is refused with that time and both commands, and sends nothing;
- ``stop --wait`` waits (through ``CloseWait.until``, else the injected sleep) and closes,
  retrying a second apart while the next block is not past the unlock time, and gives up with
  the same message; the refund is the deposit less the settlement the market computes; a stop
  after the lock has passed closes at once;
- ``deploy --stop-on-failure`` stops through the same :func:`reef.node.stop_job`;
- a job's pending revision is part of its summary; the logs endpoint says why there is none;
- a withdrawal says when the provider now stops the enclave, and warns when that is now (the
  CLI prints the warning, the dashboard's answer carries it); a deposit says the same, and the
  dashboard's answer to it keeps its keys; ``reef deploy``'s hint about a
  job left paying names the same per-hour figure as ``reef jobs``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from reef.chain import (
    Address,
    Amount,
    Job,
    JobId,
    RateLock,
    Revert,
    TxResult,
    format_amount,
    parse_amount,
    rate_per_hour,
)
from reef.errors import ContractRevertError, EnclaveError, MarketError, ServiceError
from reef.market import paid_until, settle, settlement_amount
from reef.node import (
    CLOSE_RETRIES,
    DEFAULT_SAFETY_MARGIN_S,
    WITHDRAW_MARGIN_S,
    CloseWait,
    Deposit,
    closable_at,
    close_job,
    deposit_to_job,
    enclave_log_lines,
    enclave_logs_url,
    format_time,
    format_wait,
    stop_and_close,
    stop_job,
    stops_at,
    summarize_job,
    withdraw_from_job,
)
from reef.testing import MarketModel

MARKET = "0x" + "aa" * 20
OWNER = Address("0x" + "11" * 20)
PROVIDER = Address("0x" + "22" * 20)
STRANGER = Address("0x" + "33" * 20)
LOCK_S = 300
START = 1_800_000_000
RATE = rate_per_hour(360_000)  # 0.36 rUSD per hour
DEPOSIT = 100_000


class FakeMarket:
    """The :class:`reef.chain.MarketClient` methods the job use cases call, over a model.

    ``block_lag`` is how many seconds before the session's clock the chain stamps its next
    block: a devnet's next block can be a second or more behind the wall clock.
    """

    def __init__(self, model: MarketModel, session: FakeSession, sender: Address) -> None:
        self.model = model
        self.session = session
        self.sender = sender
        self.block_lag = 0
        self.sent: list[str] = []
        self.cp_url: str | None = "http://cp.test"

    def token(self) -> FakeMarket:
        """The token client: its balance() is the model's."""
        return self

    def _block(self) -> int:
        return max(self.model.now, self.session.now() - self.block_lag)

    def _send(self, name: str, action: Callable[[int], Any]) -> Any:
        self.sent.append(name)
        try:
            return action(self._block())
        except MarketError as exc:  # the model's refusal is the contract's revert reason
            raise ContractRevertError(
                f"{name} reverted: {exc.message}", reason=exc.message
            ) from exc

    def balance(self, address: str) -> Amount:
        return self.model.balance(address)

    def lock_wait_time(self) -> int:
        return self.model.lock_wait_s

    def rate_lock(self, job: JobId) -> RateLock | None:
        return self.model.locks.get(job)

    def find_job(self, job: JobId) -> Job | None:
        return self.model.jobs.get(job)

    def job(self, job: JobId) -> Job:
        found = self.find_job(job)
        if found is None:
            raise MarketError(f"job {int(job, 16)} is not open")
        return found

    def provider(self, address: str) -> str | None:
        return self.cp_url

    def revise_rate_initiate(self, job: JobId, rate: int) -> None:
        self._send(
            "jobReviseRateInitiate",
            lambda now: self.model.job_revise_rate_initiate(self.sender, job, rate, now=now),
        )

    def revise_rate_cancel(self, job: JobId) -> None:
        self._send(
            "jobReviseRateCancel",
            lambda now: self.model.job_revise_rate_cancel(self.sender, job, now=now),
        )

    def close(self, job: JobId) -> None:
        self._send("jobClose", lambda now: self.model.job_close(self.sender, job, now=now))

    def withdraw(self, job: JobId, amount: int) -> TxResult[Any]:
        self._send(
            "jobWithdraw",
            lambda now: self.model.job_withdraw(self.sender, job, amount, now=now),
        )
        return TxResult(tx_hash="0x" + "ee" * 32, block_number=len(self.sent), gas_used=0)

    def deposit(self, job: JobId, amount: int) -> TxResult[Any]:
        self._send(
            "jobDeposit",
            lambda now: self.model.job_deposit(self.sender, job, amount, now=now),
        )
        return TxResult(tx_hash="0x" + "dd" * 32, block_number=len(self.sent), gas_used=0)


@dataclasses.dataclass
class FakeSession:
    """The session's clock (:meth:`reef.node.Session.now`) and sending account."""

    clock: int = START
    address: Address = OWNER
    safety_margin_s: int | None = 60
    sleeps: list[float] = dataclasses.field(default_factory=list)
    market_client: FakeMarket | None = None

    def market(self) -> FakeMarket:
        """The session's market client (:meth:`reef.node.Session.market`)."""
        assert self.market_client is not None
        return self.market_client

    def now(self) -> int:
        return self.clock

    def sleep(self, seconds: float) -> None:
        """The injected ``sleep``: time passes only when the code waits."""
        self.sleeps.append(seconds)
        self.clock += int(seconds)


@dataclasses.dataclass
class World:
    model: MarketModel
    session: FakeSession
    market: FakeMarket
    job: JobId

    @property
    def waiting(self) -> CloseWait:
        """``--wait``, sleeping on the session's clock."""
        return CloseWait(sleep=self.session.sleep)

    @property
    def current(self) -> Job:
        return self.model.jobs[self.job]


@pytest.fixture
def world() -> World:
    model = MarketModel(market=MARKET, token_owner=OWNER, lock_wait_s=LOCK_S)
    model.mint(OWNER, OWNER, 10 * DEPOSIT)
    model.approve(OWNER, MARKET, 10 * DEPOSIT)
    model.provider_add(PROVIDER, "http://cp.test")
    model.job_open(OWNER, "{}", PROVIDER, RATE, DEPOSIT, now=START - 10)
    job = model.job_open(OWNER, "{}", PROVIDER, RATE, DEPOSIT, now=START)
    session = FakeSession()
    session.market_client = FakeMarket(model, session, OWNER)
    return World(model, session, session.market_client, job)


def _label(world: World) -> str:
    return str(int(world.job, 16))


def test_a_running_job_is_refused_with_its_rate_and_the_stop_command(world: World) -> None:
    label = _label(world)
    for attempt in (
        lambda: closable_at(world.market, world.current),
        lambda: close_job(world.session, world.market, world.current),
    ):
        with pytest.raises(MarketError) as refused:
            attempt()
        assert refused.value.message == (
            f"job {label} is still running at 0.36 rUSD/h: stop it before closing it"
        )
        assert refused.value.hint == (
            f"`reef jobs stop {label}` stops its enclave at once; the market then lets you "
            f"close it 5 min 0 s later (`reef jobs close {label}`)"
        )
    assert world.market.sent == []


def test_stop_without_waiting_says_when_and_a_close_before_then_sends_nothing(
    world: World,
) -> None:
    label = _label(world)
    stopped = stop_and_close(world.session, world.market, world.current)
    assert (stopped.refund, stopped.now, stopped.close_at) == (None, START, START + LOCK_S)
    assert world.model.locks[world.job] == RateLock(unlock_time=START + LOCK_S, new_rate=0)
    assert world.market.sent == ["jobReviseRateInitiate"]
    assert world.session.sleeps == []

    world.session.clock += 100
    with pytest.raises(MarketError) as early:
        close_job(world.session, world.market, world.current)
    assert early.value.message == (
        f"job {label} is stopped, but the market lets you close it only from "
        f"{format_time(START + LOCK_S)} (in 3 min 20 s), when its rate lock ends"
    )
    assert early.value.hint == (
        f"run `reef jobs close {label}` then, or `reef jobs stop {label} --wait` to wait here"
    )
    assert world.market.sent == ["jobReviseRateInitiate"]  # refused before any transaction
    assert closable_at(world.market, world.current) == START + LOCK_S


def test_stop_wait_waits_through_the_callback_then_closes_for_the_refund(world: World) -> None:
    waited: list[int] = []

    def on_wait(unlock: int) -> None:
        waited.append(unlock)
        world.session.clock = unlock

    before = world.model.balance(OWNER)
    opened = world.current
    stopped = stop_and_close(
        world.session,
        world.market,
        opened,
        wait=CloseWait(until=on_wait, sleep=world.session.sleep),
    )
    assert waited == [START + LOCK_S]
    assert world.session.sleeps == []
    assert world.job not in world.model.jobs
    assert world.market.sent == ["jobReviseRateInitiate", "jobClose"]
    # the refund is the deposit less the lock wait at the old rate (settled as the market does)
    expected = DEPOSIT - settlement_amount(RATE, LOCK_S)
    assert stopped.refund == expected == settle(opened, START + LOCK_S).job.balance
    assert world.model.balance(OWNER) - before == expected


def test_stop_after_the_lock_has_passed_closes_without_being_asked_to_wait(world: World) -> None:
    first = stop_and_close(world.session, world.market, world.current)
    assert first.refund is None
    world.session.clock = first.close_at
    again = stop_and_close(world.session, world.market, world.current)
    assert again.close_at == first.close_at  # the pending stop is kept, not renewed
    assert again.refund == DEPOSIT - settlement_amount(RATE, LOCK_S)
    assert world.market.sent == ["jobReviseRateInitiate", "jobClose"]


def test_without_a_callback_the_wait_sleeps_on_the_sessions_clock(world: World) -> None:
    stop_job(world.market, world.current)
    world.session.clock += LOCK_S - 3
    refund = close_job(world.session, world.market, world.current, wait=world.waiting)
    assert world.session.sleeps == [1, 1, 1]
    assert refund == DEPOSIT - settlement_amount(RATE, LOCK_S)


def test_a_waiting_close_retries_while_the_next_block_is_before_the_unlock(world: World) -> None:
    stop_job(world.market, world.current)
    world.session.clock = START + LOCK_S  # the clock has passed the unlock time ...
    world.market.block_lag = 2  # ... but the chain's next block is stamped 2 s before it

    label = _label(world)
    with pytest.raises(MarketError, match=f"reef jobs stop {label} --wait"):
        close_job(world.session, world.market, world.current)
    assert world.job in world.model.jobs

    refund = close_job(world.session, world.market, world.current, wait=world.waiting)
    assert world.session.sleeps == [1, 1]
    assert world.market.sent.count("jobClose") == 4  # one refused without waiting, 3 waiting
    assert refund > 0
    assert world.job not in world.model.jobs


def test_a_close_that_stays_locked_gives_up_with_the_time_and_the_commands(world: World) -> None:
    stop_job(world.market, world.current)
    world.session.clock = START + LOCK_S
    world.market.block_lag = 10 * CLOSE_RETRIES  # the chain never catches up

    with pytest.raises(MarketError) as refused:
        close_job(world.session, world.market, world.current, wait=world.waiting)
    assert world.session.sleeps == [1] * CLOSE_RETRIES
    assert world.market.sent.count("jobClose") == CLOSE_RETRIES + 1
    assert isinstance(refused.value.__cause__, ContractRevertError)
    assert refused.value.__cause__.reason == Revert.REVISION_LOCKED
    assert "when its rate lock ends" in refused.value.message
    assert f"reef jobs close {_label(world)}" in (refused.value.hint or "")


def test_a_refusal_that_is_not_the_lock_is_not_retried(world: World) -> None:
    stop_job(world.market, world.current)
    world.session.clock = START + LOCK_S
    world.market.sender = STRANGER  # the market lets only the owner close
    with pytest.raises(ContractRevertError) as refused:
        close_job(world.session, world.market, world.current, wait=world.waiting)
    assert refused.value.reason == Revert.ONLY_OWNER_CLOSE
    assert world.session.sleeps == []


def test_stop_replaces_a_pending_revision_to_another_rate_and_keeps_one_to_zero(
    world: World,
) -> None:
    world.market.revise_rate_initiate(world.job, RATE * 2)
    world.session.clock += 50
    unlock = stop_job(world.market, world.current)
    assert unlock == START + 50 + LOCK_S
    assert world.model.locks[world.job].new_rate == 0
    world.session.clock += 50
    assert stop_job(world.market, world.current) == unlock
    assert world.market.sent == [
        "jobReviseRateInitiate",
        "jobReviseRateCancel",
        "jobReviseRateInitiate",
    ]


def test_a_job_at_rate_zero_closes_at_once(world: World) -> None:
    world.model.jobs[world.job] = dataclasses.replace(world.current, rate=0)
    assert stop_job(world.market, world.current) == 0
    stopped = stop_and_close(world.session, world.market, world.current)
    assert stopped.refund == DEPOSIT
    assert world.market.sent == ["jobClose"]


def test_the_summary_carries_the_pending_revision(world: World) -> None:
    world.market.cp_url = None  # no provider to ask: the status says so, the money still shows
    assert summarize_job(world.session, world.market, world.current).pending_rate is None
    stop_job(world.market, world.current)
    summary = summarize_job(world.session, world.market, world.current)
    assert summary.pending_rate == RateLock(unlock_time=START + LOCK_S, new_rate=0)
    assert summary.status.state == "unknown (the provider is not registered)"


def test_deploy_stop_on_failure_stops_through_stop_job(world: World) -> None:
    from reef.node._deploy import _after_failure

    label = _label(world)
    failed = EnclaveError("the enclave crashed")
    _after_failure(failed, world.market, world.job, rate=RATE, stop=True)
    assert world.model.locks[world.job] == RateLock(unlock_time=START + LOCK_S, new_rate=0)
    assert failed.hint is not None
    assert failed.hint.startswith(f"stopped job {label} (--stop-on-failure): ")
    assert failed.hint.endswith(
        f"`reef jobs close {label}` refunds the rest from {format_time(START + LOCK_S)}"
    )

    world.market.sender = STRANGER  # the stop itself is refused: the hint says to run it
    again = EnclaveError("the enclave crashed")
    other = world.model.job_open(OWNER, "{}", PROVIDER, RATE, DEPOSIT, now=START + 1)
    _after_failure(again, world.market, other, rate=RATE, stop=True)
    assert again.hint is not None
    assert "--stop-on-failure could not stop it (" in again.hint
    assert str(Revert.ONLY_OWNER_REVISE) in again.hint
    assert again.hint.endswith(f"run `reef jobs stop {int(other, 16)}`")


def test_deploys_hint_names_the_per_hour_figure_reef_jobs_names(world: World) -> None:
    """A rate whose hour does not come out even: rounded up (what settling an hour at once would
    charge) it would read 0.360001 rUSD/h in ``reef deploy``'s hint and 0.36 in ``reef jobs``."""
    from reef.node._deploy import _after_failure

    odd = RATE + 1
    assert settlement_amount(odd, 3600) == 360_001
    job = world.model.job_open(OWNER, "{}", PROVIDER, odd, DEPOSIT, now=START)
    label = str(int(job, 16))
    with pytest.raises(MarketError) as running:
        closable_at(world.market, world.model.jobs[job])
    assert f"job {label} is still running at 0.36 rUSD/h: " in running.value.message

    failed = EnclaveError("the enclave crashed")
    _after_failure(failed, world.market, job, rate=odd, stop=False)
    assert failed.hint == (
        f"job {label} is still open and paying 0.36 rUSD/h (its provider keeps relaunching it): "
        f"stop it with `reef jobs stop {label}` (or deploy with --stop-on-failure)"
    )
    assert world.market.sent == []


def _left_after(taken: int) -> int:
    """Seconds the job's money lasts after ``taken`` is withdrawn at START (nothing settled yet:
    the job was opened at START), at 360_000 base units an hour."""
    return (DEPOSIT - taken) * 3600 // 360_000


def test_a_withdrawal_says_when_the_enclave_now_stops(world: World) -> None:
    before = world.model.balance(OWNER)
    done = withdraw_from_job(world.session, world.market, world.current, Amount(10_000))
    assert (done.amount, done.now, done.margin_s) == (10_000, START, 60)
    assert done.job == world.current  # the job as the chain has it after the withdrawal
    assert done.job.balance == DEPOSIT - 10_000
    assert done.tx.tx_hash == "0x" + "ee" * 32
    assert done.stops_at == START + _left_after(10_000) - 60 == START + 840
    assert paid_until(done.job) == START + _left_after(10_000)  # the market's own sum
    assert (done.stopping_now, done.warning) == (False, "")
    assert world.model.balance(OWNER) - before == 10_000
    assert world.market.sent == ["jobWithdraw"]


def test_taking_all_the_reserve_allows_leaves_the_notice_reserve(world: World) -> None:
    # What may be taken is settled WITHDRAW_MARGIN_S ahead: 5 s of the rate stay too.
    limit = DEPOSIT - settlement_amount(RATE, WITHDRAW_MARGIN_S) - settlement_amount(RATE, LOCK_S)
    done = withdraw_from_job(world.session, world.market, world.current, None)
    assert done.amount == limit == 69_500
    assert done.job.balance == DEPOSIT - limit
    assert done.stops_at == START + LOCK_S + WITHDRAW_MARGIN_S - 60
    assert not done.stopping_now  # a 60 s margin is inside the 300 s reserve

    with pytest.raises(MarketError) as nothing:
        withdraw_from_job(world.session, world.market, world.current, None)
    assert nothing.value.message == (
        "nothing can be withdrawn now: the rest is the notice reserve or already spent"
    )
    assert world.market.sent == ["jobWithdraw"]


def test_a_withdrawal_that_leaves_less_than_the_margin_warns_that_the_enclave_stops_now(
    world: World,
) -> None:
    label = _label(world)
    world.session.safety_margin_s = None  # not the local network: the provider's default
    some = withdraw_from_job(world.session, world.market, world.current, Amount(60_000))
    assert some.margin_s == DEFAULT_SAFETY_MARGIN_S == 300
    assert some.stops_at == START + _left_after(60_000) - 300 == START + 100
    assert (some.stopping_now, some.warning) == (False, "")

    # A margin longer than the notice reserve lasts: taking all that may be taken leaves less
    # than the margin's worth, and the provider stops the enclave at once.
    world.session.safety_margin_s = 400
    world.session.clock += 50
    rest = withdraw_from_job(world.session, world.market, world.current, None)
    assert rest.now == START + 50
    assert rest.job.balance == settlement_amount(RATE, LOCK_S + WITHDRAW_MARGIN_S)
    assert rest.stops_at == START + 50 + LOCK_S + WITHDRAW_MARGIN_S - 400 == START - 45
    assert rest.stopping_now
    assert rest.warning == (
        "what is left pays for less than the provider's 400 s safety margin: it stops the "
        f"enclave now (deposit to keep it, or `reef jobs stop {label}` to get the rest back)"
    )


def test_a_deposit_says_until_when_the_enclave_now_runs_as_a_withdrawal_does(
    world: World,
) -> None:
    before = world.model.balance(OWNER)
    world.session.clock += 100
    done = deposit_to_job(world.session, world.market, world.job, Amount(36_000))
    assert isinstance(done, Deposit)
    assert (done.amount, done.now, done.margin_s) == (36_000, START + 100, 60)
    assert done.job == world.current  # the job as the chain has it after the deposit
    assert done.job.balance == DEPOSIT + 36_000
    assert done.tx_hash == done.tx.tx_hash == "0x" + "dd" * 32
    # 0.36 rUSD/h: the 0.036 added pays for 360 s more than the deposit did.
    assert done.stops_at == START + _left_after(0) + 360 - 60
    assert done.stops_at == stops_at(world.current, 60)  # what `reef jobs deposit` printed
    assert (done.stopping_now, done.warning) == (False, "")
    assert before - world.model.balance(OWNER) == 36_000
    assert world.market.sent == ["jobDeposit"]

    # Added to a job whose money lasts less than the margin, a little still leaves the enclave
    # stopping now: the deposit says so as a withdrawal would.
    world.session.clock = done.stops_at + 10
    short = deposit_to_job(world.session, world.market, world.job, Amount(1))
    assert short.stopping_now
    assert "stops the enclave now" in short.warning


def test_the_dashboards_deposit_answer_says_when_the_enclave_stops_as_a_withdrawal_does(
    world: World,
) -> None:
    from reef.web._manage import deposit

    session: Any = world.session
    answer = deposit(session, world.job, "0.01")
    assert answer == {
        "job_id": world.job,
        "deposited": "0.01",
        "tx_hash": "0x" + "dd" * 32,
        "stops_at": stops_at(world.current, 60),  # the job as the deposit left it
        "stopping_now": False,
        "warning": None,
    }


def test_more_than_the_limit_is_refused_before_any_transaction(world: World) -> None:
    with pytest.raises(MarketError) as refused:
        withdraw_from_job(world.session, world.market, world.current, Amount(69_501))
    assert refused.value.message == (
        f"at most {format_amount(Amount(69_500))} rUSD can be withdrawn now (the notice reserve "
        f"of {LOCK_S} s at the job's rate stays in the job)"
    )
    assert refused.value.hint == "withdraw less, or stop the job to get everything back"
    assert world.market.sent == []


def test_the_dashboards_withdraw_answer_carries_when_the_enclave_stops(world: World) -> None:
    from reef.web._manage import withdraw

    label = _label(world)
    session: Any = world.session
    some = withdraw(session, world.job, "0.01")
    assert some == {
        "job_id": world.job,
        "withdrawn": "0.01",
        "tx_hash": "0x" + "ee" * 32,
        "stops_at": START + _left_after(10_000) - 60,
        "stopping_now": False,
        "warning": None,
    }
    world.session.safety_margin_s = 600  # more than what the notice reserve pays for
    rest = withdraw(session, world.job, None)
    assert parse_amount(rest["withdrawn"]) == DEPOSIT - 10_000 - 30_500
    assert rest["stops_at"] == START + LOCK_S + WITHDRAW_MARGIN_S - 600
    assert rest["stopping_now"] is True
    assert rest["warning"] == (
        "what is left pays for less than the provider's 600 s safety margin: it stops the "
        f"enclave now (deposit to keep it, or `reef jobs stop {label}` to get the rest back)"
    )


@pytest.mark.parametrize(
    ("answer", "error", "words"),
    [
        (httpx.Response(400, json={"detail": "no enclave"}), ServiceError, "no running enclave"),
        (httpx.Response(200, json={"ip": "1.2.3.4", "endpoints": {}}), MarketError, "not a debug"),
    ],
)
def test_the_logs_endpoint_says_why_there_is_none(
    world: World, answer: httpx.Response, error: type[Exception], words: str
) -> None:
    transport = httpx.MockTransport(lambda request: answer)
    with pytest.raises(error, match=words):
        enclave_logs_url(world.market, world.current, transport=transport)


def test_the_logs_endpoint_is_the_enclaves_logs_url(world: World) -> None:
    seen: list[httpx.URL] = []

    def cp(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={"endpoints": {"logs": "http://enclave.test/logs"}})

    url = enclave_logs_url(world.market, world.current, transport=httpx.MockTransport(cp))
    assert url == "http://enclave.test/logs"
    assert [(u.path, u.params["id"]) for u in seen] == [("/ip", world.job)]
    world.market.cp_url = None
    with pytest.raises(MarketError, match="is not registered"):
        enclave_logs_url(world.market, world.current)


def test_the_console_is_the_data_of_the_log_stream_from_its_first_line() -> None:
    seen: list[httpx.URL] = []

    def enclave(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        events = "id: 0\ndata: booting\n\nid: 1\ndata:  two spaces\n\n: keep-alive\n\n"
        return httpx.Response(200, text=events, headers={"content-type": "text/event-stream"})

    lines = enclave_log_lines("http://enclave.test/logs", transport=httpx.MockTransport(enclave))
    assert list(lines) == ["booting", " two spaces"]
    assert [(u.path, u.params["start_from"]) for u in seen] == [("/logs", "0")]


def test_an_unreadable_console_says_where_it_was() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    lines = enclave_log_lines("http://enclave.test/logs", transport=httpx.MockTransport(refused))
    with pytest.raises(
        ServiceError, match=r"cannot read the enclave's logs at http://enclave\.test/logs"
    ):
        list(lines)


def test_waits_read_as_minutes_and_seconds() -> None:
    assert [format_wait(s) for s in (-5, 0, 12, 60, 245, 3600)] == [
        "0 s",
        "0 s",
        "12 s",
        "1 min 0 s",
        "4 min 5 s",
        "60 min 0 s",
    ]
