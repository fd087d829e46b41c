"""reef as a client of hostile servers: an enclave, a provider or a JSON-RPC node that lies.

Each test replays one attack with a real server on loopback (a raw asyncio server in a thread,
so it can send what no well-behaved framework would: an endless body, a header one byte at a
time, terminal escapes) against reef's real client, and checks that reef answers with a clear
error in bounded time and memory, never a traceback, never a wrong result.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from reef.attestation import AttestationClient
from reef.errors import ServiceError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# How long a test waits for a client that should give up by itself: far above every bound the
# clients are given here (1-2 s), far below "forever" (which is what the attacks aim at).
_LIVENESS_S = 30.0


@contextlib.contextmanager
def hostile_server(handler: Handler) -> Iterator[str]:
    """Serve ``handler`` (raw bytes in, raw bytes out) on a free loopback port in a thread;
    yield ``http://127.0.0.1:PORT``. Connections still open at the end are cancelled."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    tasks: set[asyncio.Task[None]] = set()
    holder: dict[str, Any] = {}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")  # the request's head: every attack ignores it
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            tasks.discard(task)
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        holder["port"] = server.sockets[0].getsockname()[1]
        holder["stop"] = stop = asyncio.Event()
        started.set()
        async with server:
            await stop.wait()
            for task in list(tasks):
                task.cancel()
            await asyncio.sleep(0)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(10), "the hostile server did not start"
    try:
        yield f"http://127.0.0.1:{holder['port']}"
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(10)
        loop.close()


def ends(call: Callable[[], Any]) -> BaseException | Any:
    """Run ``call`` in a thread and return what it returned or raised; fail the test if it is
    still running after :data:`_LIVENESS_S` (the attack worked: the client hangs)."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = call()
        except BaseException as exc:  # handed to the test, which checks it
            out["value"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(_LIVENESS_S)
    assert not thread.is_alive(), f"the client was still waiting after {_LIVENESS_S} s"
    return out["value"]


# -- attestation documents: reef verify, reef deploy, KMS, dashboards ----------------------------

_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\nconnection: close\r\n"


async def _endless_document(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A "document" of 64 MiB (standing in for 1 GB: today's client would read it all)."""
    writer.write(_HEAD + b"\r\n")
    chunk = b"\xd2" * 65536
    for _ in range(1024):
        writer.write(chunk)
        await writer.drain()


async def _dripping_body(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Headers at once, then one byte every 0.1 s, for ever (each read comes well within any
    read timeout, so only a bound on the whole answer stops it)."""
    writer.write(_HEAD + b"\r\n")
    while True:
        writer.write(b"\xd2")
        await writer.drain()
        await asyncio.sleep(0.1)


async def _dripping_head(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A status line, then a header that never ends, one byte every 0.1 s."""
    writer.write(b"HTTP/1.1 200 OK\r\nx-slow: ")
    while True:
        writer.write(b"a")
        await writer.drain()
        await asyncio.sleep(0.1)


def test_attestation_fetch_refuses_a_document_of_many_megabytes() -> None:
    with hostile_server(_endless_document) as url:
        client = AttestationClient(timeout=20.0)
        with pytest.raises(ServiceError, match="more than 1048576 bytes") as caught:
            client.fetch(url)
    assert caught.value.hint


async def test_attestation_afetch_refuses_a_document_of_many_megabytes() -> None:
    with (
        hostile_server(_endless_document) as url,
        pytest.raises(ServiceError, match="more than 1048576 bytes"),
    ):
        await AttestationClient(timeout=20.0).afetch(url)


@pytest.mark.parametrize("attack", [_dripping_body, _dripping_head], ids=["body", "head"])
def test_attestation_fetch_gives_up_on_a_server_that_drips(attack: Handler) -> None:
    with hostile_server(attack) as url:
        client = AttestationClient(timeout=1.0)
        outcome = ends(lambda: client.fetch(url))
    assert isinstance(outcome, ServiceError), outcome
    assert "did not answer within 1 s" in outcome.message


@pytest.mark.parametrize("attack", [_dripping_body, _dripping_head], ids=["body", "head"])
def test_attestation_afetch_gives_up_on_a_server_that_drips(attack: Handler) -> None:
    with hostile_server(attack) as url:
        client = AttestationClient(timeout=1.0)
        outcome = ends(lambda: asyncio.run(client.afetch(url)))
    assert isinstance(outcome, ServiceError), outcome
    assert "did not answer within 1 s" in outcome.message


def test_attestation_errors_do_not_carry_the_servers_terminal_escapes() -> None:
    """A refusal's text is quoted in the error, which the CLI prints to the user's terminal:
    escape sequences in it (a window title, a screen clear) are shown, not obeyed."""
    body = b"\x1b]0;owned\x07\x1b[2Jbusy\r\x9b1m"

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, content=body)

    client = AttestationClient(transport=httpx.MockTransport(handler))
    with pytest.raises(ServiceError) as caught:
        client.fetch("http://h")
    message = caught.value.message
    assert "busy" in message
    assert not any(ch in message for ch in "\x1b\x07\r\x9b"), message
    assert "\\x1b]0;owned" in message
