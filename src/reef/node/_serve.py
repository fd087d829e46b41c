"""Serving an ASGI app with uvicorn inside the running event loop, on a socket we bind ourselves.

Binding first (rather than letting uvicorn do it) turns a busy port into a clear
:class:`~reef.errors.ServiceError` before anything starts, lets port 0 pick a free port whose
number we know, and lets several services share one process and one event loop (``reef up``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import uvicorn

from reef.errors import ServiceError

__all__ = ["Served", "serve_app"]


def bind(host: str, port: int, *, what: str) -> socket.socket:
    """A listening TCP socket on ``host:port``.

    Raises:
        ServiceError: naming ``what`` when the address is in use or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServiceError(
            f"cannot listen for the {what} on {host}:{port}: {exc.strerror or exc}",
            hint="another process uses that port; pick another with the matching --…-port flag",
        ) from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


class Served:
    """An app being served; ``url`` is where. :meth:`close` stops it."""

    def __init__(self, app: Any, sock: socket.socket, *, what: str) -> None:
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}"
        self.port: int = port
        self.what = what
        self._socket = sock
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        # reef up handles Ctrl-C itself; uvicorn must not take over the process's signals.
        self._server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Served:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                with contextlib.suppress(BaseException):
                    self._task.result()
                raise ServiceError(f"the {self.what} did not start on {self.url}")
            await asyncio.sleep(0.01)
        return self

    async def close(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._socket.close()


async def serve_app(app: Any, *, host: str, port: int, what: str) -> Served:
    """Serve ``app`` on ``host:port`` (0 picks a free port) until :meth:`Served.close`.

    Raises:
        ServiceError: when the port cannot be bound or the server does not start.
    """
    return await Served(app, bind(host, port, what=what), what=what).start()
