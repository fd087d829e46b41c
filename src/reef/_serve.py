"""The serving floor: how every reef HTTP server listens, refuses and stops.

Every reef service (devnet JSON-RPC, KMS public and derive listeners, the attestation verifier,
the image store, the provider's control plane, an enclave's trusted base) is an ASGI app run by
uvicorn. This module is the one place that decides how:

- **Sockets are bound by reef** (:func:`reef._listen.bind`, which Scallop's listener uses too),
  before uvicorn starts, with ``IPPROTO_TCP`` as the protocol:
  asyncio sets ``TCP_NODELAY`` only on sockets whose ``proto`` says TCP, and
  ``socket.create_server`` leaves it 0, which costs every kept-alive request ~44 ms of Nagle plus
  delayed ACK. Binding first also turns a busy port into a clear error before anything starts
  and lets port 0 pick a free port whose number is known.
- **Limits**: a request body over ``max_body`` is refused with 413, headers over ``max_header``
  with 431 (and a head still incomplete past four times that, counted across reads, with 431
  and a close), a peer holding more than ``per_peer`` connections gets 503 and is closed, a
  connection that does not deliver a request's headers within ``read_timeout`` (or a body chunk
  within it) is closed (408 when a request had begun), and idle kept-alive connections close after
  ``idle_timeout``; a client that reads nothing of its answer for ``read_timeout`` (its send
  buffer full) is dropped. Where a server sets them, a URI over ``max_uri`` is answered 414 and a
  request still unanswered after ``request_timeout`` 503 (the KMS's listeners). Each refusal
  logs one line on the ``reef.serve`` logger.
- **Stopping**: servers embedded in a program never touch signals; the program stops them with
  :meth:`Server.aclose`. A command that serves until interrupted uses :func:`stop_signals` (or
  :func:`run`, which uses it): SIGINT and SIGTERM set one event, and the servers close in order.
- **Metrics**: a server started by :func:`serve`, :func:`run` or :func:`run_on` answers
  ``GET /metrics`` in Prometheus' text format (requests, latencies, errors and refusals by route,
  the process's CPU and memory, and whatever collectors the app lists in ``reef_collectors``).
  ``prometheus_client`` is imported only where metrics are on: the enclave supervisor serves
  its trusted base with plain :class:`Server` objects (metrics off), so enclaves never load it.

uvicorn is kept (rather than hypercorn or a hand-written loop) because every reef app already
runs on it; what it lacks (per-peer caps, a header read deadline, a bound on request heads, body
limits with a proper 413) is added here by a subclass of its protocol and one ASGI middleware.

The protocol is uvicorn's **httptools** one, not its h11 one: httptools (by uvloop's authors)
binds llhttp, Node's HTTP/1.1 parser in C, where h11 parses in pure Python with an event object
per piece of a request. Measured A/B in one session (bench/services.py), the server's CPU per
kept-alive request fell by about a third (0.28 to 0.18 ms), and what HTTP adds to a devnet
JSON-RPC request by 20-36 %. llhttp has no limit on a request head (h11 had
``max_incomplete_event_size``), so the subclass counts an incomplete head's bytes itself; it
accepts only the methods it knows (so metrics cannot grow a series per made-up method). uvloop
was not adopted: on top of httptools it saved nothing beyond the noise, and it would change
every service's event loop (docs/serving.md).

Timers are what the floor's per-request Python costs most (each is a heap entry, and a cancelled
one stays in the loop's heap until it would have fired): a request's body is read under a
deadline only when the app asks for it before it is all in, which almost never happens to a
small body. That took 5-10 us off the ~40 us the floor's Python cost a request (requests fed to
the protocol in process; a request costs ~0.2 ms of server CPU in all, mostly kernel and loop).

One module (about 1170 lines): the serving floor is one policy (bind, limit, refuse, time out,
count, stop) applied by cooperating pieces (the socket, the protocol subclass, the ASGI guard,
the server); splitting it would scatter the limits a reader must see together.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from reef._listen import bind, is_loopback, url_of
from reef.errors import InputError, ReefError, ServiceError

__all__ = [
    "Guard",
    "Limits",
    "METRICS_PATH",
    "Refusal",
    "Server",
    "Serving",
    "Waitable",
    "first_stopped",
    "foreign_subrequest",
    "run",
    "run_on",
    "serve",
    "serve_until_stopped",
    "stop_signals",
    "until_stopped",
]

_log = logging.getLogger("reef.serve")

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)

ASGIApp = Callable[..., Awaitable[None]]
Refusal = Callable[[int, str], bytes]
"""Builds the body of a refusal from its HTTP status and reason (JSON by default)."""


@dataclass(frozen=True, kw_only=True)
class Limits:
    """What one server accepts from its clients.

    Attributes:
        max_body: request body bytes; more is answered 413.
        max_header: bytes of request line and headers together; more is answered 431.
        read_timeout: seconds a client may take to send a request's headers, and between two
            chunks of its body.
        idle_timeout: seconds a kept-alive connection may sit idle between requests.
        per_peer: open connections one peer address may hold; more are answered 503 and closed.
        stop_timeout: seconds :meth:`Server.aclose` lets running requests finish.
        max_uri: bytes of request path and query together; more is answered 414 (None: only
            ``max_header`` bounds them).
        request_timeout: seconds the app may take over a request, body and handler included;
            past that it is cancelled and the request answered 503, or its response cut short
            if it had begun (None: no such deadline, and no timer per request).
    """

    max_body: int = 5 * 1024 * 1024
    max_header: int = 16 * 1024
    read_timeout: float = 15.0
    idle_timeout: float = 5.0
    per_peer: int = 128
    stop_timeout: float = 5.0
    max_uri: int | None = None
    request_timeout: float | None = None


METRICS_PATH: Final = "/metrics"


def _default_refusal(status: int, reason: str) -> bytes:
    return json.dumps({"error": reason}).encode()


# ---------------------------------------------------------------------------------- apps


def _rebound_name(scope: Any) -> str | None:
    """Why a request that reached a loopback address under another name must not be answered
    (``None`` when it may be).

    A page of another site whose DNS name its owner rebinds to 127.0.0.1 reaches loopback
    servers from the visitor's browser and reads what they answer as its own origin's: only the
    Host header tells such a request from the machine's own. The floor answers ``/metrics``
    before the app (the network's gauges: jobs, balances, providers), so it checks here; apps
    check their own routes.
    """
    local = scope.get("server")
    if not local or not is_loopback(str(local[0])):
        return None
    host = next((value for name, value in scope.get("headers", ()) if name == b"host"), b"")
    text = host.decode("latin-1")
    name = text[1:].split("]", 1)[0] if text.startswith("[") else text.rsplit(":", 1)[0]
    if not name or is_loopback(name):
        return None
    return (
        f"this server is reached on loopback, where it answers only loopback names, not "
        f"{name[:100]!r}: a page of another site may have rebound its name here"
    )


def foreign_subrequest(headers: Mapping[str, str]) -> str | None:
    """Why a request is another site's page asking from script or an embed, or ``None``.

    Browsers say who asks in ``Sec-Fetch-Site`` (programs send nothing); ``headers`` are the
    request's, by lower-case name. A page of another site (another port on loopback is the same
    *site*, another origin) may open a server's page as its own (a link: a top-level
    navigation); anything else it asks (a ``fetch`` in ``no-cors`` mode, an ``<img>``, an
    ``EventSource``, a frame) it cannot read, yet each one has the server do the work (read the
    chain for ``/metrics``, ask providers, hold a relay), for nothing but to wear it out.
    """
    site = headers.get("sec-fetch-site", "")
    if site not in ("cross-site", "same-site"):
        return None
    mode = headers.get("sec-fetch-mode", "")
    dest = headers.get("sec-fetch-dest", "")
    if mode == "navigate" and dest == "document":
        return None
    return (
        f"another site's page ({site}) may only link here, not ask from script or an embed "
        f"(Sec-Fetch-Dest: {dest[:40] or 'none'}, Sec-Fetch-Mode: {mode[:40] or 'none'})"
    )


def _scope_headers(scope: Any) -> dict[str, str]:
    return {
        bytes(name).decode("latin-1").lower(): bytes(value).decode("latin-1")
        for name, value in scope.get("headers", ())
    }


# ------------------------------------------------------------------- connection-level limits


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "?"


class _Coalescing:
    """A transport that sends a response's head and body in one segment.

    uvicorn writes a response's status line and headers when the app sends
    ``http.response.start`` and the body when it sends ``http.response.body``: two ``send``
    calls, two TCP segments, and a client that wakes twice. Here a write is held until the next
    write (sent together) or the loop's next turn (sent alone), so the bytes and their order
    are unchanged and nothing waits longer than one turn of the loop. For the verifier, a tenth
    of the CPU a request costs server and client together (bench/services.py).
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if self._held is None:
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
            return
        held, self._held = self._held, None
        self._transport.write(held + data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _protocol_class(
    what: str, limits: Limits, refusal: Refusal, metrics: _Metrics | None = None
) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with per-peer connection caps, a header read deadline and a
    bound on an incomplete request head.

    The counts live in this closure: one class per server, so two servers never share them.
    """
    open_by_peer: dict[str, int] = {}
    # llhttp (httptools' parser) has no limit of its own on a request head, and uvicorn keeps
    # every byte of one until it is complete: a head still incomplete past this many bytes is
    # answered 431 and closed. A complete head over ``max_header`` is answered 431 by Guard,
    # which measures it exactly; this bound only keeps what a connection holds small, so it
    # leaves room for the request line, separators and optional whitespace Guard does not count.
    head_cap = 4 * limits.max_header

    class Guarded(HttpToolsProtocol):
        _reef_peer: str | None = None
        _reef_deadline: asyncio.TimerHandle | None = None
        _reef_cycle: object = None
        # Where the parser is: between messages (idle), in a request head, or past it (body).
        _reef_idle: bool = True
        _reef_in_head: bool = False
        _reef_heads: int = 0
        """Request heads begun on this connection, to tell whether one began in a read."""
        _reef_head_bytes: int = 0
        """Bytes read of the current, incomplete head (see ``data_received``)."""
        _reef_stalled: asyncio.TimerHandle | None = None
        """Armed while the client reads nothing of what it is sent (writing is paused)."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(_Coalescing(transport, self.loop))  # type: ignore[arg-type]
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = _peer(transport)
            if open_by_peer.get(peer, 0) >= limits.per_peer:
                _log.warning(
                    "%s: refused a connection from %s: it holds %d connections already",
                    what,
                    peer,
                    limits.per_peer,
                )
                if metrics is not None:
                    metrics.refused(503)
                transport.write(
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n"
                    b"connection: close\r\n\r\n"
                )
                transport.close()
                return
            self._reef_peer = peer
            open_by_peer[peer] = open_by_peer.get(peer, 0) + 1
            self._arm()

        def _arm(self) -> None:
            # A deadline for the next request's headers, measured from the first byte awaited.
            self._reef_cycle = self.cycle
            self._reef_deadline = self.loop.call_later(limits.read_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._reef_deadline is not None:
                self._reef_deadline.cancel()
                self._reef_deadline = None

        def _too_slow(self) -> None:
            self._reef_deadline = None
            if self.cycle is not self._reef_cycle or self.transport.is_closing():
                return
            _log.warning(
                "%s: closed a connection from %s: no complete request headers in %g s",
                what,
                self._reef_peer,
                limits.read_timeout,
            )
            self.transport.close()

        # A client that asks and then reads nothing would hold its connection (and whatever the
        # answer holds open, e.g. a file) for ever: writing pauses when its send buffer is full,
        # and resumes only as it reads. Paused for ``read_timeout`` without a byte taken, the
        # connection is dropped (aborted: closing would wait to flush what it will never read).

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._reef_stalled is None:
                self._reef_stalled = self.loop.call_later(limits.read_timeout, self._unread)

        def resume_writing(self) -> None:
            if self._reef_stalled is not None:
                self._reef_stalled.cancel()
                self._reef_stalled = None
            super().resume_writing()

        def _unread(self) -> None:
            self._reef_stalled = None
            _log.warning(
                "%s: dropped a connection to %s: it read nothing of its answer in %g s",
                what,
                self._reef_peer,
                limits.read_timeout,
            )
            self.transport.abort()

        # Parser callbacks (httptools calls them from inside ``feed_data``).

        def on_message_begin(self) -> None:
            self._reef_idle = False
            self._reef_in_head = True
            self._reef_heads += 1
            self._reef_head_bytes = 0
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._reef_in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._reef_idle = True
            # The request's body is all in: Guard receives it without a read deadline.
            self.scope[_BODY_IN] = True  # type: ignore[typeddict-unknown-key]
            super().on_message_complete()

        def data_received(self, data: bytes) -> None:
            if self._reef_deadline is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()
            idle, heads = self._reef_idle, self._reef_heads
            super().data_received(data)
            if self._reef_in_head and not self.transport.is_closing():
                # A head is still incomplete after this read. Its bytes in the read are all of
                # the read when the head had begun before it, or began in it with nothing before
                # (the connection was between messages); a head that begins right after a
                # pipelined body in the same read is counted from the next read on.
                if self._reef_heads == heads:
                    self._reef_head_bytes += len(data)
                elif idle and self._reef_heads == heads + 1:
                    self._reef_head_bytes = len(data)
                if self._reef_head_bytes > head_cap:
                    self._refuse_head()
                    return
            if self._reef_deadline is not None and self.cycle is not self._reef_cycle:
                self._disarm()  # the headers are in: the app's body reads have their own timeout

        def _refuse_head(self) -> None:
            reason = f"request headers over {limits.max_header} bytes"
            _log.warning(
                "%s: refused a request from %s: 431 %s (%d bytes and not complete)",
                what,
                self._reef_peer,
                reason,
                self._reef_head_bytes,
            )
            if metrics is not None:
                metrics.refused(431)
            body = refusal(431, reason)
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (len(body), body)
            )
            self.transport.close()

        def _unsupported_upgrade_warning(self) -> None:
            # uvicorn's own words suggest installing a WebSocket library; no reef app speaks
            # one, so say what happens instead: answered as plain HTTP, then closed (the parser
            # reads nothing after an upgrade's head, so the connection cannot be reused).
            _log.warning(
                "%s: ignored an Upgrade request from %s; answering it as plain HTTP and closing",
                what,
                self._reef_peer,
            )
            if self.cycle is not None:
                self.cycle.keep_alive = False

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._reef_stalled is not None:
                self._reef_stalled.cancel()
                self._reef_stalled = None
            peer = self._reef_peer
            if peer is not None:
                self._reef_peer = None
                left = open_by_peer.get(peer, 1) - 1
                if left:
                    open_by_peer[peer] = left
                else:
                    open_by_peer.pop(peer, None)
            super().connection_lost(exc)

    return Guarded


# ------------------------------------------------------------------------------- metrics


class _Metrics:
    """One server's Prometheus registry: request counts, latencies, refusals, the process.

    Each server has its own registry (no process-wide state): two servers in one process (reef up
    runs several) each answer for themselves, labelled ``service`` with their ``what``.
    prometheus_client is imported here, on first use, never at module level (see the module
    docstring).
    """

    def __init__(self, what: str, app: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

        self.registry = registry = CollectorRegistry()
        self.what = what
        ProcessCollector(registry=registry)
        self.requests = Counter(
            "reef_http_requests",
            "HTTP requests answered, by route template and status",
            ["service", "method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "reef_http_request_duration_seconds",
            "Time from the request's headers to the end of its response",
            ["service", "route"],
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.errors = Counter(
            "reef_http_errors",
            "Responses with a 5xx status, or requests whose app raised",
            ["service", "route"],
            registry=registry,
        )
        self.refusals = Counter(
            "reef_http_refusals",
            "Requests and connections the serving floor refused (413, 431, 408, 503, ...)",
            ["service", "status"],
            registry=registry,
        )
        self.in_progress = Gauge(
            "reef_http_requests_in_progress",
            "Requests being answered now",
            ["service"],
            registry=registry,
        )
        self.running = self.in_progress.labels(what)
        # The children of one route's series, looked up once: ``labels()`` checks and joins its
        # arguments on every call, a few microseconds of every request. As many entries as
        # series (route templates, httptools' fixed set of methods, statuses).
        self._series: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        for collector in getattr(app, "reef_collectors", ()):
            registry.register(collector)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def refused(self, status: int) -> None:
        self.refusals.labels(self.what, str(status)).inc()

    def observe(self, scope: Any, status: int | None, seconds: float) -> None:
        route = scope.get("route")
        # The route's template (``/job/{id}``), never the raw path: one series per route, not
        # one per URL a client makes up.
        template = str(getattr(route, "path", "")) or ("unmatched" if status == 404 else "other")
        shown = str(status) if status is not None else "none"
        key = (str(scope.get("method", "?")), template, shown)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                self.requests.labels(self.what, key[0], template, shown),
                self.latency.labels(self.what, template),
            )
        series[0].inc()
        series[1].observe(seconds)
        if status is None or status >= 500:
            self.errors.labels(self.what, template).inc()


# ---------------------------------------------------------------------- request-level limits


_BODY_IN: Final = "reef.body_in"
"""Scope key the protocol sets once a request's body has been read whole (by uvicorn)."""


class _Refused(Exception):
    """Raised out of the app's ``receive`` once the floor has answered the request itself."""


@dataclass(eq=False, slots=True)
class Guard:
    """ASGI middleware: the floor's request-level limits (see :class:`Limits`): the request URI,
    header and body sizes, the body read timeout and the request deadline.

    :class:`Server` puts every app it serves behind one. An app that must keep its limits
    wherever it runs (in process, or on another server, as the KMS's Scallop listener) wraps
    itself in one too.

    Args:
        app: the guarded app.
        what: names the service in log lines.
        refusal: builds the body of each refusal, of type ``media_type``.
        metrics: counts requests and refusals, and answers ``GET /metrics`` (None: neither).
        on_refusal: told of each refusal instead of the ``reef.serve`` logger, with the
            request's scope, the status and the reason: an app that logs its own refusals (the
            image store) logs the floor's in the same line (by default the app's
            ``reef_on_refusal`` attribute, in :class:`Server`).
    """

    app: ASGIApp
    what: str
    limits: Limits
    refusal: Refusal = _default_refusal
    metrics: _Metrics | None = None
    media_type: str = "application/json"
    on_refusal: Callable[[Any, int, str], None] | None = None
    # A client that sends its whole body before reading (most do, without Expect:
    # 100-continue) would otherwise meet a connection reset instead of the 413: read and
    # drop what it sends, up to this much, before answering.
    _drain_cap: int = field(init=False)

    def __post_init__(self) -> None:
        self._drain_cap = 4 * self.limits.max_body + 1024 * 1024

    async def _drain(self, receive: Callable[[], Awaitable[Any]], received: int) -> None:
        with contextlib.suppress(TimeoutError):
            while received <= self._drain_cap:
                async with asyncio.timeout(self.limits.read_timeout):
                    message = await receive()
                if message["type"] != "http.request":
                    return
                received += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return

    async def _refuse(
        self, send: Callable[[dict[str, Any]], Awaitable[None]], scope: Any, status: int, why: str
    ) -> None:
        client = scope.get("client") or ("?",)
        if self.metrics is not None:
            self.metrics.refused(status)
        if self.on_refusal is not None:
            self.on_refusal(scope, status, why)
        else:
            _log.warning(
                "%s: refused %s %s from %s: %d %s",
                self.what,
                scope.get("method", "?"),
                scope.get("path", "?"),
                client[0],
                status,
                why,
            )
        body = self.refusal(status, why)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", self.media_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        if metrics is None:
            await self._guarded(scope, receive, send)
            return
        if scope.get("path") == METRICS_PATH and scope.get("method") in ("GET", "HEAD"):
            refused = _rebound_name(scope) or foreign_subrequest(_scope_headers(scope))
            if refused is not None:
                await self._refuse(send, scope, 403, refused)
                return
            # In a worker thread: an app's collectors may read slow sources (the dashboard's read
            # the chain), and the event loop keeps serving meanwhile.
            body, content_type = await asyncio.to_thread(metrics.render)
            headers = [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                # Live figures (balances, jobs): never kept by a cache, never sniffed as a page.
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
                (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        status: list[int] = []

        async def counted_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        started = asyncio.get_running_loop().time()
        metrics.running.inc()
        try:
            await self._guarded(scope, receive, counted_send)
        finally:
            metrics.running.dec()
            elapsed = asyncio.get_running_loop().time() - started
            metrics.observe(scope, status[0] if status else None, elapsed)

    async def _guarded(self, scope: Any, receive: Any, send: Any) -> None:
        limits = self.limits
        uri_bytes = len(scope.get("raw_path") or b"") + len(scope.get("query_string", b""))
        if limits.max_uri is not None and uri_bytes > limits.max_uri:
            await self._refuse(send, scope, 414, "request URI too long")
            return
        header_bytes = uri_bytes + sum(
            len(name) + len(value) + 4 for name, value in scope["headers"]
        )
        if header_bytes > limits.max_header:
            await self._refuse(send, scope, 431, f"request headers over {limits.max_header} bytes")
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    await self._refuse(send, scope, 400, "invalid content-length")
                    return
                if int(value) > limits.max_body:
                    if int(value) <= self._drain_cap:
                        await self._drain(receive, 0)
                    await self._refuse(
                        send, scope, 413, f"request body over {limits.max_body} bytes"
                    )
                    return

        state = {"received": 0, "answered": False, "started": False, "body_done": False}

        async def guarded_receive() -> Any:
            if state["body_done"]:
                # The body is in: what comes now is the disconnect, which a streaming response
                # waits for as long as it streams. No deadline on that.
                return await receive()
            if _BODY_IN in scope:
                # The protocol has the whole body: this receive returns it without waiting for
                # the client, so it needs no deadline (a timer less per request, ~3 us).
                message = await receive()
            else:
                try:
                    async with asyncio.timeout(limits.read_timeout):
                        message = await receive()
                except TimeoutError:
                    if not state["started"]:
                        state["answered"] = True
                        await self._refuse(
                            send, scope, 408, f"no request body data in {limits.read_timeout:g} s"
                        )
                    raise _Refused from None
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limits.max_body:
                    if message.get("more_body", False):
                        await self._drain(receive, state["received"])
                    if not state["started"]:
                        state["answered"] = True
                        await self._refuse(
                            send, scope, 413, f"request body over {limits.max_body} bytes"
                        )
                    raise _Refused
                state["body_done"] = not message.get("more_body", False)
            return message

        async def guarded_send(message: Any) -> None:
            if state["answered"]:
                return  # the floor answered already; whatever the app says now is dropped
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        # Entered only when there is a deadline: even asyncio.timeout(None), which arms no
        # timer, cost 14-20 us per request in a micro-benchmark here (Python 3.11).
        deadline = (
            None if limits.request_timeout is None else asyncio.timeout(limits.request_timeout)
        )
        try:
            if deadline is None:
                await self.app(scope, guarded_receive, guarded_send)
            else:
                async with deadline:
                    await self.app(scope, guarded_receive, guarded_send)
        except _Refused:
            pass
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
                # The app ran past request_timeout and was cancelled. A response it had begun
                # is cut short (the client sees it incomplete); otherwise the floor answers.
                if not (state["started"] or state["answered"]):
                    state["answered"] = True
                    await self._refuse(send, scope, 503, "request timed out")
            elif not state["answered"]:
                raise
            # Else the app failed on the refusal (e.g. turned it into a 500 and re-raised).


# ------------------------------------------------------------------------------- the server


class _Embedded(uvicorn.Server):
    """uvicorn that never takes the process's signals: the program embedding it decides."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn versions
        return None


class Server:
    """One ASGI app served by uvicorn on a pre-bound socket, in the running event loop.

    An async context manager (``async with await serve(...)`` or ``async with Server(...)``);
    :meth:`aclose` stops it. It installs no signal handlers.

    Args:
        app: the ASGI app.
        sock: a listening socket (from :func:`bind`); the server owns it from now on.
        what: names the service in errors and log lines.
        limits: what clients may send (:class:`Limits`); by default the app's ``reef_limits``
            attribute if it has one, else ``Limits()``.
        refusal: builds the body of the floor's own refusals (413, 431, 408, 400); by default
            the app's ``reef_refusal`` attribute if it has one, else ``{"error": reason}``.
        log_level: uvicorn's log level.
        metrics: answer ``GET /metrics`` (off by default here, on in :func:`serve` and
            :func:`run`): the enclave supervisor's servers stay without prometheus_client.
        uvicorn_logging: let uvicorn give its loggers its own handlers and formats (through
            ``logging.config``, at each start). False leaves them to the program: their records
            go to the root logger's handlers (stderr when it has none), and ``logging.config``
            need not be loaded (the enclave supervisor).
    """

    def __init__(
        self,
        app: Any,
        sock: socket.socket,
        *,
        what: str,
        limits: Limits | None = None,
        refusal: Refusal | None = None,
        log_level: str = "warning",
        metrics: bool = False,
        uvicorn_logging: bool = True,
    ) -> None:
        self.what = what
        # An app may carry its own limits (the image store takes large uploads).
        self.limits = limits or getattr(app, "reef_limits", None) or Limits()
        self.socket = sock
        self.url = url_of(sock)
        """``http://host:port`` where the app answers."""
        self.host: str = sock.getsockname()[0]
        self.port: int = sock.getsockname()[1]
        # An app may carry the body of its refusals (the devnet answers JSON-RPC errors).
        refusal = refusal or getattr(app, "reef_refusal", None) or _default_refusal
        self.metrics: _Metrics | None = _Metrics(what, app) if metrics else None
        self._refusal: Refusal = refusal
        self._app = Guard(
            app,
            what,
            self.limits,
            refusal,
            self.metrics,
            on_refusal=getattr(app, "reef_on_refusal", None),
        )
        self._log_level = log_level
        self._uvicorn_logging = uvicorn_logging
        self._server: _Embedded | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Server({self.what}, {self.url})"

    async def start(self) -> Server:
        """Start accepting connections; return once the server is ready.

        Raises:
            ServiceError: if uvicorn fails to start.
        """
        limits = self.limits
        config = uvicorn.Config(
            self._app,
            http=_protocol_class(self.what, limits, self._refusal, self.metrics),
            log_level=self._log_level,
            log_config=LOGGING_CONFIG if self._uvicorn_logging else None,
            lifespan="off",
            access_log=False,
            timeout_keep_alive=max(1, round(limits.idle_timeout)),
            timeout_graceful_shutdown=max(1, round(limits.stop_timeout)),
            # No app of reef speaks WebSocket: "auto" would import the websockets package into
            # every server (about 3 MiB of an enclave supervisor's memory) for nothing.
            ws="none",
            server_header=False,
            # No reef server stands behind a proxy it trusts, and a dev enclave's clients reach
            # it from loopback through pasta: believing X-Forwarded-For there would let any
            # client name its own address. The peer is the socket's.
            proxy_headers=False,
        )
        self._server = _Embedded(config)
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self.socket]), name=f"serve {self.what}"
        )
        while not self._server.started:
            if self._task.done():
                failure: BaseException | None = None
                with contextlib.suppress(asyncio.CancelledError):
                    failure = self._task.exception()
                self.socket.close()
                raise ServiceError(
                    f"the {self.what} did not start on {self.url}: {failure or 'it stopped'}"
                ) from failure
            await asyncio.sleep(0.005)
        return self

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def wait(self) -> None:
        """Wait until the server stops (after :meth:`aclose`, or if uvicorn fails).

        Cancelling the wait does not cancel the server: :func:`until_stopped` cancels its waits
        when a stop signal comes, and awaiting the task itself would then have torn uvicorn out
        of its loop, so running requests were cancelled instead of finishing.
        """
        if self._task is None:
            return
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            if not self._task.done():
                raise  # the waiter was cancelled; the server runs on

    async def aclose(self) -> None:
        """Stop accepting, let running requests finish (up to ``stop_timeout``), close."""
        if self._server is not None:
            self._server.should_exit = True
            await self.wait()
        with contextlib.suppress(OSError):
            self.socket.close()

    async def __aenter__(self) -> Server:
        if self._task is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def serve(
    app: Any,
    *,
    host: str,
    port: int,
    what: str,
    limits: Limits | None = None,
    refusal: Refusal | None = None,
    error: type[ReefError] = ServiceError,
    hint: str | None = None,
    log_level: str = "warning",
    metrics: bool = True,
) -> Server:
    """Bind ``host:port`` (0 picks a free port) and serve ``app`` there until
    :meth:`Server.aclose`, with ``GET /metrics`` unless ``metrics`` is false.

    Raises:
        InputError: for a bad port or host.
        ReefError: of class ``error`` when the port cannot be bound; ServiceError when the
            server does not start.
    """
    sock = bind(host, port, what=what, error=error, hint=hint)
    server = Server(
        app, sock, what=what, limits=limits, refusal=refusal, log_level=log_level, metrics=metrics
    )
    return await server.start()


# ------------------------------------------------------------------------------- stopping


@contextlib.contextmanager
def stop_signals() -> Iterator[asyncio.Event]:
    """An event that SIGINT and SIGTERM set while the block runs (inside a running event loop).

    The handlers replace Python's KeyboardInterrupt, so a command stops what it started in order
    instead of being torn out of the middle of it. This is the one way a reef command reacts to
    a stop signal; servers themselves never install handlers.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


class Waitable(Protocol):
    """Anything whose ``wait()`` returns when it stops serving (a :class:`Server`, a devnet or
    KMS server)."""

    async def wait(self) -> None: ...


async def until_stopped(stop: asyncio.Event, *servers: Waitable) -> None:
    """Return when ``stop`` is set or any of ``servers`` stops by itself."""
    await _first_of(stop.wait(), *(server.wait() for server in servers))


async def first_stopped(*servers: Waitable) -> None:
    """Return when any of ``servers`` stops by itself (at once if there is none): the ``wait``
    of a service made of several servers. Cancelling it stops none of them."""
    if servers:
        await _first_of(*(server.wait() for server in servers))


async def _first_of(*waits: Awaitable[Any]) -> None:
    futures = [asyncio.ensure_future(waiting) for waiting in waits]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in futures:
            future.cancel()


def run_on(
    app: Any,
    sock: socket.socket,
    *,
    what: str,
    limits: Limits | None = None,
    refusal: Refusal | None = None,
    log_level: str = "warning",
    ready: Callable[[Server], None] | None = None,
    workers: int = 1,
    metrics: bool = True,
) -> None:
    """Serve ``app`` on the bound socket ``sock`` until SIGINT or SIGTERM, then stop
    gracefully (blocking; for commands). ``ready`` is called with the running server;
    ``metrics`` as :func:`serve` (with workers, each answers ``/metrics`` for itself).

    ``workers`` > 1 forks that many processes, each accepting on its own socket of one
    ``SO_REUSEPORT`` group on ``sock``'s address (the kernel spreads connections evenly), so
    CPU-bound apps (the verifier's P-384 checks) use every core: the GIL keeps one process on
    one core. This process then only waits: a stop signal is passed to
    every worker, and if one worker dies the others are stopped and ServiceError raised. Apps
    must hold no state that workers would need to share.

    Raises:
        ServiceError: if the server does not start, or a worker dies.
        InputError: for ``workers`` < 1.
    """
    if workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")

    def server_on(listener: socket.socket, *, metrics: bool = metrics) -> Server:
        return Server(
            app,
            listener,
            what=what,
            limits=limits,
            refusal=refusal,
            log_level=log_level,
            metrics=metrics,
        )

    if workers > 1:
        _run_workers(server_on, sock, what, ready, workers)
    else:
        asyncio.run(serve_until_stopped(lambda: _started(server_on(sock)), ready))


async def _started(server: Server) -> Server:
    await server.start()
    return server


class Serving(Waitable, Protocol):
    """A started server: ``wait()`` returns when it stops by itself, ``aclose()`` stops it."""

    async def aclose(self) -> None: ...


_ServingT = TypeVar("_ServingT", bound=Serving)


async def serve_until_stopped(
    start: Callable[[], Awaitable[_ServingT]],
    ready: Callable[[_ServingT], None] | None = None,
    *,
    on_signal: Callable[[], None] | None = None,
    before_close: Callable[[], None] | None = None,
) -> None:
    """Serve in the foreground, the one way every reef process does: ``start`` the server
    (inside the event loop), call ``ready`` with it (to say where it listens), serve until
    SIGINT/SIGTERM (:func:`stop_signals`) or until it stops by itself, then close it.
    ``on_signal`` runs when a signal stopped it; ``before_close`` runs first when it closes (to
    end what closing would wait for)."""
    with stop_signals() as stop:
        server = await start()
        try:
            if ready is not None:
                ready(server)
            await until_stopped(stop, server)
            if stop.is_set() and on_signal is not None:
                on_signal()
        finally:
            if before_close is not None:
                before_close()
            await server.aclose()


class _ServerOn(Protocol):
    """Makes the server a process runs on ``listener`` (with or without ``/metrics``)."""

    def __call__(self, listener: socket.socket, *, metrics: bool = ...) -> Server: ...


def _run_workers(
    server_on: _ServerOn,
    sock: socket.socket,
    what: str,
    ready: Callable[[Server], None] | None,
    workers: int,
) -> None:
    """:func:`run_on` in ``workers`` forked processes sharing ``sock``; see there.

    ``server_on(listener)`` is the server each worker runs on its listener.
    """
    watched = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}
    listeners = _reuseport_group(sock, workers, what)
    # Blocked before forking, so a signal arriving meanwhile waits for sigwait (parent) or for
    # the worker's own handlers (child) instead of killing either half-way.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    alive: set[int] = set()
    try:
        for own in listeners:
            pid = os.fork()
            if pid == 0:  # a worker: serve until a stop signal, as a single process would
                code = 0
                try:
                    signal.pthread_sigmask(signal.SIG_SETMASK, previous)
                    for other in listeners:
                        if other is not own:
                            other.close()
                    asyncio.run(serve_until_stopped(functools.partial(_started, server_on(own))))
                except BaseException:
                    _log.exception("%s: a worker failed", what)
                    code = 1
                finally:
                    os._exit(code)
            alive.add(pid)
        if ready is not None:
            # Only told where the workers listen: never started, so it needs no metrics.
            ready(server_on(listeners[0], metrics=False))
        # The kernel hands a connection to any listener of the group, and one this process
        # kept but never accepted on would hang there.
        for own in listeners:
            own.close()
        while True:
            if signal.sigwait(watched) != signal.SIGCHLD:
                return  # a stop signal: the finally stops the workers
            while alive:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                alive.discard(pid)
                raise ServiceError(
                    f"a worker of the {what} stopped ({_exit_reason(status)}); stopping the others",
                    hint="see the worker's log above",
                )
    finally:
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in alive:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        for own in listeners:
            own.close()


def _reuseport_group(sock: socket.socket, workers: int, what: str) -> list[socket.socket]:
    """``workers`` listening sockets on ``sock``'s address in one ``SO_REUSEPORT`` group,
    ``sock`` closed.

    Workers accepting on one shared socket split connections by who wakes first: a burst of
    100 kept-alive connections landed 12/94 on two workers, and the loaded one set the p99 for
    as long as they lasted. A group spreads connections by a hash of their addresses, evenly.
    ``sock`` is rebound rather than joined because the group must be declared before the
    first bind; another program taking the port in that instant gets the usual error.
    """
    address = sock.getsockname()
    family, backlog = sock.family, 512
    sock.close()
    group: list[socket.socket] = []
    try:
        for _ in range(workers):
            listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            group.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            listener.bind(address)
            listener.listen(backlog)
            listener.setblocking(False)
    except OSError as exc:
        for listener in group:
            listener.close()
        raise ServiceError(
            f"the {what}'s workers cannot listen on {address[0]}:{address[1]}: "
            f"{exc.strerror or exc}",
            hint="stop what took that port, or pick another one",
        ) from exc
    return group


def _exit_reason(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def run(
    app: Any,
    *,
    host: str,
    port: int,
    what: str,
    limits: Limits | None = None,
    refusal: Refusal | None = None,
    error: type[ReefError] = ServiceError,
    hint: str | None = None,
    log_level: str = "warning",
    ready: Callable[[Server], None] | None = None,
    workers: int = 1,
    metrics: bool = True,
) -> None:
    """Bind ``host:port`` and serve ``app`` there until SIGINT or SIGTERM, then stop gracefully
    (blocking; for commands). ``ready`` is called with the running server (e.g. to print where
    it listens); ``workers`` and ``metrics`` as :func:`run_on`.

    Raises:
        InputError: for a bad port or host.
        ReefError: of class ``error`` when the port cannot be bound.
    """
    sock = bind(host, port, what=what, error=error, hint=hint)
    run_on(
        app,
        sock,
        what=what,
        limits=limits,
        refusal=refusal,
        log_level=log_level,
        ready=ready,
        workers=workers,
        metrics=metrics,
    )
