"""What a job's owner does with an open job, for every front end (``reef jobs``, the dashboard).

- :func:`open_jobs`: the open jobs (of an owner), from the market's ``JobOpened`` events;
- :func:`job_status`: what the job's provider says of it (its control plane's ``/job``),
  summed up as one :class:`JobStatus`;
- :func:`summarize_job`: one open job settled up to now, when its enclave stops and what its
  provider says, as one :class:`JobSummary` (``reef jobs show`` and the dashboard format it);
- :func:`stop_margin_s`, :func:`stops_at`, :func:`jobs_totals`: how long before the money
  runs out the provider stops an enclave (and so when), and what some jobs hold and spend;
- :func:`find_open_job`, :func:`owned_job`: the open job, refused when it is not open (or,
  for the latter, unless the session's account owns it);
- :func:`deposit_to_job`: add money to a job from the session's account;
- :func:`withdraw_limit`, :func:`withdraw_from_job`: how much the notice reserve lets the owner
  take back now, and taking it;
- :func:`stop_job`: revise the rate to 0 (the provider stops the enclave at once) and say when
  the market lets the job be closed.

Each is a short composition of :class:`reef.chain.MarketClient` calls and the billing rules of
:mod:`reef.market`; the front ends only format what these return.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reef.chain import Address, Amount, Job, JobId, amount_per_hour
from reef.errors import MarketError, ServiceError

if TYPE_CHECKING:
    from reef.chain import MarketClient, MarketEvent, TxResult
    from reef.market import JobMetadata
    from reef.node._session import Session

__all__ = [
    "DEFAULT_SAFETY_MARGIN_S",
    "WITHDRAW_MARGIN_S",
    "JobStatus",
    "JobSummary",
    "deposit_to_job",
    "find_open_job",
    "job_status",
    "jobs_totals",
    "open_jobs",
    "owned_job",
    "stop_job",
    "stop_margin_s",
    "stops_at",
    "summarize_job",
    "withdraw_from_job",
    "withdraw_limit",
]

WITHDRAW_MARGIN_S = 5
"""Seconds a withdrawal takes to be mined, kept out of what may be withdrawn."""

DEFAULT_SAFETY_MARGIN_S = 300
"""The provider's default safety margin, for a network this home did not start."""


def stop_margin_s(session: Session) -> int:
    """How long before a job's money runs out its provider stops the enclave: the local
    network's safety margin, else the provider's default."""
    margin = session.safety_margin_s
    return DEFAULT_SAFETY_MARGIN_S if margin is None else margin


def open_jobs(session: Session, market: MarketClient, owner: Address | None = None) -> list[Job]:
    """Open jobs (``owner``'s when given), oldest first."""
    from reef.chain import JobOpened

    ids = [
        e.job
        for e in market.events(from_block=session.start_block)
        if isinstance(e, JobOpened) and (owner is None or e.owner == owner)
    ]
    return [job for job_id in dict.fromkeys(ids) if (job := market.find_job(job_id)) is not None]


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


def job_status(market: MarketClient, job: Job, *, timeout_s: float = 3.0) -> JobStatus:
    """Ask ``job``'s provider (its registered control plane) how the job stands."""
    from reef.market import ControlPlaneClient

    cp = market.provider(job.provider)
    if cp is None:
        return JobStatus("unknown (the provider is not registered)")
    try:
        view = ControlPlaneClient(cp, timeout=timeout_s).job(job.id)
    except ServiceError:
        return JobStatus(f"unknown (the provider's control plane at {cp} cannot be reached)")
    if view is None:
        return JobStatus("not seen by the provider yet")
    enclave = view.get("enclave") or {}
    phase = str(view.get("phase") or "")
    last_error = str(view.get("last_error") or "")
    if phase == "done":
        state = f"ended: {view.get('reason') or 'no reason given'}"
    elif enclave:
        state = str(enclave.get("state", "unknown"))
    else:
        state = "retrying" if last_error else "launching"
    return JobStatus(
        state,
        answered=True,
        phase=phase,
        last_error=last_error,
        reason=str(view.get("reason") or ""),
        enclave_id=str(enclave.get("id") or ""),
        endpoints=dict(enclave.get("endpoints") or {}),
        restarts=int(view.get("restarts") or 0),
        last_restart=str(view.get("last_restart") or ""),
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

    @property
    def time_left_s(self) -> int | None:
        """Seconds until the provider stops the enclave (``None`` at rate 0)."""
        return None if self.stops_at is None else max(0, self.stops_at - self.now)


def summarize_job(session: Session, market: MarketClient, job: Job) -> JobSummary:
    """``job`` settled up to now, when its enclave stops (:func:`stop_margin_s` before the
    money runs out) and what its provider says of it."""
    from reef.errors import ReefError
    from reef.market import JobMetadata, paid_until, settle

    now = session.now()
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
        stops_at=stops_at(job, stop_margin_s(session)),
        status=job_status(market, job),
    )


def find_open_job(session: Session, market: MarketClient, job: JobId) -> Job:
    """The open job ``job``.

    Raises:
        MarketError: it is not open (never opened, or closed: the market deletes closed jobs).
    """
    from reef.chain import job_index

    found = market.find_job(job)
    if found is None:
        raise MarketError(
            f"job {job_index(job)} ({job}) is not open in the market at {session.market_address}",
            hint="`reef jobs list` shows your open jobs; a closed job is deleted from the market",
        )
    return found


def owned_job(session: Session, market: MarketClient, job: JobId) -> Job:
    """The open job ``job``, which the session's account owns.

    Raises:
        MarketError: it is not open, or the session's account does not own it.
    """
    from reef.chain import job_index

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


def deposit_to_job(
    session: Session, market: MarketClient, job: JobId, amount: Amount
) -> TxResult[MarketEvent]:
    """Add ``amount`` (base units) to the open job ``job`` from the session's account (anyone
    may fund any job; its enclave then runs longer).

    Raises:
        MarketError: ``amount`` is 0 or more than the account holds, or the job is not open.
    """
    from reef.chain import format_amount

    if amount == 0:
        raise MarketError("the amount must be more than 0")
    find_open_job(session, market, job)
    have = market.token.balance(session.address)
    if have < amount:
        raise MarketError(f"insufficient balance: {session.address} has {format_amount(have)} rUSD")
    return market.deposit(job, amount)


def withdraw_from_job(
    session: Session, market: MarketClient, job: Job, amount: Amount | None
) -> tuple[Amount, TxResult[MarketEvent]]:
    """Take ``amount`` (base units; all that the notice reserve allows when ``None``) back from
    ``job`` (owner only); return what was taken and the transaction.

    Raises:
        MarketError: nothing can be taken now, or more than :func:`withdraw_limit`.
    """
    from reef.chain import format_amount

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
    return value, market.withdraw(job.id, value)


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
