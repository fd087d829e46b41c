"""One HTTP/1.1 request to a runtime over its Unix socket, reading at most the output cap.

h11 (already installed as httpx's HTTP/1.1 engine) does the protocol: it is sans-IO, so this
module only moves bytes, and a response with any framing (length, chunked, close-delimited) is
parsed correctly. httpx itself is not used here because a call must stop reading the moment the
body passes the cap and costs ~1 ms more per request on these machines; each call opens its own
connection (a Unix socket connect costs microseconds) so no idle keep-alive state can go stale.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import h11

__all__ = ["Response", "RuntimeConnectionError", "post"]

_READ_CHUNK = 64 * 1024


class RuntimeConnectionError(Exception):
    """The runtime closed or refused the connection before a full response (internal signal:
    the caller then looks at why the process went away)."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    too_large: bool


async def post(socket_path: str, body: bytes, *, max_body: int) -> Response:
    """POST ``body`` to ``/`` on the runtime listening at ``socket_path``.

    Returns the status and body; when the body exceeds ``max_body`` bytes, stops reading and
    returns ``too_large`` with an empty body.

    Raises:
        RuntimeConnectionError: the connection failed or closed mid-response.
    """
    try:
        reader, writer = await asyncio.open_unix_connection(socket_path)
    except OSError as exc:
        raise RuntimeConnectionError(f"connect: {exc}") from exc
    try:
        conn = h11.Connection(h11.CLIENT)
        request = h11.Request(
            method="POST",
            target="/",
            headers=[
                ("Host", "function"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
            ],
        )
        writer.write(
            conn.send(request) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        )
        status = 0
        parts: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                chunk = await reader.read(_READ_CHUNK)
                conn.receive_data(chunk)  # b"" tells h11 the peer closed
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > max_body:
                    return Response(status, b"", too_large=True)
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return Response(status, b"".join(parts), too_large=False)
            elif isinstance(event, h11.ConnectionClosed):
                raise RuntimeConnectionError("closed before the response ended")
    except (OSError, h11.ProtocolError) as exc:
        raise RuntimeConnectionError(str(exc)) from exc
    finally:
        writer.close()
