"""The provider's view of each job, as a pure state machine: market events in, actions out.

This is the decision core of the control plane (reference §4.5), kept free of I/O so every rule
is unit-tested without a chain or an enclave, and ``now`` is always a parameter:

* ``Opened``: decode the metadata (Oyster's JSON), refuse a region or instance type the rate card
  does not offer, an owner the allow/deny lists refuse, a rate below the instance's minimum, or
  resources above the instance type's; otherwise the job should run.
* ``Deposited`` / ``Withdrew`` / ``Settled`` keep the balance and the last settlement instant.
* ``ReviseRateInitiated`` is judged at once against the minimum (a stop, i.e. rate 0, therefore
  terminates at *initiate* time, as Oyster does); ``Cancelled`` drops it. Until it is finalized
  the chain still charges the old rate, so the insolvency timer counts the higher of the two
  (Oyster switches to the new rate at once, which lets a lowered rate outlive its money).
* ``MetadataUpdated`` may change the image url, init params, debug flag and name (the enclave is
  replaced); changing the instance, region, memory, vCPUs or family ends the job.
* ``Closed`` ends the job.
* Insolvency: a running job is terminated ``safety_margin_s`` (300 s by default) *before* its
  balance would run out: at ``last_settled + max(0, balance·10¹² // rate − margin)``.

Events arrive typed, as the indexer decoded them (:class:`reef.chain.JobOpened`, ...), and the
machine matches on their types. Events are applied with :meth:`JobMachine.apply` (bookkeeping only); :meth:`JobMachine.decide`
turns the resulting state into actions at an instant. Keeping the two apart lets a restarted control
plane replay every event first and decide once, instead of acting on intermediate states.

A job that ended is never relaunched (``done`` is terminal), exactly as Oyster's
``terminated_jobs``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from reef._clock import format_time
from reef.chain import (
    Address,
    ChainEvent,
    JobClosed,
    JobDeposited,
    JobEvent,
    JobId,
    JobMetadataUpdated,
    JobOpened,
    JobReviseRateCancelled,
    JobReviseRateFinalized,
    JobReviseRateInitiated,
    JobSettled,
    JobWithdrew,
    format_amount,
    parse_address,
)
from reef.encoding import loads_bounded
from reef.errors import InputError, MarketError
from reef.market._rates import EXTRA_DECIMALS, InstanceRate, RateCard, bandwidth_kbit_s

__all__ = [
    "JobBook",
    "JobMachine",
    "JobMetadata",
    "JobPolicy",
    "Launch",
    "LaunchSpec",
    "Terminate",
    "job_user_data",
]


def job_user_data(chain_id: int, market: str, job_id: str) -> bytes:
    """What a job's enclave attests as ``user_data``: the job it runs for, on which market of
    which chain (``reef-job/1 chain=31337 market=0x… job=0x…``, ASCII).

    The provider names its job's attestation endpoint, and an image id alone does not say whose
    enclave answers there: a provider could name another provider's enclave of the same image,
    and be paid for running nothing. An enclave of reef's providers attests its job, and
    ``reef deploy`` and the dashboard compare.
    """
    return f"reef-job/1 chain={chain_id} market={market.lower()} job={job_id.lower()}".encode()


JobPhase = Literal["running", "done"]
FAMILIES = ("tuna", "salmon")
MAX_URL_CHARS = 4096
"""The longest image URL a job may name (presigned object-store URLs stay well below it)."""
# Metadata fields a job may not change after it opened (the provider sized the machine for them).
_IMMUTABLE = ("instance", "region", "memory", "vcpu", "family")


# -- metadata ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobMetadata:
    """A job's metadata, Oyster's JSON: what to run and on which instance type.

    ``memory`` is MiB; ``init_params`` is base64 text (Oyster's format) and may be empty.
    """

    instance: str
    region: str
    memory: int
    vcpu: int
    url: str
    name: str = ""
    family: str = "tuna"
    debug: bool = False
    init_params: str = ""

    @classmethod
    def parse(cls, text: str) -> JobMetadata:
        """Decode and check the metadata JSON of a job.

        Raises:
            InputError: naming the field that is missing or malformed.
        """
        if not isinstance(text, str):
            raise InputError(f"job metadata must be text, not {type(text).__name__}")
        # Chain data any tenant writes: a document nested ~70 000 deep would crash the whole
        # provider (SIGSEGV) in json.loads, and on every restart, since events are replayed.
        raw = loads_bounded(text, what="job metadata")
        if not isinstance(raw, Mapping):
            raise InputError("job metadata must be a JSON object")
        for key in ("instance", "region", "memory", "vcpu", "url"):
            if key not in raw:
                raise InputError(f"job metadata has no {key!r}")
        instance, region, url = raw["instance"], raw["region"], raw["url"]
        for key, value in (("instance", instance), ("region", region), ("url", url)):
            if not isinstance(value, str) or not value:
                raise InputError(f"job metadata field {key!r} must be a non-empty string")
        if len(url) > MAX_URL_CHARS:
            # Each job's URL is answered in /job and /jobs, and quoted in its errors: 32 KiB of
            # it per job (what the chain stores) made every listing a stranger's to inflate.
            raise InputError(
                f"job metadata field 'url' is {len(url)} characters long, more than the "
                f"{MAX_URL_CHARS} a provider accepts"
            )
        memory, vcpu = raw["memory"], raw["vcpu"]
        for key, value in (("memory", memory), ("vcpu", vcpu)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InputError(f"job metadata field {key!r} must be a positive integer")
        name = raw.get("name", "") or ""
        family = raw.get("family", "tuna") or "tuna"
        debug = raw.get("debug", False)
        init_params = raw.get("init_params", "") or ""
        if not isinstance(name, str):
            raise InputError("job metadata field 'name' must be a string")
        if family not in FAMILIES:
            raise InputError(f"job metadata field 'family' must be one of {', '.join(FAMILIES)}")
        if not isinstance(debug, bool):
            raise InputError("job metadata field 'debug' must be true or false")
        if not isinstance(init_params, str):
            raise InputError("job metadata field 'init_params' must be base64 text")
        metadata = cls(instance, region, memory, vcpu, url, name, family, debug, init_params)
        metadata.init_params_bytes()  # reject bad base64 now, not at launch time
        return metadata

    def init_params_bytes(self) -> bytes:
        """The init params file the job carries, decoded (empty when none).

        Raises:
            InputError: when ``init_params`` is not base64.
        """
        if not self.init_params:
            return b""
        try:
            return base64.b64decode(self.init_params, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError("job metadata field 'init_params' is not valid base64") from exc

    def to_json(self) -> str:
        """The metadata string a job is opened with (Oyster's key order)."""
        return json.dumps(
            {
                "instance": self.instance,
                "region": self.region,
                "memory": self.memory,
                "vcpu": self.vcpu,
                "url": self.url,
                "name": self.name,
                "family": self.family,
                "debug": self.debug,
                "init_params": self.init_params,
            },
            separators=(",", ":"),
        )


# -- policy and actions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JobPolicy:
    """What this provider accepts.

    ``provider`` is this provider's address; jobs opened for anyone else are ignored (``None``
    accepts every job, for tests and single-provider chains). ``allow_owners`` of ``None`` allows
    everyone not in ``deny_owners``.

    Addresses are :class:`reef.chain.Address` (checksummed), as events carry them, so they compare
    as they are; the policy checks and checksums what it is given, so an address read from a list
    file or typed in any case means the same account.

    Raises:
        InputError: a negative safety margin, or an entry that is not an address.
    """

    rates: RateCard
    provider: Address | None = None
    allow_owners: frozenset[Address] | None = None
    deny_owners: frozenset[Address] = frozenset()
    safety_margin_s: int = 300
    extra_decimals: int = EXTRA_DECIMALS

    def __post_init__(self) -> None:
        if self.safety_margin_s < 0:
            raise InputError("the insolvency safety margin cannot be negative")
        if self.provider is not None:
            object.__setattr__(self, "provider", parse_address(self.provider, name="provider"))
        if self.allow_owners is not None:
            object.__setattr__(self, "allow_owners", _addresses(self.allow_owners, "allowed owner"))
        object.__setattr__(self, "deny_owners", _addresses(self.deny_owners, "denied owner"))

    @property
    def scale(self) -> int:
        """Rate units per token base unit (10**extra_decimals)."""
        return int(10**self.extra_decimals)

    def owner_refusal(self, owner: Address) -> str | None:
        # Imported here: the image fetcher's module loads the image store (FastAPI, uvicorn),
        # which a job's owner reading its metadata (reef jobs list) does not need.
        from reef.market._fetch import list_refusal

        return list_refusal("owner", owner, allow=self.allow_owners, deny=self.deny_owners)


def _addresses(values: frozenset[Address], name: str) -> frozenset[Address]:
    return frozenset(parse_address(value, name=name) for value in values)


@dataclass(frozen=True)
class LaunchSpec:
    """What should run for a job. The control plane makes reality match it."""

    job_id: JobId
    owner: Address
    image_url: str
    init_params: bytes
    debug: bool
    vcpu: int
    memory: int
    instance: str
    region: str
    family: str
    name: str
    bandwidth_kbit_s: int

    def enclave_key(self) -> tuple[object, ...]:
        """The fields whose change means the running enclave must be replaced.

        Bandwidth and name are not among them: a rate change never restarts an enclave.
        """
        return (self.image_url, self.init_params, self.debug, self.vcpu, self.memory)


@dataclass(frozen=True)
class Launch:
    """Make the job's enclave match ``spec`` (start it, or replace one that differs)."""

    spec: LaunchSpec

    @property
    def job_id(self) -> JobId:
        return self.spec.job_id


@dataclass(frozen=True)
class Terminate:
    """Stop the job's enclave for good; ``reason`` says why, for the operator and the user."""

    job_id: JobId
    reason: str


Action = Launch | Terminate


# -- one job --------------------------------------------------------------------------------------


@dataclass
class JobMachine:
    """One job of this provider, created by its ``Opened`` event."""

    job_id: JobId
    policy: JobPolicy
    owner: Address | None = None
    """Set by the job's ``Opened`` event."""
    metadata: JobMetadata | None = None
    card: InstanceRate | None = None
    rate: int = 0
    balance: int = 0
    last_settled: int = 0
    pending_rate: int | None = None
    phase: JobPhase = "running"
    reason: str = ""
    _launched: LaunchSpec | None = field(default=None, repr=False)
    _terminate_sent: bool = field(default=False, repr=False)

    # -- events --------------------------------------------------------------------------------

    def apply(self, event: JobEvent) -> None:
        """Update the job's state from one of its events (no decision is taken here)."""
        match event:
            case JobOpened():
                self._opened(event)
            case JobDeposited(amount=amount):
                self.balance += amount
            case JobWithdrew(amount=amount):
                self.balance = max(0, self.balance - amount)
            case JobSettled(amount=amount, timestamp=timestamp):
                self.balance = max(0, self.balance - amount)
                self.last_settled = max(self.last_settled, timestamp)
            case JobReviseRateInitiated(new_rate=new_rate):
                self.pending_rate = new_rate
                self._check_rate(revised=True)
            case JobReviseRateCancelled():
                self.pending_rate = None
            case JobReviseRateFinalized(new_rate=new_rate):
                # The chain is the truth; Oyster treats a mismatch as an internal error, but the
                # finalized rate is what the contract charges from now on either way.
                self.rate = new_rate
                self.pending_rate = None
                self._check_rate(revised=True)
            case JobMetadataUpdated(metadata=metadata):
                self._metadata_updated(metadata)
            case JobClosed():
                self._end("the job was closed")

    def _opened(self, event: JobOpened) -> None:
        self.owner = event.owner
        self.rate = event.rate
        self.balance = event.balance
        self.last_settled = event.timestamp
        try:
            self.metadata = JobMetadata.parse(event.metadata)
        except InputError as exc:
            self._end(f"invalid job metadata: {exc.message}")
            return
        try:
            self.card = self.policy.rates.lookup(self.metadata.region, self.metadata.instance)
        except MarketError as exc:
            self._end(f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
            return
        if self.metadata.vcpu > self.card.cpu or self.metadata.memory > self.card.memory:
            self._end(
                f"the job asks for {self.metadata.vcpu} vCPU and {self.metadata.memory} MiB, more "
                f"than {self.card.instance} has ({self.card.cpu} vCPU, {self.card.memory} MiB)"
            )
            return
        refusal = self.policy.owner_refusal(event.owner)
        if refusal:
            self._end(refusal)
            return
        self._check_rate(revised=False)

    def _check_rate(self, *, revised: bool) -> None:
        if self.phase == "done" or self.card is None:
            return
        if self.offered_rate < self.card.min_rate:
            if revised and self.offered_rate == 0:  # `reef jobs stop`: not a haggle over price
                self._end("the job's owner stopped it (its rate was revised to 0)")
                return
            what = "was revised to" if revised else "is"
            self._end(
                f"the job's rate {what} {self.offered_rate}, below this provider's minimum "
                f"{self.card.min_rate} for {self.card.instance} (rate units: token base units "
                f"× 10^{self.policy.extra_decimals} per second)"
            )

    def _metadata_updated(self, text: str) -> None:
        if self.phase == "done" or self.metadata is None:
            return
        try:
            new = JobMetadata.parse(text)
        except InputError as exc:
            self._end(f"the metadata update is invalid: {exc.message}")
            return
        changed = [key for key in _IMMUTABLE if getattr(new, key) != getattr(self.metadata, key)]
        if changed:
            self._end(
                f"the metadata update changes {', '.join(changed)}, which a running job cannot "
                "change (open a new job instead)"
            )
            return
        self.metadata = new

    def _end(self, reason: str) -> None:
        if self.phase != "done":
            self.phase = "done"
            self.reason = reason

    # -- supervisor feedback -------------------------------------------------------------------

    def fail(self, reason: str) -> None:
        """A launch failed in a way retrying cannot fix (image refused, bad init params)."""
        self._end(reason)

    def mark_terminated(self, reason: str) -> None:
        """Restore a termination recorded before a restart: done, and nothing left to send."""
        self._end(reason)
        self._terminate_sent = True

    def forget_launch(self) -> None:
        """The enclave is gone (crashed, or removed by reconciliation): launch it again."""
        self._launched = None

    # -- decisions -----------------------------------------------------------------------------

    @property
    def offered_rate(self) -> int:
        """The rate the owner asks the provider to accept: a pending revision counts at once
        (Oyster's rule, so a stop ends the job when it is initiated)."""
        return self.rate if self.pending_rate is None else self.pending_rate

    @property
    def billing_rate(self) -> int:
        """The rate the money may run out at: the chain charges the old rate until the revision
        is finalized, so while one is pending the higher of the two counts."""
        return self.rate if self.pending_rate is None else max(self.rate, self.pending_rate)

    def deadline(self) -> int | None:
        """The instant the insolvency timer fires, or ``None`` when the job is not running."""
        if self.phase != "running":
            return None
        ends = self.runs_out_at()
        if ends is None:  # rate 0: the owner stopped paying
            return self.last_settled
        return max(self.last_settled, ends - self.policy.safety_margin_s)

    def runs_out_at(self) -> int | None:
        """When the balance would actually be used up (no margin), for display."""
        rate = self.billing_rate
        if rate == 0:
            return None
        return self.last_settled + self.balance * self.policy.scale // rate

    def desired(self) -> LaunchSpec | None:
        """What should run now, or ``None`` when nothing should."""
        if (
            self.phase != "running"
            or self.owner is None
            or self.metadata is None
            or self.card is None
        ):
            return None
        meta = self.metadata
        return LaunchSpec(
            job_id=self.job_id,
            owner=self.owner,
            image_url=meta.url,
            init_params=meta.init_params_bytes(),
            debug=meta.debug,
            vcpu=meta.vcpu,
            memory=meta.memory,
            instance=meta.instance,
            region=meta.region,
            family=meta.family,
            name=meta.name,
            bandwidth_kbit_s=bandwidth_kbit_s(
                self.offered_rate, self.card.min_rate, self.policy.rates.gb_rate(meta.region)
            ),
        )

    def decide(self, now: int) -> list[Action]:
        """The actions the job needs at ``now`` (unix seconds); each is emitted once."""
        deadline = self.deadline()
        if deadline is not None and now >= deadline:
            ends = self.runs_out_at()
            self._end(
                f"the job's balance {format_amount(self.balance)} rUSD would run out"
                + (f" at {format_time(ends, utc=True)}" if ends is not None else "")
                + f"; stopped {self.policy.safety_margin_s} s before (insolvency safety margin)"
            )
        if self.phase == "done":
            if self._terminate_sent:
                return []
            self._terminate_sent = True
            self._launched = None
            return [Terminate(self.job_id, self.reason)]
        spec = self.desired()
        if spec is None or spec == self._launched:
            return []
        self._launched = spec
        return [Launch(spec)]

    def to_json(self) -> dict[str, Any]:
        """The job as the control plane reports it (``GET /job``)."""
        meta = self.metadata
        return {
            "job_id": self.job_id,
            "phase": self.phase,
            "reason": self.reason,
            "owner": self.owner,
            "rate": hex(self.rate),
            "pending_rate": None if self.pending_rate is None else hex(self.pending_rate),
            "balance": hex(self.balance),
            "last_settled": self.last_settled,
            "stop_at": self.deadline(),
            "instance": meta.instance if meta else None,
            "region": meta.region if meta else None,
            "url": meta.url if meta else None,
            "debug": meta.debug if meta else None,
        }


# -- all jobs of a provider -----------------------------------------------------------------------


@dataclass
class JobBook:
    """Every job of this provider, fed by the market's event stream."""

    policy: JobPolicy
    jobs: dict[JobId, JobMachine] = field(default_factory=dict)
    """By job id. Its keys are :class:`reef.chain.JobId` values; typed ``str`` so that lookups
    with a plain string (the control plane's) still type-check."""

    def apply(self, event: ChainEvent) -> JobId | None:
        """Apply one market event; return the id of the job it touched, if it is one of ours.

        Events that concern no job (providers, locks, other contracts) are ignored.
        """
        if not isinstance(event, JobEvent):
            return None
        job_id = event.job
        machine = self.jobs.get(job_id)
        if isinstance(event, JobOpened):
            if machine is not None:
                return None  # a replayed Opened: the job is already known
            if self.policy.provider is not None and event.provider != self.policy.provider:
                return None
            machine = JobMachine(job_id, self.policy)
            self.jobs[job_id] = machine
        elif machine is None:
            return None  # not one of ours, or opened before the indexer's first block
        machine.apply(event)
        return job_id

    def apply_all(self, events: Iterable[ChainEvent]) -> set[JobId]:
        touched: set[JobId] = set()
        for event in events:
            job_id = self.apply(event)
            if job_id is not None:
                touched.add(job_id)
        return touched

    def decide(self, now: int) -> list[Action]:
        actions: list[Action] = []
        for machine in self.jobs.values():
            actions.extend(machine.decide(now))
        return actions

    def next_deadline(self) -> int | None:
        deadlines = [d for m in self.jobs.values() if (d := m.deadline()) is not None]
        return min(deadlines) if deadlines else None

    def running(self) -> dict[JobId, LaunchSpec]:
        """The jobs that should have an enclave now, with what should run in each."""
        return {m.job_id: spec for m in self.jobs.values() if (spec := m.desired())}
