"""One bounded HTTP reader for every answer reef reads from a server it does not control.

An enclave's attestation server, a provider's control plane (any account may register one, at
any URL), an image's server (a job's owner names it), the enclave console a provider forwards,
and a prover's input verification service (reached across a host that may answer in its place)
are strangers: whoever answers may send a gigabyte, or one byte a second for ever. httpx's
timeouts bound each socket operation, not an answer, so a server that trickles its response
head or its body is never late for any single read. This module bounds the whole exchange:

* in time: one deadline covers connecting, the response head and the body. A stream that may
  legitimately last (an image of gigabytes, a console followed for hours) has a head deadline
  and a total deadline of its own (``head_s``, ``deadline_s``; the latter may be none);
* in size: a declared ``content-length`` over the bound is refused before any of the body is
  read, and the body is counted while it streams, so at most ``max_bytes`` (plus one network
  read) are held. ``accept-encoding: identity`` is asked for and a compressed answer refused:
  httpx inflates a whole read at once, so 64 KiB of gzip would be 64 MiB in memory before it
  could be counted;
* in its failures: httpx's errors (and the ``UnicodeError`` an unencodable host name raises
  from deep in the stack) become :class:`FetchError`, a :class:`~reef.errors.ServiceError` that
  names the URL, says which bound was hit (``reason``) and carries the caller's hint.

Two readers, one per kind of caller, share the checks (:class:`_Bounds`: the head's length and
encoding, the body's count, the wording of each failure):

* asyncio: :func:`read_bounded` (a whole answer) and :func:`stream_bounded` (a stream), under
  ``asyncio.timeout``;
* blocking (the CLI, thread pools): :func:`read_blocking`, :func:`stream_blocking` and
  :func:`fetch_blocking` (through a client of its own), on httpx's blocking client, which costs
  no event loop per call. The deadline is kept by a watchdog (:class:`_Watchdog`): httpx's
  ``trace`` extension hands it each socket the exchange connects, and when the deadline passes
  it shuts the socket down, which ends the read under way however slowly the server sends. A
  transport without sockets (``httpx.WSGITransport``, an in-process test double) has nothing to
  trickle through; its deadline is checked at each piece of the body. Connecting is bounded by
  httpx's connect timeout, capped at the head deadline (name resolution, which the system's
  resolver bounds, happens inside it). Only an async-capable transport passed to
  :func:`fetch_blocking` (``httpx.MockTransport``) is read by the asyncio reader, on an event
  loop of its own (:func:`run_blocking`), as its tests expect.

This is a foundation module, below every package: it imports only httpx (the HTTP client every
reef client uses, and whose ``transport=`` is the test seam), :mod:`reef.errors` and
:mod:`reef.encoding`. One module (about 650 lines): the two readers are one set of bounds, kept
where a reader can check that both apply them alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import httpx

from reef.encoding import MAX_JSON_DEPTH, loads_bounded, terminal_text
from reef.errors import InputError, MisuseError, ServiceError

__all__ = [
    "AsyncBoundedStream",
    "BoundedAnswer",
    "BoundedStream",
    "FetchError",
    "fetch_blocking",
    "read_blocking",
    "read_bounded",
    "request_to",
    "run_blocking",
    "stream_blocking",
    "stream_bounded",
    "tls_context",
]

FetchFailure = Literal["unreachable", "too_large", "too_late", "encoded"]
_IDENTITY: Final = ("", "identity")
_T = TypeVar("_T")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS settings of every reef client (httpx's defaults: the CA bundle, verification on),
    built once per process: a new client builds them again unless given these, loading the CA
    bundle (50-160 ms of CPU), and a client per attempt of a poll (an enclave coming up, a KMS
    root booting) spent most of ``reef up``'s main process there. Not mutated after it is
    built; pass it as ``verify=``."""
    return httpx.create_ssl_context()


