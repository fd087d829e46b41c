"""What the dashboard shows, read from the chain and the providers' control planes.

Everything here is synchronous (web3.py and the control-plane client are): the app calls it in a
worker thread. Money is read from the market contract (the truth), what runs from each job's
provider (``GET /job``); nothing is cached between page loads, so a page is never staler than
the request that rendered it. Amounts stay integers (base units) until they are formatted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from reef.errors import ReefError

if TYPE_CHECKING:
    from reef.chain import Address, Job, JobId, MarketClient, MarketEvent
    from reef.node import Session

__all__ = [
    "JobRow",
    "ProviderRow",
    "chain_summary",
    "describe_job",
    "describe_jobs",
    "job_history",
    "open_jobs",
    "providers",
]


@dataclass(frozen=True, kw_only=True)
class ProviderRow:
    """A provider registered in the market, and what its control plane says."""

    address: str
    control_plane: str
    reachable: bool
    instances: tuple[Mapping[str, Any], ...] = ()
    jobs: int | None = None
    error: str = ""


@dataclass(frozen=True, kw_only=True)
class JobRow:
    """One open job: its money (chain) and its enclave (its provider)."""

    job_id: JobId
    number: int
    owner: Address
    provider: Address
    metadata: Mapping[str, Any]
    rate: int
    balance: int
    """The balance after settling up to now (what is left to spend)."""
    balance_on_chain: int
    paid_until: int | None
    stops_at: int | None
    """When the provider stops the enclave: its safety margin before the money runs out."""
    time_left_s: int | None
    phase: str
    state: str
    enclave_id: str
    endpoints: Mapping[str, Any]
    endpoint: str
    last_error: str
    restarts: int
    reason: str

    @property
    def debug(self) -> bool:
        return bool(self.metadata.get("debug"))

    @property
    def logs_url(self) -> str:
        return str(self.endpoints.get("logs") or "")

    @property
    def attestation_url(self) -> str:
        """The enclave's attestation endpoint (its ``/attestation/raw``), if one runs."""
        base = str(self.endpoints.get("attestation") or "").rstrip("/")
        if not base or base.endswith("/attestation/raw"):
            return base
        return f"{base}/attestation/raw"

    @property
    def rate_per_hour(self) -> int:
        """The job's rate in token base units per hour."""
        from reef.chain import amount_per_hour

        return amount_per_hour(self.rate)

    def to_json(self) -> dict[str, Any]:
        """The row as ``GET /api/jobs`` gives it (:class:`reef.web._app.JobSummary`): its fields,
        ``number`` named ``job``, with :attr:`rate_per_hour` and without ``balance_on_chain``."""
        out = asdict(self)
        del out["balance_on_chain"]
        return {"job": out.pop("number"), **out, "rate_per_hour": self.rate_per_hour}


def chain_summary(session: Session) -> dict[str, Any]:
    """The chain, the market and the account the dashboard acts for.

    Raises:
        RPCError: the endpoint does not answer.
    """
    client = session.market()
    summary: dict[str, Any] = {
        "rpc_url": session.rpc_url,
        "chain_id": int(session.w3.eth.chain_id),
        "block": int(session.w3.eth.block_number),
        "market": session.market_address,
        "token": client.token_address(),
        "job_count": client.job_count(),
        "rate_lock_s": client.lock_wait_time(),
        "account": None,
        "token_balance": None,
        "eth_balance": None,
    }
    if session.account is not None:
        address = session.address
        summary["account"] = address
        summary["token_balance"] = int(client.token().balance(address))
        summary["eth_balance"] = int(session.w3.eth.get_balance(address))  # type: ignore[arg-type]
    return summary


def providers(session: Session, client: MarketClient) -> list[ProviderRow]:
    """Every provider the market's events registered (and did not remove), with its offer."""
    from reef.chain import ProviderAdded, ProviderRemoved, amount_per_hour
    from reef.market import ControlPlaneClient

    # Read through the session's reader (reef's JSON-RPC transport). Only the provider events
    # are asked for: anyone may add events to the market for the gas alone (an empty deposit to
    # any job), and every page that lists providers, and every /metrics scrape, reads these.
    reader = session.reader
    added = reader.events_of(ProviderAdded, from_block=session.start_block)
    removed = reader.events_of(ProviderRemoved, from_block=session.start_block)
    seen: dict[str, None] = {}
    for event in sorted([*added, *removed], key=lambda e: (e.block_number, e.log_index)):
        if isinstance(event, ProviderAdded):
            seen[event.provider] = None
        elif isinstance(event, ProviderRemoved):
            seen.pop(event.provider, None)
    addresses = list(seen)
    # Every provider's URL in one JSON-RPC batch: anyone may register, and one call after the
    # other took ~50 s a page for 10 000 registrations.
    urls = reader.providers(addresses)

    def ask(address: str, cp: str) -> ProviderRow:
        try:
            spec = ControlPlaneClient(cp, timeout=3.0).spec()
        except ReefError as exc:
            return ProviderRow(
                address=address, control_plane=cp, reachable=False, error=exc.message
            )
        instances = tuple(
            {
                "region": region.region,
                "instance": rate.instance,
                "min_rate_per_hour": amount_per_hour(rate.min_rate),
                "vcpu": rate.cpu,
                "memory": rate.memory,
            }
            for region in spec.regions
            for rate in region.rate_cards
        )
        return ProviderRow(address=address, control_plane=cp, reachable=True, instances=instances)

    asked = [(a, cp) for a, cp in zip(addresses, urls, strict=True) if cp is not None]
    return _all_at_once(
        [partial(ask, a, cp) for a, cp in asked],
        late=[
            ProviderRow(
                address=a,
                control_plane=cp,
                reachable=False,
                error=f"did not answer within {PAGE_DEADLINE_S:g} s",
            )
            for a, cp in asked
        ],
    )


