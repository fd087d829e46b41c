"""The Scallop server: :func:`serve` accepts connections and hands each channel to a handler.

Each connection gets the whole handshake within ``handshake_timeout``; a refusal (protocol
violation, rejected key, failed attestation, stall) is logged with its reason on the
``reef.scallop`` logger and closes only that connection.

Handshakes hold slots, shared fairly among peer addresses (:mod:`reef.scallop._slots`): at most
``max_handshakes`` at once, at most ``per_peer_handshakes`` from one address, and when every slot
is taken a newcomer takes one from the peer holding the most, or from a handshake that has run
for ``busy_handshake_timeout`` seconds (handshakes still waiting for the client's first message
go first), or waits for one its own address frees. A crowd of stalled clients therefore cannot
keep honest ones out: issue 11's 1000 stalled handshakes leave enclaves served. Established
channels are bounded per address too (``per_peer_connections``): a client that completes
handshakes and sits on the channels cannot take every socket the server has. Refusals under
such a flood are logged at most ``_LOG_PER_SECOND`` a second, with a count of the rest, so the
log cannot be flooded either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Final, Unpack

from reef._listen import bind
from reef._peers import peer_group
from reef.crypto import x25519_public_key
from reef.errors import ChannelError, InputError
from reef.scallop._handshake import _accept, _Side, _SideOptions
from reef.scallop._policy import Auther
from reef.scallop._slots import HandshakeSlots, Slot
from reef.scallop._stream import ScallopStream, _address, _Closing

__all__ = ["Handler", "ScallopServer", "connection_peer", "serve"]

logger = logging.getLogger("reef.scallop")

Handler = Callable[[ScallopStream], Awaitable[None]]
"""``async def handler(stream)``: serves one established channel; the stream closes after it."""

DEFAULT_MAX_HANDSHAKES: Final = 256
DEFAULT_PER_PEER_HANDSHAKES: Final = 16
DEFAULT_BUSY_HANDSHAKE_TIMEOUT: Final = 1.0
DEFAULT_PER_PEER_CONNECTIONS: Final = 256
_LOG_PER_SECOND: Final = 20
# Seconds a closed channel's last bytes have to reach a client before it is dropped.
_CLOSE_TIMEOUT: Final = 5.0
# Connections waiting to be accepted: a flood fills a small queue and honest SYNs then wait
# for the kernel's 1 s retransmit. The kernel caps it at net.core.somaxconn.
_BACKLOG: Final = 1024

# Each connection is served in a task of its own, whose context this is set in.
_PEER: ContextVar[str | None] = ContextVar("reef.scallop.connection_peer", default=None)


def connection_peer() -> str | None:
    """The client group (:func:`reef._peers.peer_group`) of the Scallop connection this task
    serves, during its handshake (an auth store deciding about it, as the KMS root's budget of
    attestations per client does) and on its channel; None outside a connection."""
    return _PEER.get()


class _RefusalLog:
    """Refusal lines on ``reef.scallop``, at most ``per_second`` a second; the rest are counted
    and reported in one line with the first refusal of a later second."""

    def __init__(self, per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_second = per_second
        self._clock = clock
        self._window = -1.0
        self._shown = 0
        self._hidden = 0

    def warning(self, message: str, *args: object) -> None:
        now = self._clock()
        if now - self._window >= 1.0:
            if self._hidden:
                logger.warning(
                    "scallop: %d more refusals in the last %.1f s were not logged",
                    self._hidden,
                    now - self._window,
                )
            self._window, self._shown, self._hidden = now, 0, 0
        if self._shown < self._per_second:
            self._shown += 1
            logger.warning(message, *args)
        else:
            self._hidden += 1


class ScallopServer(_Closing):
    """A listening Scallop server; see :func:`serve`. An async context manager."""

    def __init__(
        self, handler: Handler, side: _Side, slots: HandshakeSlots, per_peer_connections: int
    ) -> None:
        self._handler = handler
        self._per_peer_connections = per_peer_connections
        self._open: dict[str, int] = {}
        self._slots = slots
        self._log = _RefusalLog(_LOG_PER_SECOND)
        self._side = side
        self.static_public = x25519_public_key(side.static_key)
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self.accepted = 0
        self.refused = 0
        self.evicted = 0
        """Handshakes stopped early to give their slot to a newcomer (also counted in refused)."""
        self._on_close: list[Callable[[], Awaitable[None]]] = []

    async def _start(self, host: str, port: int) -> None:
        sock = bind(host, port, what="Scallop listener", error=ChannelError, backlog=_BACKLOG)
        # asyncio listens again on a given socket, with its own default backlog unless told.
        self._server = await asyncio.start_server(self._on_connection, sock=sock, backlog=_BACKLOG)

    @property
    def port(self) -> int:
        """The port the server listens on (useful after ``port=0``)."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def open_channels(self) -> int:
        """Established channels open now."""
        return sum(self._open.values())

    @property
    def handshaking(self) -> int:
        """Handshakes in progress now."""
        return len(self._slots)

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
        group = peer_group(writer.get_extra_info("peername"))
        _PEER.set(group)
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            stream = await self._handshake(task, reader, writer, address)
            if stream is None:
                return
            if self._open.get(group, 0) >= self._per_peer_connections:
                # Slots bound handshakes under way, not channels: without this a client that
                # completes handshakes and sits on them holds sockets until the server has none.
                self._refuse(
                    writer,
                    "%s: its address already holds %d open channels",
                    address,
                    self._per_peer_connections,
                )
                return
            self._open[group] = self._open.get(group, 0) + 1
            try:
                await self._serve_channel(stream, address)
            finally:
                left = self._open.pop(group) - 1
                if left:
                    self._open[group] = left
        except asyncio.CancelledError:
            # The server is closing: this task is the root of the connection, so ending it
            # quietly is right (asyncio would otherwise log the cancellation as an error).
            writer.transport.abort()
        finally:
            self._connections.pop(task, None)

    async def _serve_channel(self, stream: ScallopStream, address: str) -> None:
        """Run the handler on an established channel, then close it."""
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
            stream.close()
            try:
                # Closing sends what is still buffered first: a client that stopped reading
                # would keep the connection (and that buffer) for as long as it likes.
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await stream.wait_closed()
            except TimeoutError:
                logger.info("scallop: dropped %s: it read nothing of our last bytes", address)
                stream.abort()

    async def _handshake(
        self,
        task: asyncio.Task[Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        address: str,
    ) -> ScallopStream | None:
        """Take a slot (perhaps after a short wait for one of this peer's own) and run the
        handshake in it; None when the connection was refused (logged and closed)."""
        loop = asyncio.get_running_loop()
        admission = self._slots.admit(peer_group(writer.get_extra_info("peername")), loop.time())
        slot = admission.slot
        if admission.evict is not None:
            self._evict(admission.evict)
        if slot is None:
            self._refuse(writer, "%s: %s", address, admission.reason)
            return None
        try:
            if slot.waiting:
                woken: asyncio.Future[None] = loop.create_future()
                slot.owner = (task, woken)
                try:
                    # As long as a handshake may take: its address's own handshakes are under
                    # way, and at most per_peer_handshakes of its connections wait or run.
                    async with asyncio.timeout(self._side.handshake_timeout):
                        await woken
                except TimeoutError:
                    self._slots.give_up(slot)
                    self._refuse(
                        writer,
                        "%s: all %d handshake slots are taken, and none of its address's freed "
                        "within %g s",
                        address,
                        self._slots.capacity,
                        self._side.handshake_timeout,
                    )
                    return None
            slot.owner = (task, None)

            def under_way() -> None:
                slot.under_way = True

            return await _accept(reader, writer, self._side, on_hello=under_way)
        except (ChannelError, OSError) as exc:
            self._refuse(writer, "%s: %s", address, exc)
            return None
        except asyncio.CancelledError:
            if not slot.evicted or task.uncancel() > 0:
                raise  # the server is closing
            self.evicted += 1
            self._refuse(
                writer,
                "%s: its handshake was stopped after %.2f s to give its slot to another client "
                "(all %d slots were taken)",
                address,
                loop.time() - slot.started,
                self._slots.capacity,
            )
            return None
        except Exception:
            # A bug in a custom auth store or auther: refuse this client, keep serving.
            self._refuse(writer, "%s: the handshake failed unexpectedly", address, bug=True)
            return None
        finally:
            if slot.waiting:
                self._slots.give_up(slot)
            else:
                heir = self._slots.release(slot, loop.time())
                if heir is not None:
                    _, heir_woken = heir.owner
                    if not heir_woken.done():
                        heir_woken.set_result(None)

    def _refuse(
        self, writer: asyncio.StreamWriter, why: str, *args: object, bug: bool = False
    ) -> None:
        """Count and log a refused connection (with the traceback for a ``bug``), and drop it."""
        self.refused += 1
        if bug:
            logger.exception("scallop: refused " + why, *args)
        else:
            self._log.warning("scallop: refused " + why, *args)
        writer.transport.abort()

    @staticmethod
    def _evict(slot: Slot) -> None:
        """Stop the handshake holding ``slot`` (its task logs why and closes the connection)."""
        task, _ = slot.owner
        if not task.done():
            task.cancel()

    def rekey(self, static_key: bytes, *, auther: Auther | None) -> None:
        """Answer handshakes that begin from now on with ``static_key`` (and ``auther``).

        The listening socket is kept: closing it and listening again would leave the port free
        for a moment, for any local process to take. Handshakes under way and channels already
        open keep the key they began with.

        Raises:
            InputError: the key is not a 32-byte X25519 secret.
        """
        side = self._side
        self._side = _Side.of(static_key, side.store, auther, side.handshake_timeout)
        self.static_public = x25519_public_key(static_key)

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


class _ServeOptions(_SideOptions, total=False):
    """The keywords of :func:`serve` (our side, and the server's limits), which
    :func:`~reef.scallop.serve_asgi` passes on."""

    max_handshakes: int
    per_peer_handshakes: int
    busy_handshake_timeout: float
    per_peer_connections: int


async def serve(
    handler: Handler,
    host: str,
    port: int,
    *,
    max_handshakes: int = DEFAULT_MAX_HANDSHAKES,
    per_peer_handshakes: int = DEFAULT_PER_PEER_HANDSHAKES,
    busy_handshake_timeout: float = DEFAULT_BUSY_HANDSHAKE_TIMEOUT,
    per_peer_connections: int = DEFAULT_PER_PEER_CONNECTIONS,
    **side: Unpack[_SideOptions],
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
        max_handshakes: handshakes allowed in progress at once (a bound on what stalled
            clients can hold).
        per_peer_handshakes: handshakes one peer address (an IPv6 /64) may have in progress;
            more from it are closed at once.
        busy_handshake_timeout: when all ``max_handshakes`` slots are taken, a newcomer may
            take the slot of a handshake that has run this long (and always one of a peer
            holding more slots than the newcomer's); otherwise it waits, up to
            ``handshake_timeout``, for a slot its own address frees.
        per_peer_connections: established channels one peer address (an IPv6 /64) may hold
            open at once; a channel past it is closed as soon as its handshake ends.

    Raises:
        ChannelError: the address cannot be listened on.
        InputError: a bad static key or policy.
    """
    ours = _Side.of(**side)
    for name, value in (
        ("max_handshakes", max_handshakes),
        ("per_peer_handshakes", per_peer_handshakes),
        ("per_peer_connections", per_peer_connections),
    ):
        if value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    if not busy_handshake_timeout > 0:
        raise InputError(f"busy_handshake_timeout must be positive, got {busy_handshake_timeout}")
    slots = HandshakeSlots(
        capacity=max_handshakes,
        per_peer=min(per_peer_handshakes, max_handshakes),
        busy_timeout=busy_handshake_timeout,
    )
    server = ScallopServer(handler, ours, slots, per_peer_connections)
    await server._start(host, port)
    return server