class FetchError(ServiceError):
    """A stranger's HTTP answer could not be read within reef's bounds.

    ``reason`` says which: ``"unreachable"`` (no connection, or not HTTP; the httpx error is the
    ``__cause__``), ``"too_large"``, ``"too_late"`` or ``"encoded"`` (a content encoding that
    was not asked for). ``url`` is the request's URL without its query.
    """

    def __init__(
        self, message: str, *, url: str, reason: FetchFailure, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.url = url
        self.reason: FetchFailure = reason


@dataclass(frozen=True, slots=True)
class BoundedAnswer:
    """An answer read whole within the bounds: its status, headers and body (any status:
    callers quote an error answer's text)."""

    url: str
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self, *, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
        """The body parsed as JSON, as a stranger's document: nested at most ``max_depth``
        deep (:func:`reef.encoding.loads_bounded`), whatever the status.

        Args:
            what: what the body is, for the message (``"the answer of the control plane at
                <url>"``).
            max_depth: the deepest nesting accepted.

        Raises:
            ServiceError: naming ``what``, when the body is not JSON or nests too deeply.
        """
        try:
            return loads_bounded(self.body, what=what, max_depth=max_depth)
        except InputError as exc:
            # The sender's fault, not the caller's input: loads_bounded's hint speaks to the
            # sender, so it is not passed on.
            raise ServiceError(exc.message) from exc


@dataclass(frozen=True, slots=True)
class _Bounds:
    """What one exchange may cost, and how its failures are worded: the checks both readers
    share (pure: they look at what was read, never read)."""

    url: str
    max_bytes: int | None
    head_s: float
    """The time from the start until the head is read (never past ``deadline_s``)."""
    deadline_s: float | None
    what: str
    hint: str | None

    def fail(self, reason: FetchFailure, message: str) -> FetchError:
        return FetchError(message, url=self.url, reason=reason, hint=self.hint)

    def unreachable(self, exc: Exception) -> FetchError:
        cause = terminal_text(str(exc) or type(exc).__name__)[:300]
        return self.fail("unreachable", f"cannot reach {self.what} at {self.url}: {cause}")

    def too_large(self) -> FetchError:
        return self.fail(
            "too_large",
            f"{self.what} at {self.url} answered more than {self.max_bytes} bytes, larger than "
            "any honest answer; not read further",
        )

    def too_late(self, seconds: float | None) -> FetchError:
        return self.fail(
            "too_late",
            f"{self.what} at {self.url} did not answer within {seconds or self.head_s:g} s",
        )

    def check_head(self, response: httpx.Response) -> None:
        """Refuse, before reading any of the body, an answer declared too long or compressed."""
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and self.max_bytes is not None and int(declared) > self.max_bytes:
            raise self.too_large()
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding not in _IDENTITY:
            raise self.fail(
                "encoded",
                f"{self.what} at {self.url} answered in the "
                f"{terminal_text(encoding)[:40]!r} content encoding, which it was not asked for; "
                "not read",
            )

    def count(self, size: int) -> None:
        """Refuse a body once ``size`` bytes of it have come and that is over the bound."""
        if self.max_bytes is not None and size > self.max_bytes:
            raise self.too_large()


def _bounds(
    request: httpx.Request,
    max_bytes: int | None,
    head_s: float,
    deadline_s: float | None,
    what: str,
    hint: str | None,
) -> _Bounds:
    if (max_bytes is not None and max_bytes < 1) or not head_s > 0:
        raise MisuseError(
            f"a bounded read needs max_bytes >= 1 and deadlines > 0, got {max_bytes} and {head_s}"
        )
    if deadline_s is not None and not deadline_s > 0:
        raise MisuseError(f"a bounded read needs deadline_s > 0, got {deadline_s}")
    # The identity encoding keeps the count honest (see the module docstring); a server that
    # ignores it is refused in check_head.
    request.headers["accept-encoding"] = "identity"
    url = str(request.url.copy_with(query=None))
    head_s = head_s if deadline_s is None else min(head_s, deadline_s)
    return _Bounds(url, max_bytes, head_s, deadline_s, what, hint)


def request_to(
    method: str,
    url: str,
    *,
    what: str,
    hint: str | None = None,
    params: Mapping[str, str] | None = None,
    json: object = None,
    content: bytes | None = None,
) -> httpx.Request:
    """The request ``method url`` (with a JSON body unless ``json`` is None, or the body
    ``content``), for a URL that a stranger may have written (a provider's, on chain).

    Raises:
        FetchError: ``url`` is no URL httpx can send to (reason ``"unreachable"``).
    """
    try:
        return httpx.Request(method, url, params=params, json=json, content=content)
    except (httpx.InvalidURL, UnicodeError) as exc:
        shown = terminal_text(repr(url[:200]))
        raise FetchError(
            f"{what} at {shown} cannot be reached: that is no URL ({terminal_text(str(exc))[:200]})",
            url=url,
            reason="unreachable",
            hint=hint,
        ) from exc


# -- asyncio ------------------------------------------------------------------------------------


class _Answered:
    """An answer whose head was read within its bounds: its status and headers (what both
    readers' streams share)."""

    def __init__(self, bounds: _Bounds, response: httpx.Response) -> None:
        self._bounds = bounds
        self._response = response
        self.url = bounds.url
        """The request's URL, without its query."""
        self.status = response.status_code
        self.headers = response.headers

    def answer(self, body: bytes) -> BoundedAnswer:
        """This answer with ``body``, read whole."""
        return BoundedAnswer(self.url, self.status, self.headers, body)


class AsyncBoundedStream(_Answered):
    """An answer whose head was read within its bounds (what :func:`stream_bounded` yields):
    its status and headers, and its body, counted, as it comes."""

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body's pieces as they come (within the stream's deadline and byte bound).

        Raises:
            FetchError: reason ``"too_large"`` past ``max_bytes`` (and, through
                :func:`stream_bounded`, ``"too_late"`` or ``"unreachable"``).
        """
        size = 0
        # aiter_bytes, not aiter_raw: an in-process transport's answer may be read already.
        async for piece in self._response.aiter_bytes():
            size += len(piece)
            self._bounds.count(size)
            yield piece


@asynccontextmanager
async def stream_bounded(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    max_bytes: int | None,
    head_s: float,
    deadline_s: float | None,
    what: str,
    hint: str | None = None,
) -> AsyncIterator[AsyncBoundedStream]:
    """Send ``request`` through ``client``; yield its answer once its head is read, within
    ``head_s`` seconds, to be read within ``deadline_s`` seconds of the start (``None``: a
    stream that may last) and ``max_bytes`` bytes of body (``None``: no bound; the caller
    bounds what it keeps). The response is closed when the block ends.

    The deadline covers the block (the caller's work between pieces included); a failure in
    it, while reading the body or not, leaves the block as :class:`FetchError`.

    Args:
        client, request, what, hint: as :func:`read_bounded`.
        max_bytes: the longest body read, or ``None``.
        head_s: the time the head may take (connecting included).
        deadline_s: the time the whole exchange may take, or ``None``.

    Raises:
        FetchError: unreachable, too large, too late or compressed (its ``reason``).
        MisuseError: a bound that is not positive.
    """
    bounds = _bounds(request, max_bytes, head_s, deadline_s, what, hint)
    started = asyncio.get_running_loop().time()
    limit: float | None = bounds.head_s
    timer = asyncio.timeout_at(started + bounds.head_s)
    try:
        async with timer:
            response = await client.send(request, stream=True)
            try:
                bounds.check_head(response)
                limit = deadline_s
                timer.reschedule(None if deadline_s is None else started + deadline_s)
                yield AsyncBoundedStream(bounds, response)
            finally:
                await response.aclose()
    except TimeoutError as exc:
        if not timer.expired():
            raise bounds.unreachable(exc) from exc
        raise bounds.too_late(limit) from exc
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
        # UnicodeError: a host name the IDNA codec cannot encode, raised while connecting.
        raise bounds.unreachable(exc) from exc


async def read_bounded(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    max_bytes: int,
    deadline_s: float,
    what: str,
    hint: str | None = None,
) -> BoundedAnswer:
    """Send ``request`` through ``client`` and read its answer within ``deadline_s`` seconds
    (head and body together) and ``max_bytes`` bytes of body.

    Args:
        client: the client to send through (its transport and per-operation timeouts).
        request: the request (``client.build_request`` or ``httpx.Request``); it is sent with
            ``accept-encoding: identity``.
        max_bytes: the longest body read; a longer one is refused, not read to its end.
        deadline_s: the time the whole exchange may take.
        what: who answers, for messages (``"the provider's control plane"``).
        hint: what the user can do when the answer cannot be read.

    Returns:
        The answer, whatever its status.

    Raises:
        FetchError: unreachable, too large, too late or compressed (its ``reason``).
        MisuseError: a bound that is not positive.
    """
    async with stream_bounded(
        client,
        request,
        max_bytes=max_bytes,
        head_s=deadline_s,
        deadline_s=deadline_s,
        what=what,
        hint=hint,
    ) as stream:
        body = bytearray()
        async for piece in stream.aiter_bytes():
            body += piece
    return stream.answer(bytes(body))


# -- blocking -----------------------------------------------------------------------------------


class _Watchdog:
    """Keeps a blocking exchange's deadline: when it passes, the exchange's sockets are shut
    down, which ends the read under way (a socket timeout only bounds each read).

    httpx's ``trace`` extension (:meth:`trace`) hands it each connection the exchange opens (a
    redirect opens another). It holds a duplicate of each socket's descriptor: TLS takes the
    socket httpcore connected over, and shutting the duplicate down still reaches the connection.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        self._by: float | None = None
        self.expired = False
        """Whether the deadline passed and the sockets were shut down."""

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """httpx's ``trace`` extension: keep the socket of each connection made."""
        if event == "connection.connect_tcp.complete":
            self.hold(info.get("return_value"))

    def hold(self, stream: object) -> None:
        """Watch the socket of ``stream`` (an httpcore network stream), if it has one."""
        get_extra_info = getattr(stream, "get_extra_info", None)
        connected = get_extra_info("socket") if get_extra_info is not None else None
        if not isinstance(connected, socket.socket):
            return
        held = connected.dup()
        with self._lock:
            self._sockets.append(held)
            expired = self.expired
        if expired:  # connected after the deadline passed
            _shut(held)

    @property
    def watching(self) -> bool:
        """Whether it holds a socket to shut down."""
        with self._lock:
            return bool(self._sockets)

    def arm(self, seconds: float | None) -> None:
        """Expire in ``seconds`` (never, for ``None``), instead of when it would have."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._by = None if seconds is None else time.monotonic() + seconds
        if seconds is not None:
            self._timer = threading.Timer(max(0.0, seconds), self._expire)
            self._timer.daemon = True
            self._timer.start()

    def passed(self) -> bool:
        """Whether the deadline has passed (checked at each piece: a transport without a
        socket has nothing to shut down)."""
        return self.expired or (self._by is not None and time.monotonic() > self._by)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            held = list(self._sockets)
        for each in held:
            _shut(each)

    def close(self) -> None:
        """Stop watching and let go of the duplicates."""
        self.arm(None)
        with self._lock:
            held, self._sockets = self._sockets, []
        for each in held:
            each.close()


def _shut(held: socket.socket) -> None:
    with contextlib.suppress(OSError):  # closed already, or never connected
        held.shutdown(socket.SHUT_RDWR)


class BoundedStream(_Answered):
    """An answer whose head was read within its bounds (what :func:`stream_blocking` yields):
    its status and headers, and its body, counted, as it comes."""

    def __init__(self, bounds: _Bounds, response: httpx.Response, watchdog: _Watchdog) -> None:
        super().__init__(bounds, response)
        self._watchdog = watchdog

    def iter_bytes(self) -> Iterator[bytes]:
        """The body's pieces as they come (within the stream's deadline and byte bound).

        Raises:
            FetchError: reason ``"too_large"`` or ``"too_late"`` (and, through
                :func:`stream_blocking`, ``"unreachable"``).
        """
        size = 0
        late = self._bounds.too_late
        for piece in self._response.iter_bytes():
            size += len(piece)
            self._bounds.count(size)
            if self._watchdog.passed():
                raise late(self._bounds.deadline_s)
            yield piece
        if self._watchdog.expired:  # a body without a length ends where the watchdog cut it
            raise late(self._bounds.deadline_s)


def _capped_timeouts(client: httpx.Client, request: httpx.Request, head_s: float) -> Any:
    """The request's per-operation timeouts, its connect timeout no longer than ``head_s``:
    the watchdog has no socket to shut down before a connection is made."""
    timeouts = dict(request.extensions.get("timeout") or client.timeout.as_dict())
    connect = timeouts.get("connect")
    timeouts["connect"] = head_s if connect is None else min(connect, head_s)
    return timeouts


@contextmanager
def stream_blocking(
    client: httpx.Client,
    request: httpx.Request,
    *,
    max_bytes: int | None,
    head_s: float,
    deadline_s: float | None,
    what: str,
    hint: str | None = None,
) -> Iterator[BoundedStream]:
    """:func:`stream_bounded` for blocking code: send ``request`` through ``client``; yield its
    answer once its head is read within ``head_s`` seconds, its body to be read within
    ``deadline_s`` seconds of the start (``None``: a stream that may last) and ``max_bytes``
    bytes (``None``: no bound). The response is closed when the block ends.

    The deadline is kept by shutting down the connection the exchange opens (module docstring),
    so the request is sent with ``connection: close``: a client shared by bounded reads opens
    one connection each. (A connection the client kept alive from a request of its own, not
    bounded, would be reused, and its head bounded only by the client's read timeout.)

    Raises:
        FetchError: unreachable, too large, too late or compressed (its ``reason``).
        MisuseError: a bound that is not positive.
    """
    bounds = _bounds(request, max_bytes, head_s, deadline_s, what, hint)
    watchdog = _Watchdog()
    # A connection the watchdog did not see opened cannot be shut down before its head: no
    # bounded exchange leaves its connection to a later one.
    request.headers["connection"] = "close"
    request.extensions = {
        **request.extensions,
        "trace": watchdog.trace,
        "timeout": _capped_timeouts(client, request, bounds.head_s),
    }
    started = time.monotonic()
    limit: float | None = bounds.head_s
    watchdog.arm(bounds.head_s)
    try:
        response = client.send(request, stream=True)
        try:
            if watchdog.passed():  # a head from a transport without a socket
                raise bounds.too_late(limit)
            bounds.check_head(response)
            if not watchdog.watching:  # a connection the client kept alive: watch its body
                watchdog.hold(response.extensions.get("network_stream"))
            limit = deadline_s
            if deadline_s != bounds.head_s:  # else the watchdog is armed for it already
                left = None if deadline_s is None else deadline_s - (time.monotonic() - started)
                watchdog.arm(left)
            yield BoundedStream(bounds, response, watchdog)
        finally:
            response.close()
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
        # After the deadline, the failure is the watchdog's doing (a connection it shut down),
        # or an httpx timeout that raced it there (a per-read timeout equal to the deadline).
        timed_out = isinstance(exc, httpx.TimeoutException)
        if watchdog.expired or (
            timed_out and limit is not None and time.monotonic() - started >= limit
        ):
            raise bounds.too_late(limit) from exc
        raise bounds.unreachable(exc) from exc
    finally:
        watchdog.close()


def read_blocking(
    client: httpx.Client,
    request: httpx.Request,
    *,
    max_bytes: int,
    deadline_s: float,
    what: str,
    hint: str | None = None,
) -> BoundedAnswer:
    """:func:`read_bounded` for blocking code, through ``client`` (its transport and
    per-operation timeouts): the answer within ``deadline_s`` seconds and ``max_bytes`` bytes.

    Raises:
        FetchError, MisuseError: as :func:`read_bounded`.
    """
    with stream_blocking(
        client,
        request,
        max_bytes=max_bytes,
        head_s=deadline_s,
        deadline_s=deadline_s,
        what=what,
        hint=hint,
    ) as stream:
        body = b"".join(stream.iter_bytes())
    return stream.answer(body)


def fetch_blocking(
    request: httpx.Request,
    *,
    transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    timeout: float | httpx.Timeout,
    max_bytes: int,
    deadline_s: float,
    what: str,
    hint: str | None = None,
) -> BoundedAnswer:
    """:func:`read_blocking` through a client of its own (with its default headers).

    Over the network (no ``transport``) or a blocking transport, httpx's blocking client reads
    it. An async-capable transport (``httpx.MockTransport``) is read by :func:`read_bounded` on
    an event loop of its own (:func:`run_blocking`).

    Args:
        transport: the transport to send through; a new connection otherwise.
        timeout: httpx's per-operation timeout (connect, each read).
        max_bytes, deadline_s, what, hint: as :func:`read_bounded`.

    Raises:
        FetchError, MisuseError: as :func:`read_bounded`.
    """
    if isinstance(transport, httpx.AsyncBaseTransport):
        return run_blocking(
            _read_with_client(request, transport, timeout, max_bytes, deadline_s, what, hint)
        )
    # A plain-http request never meets TLS (no redirect is followed): no CA bundle to load.
    tls: ssl.SSLContext | bool = tls_context() if request.url.scheme != "http" else False
    with httpx.Client(timeout=timeout, transport=transport, verify=tls) as client:
        return read_blocking(
            client,
            _with_defaults(client, request),
            max_bytes=max_bytes,
            deadline_s=deadline_s,
            what=what,
            hint=hint,
        )


async def _read_with_client(
    request: httpx.Request,
    transport: httpx.AsyncBaseTransport,
    per_operation: float | httpx.Timeout,
    max_bytes: int,
    deadline_s: float,
    what: str,
    hint: str | None,
) -> BoundedAnswer:
    async with httpx.AsyncClient(
        timeout=per_operation, transport=transport, verify=tls_context()
    ) as client:
        return await read_bounded(
            client,
            _with_defaults(client, request),
            max_bytes=max_bytes,
            deadline_s=deadline_s,
            what=what,
            hint=hint,
        )


def _with_defaults(
    client: httpx.Client | httpx.AsyncClient, request: httpx.Request
) -> httpx.Request:
    """``request`` with the client's default headers it lacks (``user-agent``, ``accept``), as
    ``client.get`` would send them: ``send`` adds none."""
    for name, value in client.headers.items():
        request.headers.setdefault(name, value)
    return request


def run_blocking(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` to its end on an event loop of its own, from blocking code: in this
    thread, or in a new one when this thread already runs a loop (a blocking call made from
    async code still blocks its caller, but does not fail).

    The loop is never made the thread's current loop, so a loop the caller set (and does not
    run) stays set.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
            return runner.run(coroutine)
    out: list[_T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
                out.append(runner.run(coroutine))
        except BaseException as exc:  # raised again in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run, name="reef-bounded-fetch")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return out[0]
