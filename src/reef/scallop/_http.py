"""HTTP/1.1 over Scallop: serve any ASGI app, and an httpx transport to call one.

This is what Oyster's KMS speaks on its Scallop port (reference §2.3-§2.4): plain HTTP/1.1 inside
the encrypted stream. Parsing and framing are ``h11``'s (the sans-IO HTTP/1.1 library under httpx
and uvicorn, so already a dependency); reef only moves bytes between h11 and a
:class:`~reef.scallop.ScallopStream` and maps requests to ASGI 3.

* :func:`serve_asgi` runs ``app`` for every request on every accepted channel. The verified peer
  is in the ASGI scope as ``scope["extensions"]["scallop"]["peer"]`` (a
  :class:`~reef.scallop.ScallopPeer`); :func:`scallop_peer` reads it back from a scope or a
  Starlette request.
* :class:`ScallopTransport` makes ``httpx.AsyncClient(transport=ScallopTransport(...))`` open
  Scallop channels to the URL's host and port, keeping them alive between requests; each
  response carries ``response.extensions["scallop"]``, the server's :class:`ScallopPeer`.

One module (about 750 lines) because the client transport and the server glue share the
framing of HTTP/1.1 over one Noise channel; split, each half would re-read the other's rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Unpack
from urllib.parse import unquote

import h11
import httpx

from reef.crypto import generate_x25519
from reef.errors import ChannelBrokenError, ChannelError, InputError, ReefError, ServiceError
from reef.scallop._handshake import DEFAULT_HANDSHAKE_TIMEOUT, _connect, _Side
from reef.scallop._policy import Auther, AuthStore, PeerPolicy
from reef.scallop._server import Handler, ScallopServer, _ServeOptions, serve
from reef.scallop._stream import ScallopPeer, ScallopStream

__all__ = ["ScallopTransport", "asgi_handler", "scallop_peer", "serve_asgi"]

logger = logging.getLogger("reef.scallop.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_READ_SIZE: Final = 1 << 16
_MAX_HEADER_BYTES: Final = 64 * 1024
DEFAULT_MAX_BODY: Final = 16 * 1024 * 1024


def scallop_peer(scope_or_request: Any) -> ScallopPeer:
    """The Scallop peer of an ASGI scope (or of anything with a ``.scope``, e.g. a Request).

    Raises:
        InputError: the request did not arrive over Scallop.
    """
    scope = getattr(scope_or_request, "scope", scope_or_request)
    try:
        peer = scope["extensions"]["scallop"]["peer"]
    except (KeyError, TypeError) as exc:
        raise InputError(
            "this request did not arrive over Scallop", hint="serve the app with serve_asgi"
        ) from exc
    if not isinstance(peer, ScallopPeer):
        raise InputError("scope['extensions']['scallop']['peer'] is not a ScallopPeer")
    return peer


# --- server --------------------------------------------------------------------------------------


class _Disconnect(Exception):
    """The client went away mid-request (internal)."""


async def _drain(stream: ScallopStream, seconds: float) -> None:
    """Wait until what we wrote is on its way, for at most ``seconds``.

    A client that stops reading fills the socket's buffers, after which every drain waits for
    it: without a bound it held its channel (and the answers queued for it) for ever, however
    short the app's own deadline. Past the bound the channel is dropped at once (a plain close
    would wait for those answers to be sent too).

    Raises:
        _Disconnect: the client read nothing of what we wrote for ``seconds``.
    """
    try:
        async with asyncio.timeout(seconds):
            await stream.drain()
    except TimeoutError:
        logger.info(
            "scallop http: dropped %s: it read none of our answers for %g s",
            _peer_name(stream),
            seconds,
        )
        stream.abort()
        raise _Disconnect(f"the client read nothing for {seconds:g} s") from None


def _peer_name(stream: ScallopStream) -> str:
    peer = stream.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "a client"


async def _next_event(conn: h11.Connection, stream: ScallopStream, idle: float | None) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        if idle is None:
            data = await stream.read(_READ_SIZE)
        else:
            async with asyncio.timeout(idle):
                data = await stream.read(_READ_SIZE)
        conn.receive_data(data)


class _Exchange:
    """One request/response cycle of the ASGI app on an h11 connection."""

    def __init__(
        self,
        conn: h11.Connection,
        stream: ScallopStream,
        max_body: int | None,
        method: bytes,
        timeout: float,
    ) -> None:
        self.conn = conn
        self.timeout = timeout  # for each body read, and each write to drain
        self.head = method == b"HEAD"  # the response has headers only (h11 refuses a body)
        self.stream = stream
        self.max_body = max_body
        self.body_received = 0
        self.request_done = False
        self.response_started = False
        self.response_done = False
        self.rejected = False  # we answered for the app (413); its own response is dropped
        self.finished = asyncio.Event()

    async def receive(self) -> Message:
        if self.request_done:
            # Nothing more to read: report a disconnect once the response is over (Starlette's
            # streaming responses wait on this to stop).
            await self.finished.wait()
            return {"type": "http.disconnect"}
        try:
            # A deadline per read, as the head has one over the whole of it: a client that
            # announces a body and sends none would otherwise hold the app for ever.
            event = await _next_event(self.conn, self.stream, self.timeout)
        except TimeoutError as exc:
            self.finished.set()
            raise _Disconnect(f"no request body data for {self.timeout:g} s") from exc
        except (ChannelError, h11.RemoteProtocolError) as exc:
            self.finished.set()
            raise _Disconnect(str(exc)) from exc
        if isinstance(event, h11.Data):
            self.body_received += len(event.data)
            if self.max_body is not None and self.body_received > self.max_body:
                if not self.response_started:
                    _reject(self.conn, self.stream, 413, f"the body exceeds {self.max_body} bytes")
                    self.rejected = True
                self.response_started = self.response_done = True
                self.finished.set()
                raise _Disconnect(f"the request body exceeds {self.max_body} bytes")
            return {"type": "http.request", "body": bytes(event.data), "more_body": True}
        if isinstance(event, h11.EndOfMessage):
            self.request_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if isinstance(event, h11.ConnectionClosed):
            self.finished.set()
            return {"type": "http.disconnect"}
        raise _Disconnect(f"unexpected HTTP event {type(event).__name__}")

    async def send(self, message: Message) -> None:
        if self.rejected:
            return
        kind = message.get("type")
        if kind == "http.response.start":
            if self.response_started:
                raise ServiceError("the ASGI app started its response twice")
            self.response_started = True
            headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            self._write(h11.Response(status_code=int(message["status"]), headers=headers))
        elif kind == "http.response.body":
            if not self.response_started:
                raise ServiceError("the ASGI app sent a body before http.response.start")
            if self.response_done:
                return
            body = bytes(message.get("body", b""))
            if body and not self.head:
                self._write(h11.Data(data=body))
            if not message.get("more_body", False):
                self._write(h11.EndOfMessage())
                self.response_done = True
                self.finished.set()
            await _drain(self.stream, self.timeout)
        else:
            raise ServiceError(f"the ASGI app sent an unknown message type {kind!r}")

    def _write(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            self.stream.write(data)


def asgi_handler(
    app: ASGIApp,
    *,
    max_body: int | None = DEFAULT_MAX_BODY,
    keepalive_timeout: float = 60.0,
    state: dict[str, Any] | None = None,
) -> Handler:
    """A :func:`~reef.scallop.serve` handler that speaks HTTP/1.1 to ``app`` (ASGI 3).

    Args:
        max_body: the largest request body accepted (413 beyond it); ``None`` for no limit.
        keepalive_timeout: seconds a connection waits for its next request head to arrive
            whole (the idle time before it included); past that it is closed. Also how long
            a write waits for the client to read, and a body read for the client's next bytes:
            one that reads nothing of our answers, or sends nothing of its body, for that long
            is dropped.
        state: the lifespan state shared into every request scope (``scope["state"]``).
    """

    async def handle(stream: ScallopStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADER_BYTES)
        try:
            await serve_requests(stream, conn)
        finally:
            if conn.their_state in (h11.SEND_BODY, h11.ERROR):
                await _linger(stream)

    async def serve_requests(stream: ScallopStream, conn: h11.Connection) -> None:
        peer = stream.peer_info
        client = stream.get_extra_info("peername")
        server = stream.get_extra_info("sockname")
        while True:
            try:
                # One deadline over the wait and the whole head: a per-read timeout would keep
                # a client that drips its head a byte at a time for as long as it likes.
                async with asyncio.timeout(keepalive_timeout):
                    event = await _next_event(conn, stream, None)
            except TimeoutError:
                return
            except h11.RemoteProtocolError as exc:
                _reject(conn, stream, exc.error_status_hint, str(exc))
                return
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
            if not isinstance(event, h11.Request):
                return
            exchange = _Exchange(conn, stream, max_body, event.method, keepalive_timeout)
            raw_path, _, query = event.target.partition(b"?")
            scope: Scope = {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.4"},
                "http_version": event.http_version.decode(),
                "method": event.method.decode("ascii"),
                "scheme": "http",
                "path": unquote(raw_path.decode("latin-1")),
                "raw_path": raw_path,
                "query_string": query,
                "root_path": "",
                "headers": [(name.lower(), value) for name, value in event.headers],
                "client": tuple(client[:2]) if isinstance(client, tuple) else None,
                "server": tuple(server[:2]) if isinstance(server, tuple) else None,
                "extensions": {"scallop": {"peer": peer}},
                "state": dict(state) if state is not None else {},
            }
            try:
                await app(scope, exchange.receive, exchange.send)
            except _Disconnect:
                return
            except ChannelError:
                return  # the stream logged why it broke
            except Exception:
                logger.exception(
                    "scallop http: the app failed on %s %s", scope["method"], scope["path"]
                )
                if not exchange.response_started:
                    _reject(conn, stream, 500, "Internal Server Error")
                return
            finally:
                exchange.finished.set()
            if not exchange.response_done:
                logger.warning("scallop http: the app returned without completing its response")
                return
            try:
                await _drain(stream, keepalive_timeout)
            except _Disconnect:
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            if conn.their_state is not h11.DONE and not await _skip_body(
                conn, stream, exchange.body_received, max_body, keepalive_timeout
            ):
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    return handle


async def _skip_body(
    conn: h11.Connection,
    stream: ScallopStream,
    received: int,
    max_body: int | None,
    seconds: float,
) -> bool:
    """Read the rest of a body the app did not read, so the next request parses; False when
    the channel must close instead.

    The body limit and one deadline hold here too: otherwise a client whose request the app
    answers unread (a GET with a chunked body) could stream a body that never ends, and keep
    its channel (and the server decrypting and parsing) for as long as it liked.
    """
    try:
        async with asyncio.timeout(seconds):
            while True:
                event = await _next_event(conn, stream, None)
                if isinstance(event, h11.EndOfMessage):
                    return True
                if not isinstance(event, h11.Data):
                    return False
                received += len(event.data)
                if max_body is not None and received > max_body:
                    logger.info(
                        "scallop http: dropped %s: the body it sends is over %d bytes",
                        _peer_name(stream),
                        max_body,
                    )
                    stream.abort()
                    return False
    except (TimeoutError, ChannelError, h11.RemoteProtocolError):
        return False


async def _linger(stream: ScallopStream, *, seconds: float = 1.0, limit: int = 1 << 20) -> None:
    """Half-close, then discard what the client is still sending, for a moment.

    Closing a socket with unread input makes the kernel reset the connection, and the client
    may then lose the answer we just wrote (a 413, say). Reading the rest first avoids that.
    """
    with contextlib.suppress(ChannelError, OSError, TimeoutError, _Disconnect):
        await _drain(stream, seconds)  # a client that reads nothing is dropped, not waited for
        if stream.can_write_eof():
            stream.write_eof()
        discarded = 0
        async with asyncio.timeout(seconds):
            while discarded < limit and (chunk := await stream.read(_READ_SIZE)):
                discarded += len(chunk)


def _reject(conn: h11.Connection, stream: ScallopStream, status: int, reason: str) -> None:
    logger.info("scallop http: answering %d: %s", status, reason)
    with contextlib.suppress(h11.LocalProtocolError, ChannelError):
        body = f"{reason}\n".encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        stream.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
        stream.write(conn.send(h11.Data(data=body)) or b"")
        stream.write(conn.send(h11.EndOfMessage()) or b"")


class _Lifespan:
    """Runs the app's lifespan protocol: startup before serving, shutdown after."""

    def __init__(self, app: ASGIApp, mode: Literal["auto", "on", "off"]) -> None:
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self._receive: asyncio.Queue[Message] = asyncio.Queue()
        self._sent: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        if self.mode == "off":
            return
        scope: Scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }

        async def run() -> None:
            try:
                await self.app(scope, self._receive.get, self._sent.put)
            except Exception as exc:
                await self._sent.put({"type": "lifespan.unsupported", "error": exc})

        self._task = asyncio.create_task(run())
        await self._receive.put({"type": "lifespan.startup"})
        message = await self._sent.get()
        if message["type"] == "lifespan.startup.complete":
            return
        self._task = None
        if message["type"] == "lifespan.unsupported" and self.mode == "auto":
            return  # An app without lifespan support: serve it anyway, as uvicorn does.
        raise ServiceError(
            f"the ASGI app failed to start: {message.get('message') or message.get('error') or message['type']}"
        )

    async def shutdown(self) -> None:
        if self._task is None:
            return
        await self._receive.put({"type": "lifespan.shutdown"})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self._sent.get()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._task = None


