"""The executor: watches its Jobs contract, runs the jobs it is selected for, submits signed outputs.

One :class:`ExecutorService` per enclave key. It polls the chain for ``JobCreated`` events (one
``eth_getLogs`` per new block range; the devnet mines a block per transaction, so polling every
50 ms keeps request -> output well under a second). A poll asks only for the block number; the
head block (for the chain's clock) and the events are read when it moves. Once no block has come
for a while the polls slow down (``idle_poll_interval_s``) until one does, by the policy the relay
gateway's loop follows too (:mod:`reef.serverless._polling`). For each job it was selected for:

1. fetches the code by codehash (from the code contract's transaction calldata, through a
   :class:`CodeCache` on disk);
2. runs it with the job's input on the :class:`FunctionRuntime`, under the job's deadline and the
   operator's memory, output and network limits;
3. signs ``SubmitOutput(jobId, codehash, inputHash, output, totalTime, errorCode,
   signTimestamp)`` with the enclave key in the deployment's domain and sends ``submitOutput``
   from that same key (the operator funds the enclave's address with gas). The codehash and
   input hash are those of the code and input it ran, as its node reported the job: the
   contract checks them against the job it stored, so a node that forged them gets its enclave's
   output refused rather than paid for another user's job.

A failure on reef's side (:class:`~reef.errors.ServerlessError`: workerd crashed, no capacity;
or a :class:`~reef.errors.ChainError` fetching the code: the node failed, or answered a
transaction that does not hash to the codehash) submits nothing: the function is never blamed
for it, and the chain's slashing applies. For every job it sees, selected or not, it also asks
``slashOnExecutionTimeout`` after the job's deadline and buffer if the job is still open (anyone
may; the losers of that race are refused at simulation, before sending).

web3.py is synchronous; chain calls run in threads (:func:`asyncio.to_thread`), and one lock
orders this key's transactions so their nonces never collide.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from eth_account import Account
from web3 import Web3

from reef.chain import http_web3
from reef.crypto import Secp256k1PrivateKey
from reef.errors import ChainError, ContractRevertError, ReefError, ServerlessError
from reef.serverless._cache import CodeCache
from reef.serverless._contracts import (
    ENV_JAVASCRIPT,
    JobsParams,
    ServerlessCodeClient,
    ServerlessJobsClient,
)
from reef.serverless._events import JobCreated
from reef.serverless._polling import _poll_forever, _PollPolicy
from reef.serverless._result import MAX_TIMEOUT_MS, CallResult, ErrorCode, Limits
from reef.serverless._runtime import FunctionRuntime
from reef.serverless._signing import JobsDomain, SignedOutput, sign_output
from reef.serverless._tasks import _TaskSet

__all__ = ["ExecutorService", "ExecutorSettings", "ExecutorStats"]

log = logging.getLogger("reef.serverless.executor")


@dataclass(frozen=True, kw_only=True)
class ExecutorSettings:
    """Where an executor's chain is and how it runs jobs.

    Attributes:
        rpc_url: the JSON-RPC endpoint of the chain the Jobs contract is on.
        jobs_contract, code_contract: the deployment's addresses.
        limits: memory, output and network limits of every call (the deadline is each job's).
        poll_interval_s: how often the chain is asked for new blocks.
        idle_poll_interval_s: how often, once no block has come for ``idle_after_s`` seconds
            (the first job after a quiet spell waits up to this long more to be seen).
        slash: close jobs past their deadline that are still open (slashing silent executors).
        start_block: the first block to read events from (default: the chain's head at start).
    """

    rpc_url: str
    jobs_contract: str
    code_contract: str
    limits: Limits = field(default_factory=Limits)
    poll_interval_s: float = 0.05
    idle_poll_interval_s: float = 0.25
    idle_after_s: float = 10.0
    slash: bool = True
    start_block: int | None = None

    @property
    def poll_policy(self) -> _PollPolicy:
        """The poll loop's intervals (``poll_interval_s``, ``idle_poll_interval_s`` after
        ``idle_after_s`` without a block)."""
        return _PollPolicy(
            interval_s=self.poll_interval_s,
            idle_interval_s=self.idle_poll_interval_s,
            idle_after_s=self.idle_after_s,
        )


@dataclass
class ExecutorStats:
    """Counters of one executor (for tests, benchmarks and ``/details``)."""

    jobs_seen: int = 0
    jobs_selected: int = 0
    outputs_submitted: int = 0
    failures: int = 0
    slashes_sent: int = 0
    last_block: int = 0


class ExecutorService:
    """Runs the jobs of one enclave key. ``await start()``, then ``await aclose()``.

    Args:
        key: the enclave's secp256k1 key (signs outputs, pays gas).
        settings: see :class:`ExecutorSettings`.
        runtime: the function runtime (shared with the HTTP gateway).
        cache_dir: where code is cached by codehash.
        w3: a web3 to use instead of one over ``settings.rpc_url`` (tests: the devnet in process).
        clock: wall-clock seconds (signature timestamps are chain time: wall clock plus the
            chain's offset, measured at each poll).
    """

    def __init__(
        self,
        key: Secp256k1PrivateKey,
        settings: ExecutorSettings,
        runtime: FunctionRuntime,
        cache_dir: Path,
        *,
        w3: Web3 | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.settings = settings
        self.runtime = runtime
        self.w3 = w3 or http_web3(settings.rpc_url, timeout=30)
        account = Account.from_key(key.secret)
        self.jobs = ServerlessJobsClient(self.w3, settings.jobs_contract, account=account)
        self.code = ServerlessCodeClient(self.w3, settings.code_contract)
        self.cache = CodeCache(cache_dir, self._fetch_code)
        self.stats = ExecutorStats()
        self._clock = clock
        self._offset = 0.0
        self._send_lock = asyncio.Lock()
        # The poll loop, each job it runs and each deadline it watches.
        self._tasks = _TaskSet(f"executor {self.address}", log)
        self._domain: JobsDomain | None = None
        self._params: JobsParams | None = None

    @property
    def address(self) -> str:
        """The enclave key's checksummed address (its identity on chain)."""
        return self.key.public_key.checksum_address

    @property
    def domain(self) -> JobsDomain:
        if self._domain is None:
            raise ServerlessError("the executor has not started", hint="await start() first")
        return self._domain

    def chain_time(self) -> int:
        """Now on the chain's clock (wall clock plus the offset seen at the last poll)."""
        return int(self._clock() + self._offset)

    async def _fetch_code(self, codehash: str) -> bytes | None:
        return await asyncio.to_thread(self.code.fetch_code, codehash)

    async def start(self) -> ExecutorService:
        """Read the deployment's constants and start watching from the head (or start_block)."""
        self._domain, self._params, head = await asyncio.to_thread(self._connect)
        start = self.settings.start_block
        self.stats.last_block = (head if start is None else start) - 1
        polls = _poll_forever(
            self._poll_moved, self.settings.poll_policy, owner=f"executor {self.address}", log=log
        )
        self._tasks.spawn(polls, "executor poll")
        return self

    def _connect(self) -> tuple[JobsDomain, JobsParams, int]:
        try:
            head = self.w3.eth.get_block("latest")
        except Exception as exc:  # web3 and transport errors vary; any means no chain
            raise ChainError(
                f"cannot reach the chain at {self.settings.rpc_url}: {exc}",
                hint="check the RPC URL and that the node runs",
            ) from exc
        self._offset = int(head["timestamp"]) - self._clock()
        return self.jobs.domain(), self.jobs.params(), int(head["number"])

    async def aclose(self) -> None:
        """Stop polling, cancel running jobs and deadline watches, and wait for them to end."""
        await self._tasks.cancel_all()

    async def __aenter__(self) -> ExecutorService:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _poll_moved(self) -> bool:
        """One poll (:meth:`poll_once`): whether it saw a new block."""
        before = self.stats.last_block
        await self.poll_once()
        return self.stats.last_block != before

    async def poll_once(self) -> list[JobCreated]:
        """Read new ``JobCreated`` events and start their jobs; returns the events seen."""
        requests, next_block = await asyncio.to_thread(
            self.jobs.events_to_head, self.stats.last_block + 1, JobCreated
        )
        number = next_block - 1
        if number <= self.stats.last_block:
            return []
        # The chain's clock moves with its blocks: read it only when there is a new one, and
        # before the jobs start (their outputs are signed at the chain's time).
        head = await asyncio.to_thread(self.w3.eth.get_block, number)
        self._offset = max(self._offset, int(head["timestamp"]) - self._clock())
        self.stats.last_block = number
        for request in requests:
            self.stats.jobs_seen += 1
            if request.env != ENV_JAVASCRIPT:
                continue
            if self.address in request.selected_executors:
                self.stats.jobs_selected += 1
                self._tasks.spawn(self.execute(request), f"job {request.job_id}")
            if self.settings.slash:
                self._tasks.spawn(self._close_when_late(request), f"watch job {request.job_id}")
        return requests

    async def run(self, request: JobCreated) -> CallResult:
        """Run one job's function (no chain writes)."""
        # A deployment may allow deadlines past the runtime's ceiling: such a job runs to that
        # ceiling (a timeout then, within the job's deadline) rather than not at all, which
        # would leave the executor silent and slashed.
        timeout_ms = min(MAX_TIMEOUT_MS, max(1, request.deadline))
        limits = replace(self.settings.limits, timeout_ms=timeout_ms)
        codehash = "0x" + request.codehash.hex()
        return await self.runtime.call(codehash, request.code_inputs, self.cache, limits=limits)

    async def execute(self, request: JobCreated) -> SignedOutput | None:
        """Run a job and submit its signed output; None when reef could not run it."""
        try:
            result = await self.run(request)
        except ReefError as exc:
            # reef's failure, not the function's (the runtime failed, or the code could not be
            # fetched or checked: the chain's node failed or lied): submit nothing rather than
            # blame it. Counted and logged as one line, not a task that died with a traceback.
            self.stats.failures += 1
            log.warning("executor %s: job %s not run: %s", self.address, request.job_id, exc)
            return None
        signed = sign_output(
            self.key,
            self.domain,
            job_id=request.job_id,
            codehash=request.codehash,  # what ran, as the node said: the contract checks it
            input_hash=request.input_hash,
            output=result.output if result.error_code is ErrorCode.OK else b"",
            total_time=min(result.total_time_ms, request.deadline),
            error_code=int(result.error_code),
            sign_timestamp=self.chain_time(),
        )
        try:
            async with self._send_lock:
                await asyncio.to_thread(self.jobs.submit_output, signed)
        except ReefError as exc:
            self.stats.failures += 1
            log.warning(
                "executor %s: output of job %s refused: %s", self.address, request.job_id, exc
            )
            return None
        self.stats.outputs_submitted += 1
        return signed

    async def _close_when_late(self, request: JobCreated) -> None:
        params = self._params or JobsParams()
        # The job started at (about) its block's time, which the poll saw at most one poll ago.
        await asyncio.sleep(params.output_window_s(request.deadline) + 1.5)
        # A burst of transactions can run the chain's clock ahead of the wall clock (a devnet
        # stamps each block at least a second after the last), and the job's start with it.
        for _ in range(60):
            try:
                job = await asyncio.to_thread(self.jobs.job, request.job_id)
                if job is None or job.closed:
                    return
                async with self._send_lock:
                    await asyncio.to_thread(self.jobs.slash_on_timeout, request.job_id)
                self.stats.slashes_sent += 1
                return
            except ContractRevertError as exc:
                if "not over yet" not in exc.reason:
                    return  # closed by someone else meanwhile
            except ReefError as exc:
                log.warning("executor %s: closing job %s: %s", self.address, request.job_id, exc)
            await asyncio.sleep(1.0)
