"""Calling an ASGI app directly, one message at a time, for tests that need what an HTTP client
hides: a body that arrives in parts, a client that stays connected or leaves, and every message
the app sent (httpx's in-process transport insists on a complete response).

pytest puts the tests folder on ``sys.path`` (``pythonpath`` in pyproject.toml)::

    from asgi_support import call_asgi
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["call_asgi"]


async def call_asgi(
    app: Any,
    body_parts: list[bytes],
    *,
    method: str = "POST",
    path: str = "/",
    headers: list[tuple[bytes, bytes]] | None = None,
    disconnect: bool = False,
) -> list[dict[str, Any]]:
    """Call ``app`` with a request whose body arrives in ``body_parts``; the messages it sent.

    Once the body is read the client stays connected and sends nothing more, unless
    ``disconnect``: then it leaves before the body ends."""
    incoming: list[dict[str, Any]] = [
        {"type": "http.request", "body": part, "more_body": index < len(body_parts) - 1}
        for index, part in enumerate(body_parts)
    ]
    if disconnect:
        incoming[-1]["more_body"] = True
        incoming.append({"type": "http.disconnect"})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers or [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8545),
    }
    await app(scope, receive, send)
    return sent