async def serve_asgi(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    lifespan: Literal["auto", "on", "off"] = "auto",
    max_body: int | None = DEFAULT_MAX_BODY,
    keepalive_timeout: float = 60.0,
    **options: Unpack[_ServeOptions],
) -> ScallopServer:
    """Serve ``app`` (ASGI 3: Starlette, FastAPI, ...) over Scallop on ``host:port``.

    Runs the app's lifespan startup first (``lifespan="auto"`` tolerates apps without one) and
    its shutdown when the returned server is closed with ``aclose()``. Arguments as
    :func:`~reef.scallop.serve` (the handshake slot and channel limits too); see :func:`asgi_handler` for
    ``max_body`` and ``keepalive_timeout``.

    Raises:
        ServiceError: the app's lifespan startup failed.
        ChannelError: the address cannot be listened on.
    """
    life = _Lifespan(app, lifespan)
    await life.startup()
    try:
        server = await serve(
            asgi_handler(
                app, max_body=max_body, keepalive_timeout=keepalive_timeout, state=life.state
            ),
            host,
            port,
            **options,
        )
    except BaseException:
        await life.shutdown()
        raise
    server.on_close(life.shutdown)
    return server


# --- client --------------------------------------------------------------------------------------


class _Connection:
    def __init__(self, stream: ScallopStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEADER_BYTES)

    def reusable(self) -> bool:
        return (
            self.h11.our_state is h11.IDLE
            and self.h11.their_state is h11.IDLE
            and not self.stream.is_closing()
            and not self.stream.at_eof()
        )


