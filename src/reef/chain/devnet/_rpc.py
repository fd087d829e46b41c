"""The devnet's Ethereum JSON-RPC 2.0 dispatcher: requests in, responses out, no I/O.

Both the HTTP endpoint and the in-process web3 provider hand parsed JSON to
:meth:`DevnetRpc.handle`, so they answer identically. The method set is what web3.py, ethers v6
and wallets use (the ``eth_``, ``net_`` and ``web3_`` namespaces, dev-account signing, polling
filters), plus hardhat's and anvil's test controls (``evm_increaseTime``,
``evm_setNextBlockTimestamp``, ``evm_mine``, ``evm_snapshot``, ``evm_revert``).

Errors follow JSON-RPC 2.0 and geth: -32700 parse error, -32600 invalid request, -32601 unknown
method, -32602 invalid params, -32603 internal error, 3 ``execution reverted`` with the revert
data in ``data``, and -32000 for a transaction the chain refuses (nonce, funds, fees). A request
that fails never affects the next one.

Hostile input is answered, never crashes or stalls the server (issue 11): JSON is parsed only
after :func:`reef.encoding.json_depth` (linear in the body) shows its nesting is at most
:data:`MAX_DEPTH` (py-evm raises Python's recursion limit to 100 000, so ``json.loads`` of a
nesting bomb would overflow the C stack); ``NaN`` and
``Infinity`` are not JSON and are a parse error; an ``id`` must be a string (up to 1 024
characters), a finite number between -2**64 and 2**64, or null, else the answer is -32600
with a null id; nothing non-finite is ever emitted; a batch holds at most :data:`MAX_BATCH` requests and its
answers at most ``max_batch_response`` bytes (later requests get -32003 "response too large",
as geth answers, without being run), and its requests start within ``batch_timeout_s`` seconds
(later ones get -32000 without being run, so a batch of slow calls cannot hold a worker for
hours). ``eth_call`` and ``eth_estimateGas`` run with at most
``call_gas_cap`` gas (as the call gas caps of geth, anvil and hardhat) and within
``call_timeout_s`` seconds of wall time.

One module (about 1 000 lines): the JSON-RPC surface, method by method (the eth_* and evm_*
methods a node answers, with their parameter checks and limits), as one table a reader can
scan against the specification.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import platform
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Final, TypeVar

from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_utils.exceptions import ValidationError

from reef.chain.devnet._engine import Chain
from reef.chain.devnet._format import (
    block_json,
    data,
    log_json,
    pending_block_json,
    quantity,
    receipt_json,
    transaction_json,
)
from reef.chain.devnet._types import (
    BLOCK_TAGS,
    GAS_LIMIT,
    PRIORITY_FEE,
    BlockSelector,
    DevnetFault,
    MinedBlock,
    TxRequest,
)
from reef.crypto import keccak256
from reef.encoding import json_depth
from reef.errors import InputError, ReefError

__all__ = ["DevnetRpc"]

_log = logging.getLogger("reef.chain.devnet")

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
SERVER_ERROR: Final = -32000

RESPONSE_TOO_LARGE: Final = -32003
LIMIT_EXCEEDED: Final = -32005
"""EIP-1474's "limit exceeded"."""

MAX_BATCH: Final = 1000
MAX_LOGS: Final = 10_000
"""Logs one eth_getLogs may answer (as Alchemy and Infura): a wide query over a busy contract
would otherwise build an answer of any size in one request."""
MAX_BATCH_RESPONSE: Final = 5 * 1024 * 1024
"""Bytes of answers one batch may produce (geth caps batch responses the same way)."""
BATCH_TIMEOUT_S: Final = 30.0
"""Seconds after which the requests of a batch not yet started are refused, not run."""
MAX_DEPTH: Final = 100
"""Nesting of arrays and objects a request may have (EIP-712 typed data needs a dozen)."""
MAX_ID_LENGTH: Final = 1024
CALL_TIMEOUT_S: Final = 5.0
"""CPU time an ``eth_call`` or ``eth_estimateGas`` may run (geth's RPCEVMTimeout is 5 s of wall
time; a call waiting for a CPU on a busy machine does not spend its budget here)."""
MAX_FILTERS: Final = 10_000
FILTER_TIMEOUT_S: Final = 300.0
"""A filter nobody polled for five minutes is dropped, as geth does."""
_UINT256: Final = 2**256
_R = TypeVar("_R")
LIGHT_METHODS: Final = frozenset(
    {
        "web3_clientVersion",
        "web3_sha3",
        "net_version",
        "net_listening",
        "net_peerCount",
        "eth_chainId",
        "eth_syncing",
        "eth_mining",
        "eth_hashrate",
        "eth_coinbase",
        "eth_accounts",
        "eth_blockNumber",
        "eth_maxPriorityFeePerGas",
        "eth_blobBaseFee",
        # Lock-free lookups in the chain's own index (Chain.transaction): a wallet asks for the
        # receipt right after each send, and a worker thread's round trip cost a tenth of a
        # transfer over HTTP.
        "eth_getTransactionReceipt",
        "eth_getTransactionByHash",
    }
)
"""Methods answered from constants or lock-free reads of immutable records: no EVM work, no
lock, a few dozen microseconds (more for a receipt with many logs)."""
MAX_LIGHT_BATCH: Final = 16
QUICK_READS: Final = frozenset(
    {
        "eth_getBalance",
        "eth_getTransactionCount",
        "eth_getCode",
        "eth_getStorageAt",
        "eth_gasPrice",
        # A block holds one transaction (automine): 20-45 us with full transactions. Wallets
        # (ethers) ask for the latest block's fees before each send.
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
    }
)
"""Methods that read one account's state, a block or the head's fee under the chain's lock: a
trie lookup or two, tens of microseconds, but behind whatever holds the lock. A server answers them
where it is (:meth:`DevnetRpc.answer_if_free`) when the lock is free, and in a worker thread
otherwise."""
"""Requests a batch of light ones may hold and still be light (the lookups add up)."""


