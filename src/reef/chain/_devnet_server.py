"""The devnet's JSON-RPC endpoint over HTTP: a Starlette app served by uvicorn.

``POST /`` takes a JSON-RPC request or batch, as geth, hardhat and anvil do, so web3.py's
``HTTPProvider``, ethers' ``JsonRpcProvider`` and wallets connect to ``http://127.0.0.1:8545``
unchanged. EVM work runs in a worker thread (the devnet takes its own lock), so a slow call does
not stall the event loop. Bodies over 5 MiB are refused with 413 before they are read in full.
CORS is open, as in hardhat and anvil, so a dapp served from another local port can call it;
the endpoint binds to loopback by default and only holds development keys.

The socket is bound by reef before uvicorn starts, so a port in use is a clear
:class:`ChainError` rather than uvicorn exiting the process, and port 0 picks a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any, Final

import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reef.chain._devnet import Devnet
from reef.chain._devnet_rpc import INVALID_REQUEST, DevnetRpc, encode_response
from reef.errors import ChainError, InputError

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


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise _TooLarge
    return bytes(chunks)


def _rpc_error(code: int, message: str, status: int) -> JSONResponse:
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status)


def devnet_app(devnet: Devnet, *, max_body: int = MAX_BODY) -> Starlette:
    """The ASGI app answering Ethereum JSON-RPC for ``devnet`` at ``POST /``."""
    rpc = DevnetRpc(devnet)

    def answer_for(payload: Any) -> bytes | None:
        return encode_response(rpc.handle(payload))

    async def endpoint(request: Request) -> Response:
        if request.method != "POST":
            return _rpc_error(
                INVALID_REQUEST, "send JSON-RPC requests with POST (this is an Ethereum node)", 405
            )
        try:
            body = await _read_body(request, max_body)
        except _TooLarge:
            return _rpc_error(INVALID_REQUEST, f"request body over {max_body} bytes", 413)
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            answer = rpc.handle_bytes(body)  # answers the parse error
        else:
            if DevnetRpc.is_light(payload):
                answer = encode_response(rpc.handle(payload))
            else:
                # EVM work runs in a worker thread so the event loop keeps serving.
                answer = await anyio.to_thread.run_sync(answer_for, payload)
        if answer is None:
            return Response(status_code=204)
        return Response(answer, media_type="application/json")

    return Starlette(
        routes=[Route("/", endpoint, methods=["GET", "POST"])],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["*"],
            )
        ],
    )


def _bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise InputError(f"the port must be between 0 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"cannot resolve the host {host!r}: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ChainError(
                f"cannot serve the devnet on {host}:{port}: the port is in use",
                hint="stop what uses it (another `reef chain`, hardhat, anvil?) or pick --port",
            ) from exc
        raise ChainError(f"cannot serve the devnet on {host}:{port}: {exc}") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own SIGINT/SIGTERM handlers: the program that embeds the devnet (the
    `reef chain` command, `reef up`, a test) decides what a signal stops, so Ctrl-C in a larger
    program does not silently stop the JSON-RPC server alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class DevnetServer:
    """A devnet served over HTTP by uvicorn in the current event loop. An async context manager;
    :meth:`close` stops it. It installs no signal handlers."""

    def __init__(self, devnet: Devnet, sock: socket.socket, log_level: str) -> None:
        self._devnet = devnet
        self._socket = sock
        self.url = _url(sock)
        """``http://host:port`` of the endpoint."""
        self.port: int = sock.getsockname()[1]
        config = uvicorn.Config(
            devnet_app(devnet),
            log_level=log_level,
            lifespan="off",
            access_log=False,
            timeout_keep_alive=30,
        )
        self._server = _EmbeddedUvicorn(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def devnet(self) -> Devnet:
        return self._devnet

    async def _start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                with contextlib.suppress(asyncio.CancelledError, SystemExit):
                    self._task.result()
                raise ChainError(f"the devnet's HTTP server did not start on {self.url}")
            await asyncio.sleep(0.01)
        self._devnet.record_endpoint(self.url)

    async def wait(self) -> None:
        """Wait until the server stops (after :meth:`close`, or if uvicorn fails)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def close(self) -> None:
        """Stop serving (the devnet itself stays open)."""
        self._server.should_exit = True
        await self.wait()
        self._socket.close()
        with contextlib.suppress(ChainError, OSError):
            self._devnet.record_endpoint(None)

    async def __aenter__(self) -> DevnetServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve_devnet(
    devnet: Devnet,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    log_level: str = "warning",
) -> DevnetServer:
    """Serve ``devnet`` over HTTP JSON-RPC on ``host:port`` (0 picks a free port).

    Returns once the server accepts connections; its ``url`` says where.

    Raises:
        ChainError: if the port is in use or cannot be bound.
        InputError: for an invalid port or host.
    """
    sock = _bind(host, port)
    server = DevnetServer(devnet, sock, log_level)
    try:
        await server._start()
    except BaseException:
        sock.close()
        raise
    return server


class DevnetThread:
    """A devnet served by uvicorn on its own event loop in a background thread, for
    synchronous code (scripts, tests, benchmarks). A context manager; :meth:`close` stops it."""

    def __init__(self, devnet: Devnet, sock: socket.socket, log_level: str) -> None:
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._server: DevnetServer | None = None
        self._devnet = devnet
        self._sock = sock
        self._log_level = log_level
        self.url = _url(sock)
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
        await self._server.close()

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
