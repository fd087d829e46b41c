"""What the indexer reads a chain through: the :class:`BlockSource` protocol and its web3.py form.

The indexer needs four things of a chain (its id, the head, a block's hash and time, a range of
one address's logs), so tests inject reorgs and failures through a scripted source, and the same
indexer runs against reef's devnet, a hardhat node or a public RPC (:class:`Web3BlockSource`).
Every method raises :class:`~reef.errors.RPCError` on failure.

A source may also give a range's logs as the node's own JSON objects (:class:`LogEntrySource`,
which :class:`Web3BlockSource` is): the indexer stores those without building a :class:`RawLog`
per log, which costs more than the node took to send it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from web3 import Web3
from web3.exceptions import Web3Exception
from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint

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


class Web3BlockSource:
    """A :class:`BlockSource` over a web3.py ``Web3`` (any JSON-RPC URL, or in-process)."""

    def __init__(self, w3: Any) -> None:
        self._w3 = w3

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
        return int(self._call("eth_chainId", lambda: self._w3.eth.chain_id))

    def head(self) -> int:
        return int(self._call("eth_blockNumber", lambda: self._w3.eth.block_number))

    def block(self, number: int) -> BlockRef:
        what = f"eth_getBlockByNumber({number})"
        if isinstance(self._w3.provider, JSONBaseProvider):
            # Raw, as logs are: the indexer asks for one block per range.
            block = self._request(what, "eth_getBlockByNumber", [hex(number), False])
            if not isinstance(block, dict):
                raise RPCError(
                    f"{what} answered no block", hint="is the block number past the head?"
                )
        else:
            block = self._call(what, lambda: self._w3.eth.get_block(number))
        try:
            return BlockRef(number, _hex(block["hash"]), _int(block["timestamp"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise RPCError(f"{what} answered a malformed block: {exc}") from exc

    def _request(self, what: str, method: str, params: list[Any]) -> Any:
        """One raw JSON-RPC request's result; the node's error message becomes the RPCError's."""
        response = self._call(
            what, lambda: self._w3.provider.make_request(RPCEndpoint(method), params)
        )
        if not isinstance(response, dict):
            raise RPCError(f"{what} answered no JSON-RPC response")
        error = response.get("error")
        if error:
            message = error.get("message", error) if isinstance(error, dict) else error
            raise RPCError(f"{what} failed: {message}")
        return response.get("result")

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
        params = {
            "address": Web3.to_checksum_address(address),
            "fromBlock": hex(from_block),
            "toBlock": hex(to_block),
        }
        what = f"eth_getLogs({from_block}..{to_block})"
        entries = self._request(what, "eth_getLogs", [params])
        if not isinstance(entries, list):
            raise RPCError(f"{what} answered no list of logs")
        return entries

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


def _int(value: Any) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    return int(text, 16) if text[:2].lower() == "0x" else int(text)
