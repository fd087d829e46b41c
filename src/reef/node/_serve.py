"""How ``reef up`` and ``reef provider run`` serve their apps: on reef's serving floor.

:mod:`reef._serve` binds the socket first (a busy port is a clear
:class:`~reef.errors.ServiceError` before anything starts, port 0 picks a free port whose number
is known, ``TCP_NODELAY`` is on), applies the request limits, and runs uvicorn in the running
event loop without touching signals: ``reef up`` handles Ctrl-C itself and stops every service
in order. This module only names that server for the node package.
"""

from __future__ import annotations

from typing import Any

from reef._serve import Limits, Server, bind, serve

__all__ = ["Served", "bind", "serve_app"]

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
