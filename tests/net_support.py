"""Network helpers for tests: a free loopback port to start a server on, or to find nothing on,
an ASGI app served over real HTTP on one for the duration of a ``with`` block, and a raw server
that answers with whatever bytes a hostile server would.

pytest puts the tests folder on ``sys.path`` (``pythonpath`` in pyproject.toml)::

    from net_support import free_port, raw_server, run_loop_in_thread, serve_in_thread
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import ASGIApp


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on: bound to port 0, then released.

    A server the test starts next can take it (another process could too, in the moment between;
    tests that need the port held keep their own socket open instead), and a client pointed at it
    meets a refused connection.
    """
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


@contextmanager
def serve_in_thread(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` under uvicorn on a free loopback port, in a thread (so synchronous clients,
    the CLI or a subprocess can call it), and yield its base URL; stopped when the block ends.

    Plain uvicorn, not reef's serving floor: the tests that use it test the app, not the floor.
    uvicorn is imported here so that importing this module stays light.
    """
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn exited before it started"
        assert time.monotonic() < deadline, "uvicorn did not start in 10 s"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def run_loop_in_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a background thread, for servers that synchronous tests (a
    CLI, a blocking client) talk to: ``asyncio.run_coroutine_threadsafe(coro, loop)``."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


GIB = 1 << 30
SENT_AT_MOST = 64 << 20
"""A hostile server answering a gigabyte stops after this much: the client must have stopped
reading long before (the test fails, rather than the machine running out of memory, if not)."""


class Sent:
    """How many bytes a hostile server has sent (it stops at :data:`SENT_AT_MOST`)."""

    def __init__(self) -> None:
        self.bytes = 0


Raw = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
"""A raw server's answer: it writes whatever bytes it likes after reading the request head."""


@asynccontextmanager
async def raw_server(handler: Raw) -> AsyncIterator[str]:
    """Serve ``handler`` on loopback (after each request's head); yield ``http://host:port``.
    Its connections are cancelled at the end, so a handler may write for ever."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


@contextmanager
def raw_server_in_thread(handler: Raw) -> Iterator[str]:
    """:func:`raw_server` on a loop of its own, for blocking clients."""
    with run_loop_in_thread() as loop:
        entered = raw_server(handler)
        url = asyncio.run_coroutine_threadsafe(entered.__aenter__(), loop).result(10)
        try:
            yield url
        finally:
            asyncio.run_coroutine_threadsafe(entered.__aexit__(None, None, None), loop).result(10)


def gigabyte(sent: Sent, *, declared: bool, head: bytes = b"HTTP/1.1 200 OK\r\n") -> Raw:
    """A raw server's answer of :data:`GIB` zeros after ``head`` (a status line and any
    headers), its length declared or not (close-delimited); it stops at :data:`SENT_AT_MOST`,
    counting in ``sent``."""

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        length = f"content-length: {GIB}\r\n".encode() if declared else b"connection: close\r\n"
        writer.write(head + length + b"\r\n")
        chunk = bytes(1 << 16)
        while sent.bytes < SENT_AT_MOST:
            writer.write(chunk)
            await writer.drain()
            sent.bytes += len(chunk)

    return answer


DRIPPED_HEAD = b"HTTP/1.1 200 OK\r\nx-slow: "
"""A status line and a header that never ends: with :func:`drip`, a head trickled for ever."""


def drip(start: bytes = DRIPPED_HEAD, *, byte: bytes = b"a", every: float = 0.05) -> Raw:
    """A raw server's answer: ``start`` at once, then ``byte`` every ``every`` seconds for ever.
    Each read comes well within any read timeout: only a bound on the whole answer stops it."""

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(start)
        while True:
            writer.write(byte)
            await writer.drain()
            await asyncio.sleep(every)

    return answer


def ends(call: Callable[[], object], limit: float = 30.0) -> Any:
    """Run the blocking ``call`` in a thread and return what it returned or raised (for the test
    to check, hence ``Any``); fail the test if it is still running after ``limit`` seconds (a
    hostile server's attack worked: the client hangs). The thread is a daemon, so a hung client
    does not hold pytest at exit."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as exc:  # handed to the test, which checks it
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the client was still waiting after {limit} s"
    return out[0]


def tracked_to_port_80(first: int, count: int, *, tcp_only: bool = False) -> dict[str, int]:
    """Entries of the host's connection-tracking table for port 80 of the ``count`` addresses
    from 198.18.0.0 + ``first`` (the benchmark range apps probe), TCP ones by state and (unless
    ``tcp_only``) others by protocol."""
    from pathlib import Path

    addresses = {
        f"198.{18 + (i >> 16)}.{i >> 8 & 255}.{i & 255}" for i in range(first, first + count)
    }
    states: dict[str, int] = {}
    for line in Path("/proc/net/nf_conntrack").read_text().splitlines():
        words = line.split()
        fields: dict[str, str] = {}
        for word in words:
            key, _, value = word.partition("=")
            fields.setdefault(key, value)  # the original direction's, which comes first
        if fields.get("dport") != "80" or fields.get("dst") not in addresses:
            continue
        if words[2] == "tcp":
            states[words[5]] = states.get(words[5], 0) + 1
        elif not tcp_only:
            states[words[2]] = states.get(words[2], 0) + 1
    return states
