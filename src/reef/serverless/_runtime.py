"""Run JavaScript functions in workerd with limits reef enforces: deadline, memory, output, network.

workerd enforces no per-request limit (DESIGN.md §6): a ``while(true){}`` blocks every request of
its process, a large allocation aborts the whole process, and ``limits.cpuMs`` is ignored. So each
running call has a workerd process of its own, and reef watches it:

- **deadline**: past the call's deadline its process is killed (SIGKILL to its process group);
  the call gets code 4 and the next call of that function starts a fresh process (~25–60 ms);
- **memory**: V8's heap is capped (``--max-old-space-size``; exhausting it aborts workerd with
  "JavaScript heap out of memory") and the process's resident memory is sampled every few
  milliseconds and the process killed past the cap, since ArrayBuffers live outside V8's heap
  (measured: 16 MiB typed arrays grew one process to 6.8 GB). Either gives code 6. ``RLIMIT_AS``
  and ``RLIMIT_DATA`` are not used: workerd reserves gigabytes of address space at start and
  fails to start under any useful cap, and cgroups need privileges reef cannot count on;
- **output**: the response body is read up to the cap and no further (code 5);
- **network**: ``fetch()`` goes to a worker of reef's that refuses it without resolving any
  name, or to a network service with the operator's allow list (see ``_config``).
- **after the answer**: a function's ``ctx.waitUntil`` work runs on after its response with no
  deadline; an idle process that uses more than ``idle_cpu_ms`` of CPU is killed (measured: a
  spinning ``waitUntil`` kept a whole core busy while its process sat in the pool), and so is
  one whose resident memory passes its call's cap (a ``waitUntil`` that kept allocating held
  memory past the cap for as long as its process stayed idle). The same CPU allowance and the
  memory cap hold while reef waits to learn why a call's answer broke.

Isolation is therefore per process: a misbehaving function costs CPU on the machine but never
holds another call's process. Warm calls reuse an idle process that already loaded the same code
under the same process-level limits (an LRU of idle processes, bounded); a process goes back to
the pool only after a call that ended normally (code 0). As on Cloudflare, a function's
module-level state survives between warm calls of that function (never across functions).

One module (about 620 lines): a process's start, its watches (deadline, memory, CPU, output)
and the judging of its answer share the one process record and its timings; apart, each would
re-read when the others may kill it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from reef.errors import MisuseError, ServerlessError
from reef.serverless._config import MODULE_NAME, SOCKET_NAME, render_config
from reef.serverless._http import HttpRequest, RuntimeConnectionError, post, request_head
from reef.serverless._result import CallResult, ErrorCode, Limits
from reef.serverless._tasks import _TaskSet

__all__ = ["CodeSource", "FunctionRuntime", "RuntimeStats", "local_codehash"]

log = logging.getLogger("reef.serverless.runtime")

CodeSource = Callable[[str], Awaitable[bytes | None]]
"""Fetches a function's code by codehash; None when no code exists under it (code 1)."""

_LOG_KEEP = 64 * 1024  # bytes of a process's console output kept for the call's logs
_EXIT_WAIT_S = 2.0  # how long a process that dropped a call may take to exit and explain why
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
# Markers workerd prints when a module does not load (syntax error, exception at evaluation,
# no default export): "service main: Uncaught SyntaxError: ...".
_LOAD_FAILURE = (b"service main: Uncaught",)
_OOM = (b"JavaScript heap out of memory", b"Reached heap limit", b"Fatal process out of memory")
_MARKERS = _LOAD_FAILURE + _OOM
# Markers are looked for in the output as it is read, not in the kept tail: a load failure's
# message is the function's text (a 100 kB exception pushed "service main: Uncaught" out of the
# kept 64 KiB, and the verdict became "reef's failure"). A chunk is searched together with the
# end of the one before, so that a marker split between two reads is found.
_MARKER_CARRY = max(len(marker) for marker in _MARKERS) - 1


