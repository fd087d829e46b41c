"""The devnet's JSON-RPC endpoint over HTTP: a Starlette app served on reef's serving floor.

``POST /`` takes a JSON-RPC request or batch, as geth, hardhat and anvil do, so web3.py's
``HTTPProvider``, ethers' ``JsonRpcProvider`` and wallets connect to ``http://127.0.0.1:8545``
unchanged. The floor (:mod:`reef._serve`) binds the socket (so a port in use is a clear
:class:`ChainError` and port 0 picks a free port), refuses bodies over 5 MiB with 413 (the body a
JSON-RPC error), and caps headers, slow clients and connections per peer.

EVM work runs in worker threads so the event loop keeps serving, in two pools: requests that may
run the EVM (``eth_call``, ``eth_estimateGas``, transactions, test controls) share a few threads,
while reads (balances, blocks, logs) have their own, so a client sending slow calls can delay other
slow calls but never a read. The devnet holds its lock only while it builds a call's state, not
while the call runs. Requests that need neither the EVM nor the lock (``DevnetRpc.is_light``: chain
id, block number, receipts, ...) are answered on the event loop, without a thread. So are the
quick reads (``DevnetRpc.is_quick``: balance, nonce, code, storage, gas price, a block) when the
chain's lock is free at that moment (``DevnetRpc.answer_if_free`` never waits for it); when a
thread holds it they go to a read thread as before, so the loop never waits on the lock. Such a
read costs tens of microseconds, and the thread round trip around it cost more: about 0.1 ms of
the server's CPU (``eth_getBalance`` went from 0.34 to 0.22-0.28 ms per request).

Where a request's time goes was profiled under bench/chain.py's load (py-spy), and the path of
``POST /`` is kept short for it: it is a bare ASGI route (``LightApi.add_asgi_route``: no router,
middleware or ``Request``/``Response`` objects; the CORS headers are added by the route itself), and
the pools are this module's :class:`_Workers` (a queue and daemon threads handing the answer back
with one ``call_soon_threadsafe``) rather than ``anyio.to_thread``, whose capacity limiter and
cancel scope cost about twice as much per hop.

What is left was measured per thread (``/proc/PID/task/*/schedstat``, a kept-alive client on the
same 2-core machine) and by feeding requests to the floor's protocol in process:

- ``eth_chainId`` costs the server about 0.2 ms, of which Python is about 60 us: uvicorn's
  httptools protocol ~22, the floor's guard, limits and write coalescing ~16, metrics ~4, this
  route with the RPC's parse, answer and encode ~20. The rest is the kernel and the event loop:
  two wakeups per request (clients write a request's head and body separately), ``epoll_wait``
  on each of 4-5 loop turns, two ``recv`` and a ``send``. A bare asyncio protocol answering the
  same bytes costs 0.065 ms, anvil under 0.05 ms: the gap is uvicorn and the ASGI layers, not
  this route. Starting the ASGI task only once a small body is in (one loop turn fewer) measured
  no better.
- A thread round trip costs the loop about 0.1 ms (the queue put that wakes a worker, a GIL
  handoff each way, the self-pipe write and two reads that wake the loop, one more loop turn),
  and the worker then runs colder than a tight in-process loop: an ``eth_call`` costs its worker
  ~0.14 ms more than the same call in process. Sends and calls keep their threads all the same:
  the EVM may run for seconds, and the loop must keep answering meanwhile.
- ``eth_sendRawTransaction``: its worker costs what the send costs in process; the ~0.35 ms more
  over HTTP is the loop's (floor, parse of the larger body, the round trip). The journal's syncer
  thread costs a send its ``fdatasync`` (~0.06 ms of kernel time on this disk) and one wakeup;
  syncing on the worker after the answer was handed back instead measured no better, so the
  syncer stays (:mod:`reef.chain.devnet._store`).
- JSON: one decoder and one encoder serve every request (``json.loads`` and ``json.dumps`` with
  options build one per call, a few microseconds each).

``/openapi.json`` and ``/docs`` describe the endpoint (:func:`reef._api.light_api`): a request or
a batch of them (``jsonrpc``, ``id``, ``method``, ``params``), the response or batch of responses
and the error object, as typed models. The models only describe: bodies are still read by hand
(bounded) and parsed by ``parse_json`` (bounded nesting, checked ids), so describing the endpoint
costs its requests nothing, and malformed requests still get the JSON-RPC errors they deserve
rather than a validation error.

CORS: browsers may call from loopback origins (``http://localhost:3000``, ``http://127.0.0.1:5173``
...), as from a dapp served on another local port, and from origins listed in ``cors_origins``
(``"*"`` allows every origin); others get no CORS headers, so a web page elsewhere cannot use the
unlocked dev accounts. The endpoint binds to loopback by default and only holds development keys.

One module (about 700 lines): the request path (bounded read, parse, which pool, answer), the
pools it uses and its description are one hot path, profiled and kept short together.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import queue
import socket
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reef._api import LightApi, light_api
from reef._listen import bind, url_of
from reef._serve import Limits, Server
from reef.chain.devnet._devnet import Devnet
from reef.chain.devnet._rpc import (
    CALL_TIMEOUT_S,
    INVALID_REQUEST,
    MAX_BATCH,
    MAX_ID_LENGTH,
    DevnetRpc,
    encode_response,
    parse_json,
    rpc_error,
)
from reef.chain.devnet._types import GAS_LIMIT, DevnetFault
from reef.errors import ChainError

__all__ = [
    "DevnetServer",
    "DevnetThread",
    "devnet_app",
    "serve_devnet",
    "serve_devnet_in_thread",
]

_log = logging.getLogger("reef.chain.devnet")

DEFAULT_PORT: Final = 8545
MAX_BODY: Final = 5 * 1024 * 1024
EVM_THREADS: Final = 4
"""Worker threads for requests that may run the EVM."""
READ_THREADS: Final = 8
"""Worker threads for reads that take the devnet's lock (balances, blocks, logs) and for parsing
large bodies."""
_T = TypeVar("_T")
_R = TypeVar("_R")
_EVM_METHODS: Final = frozenset(
    {
        "eth_call",
        "eth_estimateGas",
        "eth_sendTransaction",
        "eth_sendRawTransaction",
        "eth_signTransaction",
        "evm_mine",
        "evm_revert",
        "evm_snapshot",
    }
)
_PORT_HINT: Final = "stop what uses it (another `reef chain`, hardhat, anvil?) or pick --port"


class _TooLarge(Exception):
    pass


class _Gone(Exception):
    """The client disconnected before its request's body was in."""


