"""The function runtime's cost: warm-call overhead over bare workerd, and cold start.

In the same run, on the same function (a hello that echoes its input):

- bare workerd: one workerd process serving the function with reef's own config, on a Unix
  socket, and the cheapest client there is (pre-built request bytes over a fresh connection, read
  to EOF): what any runtime built on workerd pays at least;
- reef warm: :meth:`FunctionRuntime.run` on an idle process (limits enforced: the deadline timer,
  the resident-memory watch, the output cap, h11 parsing);
- overhead: reef warm minus bare, at p50 and p99;
- cold start: a call whose code has no idle process (a new workerd is started, loads the code,
  answers), through reef, against bare workerd spawn-to-first-answer.

Measurements alternate in rounds so load from other processes affects all alike. The aim for warm
overhead is ≤ 1 ms at p50. Prints, does not assert.

Run: ``.venv/bin/python bench/serverless.py [--calls N] [--cold N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import tempfile
import time
from pathlib import Path

from reef.serverless import FunctionRuntime, Limits, ensure_workerd
from reef.serverless._config import MODULE_NAME, render_config

HELLO = b"""export default {
  async fetch(request) { return new Response("hello " + await request.text()); },
};"""
BODY = b"bench"
REQUEST = (
    b"POST / HTTP/1.1\r\nHost: function\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
    % (len(BODY), BODY)
)
ROUNDS = 5


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Bare:
    """workerd serving the function, started and spoken to as plainly as possible."""

    def __init__(self, workerd: Path, directory: Path) -> None:
        self.workerd = workerd
        self.directory = directory
        self.socket_path = str(directory / "s")
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        (self.directory / MODULE_NAME).write_bytes(HELLO)
        (self.directory / "config.capnp").write_text(render_config(heap_mib=256))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        listener.listen(128)
        self.proc = await asyncio.create_subprocess_exec(
            str(self.workerd),
            "serve",
            str(self.directory / "config.capnp"),
            f"--socket-fd=http={listener.fileno()}",
            pass_fds=(listener.fileno(),),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        listener.close()

    async def request(self) -> bytes:
        reader, writer = await asyncio.open_unix_connection(self.socket_path)
        writer.write(REQUEST)
        data = await reader.read()
        writer.close()
        return data

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            await self.proc.wait()
        os.unlink(self.socket_path)


async def timed(coro: object) -> float:
    start = time.perf_counter()
    await coro  # type: ignore[misc]
    return (time.perf_counter() - start) * 1000


async def main(calls: int, cold: int) -> None:
    workerd = await asyncio.to_thread(ensure_workerd)
    with tempfile.TemporaryDirectory(prefix="reef-bench-") as tmp:
        bare = Bare(workerd, Path(tmp))
        await bare.start()
        assert (await bare.request()).endswith(b"hello bench")
        bare_ms: list[float] = []
        reef_ms: list[float] = []
        cold_reef: list[float] = []
        cold_bare: list[float] = []
        # cold starts on a runtime of their own, so their idle processes never evict the warm one
        async with (
            FunctionRuntime(workerd, limits=Limits(timeout_ms=5000)) as runtime,
            FunctionRuntime(workerd, max_idle=0) as cold_runtime,
        ):
            result = await runtime.run(HELLO, BODY)  # warm the reef process
            assert result.output == b"hello bench"
            for _ in range(ROUNDS):
                for _ in range(calls // ROUNDS):
                    bare_ms.append(await timed(bare.request()))
                    reef_ms.append(await timed(runtime.run(HELLO, BODY)))
                for n in range(cold // ROUNDS):
                    # new code (a unique comment) has no idle process: a cold start each time
                    source = HELLO + f"\n// {time.time_ns()} {n}".encode()
                    start = time.perf_counter()
                    answer = await cold_runtime.run(source, BODY)
                    cold_reef.append((time.perf_counter() - start) * 1000)
                    assert answer.cold
                    with tempfile.TemporaryDirectory(prefix="c", dir=tmp) as spawn_dir:
                        fresh = Bare(workerd, Path(spawn_dir))
                        start = time.perf_counter()
                        await fresh.start()
                        await fresh.request()
                        cold_bare.append((time.perf_counter() - start) * 1000)
                        await fresh.stop()
            stats = runtime.stats
        await bare.stop()

    def row(name: str, samples: list[float]) -> None:
        print(
            f"{name:<34} p50 {percentile(samples, 0.5):7.3f} ms   "
            f"p99 {percentile(samples, 0.99):7.3f} ms   (n={len(samples)})"
        )

    print(f"workerd {workerd}")
    row("warm: bare workerd", bare_ms)
    row("warm: reef FunctionRuntime.run", reef_ms)
    print(
        f"{'warm overhead (reef - bare)':<34} p50 "
        f"{percentile(reef_ms, 0.5) - percentile(bare_ms, 0.5):7.3f} ms   p99 "
        f"{percentile(reef_ms, 0.99) - percentile(bare_ms, 0.99):7.3f} ms"
    )
    row("cold: bare workerd spawn+answer", cold_bare)
    row("cold: reef run (new process)", cold_reef)
    print(f"runtime stats: {stats}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="warm calls of each kind")
    parser.add_argument("--cold", type=int, default=40, help="cold starts of each kind")
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.cold))
