"""reef's JSON-RPC transport: requests to a node over HTTP(S), bounded in size, time and nesting.

Every read reef makes of a chain goes through :class:`HttpRpc`: the indexer's block source
(:class:`reef.chain.Web3BlockSource`), web3.py's provider (:class:`reef.chain.BoundedHTTPProvider`
posts through it) and the market's reader (:class:`reef.chain.MarketReader`, which
``reef jobs list`` and ``show`` read through without web3.py). It imports neither web3.py nor
requests nor httpx (httpx's TLS context only when an https node is first asked), so a command
that only reads starts without them.

It sends with the standard library's ``http.client``: the indexer's CPU per log goes mostly to
receiving and parsing the node's JSON, and web3.py's request path (requests, a session per
thread, caching and retry layers) costs 0.75 ms per request plus about 2 ms per 600 kB answer
(httpx about 1.7 ms; ``http.client`` 0.55 ms).

A node may be a stranger's (a public RPC, a host's): its whole answer must come within twice the
timeout (``http.client``'s timeout bounds each socket read, so a node dripping a byte at a time
held a reader for ever), be at most :data:`MAX_ANSWER_BYTES`, and nest no deeper than
:data:`reef.encoding.MAX_JSON_DEPTH` (json recurses per bracket, and web3 has raised the
recursion limit so far that a nesting bomb overflows the C stack).
"""

from __future__ import annotations

import functools
import http.client
import io
import json
import os
import socket
import ssl
import threading
import time
import urllib.request
import weakref
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from reef.encoding import loads_bounded
from reef.errors import InputError, RPCError

__all__ = ["MAX_ANSWER_BYTES", "HttpRpc", "direct_rpc", "rpc_result"]


MAX_ANSWER_BYTES = 256 * 1024 * 1024
"""The largest answer read from a node: ranges of logs are sized to stay far below it."""


class _DeadlineReader(io.RawIOBase):
    """A socket as an answer is read from it: each read waits at most until ``deadline``."""

    def __init__(self, sock: socket.socket, deadline: float, timeout: float) -> None:
        self._sock, self._deadline, self._timeout = sock, deadline, timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the node's answer did not end in time")
        self._sock.settimeout(min(left, self._timeout))
        return self._sock.recv_into(buffer)


class _DeadlineResponse(http.client.HTTPResponse):
    """An answer whose head and body must all come before ``deadline``."""

    def __init__(
        self, sock: socket.socket, *, deadline: float, timeout: float, method: str | None = None
    ) -> None:
        super().__init__(_Socket(sock, deadline, timeout), method=method)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class _Socket:
    """What :class:`http.client.HTTPResponse` takes of a socket: a file to read from."""

    sock: socket.socket
    deadline: float
    timeout: float

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self.sock, self.deadline, self.timeout))


