"""The Scallop server: :func:`serve` accepts connections and hands each channel to a handler.

Each connection gets the whole handshake within ``handshake_timeout``; a refusal (protocol
violation, rejected key, failed attestation, stall) is logged with its reason on the
``reef.scallop`` logger and closes only that connection. At most ``max_handshakes`` handshakes run
at once, so a crowd of stalled clients cannot exhaust the server: beyond that, new connections
are closed at once (and logged) until a slot frees.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from reef.crypto import x25519_public_key
from reef.errors import ChannelError, InputError
from reef.scallop._handshake import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    _as_store,
    _check_static_key,
    handshake_server,
)
from reef.scallop._policy import Auther, AuthStore, PeerPolicy
from reef.scallop._stream import ScallopStream, _address

__all__ = ["Handler", "ScallopServer", "serve"]

logger = logging.getLogger("reef.scallop")

Handler = Callable[[ScallopStream], Awaitable[None]]
"""``async def handler(stream)``: serves one established channel; the stream closes after it."""


class ScallopServer:
    """A listening Scallop server; see :func:`serve`. An async context manager."""

    def __init__(
        self,
        handler: Handler,
        *,
        static_key: bytes,
        store: AuthStore | None,
        auther: Auther | None,
        handshake_timeout: float,
        max_handshakes: int = 256,
    ) -> None:
        self._handler = handler
        self._max_handshakes = max_handshakes
        self._handshaking = 0
        self._static_key = bytes(static_key)
        self.static_public = x25519_public_key(self._static_key)
        self.store = store
        self._auther = auther
        self._handshake_timeout = handshake_timeout
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self.accepted = 0
        self.refused = 0
        self._on_close: list[Callable[[], Awaitable[None]]] = []

    async def _start(self, host: str, port: int) -> None:
        try:
            self._server = await asyncio.start_server(self._on_connection, host, port)
        except OSError as exc:
            raise ChannelError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="choose another port (0 picks a free one)",
            ) from exc

    @property
    def port(self) -> int:
        """The port the server listens on (useful after ``port=0``)."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def host(self) -> str:
        """The address the server listens on."""
        assert self._server is not None
        host: str = self._server.sockets[0].getsockname()[0]
        return host

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        address = _address(writer.get_extra_info("peername"))
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            if self._handshaking >= self._max_handshakes:
                self._refuse(
                    writer, "%s: %d handshakes already in progress", address, self._handshaking
                )
                return
            self._handshaking += 1
            try:
                stream = await handshake_server(
                    reader,
                    writer,
                    static_key=self._static_key,
                    policy=self.store,
                    auther=self._auther,
                    handshake_timeout=self._handshake_timeout,
                )
            except (ChannelError, OSError) as exc:
                self._refuse(writer, "%s: %s", address, exc)
                return
            except Exception:
                # A bug in a custom auth store or auther: refuse this client, keep serving.
                self._refuse(writer, "%s: the handshake failed unexpectedly", address, bug=True)
                return
            finally:
                self._handshaking -= 1
            self.accepted += 1
            logger.debug(
                "scallop: accepted %s (key %s…, %s)",
                address,
                stream.peer_static.hex()[:16],
                stream.auth,
            )
            try:
                await self._handler(stream)
            except ChannelError as exc:
                # A broken channel was already logged by the stream; this is the handler ending.
                logger.info("scallop: connection %s ended: %s", address, exc)
            except Exception:
                logger.exception("scallop: the handler failed for %s", address)
            finally:
                await stream.aclose()
        except asyncio.CancelledError:
            # The server is closing: this task is the root of the connection, so ending it
            # quietly is right (asyncio would otherwise log the cancellation as an error).
            writer.transport.abort()
        finally:
            self._connections.pop(task, None)

    def _refuse(
        self, writer: asyncio.StreamWriter, why: str, *args: object, bug: bool = False
    ) -> None:
        """Count and log a refused connection (with the traceback for a ``bug``), and drop it."""
        self.refused += 1
        log = logger.exception if bug else logger.warning
        log("scallop: refused " + why, *args)
        writer.transport.abort()

    def close(self) -> None:
        """Stop listening and close every open connection."""
        if self._server is not None:
            self._server.close()
        for task, writer in list(self._connections.items()):
            writer.transport.abort()
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the listener and every connection are closed."""
        if self._server is not None:
            await self._server.wait_closed()
        if self._connections:
            await asyncio.wait(list(self._connections))

    def on_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``await callback()`` in :meth:`aclose`, after the listener is closed."""
        self._on_close.append(callback)

    async def aclose(self) -> None:
        """``close()``, ``await wait_closed()``, then the :meth:`on_close` callbacks."""
        self.close()
        await self.wait_closed()
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            await callback()

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> ScallopServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def serve(
    handler: Handler,
    host: str,
    port: int,
    *,
    static_key: bytes,
    policy: PeerPolicy | AuthStore | None = None,
    auther: Auther | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    max_handshakes: int = 256,
) -> ScallopServer:
    """Listen on ``host:port`` and run ``await handler(stream)`` for every accepted channel.

    Args:
        handler: called with each established :class:`ScallopStream`; the stream is closed
            when it returns.
        static_key: our 32-byte X25519 static secret.
        policy: what clients must prove. A :class:`PeerPolicy` gets one caching store for the
            server's lifetime; pass ``policy.store(cache=False)`` to ask every time.
        auther: produces our attestation for clients that ask.
        handshake_timeout: seconds each client has to finish its handshake.
        max_handshakes: handshakes allowed in progress at once; connections beyond it are
            closed at once (a bound on what stalled clients can hold).

    Raises:
        ChannelError: the address cannot be listened on.
        InputError: a bad static key or policy.
    """
    _check_static_key(static_key)
    if max_handshakes < 1:
        raise InputError(f"max_handshakes must be at least 1, got {max_handshakes}")
    server = ScallopServer(
        handler,
        static_key=static_key,
        store=_as_store(policy),
        auther=auther,
        handshake_timeout=handshake_timeout,
        max_handshakes=max_handshakes,
    )
    await server._start(host, port)
    return server
