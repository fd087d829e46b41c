"""How ``reef up`` and ``reef provider run`` serve their apps: on reef's serving floor.

:mod:`reef._serve` binds the socket first (a busy port is a clear
:class:`~reef.errors.ServiceError` before anything starts, port 0 picks a free port whose number
is known, ``TCP_NODELAY`` is on), applies the request limits, and runs uvicorn in the running
event loop without touching signals: ``reef up`` handles Ctrl-C itself and stops every service
in order. This module names that server for the node package, and waits for the services an
enclave serves (:func:`until_up`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from reef._listen import bind
from reef._serve import Limits, Server, serve
from reef.errors import ReefError, ServiceError

__all__ = ["Served", "bind", "serve_app", "until_up"]

_T = TypeVar("_T")

Served = Server
"""An app being served; ``url`` says where, :meth:`~reef._serve.Server.aclose` stops it."""


async def serve_app(
    app: Any, *, host: str, port: int, what: str, limits: Limits | None = None
) -> Served:
    """Serve ``app`` on ``host:port`` (0 picks a free port) until :meth:`Served.aclose`.

    Raises:
        ServiceError: when the port cannot be bound or the server does not start.
        InputError: for a port outside 0..65535 or a host that does not resolve.
    """
    return await serve(
        app,
        host=host,
        port=port,
        what=what,
        limits=limits,
        hint="another process uses that port; pick another with the matching --…-port flag",
    )


async def until_up(
    attempt: Callable[[], Awaitable[_T]],
    *,
    what: str,
    errors: type[ReefError] = ReefError,
    tries: int = 150,
    delay_s: float = 0.2,
) -> _T:
    """``attempt()``'s result once it succeeds, trying every ``delay_s`` (30 s in all by default):
    an enclave's servers answer a moment after the enclave starts.

    Raises:
        ServiceError: ``what`` did not come up; the message carries the last failure.
    """
    last: ReefError | None = None
    for _ in range(tries):
        try:
            return await attempt()
        except errors as exc:
            last = exc
            await asyncio.sleep(delay_s)
    raise ServiceError(f"{what} did not come up: {last}")