async def _receive_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request's body, at most ``limit`` bytes.

    Raises:
        _TooLarge: when the body (or its declared length) is over ``limit``.
        _Gone: when the client went away first.
    """
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise _TooLarge
    message = await receive()
    body = message.get("body", b"")
    if message["type"] == "http.request" and not message.get("more_body", False):
        if len(body) > limit:
            raise _TooLarge
        return bytes(body)  # the usual case: the whole body in one message
    chunks = bytearray(body)
    while message["type"] == "http.request" and message.get("more_body", False):
        message = await receive()
        chunks += message.get("body", b"")
        if len(chunks) > limit:
            raise _TooLarge
    if message["type"] != "http.request":
        raise _Gone
    return bytes(chunks)


def _http_error(code: int, message: str, status: int) -> JSONResponse:
    """A JSON-RPC error about no request, answered with HTTP ``status``."""
    return JSONResponse(rpc_error(None, code, message), status_code=status)


class _Workers:
    """Up to ``size`` daemon threads running functions for coroutines of one event loop.

    Lighter than ``anyio.to_thread.run_sync`` (no capacity limiter, no cancel scope): a job is
    one ``SimpleQueue.put`` out and one ``call_soon_threadsafe`` back. A thread is started when
    more jobs are running than there are threads (until ``size``); the count is kept on the
    event loop's thread only, where jobs are submitted and settled. The threads stop once this
    object is garbage: nothing has to close it (an app made by :func:`devnet_app` has no close).
    """

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = 0
        self._running = 0
        weakref.finalize(self, _stop_workers, self._jobs, size)

    async def run(self, function: Callable[[_T], _R], argument: _T) -> _R:
        """``function(argument)`` in one of the threads; its result or exception."""
        future: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        self._jobs.put((function, argument, future))
        self._running += 1
        try:
            if self._running > self._threads < self._size:
                name = f"{self._name}-{self._threads + 1}"
                threading.Thread(target=_work, args=(self._jobs,), name=name, daemon=True).start()
                self._threads += 1  # once started: a thread that failed to start is not counted
            return await future
        finally:
            self._running -= 1


def _work(jobs: queue.SimpleQueue[Any]) -> None:
    while (job := jobs.get()) is not None:
        _run_job(*job)
        del job  # not kept (with its answer) while the thread waits for the next one


def _run_job(function: Callable[[Any], Any], argument: Any, future: asyncio.Future[Any]) -> None:
    try:
        result = function(argument)
    except BaseException as exc:  # handed to the waiting coroutine, which raises it
        _settle(future, None, exc)
    else:
        _settle(future, result, None)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
        future.get_loop().call_soon_threadsafe(_set_future, future, result, error)


def _set_future(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the waiting coroutine was cancelled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _stop_workers(jobs: queue.SimpleQueue[Any], count: int) -> None:
    for _ in range(count):
        jobs.put(None)


def rpc_refusal(status: int, reason: str) -> bytes:
    """The body of the floor's refusals (413, 431, 408) as a JSON-RPC error, which JSON-RPC
    clients can show."""
    return json.dumps(rpc_error(None, INVALID_REQUEST, reason)).encode()


_CORS_DONE: Final = "reef.devnet.cors"
"""Scope key set by :class:`_LoopbackCors` on the requests it wraps."""


def _loopback_origin(origin: str) -> bool:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost" or parts.hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


class _LoopbackCors:
    """CORS for loopback origins and the configured ones; nothing for any other origin.

    The allowed origin is answered ``*`` (the endpoint uses no cookies or credentials), with
    ``Vary: Origin`` so a cache never hands that answer to another origin.
    """

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self.origins = frozenset(origin.rstrip("/") for origin in origins)

    def _allowed(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins or _loopback_origin(origin)

    def response_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """The CORS headers of an answer to ``scope``'s request (not a preflight)."""
        origin = b""
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value  # the last one, as dict(headers) below takes
        if origin and self._allowed(origin.decode("latin-1")):
            return [(b"vary", b"Origin"), (b"access-control-allow-origin", b"*")]
        return [(b"vary", b"Origin")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[_CORS_DONE] = True  # the JSON-RPC route adds no CORS headers of its own then
        headers = dict(scope["headers"])
        origin = headers.get(b"origin", b"").decode("latin-1")
        allowed = bool(origin) and self._allowed(origin)
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            extra = [(b"vary", b"Origin")]
            if allowed:
                requested = headers.get(b"access-control-request-headers", b"content-type")
                extra += [
                    (b"access-control-allow-origin", b"*"),
                    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                    (b"access-control-allow-headers", requested),
                    (b"access-control-max-age", b"600"),
                ]
            status = 200 if allowed else 400
            body = b"OK" if allowed else b"origin not allowed"
            extra.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": extra})
            await send({"type": "http.response.body", "body": body})
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"vary", b"Origin")]
                if allowed:
                    extra.append((b"access-control-allow-origin", b"*"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_cors)


# ---------------------------------------------------------------- the description (OpenAPI)

_JsonRpcId = Annotated[
    int | float | str | None,
    Field(description="the request's id, echoed in its response; null for errors about no request"),
]


class JsonRpcRequest(BaseModel):
    """One JSON-RPC 2.0 request; without ``id`` it is a notification, answered with nothing."""

    jsonrpc: Literal["2.0"]
    id: int | float | str | None = Field(
        default=None,
        description=f"a string of at most {MAX_ID_LENGTH} characters, a finite number between "
        "-2**64 and 2**64, or null; leave it out for a notification",
    )
    method: str = Field(description="eth_*, net_*, web3_*, evm_* or debug_* method name")
    params: list[Any] = Field(default_factory=list, description="positional parameters")


class JsonRpcErrorObject(BaseModel):
    """Why a request failed: a JSON-RPC code (-32700 parse error, -32600 invalid request,
    -32601 unknown method, -32602 invalid params, -32000 server error, 3 reverted), a message,
    and for reverts the revert data."""

    code: int
    message: str
    data: Any = None


class JsonRpcResponse(BaseModel):
    """One answer: ``result`` on success, ``error`` otherwise."""

    jsonrpc: Literal["2.0"]
    id: _JsonRpcId
    result: Any = None
    error: JsonRpcErrorObject | None = None


_ERROR_RESPONSE = {"model": JsonRpcResponse}
_DESCRIPTION = (
    "Ethereum JSON-RPC 2.0 (as geth, hardhat and anvil serve it): POST one request or a batch "
    f"(an array of at most {MAX_BATCH}) to /. Malformed requests are answered with a JSON-RPC "
    "error (status 200), as JSON-RPC clients expect."
)


# ---------------------------------------------------------------------------------- the app


def _methods(payload: Any) -> list[str | None] | None:
    """The method names of a request or batch (``None`` where a request names none), or
    ``None`` when a request's method is neither a string nor absent: a client's
    ``"method": []`` must not reach a set lookup, where it would raise (the RPC answers it
    "invalid request")."""
    requests = payload if isinstance(payload, list) else [payload]
    names = [r.get("method") if isinstance(r, dict) else None for r in requests]
    if any(name is not None and not isinstance(name, str) for name in names):
        return None
    return names


def devnet_app(
    devnet: Devnet,
    *,
    max_body: int = MAX_BODY,
    cors_origins: Sequence[str] = (),
    call_gas_cap: int = GAS_LIMIT,
    call_timeout_s: float | None = CALL_TIMEOUT_S,
) -> LightApi:
    """The ASGI app answering Ethereum JSON-RPC for ``devnet`` at ``POST /`` (described at
    ``/openapi.json``).

    Args:
        max_body: request bytes accepted (413 beyond).
        cors_origins: browser origins allowed besides loopback ones (``"*"``: all).
        call_gas_cap: most gas an ``eth_call`` / ``eth_estimateGas`` runs with.
        call_timeout_s: wall-time budget of one ``eth_call`` / ``eth_estimateGas``.
    """
    rpc = DevnetRpc(devnet, call_gas_cap=call_gas_cap, call_timeout_s=call_timeout_s)
    evm_threads = _Workers(EVM_THREADS, "reef-devnet-evm")
    read_threads = _Workers(READ_THREADS, "reef-devnet-read")
    cors = _LoopbackCors(_no_app, cors_origins)

    async def not_post(request: Request) -> Response:
        return _http_error(
            INVALID_REQUEST, "send JSON-RPC requests with POST (this is an Ethereum node)", 405
        )

    async def answer(body: bytes) -> bytes | None:
        try:
            # A large body takes a moment to scan and parse: off the event loop.
            payload = (
                parse_json(body) if len(body) < 65536 else await read_threads.run(parse_json, body)
            )
        except DevnetFault as fault:
            return encode_response(rpc_error(None, fault.code, str(fault)))
        methods = _methods(payload)
        if methods is not None:
            if DevnetRpc.is_light(payload):
                return rpc.answer(payload)
            if DevnetRpc.is_quick(payload):
                answered, answer_bytes = rpc.answer_if_free(payload)
                if answered:
                    return answer_bytes
            elif any(name in _EVM_METHODS for name in methods):
                return await evm_threads.run(rpc.answer, payload)
        return await read_threads.run(rpc.answer, payload)

    async def json_rpc(scope: Scope, receive: Receive, send: Send) -> None:
        status, answer_bytes = 200, None
        try:
            body = await _receive_body(scope, receive, max_body)
        except _Gone:
            return
        except _TooLarge:
            status = 413
            too_large = f"request body over {max_body} bytes"
            answer_bytes = _http_error(INVALID_REQUEST, too_large, status).body
        else:
            answer_bytes = await answer(body)
        # The headers Starlette's Response and JSONResponse give, in their order.
        if answer_bytes is None:
            status, headers = 204, []
        else:
            headers = [
                (b"content-length", str(len(answer_bytes)).encode()),
                (b"content-type", b"application/json"),
            ]
        if not scope.get(_CORS_DONE):
            headers += cors.response_headers(scope)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer_bytes or b""})

    app = light_api("reef devnet JSON-RPC", description=_DESCRIPTION)
    app.add_asgi_route(
        "/",
        json_rpc,
        methods=["POST"],
        summary="Answer a JSON-RPC request or batch",
        body=JsonRpcRequest | list[JsonRpcRequest],
        response_model=JsonRpcResponse | list[JsonRpcResponse],
        responses={
            204: {"description": "every request was a notification: nothing to answer"},
            413: {**_ERROR_RESPONSE, "description": f"the body is over {max_body} bytes"},
        },
    )
    app.add_api_route(
        "/",
        not_post,
        methods=["GET"],
        summary="Not JSON-RPC: answered 405 with a JSON-RPC error",
        status_code=405,
        response_model=JsonRpcResponse,
        response_description="a JSON-RPC error: the endpoint answers POST",
    )
    app.add_middleware(_LoopbackCors, origins=tuple(cors_origins))
    app.reef_refusal = rpc_refusal  # type: ignore[attr-defined]  # read by reef._serve
    return app


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover
    """What the JSON-RPC route's :class:`_LoopbackCors` wraps: it only computes headers."""


