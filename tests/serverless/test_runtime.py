"""The function runtime against real workerd: verdicts, limits, isolation and warm reuse.

Each misbehaving function must get its own error code within its own deadline (plus a generous
2 s margin for a loaded machine), while normal calls running beside it are answered normally.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proc_support import process_gone
from reef.errors import ServerlessError
from reef.serverless import CodeCache, ErrorCode, FunctionRuntime, Limits, local_codehash

pytestmark = pytest.mark.node

MARGIN_S = 2.0

HELLO = b"""export default {
  async fetch(request, env) { return new Response("hello " + await request.text()); },
};"""
ECHO = b"""export default {
  async fetch(request) { return new Response(await request.arrayBuffer()); },
};"""
COUNTER = b"""let calls = 0;
export default {
  async fetch(request) {
    calls += 1;
    if ((await request.text()) === "loop") { while (true) {} }
    return new Response(String(calls));
  },
};"""
LOOP = b"export default { async fetch() { while (true) {} } };"
HEAP_BOMB = b"""export default { async fetch() {
  const keep = []; while (true) { keep.push(new Array(100000).fill(Math.random())); }
} };"""
BUFFER_BOMB = b"""export default { async fetch() {
  const keep = []; while (true) { keep.push(new Uint8Array(16 * 1024 * 1024).fill(7)); }
} };"""
SYNTAX = b'export default { async fetch() { return new Response("x" }; };'
ONE_MIB = b'export default { async fetch() { return new Response("x".repeat(1 << 20)); } };'
NOT_UTF8 = b"export default { async fetch() { return new Response('\xff\xfe'); } };"
TOP_LEVEL_THROW = b'throw new Error("at load");\nexport default { async fetch() {} };'
NO_FETCH = b"export const x = 1;"
TOP_LEVEL_LOOP = b"while (true) {}\nexport default { async fetch() {} };"
THROWS = b'export default { async fetch() { throw new Error("boom"); } };'
LOGS = b"""export default { async fetch() {
  console.log("one", 1); console.error("two"); return new Response("ok");
} };"""
SLOW = b"""export default { async fetch() {
  await new Promise((resolve) => setTimeout(resolve, 1500)); return new Response("late");
} };"""


def _network_source(port: int) -> bytes:
    return (
        "export default { async fetch() {\n"
        f'  try {{ const r = await fetch("http://127.0.0.1:{port}/"); '
        'return new Response("reached " + r.status); }\n'
        '  catch (e) { return new Response("blocked: " + e.message); }\n'
        "} };"
    ).encode()


class Listener:
    """A loopback HTTP server that counts the connections it gets (the function must not reach it)."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
        await writer.drain()
        writer.close()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    state = Listener()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield state


async def _normal_calls_until(runtime: FunctionRuntime, done: asyncio.Event) -> list[str]:
    """Call HELLO over and over until ``done`` (at least three times); return the failures."""
    failures: list[str] = []
    count = 0
    while not done.is_set() or count < 3:
        count += 1
        started = time.monotonic()
        result = await runtime.run(HELLO, f"n{count}".encode(), limits=Limits(timeout_ms=3000))
        elapsed = time.monotonic() - started
        if result.error_code is not ErrorCode.OK or result.output != f"hello n{count}".encode():
            failures.append(f"call {count}: {result}")
        if elapsed > 3.0 + MARGIN_S:
            failures.append(f"call {count} took {elapsed:.2f} s")
    return failures


async def _beside_normal_calls(
    runtime: FunctionRuntime, source: bytes, limits: Limits
) -> tuple[float, object, list[str]]:
    done = asyncio.Event()
    normal = asyncio.create_task(_normal_calls_until(runtime, done))
    await asyncio.sleep(0.05)  # the normal calls are under way
    started = time.monotonic()
    try:
        result = await runtime.run(source, b"", limits=limits)
    finally:
        elapsed = time.monotonic() - started
        done.set()
    return elapsed, result, await normal


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(LOOP, ErrorCode.TIMEOUT, id="loops-forever"),
        pytest.param(HEAP_BOMB, ErrorCode.MEMORY_LIMIT, id="heap-bomb"),
        pytest.param(BUFFER_BOMB, ErrorCode.MEMORY_LIMIT, id="arraybuffer-bomb"),
        pytest.param(SYNTAX, ErrorCode.SYNTAX_ERROR, id="syntax-error"),
        pytest.param(ONE_MIB, ErrorCode.OUTPUT_TOO_LARGE, id="returns-1-MiB"),
        pytest.param(NOT_UTF8, ErrorCode.CODE_NOT_DECODABLE, id="not-utf8"),
        pytest.param(TOP_LEVEL_LOOP, ErrorCode.TIMEOUT, id="loops-at-load"),
    ],
)
async def test_misbehaving_function_gets_its_code_and_others_are_answered(
    runtime: FunctionRuntime, source: bytes, expected: ErrorCode
) -> None:
    limits = Limits(timeout_ms=1000, memory_bytes=128 * 1024 * 1024)
    elapsed, result, failures = await _beside_normal_calls(runtime, source, limits)
    assert result.error_code is expected, result  # type: ignore[attr-defined]
    assert result.output == b""  # type: ignore[attr-defined]
    assert elapsed <= limits.timeout_ms / 1000 + MARGIN_S
    assert failures == []
    if expected is ErrorCode.TIMEOUT:
        assert result.total_time_ms == limits.timeout_ms  # type: ignore[attr-defined]
    # the runtime still serves after the misbehaving one
    after = await runtime.run(HELLO, b"after")
    assert after.output == b"hello after"