def _markers_in(carry: bytes, chunk: bytes) -> tuple[set[bytes], bytes]:
    """The markers in ``carry + chunk`` and the carry for the next chunk (its last bytes)."""
    window = carry + chunk
    return {marker for marker in _MARKERS if marker in window}, window[-_MARKER_CARRY:]


def _resident_bytes(pid: int) -> int | None:
    """A process's resident memory (procfs reads never block), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _cpu_ns(pid: int) -> int | None:
    """CPU time (user + system) a process has used, or None once it is gone."""
    usage = _usage(pid)
    return None if usage is None else usage[0]


def _usage(pid: int) -> tuple[int, int] | None:
    """A process's CPU time (user + system) and resident memory in bytes, from one procfs
    read (a warm call checks both: each read is some 25 us), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * _TICK_NS, int(fields[21]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def local_codehash(source: bytes) -> str:
    """The key of code that was not deployed (``reef fn dev``): ``0x`` + SHA-256 of the source.

    Deployed code is keyed by its transaction hash instead; the two never collide in practice.
    """
    return "0x" + hashlib.sha256(source).hexdigest()


@dataclass
class RuntimeStats:
    """Counters of one :class:`FunctionRuntime` (for tests, benchmarks and metrics)."""

    started: int = 0
    """workerd processes started (cold starts)."""
    reused: int = 0
    """calls served by an idle process (warm calls)."""
    killed: int = 0
    """processes killed for a deadline, memory or output verdict, or evicted."""
    running: int = 0
    idle: int = 0


@dataclass(eq=False)  # identity semantics: processes live in sets
class _Process:
    pool_key: tuple[str, int, tuple[str, ...]]
    proc: asyncio.subprocess.Process
    directory: Path
    socket_path: str
    output: bytearray = field(default_factory=bytearray)
    output_total: int = 0  # bytes ever written, so a call can slice its own logs
    parked_cpu_ns: int = 0  # CPU time used when it went idle
    drain: asyncio.Task[None] | None = None
    seen: set[bytes] = field(default_factory=set)  # the markers its output has held, ever

    def log_since(self, mark: int) -> str:
        start = max(0, len(self.output) - (self.output_total - mark))
        return self.output[start:].decode("utf-8", "replace")

    def log_tail(self) -> str:
        return self.output[-2000:].decode("utf-8", "replace")


class FunctionRuntime:
    """A pool of workerd processes that runs functions, one process per running call.

    Args:
        workerd: the workerd binary (:func:`reef.serverless.ensure_workerd`).
        limits: the default limits of a call (each call may override them).
        max_idle: idle processes kept warm across all functions (LRU beyond it).
        max_running: calls running at once; one more is refused with
            :class:`~reef.errors.ServerlessError` (capacity is reef's business, not the
            function's verdict).
        workdir: where each process's directory (config, code, Unix socket) goes; a fresh private
            temporary directory by default (Unix socket paths must stay short).
        memory_poll_s: how often a running call's resident memory is sampled.
        idle_cpu_ms: CPU an idle process may use after its answer (``ctx.waitUntil`` work), or
            one whose answer broke while reef waits to see it exit, before it is killed: past
            its response a function has no deadline, so without this a ``waitUntil`` that
            spins would burn a core, unbilled, for as long as it stays idle.
        idle_check_s: how often idle processes are checked against ``idle_cpu_ms`` and their
            memory cap.
        clock: monotonic nanoseconds (tests may pass a fake).

    Use as ``async with FunctionRuntime(...) as runtime:`` or call :meth:`aclose`.
    """

    def __init__(
        self,
        workerd: Path,
        *,
        limits: Limits | None = None,
        max_idle: int = 8,
        max_running: int = 16,
        workdir: Path | None = None,
        memory_poll_s: float = 0.005,
        idle_cpu_ms: int = 100,
        idle_check_s: float = 0.25,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if max_idle < 0 or max_running < 1:
            raise MisuseError("max_idle must be >= 0 and max_running >= 1")
        self._workerd = workerd
        # setpriv (util-linux) gives each workerd a parent-death signal before it execs, so a
        # runtime whose Python process dies (even by SIGKILL) leaves no workerd behind; the
        # signal survives exec, and setpriv costs ~1 ms per cold start.
        setpriv = shutil.which("setpriv")
        self._launcher = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        self._limits = limits or Limits()
        self._max_idle = max_idle
        self._max_running = max_running
        self._own_workdir = workdir is None
        self._workdir = Path(tempfile.mkdtemp(prefix="reef-fn-")) if workdir is None else workdir
        self._memory_poll_s = memory_poll_s
        self._clock = clock
        self._idle: OrderedDict[int, _Process] = OrderedDict()  # by pid, least recently used first
        self._busy: set[_Process] = set()
        self._running = 0
        self._stats = RuntimeStats()
        self._closed = False
        self._tasks = _TaskSet("function runtime", log)  # the idle sweep and evictions
        self._idle_cpu_ns = idle_cpu_ms * 1_000_000
        self._idle_check_s = idle_check_s
        self._sweeper: asyncio.Task[object] | None = None

    @property
    def limits(self) -> Limits:
        """The default limits of a call."""
        return self._limits

    @property
    def max_running(self) -> int:
        """How many calls run at once; one more is refused."""
        return self._max_running

    @property
    def stats(self) -> RuntimeStats:
        """A snapshot of the counters."""
        return RuntimeStats(
            started=self._stats.started,
            reused=self._stats.reused,
            killed=self._stats.killed,
            running=self._running,
            idle=len(self._idle),
        )

    async def __aenter__(self) -> FunctionRuntime:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Kill every process and remove the working files."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        victims = list(self._idle.values()) + list(self._busy)
        self._idle.clear()
        for process in victims:
            await self._kill(process)
        await self._tasks.drain()
        if self._own_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    async def call(
        self,
        codehash: str,
        body: bytes,
        code: CodeSource,
        *,
        limits: Limits | None = None,
        request: HttpRequest | None = None,
    ) -> CallResult:
        """Run the function deployed under ``codehash`` on ``body`` (with ``request``'s method,
        target and headers on the web2 path; a ``POST /`` otherwise).

        The code is fetched (through ``code``, usually a :class:`CodeCache`) before the call's
        clock starts: fetching is reef's work and never counts against the function's deadline.

        Raises:
            ServerlessError: reef could not run it (workerd failed, no capacity); errors from
                ``code`` propagate unchanged.
        """
        source = await code(codehash)
        if source is None:
            return CallResult(ErrorCode.CODE_NOT_FOUND, b"", 0)
        return await self.run(source, body, key=codehash, limits=limits, request=request)

    async def run(
        self,
        source: bytes,
        body: bytes = b"",
        *,
        key: str | None = None,
        limits: Limits | None = None,
        request: HttpRequest | None = None,
    ) -> CallResult:
        """Run the ES-module worker ``source`` on ``body`` (POSTed to it as the request body).

        Args:
            source: the module's text, UTF-8.
            body: the input.
            key: identifies the code for warm reuse (its codehash); default
                :func:`local_codehash` of ``source``. Processes are reused only for the same key,
                so one key must always mean the same code (a codehash does).
            limits: this call's limits (default: the runtime's).

        Raises:
            InputError: ``request`` cannot be sent over HTTP/1.1 (a path or header that is not
                latin-1 text, or holds characters HTTP forbids there).
            ServerlessError: reef could not run it (workerd failed to start or died for a reason
                that is not the function's verdict, or ``max_running`` calls are running).
        """
        if self._closed:
            raise MisuseError("this FunctionRuntime is closed")
        request_head(len(body), request)  # a request HTTP cannot carry fails here, not mid-call
        limits = limits or self._limits
        start = self._clock()
        try:
            source.decode("utf-8")
        except UnicodeDecodeError:
            return CallResult(ErrorCode.CODE_NOT_DECODABLE, b"", 0)
        if self._running >= self._max_running:
            raise ServerlessError(
                f"{self._max_running} calls are already running on this runtime",
                hint="retry shortly, or raise max_running",
            )
        self._running += 1  # counted before any await, so concurrent starts cannot overshoot
        try:
            pool_key = (key or local_codehash(source), limits.memory_bytes, limits.allow_network)
            process = self._take_idle(pool_key)
            cold = process is None
            if process is None:
                process = await self._start(pool_key, source, limits)
            self._busy.add(process)
            try:
                result = await self._exchange(process, body, limits, start, cold, request)
            except BaseException:
                self._busy.discard(process)
                await self._kill(process)
                raise
            self._busy.discard(process)
        finally:
            self._running -= 1
        if (
            result.error_code is ErrorCode.OK
            and process.proc.returncode is None
            and self._max_idle > 0
            and not self._closed
        ):
            self._park(process)
        else:
            await self._kill(process)
        return result

    # -- the call ----------------------------------------------------------------------------

    async def _exchange(
        self,
        process: _Process,
        body: bytes,
        limits: Limits,
        start: int,
        cold: bool,
        forwarded: HttpRequest | None = None,
    ) -> CallResult:
        mark = process.output_total
        deadline_s = self._remaining_s(start, limits)
        request = asyncio.create_task(
            post(process.socket_path, body, max_body=limits.output_bytes, request=forwarded)
        )
        watch = asyncio.create_task(self._watch_memory(process, limits.memory_bytes))
        try:
            done, _ = await asyncio.wait(
                {request, watch}, timeout=max(0.0, deadline_s), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            watch.cancel()
            if not request.done():
                request.cancel()
            await asyncio.wait({request, watch})  # both finished; a caller's cancel propagates
        if watch in done:  # the memory watch only returns when the cap was passed
            await self._kill(process)
            return CallResult(ErrorCode.MEMORY_LIMIT, b"", self._elapsed_ms(start), cold=cold)
        if request not in done:
            await self._kill(process)
            return CallResult(
                ErrorCode.TIMEOUT,
                b"",
                limits.timeout_ms,
                cold=cold,
                logs=process.log_since(mark),
            )
        try:
            response = request.result()
        except RuntimeConnectionError as exc:
            return await self._explain_drop(process, exc, start, limits, cold, mark)
        if response.too_large:
            return CallResult(
                ErrorCode.OUTPUT_TOO_LARGE, b"", self._elapsed_ms(start), response.status, cold
            )
        await asyncio.sleep(0)  # let the drain task pick up console lines already written
        return CallResult(
            ErrorCode.OK,
            response.body,
            self._elapsed_ms(start),
            response.status,
            cold,
            process.log_since(mark),
            response.headers,
        )

    async def _explain_drop(
        self,
        process: _Process,
        exc: RuntimeConnectionError,
        start: int,
        limits: Limits,
        cold: bool,
        mark: int,
    ) -> CallResult:
        """The runtime dropped the call: find out from its exit and output whose fault it was.

        workerd itself dropping a call (it died, and not of the function's memory or load
        failure) is reef's failure. A workerd that lives on after dropping the call dropped it
        because the function's own answer broke (its body stream threw, or its head was not
        HTTP): that is the function's verdict, the same as a function that throws (it answered
        500, here with no body). Blaming reef for it would let a function's author make every
        executor submit nothing, and be slashed to the author's profit.
        """
        dropped_ms = self._elapsed_ms(start)
        # The wait is not cut short by the deadline: a process dying of its heap is the
        # function's verdict (code 6) only once its output says so, and one that lives on
        # is told apart only by waiting. The call's time stays within its deadline. While it
        # waits, the process still runs the function (its ctx.waitUntil work): its memory stays
        # watched (unwatched, one took 600 MiB on a 96 MiB cap in those 2 s), and the wait ends
        # once it used the CPU an answered call may use after its answer, since a process that
        # computes is not dying (unbounded, a job that paid for 1 ms spun for 2 s).
        exited = asyncio.create_task(process.proc.wait())
        watch = asyncio.create_task(self._watch_memory(process, limits.memory_bytes))
        computing = asyncio.create_task(self._watch_cpu(process, self._idle_cpu_ns))
        waits = {exited, watch, computing}
        try:
            done, _ = await asyncio.wait(
                waits, timeout=_EXIT_WAIT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in waits:
                task.cancel()
            await asyncio.wait(waits)
        elapsed = min(self._elapsed_ms(start), limits.timeout_ms)
        if watch in done:
            await self._kill(process)
            return CallResult(ErrorCode.MEMORY_LIMIT, b"", elapsed, cold=cold)
        if exited in done and process.drain is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.drain, timeout=_EXIT_WAIT_S)
        if process.seen.intersection(_OOM):
            return CallResult(ErrorCode.MEMORY_LIMIT, b"", elapsed, cold=cold)
        if process.seen.intersection(_LOAD_FAILURE):
            return CallResult(
                ErrorCode.SYNTAX_ERROR, b"", elapsed, cold=cold, logs=process.log_since(mark)
            )
        if dropped_ms >= limits.timeout_ms:
            return CallResult(ErrorCode.TIMEOUT, b"", limits.timeout_ms, cold=cold)
        if process.proc.returncode is None:  # workerd is well: the function broke its answer
            logs = process.log_since(mark)
            await self._kill(process)  # not reused: what the broken answer left is unknown
            return CallResult(ErrorCode.OK, b"", dropped_ms, 500, cold, logs)
        await self._kill(process)
        raise ServerlessError(
            f"the workerd runtime dropped the call ({exc}; exit status {process.proc.returncode}): "
            f"{process.log_tail().strip()[-600:] or 'no output'}",
            hint="this is reef's failure, not the function's; the next call starts a new runtime",
        )

    def _elapsed_ms(self, start: int) -> int:
        """Whole milliseconds since ``start`` (a reading of the clock, in nanoseconds)."""
        return (self._clock() - start) // 1_000_000

    def _remaining_s(self, start: int, limits: Limits) -> float:
        """Seconds left of the deadline of a call that started at ``start`` (may be negative)."""
        return limits.timeout_ms / 1000 - (self._clock() - start) / 1e9

    async def _watch_cpu(self, process: _Process, budget_ns: int) -> None:
        """Return once the process has used more than ``budget_ns`` of CPU from now (else run
        until cancelled)."""
        start = _cpu_ns(process.proc.pid)
        while start is not None:
            used = _cpu_ns(process.proc.pid)
            if used is not None and used - start > budget_ns:
                return
            await asyncio.sleep(self._memory_poll_s)
        await asyncio.Event().wait()  # already gone: its exit ends the wait

    async def _watch_memory(self, process: _Process, limit: int) -> None:
        """Return when the process's resident memory passes ``limit`` (else run until cancelled)."""
        while True:
            resident = _resident_bytes(process.proc.pid)
            if resident is not None and resident > limit:
                return
            await asyncio.sleep(self._memory_poll_s)

    # -- processes ---------------------------------------------------------------------------

    def _take_idle(self, pool_key: tuple[str, int, tuple[str, ...]]) -> _Process | None:
        for pid, process in reversed(self._idle.items()):  # most recently used first
            if process.pool_key == pool_key:
                del self._idle[pid]
                if process.proc.returncode is not None or self._spent_while_idle(process):
                    self._kill_later(process)
                    continue
                self._stats.reused += 1
                return process
        return None

    def _spent_while_idle(self, process: _Process) -> bool:
        """Whether an idle process used more than its allowance since its answer: CPU past
        ``idle_cpu_ms``, or resident memory past its calls' cap (or it is gone)."""
        usage = _usage(process.proc.pid)
        if usage is None:
            return True
        used, resident = usage
        _, memory_bytes, _ = process.pool_key
        return used - process.parked_cpu_ns > self._idle_cpu_ns or resident > memory_bytes

    def _park(self, process: _Process) -> None:
        process.parked_cpu_ns = _cpu_ns(process.proc.pid) or 0
        self._idle[process.proc.pid] = process
        while len(self._idle) > self._max_idle:
            _, oldest = self._idle.popitem(last=False)
            self._kill_later(oldest)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = self._tasks.spawn(self._sweep(), "idle sweep")

    async def _sweep(self) -> None:
        """Kill idle processes that keep computing or allocating after their answer (while any
        are idle)."""
        while self._idle:
            await asyncio.sleep(self._idle_check_s)
            for pid, process in list(self._idle.items()):
                if self._spent_while_idle(process):
                    del self._idle[pid]
                    self._kill_later(process)

    def _kill_later(self, process: _Process) -> None:
        # Evictions run beside the call that caused them (it need not wait for a kill); aclose
        # waits for any still running. The kill is counted now, so that the stats never show a
        # process gone from the pool and not yet killed.
        counted = process.proc.returncode is None
        if counted:
            self._stats.killed += 1
        self._tasks.spawn(self._kill(process, counted=counted), f"evict workerd {process.proc.pid}")

    async def _start(
        self, pool_key: tuple[str, int, tuple[str, ...]], source: bytes, limits: Limits
    ) -> _Process:
        directory = Path(tempfile.mkdtemp(prefix="p", dir=self._workdir))
        try:
            (directory / MODULE_NAME).write_bytes(source)
            # V8's heap gets the cap less an idle workerd's own ~50 MiB, so a heap bomb meets
            # V8's exact limit (a clean abort) before the sampled resident-memory watch.
            heap_mib = max(16, limits.memory_bytes // (1024 * 1024) - 64)
            (directory / "config.capnp").write_text(
                render_config(heap_mib=heap_mib, allow_network=limits.allow_network)
            )
            socket_path = str(directory / "s")
            # reef binds the socket and passes it: connections queue in its backlog until workerd
            # accepts, so a call needs no readiness polling, and a process that fails to start
            # refuses the connection (the parent's copy is closed right after the spawn).
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                listener.bind(socket_path)
                listener.listen(128)
                proc = await asyncio.create_subprocess_exec(
                    *self._launcher,
                    str(self._workerd),
                    "serve",
                    str(directory / "config.capnp"),
                    f"--socket-fd={SOCKET_NAME}={listener.fileno()}",
                    pass_fds=(listener.fileno(),),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    cwd=directory,
                    start_new_session=True,  # its own process group, killed as one
                )
            finally:
                listener.close()
        except OSError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise ServerlessError(
                f"cannot start workerd ({self._workerd}): {exc}",
                hint="check the binary (reef.serverless.ensure_workerd installs it)",
            ) from exc
        self._stats.started += 1
        process = _Process(pool_key, proc, directory, socket_path)
        process.drain = asyncio.get_running_loop().create_task(self._drain(process))
        return process

    async def _drain(self, process: _Process) -> None:
        # Always read the process's output: a function that logs a lot must not block workerd on
        # a full pipe. Only the newest _LOG_KEEP bytes are kept.
        stream = process.proc.stdout
        if stream is None:
            return
        carry = b""
        while True:
            chunk = await stream.read(16 * 1024)
            if not chunk:
                return
            found, carry = _markers_in(carry, chunk)
            process.seen |= found
            process.output += chunk
            process.output_total += len(chunk)
            if len(process.output) > _LOG_KEEP:
                del process.output[: len(process.output) - _LOG_KEEP]

    async def _kill(self, process: _Process, *, counted: bool = False) -> None:
        self._idle.pop(process.proc.pid, None)
        if process.proc.returncode is None:
            if not counted:
                self._stats.killed += 1
            # The group (workerd leads it: start_new_session) and nothing more: asyncio's
            # proc.kill() polls the child first and could reap it before the child watcher,
            # which then logged "Unknown child process pid" and reported exit 255.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.proc.pid, signal.SIGKILL)
        await process.proc.wait()
        if process.drain is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(process.drain, timeout=_EXIT_WAIT_S)
        shutil.rmtree(process.directory, ignore_errors=True)