def open_jobs(session: Session, client: MarketClient) -> list[Job]:
    """The open jobs of the dashboard's account (every open job when it has none), oldest first
    (:func:`reef.node.open_jobs`, through the session's reader as ``reef jobs list`` reads
    them: the owner's ``JobOpened`` logs alone, then the jobs in one batch). ``client`` is kept
    for the callers' sake (the pages' other reads use it)."""
    from reef.node import open_jobs as node_open_jobs

    owner = session.address if session.account is not None else None
    return node_open_jobs(session, session.reader, owner)


def describe_jobs(session: Session, client: MarketClient, jobs: Sequence[Job]) -> list[JobRow]:
    """Each of ``jobs`` as :func:`describe_job` describes it, their providers asked at once; a
    job whose description is not ready after :data:`PAGE_DEADLINE_S` is shown from the chain
    alone (:func:`_from_chain`), so a provider that trickles its answers does not hold the page
    for longer."""
    return _all_at_once(
        [partial(describe_job, session, client, job) for job in jobs],
        late=[_from_chain(job, _UNANSWERED) for job in jobs],
    )


def _from_chain(job: Job, state: str) -> JobRow:
    """``job`` as the chain alone holds it, ``state`` saying why its provider's fields are empty
    (:func:`describe_job` fills them in)."""
    from reef.chain import job_index

    return JobRow(
        job_id=job.id,
        number=job_index(job.id),
        owner=job.owner,
        provider=job.provider,
        metadata={"raw": job.metadata[:200]},
        rate=job.rate,
        balance=job.balance,
        balance_on_chain=job.balance,
        paid_until=None,
        stops_at=None,
        time_left_s=None,
        phase="unknown",
        state=state,
        enclave_id="",
        endpoints={},
        endpoint="",
        last_error="",
        restarts=0,
        reason="",
    )


PAGE_DEADLINE_S = 15.0
"""How long a page waits for the providers it asks: each is asked in a thread of its own (a
provider is whoever registered a URL, and a slow one must not hold the page for the others), and
one that has not answered by then is shown as such."""

_UNANSWERED = f"unknown (the provider did not answer within {PAGE_DEADLINE_S:g} s)"
_ASK_AT_ONCE = 16
_T = TypeVar("_T")


def _all_at_once(calls: Sequence[Callable[[], _T]], *, late: Sequence[_T] = ()) -> list[_T]:
    """The results of ``calls``, run in up to 16 threads, in order. A call still running after
    :data:`PAGE_DEADLINE_S` gives ``late[i]`` when given (its thread ends by its own client's
    deadline), else it is waited for."""
    if len(calls) <= 1:
        return [call() for call in calls]
    pool = ThreadPoolExecutor(min(_ASK_AT_ONCE, len(calls)), thread_name_prefix="dashboard-ask")
    try:
        futures = [pool.submit(call) for call in calls]
        wait(futures, timeout=PAGE_DEADLINE_S if late else None)
        return [
            future.result() if future.done() or not late else late[i]
            for i, future in enumerate(futures)
        ]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def describe_job(session: Session, client: MarketClient, job: Job) -> JobRow:
    """``job`` settled up to now, with when its provider stops the enclave and what it says of
    it (:func:`reef.node.summarize_job`)."""
    from reef.node import summarize_job

    summary = summarize_job(session, client, job)
    meta, status = summary.metadata, summary.status
    row = _from_chain(job, status.state)
    return replace(
        row,
        metadata=row.metadata
        if meta is None
        else {
            "instance": meta.instance,
            "region": meta.region,
            "url": meta.url,
            "debug": meta.debug,
            "name": meta.name,
        },
        balance=summary.balance,
        paid_until=summary.paid_until,
        stops_at=summary.stops_at,
        time_left_s=summary.time_left_s,
        phase=status.phase if status.answered else "unknown",
        enclave_id=status.enclave_id,
        endpoints=dict(status.endpoints),
        endpoint=status.endpoint,
        last_error=status.last_error,
        restarts=status.restarts,
        reason=status.reason,
    )


def job_history(session: Session, client: MarketClient, job_id: JobId) -> list[dict[str, Any]]:
    """The job's market events, oldest first: name, block, transaction and fields."""
    events: Sequence[MarketEvent] = client.events(from_block=session.start_block, job=job_id)
    out = []
    for event in events:
        fields = {k: v for k, v in event.args().items() if k != "job"}
        out.append(
            {
                "event": type(event).__name__,
                "block": event.block_number,
                "tx_hash": event.tx_hash,
                "fields": {k: v if isinstance(v, int | str) else str(v) for k, v in fields.items()},
            }
        )
    return out
