"""reef's one bounded reader of strangers' HTTP answers (``reef._fetch``): a deadline over the
whole exchange (head and body), a byte bound checked on the declared length and while streaming,
and httpx's failures as a :class:`FetchError` naming the URL. The trickling servers are real
ones on loopback, since only a socket can send a response head one byte at a time."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import httpx
import pytest

from net_support import (
    SENT_AT_MOST,
    Raw,
    Sent,
    free_port,
    gigabyte,
    raw_server,
    raw_server_in_thread,
)
from reef._fetch import (
    BoundedAnswer,
    FetchError,
    fetch_blocking,
    read_blocking,
    read_bounded,
    request_to,
    run_blocking,
    stream_blocking,
    stream_bounded,
    tls_context,
)
from reef.errors import MisuseError, ServiceError

_BOUNDS: dict[str, Any] = {"max_bytes": 64, "deadline_s": 0.5, "what": "the test server"}


def _drip(start: bytes) -> Raw:
    """A server that sends ``start``, then one byte every 0.05 s for ever: every read is quick,
    only a bound on the whole answer stops it."""

    async def drip(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(start)
        while True:
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.05)

    return drip


_drip_head = _drip(b"HTTP/1.1 200 OK\r\nx-slow: ")
"""A status line, then a header that never ends."""
_drip_body = _drip(b"HTTP/1.1 200 OK\r\ncontent-length: 60\r\n\r\n")
"""A head at once, then a body of 60 bytes a byte at a time (3 s: longer than any deadline)."""


async def _read(handler: Callable[[httpx.Request], httpx.Response], **bounds: Any) -> Any:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        request = client.build_request("GET", "http://h/answer?secret=1")
        return await read_bounded(client, request, **(_BOUNDS | bounds))


# -- time: one deadline over head and body ------------------------------------------------------


@pytest.mark.parametrize("handler", [_drip_head, _drip_body], ids=["head", "body"])
async def test_a_trickled_answer_is_given_up_at_the_deadline(handler: Raw) -> None:
    async with raw_server(handler) as base, httpx.AsyncClient(timeout=5) as client:
        url = f"{base}/answer"
        with pytest.raises(FetchError) as caught:
            await asyncio.wait_for(
                read_bounded(client, client.build_request("GET", url), **_BOUNDS), 20
            )
    assert caught.value.reason == "too_late"
    assert caught.value.message == f"the test server at {url} did not answer within 0.5 s"
    assert isinstance(caught.value, ServiceError)


@pytest.mark.parametrize("handler", [_drip_head, _drip_body], ids=["head", "body"])
def test_the_blocking_twin_gives_up_on_a_trickled_head_or_body(handler: Raw) -> None:
    with raw_server_in_thread(handler) as base, pytest.raises(FetchError) as caught:
        fetch_blocking(httpx.Request("GET", base), timeout=5, **_BOUNDS, hint="look at it")
    assert caught.value.reason == "too_late"
    assert caught.value.hint == "look at it"


# -- size: the declared length first, then counted ----------------------------------------------


class _Recorded(httpx.AsyncByteStream, httpx.SyncByteStream):
    """A body that records whether anyone read it, and never ends."""

    def __init__(self) -> None:
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            self.read += 1
            yield b"x" * 16

    def __iter__(self) -> Iterator[bytes]:
        while True:
            self.read += 1
            yield b"x" * 16


async def test_a_declared_length_over_the_bound_is_refused_unread() -> None:
    body = _Recorded()
    with pytest.raises(FetchError) as caught:
        await _read(lambda _: httpx.Response(200, headers={"content-length": "65"}, stream=body))
    assert caught.value.reason == "too_large"
    assert body.read == 0
    assert "answered more than 64 bytes" in caught.value.message
    assert "secret" not in caught.value.message  # the query is not quoted
    assert caught.value.url == "http://h/answer"


async def test_an_endless_body_is_counted_and_cut_at_the_bound() -> None:
    body = _Recorded()
    with pytest.raises(FetchError) as caught:
        await _read(lambda _: httpx.Response(200, stream=body))
    assert caught.value.reason == "too_large"
    assert body.read == 5  # 80 bytes: the first read past 64


@pytest.mark.parametrize("size", [0, 63, 64])
async def test_an_answer_within_the_bound_is_read_whole(size: int) -> None:
    answer = await _read(lambda _: httpx.Response(418, content=b"y" * size, headers={"x-a": "b"}))
    assert answer == BoundedAnswer(
        url="http://h/answer", status=418, headers=answer.headers, body=b"y" * size
    )
    assert answer.headers["x-a"] == "b"


def test_an_answers_json_is_parsed_bounded_and_a_bad_one_is_a_service_error() -> None:
    """A stranger's body that is not JSON, or nests past the bound, is the answering
    service's failure (a ServiceError naming what was read), never an InputError or a
    RecursionError escaping the caller."""
    headers = httpx.Headers()
    answer = BoundedAnswer("http://h/a", 500, headers, b'{"error": [1, 2]}')
    assert answer.json(what="the answer") == {"error": [1, 2]}
    with pytest.raises(ServiceError, match="the answer of h is nested more than 2") as caught:
        BoundedAnswer("http://h/a", 200, headers, b"[[[1]]]").json(
            what="the answer of h", max_depth=2
        )
    assert not isinstance(caught.value, ValueError)
    with pytest.raises(ServiceError, match="the answer of h is not JSON"):
        BoundedAnswer("http://h/a", 200, headers, b"<html>").json(what="the answer of h")
    with pytest.raises(ServiceError, match="nested"):
        BoundedAnswer("http://h/a", 200, headers, b"[" * 60_000).json(what="the answer")


async def test_a_compressed_answer_is_refused_and_identity_was_asked_for() -> None:
    """httpx inflates a whole read at once: 64 KiB of gzip would be 64 MiB before it is counted."""
    asked: list[str] = []
    bomb = gzip.compress(b"\0" * (1 << 20))

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers["accept-encoding"])
        return httpx.Response(200, content=bomb, headers={"content-encoding": "gzip"})

    with pytest.raises(FetchError) as caught:
        await _read(handler, max_bytes=1 << 16)
    assert caught.value.reason == "encoded"
    assert "'gzip' content encoding" in caught.value.message
    assert asked == ["identity"]


# -- failures: httpx's errors named, never let through ----------------------------------------


async def test_an_unreachable_server_is_a_fetch_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/x"
    async with httpx.AsyncClient() as client:
        with pytest.raises(FetchError) as caught:
            await read_bounded(client, client.build_request("GET", url), **_BOUNDS, hint="start it")
    assert caught.value.reason == "unreachable"
    assert caught.value.message.startswith(f"cannot reach the test server at {url}: ")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert str(caught.value).endswith("(start it)")


def test_a_host_no_resolver_can_encode_is_a_fetch_error() -> None:
    # httpx builds the request, then fails in the IDNA codec while connecting (a UnicodeError).
    with pytest.raises(FetchError) as caught:
        fetch_blocking(httpx.Request("GET", "http://a..b/x"), timeout=5, **_BOUNDS)
    assert caught.value.reason == "unreachable"


@pytest.mark.parametrize("url", ["http://a:b/x", "http://\x1b[2J/x", "http://[::1/x"])
def test_a_url_that_is_no_url_is_a_fetch_error_not_an_httpx_one(url: str) -> None:
    with pytest.raises(FetchError) as caught:
        request_to("GET", url, what="the provider's control plane")
    assert caught.value.reason == "unreachable"
    assert "that is no URL" in caught.value.message
    assert "\x1b" not in caught.value.message


def test_a_server_that_answers_no_http_is_unreachable() -> None:
    async def garbage(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x1b]0;owned\x07 this is not HTTP\r\n\r\n")
        await writer.drain()

    with raw_server_in_thread(garbage) as base, pytest.raises(FetchError) as caught:
        fetch_blocking(httpx.Request("GET", base), timeout=5, **_BOUNDS)
    assert caught.value.reason == "unreachable"
    assert "\x1b" not in caught.value.message
    assert "\x07" not in caught.value.message


@pytest.mark.parametrize("bounds", [{"max_bytes": 0}, {"deadline_s": 0}, {"deadline_s": -1.0}])
async def test_bounds_that_are_not_positive_are_misuse(bounds: dict[str, Any]) -> None:
    with pytest.raises(MisuseError):
        await _read(lambda _: httpx.Response(200), **bounds)


# -- the blocking twin: its transports --------------------------------------------------------


def _wsgi(chunks: Iterable[bytes]) -> httpx.WSGITransport:
    """A blocking-only transport serving ``chunks``, echoing a request's JSON body first."""

    def app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        sent = environ["wsgi.input"].read(length)
        start("200 OK", [("content-type", "application/octet-stream")])
        return [sent, *chunks] if sent else chunks

    return httpx.WSGITransport(app=app)