@dataclass(eq=False)
class _ResponseStream(httpx.AsyncByteStream):
    """A response's body, read off ``conn``; the connection goes back to ``transport``'s pool
    for ``origin`` when the body was read whole, and is closed otherwise."""

    transport: ScallopTransport
    origin: tuple[str, int]
    conn: _Connection
    request: httpx.Request
    read_timeout: float | None
    _done: bool = field(default=False, init=False)
    _closed: bool = field(default=False, init=False)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while not self._done:
            try:
                event = await _next_event(self.conn.h11, self.conn.stream, self.read_timeout)
            except TimeoutError as exc:
                raise _read_timeout(self.request, self.read_timeout) from exc
            except h11.RemoteProtocolError as exc:
                raise ChannelBrokenError(
                    f"the server sent a malformed HTTP response: {exc}"
                ) from exc
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._done = True
            elif isinstance(event, h11.ConnectionClosed):
                raise ChannelBrokenError(
                    "the server closed the connection before the response ended"
                )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        conn = self.conn
        if self._done and conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
            try:
                conn.h11.start_next_cycle()
            except h11.LocalProtocolError:
                await conn.stream.aclose()
                return
            self.transport._release(self.origin, conn)
        else:
            await conn.stream.aclose()


class ScallopTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends each request over a Scallop channel to the URL's host:port.

    ``httpx.AsyncClient(transport=ScallopTransport(policy=...), base_url="http://host:1100")``.
    Channels are kept alive and reused per origin; the policy's store is shared by all of them,
    so a verified server is not asked to attest again until its cache entry expires.

    Args:
        static_key: our X25519 static secret; a fresh key for this transport when omitted.
        policy: what the server must prove (see :func:`~reef.scallop.connect`).
        auther: produces our attestation when the server asks for it.
        handshake_timeout: seconds for connecting and the handshake.
        max_idle: idle channels kept per origin.

    Errors are reef's: :class:`~reef.errors.HandshakeError` when the server is unreachable or
    refused, :class:`~reef.errors.ChannelBrokenError` when the channel breaks mid-request.
    """

    def __init__(
        self,
        *,
        static_key: bytes | None = None,
        policy: PeerPolicy | AuthStore | None = None,
        auther: Auther | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        max_idle: int = 4,
    ) -> None:
        own_key = static_key if static_key is not None else generate_x25519()[0]
        self._side = _Side.of(own_key, policy, auther, handshake_timeout)
        self._max_idle = max_idle
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` over a (new or idle) Scallop channel and return its response."""
        if self._closed:
            raise ChannelError("the ScallopTransport is closed", hint="create a new client")
        url = request.url
        if url.port is None and url.scheme != "http":
            raise InputError(f"{url} has no port", hint="give the Scallop port, e.g. :1100")
        origin = (url.host, url.port or 80)
        body = await request.aread()
        conn = self._take_idle(origin)
        if conn is not None:
            try:
                return await self._exchange(request, body, origin, conn)
            except _Stale:
                await conn.stream.aclose()  # the server closed it while idle: use a new one
        conn = _Connection(await _connect(origin[0], origin[1], self._side))
        try:
            return await self._exchange(request, body, origin, conn)
        except _Stale as exc:
            await conn.stream.aclose()
            raise ChannelBrokenError("the server closed the channel without answering") from exc

    async def _exchange(
        self, request: httpx.Request, body: bytes, origin: tuple[str, int], conn: _Connection
    ) -> httpx.Response:
        headers = [(k, v) for k, v in request.headers.raw]
        if not any(k.lower() == b"host" for k, _ in headers):
            headers.insert(0, (b"host", request.url.netloc))
        if body and not any(
            k.lower() in (b"content-length", b"transfer-encoding") for k, _ in headers
        ):
            headers.append((b"content-length", str(len(body)).encode()))
        try:
            out = conn.h11.send(
                h11.Request(
                    method=request.method.encode(), target=request.url.raw_path, headers=headers
                )
            )
            if body:
                out = (out or b"") + (conn.h11.send(h11.Data(data=body)) or b"")
            out = (out or b"") + (conn.h11.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError as exc:
            raise InputError(f"cannot send this request over HTTP/1.1: {exc}") from exc
        try:
            try:
                await conn.stream.send(out)
            except ChannelBrokenError as exc:
                raise _Stale() from exc
            event = await self._read_head(conn, request)
        except BaseException:
            # Cancelled, timed out or broken half-way through an exchange, the channel cannot
            # carry another request, and no response stream owns it yet: close it here.
            conn.stream.close()
            raise
        if not isinstance(event, h11.Response):
            await conn.stream.aclose()
            raise ChannelBrokenError(f"expected an HTTP response, got {type(event).__name__}")
        return httpx.Response(
            status_code=event.status_code,
            headers=[(bytes(k), bytes(v)) for k, v in event.headers],
            stream=_ResponseStream(self, origin, conn, request, _read_timeout_of(request)),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": bytes(event.reason),
                "scallop": conn.stream.peer_info,
            },
        )

    async def _read_head(self, conn: _Connection, request: httpx.Request) -> Any:
        """The response head; :class:`_Stale` if the channel ends before any byte of it.

        Raises:
            httpx.ReadTimeout: no data for httpx's read timeout (a server that completed its
                handshake may still never answer).
        """
        read_timeout = _read_timeout_of(request)
        received = 0
        while True:
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as exc:
                await conn.stream.aclose()
                if received == 0:
                    raise _Stale() from exc
                raise ChannelBrokenError(
                    f"the server sent a malformed HTTP response: {exc}"
                ) from exc
            if event is h11.NEED_DATA:
                try:
                    async with asyncio.timeout(read_timeout):
                        data = await conn.stream.read(_READ_SIZE)
                except TimeoutError as exc:
                    raise _read_timeout(request, read_timeout) from exc
                except ChannelBrokenError as exc:
                    if received == 0:
                        raise _Stale() from exc
                    raise
                received += len(data)
                conn.h11.receive_data(data)
            elif isinstance(event, h11.InformationalResponse):
                continue
            elif isinstance(event, h11.ConnectionClosed) and received == 0:
                raise _Stale()
            else:
                return event

    def _take_idle(self, origin: tuple[str, int]) -> _Connection | None:
        pool = self._idle.get(origin, [])
        while pool:
            conn = pool.pop()
            if conn.reusable():
                return conn
            conn.stream.close()
        return None

    def _release(self, origin: tuple[str, int], conn: _Connection) -> None:
        pool = self._idle.setdefault(origin, [])
        if self._closed or len(pool) >= self._max_idle or not conn.reusable():
            conn.stream.close()
            return
        pool.append(conn)

    async def aclose(self) -> None:
        """Close every idle channel."""
        self._closed = True
        for pool in self._idle.values():
            for conn in pool:
                with contextlib.suppress(ReefError):
                    await conn.stream.aclose()
        self._idle.clear()


def _read_timeout_of(request: httpx.Request) -> float | None:
    """httpx's read timeout for ``request`` (``AsyncClient(timeout=...)``), which a transport
    keeps for each read; None for none."""
    timeout = request.extensions.get("timeout", {})
    value = timeout.get("read") if isinstance(timeout, dict) else None
    return float(value) if isinstance(value, int | float) else None


def _read_timeout(request: httpx.Request, seconds: float | None) -> httpx.ReadTimeout:
    return httpx.ReadTimeout(
        f"the Scallop server at {request.url.host}:{request.url.port} sent nothing for "
        f"{seconds:g} s (httpx's read timeout)",
        request=request,
    )


class _Stale(Exception):
    """The channel ended before any response byte (internal: retry on a fresh channel)."""