# ------------------------------------------------------------------------------- parsing


class _Unrepresentable:
    """A JSON number Python cannot hold faithfully (over 4 300 digits, or beyond a double)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text[:40]

    def __repr__(self) -> str:
        return f"{self.text}…"


def _parse_int(text: str) -> int | _Unrepresentable:
    # Python refuses to convert more than 4 300 digits (a ValueError deep inside json.loads);
    # nothing in Ethereum JSON-RPC needs more than 80 (a uint256 in decimal has 78).
    if len(text) > 100:
        return _Unrepresentable(text)
    return int(text)


def _parse_float(text: str) -> float | _Unrepresentable:
    value = float(text)
    return value if math.isfinite(value) else _Unrepresentable(text)


def _refuse_constant(name: str) -> Any:
    raise DevnetFault(f"parse error: {name} is not JSON", code=PARSE_ERROR)


_DECODER: Final = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant
)
"""The one decoder of request bodies (stateless; ``json.loads`` would build one per call)."""
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
"""The one encoder of answers: the bytes ``json.dumps(..., separators=(",", ":"),
allow_nan=False)`` gives, without building an encoder per answer."""


def parse_json(body: bytes | str) -> Any:
    """Parse untrusted JSON: bounded nesting, no NaN/Infinity, huge numbers kept as markers.

    Raises:
        DevnetFault: with code -32700 (parse error) saying what is wrong.
    """
    raw = body.encode() if isinstance(body, str) else body
    if json_depth(raw, beyond=MAX_DEPTH) > MAX_DEPTH:
        raise DevnetFault(
            f"parse error: the request nests arrays/objects deeper than {MAX_DEPTH} levels",
            code=PARSE_ERROR,
        )
    try:
        # What json.loads does with bytes, with one decoder instead of a new one per request.
        return _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise DevnetFault(f"parse error: {exc}", code=PARSE_ERROR) from exc


def _valid_id(ident: Any) -> bool:
    if ident is None:
        return True
    if isinstance(ident, str):
        return len(ident) <= MAX_ID_LENGTH
    if isinstance(ident, bool):
        return False
    if isinstance(ident, int):
        return -(2**64) < ident < 2**64
    return isinstance(ident, float) and math.isfinite(ident)


def _invalid(message: str) -> DevnetFault:
    return DevnetFault(f"invalid params: {message}", code=INVALID_PARAMS)


# ------------------------------------------------------------------------- parameter parsing


def _quantity(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise _invalid(f"{name} must be a hex quantity, got {value!r}")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str) and value[:2] in ("0x", "0X") and len(value) > 2:
        try:
            result = int(value[2:], 16)
        except ValueError:
            raise _invalid(f"{name} is not a hex quantity: {value[:80]!r}") from None
    else:
        raise _invalid(f"{name} must be a 0x-prefixed hex quantity, got {str(value)[:80]!r}")
    if not 0 <= result < _UINT256:
        raise _invalid(f"{name} is out of range")
    return result


def _bytes(value: Any, name: str, length: int | None = None) -> bytes:
    if not isinstance(value, str) or value[:2] not in ("0x", "0X"):
        raise _invalid(f"{name} must be 0x-prefixed hex data, got {str(value)[:80]!r}")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise _invalid(f"{name} is not valid hex data (an even number of hex digits)") from None
    if length is not None and len(raw) != length:
        raise _invalid(f"{name} must be {length} bytes, got {len(raw)}")
    return raw


def _address(value: Any, name: str = "address") -> bytes:
    return _bytes(value, name, 20)


def _hash(value: Any, name: str = "hash") -> bytes:
    return _bytes(value, name, 32)


def _block(value: Any, name: str = "block") -> BlockSelector:
    """A block parameter: tag, quantity, or an EIP-1898 ``{blockNumber|blockHash}`` object."""
    if value is None:
        return "latest"
    if isinstance(value, str) and value in BLOCK_TAGS:
        return value
    if isinstance(value, Mapping):
        if "blockHash" in value:
            return _hash(value["blockHash"], f"{name}.blockHash")
        if "blockNumber" in value:
            return _block(value["blockNumber"], f"{name}.blockNumber")
        raise _invalid(f"{name} object needs blockHash or blockNumber")
    return _quantity(value, name)


def _optional_quantity(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    return None if value is None else _quantity(value, key)


def _tx_request(value: Any) -> TxRequest:
    if not isinstance(value, Mapping):
        raise _invalid("the transaction must be a JSON object")
    payload = value.get("input")
    legacy_payload = value.get("data")
    if payload is not None and legacy_payload is not None and payload != legacy_payload:
        raise _invalid("both 'data' and 'input' are set and they differ")
    raw_payload = payload if payload is not None else legacy_payload
    access_list = value.get("accessList")
    parsed_access: tuple[tuple[bytes, tuple[int, ...]], ...] | None = None
    if access_list is not None:
        if not isinstance(access_list, list):
            raise _invalid("accessList must be an array")
        entries = []
        for entry in access_list:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("storageKeys", []), list):
                raise _invalid("accessList entries are {address, storageKeys}")
            keys = tuple(
                int.from_bytes(_hash(key, "storage key"), "big")
                for key in entry.get("storageKeys", [])
            )
            entries.append((_address(entry.get("address"), "accessList address"), keys))
        parsed_access = tuple(entries)
    sender = value.get("from")
    to = value.get("to")
    return TxRequest(
        sender=None if sender is None else _address(sender, "from"),
        to=None if to is None else _address(to, "to"),
        gas=_optional_quantity(value, "gas"),
        gas_price=_optional_quantity(value, "gasPrice"),
        max_fee_per_gas=_optional_quantity(value, "maxFeePerGas"),
        max_priority_fee_per_gas=_optional_quantity(value, "maxPriorityFeePerGas"),
        value=_optional_quantity(value, "value") or 0,
        data=b"" if raw_payload is None else _bytes(raw_payload, "input"),
        nonce=_optional_quantity(value, "nonce"),
        type=_optional_quantity(value, "type"),
        access_list=parsed_access,
        chain_id=_optional_quantity(value, "chainId"),
    )


def _params(params: Sequence[Any], minimum: int, maximum: int) -> list[Any]:
    if not minimum <= len(params) <= maximum:
        expected = str(minimum) if minimum == maximum else f"{minimum} to {maximum}"
        raise _invalid(f"expected {expected} parameters, got {len(params)}")
    return list(params) + [None] * (maximum - len(params))


# ------------------------------------------------------------------------------- filters


@dataclass
class _Filter:
    kind: str  # "logs", "blocks" or "pending"
    cursor: int  # the first block whose changes the next poll reports
    last_poll: float
    from_block: BlockSelector = "latest"
    to_block: BlockSelector = "latest"
    addresses: frozenset[bytes] | None = None
    topics: tuple[frozenset[bytes] | None, ...] = ()


def _log_criteria(
    criteria: Any,
) -> tuple[frozenset[bytes] | None, tuple[frozenset[bytes] | None, ...]]:
    if not isinstance(criteria, Mapping):
        raise _invalid("the filter must be a JSON object")
    raw_address = criteria.get("address")
    addresses: frozenset[bytes] | None
    if raw_address is None:
        addresses = None
    elif isinstance(raw_address, list):
        addresses = frozenset(_address(item) for item in raw_address)
    else:
        addresses = frozenset({_address(raw_address)})
    raw_topics = criteria.get("topics") or []
    if not isinstance(raw_topics, list) or len(raw_topics) > 4:
        raise _invalid("topics must be an array of at most 4 entries")
    topics: list[frozenset[bytes] | None] = []
    for position, item in enumerate(raw_topics):
        if item is None:
            topics.append(None)
        elif isinstance(item, list):
            if any(choice is None for choice in item) or not item:
                topics.append(None)
            else:
                topics.append(frozenset(_hash(choice, f"topics[{position}]") for choice in item))
        else:
            topics.append(frozenset({_hash(item, f"topics[{position}]")}))
    return addresses, tuple(topics)


# ------------------------------------------------------------------------------ dispatcher

Handler = Callable[[Sequence[Any]], Any]


class DevnetRpc:
    """Answers Ethereum JSON-RPC requests from a chain (a :class:`reef.chain.devnet.Devnet`).

    Args:
        devnet: the chain to answer from.
        monotonic: the clock that expires unpolled filters (a parameter for tests).
    """

    def __init__(
        self,
        devnet: Chain,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        call_gas_cap: int = GAS_LIMIT,
        call_timeout_s: float | None = CALL_TIMEOUT_S,
        max_batch_response: int = MAX_BATCH_RESPONSE,
        batch_timeout_s: float = BATCH_TIMEOUT_S,
    ) -> None:
        self._devnet = devnet
        self._monotonic = monotonic
        self.call_gas_cap = call_gas_cap
        """Most gas an ``eth_call`` or ``eth_estimateGas`` runs with, whatever it asks for."""
        self.call_timeout_s = call_timeout_s
        """Wall-time budget of one ``eth_call`` or ``eth_estimateGas`` (``None``: unbounded)."""
        self.max_batch_response = max_batch_response
        self.batch_timeout_s = batch_timeout_s
        self._filters: dict[int, _Filter] = {}
        self._filter_counter = 0
        self._filter_lock = threading.Lock()
        self._client_version = _client_version()
        self._methods: dict[str, Handler] = {
            "web3_clientVersion": lambda p: self._client_version,
            "web3_sha3": self._web3_sha3,
            "net_version": lambda p: str(devnet.chain_id),
            "net_listening": lambda p: True,
            "net_peerCount": lambda p: "0x0",
            "eth_chainId": lambda p: quantity(devnet.chain_id),
            "eth_syncing": lambda p: False,
            "eth_mining": lambda p: False,
            "eth_hashrate": lambda p: "0x0",
            "eth_coinbase": lambda p: "0x" + "00" * 20,
            "eth_accounts": lambda p: ["0x" + a.address[2:].lower() for a in devnet.accounts],
            "eth_blockNumber": lambda p: quantity(devnet.block_number),
            "eth_gasPrice": lambda p: quantity(devnet.gas_price()),
            "eth_maxPriorityFeePerGas": lambda p: quantity(PRIORITY_FEE),
            "eth_blobBaseFee": lambda p: "0x1",
            "eth_feeHistory": self._fee_history,
            "eth_getBalance": self._get_balance,
            "eth_getTransactionCount": self._get_transaction_count,
            "eth_getCode": self._get_code,
            "eth_getStorageAt": self._get_storage_at,
            "eth_call": self._call,
            "eth_estimateGas": self._estimate_gas,
            "eth_sendRawTransaction": self._send_raw_transaction,
            "eth_sendTransaction": self._send_transaction,
            "eth_signTransaction": self._sign_transaction,
            "eth_sign": self._eth_sign,
            "personal_sign": self._personal_sign,
            "eth_signTypedData_v4": self._sign_typed_data,
            "eth_getTransactionByHash": self._get_transaction_by_hash,
            "eth_getTransactionReceipt": self._get_transaction_receipt,
            "eth_getBlockByNumber": self._get_block,
            "eth_getBlockByHash": self._get_block_by_hash,
            "eth_getBlockReceipts": self._get_block_receipts,
            "eth_getBlockTransactionCountByNumber": self._block_tx_count,
            "eth_getBlockTransactionCountByHash": self._block_tx_count_by_hash,
            "eth_getTransactionByBlockNumberAndIndex": self._tx_by_block_and_index,
            "eth_getTransactionByBlockHashAndIndex": self._tx_by_hash_and_index,
            "eth_getUncleCountByBlockNumber": lambda p: "0x0",
            "eth_getUncleCountByBlockHash": lambda p: "0x0",
            "eth_getUncleByBlockNumberAndIndex": lambda p: None,
            "eth_getUncleByBlockHashAndIndex": lambda p: None,
            "eth_getLogs": self._get_logs,
            "eth_newFilter": self._new_filter,
            "eth_newBlockFilter": self._new_block_filter,
            "eth_newPendingTransactionFilter": self._new_pending_filter,
            "eth_getFilterChanges": self._get_filter_changes,
            "eth_getFilterLogs": self._get_filter_logs,
            "eth_uninstallFilter": self._uninstall_filter,
            "evm_increaseTime": self._increase_time,
            "evm_setNextBlockTimestamp": self._set_next_block_timestamp,
            "evm_mine": self._mine,
            "evm_snapshot": self._snapshot,
            "evm_revert": self._revert,
        }

    @property
    def methods(self) -> tuple[str, ...]:
        """The method names this endpoint answers, sorted."""
        return tuple(sorted(self._methods))

    # ------------------------------------------------------------------------ the envelope

    def answer_if_free(self, payload: Any) -> tuple[bool, bytes | None]:
        """``(True, answer)`` when the chain's lock could be taken without waiting and
        ``payload`` was answered under it; ``(False, None)`` when another thread holds the lock
        (nothing was run: answer it where waiting is allowed)."""
        return self._devnet.run_if_free(self.answer, payload)

    def handle_bytes(self, body: bytes) -> bytes | None:
        """Answer one HTTP body: a request or a batch. ``None`` when only notifications came."""
        try:
            payload = parse_json(body)
        except DevnetFault as fault:
            return encode_response(rpc_error(None, fault.code, str(fault)))
        return self.answer(payload)

    def answer(self, payload: Any) -> bytes | None:
        """Answer a parsed request or batch as JSON bytes (``None``: only notifications).

        A batch's answers are encoded one by one; once they pass ``max_batch_response``
        bytes, the requests left are answered -32003 without being run; once the batch has
        run for ``batch_timeout_s`` seconds, the requests left are answered -32000.
        """
        if not isinstance(payload, list) or not payload or len(payload) > MAX_BATCH:
            return encode_response(self.handle(payload))
        parts: list[bytes] = []
        size = 2
        deadline = self._monotonic() + self.batch_timeout_s
        for request in payload:
            refusal: tuple[int, str] | None = None
            if size > self.max_batch_response:
                refusal = (
                    RESPONSE_TOO_LARGE,
                    f"response too large: this batch's answers passed {self.max_batch_response}"
                    " bytes; send fewer requests per batch",
                )
            elif self._monotonic() > deadline:
                refusal = (
                    SERVER_ERROR,
                    f"batch timeout: this batch ran for more than {self.batch_timeout_s:g} s;"
                    " send fewer requests per batch",
                )
            answer: dict[str, Any] | None
            if refusal is None:
                answer = self._handle_one(request)
            elif isinstance(request, Mapping) and "id" not in request:
                continue  # a notification gets no answer, and is not run either
            else:
                ident = request.get("id") if isinstance(request, Mapping) else None
                answer = rpc_error(ident if _valid_id(ident) else None, *refusal)
            encoded = encode_response(answer)
            if encoded is not None:
                parts.append(encoded)
                size += len(encoded) + 1
        return b"[" + b",".join(parts) + b"]" if parts else None

    @staticmethod
    def is_light(payload: Any) -> bool:
        """Whether answering ``payload`` needs neither the EVM nor its lock (chain id, block
        number, client version, ...), so a server may answer it without a worker thread."""
        requests = payload if isinstance(payload, list) else [payload]
        return 0 < len(requests) <= MAX_LIGHT_BATCH and all(
            isinstance(request, Mapping)
            and isinstance(method := request.get("method"), str)  # a list is unhashable
            and method in LIGHT_METHODS
            for request in requests
        )

    @staticmethod
    def is_quick(payload: Any) -> bool:
        """Whether ``payload`` (a request or a small batch) holds only light methods and
        :data:`QUICK_READS`: cheap under the chain's lock, so worth answering in place when the
        lock is free (:meth:`answer_if_free`)."""
        requests = payload if isinstance(payload, list) else [payload]
        return 0 < len(requests) <= MAX_LIGHT_BATCH and all(
            isinstance(request, Mapping)
            and isinstance(method := request.get("method"), str)
            and (method in QUICK_READS or method in LIGHT_METHODS)
            for request in requests
        )

    def handle(self, payload: Any) -> Any:
        """Answer a parsed request (an object) or batch (an array).

        Returns the response object, the array of responses, or ``None`` if every request
        was a notification (had no ``id``).
        """
        if isinstance(payload, list):
            if not payload:
                return rpc_error(None, INVALID_REQUEST, "invalid request: empty batch")
            if len(payload) > MAX_BATCH:
                return rpc_error(None, INVALID_REQUEST, f"invalid request: batch over {MAX_BATCH}")
            answers = [self._handle_one(item) for item in payload]
            kept = [answer for answer in answers if answer is not None]
            return kept or None
        return self._handle_one(payload)

    def _handle_one(self, request: Any) -> dict[str, Any] | None:
        if not isinstance(request, Mapping):
            return rpc_error(None, INVALID_REQUEST, "invalid request: not a JSON object")
        ident = request.get("id")
        if not _valid_id(ident):
            return rpc_error(
                None,
                INVALID_REQUEST,
                "invalid request: id must be a string of at most "
                f"{MAX_ID_LENGTH} characters, a finite number between -2**64 and 2**64, or null",
            )
        notification = "id" not in request
        method = request.get("method")
        if request.get("jsonrpc") != "2.0":
            return rpc_error(ident, INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"')
        if not isinstance(method, str):
            return rpc_error(ident, INVALID_REQUEST, "invalid request: method must be a string")
        params = request.get("params")
        if params is None:
            params = []
        if not isinstance(params, list):
            return rpc_error(ident, INVALID_PARAMS, "invalid params: params must be an array")
        try:
            result = self.call(method, params)
        except DevnetFault as fault:
            return None if notification else rpc_error(ident, fault.code, str(fault), fault.data)
        except InputError as exc:
            return None if notification else rpc_error(ident, INVALID_PARAMS, str(exc))
        except ReefError as exc:
            return None if notification else rpc_error(ident, SERVER_ERROR, str(exc))
        except Exception:
            # A bug must cost one request, not the server: log it, answer -32603, keep serving.
            _log.exception("devnet: %s failed unexpectedly", method)
            return None if notification else rpc_error(ident, INTERNAL_ERROR, "internal error")
        if notification:
            return None
        return {"jsonrpc": "2.0", "id": ident, "result": result}

    def call(self, method: str, params: Sequence[Any]) -> Any:
        """Run one method with positional ``params``; return its JSON result.

        Raises:
            DevnetFault: with the JSON-RPC error code to answer.
        """
        handler = self._methods.get(method)
        if handler is None:
            raise DevnetFault(
                f"the method {method} does not exist/is not available", code=METHOD_NOT_FOUND
            )
        return handler(params)

    # ---------------------------------------------------------------------------- methods

    def _web3_sha3(self, params: Sequence[Any]) -> str:
        (value,) = _params(params, 1, 1)
        return data(keccak256(_bytes(value, "data")))

    def _fee_history(self, params: Sequence[Any]) -> dict[str, Any]:
        count_param, newest_param, percentiles = _params(params, 2, 3)
        count = _quantity(count_param, "blockCount")
        if count > 1024:
            raise _invalid("blockCount must be at most 1024")
        if percentiles is not None and (
            not isinstance(percentiles, list)
            or any(
                isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 100
                for p in percentiles
            )
            or any(a > b for a, b in itertools.pairwise(percentiles))
        ):
            raise _invalid("rewardPercentiles must be increasing numbers between 0 and 100")
        devnet = self._devnet
        newest = self._resolve_block(newest_param, "newestBlock")
        if not count:
            return {"oldestBlock": "0x0", "baseFeePerGas": [], "gasUsedRatio": []}
        oldest = max(0, newest.number - count + 1)
        blocks = [self._require(n) for n in range(oldest, newest.number + 1)]
        after = devnet.block(newest.number + 1)
        next_fee = devnet.next_base_fee() if after is None else int(after.header.base_fee_per_gas)
        result: dict[str, Any] = {
            "oldestBlock": quantity(blocks[0].number),
            "baseFeePerGas": [quantity(b.header.base_fee_per_gas) for b in blocks]
            + [quantity(next_fee)],
            "gasUsedRatio": [b.header.gas_used / b.header.gas_limit for b in blocks],
            "baseFeePerBlobGas": ["0x1"] * (len(blocks) + 1),
            "blobGasUsedRatio": [0.0] * len(blocks),
        }
        if percentiles is not None:
            result["reward"] = [_rewards(b, percentiles) for b in blocks]
        return result

    def _resolve_block(self, value: Any, name: str) -> MinedBlock:
        block = self._devnet.block(_block(value, name))
        if block is None:
            raise DevnetFault(f"header not found: {name} {value} does not exist yet")
        return block

    def _require(self, number: int) -> MinedBlock:
        block = self._devnet.block(number)
        if block is None:  # pragma: no cover - guarded by the range
            raise DevnetFault(f"block {number} disappeared")
        return block

    def _get_balance(self, params: Sequence[Any]) -> str:
        address, block = _params(params, 1, 2)
        return quantity(self._devnet.balance(_address(address), _block(block)))

    def _get_transaction_count(self, params: Sequence[Any]) -> str:
        address, block = _params(params, 1, 2)
        return quantity(self._devnet.nonce(_address(address), _block(block)))

    def _get_code(self, params: Sequence[Any]) -> str:
        address, block = _params(params, 1, 2)
        return data(self._devnet.code(_address(address), _block(block)))

    def _get_storage_at(self, params: Sequence[Any]) -> str:
        address, slot, block = _params(params, 2, 3)
        value = self._devnet.storage(_address(address), _quantity(slot, "slot"), _block(block))
        return "0x" + value.to_bytes(32, "big").hex()

    def _call(self, params: Sequence[Any]) -> str:
        return data(self._simulate(self._devnet.call, params))

    def _estimate_gas(self, params: Sequence[Any]) -> str:
        return quantity(self._simulate(self._devnet.estimate_gas, params))

    def _simulate(self, run: Callable[..., _R], params: Sequence[Any]) -> _R:
        """Run ``eth_call``/``eth_estimateGas``'s ``[tx, block?, overrides?]`` within the call
        gas cap and time budget."""
        tx, block, overrides = _params(params, 1, 3)
        if overrides:
            raise _invalid("state overrides are not supported by the reef devnet")
        return run(
            _tx_request(tx), _block(block), gas_cap=self.call_gas_cap, timeout_s=self.call_timeout_s
        )

    def _send_raw_transaction(self, params: Sequence[Any]) -> str:
        (raw,) = _params(params, 1, 1)
        return data(self._devnet.send_raw_transaction(_bytes(raw, "signed transaction")))

    def _send_transaction(self, params: Sequence[Any]) -> str:
        (tx,) = _params(params, 1, 1)
        return data(self._devnet.send_transaction(_tx_request(tx)))

    def _sign_transaction(self, params: Sequence[Any]) -> str:
        (tx,) = _params(params, 1, 1)
        return data(self._devnet.sign_transaction(_tx_request(tx)))

    def _dev_key(self, address: Any) -> bytes:
        wanted = _address(address)
        for account in self._devnet.accounts:
            if bytes.fromhex(account.address[2:]) == wanted:
                return account.private_key
        raise DevnetFault(
            f"unknown account 0x{wanted.hex()}: the devnet signs only for its dev accounts"
        )

    def _eth_sign(self, params: Sequence[Any]) -> str:
        address, message = _params(params, 2, 2)
        key = self._dev_key(address)
        signed = Account.sign_message(encode_defunct(_bytes(message, "message")), key)
        return data(bytes(signed.signature))

    def _personal_sign(self, params: Sequence[Any]) -> str:
        message, address, _password = _params(params, 2, 3)
        return self._eth_sign([address, message])

    def _sign_typed_data(self, params: Sequence[Any]) -> str:
        address, typed = _params(params, 2, 2)
        key = self._dev_key(address)
        if isinstance(typed, str):
            try:
                typed = parse_json(typed)
            except DevnetFault:
                raise _invalid("the typed data is not valid JSON") from None
        if not isinstance(typed, Mapping):
            raise _invalid("the typed data must be an EIP-712 object")
        try:
            message = encode_typed_data(full_message=dict(typed))
        except (
            AttributeError,
            IndexError,
            KeyError,
            TypeError,
            ValueError,
            ValidationError,
        ) as exc:
            # eth-account does not validate the structure first: any of these means malformed.
            raise _invalid(f"the typed data is not valid EIP-712: {exc}") from exc
        return data(bytes(Account.sign_message(message, key).signature))

    def _get_transaction_by_hash(self, params: Sequence[Any]) -> dict[str, Any] | None:
        (tx_hash,) = _params(params, 1, 1)
        found = self._devnet.transaction(_hash(tx_hash, "transaction hash"))
        if found is None:
            return None
        return transaction_json(found[0], found[1], chain_id=self._devnet.chain_id)

    def _get_transaction_receipt(self, params: Sequence[Any]) -> dict[str, Any] | None:
        (tx_hash,) = _params(params, 1, 1)
        found = self._devnet.transaction(_hash(tx_hash, "transaction hash"))
        return None if found is None else receipt_json(found[0], found[1])

    def _block_json(self, block: MinedBlock | None, full: Any) -> dict[str, Any] | None:
        if full is not None and not isinstance(full, bool):
            raise _invalid("the second parameter (full transactions) must be true or false")
        if block is None:
            return None
        return block_json(block, full=bool(full), chain_id=self._devnet.chain_id)

    def _get_block(self, params: Sequence[Any]) -> dict[str, Any] | None:
        selector, full = _params(params, 1, 2)
        if selector == "pending":
            devnet = self._devnet
            return pending_block_json(
                devnet.head,
                timestamp=devnet.next_block_timestamp(),
                base_fee=devnet.next_base_fee(),
                gas_limit=GAS_LIMIT,
            )
        return self._block_json(self._devnet.block(_block(selector)), full)

    def _get_block_by_hash(self, params: Sequence[Any]) -> dict[str, Any] | None:
        block_hash, full = _params(params, 1, 2)
        return self._block_json(self._devnet.block(_hash(block_hash, "block hash")), full)

    def _get_block_receipts(self, params: Sequence[Any]) -> list[dict[str, Any]] | None:
        (selector,) = _params(params, 1, 1)
        block = self._devnet.block(_block(selector))
        if block is None:
            return None
        return [receipt_json(block, index) for index in range(len(block.transactions))]

    def _block_tx_count(self, params: Sequence[Any]) -> str | None:
        (selector,) = _params(params, 1, 1)
        block = self._devnet.block(_block(selector))
        return None if block is None else quantity(len(block.transactions))

    def _block_tx_count_by_hash(self, params: Sequence[Any]) -> str | None:
        (block_hash,) = _params(params, 1, 1)
        block = self._devnet.block(_hash(block_hash, "block hash"))
        return None if block is None else quantity(len(block.transactions))

    def _tx_at(self, block: MinedBlock | None, index: Any) -> dict[str, Any] | None:
        position = _quantity(index, "index")
        if block is None or position >= len(block.transactions):
            return None
        return transaction_json(block, position, chain_id=self._devnet.chain_id)

    def _tx_by_block_and_index(self, params: Sequence[Any]) -> dict[str, Any] | None:
        selector, index = _params(params, 2, 2)
        return self._tx_at(self._devnet.block(_block(selector)), index)

    def _tx_by_hash_and_index(self, params: Sequence[Any]) -> dict[str, Any] | None:
        block_hash, index = _params(params, 2, 2)
        return self._tx_at(self._devnet.block(_hash(block_hash, "block hash")), index)

    # ------------------------------------------------------------------------------ logs

    def _number(self, selector: BlockSelector, name: str) -> int:
        if isinstance(selector, int):
            return selector
        block = self._devnet.block(selector)
        if block is None:
            raise DevnetFault(f"header not found: {name} does not exist")
        return block.number

    def _get_logs(self, params: Sequence[Any]) -> list[dict[str, Any]]:
        (criteria,) = _params(params, 1, 1)
        addresses, topics = _log_criteria(criteria)
        if criteria.get("blockHash") is not None:
            if criteria.get("fromBlock") is not None or criteria.get("toBlock") is not None:
                raise _invalid("give either blockHash or fromBlock/toBlock, not both")
            block = self._devnet.block(_hash(criteria["blockHash"], "blockHash"))
            if block is None:
                raise DevnetFault("unknown block: no block has that blockHash")
            first = last = block.number
        else:
            first = self._number(_block(criteria.get("fromBlock"), "fromBlock"), "fromBlock")
            last = self._number(_block(criteria.get("toBlock"), "toBlock"), "toBlock")
            if first > last:
                raise _invalid(f"fromBlock {first} is after toBlock {last}")
        entries = self._devnet.logs(
            first, last, addresses=addresses, topics=topics, limit=MAX_LOGS + 1
        )
        return [log_json(entry) for entry in _capped(entries, first, last)]

    def _add_filter(self, flt: _Filter) -> str:
        with self._filter_lock:
            self._expire_filters()
            if len(self._filters) >= MAX_FILTERS:
                raise DevnetFault(
                    f"too many filters (over {MAX_FILTERS})",
                    hint="uninstall filters you no longer poll",
                )
            self._filter_counter += 1
            self._filters[self._filter_counter] = flt
            return quantity(self._filter_counter)

    def _expire_filters(self) -> None:
        deadline = self._monotonic() - FILTER_TIMEOUT_S
        for key in [k for k, f in self._filters.items() if f.last_poll < deadline]:
            del self._filters[key]

    def _new_filter(self, params: Sequence[Any]) -> str:
        (criteria,) = _params(params, 1, 1)
        addresses, topics = _log_criteria(criteria)
        if criteria.get("blockHash") is not None:
            raise _invalid("filters take fromBlock/toBlock, not blockHash")
        from_block = _block(criteria.get("fromBlock"), "fromBlock")
        to_block = _block(criteria.get("toBlock"), "toBlock")
        return self._add_filter(
            _Filter(
                kind="logs",
                cursor=self._devnet.block_number + 1,
                last_poll=self._monotonic(),
                from_block=from_block,
                to_block=to_block,
                addresses=addresses,
                topics=topics,
            )
        )

    def _new_block_filter(self, params: Sequence[Any]) -> str:
        _params(params, 0, 0)
        return self._add_filter(_Filter("blocks", self._devnet.block_number + 1, self._monotonic()))

    def _new_pending_filter(self, params: Sequence[Any]) -> str:
        _params(params, 0, 1)
        return self._add_filter(
            _Filter("pending", self._devnet.block_number + 1, self._monotonic())
        )

    def _filter(self, ident: Any) -> tuple[int, _Filter]:
        key = _quantity(ident, "filter id")
        with self._filter_lock:
            self._expire_filters()
            flt = self._filters.get(key)
            if flt is None:
                raise DevnetFault("filter not found")
            flt.last_poll = self._monotonic()
            return key, flt

    def _filter_range(self, flt: _Filter, start: int, head: int) -> tuple[int, int]:
        first = start
        if isinstance(flt.from_block, int):
            first = max(first, flt.from_block)
        elif flt.from_block == "earliest":
            first = max(first, 0)
        last = head
        if isinstance(flt.to_block, int):
            last = min(last, flt.to_block)
        elif flt.to_block == "earliest":
            last = min(last, 0)
        return first, last

    def _get_filter_changes(self, params: Sequence[Any]) -> list[Any]:
        (ident,) = _params(params, 1, 1)
        _, flt = self._filter(ident)
        devnet = self._devnet
        with self._filter_lock:
            head = devnet.block_number
            start = min(flt.cursor, head + 1)  # a revert may have moved the head back
            flt.cursor = head + 1
        if flt.kind == "pending":
            return []
        if flt.kind == "blocks":
            return [data(self._require(n).hash) for n in range(start, head + 1)]
        first, last = self._filter_range(flt, start, head)
        if first > last:
            return []
        entries = devnet.logs(first, last, addresses=flt.addresses, topics=flt.topics)
        return [log_json(entry) for entry in entries]

    def _get_filter_logs(self, params: Sequence[Any]) -> list[dict[str, Any]]:
        (ident,) = _params(params, 1, 1)
        _, flt = self._filter(ident)
        if flt.kind != "logs":
            raise DevnetFault("filter not found: eth_getFilterLogs needs a log filter")
        first = self._number(flt.from_block, "fromBlock")
        last = self._number(flt.to_block, "toBlock")
        if first > last:
            return []
        entries = _capped(
            self._devnet.logs(
                first, last, addresses=flt.addresses, topics=flt.topics, limit=MAX_LOGS + 1
            ),
            first,
            last,
        )
        return [log_json(entry) for entry in entries]

    def _uninstall_filter(self, params: Sequence[Any]) -> bool:
        (ident,) = _params(params, 1, 1)
        key = _quantity(ident, "filter id")
        with self._filter_lock:
            return self._filters.pop(key, None) is not None

    # ---------------------------------------------------------------------- test controls

    def _seconds(self, value: Any, name: str) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return _quantity(value, name)

    def _increase_time(self, params: Sequence[Any]) -> int:
        (seconds,) = _params(params, 1, 1)
        return self._devnet.increase_time(self._seconds(seconds, "seconds"))

    def _set_next_block_timestamp(self, params: Sequence[Any]) -> None:
        (timestamp,) = _params(params, 1, 1)
        self._devnet.set_next_block_timestamp(self._seconds(timestamp, "timestamp"))
        return None

    def _mine(self, params: Sequence[Any]) -> str:
        (option,) = _params(params, 0, 1)
        blocks, timestamp = 1, None
        if isinstance(option, Mapping):  # ganache's {timestamp, blocks}
            if option.get("blocks") is not None:
                blocks = self._seconds(option["blocks"], "blocks")
            if option.get("timestamp") is not None:
                timestamp = self._seconds(option["timestamp"], "timestamp")
        elif option is not None:
            timestamp = self._seconds(option, "timestamp")
        if not 1 <= blocks <= 10_000:
            raise _invalid("blocks must be between 1 and 10000")
        for index in range(blocks):
            self._devnet.mine(timestamp if index == 0 else None)
        return "0x0"

    def _snapshot(self, params: Sequence[Any]) -> str:
        _params(params, 0, 0)
        return quantity(self._devnet.snapshot())

    def _revert(self, params: Sequence[Any]) -> bool:
        (ident,) = _params(params, 1, 1)
        return self._devnet.revert(_quantity(ident, "snapshot id"))


def _rewards(block: MinedBlock, percentiles: Sequence[float]) -> list[str]:
    """Effective tips at gas-weighted percentiles of a block's transactions (as geth)."""
    if not block.transactions:
        return ["0x0"] * len(percentiles)
    base = int(block.header.base_fee_per_gas)
    tips = sorted(
        (block.effective_gas_price(i) - base, block.gas_used_by(i))
        for i in range(len(block.transactions))
    )
    total = sum(gas for _, gas in tips)
    rewards = []
    index, cumulative = 0, tips[0][1]
    for percentile in percentiles:
        threshold = total * percentile / 100
        while cumulative < threshold and index < len(tips) - 1:
            index += 1
            cumulative += tips[index][1]
        rewards.append(quantity(tips[index][0]))
    return rewards