def _bind(host: str, port: int) -> socket.socket:
    return bind(host, port, what="devnet", error=ChainError, hint=_PORT_HINT)


class DevnetServer:
    """A devnet served over HTTP in the current event loop (on :class:`reef._serve.Server`).
    An async context manager; :meth:`close` stops it. It installs no signal handlers."""

    def __init__(
        self,
        devnet: Devnet,
        sock: socket.socket,
        log_level: str,
        *,
        limits: Limits | None = None,
        cors_origins: Sequence[str] = (),
        call_gas_cap: int = GAS_LIMIT,
        call_timeout_s: float | None = CALL_TIMEOUT_S,
    ) -> None:
        self._devnet = devnet
        self.url = url_of(sock)
        """``http://host:port`` of the endpoint."""
        self.port: int = sock.getsockname()[1]
        app = devnet_app(
            devnet,
            cors_origins=cors_origins,
            call_gas_cap=call_gas_cap,
            call_timeout_s=call_timeout_s,
        )
        self._server = Server(
            app,
            sock,
            what="devnet JSON-RPC endpoint",
            limits=limits or Limits(max_body=MAX_BODY, idle_timeout=30),
            log_level=log_level,
            metrics=True,  # GET /metrics, as every reef service (reef chain serves this one)
        )

    @property
    def devnet(self) -> Devnet:
        return self._devnet

    async def _start(self) -> None:
        try:
            await self._server.start()
        except ChainError:
            raise
        except Exception as exc:
            raise ChainError(f"the devnet's HTTP server did not start on {self.url}") from exc
        self._devnet.record_endpoint(self.url)

    async def wait(self) -> None:
        """Wait until the server stops (after :meth:`aclose`, or if uvicorn fails)."""
        await self._server.wait()

    async def aclose(self) -> None:
        """Stop serving (the devnet itself stays open)."""
        await self._server.aclose()
        with contextlib.suppress(ChainError, OSError):
            self._devnet.record_endpoint(None)

    async def __aenter__(self) -> DevnetServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def serve_devnet(
    devnet: Devnet,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    log_level: str = "warning",
    cors_origins: Sequence[str] = (),
    call_gas_cap: int = GAS_LIMIT,
    call_timeout_s: float | None = CALL_TIMEOUT_S,
) -> DevnetServer:
    """Serve ``devnet`` over HTTP JSON-RPC on ``host:port`` (0 picks a free port).

    Returns once the server accepts connections; its ``url`` says where.

    Args:
        cors_origins: browser origins allowed besides loopback ones (``"*"``: all).
        call_gas_cap: most gas an ``eth_call`` / ``eth_estimateGas`` runs with.
        call_timeout_s: wall-time budget of one ``eth_call`` / ``eth_estimateGas``.

    Raises:
        ChainError: if the port is in use or cannot be bound.
        InputError: for an invalid port or host.
    """
    server = DevnetServer(
        devnet,
        _bind(host, port),
        log_level,
        cors_origins=cors_origins,
        call_gas_cap=call_gas_cap,
        call_timeout_s=call_timeout_s,
    )
    await server._start()
    return server


