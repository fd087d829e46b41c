"""The provider's control plane: follows the market and keeps one enclave per paying job.

It is Oyster's control plane (reference §4.5) on a local enclave backend instead of EC2:

* an indexer (:class:`reef.chain.Indexer`) copies the market's events into the database;
* the events feed a :class:`~reef.market.JobBook` (the pure per-job state machine), whose
  decisions become actions: :class:`~reef.market.Launch` makes a job's enclave match its metadata
  (download the image, check its hash, replace the enclave when the image, init params, debug
  flag or size changed) and :class:`~reef.market.Terminate` stops it for good;
* one asyncio task per job carries out its actions, so a slow download never delays another job;
  failures that retrying cannot fix (an image refused by the lists, a wrong hash) end the job,
  others are retried with backoff;
* a heartbeat compares what runs with what should (:meth:`ControlPlane.reconcile`): a crashed
  enclave is relaunched, an enclave without a paying job is stopped, duplicates are removed.

Restarts: terminations are recorded in the database *before* the enclave is stopped (as Oyster's
``terminated_jobs``), and on start the control plane replays every stored event, then reconciles
with the enclaves the backend reports. A control plane killed at any instant (even mid-launch)
and restarted therefore ends with exactly one enclave per paying job and none for anything else.
Stopping the control plane leaves enclaves running: paying jobs must not go down because their
provider restarts its software (``reef up`` stops them explicitly on Ctrl-C).

Disk: a job's downloaded image and its enclave's ``/state`` (which outlives the enclave, kept
across its restarts and the provider's) are removed once no job that should run wants them, so
a tenant opening job after job with new images cannot fill the provider's disk. At start this
also catches the jobs that ended while the provider was down, and the removals an earlier run
noted but did not finish (they are written to the database before the enclave stops).

Churn: a running enclave is replaced for new metadata at most every ``replace_interval``, and
an owner whose enclaves were stopped lately (jobs opened and stopped at every block) has
``launch_burst`` enclave starts and stops at once, then one every ``launch_interval``.

The enclave backend is reached through the small :class:`EnclaveRunner` protocol (the local dev
TEE in reef; :class:`reef.testing.FakeRunner` in tests), and time is a parameter (``clock``).

One module (about 1 100 lines): replay, decide, reconcile, launch, renew and stop are one
exactly-once argument over the job book (a control plane killed at any instant ends right),
kept together so it can be checked in one place, as the indexer's is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa

from reef.chain import Address, IndexedEvent, JobEvent, JobId
from reef.enclave import LIVE_STATES
from reef.encoding import terminal_text
from reef.errors import ChainError, ImageError, InputError, MarketError, ReefError
from reef.market._fetch import FetchedImage, ImageFetcher, content_address
from reef.market._job_state import Action, JobBook, JobPolicy, LaunchSpec, Terminate

__all__ = [
    "ControlPlane",
    "EnclaveRunner",
    "EventFeed",
    "LAUNCH_BURST",
    "RunningEnclave",
    "launch_key",
]

log = logging.getLogger("reef.market.control_plane")

REPLACE_INTERVAL_S = 10.0
"""The shortest time between two replacements of one job's enclave, by default."""

DOWNLOADS_PER_OWNER = 4
"""How many distinct images the jobs of one owner download at once, by default."""

LAUNCH_BURST = 8
"""How many enclave starts and stops one churning owner has at once, by default
(:attr:`ControlPlane.launch_burst`)."""

LAUNCH_INTERVAL_S = 10.0
"""How often a churning owner gets one more enclave start or stop back, by default."""

LISTED_ENDED_JOBS = 100
"""How many ended jobs ``GET /jobs`` lists (the last opened), after every live one."""


def _shown(text: object) -> str:
    """``text`` as the provider's log may show it: a job's URL and the reasons and errors that
    quote it (or a stranger's server) are a stranger's words, which must not drive the
    operator's terminal (escape sequences, direction overrides: :func:`reef.encoding.terminal_text`)."""
    return terminal_text(str(text))