def encode_response(response: Any) -> bytes | None:
    """A response (or batch of them) as compact JSON bytes; ``None`` stays ``None``."""
    if response is None:
        return None
    try:
        return _ENCODER.encode(response).encode()
    except (ValueError, TypeError):
        # Something non-finite or not JSON slipped into an answer: never emit invalid JSON.
        _log.exception("devnet: an answer could not be encoded as JSON")
        ident = response.get("id") if isinstance(response, Mapping) else None
        fallback = rpc_error(ident if _valid_id(ident) else None, INTERNAL_ERROR, "internal error")
        return json.dumps(fallback, separators=(",", ":")).encode()


def rpc_error(ident: Any, code: int, message: str, payload: bytes | None = None) -> dict[str, Any]:
    """A JSON-RPC error response to the request ``ident`` (``None``: an error about no request,
    such as a body that does not parse), with ``payload`` as its ``data`` (revert data)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if payload is not None:
        error["data"] = data(payload)
    return {"jsonrpc": "2.0", "id": ident, "error": error}


def _client_version() -> str:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "unknown"

    return (
        f"reef-devnet/v{version('reef')}/py-evm-{version('py-evm')}/"
        f"python-{platform.python_version()}"
    )


def _capped(entries: list[Any], first: int, last: int) -> list[Any]:
    """``entries``, or the refusal nodes give when a query matches more than :data:`MAX_LOGS`."""
    if len(entries) <= MAX_LOGS:
        return entries
    raise DevnetFault(
        f"query returned more than {MAX_LOGS} results (blocks {first}..{last})",
        code=LIMIT_EXCEEDED,
        hint="ask for a smaller block range",
    )
