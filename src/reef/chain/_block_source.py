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

Over HTTP, :class:`Web3BlockSource` sends those requests itself, through reef's JSON-RPC
transport (:class:`reef.chain._rpc.HttpRpc`: the standard library's ``http.client``, each answer
bounded in size, time and nesting) rather than through web3.py, whose request path costs more per
request than the node takes to answer. The two calls of a range go as one JSON-RPC batch, which
every mainstream node (geth, erigon, anvil, hardhat, reef's devnet) answers; a node that refuses
batches gets the two requests one after the other, from then on.
"""

from __future__ import annotations

import itertools
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from web3 import Web3
from web3.exceptions import Web3Exception
from web3.providers.base import JSONBaseProvider
from web3.providers.rpc import HTTPProvider
from web3.types import RPCEndpoint

from reef.chain._rpc import MAX_ANSWER_BYTES as MAX_ANSWER_BYTES  # where callers found it
from reef.chain._rpc import HttpRpc, quantity, rpc_quantity, rpc_result
from reef.errors import RPCError

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


def _http_rpc(provider: Any) -> HttpRpc | None:
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
    return HttpRpc(url, kwargs.get("headers") or {}, float(timeout))


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
            return rpc_quantity("eth_chainId", self._request("eth_chainId", "eth_chainId", []))
        return int(self._call("eth_chainId", lambda: self._w3.eth.chain_id))

    def head(self) -> int:
        if self._http is not None:
            answer = self._request("eth_blockNumber", "eth_blockNumber", [])
            return rpc_quantity("eth_blockNumber", answer)
        return int(self._call("eth_blockNumber", lambda: self._w3.eth.block_number))

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
        return rpc_result(what, response)

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
        entries = _log_list(logs_what, rpc_result(logs_what, by_id[logs["id"]]))
        return entries, _block_ref(block_what, to_block, rpc_result(block_what, by_id[block["id"]]))

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
                block_number=quantity(entry["blockNumber"]),
                block_hash=_hex(entry["blockHash"]),
                log_index=quantity(entry["logIndex"]),
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
        return BlockRef(number, _hex(block["hash"]), quantity(block["timestamp"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise RPCError(f"{what} answered a malformed block: {exc}") from exc
