"""Reading the market without web3.py: :class:`MarketReader`, over reef's JSON-RPC transport.

``reef jobs list``, ``reef jobs show`` and ``reef wallet`` only read: a job (``jobs(id)``), its
provider's control-plane URL (``providers(addr)``), its pending rate revision (``locks(key)``),
the market's ``JobOpened`` logs and the latest block; an account's ether (``eth_getBalance``) and
its balance and allowance of the market's token (``token()``, then the token's ``balanceOf`` and
``allowance``). The dashboard reads the registered providers' URLs here too, in one batch. web3.py (with eth-account and py_ecc) takes about 1.5 s to
import, far longer than those reads take, so they are made here with what they need and no more:

* the requests go through :class:`reef.chain._rpc.HttpRpc` (the transport the indexer and
  :class:`reef.chain.BoundedHTTPProvider` use: bounded in size, time and JSON nesting), or, for a
  chain reached through a web3.py client (an in-process devnet, a proxied node, a
  :class:`~reef.chain.MarketClient`'s own), through that client (:class:`ProviderRpc`);
* calls are encoded from the market's and the token's ABI in reef's artifacts (the function's selector and its
  static arguments, each one word) and their answers decoded by reef's ABI word decoder
  (:mod:`reef.chain._abi_words`, held to eth-abi by its tests): eth-abi would add 0.4 s of
  imports for three fixed shapes. A ``string`` is decoded as UTF-8 with replacement, as
  :class:`~reef.chain.MarketClient` does: anyone may store bytes that are not UTF-8;
* the calls a command makes of many jobs go as one JSON-RPC batch (:meth:`MarketReader.find_jobs`,
  :meth:`~MarketReader.providers`, :meth:`~MarketReader.rate_locks`), one by one for a node that
  refuses batches;
* logs are decoded by the market's event decoder (:func:`reef.chain.market_decoder`).

:class:`~reef.chain.MarketClient` reads jobs, providers and rate locks through a reader of its
own (over its web3 provider), so there is one way to read them.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

from reef.chain._abi_words import words_decoder
from reef.chain._artifacts import load_artifact
from reef.chain._events import ChainEvent, EventDecoder, MarketEvent, market_decoder
from reef.chain._rpc import rpc_quantity, rpc_result
from reef.chain._types import (
    Address,
    Amount,
    Job,
    JobId,
    Rate,
    RateLock,
    check_uint,
    job_index,
    parse_address,
    parse_job_id,
)
from reef.crypto import eip55_address, keccak256
from reef.errors import ChainError, InputError, MarketError, RPCError

__all__ = [
    "LOG_CHUNK_BLOCKS",
    "MarketReader",
    "ProviderRpc",
    "RpcPoster",
    "address_topic",
    "chain_id",
    "latest_timestamp",
    "read_events",
]

LOG_CHUNK_BLOCKS = 10_000
"""Blocks per ``eth_getLogs`` request: public endpoints refuse wide ranges (as
:class:`~reef.chain.ContractClient` asks)."""
_E = TypeVar("_E", bound=ChainEvent)
RATE_LOCK_SELECTOR = keccak256(b"RATE_LOCK")
"""The market's key for rate revisions: a job's lock is ``locks(keccak(RATE_LOCK_SELECTOR ‖ job))``."""


class RpcPoster(Protocol):
    """What the reader sends JSON-RPC through (:class:`reef.chain._rpc.HttpRpc` is one)."""

    def post(self, what: str, payload: Any) -> Any:
        """The node's JSON answer to ``payload`` (a request, or a list of them: a batch).

        Raises:
            RPCError: the node cannot be reached, or answered no JSON.
        """
        ...


class ProviderRpc:
    """:class:`RpcPoster` through a web3.py client (an in-process chain, or a node web3.py
    reaches through a proxy): each request goes through the client's middleware and formatters
    (an in-process chain fills in a call's sender there), a batch one request at a time.

    A log filter's ``address`` is passed as a list of one: web3.py's ENS middleware types it
    ``address[]`` and fails on the plain string that JSON-RPC nodes also accept.
    """

    def __init__(self, w3: Any) -> None:
        self._w3 = w3

    def post(self, what: str, payload: Any) -> Any:
        if isinstance(payload, list):
            return [self._one(what, message) for message in payload]
        return self._one(what, payload)

    def _one(self, what: str, message: Mapping[str, Any]) -> Any:
        try:
            params = message["params"]
            if message["method"] == "eth_getLogs" and isinstance(params[0].get("address"), str):
                params = [{**params[0], "address": [params[0]["address"]]}]
            result = self._w3.manager.request_blocking(message["method"], params)
        except ChainError:
            raise
        except Exception as exc:  # web3's, requests' or eth-tester's failure: the node's
            raise RPCError(
                f"{what} failed: {exc}",
                hint="check that the node is running and the RPC URL is right",
            ) from exc
        return {"jsonrpc": "2.0", "id": message["id"], "result": result}


def _ask(rpc: RpcPoster, what: str, method: str, params: list[Any]) -> Any:
    message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return rpc_result(what, rpc.post(what, message))


def chain_id(rpc: RpcPoster) -> int:
    """The chain's id (``eth_chainId``).

    Raises:
        RPCError: the node failed or answered no number.
    """
    return rpc_quantity("eth_chainId", _ask(rpc, "eth_chainId", "eth_chainId", []))


def latest_timestamp(rpc: RpcPoster) -> int:
    """The latest block's time (unix seconds).

    Raises:
        RPCError: the node failed or answered no block.
    """
    what = "eth_getBlockByNumber(latest)"
    block = _ask(rpc, what, "eth_getBlockByNumber", ["latest", False])
    if not isinstance(block, Mapping) or "timestamp" not in block:
        raise RPCError(f"{what} answered no block")
    return rpc_quantity(what, block["timestamp"])


class _Function:
    """One view function of the market: its selector and the decoder of its outputs."""

    def __init__(self, abi: Mapping[str, Any]) -> None:
        self.name = str(abi["name"])
        inputs = [str(item["type"]) for item in abi["inputs"]]
        self.selector = keccak256(f"{self.name}({','.join(inputs)})".encode())[:4]
        self.outputs = [str(item["type"]) for item in abi["outputs"]]
        # Strings as bytes, decoded leniently below (the EVM does not check UTF-8).
        self._decode = words_decoder(["bytes" if t == "string" else t for t in self.outputs])

    def data(self, *words: bytes) -> str:
        return "0x" + (self.selector + b"".join(words)).hex()

    def decode(self, raw: bytes) -> tuple[Any, ...]:
        values = self._decode(raw)
        return tuple(
            bytes(v).decode("utf-8", errors="replace") if t == "string" else v
            for t, v in zip(self.outputs, values, strict=True)
        )


_READ_FUNCTIONS = {
    "Market": ("jobs", "providers", "locks", "token"),
    "Token": ("balanceOf", "allowance"),
}
"""The view functions the reader calls, by contract (each taking static arguments only)."""


@functools.cache
def _functions(contract: str) -> dict[str, _Function]:
    wanted = _READ_FUNCTIONS[contract]
    abi = load_artifact(contract).abi
    found = {
        str(item["name"]): _Function(item)
        for item in abi
        if item.get("type") == "function" and item.get("name") in wanted
    }
    missing = set(wanted) - set(found)
    if missing:  # pragma: no cover - reef's own artifacts have them
        raise ChainError(f"the {contract} artifact lacks {', '.join(sorted(missing))}")
    return found


def _address_word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def _job_word(job: JobId) -> bytes:
    return bytes.fromhex(job[2:])


def _lock_key(job: JobId) -> bytes:
    return keccak256(RATE_LOCK_SELECTOR + _job_word(job))


def read_events(
    decoder: EventDecoder,
    address: str,
    get_logs: Callable[[str, dict[str, Any]], Any],
    head: Callable[[], int],
    what: str,
    *,
    from_block: int,
    to_block: int | str,
    topics: Sequence[Any],
    chunk: int,
) -> list[ChainEvent]:
    """The events ``decoder`` knows among the logs of the contract at ``address`` in
    ``[from_block, to_block]`` (``"latest"``: ``head()``), in chain order. The one loop of a
    contract's log readers whatever their transport (``get_logs`` and ``head`` are its), kept
    free of web3.py for :class:`MarketReader`.

    Args:
        get_logs: sends one ``eth_getLogs`` request (its description for errors, the filter)
            and returns the node's answer.
        what: the reading, named in errors (``eth_getLogs for Market``).
        topics: the filter's topics as ``eth_getLogs`` takes them, topic 0 (the event) first;
            ``None`` is any value.
        chunk: blocks per request, which public endpoints require (:data:`LOG_CHUNK_BLOCKS`).

    Raises:
        InputError: a bad block range or chunk.
        RPCError: the node answered no list of log objects.
    """
    check_uint(from_block, "from_block")
    if chunk < 1:
        raise InputError(f"chunk must be at least 1 block, got {chunk}")
    last = head() if to_block == "latest" else to_block
    if isinstance(last, bool) or not isinstance(last, int):
        raise InputError(f"to_block must be a block number or 'latest', got {to_block!r}")
    wanted = list(topics)
    while wanted and wanted[-1] is None:  # a trailing "any value" filters nothing
        wanted.pop()
    out: list[ChainEvent] = []
    for start in range(from_block, last + 1, chunk):
        end = min(start + chunk - 1, last)
        asked = f"{what} ({start}..{end})"
        log_filter: dict[str, Any] = {
            "address": address,
            "fromBlock": hex(start),
            "toBlock": hex(end),
        }
        if wanted:
            log_filter["topics"] = wanted
        logs = get_logs(asked, log_filter)
        if not isinstance(logs, list):
            raise RPCError(f"{asked} answered no list of logs")
        for log in logs:
            if not isinstance(log, Mapping):
                raise RPCError(f"{asked} answered a log that is no object")
            if log.get("removed"):  # a reorg took it back
                continue
            event = decoder.decode(log)
            if event is not None:
                out.append(event)
    return out


class MarketReader:
    """The market's state as ``reef jobs list``, ``show`` and ``reef wallet`` read it, without
    web3.py (see the module docstring). Every method raises :class:`~reef.errors.RPCError` when
    the node fails and :class:`~reef.errors.ChainError` when no contract answers or an answer is
    malformed."""

    CONTRACT = "Market"

    def __init__(self, rpc: RpcPoster, address: str, *, sender: str | None = None) -> None:
        self.address: Address = parse_address(address, name="Market address")
        self._rpc = rpc
        self._sender = sender  # a call's "from", when the caller has an account
        self._ids = itertools.count(1)
        self._batches = True  # until the node refuses one

    # ---- plumbing ----

    def _message(self, method: str, params: list[Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}

    def _request(self, what: str, method: str, params: list[Any]) -> Any:
        return rpc_result(what, self._rpc.post(what, self._message(method, params)))

    def _requests(self, what: str, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """The results of ``calls`` (method, params), in order: one batch request where the
        node answers batches, else one request each."""
        if len(calls) == 1 or not self._batches:
            return [self._request(what, method, params) for method, params in calls]
        messages = [self._message(method, params) for method, params in calls]
        answer = self._rpc.post(what, messages)
        by_id = (
            {item.get("id"): item for item in answer if isinstance(item, Mapping)}
            if isinstance(answer, list)
            else {}
        )
        if not all(message["id"] in by_id for message in messages):
            # No batches here (a single error answers the batch as a whole): one by one.
            self._batches = False
            return [self._request(what, method, params) for method, params in calls]
        return [rpc_result(what, by_id[message["id"]]) for message in messages]

    def _calls(
        self,
        function: str,
        arguments: Sequence[bytes],
        *,
        contract: str | None = None,
        at: Address | None = None,
    ) -> list[tuple[Any, ...]]:
        """``function(argument)`` of ``contract`` at ``at`` (default: the market) for each of
        ``arguments`` (its static words, concatenated), decoded."""
        contract = self.CONTRACT if contract is None else contract
        fn = _functions(contract)[function]
        to = self.address if at is None else at
        description = f"{contract}.{function}"
        base = {"to": to} if self._sender is None else {"to": to, "from": self._sender}
        calls = [("eth_call", [{**base, "data": fn.data(word)}, "latest"]) for word in arguments]
        out = []
        for raw in self._requests(description, calls) if calls else []:
            data = _hex_bytes(description, raw)
            if not data:
                raise ChainError(
                    f"{description}: no contract answered at {to}",
                    hint="check the contract address and the chain (was the devnet restarted "
                    "fresh?)",
                )
            try:
                out.append(fn.decode(data))
            except InputError as exc:
                raise ChainError(f"{description}: malformed answer from {to}") from exc
        return out

    # ---- jobs, providers, rate locks ----

    def find_jobs(self, jobs: Sequence[int | str | bytes]) -> list[Job | None]:
        """:meth:`find_job` of each of ``jobs``, in one round trip."""
        ids = [parse_job_id(job) for job in jobs]
        found: list[Job | None] = []
        for job_id, values in zip(
            ids, self._calls("jobs", [_job_word(i) for i in ids]), strict=True
        ):
            metadata, owner, provider, rate, balance, last_settled = values
            if not any(owner):
                found.append(None)
                continue
            found.append(
                Job(
                    id=job_id,
                    metadata=str(metadata),
                    owner=Address(eip55_address(owner)),
                    provider=Address(eip55_address(provider)),
                    rate=Rate(int(rate)),
                    balance=Amount(int(balance)),
                    last_settled=int(last_settled),
                )
            )
        return found

    def find_job(self, job: int | str | bytes) -> Job | None:
        """The job as stored on chain, or ``None`` if it never existed or was closed."""
        return self.find_jobs([job])[0]

    def job(self, job: int | str | bytes) -> Job:
        """The job as stored on chain.

        Raises:
            MarketError: no such job is open (as :meth:`reef.chain.MarketClient.job` says it).
        """
        found = self.find_job(job)
        if found is None:
            job_id = parse_job_id(job)
            raise MarketError(
                f"job {job_index(job_id)} ({job_id}) is not open in the market at {self.address}",
                hint="`reef jobs list` shows your open jobs; a closed job is deleted from the market",
            )
        return found

    def providers(self, addresses: Sequence[str]) -> list[str | None]:
        """The control-plane URL each of ``addresses`` registered (``None``: not a provider),
        in one round trip."""
        words = [_address_word(parse_address(a, name="provider")) for a in addresses]
        return [str(cp) or None for (cp,) in self._calls("providers", words)]

    def provider(self, address: str) -> str | None:
        """The control-plane URL ``address`` registered, or ``None`` if it is not a provider."""
        return self.providers([address])[0]

    def rate_locks(self, jobs: Sequence[int | str | bytes]) -> list[RateLock | None]:
        """The pending rate revision of each of ``jobs`` (``None``: none), in one round trip."""
        keys = [_lock_key(parse_job_id(job)) for job in jobs]
        return [
            None
            if int(unlock) == 0
            else RateLock(unlock_time=int(unlock), new_rate=Rate(int(value)))
            for unlock, value in self._calls("locks", keys)
        ]

    def rate_lock(self, job: int | str | bytes) -> RateLock | None:
        """The pending rate revision of a job, or ``None``."""
        return self.rate_locks([job])[0]

    # ---- balances (``reef wallet``) ----

    def token_address(self) -> Address:
        """The market's payment token (``token()``)."""
        ((token,),) = self._calls("token", [b""])
        return Address(eip55_address(token))

    def token_balance(self, owner: str, *, token: str | None = None) -> Amount:
        """``owner``'s balance of the market's token (``token``: of that token instead), in
        base units."""
        at = self.token_address() if token is None else parse_address(token, name="token")
        word = _address_word(parse_address(owner, name="owner"))
        ((balance,),) = self._calls("balanceOf", [word], contract="Token", at=at)
        return Amount(int(balance))

    def token_allowance(self, owner: str, spender: str, *, token: str | None = None) -> Amount:
        """What ``spender`` may take of ``owner``'s market token (``token``: of that token
        instead), in base units."""
        at = self.token_address() if token is None else parse_address(token, name="token")
        words = _address_word(parse_address(owner, name="owner")) + _address_word(
            parse_address(spender, name="spender")
        )
        ((allowance,),) = self._calls("allowance", [words], contract="Token", at=at)
        return Amount(int(allowance))

    def eth_balance(self, address: str) -> int:
        """``address``'s ether balance in wei (``eth_getBalance`` at the latest block)."""
        who = parse_address(address)
        what = f"eth_getBalance({who})"
        return rpc_quantity(what, self._request(what, "eth_getBalance", [who, "latest"]))

    # ---- blocks and events ----

    def head(self) -> int:
        """The latest block's number."""
        return rpc_quantity(
            "eth_blockNumber", self._request("eth_blockNumber", "eth_blockNumber", [])
        )

    def latest_timestamp(self) -> int:
        """The latest block's time (unix seconds)."""
        return latest_timestamp(self._rpc)

    def events(
        self,
        from_block: int = 0,
        to_block: int | str = "latest",
        *,
        topics: Sequence[str | None] = (),
        chunk: int = LOG_CHUNK_BLOCKS,
    ) -> list[MarketEvent]:
        """Every market event in the block range, in chain order; ``topics`` filter topics 1,
        2, ... (``0x`` words, ``None`` any), as :meth:`reef.chain.MarketClient.events` reads
        them."""
        # Every event the market's decoder yields is one of MarketEvent's classes.
        return cast("list[MarketEvent]", self._events(None, from_block, to_block, topics, chunk))

    def events_of(
        self,
        cls: type[_E],
        from_block: int = 0,
        to_block: int | str = "latest",
        *,
        topics: Sequence[str | None] = (),
        chunk: int = LOG_CHUNK_BLOCKS,
    ) -> list[_E]:
        """The market's events of type ``cls`` (a concrete event) in the block range; only
        their logs are asked for (topic 0)."""
        decoder = _decoder()
        (signature,) = decoder.topics_of([cls])
        found = self._events("0x" + signature.hex(), from_block, to_block, topics, chunk)
        return [event for event in found if isinstance(event, cls)]

    def _events(
        self,
        first: str | None,
        from_block: int,
        to_block: int | str,
        topics: Sequence[str | None],
        chunk: int,
    ) -> list[ChainEvent]:
        return read_events(
            _decoder(),
            self.address,
            lambda what, log_filter: self._request(what, "eth_getLogs", [log_filter]),
            self.head,
            f"eth_getLogs for {self.CONTRACT}",
            from_block=from_block,
            to_block=to_block,
            topics=[first, *topics],
            chunk=chunk,
        )


_decoder = functools.cache(market_decoder)
"""The market's event decoder, built once per process (it reads the artifact's ABI)."""


def _hex_bytes(what: str, value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    text = str(value)
    try:
        return bytes.fromhex(text[2:] if text[:2].lower() == "0x" else text)
    except ValueError as exc:
        raise RPCError(f"{what} answered no hex data: {text[:80]!r}") from exc


def address_topic(address: str) -> str:
    """``address`` as an indexed topic (a ``0x`` word), to filter logs by it."""
    return "0x" + _address_word(parse_address(address)).hex()