async def test_fetch_does_not_reach_the_network(
    runtime: FunctionRuntime, listener: Listener
) -> None:
    source = _network_source(listener.port)
    elapsed, result, failures = await _beside_normal_calls(runtime, source, Limits(timeout_ms=2000))
    assert result.error_code is ErrorCode.OK  # type: ignore[attr-defined]
    assert result.output.startswith(b"blocked: ")  # type: ignore[attr-defined]
    assert b"not allowed" in result.output  # type: ignore[attr-defined]
    assert listener.connections == 0
    assert elapsed <= 2.0 + MARGIN_S
    assert failures == []


async def test_an_operator_can_allow_the_network(
    runtime: FunctionRuntime, listener: Listener
) -> None:
    # The control for the test above: the same function does reach the listener when allowed.
    result = await runtime.run(
        _network_source(listener.port), limits=Limits(allow_network=("local",))
    )
    assert result.output == b"reached 200"
    assert listener.connections == 1


async def test_warm_calls_reuse_the_process_and_its_module_state(runtime: FunctionRuntime) -> None:
    outputs = [(await runtime.run(COUNTER, b"x")).output for _ in range(3)]
    assert outputs == [b"1", b"2", b"3"]  # one isolate kept its module-level counter
    stats = runtime.stats
    assert (stats.started, stats.reused, stats.idle) == (1, 2, 1)
    first = await runtime.run(HELLO, b"y")
    assert first.cold
    assert runtime.stats.started == 2  # other code never shares a process
    assert not (await runtime.run(HELLO, b"z")).cold


async def test_a_timed_out_process_is_replaced(runtime: FunctionRuntime) -> None:
    assert (await runtime.run(COUNTER, b"x")).output == b"1"
    verdict = await runtime.run(COUNTER, b"loop", limits=Limits(timeout_ms=300))
    assert verdict.error_code is ErrorCode.TIMEOUT
    again = await runtime.run(COUNTER, b"x")
    assert again.cold
    assert again.output == b"1"  # a fresh process: the counter starts over
    assert runtime.stats.killed >= 1


async def test_output_cap_boundary(runtime: FunctionRuntime) -> None:
    limits = Limits(output_bytes=100)
    at_cap = await runtime.run(ECHO, b"a" * 100, limits=limits)
    assert at_cap.error_code is ErrorCode.OK
    assert at_cap.output == b"a" * 100
    over = await runtime.run(ECHO, b"a" * 101, limits=limits)
    assert over.error_code is ErrorCode.OUTPUT_TOO_LARGE
    assert over.output == b""


async def test_binary_input_and_output_round_trip(runtime: FunctionRuntime) -> None:
    data = bytes(range(256)) * 4
    result = await runtime.run(ECHO, data)
    assert result.output == data
    assert result.status == 200


@pytest.mark.parametrize("source", [TOP_LEVEL_THROW, NO_FETCH], ids=["throws-at-load", "no-fetch"])
async def test_code_that_does_not_load_is_code_3(runtime: FunctionRuntime, source: bytes) -> None:
    result = await runtime.run(source)
    assert result.error_code is ErrorCode.SYNTAX_ERROR
    assert "Uncaught" in result.logs


async def test_syntax_error_names_the_place(runtime: FunctionRuntime) -> None:
    result = await runtime.run(SYNTAX)
    assert "SyntaxError" in result.logs
    assert "function.js:1" in result.logs


async def test_an_exception_is_an_answer_with_status_500(runtime: FunctionRuntime) -> None:
    # As Oyster: the verdict ignores the HTTP status; the body is the output.
    result = await runtime.run(THROWS)
    assert result.error_code is ErrorCode.OK
    assert result.status == 500


async def test_console_output_is_captured(runtime: FunctionRuntime) -> None:
    result = await runtime.run(LOGS)
    assert result.output == b"ok"
    for _ in range(50):  # the console pipe may trail the response by a moment
        if "two" in result.logs:
            break
        await asyncio.sleep(0.01)
        result = await runtime.run(LOGS)
    assert "one 1" in result.logs
    assert "two" in result.logs