class HttpRpc:
    """JSON-RPC requests over HTTP(S) with the standard library's ``http.client``.

    The indexer reads about 600 bytes of JSON per log: receiving a 600 kB answer costs this
    process 0.55 ms of CPU through ``http.client``, 1.7-2 ms through httpx (h11 parses it in
    64 kB pieces) or requests. Each request borrows an idle connection (kept alive) from a pool,
    or opens one: the indexer's reader threads call at once. A kept-alive connection the node
    closed meanwhile (as nodes do after a few idle seconds) is opened again and the request sent
    once more: every request sent here only reads the chain.
    """

    def __init__(self, url: str, headers: Mapping[str, str], timeout: float) -> None:
        parts = urlsplit(url)
        self._https = parts.scheme.lower() == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"Content-Type": "application/json", **headers}
        if parts.username is not None:  # credentials in the URL, as requests sends them
            user = unquote(parts.username) + ":" + unquote(parts.password or "")
            self._headers["Authorization"] = "Basic " + b64encode(user.encode()).decode()
        self._timeout = timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None  # made once, for https: ~25 ms each
        # Connections still open when this is garbage are closed (not left to the sockets'
        # finalizers, which warn about them).
        weakref.finalize(self, _close_all, self._idle)

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection (``True``: it was used before), or a new one."""
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
            if self._https and self._tls is None:
                # The context every reef client verifies with (reef._fetch.tls_context);
                # imported here, so that indexing over plain HTTP does not load httpx (about
                # 45 ms of imports).
                from reef._fetch import tls_context

                self._tls = tls_context()
            tls = self._tls
        if self._https:
            return (
                http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=tls
                ),
                False,
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout), False

    def _exchange(self, body: bytes) -> tuple[int, bytes]:
        """The status and body of the node's answer to ``body``."""
        while True:
            connection, reused = self._connection()
            try:
                if connection.sock is not None:  # a read left a shorter timeout on it
                    connection.sock.settimeout(self._timeout)
                connection.request("POST", self._path, body, self._headers)
                connection.response_class = functools.partial(  # type: ignore[assignment]
                    _DeadlineResponse,
                    deadline=time.monotonic() + 2 * self._timeout,
                    timeout=self._timeout,
                )
                response = connection.getresponse()
                answer = _read_bounded(response)
            except (ConnectionError, http.client.HTTPException):
                connection.close()
                if reused:
                    continue  # the node closed it while it was idle: a new one, once more
                raise
            except BaseException:
                connection.close()
                raise
            with self._lock:
                self._idle.append(connection)
            return response.status, answer

    def exchange(self, body: bytes) -> tuple[int, bytes]:
        """The status and body of the node's answer to ``body`` (a JSON-RPC request or batch),
        read within the bounds (see the module docstring).

        Raises:
            RPCError: the answer is over :data:`MAX_ANSWER_BYTES`.
            TimeoutError: it did not come whole within twice the timeout.
            OSError, http.client.HTTPException: the node cannot be reached.
        """
        return self._exchange(body)

    def post(self, what: str, payload: Any) -> Any:
        """The node's JSON answer to ``payload`` (a request or a batch).

        Raises:
            RPCError: the node is unreachable, or answered no JSON.
        """
        try:
            status, answer = self._exchange(json.dumps(payload).encode())
        except (OSError, http.client.HTTPException) as exc:
            raise RPCError(
                f"{what} failed: {exc!r}", hint="check that the JSON-RPC endpoint is reachable"
            ) from exc
        try:
            # A node may answer a JSON-RPC error with an HTTP error status: its message is
            # what tells a refused range apart.
            return loads_bounded(answer, what="the answer")
        except InputError as exc:
            raise RPCError(
                f"{what} failed: HTTP {status}, not a JSON-RPC answer ({answer[:200]!r})",
                hint="check that the URL is a JSON-RPC endpoint",
            ) from exc

    def close(self) -> None:
        with self._lock:
            idle = self._idle[:]
            self._idle.clear()
        _close_all(idle)


def _read_bounded(response: http.client.HTTPResponse) -> bytes:
    """The body of ``response``.

    Raises:
        RPCError: it is over :data:`MAX_ANSWER_BYTES`.
    """
    too_large = RPCError(
        f"the node's answer is over {MAX_ANSWER_BYTES} bytes",
        hint="check that the URL is a JSON-RPC endpoint you trust",
    )
    length = response.getheader("content-length")
    if length is not None and length.isdigit():
        if int(length) > MAX_ANSWER_BYTES:
            raise too_large  # declared: refused before a byte of it is read
        return response.read()  # one read: the common case, and the fastest
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read(1 << 20):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _close_all(connections: list[http.client.HTTPConnection]) -> None:
    for connection in connections:
        connection.close()


def rpc_result(what: str, response: Any) -> Any:
    """The ``result`` of a JSON-RPC response; the node's error message becomes the RPCError's."""
    if not isinstance(response, dict):
        raise RPCError(f"{what} answered no JSON-RPC response")
    error = response.get("error")
    if error:
        message = error.get("message", error) if isinstance(error, dict) else error
        raise RPCError(f"{what} failed: {message}")
    return response.get("result")


def quantity(value: Any) -> int:
    """A JSON-RPC quantity (``0x``-hex text, or decimal text, an integer or big-endian bytes
    such as a signature's ``r`` as some nodes and web3.py's formatters give) as an int.

    Raises:
        TypeError, ValueError: it is no quantity (a caller inside a parse of a larger answer
            catches these; :func:`rpc_quantity` names the request).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, bytes | bytearray):
        return int.from_bytes(value, "big")
    text = str(value)  # a boolean's text ("True") is no number either
    return int(text, 16) if text[:2].lower() == "0x" else int(text)


def rpc_quantity(what: str, value: Any) -> int:
    """:func:`quantity` of the answer to ``what``.

    Raises:
        RPCError: naming ``what``, when the answer is no number.
    """
    try:
        return quantity(value)
    except (TypeError, ValueError) as exc:
        raise RPCError(f"{what} answered {str(value)[:80]!r}, not a number") from exc


def direct_rpc(url: str, *, timeout: float = 30.0) -> HttpRpc | None:
    """An :class:`HttpRpc` to the node at ``url``, or ``None`` where it cannot send as web3.py's
    provider (requests) would: not an http(s) URL, a proxy from the environment applies, or an
    https node trusted through requests' own CA bundle variables (which this transport does not
    read). :class:`reef.chain.BoundedHTTPProvider` decides the same way."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    proxy = urllib.request.getproxies().get(scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        return None
    own_ca = any(os.environ.get(name) for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"))
    if own_ca and scheme == "https":
        return None
    return HttpRpc(url, {}, timeout)
