"""One HTTP/1.1 request to a runtime over its Unix socket, reading at most the output cap.

h11 (already installed as httpx's HTTP/1.1 engine) does the protocol: it is sans-IO, so this
module only moves bytes, and a response with any framing (length, chunked, close-delimited) is
parsed correctly. httpx itself is not used here because a call must stop reading the moment the
body passes the cap and costs ~1 ms more per request on these machines; each call opens its own
connection (a Unix socket connect costs microseconds) so no idle keep-alive state can go stale.

What a function answers is a stranger's: its response head is read up to :data:`MAX_HEAD_BYTES`
and no further (a larger head is ``too_large``, as a larger body is). What a web2 caller sent is
a stranger's too: its path and header values go to the function as the bytes it sent (latin-1
is the identity on bytes), and :func:`request_head` refuses one that HTTP cannot carry with an
:class:`~reef.errors.InputError` before any runtime is involved.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import h11

from reef.errors import InputError

__all__ = [
    "MAX_HEAD_BYTES",
    "HttpRequest",
    "Response",
    "RuntimeConnectionError",
    "post",
    "request_head",
]

_READ_CHUNK = 64 * 1024
MAX_HEAD_BYTES = 16 * 1024
"""The most of a function's response head (status line and headers) reef reads; past it the
response is too large (code 5), as a body past the output cap is."""


class RuntimeConnectionError(Exception):
    """The runtime closed or refused the connection before a full response (internal signal:
    the caller then looks at why the process went away)."""


# Headers reef sets itself on the way in, and the framing headers h11 recomputes on the way out.
_HOP_BY_HOP = frozenset(
    {"host", "content-length", "connection", "transfer-encoding", "keep-alive", "upgrade", "te"}
)


@dataclass(frozen=True)
class HttpRequest:
    """What a web2 caller sent, forwarded to the function (the body travels separately).

    ``target`` is the path and query the function sees; ``headers`` are the caller's, less the
    hop-by-hop ones (reef sets the framing). Both are the bytes on the wire decoded as latin-1,
    as ASGI servers give them, and go back to those bytes.
    """

    method: str = "POST"
    target: str = "/"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    too_large: bool
    headers: tuple[tuple[str, str], ...] = ()


def request_head(body_length: int, request: HttpRequest | None = None) -> h11.Request:
    """The HTTP/1.1 head of a call: ``request``'s method, target and headers (a ``POST /``
    without one), reef's ``Host`` and framing.

    Raises:
        InputError: the method, target or a header cannot be sent in HTTP/1.1 (a caller's
            request that cannot be forwarded as it is).
    """
    forwarded = request or HttpRequest()
    try:
        return h11.Request(
            method=forwarded.method.encode("latin-1"),
            target=forwarded.target.encode("latin-1"),
            headers=[
                (b"Host", b"function"),
                (b"Content-Length", str(body_length).encode()),
                (b"Connection", b"close"),
                *(
                    (k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in forwarded.headers
                    if k.lower() not in _HOP_BY_HOP
                ),
            ],
        )
    except (h11.LocalProtocolError, UnicodeEncodeError) as exc:
        raise InputError(
            f"the request cannot be forwarded to the function: {exc}",
            hint="send a path and headers of visible ASCII or latin-1 characters",
        ) from exc


async def post(
    socket_path: str, body: bytes, *, max_body: int, request: HttpRequest | None = None
) -> Response:
    """POST ``body`` to ``/`` on the runtime listening at ``socket_path`` (or send ``request``'s
    method, target and headers with it: the web2 path).

    Returns the status and body; when the body exceeds ``max_body`` bytes, stops reading and
    returns ``too_large`` with an empty body.

    Raises:
        InputError: ``request`` cannot be sent (see :func:`request_head`).
        RuntimeConnectionError: the connection failed or closed mid-response.
    """
    head = request_head(len(body), request)
    try:
        reader, writer = await asyncio.open_unix_connection(socket_path)
    except OSError as exc:
        raise RuntimeConnectionError(f"connect: {exc}") from exc
    try:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        writer.write(
            conn.send(head) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        )
        status = 0
        headers: tuple[tuple[str, str], ...] = ()
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
                headers = tuple(
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in event.headers
                    if k.decode("latin-1").lower() not in _HOP_BY_HOP
                )
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > max_body:
                    return Response(status, b"", too_large=True)
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return Response(status, b"".join(parts), too_large=False, headers=headers)
            elif isinstance(event, h11.ConnectionClosed):
                raise RuntimeConnectionError("closed before the response ended")
    except h11.RemoteProtocolError as exc:
        if exc.error_status_hint == 431:  # h11's "head over max_incomplete_event_size"
            return Response(0, b"", too_large=True)
        raise RuntimeConnectionError(str(exc)) from exc
    except (OSError, h11.ProtocolError) as exc:
        raise RuntimeConnectionError(str(exc)) from exc
    finally:
        writer.close()