def test_a_blocking_only_transport_is_read_with_the_same_bounds() -> None:
    request = httpx.Request("POST", "http://h/x", json={"ask_id": 1})
    answer = fetch_blocking(request, transport=_wsgi([b"!"]), timeout=5, **_BOUNDS)
    assert json.loads(answer.body[:-1]) == {"ask_id": 1}  # the body went out with the request
    endless = (b"z" * 16 for _ in iter(int, 1))
    with pytest.raises(FetchError) as caught:
        fetch_blocking(
            httpx.Request("GET", "http://h/x"), transport=_wsgi(endless), timeout=5, **_BOUNDS
        )
    assert caught.value.reason == "too_large"


def test_a_plain_http_request_loads_no_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each blocking fetch has a client of its own, and httpx loads the CA bundle into every new
    client's TLS context (80-160 ms): once per row of ``reef jobs list``. An http URL needs
    none; an https one still gets the verifying default, built once per process (so the cache
    is emptied first: an earlier test in this worker may have built it)."""
    tls_context.cache_clear()
    loaded: list[object] = []
    real = ssl.SSLContext.load_verify_locations

    def counted(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loaded.append(args or kwargs)
        real(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    for scheme in ("http", "https", "https"):  # a closed port: only the client's making counts
        with pytest.raises(FetchError, match="cannot reach"):
            fetch_blocking(httpx.Request("GET", f"{scheme}://127.0.0.1:9/"), timeout=5, **_BOUNDS)
        assert len(loaded) == (scheme == "https")


def test_an_async_capable_transport_is_read_on_a_loop_of_its_own() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asyncio.get_running_loop()  # a blocking client would call this outside any loop: it raises
        seen.append(f"{request.method} {request.headers['accept-encoding']}")
        assert request.headers["user-agent"].startswith("python-httpx/")  # as client.get sends
        return httpx.Response(200, content=b"ok")

    transport = httpx.MockTransport(handler)
    answer = fetch_blocking(
        httpx.Request("GET", "http://h/x"), transport=transport, timeout=5, **_BOUNDS
    )
    assert (answer.status, answer.body, seen) == (200, b"ok", ["GET identity"])


async def test_run_blocking_from_a_running_loop_uses_a_thread_of_its_own() -> None:
    async def where() -> int:
        return threading.get_ident()

    assert run_blocking(where()) != threading.get_ident()


def test_run_blocking_leaves_the_threads_loop_as_it_was() -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:

        async def answer() -> int:
            return 7

        assert run_blocking(answer()) == 7
        assert asyncio.get_event_loop_policy().get_event_loop() is loop
    finally:
        asyncio.set_event_loop(None)
        loop.close()


# -- streams: a head deadline, and a total one that may be none ---------------------------------


def _slow_body(pieces: int, every: float) -> Raw:
    """A head at once, then ``pieces`` lines of a close-delimited body, one every ``every``
    seconds: a stream that legitimately lasts."""

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
        for _ in range(pieces):
            writer.write(b"line\n")
            await writer.drain()
            await asyncio.sleep(every)

    return answer


def test_a_stream_without_a_total_deadline_outlives_its_head_deadline() -> None:
    """``reef jobs logs --follow``: the head within ``head_s``, the body as long as it lasts."""
    with raw_server_in_thread(_slow_body(20, 0.1)) as base, httpx.Client(timeout=5) as client:
        request = client.build_request("GET", base)
        with stream_blocking(
            client, request, max_bytes=None, head_s=0.5, deadline_s=None, what="the console"
        ) as stream:
            body = b"".join(stream.iter_bytes())
    assert (stream.status, body) == (200, b"line\n" * 20)


@pytest.mark.parametrize("handler", [_drip_head, _drip_body], ids=["head", "body"])
def test_a_stream_is_given_up_on_at_the_deadline_its_part_was_late_for(handler: Raw) -> None:
    """A head late for ``head_s`` names it; a body late for ``deadline_s`` names that."""
    pieces: list[bytes] = []
    with raw_server_in_thread(handler) as base, httpx.Client(timeout=5) as client:
        request = client.build_request("GET", base)
        with (
            pytest.raises(FetchError) as caught,
            stream_blocking(
                client, request, max_bytes=None, head_s=0.5, deadline_s=1.0, what="the server"
            ) as stream,
        ):
            pieces.extend(stream.iter_bytes())
    assert caught.value.reason == "too_late"
    within = "0.5" if handler is _drip_head else "1"
    assert caught.value.message.endswith(f"did not answer within {within} s")
    assert (b"".join(pieces) != b"") == (handler is _drip_body)  # the body came until then


async def _drain(client: httpx.AsyncClient, url: str, **bounds: Any) -> None:
    """Read the stream of ``GET url`` to its end, within ``bounds``."""
    request = client.build_request("GET", url)
    async with stream_bounded(client, request, what="it", **bounds) as stream:
        async for _piece in stream.aiter_bytes():
            pass


@pytest.mark.parametrize("handler", [_drip_head, _drip_body], ids=["head", "body"])
async def test_an_async_stream_is_given_up_on_at_the_deadline_its_part_was_late_for(
    handler: Raw,
) -> None:
    async with raw_server(handler) as base, httpx.AsyncClient(timeout=5) as client:
        with pytest.raises(FetchError) as caught:
            await asyncio.wait_for(
                _drain(client, base, max_bytes=None, head_s=0.5, deadline_s=1.0), 20
            )
    assert caught.value.reason == "too_late"
    within = "0.5" if handler is _drip_head else "1"
    assert caught.value.message.endswith(f"did not answer within {within} s")


async def test_an_async_stream_counts_its_body_against_the_bound() -> None:
    body = _Recorded()
    transport = httpx.MockTransport(lambda _: httpx.Response(200, stream=body))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(FetchError) as caught:
            await _drain(client, "http://h/", max_bytes=64, head_s=5, deadline_s=None)
    assert caught.value.reason == "too_large"
    assert body.read == 5


def test_the_blocking_reader_reads_the_network_without_an_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """httpx's blocking client, not a new event loop per call (a few ms a row of ``reef jobs
    list``)."""

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    def no_loop(coroutine: Any) -> Any:
        coroutine.close()
        raise AssertionError("an event loop was started")

    monkeypatch.setattr("reef._fetch.run_blocking", no_loop)
    with raw_server_in_thread(answer) as base:
        read = fetch_blocking(httpx.Request("GET", base), timeout=5, **_BOUNDS)
    assert (read.status, read.body) == (200, b"ok")


def test_a_read_into_a_client_of_the_callers_own_keeps_its_bounds() -> None:
    """:func:`read_blocking` through the caller's client (its transport, timeouts, headers)."""
    sent = Sent()
    with (
        raw_server_in_thread(gigabyte(sent, declared=False)) as base,
        httpx.Client(timeout=5) as client,
        pytest.raises(FetchError) as caught,
    ):
        read_blocking(client, client.build_request("GET", base), **_BOUNDS)
    assert caught.value.reason == "too_large"
    assert sent.bytes < SENT_AT_MOST


def test_bounded_reads_through_one_client_each_open_their_own_connection() -> None:
    """The watchdog keeps the deadline by shutting down the connection it saw opened; a
    kept-alive one it did not see would have its head bounded only per read."""
    connections: list[int] = []

    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while True:  # answer every request on this connection, keeping it open
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")

    with raw_server_in_thread(keep_alive) as base, httpx.Client(timeout=5) as client:
        for _ in range(3):
            answer = read_blocking(client, client.build_request("GET", base), **_BOUNDS)
            assert answer.body == b"ok"
    assert len(connections) == 3