class DevnetThread:
    """A devnet served on its own event loop in a background thread, for synchronous code
    (scripts, tests, benchmarks). A context manager; :meth:`close` stops it."""

    def __init__(self, devnet: Devnet, sock: socket.socket, log_level: str) -> None:
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._server: DevnetServer | None = None
        self._devnet = devnet
        self._sock = sock
        self._log_level = log_level
        self.url = url_of(sock)
        self.port: int = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="reef-devnet-rpc", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self._server = DevnetServer(self._devnet, self._sock, self._log_level)
            await self._server._start()
        except BaseException as exc:
            self._error = exc
            self._sock.close()
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self._server.aclose()

    def start(self) -> DevnetThread:
        self._thread.start()
        if not self._ready.wait(timeout=30):
            self.close()
            raise ChainError(f"the devnet's HTTP server did not start on {self.url} in 30 s")
        if self._error is not None:
            raise ChainError(f"the devnet's HTTP server did not start: {self._error}")
        return self

    def close(self) -> None:
        """Stop serving and join the thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=30)

    def __enter__(self) -> DevnetThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_devnet_in_thread(
    devnet: Devnet,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
) -> DevnetThread:
    """Serve ``devnet`` from a background thread (port 0, a free port, by default).

    Raises:
        ChainError: if the port is in use or the server does not start.
    """
    return DevnetThread(devnet, _bind(host, port), log_level).start()