async def test_capacity_is_refused_as_reefs_failure(workerd: Path) -> None:
    async with FunctionRuntime(workerd, max_running=2) as runtime:
        # four cold starts at once (distinct code): the limit holds while processes start
        calls = [
            runtime.run(SLOW + f"// {n}".encode(), limits=Limits(timeout_ms=4000)) for n in range(4)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        refused = [r for r in results if isinstance(r, ServerlessError)]
        answered = [r for r in results if not isinstance(r, BaseException)]
        assert len(refused) == 2
        assert all("already running" in str(error) for error in refused)
        assert [r.output for r in answered] == [b"late", b"late"]  # type: ignore[union-attr]
        assert runtime.stats.running == 0


def _workerd_children(parent: int | None = None) -> list[int]:
    parent = os.getpid() if parent is None else parent
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and "workerd" in stat.split("(", 1)[1].split(")")[0]:
            children.append(int(entry))
    return children


async def test_a_runtime_that_dies_is_reefs_failure_not_the_functions(
    runtime: FunctionRuntime,
) -> None:
    call = asyncio.create_task(runtime.run(SLOW, limits=Limits(timeout_ms=4000)))
    for _ in range(100):
        await asyncio.sleep(0.02)
        children = _workerd_children()
        if children:
            break
    assert len(children) == 1
    os.kill(children[0], signal.SIGKILL)  # e.g. the host's OOM killer
    with pytest.raises(ServerlessError, match="dropped the call"):
        await call
    assert (await runtime.run(HELLO, b"again")).output == b"hello again"


async def test_call_by_codehash_through_the_cache(runtime: FunctionRuntime, tmp_path: Path) -> None:
    deployed = {"0x" + "ab" * 32: HELLO}

    async def fetch(codehash: str) -> bytes | None:
        return deployed.get(codehash)

    cache = CodeCache(tmp_path / "code", fetch)
    found = await runtime.call("0x" + "AB" * 32, b"chain", cache)
    assert found.output == b"hello chain"
    missing = await runtime.call("0x" + "cd" * 32, b"", cache)
    assert missing.error_code is ErrorCode.CODE_NOT_FOUND
    assert missing.output == b""
    assert local_codehash(HELLO) == "0x" + hashlib.sha256(HELLO).hexdigest()


CHILD = """
import asyncio, sys
from pathlib import Path
from reef.serverless import FunctionRuntime

async def main() -> None:
    runtime = FunctionRuntime(Path(sys.argv[1]))
    result = await runtime.run(b'export default { fetch() { return new Response("up"); } };')
    print(result.output.decode(), flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is missing")
async def test_no_workerd_outlives_a_killed_parent(workerd: Path, tmp_path: Path) -> None:
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(workerd), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(parent.stdout.readline(), timeout=30)
        assert line.strip() == b"up"
        children = _workerd_children(parent.pid)
        assert len(children) == 1  # the idle, warm process
    finally:
        parent.kill()  # SIGKILL: no cleanup code runs in the parent
        await parent.wait()
    for _ in range(100):
        if process_gone(children[0]):
            break
        await asyncio.sleep(0.02)
    assert process_gone(children[0])


SPIN_AFTER_ANSWER = b"""export default { async fetch(request, env, ctx) {
  ctx.waitUntil(new Promise(() => setTimeout(() => { while (true) {} }, 20)));
  return new Response("answered");
} };"""
SHORT_WAIT_UNTIL = b"""export default { async fetch(request, env, ctx) {
  ctx.waitUntil(new Promise((resolve) => setTimeout(resolve, 20)));
  return new Response("answered");
} };"""


async def test_an_idle_process_that_keeps_computing_is_killed(runtime: FunctionRuntime) -> None:
    # Past its answer a function has no deadline: a waitUntil that spins would burn a core,
    # unbilled, while its process sits idle, and make the function's next call time out.
    first = await runtime.run(SPIN_AFTER_ANSWER)
    assert first.output == b"answered"
    for _ in range(150):
        if runtime.stats.idle == 0:
            break
        await asyncio.sleep(0.02)
    assert runtime.stats.idle == 0
    assert runtime.stats.killed == 1
    second = await runtime.run(SPIN_AFTER_ANSWER, limits=Limits(timeout_ms=2000))
    assert second.error_code is ErrorCode.OK
    assert second.cold


async def test_short_background_work_stays_warm(runtime: FunctionRuntime) -> None:
    assert (await runtime.run(SHORT_WAIT_UNTIL)).output == b"answered"
    await asyncio.sleep(0.6)  # two sweeps
    again = await runtime.run(SHORT_WAIT_UNTIL)
    assert not again.cold
    assert runtime.stats.killed == 0
