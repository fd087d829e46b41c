"""What the indexer reads a chain through: the :class:`BlockSource` protocol and its web3.py form.

The indexer needs four things of a chain (its id, the head, a block's hash and time, a range of
one address's logs), so tests inject reorgs and failures through a scripted source, and the same
indexer runs against reef's devnet, a hardhat node or a public RPC (:class:`Web3BlockSource`).
Every method raises :class:`~reef.errors.RPCError` on failure.

A source may also give a range's logs as the node's own JSON objects (:class:`LogEntrySource`,
which :class:`Web3BlockSource` is): the indexer stores those without building a :class:`RawLog`
per log, which costs more than the node took to send it. It may also give a range's logs and its
last block in one call (:class:`LogRangeSource`, which :class:`Web3BlockSource` is too): the block
is the range's checkpoint, and asking for it in the same request saves a round trip per range.

Over HTTP, :class:`Web3BlockSource` sends those requests itself, with the standard library's
``http.client``, rather than through web3.py: the indexer's CPU per log goes mostly to
receiving and parsing the node's JSON, and web3.py's request path (requests, a session per
thread, caching and retry layers) costs 0.75 ms per request plus about 2 ms per 600 kB answer
(httpx about 1.7 ms; ``http.client`` 0.55 ms). The two calls of a range go as one JSON-RPC
batch, which every mainstream node (geth, erigon, anvil, hardhat, reef's devnet) answers; a
node that refuses batches gets the two requests one after the other, from then on.

A node may be a stranger's (a public RPC, a host's): its whole answer must come within twice the
provider's timeout (``http.client``'s timeout bounds each socket read, so a node dripping a byte
at a time held a reader for ever), be at most :data:`MAX_ANSWER_BYTES`, and nest no deeper than
:data:`reef.encoding.MAX_JSON_DEPTH` (json recurses per bracket, and web3 has raised the
recursion limit so far that a nesting bomb overflows the C stack).
"""

from __future__ import annotations

import functools
import http.client
import io
import itertools
import json
import socket
import ssl
import threading
import time
import urllib.request
import weakref
from base64 import b64encode
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from web3 import Web3
from web3.exceptions import Web3Exception
from web3.providers.base import JSONBaseProvider
from web3.providers.rpc import HTTPProvider
from web3.types import RPCEndpoint

from reef.encoding import loads_bounded
from reef.errors import InputError, RPCError

__all__ = ["BlockRef", "BlockSource", "RawLog", "Web3BlockSource"]


@dataclass(frozen=True)
class RawLog:
    """One log as ``eth_getLogs`` returns it (hex strings ``0x``-prefixed, lowercase)."""

    block_number: int
    block_hash: str
    log_index: int
    tx_hash: str
    address: str
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True)
class BlockRef:
    """A block's identity and time: enough to detect reorgs and to know the chain's clock."""

    number: int
    hash: str
    timestamp: int


class BlockSource(Protocol):
    """What the indexer needs from a chain. Every method raises RPCError on failure."""

    def chain_id(self) -> int: ...

    def head(self) -> int:
        """The latest block number."""
        ...

    def block(self, number: int) -> BlockRef:
        """Block ``number`` on the current canonical chain."""
        ...

    def logs(self, address: str, from_block: int, to_block: int) -> Sequence[RawLog]:
        """The logs of ``address`` in ``[from_block, to_block]``, in chain order."""
        ...


@runtime_checkable
class LogEntrySource(Protocol):
    """A :class:`BlockSource` that also gives logs as ``eth_getLogs`` JSON objects."""

    def log_entries(
        self, address: str, from_block: int, to_block: int
    ) -> Sequence[Mapping[str, Any]]:
        """The logs of ``address`` in ``[from_block, to_block]``, in chain order, as JSON-RPC
        objects: ``topics`` and ``data`` ``0x`` hex strings, numbers ``0x`` hex or ints, removed
        logs included (``removed: true``)."""
        ...


@runtime_checkable
class LogRangeSource(Protocol):
    """A :class:`LogEntrySource` that also gives a range's logs and its last block at once."""

    def log_range(
        self, address: str, from_block: int, to_block: int
    ) -> tuple[Sequence[Mapping[str, Any]], BlockRef]:
        """:meth:`LogEntrySource.log_entries` of the range and ``block(to_block)``, read
        together (one request where the node allows it)."""
        ...


def raw_log_entry(log: RawLog) -> dict[str, Any]:
    """``log`` as the JSON-RPC object a node would answer (numbers as ints)."""
    return {
        "address": log.address,
        "topics": ["0x" + topic.hex() for topic in log.topics],
        "data": "0x" + log.data.hex(),
        "blockNumber": log.block_number,
        "blockHash": log.block_hash,
        "logIndex": log.log_index,
        "transactionHash": log.tx_hash,
    }


