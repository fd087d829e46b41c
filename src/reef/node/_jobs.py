"""What a job's owner does with an open job, for every front end (``reef jobs``, the dashboard).

- :func:`open_jobs`: the open jobs (of an owner), from the market's ``JobOpened`` events;
- :func:`job_status`: what the job's provider says of it (its control plane's ``/job``),
  summed up as one :class:`JobStatus`;
- :func:`summarize_job`: one open job settled up to now, when its enclave stops and what its
  provider says, as one :class:`JobSummary` (``reef jobs show`` and the dashboard format it);
  :func:`summarize_jobs` does it for many at one instant, asking the chain for what they share
  once (``reef jobs list``);
- :func:`stop_margin_s`, :func:`stops_at`, :func:`jobs_totals`: how long before the money
  runs out the provider stops an enclave (and so when), and what some jobs hold and spend;
- :func:`find_open_job`, :func:`owned_job`: the open job, refused when it is not open (or,
  for the latter, unless the session's account owns it);
- :func:`deposit_to_job`: add money to a job from the session's account (a :class:`Deposit`:
  what was added, and until when the provider now runs the enclave);
- :func:`withdraw_limit`, :func:`withdraw_from_job`: how much the notice reserve lets the owner
  take back now, and taking it (a :class:`Withdrawal`: what was taken, and when the provider
  now stops the enclave, with the warning to show when that is now);
- :func:`stop_job`: revise the rate to 0 (the provider stops the enclave at once) and say when
  the market lets the job be closed;
- :func:`closable_at`, :func:`close_job`: when the market lets the owner close a stopped job,
  and closing it for the refund (refused with the time and the command when it is too early, or
  waiting for that time); :func:`stop_and_close` is ``reef jobs stop``: stop, then (when the
  lock has passed, or on request after waiting for it) close;
- :func:`enclave_logs_url`, :func:`enclave_log_lines`: where a debug job's enclave streams its
  console, and the console's lines read from there (the tenant's text, through the provider:
  both may be hostile, so a line is bounded, its terminal controls are written out, and without
  ``follow`` the reading ends even if the stream does not);
- :func:`format_time`, :func:`format_wait`: the instants and waits these messages name, as the
  front ends print them too.

Each is a short composition of :class:`reef.chain.MarketClient` calls and the billing rules of
:mod:`reef.market`; the front ends only format what these return. Time is read through the
session (:meth:`reef.node.Session.now`, never before the chain's last block) and waited through
an injected ``sleep`` (:class:`CloseWait`), so the close rules are tested against
:class:`reef.testing.MarketModel` without a chain.

One module (about 650 lines): the owner's job use cases share the session, the market client
and the close rules, and each is a short composition of them.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from reef._clock import format_time
from reef.chain import Address, Amount, Job, JobId, amount_per_hour, format_amount, job_index
from reef.encoding import terminal_text
from reef.errors import ContractRevertError, MarketError, ServiceError

if TYPE_CHECKING:
    import httpx

    from reef.chain import MarketClient, MarketEvent, MarketReader, RateLock, TxResult
    from reef.market import JobMetadata
    from reef.node._session import Session

__all__ = [
    "CLOSE_RETRIES",
    "CloseWait",
    "DEFAULT_SAFETY_MARGIN_S",
    "Deposit",
    "JobStatus",
    "JobSummary",
    "LOG_HISTORY_S",
    "MAX_LOG_LINE",
    "StopResult",
    "WITHDRAW_MARGIN_S",
    "Withdrawal",
    "closable_at",
    "close_job",
    "deposit_to_job",
    "enclave_log_lines",
    "enclave_logs_url",
    "find_open_job",
    "format_time",
    "format_wait",
    "job_status",
    "jobs_totals",
    "open_jobs",
    "owned_job",
    "stop_and_close",
    "stop_job",
    "stop_margin_s",
    "stops_at",
    "summarize_job",
    "summarize_jobs",
    "withdraw_from_job",
    "withdraw_limit",
]

WITHDRAW_MARGIN_S = 5
"""Seconds a withdrawal takes to be mined, kept out of what may be withdrawn."""

DEFAULT_SAFETY_MARGIN_S = 300
"""The provider's default safety margin, for a network this home did not start."""