def host_memory_mib() -> int:
    """This host's physical memory in MiB (a large number where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def launch_key(spec: LaunchSpec) -> str:
    """A short digest of what makes an enclave: equal keys mean the running one is right."""
    material = json.dumps(
        [spec.job_id, spec.image_url, spec.init_params.hex(), spec.debug, spec.vcpu, spec.memory]
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class RunningEnclave:
    """An enclave the backend runs for a job. ``key`` is the :func:`launch_key` it was made for.

    An enclave that ended carries how (``exit_code``, ``reason``) and, in debug mode, the last
    lines of its console, so the job's owner learns why it was relaunched. ``state_key`` names
    its ``/state`` (:attr:`reef.enclave.EnclaveInfo.state_key`; shared by the enclaves of one
    image), which :meth:`EnclaveRunner.remove_state` removes.
    """

    enclave_id: str
    job_id: JobId
    key: str
    state: str
    endpoints: Mapping[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    reason: str | None = None
    console: tuple[str, ...] = ()
    state_key: str = ""


class EnclaveRunner(Protocol):
    """The control plane's view of an enclave backend.

    ``list`` reports only enclaves this control plane started (they carry the job id and key),
    including ones left by a previous run of it.
    """

    async def launch(self, spec: LaunchSpec, image: FetchedImage, key: str) -> RunningEnclave: ...

    async def replace(
        self, enclave_id: str, spec: LaunchSpec, image: FetchedImage, key: str
    ) -> RunningEnclave:
        """Put a new enclave in place of ``enclave_id`` (the old one stops first)."""
        ...

    async def stop(self, enclave_id: str) -> None: ...

    async def list(self) -> Sequence[RunningEnclave]: ...

    async def renew(self, enclave_id: str, until_s: int) -> None:
        """Let the enclave run until ``until_s`` (Unix seconds) without another renewal: the
        backend stops it then by itself, so it never outlives its payment while the provider
        is down."""
        ...

    async def remove_state(self, state_key: str) -> bool:
        """Delete the ``/state`` named ``state_key`` (a :attr:`RunningEnclave.state_key`) once
        no job wants it; an enclave this runner did not start that uses it (the KMS root, an
        operator's ``reef enclave run``) keeps it. Returns whether it was removed.

        Raises:
            ReefError: an enclave still runs with it, or it cannot be removed (tried again).
        """
        ...


class EventFeed(Protocol):
    """Where market events come from (an :class:`reef.chain.Indexer`)."""

    @property
    def stream(self) -> str: ...

    @property
    def engine(self) -> sa.Engine: ...

    def poll(self) -> int: ...

    def chain_time(self) -> int | None: ...

    def events(self, *, after: int = 0, limit: int = 1000) -> list[IndexedEvent]: ...


def _state_identity(spec: LaunchSpec) -> tuple[str, bytes, bool]:
    """What names an enclave's ``/state`` among a job's launch fields (the same image, init
    params and debug flag make the same image id, hence the same ``/state``)."""
    return (spec.image_url, spec.init_params, spec.debug)


def _terminated_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "terminated_jobs",
        metadata,
        sa.Column("stream", sa.String(120), primary_key=True),
        sa.Column("job_id", sa.String(66), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )


def _pending_states_table(metadata: sa.MetaData) -> sa.Table:
    """The ``/state`` volumes waiting for removal (:meth:`ControlPlane._mark_stale`), with what
    each was made for (JSON: image URL, init params in hex, debug flag; null when unknown)."""
    return sa.Table(
        "pending_state_removals",
        metadata,
        sa.Column("stream", sa.String(120), primary_key=True),
        sa.Column("state_key", sa.String(200), primary_key=True),
        sa.Column("made_for", sa.Text, nullable=True),
    )


class ControlPlane:
    """Runs a provider's jobs. See the module docstring for the lifecycle.

    Args:
        policy: what this provider accepts (rate card, owners, safety margin).
        feed: the indexed market events (its database also keeps the terminated jobs).
        runner: the enclave backend.
        fetcher: image download and checks.
        clock: unix time in seconds.
        poll_interval: how often the chain is polled for new blocks.
        heartbeat_interval: how often running enclaves are compared with paying jobs.
        retry_delay: the first delay before retrying a failed launch (doubles up to 30 s).
        host: the address clients reach enclaves at (``/ip`` answers it).
        memory_budget_mib: the memory all enclaves may ask for together; ``None`` is this
            host's physical memory. A launch that would pass it waits (its job's
            ``last_error`` says so) until others end: one tenant opening many jobs must not
            oversubscribe the host until every tenant's enclave is killed for memory.
        downloads_per_owner: how many distinct images one owner's jobs may download at once
            (a job past it waits, its ``last_error`` saying so): each download holds a socket
            and a file for as long as its server makes it last, and one stranger naming many
            slow servers would otherwise hold as many as the memory budget lets it.
        replace_interval: the shortest time between two replacements of a job's running
            enclave for new metadata (seconds): an owner updating the metadata at every block
            would otherwise have the provider download an image and restart an enclave at
            every block; changes in between are skipped, the latest is run.
        launch_burst: how many enclave starts and stops an owner who churns (whose enclaves
            were stopped lately: jobs opened and closed, or stopped, at every block) has at
            once; past it, each start waits (its job's ``last_error`` saying so) until the
            owner has one back, one every ``launch_interval`` seconds. A job's first launch
            is free while its owner has not churned, so tenants opening many jobs are not
            held up; relaunches and replacements always count. ``None``: no bound, for a
            provider whose only tenant is its operator (``reef up``).
        launch_interval: see ``launch_burst``.
    """

    def __init__(
        self,
        *,
        policy: JobPolicy,
        feed: EventFeed,
        runner: EnclaveRunner,
        fetcher: ImageFetcher,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 5.0,
        retry_delay: float = 2.0,
        host: str = "127.0.0.1",
        memory_budget_mib: int | None = None,
        downloads_per_owner: int = DOWNLOADS_PER_OWNER,
        replace_interval: float = REPLACE_INTERVAL_S,
        launch_burst: int | None = LAUNCH_BURST,
        launch_interval: float = LAUNCH_INTERVAL_S,
    ) -> None:
        self.book = JobBook(policy)
        self.memory_budget_mib = (
            host_memory_mib() if memory_budget_mib is None else memory_budget_mib
        )
        self.feed = feed
        self.runner = runner
        self.fetcher = fetcher
        self.clock = clock
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.retry_delay = retry_delay
        self.host = host
        self.downloads_per_owner = downloads_per_owner
        self.replace_interval = replace_interval
        self.launch_burst = launch_burst
        self.launch_interval = launch_interval
        self._replaced_at: dict[JobId, float] = {}
        """When each job's enclave was last replaced for new metadata (monotonic seconds)."""
        self._ended: dict[JobId, asyncio.Event] = {}
        """Set when the job ends, for a job whose task waits (:meth:`_pause`)."""
        self._churn: dict[Address, tuple[float, float]] = {}
        """The enclave starts and stops each churning owner has left (fractional: they come
        back over time), and when that was counted (monotonic seconds); an owner who has all
        of :attr:`launch_burst` back is not listed."""
        self._launched_once: set[JobId] = set()
        """Jobs that had an enclave started (a later one is a relaunch); ended jobs leave."""
        self.last_error: str = ""
        self._cursor = 0
        self._want: dict[JobId, LaunchSpec | None] = {}
        self._have: dict[JobId, RunningEnclave] = {}
        self._leases: dict[str, int] = {}  # enclave id -> the lease it was last given
        self._tasks: dict[JobId, asyncio.Task[None]] = {}
        self._fetches: dict[str, asyncio.Task[FetchedImage]] = {}
        """Downloads in flight, by URL: jobs of one image share its download."""
        self._dirty: set[JobId] = set()
        self._owner_downloads: dict[Address, dict[str, int]] = {}
        """The image URLs each owner's jobs download now, with how many of its jobs wait on
        each."""
        self._launching: set[JobId] = set()
        """Jobs whose launch passed the memory budget and is under way."""
        self._images: dict[str, str] = {}
        """The SHA-256 of each image URL downloaded for a job, so that it can be removed once
        no job wants it."""
        self._states: dict[JobId, str] = {}
        """The ``/state`` of each job's enclave as last seen, kept while the job restarts."""
        self._state_specs: dict[str, tuple[str, bytes, bool]] = {}
        """What each known ``/state`` was made for (image URL, init params, debug): a job that
        should run with the same has it even before its enclave is seen."""
        self._stale_states: set[str] = set()
        """``/state`` of enclaves that ended or were replaced, removed once no job wants them;
        kept in the database too (:meth:`_mark_stale`), so a restart still removes them."""
        self._errors: dict[str, str] = {}
        self._restarts: dict[str, int] = {}
        """How often each job's enclave was found dead (crashed, exited, gone) and relaunched."""
        self._last_restart: dict[str, str] = {}
        """Why the last relaunch of each job's enclave happened, for ``/job``."""
        self._last_exit: dict[str, dict[str, Any]] = {}
        """How each job's last ended enclave ended (state, exit code, reason, console)."""
        self._started = False
        self._last_heartbeat = 0.0
        self._chain_time: int | None = None
        self._metadata = sa.MetaData()
        self._terminated = _terminated_table(self._metadata)
        self._pending_states = _pending_states_table(self._metadata)
        self._metadata.create_all(feed.engine)

    # -- public state -----------------------------------------------------------------------

    @property
    def policy(self) -> JobPolicy:
        return self.book.policy

    def now(self) -> int:
        """The later of the wall clock and the chain's clock (the last indexed block's time).

        Contracts bill by block timestamps; a devnet's clock can run a few seconds ahead of the
        wall clock after a burst of transactions, and deciding on the later of the two keeps the
        insolvency margin a margin.
        """
        chain = self._chain_time
        wall = int(self.clock())
        return wall if chain is None else max(wall, chain)

    def enclave(self, job_id: JobId) -> RunningEnclave | None:
        """The enclave running for ``job_id``, if any."""
        return self._have.get(job_id)

    def job_status(self, job_id: JobId) -> dict[str, Any] | None:
        """What the control plane knows of a job (``GET /job``), or ``None`` if not ours."""
        machine = self.book.jobs.get(job_id)
        if machine is None:
            return None
        status = machine.to_json()
        enclave = self._have.get(machine.job_id)
        status["enclave"] = (
            {"id": enclave.enclave_id, "state": enclave.state, "endpoints": dict(enclave.endpoints)}
            if enclave
            else None
        )
        status["last_error"] = self._errors.get(machine.job_id, "")
        status["restarts"] = self._restarts.get(machine.job_id, 0)
        status["last_restart"] = self._last_restart.get(machine.job_id, "")
        status["last_exit"] = self._last_exit.get(machine.job_id)
        return status

    def jobs(self) -> list[dict[str, Any]]:
        """What ``GET /jobs`` lists: every job that has not ended, then the last
        :data:`LISTED_ENDED_JOBS` of those that have, in the order they were opened.

        The book keeps every job it ever saw, and anyone may open job after job for this
        provider (a refused one costs its opener only gas: its deposit comes back), so listing
        them all made the answer grow without bound (past the 1 MiB reef's clients read after
        about 1 700 jobs). An ended job's status stays one ``GET /job?id=`` away.
        """
        ended = [job_id for job_id, machine in self.book.jobs.items() if machine.phase == "done"]
        shown = set(ended[-LISTED_ENDED_JOBS:])
        return [
            status
            for job_id, machine in self.book.jobs.items()
            if machine.phase != "done" or job_id in shown
            if (status := self.job_status(job_id)) is not None
        ]

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Catch up with the chain, replay every event, then reconcile with the backend."""
        await self._poll_chain()
        self._read_events()
        for job_id, reason in self._load_terminated().items():
            machine = self.book.jobs.get(job_id)
            if machine is not None:
                machine.mark_terminated(reason)
        self._load_stale()
        # Decide once, after the whole replay: intermediate states of the history never act.
        for action in self.book.decide(self.now()):
            self._adopt(action)
        self._prune_image_cache()
        await self.reconcile()
        self._started = True
        # Ended jobs had their enclaves stopped by the reconciliation above; only jobs that
        # should run need a task.
        for job_id, want in list(self._want.items()):
            if want is not None:
                self._kick(job_id)

    async def run(self) -> None:
        """Start, then follow the chain until cancelled. Enclaves keep running afterwards."""
        if not self._started:
            await self.start()
        try:
            while True:
                try:
                    await self.step()
                except Exception as exc:
                    # One bad round (a database hiccup, a bug) must not stop the provider from
                    # following the chain: report it and try again next round.
                    log.exception("control plane round failed")
                    self.last_error = f"control plane round failed: {exc}"
                await asyncio.sleep(self._sleep_time())
        finally:
            await self.aclose()

    async def step(self) -> None:
        """One round: index new blocks, apply new events, act, and heartbeat when due."""
        await self._poll_chain()
        self._read_events()
        self._dispatch(self.book.decide(self.now()))
        await self._renew_leases()
        if time.monotonic() - self._last_heartbeat >= self.heartbeat_interval:
            await self.reconcile()

    async def _renew_leases(self) -> None:
        """Give each running enclave the end of its paid time as its lease, when that moved.

        The lease is the job's deadline plus the safety margin (when the balance actually runs
        out): the control plane stops the enclave at the deadline itself; the lease only acts
        when it cannot.
        """
        for job_id, enclave in list(self._have.items()):
            machine = self.book.jobs.get(job_id)
            deadline = machine.deadline() if machine is not None else None
            if deadline is None or machine is None:
                continue
            until = deadline + machine.policy.safety_margin_s
            if self._leases.get(enclave.enclave_id) == until:
                continue
            try:
                await self.runner.renew(enclave.enclave_id, until)
            except ReefError as exc:
                log.warning(
                    "job %s: cannot renew the lease of %s: %s",
                    job_id,
                    enclave.enclave_id,
                    _shown(exc),
                )
                continue
            self._leases[enclave.enclave_id] = until

    async def aclose(self) -> None:
        """Stop working on jobs (in-flight launches are cancelled); enclaves are left running."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for fetch in list(self._fetches.values()):
            fetch.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self.fetcher.close()

    async def stop_all(self) -> None:
        """Stop every enclave this control plane started (``reef up`` on Ctrl-C)."""
        await self.aclose()
        for enclave in await self.runner.list():
            with contextlib.suppress(ReefError):
                await self.runner.stop(enclave.enclave_id)
        self._have.clear()

    async def idle(self) -> None:
        """Return once no job has work in flight (wrap it in ``asyncio.timeout``)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks.values()))

    # -- the chain side ----------------------------------------------------------------------

    async def _poll_chain(self) -> None:
        try:
            await asyncio.to_thread(self.feed.poll)
            self._chain_time = self.feed.chain_time()
        except ChainError as exc:
            # Keep serving and keep the enclaves: the chain may come back. Decisions stay on the
            # last known state, and insolvency deadlines still fire from it.
            if str(exc) != self.last_error:
                log.warning("cannot index the market: %s", _shown(exc))
            self.last_error = str(exc)
        else:
            self.last_error = ""

    def _read_events(self) -> None:
        while True:
            events = self.feed.events(after=self._cursor, limit=1000)
            if not events:
                return
            for event in events:
                try:
                    self.book.apply(event.event)
                except ReefError as exc:
                    log.error(
                        "skipping malformed event %s (%s): %s", event.id, event.name, _shown(exc)
                    )
                except Exception as exc:
                    # Chain data is written by strangers: an event this code cannot digest must
                    # not stall every other job (the round would fail on it forever, and events
                    # before it in the batch would be applied again each time). Its job's books
                    # can no longer be trusted, so that job ends; the others go on.
                    log.exception("event %s (%s) could not be applied", event.id, event.name)
                    self._poisoned(event, exc)
                self._cursor = event.id

    def _poisoned(self, event: IndexedEvent, exc: Exception) -> None:
        job_id = event.event.job if isinstance(event.event, JobEvent) else None
        machine = self.book.jobs.get(job_id) if job_id is not None else None
        if machine is not None:
            machine.fail(
                f"the provider could not apply the job's {event.name} event "
                f"({type(exc).__name__}); the job's accounting is unknown, so it ends"
            )

    def _sleep_time(self) -> float:
        deadline = self.book.next_deadline()
        if deadline is None:
            return self.poll_interval
        return max(0.05, min(self.poll_interval, deadline - self.now()))

    # -- acting -------------------------------------------------------------------------------

    def _adopt(self, action: Action) -> None:
        """Make ``action`` what its job wants; a termination is recorded before anything acts."""
        if isinstance(action, Terminate):
            self._record_terminated(action)
            self._want[action.job_id] = None
            self._replaced_at.pop(action.job_id, None)
            self._launched_once.discard(action.job_id)
            ended = self._ended.get(action.job_id)
            if ended is not None:
                ended.set()
        else:
            self._want[action.job_id] = action.spec

    def _dispatch(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, Terminate):
                log.info("job %s: terminate (%s)", action.job_id, _shown(action.reason))
            else:
                log.info("job %s: launch %s", action.job_id, _shown(action.spec.image_url))
            self._adopt(action)
            self._kick(action.job_id)

    def _kick(self, job_id: JobId) -> None:
        self._dirty.add(job_id)
        task = self._tasks.get(job_id)
        if task is None or task.done():
            self._tasks[job_id] = asyncio.create_task(self._converge(job_id), name=f"job {job_id}")

    async def _converge(self, job_id: JobId) -> None:
        delay = self.retry_delay
        try:
            while job_id in self._dirty:
                self._dirty.discard(job_id)
                stopping = self._want.get(job_id) is None
                try:
                    await self._converge_once(job_id)
                    self._errors.pop(job_id, None)
                    delay = self.retry_delay
                except (ImageError, InputError) as exc:
                    # Retrying cannot fix a refused or invalid image, or limits the backend
                    # cannot meet: the job ends, and the owner sees why.
                    self._errors[job_id] = str(exc)
                    machine = self.book.jobs.get(job_id)
                    if machine is not None:
                        machine.fail(f"the job cannot be run: {exc}")
                    self._dispatch(self.book.decide(self.now()))
                except Exception as exc:
                    if not isinstance(exc, (ReefError, OSError)):
                        # A bug must not silently kill the job's task: log it loudly and retry.
                        log.exception("job %s: unexpected failure", job_id)
                    self._retry_later(job_id, exc, delay)
                    if not stopping and self._want.get(job_id) is None:
                        continue  # it ended during the attempt: stop it now, not after a delay
                    await self._pause(job_id, delay)
                    delay = min(delay * 2, 30.0)
        finally:
            if self._tasks.get(job_id) is asyncio.current_task():
                del self._tasks[job_id]

    async def _pause(self, job_id: JobId, seconds: float) -> None:
        """Wait ``seconds`` before working on the job again, or less if it ends meanwhile.

        A job whose task waits (a retry's backoff, the replacement interval) may still have an
        enclave running: its end (a stop, its money running out) must stop it at once, not
        after a wait its owner can bring about (a metadata update naming a server that fails).
        """
        ended = self._ended.setdefault(job_id, asyncio.Event())
        try:
            async with asyncio.timeout(seconds):
                await ended.wait()
        except TimeoutError:
            pass
        finally:
            self._ended.pop(job_id, None)

    async def _unless_ended(
        self, job_id: JobId, work: Coroutine[Any, Any, FetchedImage]
    ) -> FetchedImage | None:
        """What ``work`` returns, or ``None`` once the job ends first.

        A download for a replacement may last as long as its server makes it (up to the
        download deadline: an hour and more), and the job's running enclave must not outlive
        its end meanwhile; the download itself goes on for any other job that waits for it.
        """
        ended = self._ended.setdefault(job_id, asyncio.Event())
        task = asyncio.ensure_future(work)
        waiter = asyncio.ensure_future(ended.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            self._ended.pop(job_id, None)
            if not task.done():
                task.cancel()
        return task.result() if task.done() and not task.cancelled() else None

    def _retry_later(self, job_id: JobId, exc: BaseException, delay: float) -> None:
        self._errors[job_id] = str(exc)
        log.warning("job %s: launch failed, retrying in %.1f s: %s", job_id, delay, _shown(exc))
        self._dirty.add(job_id)

    async def _converge_once(self, job_id: JobId) -> None:
        want = self._want.get(job_id)
        have = self._have.get(job_id)
        if want is None:
            # Ask the backend rather than trust our memory: a replacement that failed half-way
            # may have left an enclave we no longer track.
            for enclave in await self.runner.list():
                if enclave.job_id == job_id:
                    self._note_state(job_id, enclave)
                    if enclave.state_key:
                        self._mark_stale(enclave.state_key)  # noted before the stop
                    await self.runner.stop(enclave.enclave_id)
                    self._charge_churn(job_id)
            self._have.pop(job_id, None)
            self._forget_state(job_id)
            self._drop_unwanted_images()
            await self._drop_unwanted_states()
            return
        key = launch_key(want)
        if have is not None and have.key == key and have.state in LIVE_STATES:
            return
        if have is not None and have.state in LIVE_STATES:
            wait = self._replaced_at.get(job_id, -math.inf) + self.replace_interval
            wait -= time.monotonic()
            if wait > 0:
                # Its owner changes the metadata faster than enclaves are worth restarting:
                # the latest metadata is run once the interval is over (the changes between
                # are skipped).
                self._errors[job_id] = (
                    f"the job's enclave was replaced less than {self.replace_interval:g} s ago; "
                    f"its new metadata is run in {wait:.0f} s"
                )
                await self._pause(job_id, wait)
                self._dirty.add(job_id)
                return
        self._check_capacity(job_id, want)
        churn, charged = self._churn_wait(job_id, want.owner, first=have is None)
        if churn > 0:
            self._errors[job_id] = (
                f"the job's owner has had enclaves started and stopped on this provider faster "
                f"than one every {self.launch_interval:g} s (at most {self.launch_burst} at "
                f"once); this one starts in {math.ceil(churn)} s"
            )
            await self._pause(job_id, churn)
            self._dirty.add(job_id)
            return
        self._launching.add(job_id)  # its memory is counted from now on, not once it runs
        started = False
        try:
            image = await self._unless_ended(job_id, self._fetch_for(want))
            if image is None or self._want.get(job_id) != want:
                self._dirty.add(job_id)  # changed while downloading: start over
                return
            if have is not None:
                # The backend stops the old enclave before starting the new one, so a job never
                # has two; the old one is forgotten first in case the replacement fails half-way.
                self._have.pop(job_id, None)
                if have.state_key:
                    self._mark_stale(have.state_key)  # kept if the new enclave has it too
                self._have[job_id] = await self.runner.replace(have.enclave_id, want, image, key)
                self._replaced_at[job_id] = time.monotonic()
                self._leases.pop(have.enclave_id, None)  # a replacement starts without a lease
            else:
                self._have[job_id] = await self.runner.launch(want, image, key)
            started = True
            self._launched_once.add(job_id)
            self._note_state(job_id, self._have[job_id], want)
        finally:
            self._launching.discard(job_id)
            if charged and not started:
                self._refund_churn(want.owner)  # nothing started: the start is given back
        self._drop_unwanted_images()  # the image a replaced enclave ran may be wanted no more
        await self._drop_unwanted_states()  # and so may its /state
        await self._renew_leases()
        if self._want.get(job_id) != want:
            self._dirty.add(job_id)

    def _churn_left(self, owner: Address, burst: int) -> float:
        """The enclave starts and stops ``owner`` has left now (``burst``, the
        :attr:`launch_burst`, when it has not churned lately)."""
        if owner not in self._churn:
            return float(burst)
        left, at = self._churn[owner]
        now = time.monotonic()
        left = min(float(burst), left + (now - at) / self.launch_interval)
        if left >= burst:
            del self._churn[owner]  # all back: as if it had never churned
        else:
            self._churn[owner] = (left, now)
        return left

    def _churn_wait(self, job_id: JobId, owner: Address, *, first: bool) -> tuple[float, bool]:
        """How long (seconds) the start of ``job_id``'s enclave waits for its owner's churn
        allowance (0: it may start now), and whether a start was taken from the allowance
        (here, not once the enclave runs, so that jobs waiting together do not all pass on
        one). A first launch of an owner who has not churned lately is free."""
        if self.launch_burst is None:
            return 0.0, False
        left = self._churn_left(owner, self.launch_burst)
        if owner not in self._churn and first and job_id not in self._launched_once:
            return 0.0, False
        if left < 1:
            return (1 - left) * self.launch_interval, False
        self._churn[owner] = (left - 1, time.monotonic())
        return 0.0, True

    def _refund_churn(self, owner: Address) -> None:
        """Give back a start taken by :meth:`_churn_wait` for a launch that did not happen (a
        download that failed, a job that ended meanwhile)."""
        if owner in self._churn and self.launch_burst is not None:
            left = self._churn_left(owner, self.launch_burst)
            self._churn[owner] = (min(float(self.launch_burst), left + 1), time.monotonic())

    def _charge_churn(self, job_id: JobId, owner: Address | None = None) -> None:
        """Count one enclave start or stop against the churn allowance of the job's owner."""
        if self.launch_burst is None:
            return
        if owner is None:
            machine = self.book.jobs.get(job_id)
            owner = machine.owner if machine is not None else None
        if owner is None:
            return
        left = self._churn_left(owner, self.launch_burst)
        self._churn[owner] = (max(0.0, left - 1), time.monotonic())

    def _drop_unwanted_images(self) -> None:
        """Remove the downloaded images no job wants any more: a tenant may open job after job,
        each with another image of up to 4 GiB, and the cache would keep them all for good."""
        wanted = {spec.image_url for spec in self._want.values() if spec is not None}
        for url, sha256 in list(self._images.items()):
            if url in wanted or url in self._fetches:
                continue
            del self._images[url]
            if sha256 not in {self._images.get(u) for u in wanted}:
                self.fetcher.forget(sha256)

    def _note_state(
        self, job_id: JobId, enclave: RunningEnclave, spec: LaunchSpec | None = None
    ) -> None:
        """Remember ``enclave``'s ``/state`` as its job's (made for ``spec``, when known); the
        job's previous one, if another (it moved to another image), waits for removal."""
        if not enclave.state_key:
            return
        before = self._states.get(job_id)
        if before is not None and before != enclave.state_key:
            self._mark_stale(before)
        self._states[job_id] = enclave.state_key
        if spec is None:
            want = self._want.get(job_id)
            spec = want if want is not None and launch_key(want) == enclave.key else None
        if spec is not None:
            self._state_specs[enclave.state_key] = _state_identity(spec)

    def _forget_state(self, job_id: JobId) -> None:
        """The job ended: its ``/state`` waits for removal."""
        state = self._states.pop(job_id, None)
        if state is not None:
            self._mark_stale(state)

    async def _drop_unwanted_states(self) -> None:
        """Remove the ``/state`` of ended (or replaced) enclaves that no job that should run
        has: /state lives on the provider's disk (up to 1 GiB each) after its enclave, and a
        tenant opening job after job, each with another image, would leave one per image for
        good. A job that should run keeps its own across restarts (its enclave's and the
        provider's), and so does every job whose spec would make the same one. A removal that
        fails (an enclave still runs with it) is tried again at the next heartbeat."""
        identities = {_state_identity(spec) for spec in self._want.values() if spec is not None}
        kept = {
            state for job_id, state in self._states.items() if self._want.get(job_id) is not None
        }
        kept |= {enclave.state_key for enclave in self._have.values()}
        kept |= {state for state, made in self._state_specs.items() if made in identities}
        for state in sorted(self._stale_states):
            if state in kept:
                self._unmark_stale(state)  # wanted again; noted again when its job ends
                continue
            try:
                removed = await self.runner.remove_state(state)
            except (ReefError, OSError) as exc:
                # OSError too: a file the backend cannot delete must not lose the removal
                # (nor fail the round that asked).
                log.warning("cannot remove the /state %s yet: %s", state, _shown(exc))
                continue
            self._unmark_stale(state)
            self._state_specs.pop(state, None)
            if removed:
                log.info("removed the /state %s: no job wants it", state)

    def _mark_stale(self, state: str) -> None:
        """Note ``state`` for removal once no job wants it, in the database before anything
        acts on it: a provider killed between stopping an enclave and removing its ``/state``
        (or whose removal failed and waits for a retry) would leave it on disk for good, as
        the enclave that named it is gone. Written ahead of the stop, so a removal is noted
        even if the process dies in between; a state still wanted is kept by
        :meth:`_drop_unwanted_states`, which then forgets the note."""
        if state in self._stale_states:
            return
        self._stale_states.add(state)
        made = self._state_specs.get(state)
        made_for = None if made is None else json.dumps([made[0], made[1].hex(), made[2]])
        try:
            with self.feed.engine.begin() as conn:
                conn.execute(self._forget_pending(state))
                conn.execute(
                    sa.insert(self._pending_states).values(
                        stream=self.feed.stream, state_key=state, made_for=made_for
                    )
                )
        except sa.exc.SQLAlchemyError as exc:
            # Still removed by this run; only a restart before then would forget it.
            log.warning("cannot record the /state %s for removal: %s", state, exc)

    def _forget_pending(self, state: str) -> sa.Delete:
        """Deletes ``state``'s noted removal: :meth:`_mark_stale` rewrites it, unmark drops it."""
        table = self._pending_states
        return sa.delete(table).where(
            table.c.stream == self.feed.stream, table.c.state_key == state
        )

    def _unmark_stale(self, state: str) -> None:
        """``state`` was removed, or is wanted again: no longer waiting for removal."""
        self._stale_states.discard(state)
        try:
            with self.feed.engine.begin() as conn:
                conn.execute(self._forget_pending(state))
        except sa.exc.SQLAlchemyError as exc:
            log.warning("cannot forget the /state %s's removal: %s", state, exc)

    def _load_stale(self) -> None:
        """The removals noted by earlier runs (:meth:`_mark_stale`), with what each ``/state``
        was made for, so that a job that should run with the same keeps it."""
        with self.feed.engine.connect() as conn:
            rows = conn.execute(
                sa.select(self._pending_states.c.state_key, self._pending_states.c.made_for).where(
                    self._pending_states.c.stream == self.feed.stream
                )
            ).all()
        for row in rows:
            state = str(row.state_key)
            self._stale_states.add(state)
            if row.made_for is not None and state not in self._state_specs:
                with contextlib.suppress(ValueError, TypeError):
                    url, params, debug = json.loads(str(row.made_for))
                    self._state_specs[state] = (str(url), bytes.fromhex(params), bool(debug))

    def _prune_image_cache(self) -> None:
        """On start, keep in the download cache only the images the jobs that should run name.

        The jobs that ended while the provider was down (closed, stopped, out of money) were
        never seen to end, so nothing else would remove their images. The kept ones are noted
        as their URLs' images, so that they leave once their jobs end (a job whose enclave is
        found running needs no download, which is what notes them otherwise). An image under a
        URL that names no hash is downloaded again whenever it is needed, so none is kept.
        """
        keep: set[str] = set()
        for spec in self._want.values():
            sha256 = None if spec is None else content_address(spec.image_url)
            if spec is not None and sha256 is not None and self.fetcher.cached(sha256):
                keep.add(sha256)
                self._images[spec.image_url] = sha256
        removed = self.fetcher.keep_only(keep)
        if removed:
            log.info("removed %d cached images no open job names", len(removed))

    def _check_capacity(self, job_id: JobId, want: LaunchSpec) -> None:
        """Raise when ``want`` does not fit beside the other jobs' enclaves (a replacement
        frees its own enclave's memory first, so it counts only once).

        Raises:
            MarketError: the memory budget would be passed; the launch is retried later.
        """
        held = 0
        for other in self._have.keys() | self._launching:
            spec = self._want.get(other)
            if other != job_id and spec is not None:
                held += spec.memory
        if held + want.memory > self.memory_budget_mib:
            raise MarketError(
                f"the provider is at capacity: its enclaves hold {held} MiB of its "
                f"{self.memory_budget_mib} MiB, and this job asks for {want.memory} MiB; it is "
                "launched when others end",
                hint="wait, or stop the job (`reef jobs stop`) and close it to take the rest back",
            )

    async def _fetch_for(self, want: LaunchSpec) -> FetchedImage:
        """The image ``want`` names, downloaded within its owner's share of downloads
        (:attr:`downloads_per_owner` distinct images at once; one already cached is free).

        Raises:
            MarketError: the owner's jobs download as many images as they may already; the
                launch is retried later.
            as :meth:`ImageFetcher.fetch`.
        """
        sha256 = content_address(want.image_url)
        if sha256 is not None and self.fetcher.cached(sha256):
            return await self._fetch(want.image_url)
        downloading = self._owner_downloads.setdefault(want.owner, {})
        if want.image_url not in downloading and len(downloading) >= self.downloads_per_owner:
            raise MarketError(
                f"the job's owner already has {len(downloading)} images downloading on this "
                f"provider, the most one owner may at once; this one is downloaded when one of "
                "them is done",
                hint="wait, or have your jobs use fewer distinct images at once",
            )
        downloading[want.image_url] = downloading.get(want.image_url, 0) + 1
        try:
            return await self._fetch(want.image_url)
        finally:
            left = downloading[want.image_url] - 1
            if left:
                downloading[want.image_url] = left
            else:
                del downloading[want.image_url]
            if not downloading:
                self._owner_downloads.pop(want.owner, None)

    async def _fetch(self, url: str) -> FetchedImage:
        """The image at ``url``, downloading it once however many jobs ask at the same time (a
        burst of jobs of one image would otherwise download and hash it once each).

        Raises:
            as :meth:`ImageFetcher.fetch`, to every job that waits for the download.
        """
        task = self._fetches.get(url)
        if task is None:
            task = asyncio.create_task(self.fetcher.fetch(url), name=f"fetch {url[:80]}")
            self._fetches[url] = task

            def forget(done: asyncio.Task[FetchedImage]) -> None:
                if self._fetches.get(url) is done:
                    del self._fetches[url]
                if not done.cancelled():
                    done.exception()  # retrieved: the jobs that waited got it, if any did

            task.add_done_callback(forget)
        # Shielded: a job that stops waiting (its task cancelled) leaves the download to the
        # others.
        image = await asyncio.shield(task)
        self._images[url] = image.sha256
        return image

    async def reconcile(self) -> None:
        """Make the backend match the jobs: relaunch what is missing, stop what is not paid for.

        Jobs with work in flight are left to their task.
        """
        self._last_heartbeat = time.monotonic()
        try:
            enclaves = list(await self.runner.list())
        except ReefError as exc:
            log.warning("cannot list enclaves: %s", _shown(exc))
            return
        by_job: dict[JobId, list[RunningEnclave]] = {}
        for enclave in enclaves:
            by_job.setdefault(enclave.job_id, []).append(enclave)
        busy = {job_id for job_id, task in self._tasks.items() if not task.done()}
        for job_id in set(by_job) | set(self._have) | set(self._want):
            if job_id in busy:
                continue
            want = self._want.get(job_id)
            found = by_job.get(job_id, [])
            current = launch_key(want) if want is not None else None
            for enclave in found:
                if current is None or enclave.key == current:
                    self._note_state(job_id, enclave)
                elif enclave.state_key and enclave.state_key != self._states.get(job_id):
                    # A leftover of an earlier spec of the job (stopped below): its /state
                    # goes unless the job's current spec makes the same one.
                    self._mark_stale(enclave.state_key)
            keep: RunningEnclave | None = None
            if want is not None:
                key = launch_key(want)
                live = [e for e in found if e.key == key and e.state in LIVE_STATES]
                live.sort(key=lambda e: (e.state != "running", e.enclave_id))
                keep = live[0] if live else None
            for enclave in found:
                if enclave is keep:
                    continue
                if want is None and enclave.state_key:
                    self._mark_stale(enclave.state_key)  # noted before the stop
                log.info(
                    "job %s: stopping enclave %s (%s)",
                    job_id,
                    enclave.enclave_id,
                    "not paid for" if want is None else f"{enclave.state}, or a duplicate",
                )
                try:
                    await self.runner.stop(enclave.enclave_id)
                except ReefError as exc:
                    log.warning("cannot stop enclave %s: %s", enclave.enclave_id, _shown(exc))
            if keep is not None:
                self._have[job_id] = keep
            else:
                gone = self._have.pop(job_id, None)
                if want is not None:
                    dead = found[0] if found else gone
                    if found:
                        ended = found[0]
                        self._last_exit[job_id] = {
                            "state": ended.state,
                            "exit_code": ended.exit_code,
                            "reason": ended.reason,
                            "console": list(ended.console),
                        }
                    if dead is not None:
                        self._restarts[job_id] = self._restarts.get(job_id, 0) + 1
                        self._last_restart[job_id] = (
                            f"enclave {dead.enclave_id} was {dead.state if found else 'gone'} "
                            f"at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(self.now()))} "
                            "UTC; relaunched"
                        )
                    machine = self.book.jobs.get(job_id)
                    if machine is not None:
                        machine.forget_launch()
                    if self._started:
                        self._kick(job_id)
            if want is None:
                self._forget_state(job_id)
        # The ended jobs' /state, those of jobs that ended while the provider was down included
        # (their enclaves, stopped by their leases, are still listed), and any left to retry.
        await self._drop_unwanted_states()

    # -- persistence --------------------------------------------------------------------------

    def _record_terminated(self, action: Terminate) -> None:
        values = {
            "stream": self.feed.stream,
            "job_id": action.job_id,
            "reason": action.reason,
            "at": self.now(),
        }
        try:
            with self.feed.engine.begin() as conn:
                exists = conn.execute(
                    sa.select(self._terminated.c.job_id)
                    .where(self._terminated.c.stream == values["stream"])
                    .where(self._terminated.c.job_id == action.job_id)
                ).first()
                if exists is None:
                    conn.execute(sa.insert(self._terminated).values(**values))
        except sa.exc.SQLAlchemyError as exc:
            raise ChainError(f"cannot record the termination of {action.job_id}: {exc}") from exc

    def _load_terminated(self) -> dict[JobId, str]:
        with self.feed.engine.connect() as conn:
            rows = conn.execute(
                sa.select(self._terminated.c.job_id, self._terminated.c.reason).where(
                    self._terminated.c.stream == self.feed.stream
                )
            ).all()
        # Stored by _record_terminated from a JobId, so already in its one spelling.
        return {JobId(str(row.job_id)): str(row.reason) for row in rows}