def _hex(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    text = str(value).lower()
    return text if text.startswith("0x") else "0x" + text


def _raw(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    text = str(value)
    return bytes.fromhex(text[2:] if text[:2].lower() == "0x" else text)


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


class _HttpRpc:
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
                # httpx's context (certifi's bundle, or $SSL_CERT_FILE / $SSL_CERT_DIR), as
                # reef's other clients verify; imported here, so that indexing over plain HTTP
                # does not load httpx (about 45 ms of imports).
                from httpx import create_ssl_context

                self._tls = create_ssl_context()
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


def _http_rpc(provider: Any) -> _HttpRpc | None:
    """Requests straight to ``provider``'s node, or ``None`` for a provider this cannot stand
    in for: not HTTP, reached through a proxy, or set up with more than headers and a timeout
    (a session, TLS options)."""
    if not isinstance(provider, HTTPProvider):
        return None
    if getattr(getattr(provider, "_request_session_manager", None), "_explicit_session", None):
        return None
    kwargs = dict(provider.get_request_kwargs())
    if not set(kwargs) <= {"headers", "timeout"}:
        return None
    timeout = kwargs.get("timeout", 30.0)
    if not isinstance(timeout, (int, float)):
        return None
    url = str(provider.endpoint_uri)
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    proxy = urllib.request.getproxies().get(parts.scheme.lower())
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        return None  # requests (web3.py) honours the proxy settings
    return _HttpRpc(url, kwargs.get("headers") or {}, float(timeout))


class Web3BlockSource:
    """A :class:`BlockSource` over a web3.py ``Web3`` (any JSON-RPC URL, or in-process).

    Over a plain ``HTTPProvider`` its requests go straight to the node's URL; any other
    provider is called through web3.py.
    """

    def __init__(self, w3: Any) -> None:
        self._w3 = w3
        self._http = _http_rpc(w3.provider)
        self._ids = itertools.count(1)
        self._batches = self._http is not None  # until the node refuses one

    def close(self) -> None:
        """Close the HTTP connections this source keeps open (it reopens them if used again)."""
        if self._http is not None:
            self._http.close()

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (OSError, TimeoutError) as exc:
            raise RPCError(
                f"{what} failed: {exc}", hint="check that the JSON-RPC endpoint is reachable"
            ) from exc
        except (Web3Exception, ValueError) as exc:
            raise RPCError(f"{what} failed: {exc}") from exc

    def chain_id(self) -> int:
        if self._http is not None:
            return self._quantity("eth_chainId", self._request("eth_chainId", "eth_chainId", []))
        return int(self._call("eth_chainId", lambda: self._w3.eth.chain_id))

    def head(self) -> int:
        if self._http is not None:
            answer = self._request("eth_blockNumber", "eth_blockNumber", [])
            return self._quantity("eth_blockNumber", answer)
        return int(self._call("eth_blockNumber", lambda: self._w3.eth.block_number))

    @staticmethod
    def _quantity(what: str, value: Any) -> int:
        try:
            return _int(value)
        except (TypeError, ValueError) as exc:
            raise RPCError(f"{what} answered {value!r}, not a number") from exc

    def block(self, number: int) -> BlockRef:
        what = f"eth_getBlockByNumber({number})"
        if isinstance(self._w3.provider, JSONBaseProvider):
            # Raw, as logs are: the indexer asks for one block per range.
            block = self._request(what, "eth_getBlockByNumber", [hex(number), False])
        else:
            block = self._call(what, lambda: self._w3.eth.get_block(number))
        return _block_ref(what, number, block)

    def _message(self, method: str, params: list[Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}

    def _request(self, what: str, method: str, params: list[Any]) -> Any:
        """One raw JSON-RPC request's result; the node's error message becomes the RPCError's."""
        if self._http is not None:
            response = self._http.post(what, self._message(method, params))
        else:
            response = self._call(
                what, lambda: self._w3.provider.make_request(RPCEndpoint(method), params)
            )
        return _result(what, response)

    def log_range(
        self, address: str, from_block: int, to_block: int
    ) -> tuple[Sequence[Mapping[str, Any]], BlockRef]:
        """The range's logs (as :meth:`log_entries`) and its last block, in one JSON-RPC batch
        request over HTTP (two requests for a node that refuses batches, or another provider).
        """
        if self._http is None or not self._batches:
            return self.log_entries(address, from_block, to_block), self.block(to_block)
        logs_what = f"eth_getLogs({from_block}..{to_block})"
        block_what = f"eth_getBlockByNumber({to_block})"
        logs = self._message("eth_getLogs", [self._filter(address, from_block, to_block)])
        block = self._message("eth_getBlockByNumber", [hex(to_block), False])
        answer = self._http.post(f"{logs_what} with {block_what}", [logs, block])
        by_id = (
            {item.get("id"): item for item in answer if isinstance(item, dict)}
            if isinstance(answer, list)
            else {}
        )
        if logs["id"] not in by_id or block["id"] not in by_id:
            # No batches here (a single error answers the batch as a whole): ask one by one.
            self._batches = False
            return self.log_entries(address, from_block, to_block), self.block(to_block)
        entries = _log_list(logs_what, _result(logs_what, by_id[logs["id"]]))
        return entries, _block_ref(block_what, to_block, _result(block_what, by_id[block["id"]]))

    @staticmethod
    def _filter(address: str, from_block: int, to_block: int) -> dict[str, str]:
        return {
            "address": Web3.to_checksum_address(address),
            "fromBlock": hex(from_block),
            "toBlock": hex(to_block),
        }

    def logs(self, address: str, from_block: int, to_block: int) -> Sequence[RawLog]:
        if not isinstance(self._w3.provider, JSONBaseProvider):
            return self._formatted_logs(address, from_block, to_block)
        what = f"eth_getLogs({from_block}..{to_block})"
        return _raw_logs(self._json_logs(address, from_block, to_block), what)

    def log_entries(
        self, address: str, from_block: int, to_block: int
    ) -> Sequence[Mapping[str, Any]]:
        if not isinstance(self._w3.provider, JSONBaseProvider):
            return [
                raw_log_entry(log) for log in self._formatted_logs(address, from_block, to_block)
            ]
        return self._json_logs(address, from_block, to_block)

    def _json_logs(self, address: str, from_block: int, to_block: int) -> list[Any]:
        # A raw JSON-RPC request: web3.py's result formatters cost more than the HTTP round trip
        # on big ranges, and the node's own error message tells a too-large range apart.
        what = f"eth_getLogs({from_block}..{to_block})"
        params = [self._filter(address, from_block, to_block)]
        return _log_list(what, self._request(what, "eth_getLogs", params))

    def _formatted_logs(self, address: str, from_block: int, to_block: int) -> list[RawLog]:
        """Through web3.py's formatting, for providers that are not JSON-RPC (eth-tester)."""
        what = f"eth_getLogs({from_block}..{to_block})"
        entries = self._call(
            what,
            lambda: self._w3.eth.get_logs(
                {
                    "address": Web3.to_checksum_address(address),
                    "fromBlock": from_block,
                    "toBlock": to_block,
                }
            ),
        )
        return _raw_logs(entries, what)


def _raw_logs(entries: Sequence[Mapping[str, Any]], what: str) -> list[RawLog]:
    """Logs as a node or web3.py gives them (hex strings or bytes and ints), without removed ones.

    Raises:
        RPCError: naming ``what`` when an entry lacks a field or holds a malformed one.
    """
    try:
        return [
            RawLog(
                block_number=_int(entry["blockNumber"]),
                block_hash=_hex(entry["blockHash"]),
                log_index=_int(entry["logIndex"]),
                tx_hash=_hex(entry["transactionHash"]),
                address=_hex(entry["address"]),
                topics=tuple(_raw(t) for t in entry["topics"]),
                data=_raw(entry["data"]),
            )
            for entry in entries
            if not entry.get("removed", False)
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise RPCError(f"{what} answered a malformed log: {exc}") from exc


def _result(what: str, response: Any) -> Any:
    """The ``result`` of a JSON-RPC response; the node's error message becomes the RPCError's."""
    if not isinstance(response, dict):
        raise RPCError(f"{what} answered no JSON-RPC response")
    error = response.get("error")
    if error:
        message = error.get("message", error) if isinstance(error, dict) else error
        raise RPCError(f"{what} failed: {message}")
    return response.get("result")


def _log_list(what: str, entries: Any) -> list[Any]:
    """An ``eth_getLogs`` result, which must be a list."""
    if not isinstance(entries, list):
        raise RPCError(f"{what} answered no list of logs")
    return entries


def _block_ref(what: str, number: int, block: Any) -> BlockRef:
    """Block ``number`` as a node or web3.py answered it."""
    if block is None:
        raise RPCError(f"{what} answered no block", hint="is the block number past the head?")
    try:
        return BlockRef(number, _hex(block["hash"]), _int(block["timestamp"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise RPCError(f"{what} answered a malformed block: {exc}") from exc


def _int(value: Any) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    return int(text, 16) if text[:2].lower() == "0x" else int(text)