CLOSE_RETRIES = 30
"""How many times, a second apart, a waiting close (:class:`CloseWait`) is tried again while the
market still refuses it as locked: the chain's next block can be stamped before the unlock time
the wall clock has passed (a devnet stamps a block a second after the last when its clock has
not moved on)."""


def format_wait(seconds: int) -> str:
    """A wait as people read it: ``4 min 5 s``, ``12 s`` (never negative)."""
    minutes, rest = divmod(max(0, seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def stop_margin_s(session: Session) -> int:
    """How long before a job's money runs out its provider stops the enclave: the local
    network's safety margin, else the provider's default."""
    margin = session.safety_margin_s
    return DEFAULT_SAFETY_MARGIN_S if margin is None else margin


def open_jobs(
    session: Session, market: MarketClient | MarketReader, owner: Address | None = None
) -> list[Job]:
    """Open jobs (``owner``'s when given), oldest first: the market's ``JobOpened`` logs (only
    ``owner``'s asked for), then each job as the chain holds it now, in one round trip."""
    from reef.chain import JobOpened
    from reef.chain._reader import address_topic

    topics = [] if owner is None else [None, address_topic(owner)]
    ids = [
        e.job
        for e in market.events_of(JobOpened, session.start_block, topics=topics)
        if isinstance(e, JobOpened) and (owner is None or e.owner == owner)
    ]
    unique = list(dict.fromkeys(ids))
    return [job for job in market.find_jobs(unique) if job is not None]


@dataclass(frozen=True)
class JobStatus:
    """What a job's provider says of it.

    ``state`` sums it up: ``ended: <why>`` once the provider will not run the job, else the
    enclave's state (``launching`` before there is one, ``retrying`` while the last attempt
    failed), or why the provider could not be asked.
    """

    state: str
    answered: bool = False
    """Whether the provider knows the job (else ``state`` says why there is nothing more)."""
    phase: str = ""
    last_error: str = ""
    reason: str = ""
    enclave_id: str = ""
    endpoints: Mapping[str, Any] = field(default_factory=dict)
    restarts: int = 0
    last_restart: str = ""

    @property
    def endpoint(self) -> str:
        """The enclave's first app port (lowest number), as a URL; empty when none."""
        ports = self.endpoints.get("ports") or {}
        order = sorted(ports, key=lambda p: (int(p), p) if str(p).isdigit() else (1 << 16, p))
        return str(ports[order[0]]) if order else ""


def job_status(
    market: MarketClient | MarketReader, job: Job, *, timeout_s: float = 3.0
) -> JobStatus:
    """Ask ``job``'s provider (its registered control plane) how the job stands."""
    return _status_at(market.provider(job.provider), job, timeout_s=timeout_s)


def _status_at(cp: str | None, job: Job, *, timeout_s: float = 3.0) -> JobStatus:
    """:func:`job_status`, the provider's control-plane URL ``cp`` read already (``None``: the
    provider is not registered)."""
    from reef.market import ControlPlaneClient

    if cp is None:
        return JobStatus("unknown (the provider is not registered)")
    try:
        view = ControlPlaneClient(cp, timeout=timeout_s).job(job.id)
    except ServiceError:
        return JobStatus(
            f"unknown (the provider's control plane at {terminal_text(cp)} cannot be reached)"
        )
    if view is None:
        return JobStatus("not seen by the provider yet")
    # The provider's words, printed on the owner's terminal: each written out (reef.encoding.terminal_text).
    enclave = view.get("enclave") or {}
    if not isinstance(enclave, Mapping):
        enclave = {}
    phase = terminal_text(str(view.get("phase") or ""))
    last_error = terminal_text(str(view.get("last_error") or ""))
    reason = terminal_text(str(view.get("reason") or ""))
    if phase == "done":
        state = f"ended: {reason or 'no reason given'}"
    elif enclave:
        state = terminal_text(str(enclave.get("state", "unknown")))
    else:
        state = "retrying" if last_error else "launching"
    endpoints = enclave.get("endpoints") or {}
    restarts = view.get("restarts") or 0
    return JobStatus(
        state,
        answered=True,
        phase=phase,
        last_error=last_error,
        reason=reason,
        enclave_id=terminal_text(str(enclave.get("id") or "")),
        endpoints=dict(endpoints) if isinstance(endpoints, Mapping) else {},
        restarts=restarts if isinstance(restarts, int) else 0,
        last_restart=terminal_text(str(view.get("last_restart") or "")),
    )


def stops_at(job: Job, margin_s: int) -> int | None:
    """When the provider stops ``job``'s enclave: ``margin_s`` before its money runs out
    (``None`` at rate 0, when it never does)."""
    from reef.market import paid_until

    until = paid_until(job)
    return None if until is None else until - margin_s


def jobs_totals(jobs: Iterable[Job], now: int) -> tuple[Amount, Amount]:
    """What ``jobs`` hold after settling up to ``now``, and what they spend per hour (base
    units both)."""
    from reef.market import settle

    listed = list(jobs)
    held = sum(settle(job, now).job.balance for job in listed)
    return Amount(held), amount_per_hour(sum(job.rate for job in listed))


@dataclass(frozen=True, kw_only=True)
class JobSummary:
    """One open job as its owner sees it now: money from the chain, the enclave from its
    provider (what :func:`summarize_job` returns)."""

    job: Job
    now: int
    """The chain's time it is settled at."""
    balance: Amount
    """The balance after settling up to now (what is left to spend)."""
    metadata: JobMetadata | None
    """The parsed metadata; ``None`` when it is not reef's (Oyster's) JSON."""
    paid_until: int | None
    """When the money runs out (``None`` at rate 0)."""
    stops_at: int | None
    """When the provider stops the enclave: its safety margin before the money runs out."""
    status: JobStatus
    pending_rate: RateLock | None = None
    """The pending rate revision (a stop is one to rate 0), if any."""

    @property
    def time_left_s(self) -> int | None:
        """Seconds until the provider stops the enclave (``None`` at rate 0)."""
        return None if self.stops_at is None else max(0, self.stops_at - self.now)


def summarize_job(session: Session, market: MarketClient | MarketReader, job: Job) -> JobSummary:
    """``job`` settled up to now, when its enclave stops (:func:`stop_margin_s` before the
    money runs out), its pending rate revision and what its provider says of it."""
    return _summary(
        job,
        now=session.now(),
        margin_s=stop_margin_s(session),
        cp=market.provider(job.provider),
        lock=market.rate_lock(job.id),
    )


def summarize_jobs(
    session: Session, market: MarketClient | MarketReader, jobs: Sequence[Job]
) -> list[JobSummary]:
    """:func:`summarize_job` of each of ``jobs``, settled at one instant: the chain's time is
    read once, each provider's control-plane URL once, and the pending rate revisions together
    (:meth:`MarketClient.rate_locks <reef.chain.MarketClient.rate_locks>`, one round trip),
    rather than three requests to the chain per job."""
    if not jobs:
        return []
    now = session.now()
    margin = stop_margin_s(session)
    providers = list(dict.fromkeys(job.provider for job in jobs))
    urls = dict(zip(providers, market.providers(providers), strict=True))
    locks = market.rate_locks([job.id for job in jobs])
    return [
        _summary(job, now=now, margin_s=margin, cp=urls[job.provider], lock=lock)
        for job, lock in zip(jobs, locks, strict=True)
    ]


def _summary(
    job: Job, *, now: int, margin_s: int, cp: str | None, lock: RateLock | None
) -> JobSummary:
    """``job`` at ``now``, its provider's control plane at ``cp`` (asked here) and its pending
    rate revision ``lock`` read already."""
    from reef.errors import ReefError
    from reef.market import JobMetadata, paid_until, settle

    try:
        metadata: JobMetadata | None = JobMetadata.parse(job.metadata)
    except ReefError:
        metadata = None
    return JobSummary(
        job=job,
        now=now,
        balance=settle(job, now).job.balance,
        metadata=metadata,
        paid_until=paid_until(job),
        stops_at=stops_at(job, margin_s),
        status=_status_at(cp, job),
        pending_rate=lock,
    )


def find_open_job(session: Session, market: MarketClient | MarketReader, job: JobId) -> Job:
    """The open job ``job``: :meth:`MarketClient.job <reef.chain.MarketClient.job>`, which names
    it as users see it. It takes the session as :func:`owned_job` does, so that a front end picks
    either lookup with the same arguments.

    Raises:
        MarketError: it is not open (never opened, or closed: the market deletes closed jobs).
    """
    return market.job(job)


def owned_job(session: Session, market: MarketClient, job: JobId) -> Job:
    """The open job ``job``, which the session's account owns.

    Raises:
        MarketError: it is not open, or the session's account does not own it.
    """
    found = find_open_job(session, market, job)
    if found.owner != session.address:
        raise MarketError(
            f"job {job_index(found.id)} belongs to {found.owner}, not to {session.address}",
            hint="use the owner's key (--key FILE)",
        )
    return found


def withdraw_limit(session: Session, market: MarketClient, job: Job) -> Amount:
    """What the owner may withdraw from ``job`` in a transaction sent now (the notice reserve
    stays; the seconds until it is mined are left out)."""
    from reef.market import withdrawable

    return withdrawable(job, session.now() + WITHDRAW_MARGIN_S, market.lock_wait_time())


@dataclass(frozen=True, kw_only=True)
class _Moved:
    """What moving money into or out of ``job`` did (:class:`Deposit`, :class:`Withdrawal`):
    the amount, the transaction, and when the provider now stops the job's enclave, which is
    what moving a job's money changes."""

    job: Job
    """The job after the transaction, as the chain has it (settled by it)."""
    amount: Amount
    """What was moved (base units)."""
    tx: TxResult[MarketEvent]
    now: int
    """The session's time once the transaction was mined."""
    margin_s: int
    """How long before the money runs out the provider stops the enclave (:func:`stop_margin_s`)."""
    stops_at: int | None
    """When the provider stops the enclave now (:func:`stops_at`; ``None`` at rate 0)."""

    @classmethod
    def mined(
        cls,
        session: Session,
        market: MarketClient,
        job: JobId,
        amount: Amount,
        tx: TxResult[MarketEvent],
    ) -> Self:
        """The record of ``tx``, mined, which moved ``amount`` into or out of ``job`` (read
        again here, as the transaction left it)."""
        after = market.job(job)
        margin = stop_margin_s(session)
        return cls(
            job=after,
            amount=amount,
            tx=tx,
            now=session.now(),
            margin_s=margin,
            stops_at=stops_at(after, margin),
        )

    @property
    def tx_hash(self) -> str:
        """The transaction's hash, as the front ends print it."""
        return self.tx.tx_hash

    @property
    def stopping_now(self) -> bool:
        """Whether what is left pays for less than the provider's safety margin, so that the
        provider stops the enclave now."""
        return self.stops_at is not None and self.stops_at <= self.now

    @property
    def warning(self) -> str:
        """What to tell the owner when :attr:`stopping_now` (empty otherwise): why the enclave
        stops, and the two ways out."""
        if not self.stopping_now:
            return ""
        return (
            f"what is left pays for less than the provider's {self.margin_s} s safety margin: it "
            f"stops the enclave now (deposit to keep it, or `reef jobs stop "
            f"{job_index(self.job.id)}` to get the rest back)"
        )


@dataclass(frozen=True, kw_only=True)
class Deposit(_Moved):
    """What :func:`deposit_to_job` did: added ``amount`` to ``job`` in ``tx``, and when the
    provider now stops the job's enclave (the more it holds, the later)."""


@dataclass(frozen=True, kw_only=True)
class Withdrawal(_Moved):
    """What :func:`withdraw_from_job` did: took ``amount`` back from ``job`` in ``tx``, and when
    the provider now stops the job's enclave (the less is left, the sooner)."""


def deposit_to_job(session: Session, market: MarketClient, job: JobId, amount: Amount) -> Deposit:
    """Add ``amount`` (base units) to the open job ``job`` from the session's account (anyone
    may fund any job; its enclave then runs longer); return what was added, the transaction,
    and until when the provider now runs the enclave (:func:`stop_margin_s` before the money
    runs out).

    Raises:
        MarketError: ``amount`` is 0 or more than the account holds, or the job is not open.
    """
    if amount == 0:
        raise MarketError("the amount must be more than 0")
    find_open_job(session, market, job)
    have = market.token().balance(session.address)
    if have < amount:
        raise MarketError(f"insufficient balance: {session.address} has {format_amount(have)} rUSD")
    return Deposit.mined(session, market, job, amount, market.deposit(job, amount))


def withdraw_from_job(
    session: Session, market: MarketClient, job: Job, amount: Amount | None
) -> Withdrawal:
    """Take ``amount`` (base units; all that the notice reserve allows when ``None``) back from
    ``job`` (owner only); return what was taken, the transaction, and when the provider now
    stops the enclave (:func:`stop_margin_s` before what is left runs out).

    Raises:
        MarketError: nothing can be taken now, or more than :func:`withdraw_limit`.
    """
    limit = withdraw_limit(session, market, job)
    value = limit if amount is None else amount
    if value == 0:
        raise MarketError(
            "nothing can be withdrawn now: the rest is the notice reserve or already spent"
        )
    if value > limit:
        raise MarketError(
            f"at most {format_amount(limit)} rUSD can be withdrawn now (the notice reserve "
            f"of {market.lock_wait_time()} s at the job's rate stays in the job)",
            hint="withdraw less, or stop the job to get everything back",
        )
    return Withdrawal.mined(session, market, job.id, value, market.withdraw(job.id, value))


def stop_job(market: MarketClient, job: Job) -> int:
    """Revise ``job``'s rate to 0 (its provider stops the enclave at once); return the unix time
    from which the market lets it be closed (0: at once).

    A pending revision to another rate is cancelled first; a pending revision to 0 is kept.
    """
    if job.rate == 0:
        return 0
    lock = market.rate_lock(job.id)
    if lock is None or lock.new_rate != 0:
        if lock is not None:
            market.revise_rate_cancel(job.id)
        market.revise_rate_initiate(job.id, 0)
        lock = market.rate_lock(job.id)
    return 0 if lock is None else lock.unlock_time


def closable_at(market: MarketClient, job: Job) -> int:
    """When the market lets the owner close ``job`` (unix seconds; now or earlier: at once).

    Raises:
        MarketError: the job still pays its provider (no stop is pending): it must be stopped
            first, and the message says how.
    """
    if job.rate == 0:
        return 0
    lock = market.rate_lock(job.id)
    if lock is None or lock.new_rate != 0:
        label = job_index(job.id)
        raise MarketError(
            f"job {label} is still running at {format_amount(amount_per_hour(job.rate))} rUSD/h: "
            "stop it before closing it",
            hint=f"`reef jobs stop {label}` stops its enclave at once; the market then lets you "
            f"close it {format_wait(market.lock_wait_time())} later (`reef jobs close {label}`)",
        )
    return lock.unlock_time


def _too_early(job: JobId, unlock: int, now: int) -> MarketError:
    label = job_index(job)
    return MarketError(
        f"job {label} is stopped, but the market lets you close it only from "
        f"{format_time(unlock)} (in {format_wait(unlock - now)}), when its rate lock ends",
        hint=f"run `reef jobs close {label}` then, or `reef jobs stop {label} --wait` to wait here",
    )


def _still_locked(exc: ContractRevertError) -> bool:
    """Whether the market refused a close because the job's rate lock has not ended yet."""
    from reef.chain import Revert

    return exc.reason in (Revert.REVISION_LOCKED, Revert.CLOSE_NEEDS_NOTICE)


@dataclass(frozen=True, kw_only=True)
class CloseWait:
    """How a close waits for the market's rate lock to end (``reef jobs stop --wait``)."""

    until: Callable[[int], None] | None = None
    """Called with the unlock time when the lock has not ended yet, to wait until then (a
    progress bar); by default ``sleep`` until the session's clock reaches it."""
    sleep: Callable[[float], None] = time.sleep
    retries: int = CLOSE_RETRIES
    """How many times, a second apart, the close is tried again while refused as locked."""


def close_job(
    session: Session, market: MarketClient, job: Job, *, wait: CloseWait | None = None
) -> Amount:
    """Close the stopped job ``job`` (owner only) and return the refund: what the owner's token
    balance gained (the rest of the deposit after the last settlement).

    Without ``wait`` a close before the rate lock ends is refused with the time it ends. With
    it, the close first waits for that time (:attr:`CloseWait.until`), then is tried again a
    second apart (:attr:`CloseWait.retries` times) while the market still refuses it as locked.

    Raises:
        MarketError: the job still pays its provider (:func:`closable_at`), or its rate lock has
            not ended (the message says when, and the commands to run).
        ContractRevertError: the market refused the close for another reason.
    """
    unlock = closable_at(market, job)
    now = session.now()
    if unlock > now:
        if wait is None:
            raise _too_early(job.id, unlock, now)
        if wait.until is not None:
            wait.until(unlock)
        while (left := unlock - session.now()) > 0:
            wait.sleep(min(left, 1))
    waiting = wait or CloseWait(retries=0)
    tries = waiting.retries
    while True:
        try:
            return _close_for_refund(market, job.id, session.address)
        except ContractRevertError as exc:
            if not _still_locked(exc):
                raise
            if tries == 0:
                raise _too_early(job.id, unlock, session.now()) from exc
        tries -= 1
        waiting.sleep(1)  # the next block's timestamp has not reached the unlock time yet


def _close_for_refund(market: MarketClient, job: JobId, owner: Address) -> Amount:
    """Close ``job`` and return the refund (the owner's token balance change)."""
    before = market.token().balance(owner)
    market.close(job)
    return Amount(market.token().balance(owner) - before)


@dataclass(frozen=True, kw_only=True)
class StopResult:
    """What :func:`stop_and_close` did: stopped ``job``, and closed it when ``refund`` is set."""

    job: Job
    now: int
    """The session's time when the job was stopped."""
    close_at: int
    """The unix time from which the market lets the job be closed (0: at once)."""
    refund: Amount | None = None
    """What closing gave back to the owner; ``None`` while the job is stopping, not closed."""


def stop_and_close(
    session: Session, market: MarketClient, job: Job, *, wait: CloseWait | None = None
) -> StopResult:
    """``reef jobs stop``: revise ``job``'s rate to 0 (:func:`stop_job`; its provider stops the
    enclave at once), then close it for the refund (:func:`close_job`, retrying as ``wait``
    says, by default as :class:`CloseWait` does) when the market already lets it be closed, or,
    with ``wait``, after waiting for that.

    Raises:
        ReefError: a transaction failed, or the close stayed refused (:func:`close_job`).
    """
    unlock = stop_job(market, job)
    now = session.now()
    if unlock > now and wait is None:
        return StopResult(job=job, now=now, close_at=unlock)
    refund = close_job(session, market, job, wait=wait or CloseWait())
    return StopResult(job=job, now=now, close_at=unlock, refund=refund)


MAX_LOG_LINE = 65536
"""The longest console line shown, in characters: the rest of a longer one is skipped (a stream
that never sends a newline would otherwise be held in memory whole). It is the console's byte
bound: lines are printed as they come, never held, so only a line could fill memory."""
LOG_HISTORY_S = 30.0
"""How long :func:`enclave_log_lines` reads without ``follow``, at most, its head included: a
console that never pauses for a second would otherwise keep it reading for ever."""
_LOG_HEAD_S = 10.0
"""How long the console's server may take to answer its head, with ``follow`` or without (a
provider that trickles it a byte at a time is no slower at any single read)."""


def _console_line(line: str, *, cut: bool = False) -> Iterator[str]:
    """A server-sent event line's console line, if it is one (``data:``), shown safely."""
    line = line.removesuffix("\r")
    if line.startswith("data:"):  # server-sent events: the rest is one console line
        yield terminal_text(line[5:].removeprefix(" ")) + (" … (line cut)" if cut else "")


def _console_lines(pieces: Iterable[str]) -> Iterator[str]:
    """The console lines in a stream's text ``pieces``, each at most :data:`MAX_LOG_LINE`
    characters."""
    buffer = ""
    cut = False  # the line being read was too long: its rest is skipped
    for piece in pieces:
        *complete, buffer = (buffer + piece).split("\n")
        for line in complete:
            if cut:
                cut = False
                continue
            yield from _console_line(line)
        if len(buffer) > MAX_LOG_LINE:
            if not cut:
                yield from _console_line(buffer[:MAX_LOG_LINE], cut=True)
            cut, buffer = True, ""
    if buffer and not cut:
        yield from _console_line(buffer)


def _utf8(pieces: Iterable[bytes]) -> Iterator[str]:
    """The text of a byte stream in UTF-8 (as server-sent events always are), an undecodable
    byte shown as U+FFFD."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for piece in pieces:
        yield decoder.decode(piece)
    yield decoder.decode(b"", final=True)


def enclave_logs_url(
    market: MarketClient, job: Job, *, transport: httpx.BaseTransport | None = None
) -> str:
    """Where ``job``'s enclave streams its console (Server-Sent Events; only a debug enclave's
    console is readable), as its provider's control plane says (asked through ``transport``,
    else over the network).

    Raises:
        MarketError: the job's provider is not registered, or the job is not a debug job.
        ServiceError: the provider runs no enclave for the job, or cannot be reached.
    """
    from reef.market import ControlPlaneClient

    cp = market.provider(job.provider)
    if cp is None:
        raise MarketError(f"the job's provider {job.provider} is not registered")
    label = job_index(job.id)
    answer = ControlPlaneClient(cp, transport=transport).ip(job.id)
    if answer is None:
        raise ServiceError(
            f"job {label} has no running enclave",
            hint=f"`reef jobs show {label}` shows what its provider says (state, last error)",
        )
    endpoints = answer.get("endpoints") or {}
    url = endpoints.get("logs") if isinstance(endpoints, Mapping) else None
    if url is not None and not isinstance(url, str):
        raise ServiceError(
            f"job {label}'s provider answered a logs endpoint that is no URL: {terminal_text(repr(url))}"
        )
    if not url:
        raise MarketError(
            f"job {label} is not a debug job: its enclave's console is private",
            hint=f"deploy with --debug (or `reef jobs update {label} --debug`) to read logs",
        )
    return str(url)


def enclave_log_lines(
    url: str,
    *,
    follow: bool = False,
    transport: httpx.BaseTransport | None = None,
    history_s: float = LOG_HISTORY_S,
    head_s: float = _LOG_HEAD_S,
) -> Iterator[str]:
    """The lines of the enclave console streaming at ``url`` (:func:`enclave_logs_url`), from
    its first (asked through ``transport``, else over the network): those it holds, then, with
    ``follow``, each new one as it comes; without, the stream ends after a second without one,
    or after ``history_s`` seconds of reading in any case.

    The console is read through :func:`reef._fetch.stream_blocking`: its head within ``head_s``
    seconds (and, without ``follow``, within ``history_s``), uncompressed. The lines are the
    tenant's text: each is at most :data:`MAX_LOG_LINE` characters (a longer one is cut, marked
    ``… (line cut)``), and terminal controls in it are written out (``\\x1b``) rather than
    passed to the terminal.

    Raises:
        ServiceError: the stream cannot be read (its head did not come in time, it is
            compressed), or the server refuses it.
    """
    import httpx

    from reef._fetch import FetchError, request_to, stream_blocking

    shown = terminal_text(url)
    what = "the enclave's logs"
    reading = False  # the head was read: what ends the body now may end the console
    timeout = httpx.Timeout(5.0, read=None if follow else 1.0)
    try:
        request = request_to("GET", url, what=what, params={"start_from": "0"})
        with (
            httpx.Client(transport=transport, timeout=timeout) as client,
            stream_blocking(
                client,
                request,
                max_bytes=None,  # lines are bounded one by one (MAX_LOG_LINE), and never held
                head_s=head_s,
                deadline_s=None if follow else history_s,
                what=what,
            ) as stream,
        ):
            if stream.status != 200:
                raise ServiceError(
                    f"the enclave's logs at {shown} answered HTTP {stream.status}",
                    hint="the enclave may have stopped; `reef jobs show JOB` says what its "
                    "provider reports",
                )
            reading = True
            yield from _console_lines(_utf8(stream.iter_bytes()))
    except FetchError as exc:
        if reading and exc.reason == "too_late":
            return  # read for history_s: without follow, that is the end
        if reading and isinstance(exc.__cause__, httpx.ReadTimeout):
            return  # no new line for a second: without follow, that is the end
        if exc.reason != "unreachable":
            raise
        raise ServiceError(f"cannot read the enclave's logs at {shown}: {_cause(exc)}") from exc


def _cause(exc: ServiceError) -> str:
    """What went wrong, as httpx said it (the cause of ``exc``) or as ``exc`` says it."""
    cause = exc.__cause__
    return terminal_text(str(cause)) if cause is not None else exc.message
