"""The devnet's vocabulary: its limits, block selectors, the records of mined blocks and logs,
transaction requests, and the faults it answers with (JSON-RPC code and data), including how
py-evm's refusals and EVM failures are put in the words Ethereum clients recognise."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from eth.exceptions import Revert
from eth_utils.exceptions import ValidationError

from reef.chain._reasons import decode_revert_data
from reef.errors import ContractRevertError, RPCError

__all__ = [
    "BLOCK_TAGS",
    "DEFAULT_BALANCE_WEI",
    "GAS_LIMIT",
    "PRIORITY_FEE",
    "BlockSelector",
    "BlockTag",
    "DevnetFault",
    "ExecutionReverted",
    "LogEntry",
    "MinedBlock",
    "TxRequest",
    "execution_error",
    "rejection",
    "revert_reason",
]

DEFAULT_BALANCE_WEI: Final = 10_000 * 10**18
"""Each dev account's genesis balance: 10 000 ETH, as hardhat and anvil give."""

GAS_LIMIT: Final = 30_000_000
PRIORITY_FEE: Final = 10**9
"""The tip the devnet suggests (``eth_maxPriorityFeePerGas``): 1 gwei."""

BlockTag = Literal["latest", "earliest", "pending", "safe", "finalized"]
BLOCK_TAGS: Final = ("latest", "earliest", "pending", "safe", "finalized")
BlockSelector = int | str | bytes
"""A block number, a tag (``latest``, ``earliest``, ``pending``, ``safe``, ``finalized``) or a
32-byte block hash."""


class DevnetFault(RPCError):
    """An error the devnet answers as a JSON-RPC error object (``code``, optional ``data``)."""

    def __init__(
        self,
        message: str,
        *,
        code: int = -32000,
        data: bytes | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.data = data


class ExecutionReverted(DevnetFault, ContractRevertError):
    """The EVM reverted: JSON-RPC code 3 with the revert data, as geth answers."""

    def __init__(self, data: bytes, reason: str) -> None:
        message = f"execution reverted: {reason}" if reason else "execution reverted"
        DevnetFault.__init__(self, message, code=3, data=data)
        self.reason = reason


def revert_reason(data: bytes) -> str:
    """The text of an ``Error(string)`` revert, or a description of a ``Panic(uint256)``
    (``""`` for other or malformed data)."""
    reason = decode_revert_data(data)
    if isinstance(reason, int):
        return f"panic code 0x{reason:x}"
    return reason or ""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One event log, placed in the chain."""

    block_number: int
    block_hash: bytes
    transaction_hash: bytes
    transaction_index: int
    log_index: int
    address: bytes
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class MinedBlock:
    """A block of the devnet with what the RPC layer needs to describe it."""

    header: Any
    transactions: tuple[Any, ...]
    receipts: tuple[Any, ...]
    senders: tuple[bytes, ...]
    size: int
    logs: tuple[tuple[LogEntry, ...], ...] = ()

    @property
    def number(self) -> int:
        return int(self.header.block_number)

    @property
    def hash(self) -> bytes:
        return bytes(self.header.hash)

    @property
    def timestamp(self) -> int:
        return int(self.header.timestamp)

    def gas_used_by(self, index: int) -> int:
        cumulative = self.receipts[index].gas_used
        previous = self.receipts[index - 1].gas_used if index else 0
        return int(cumulative - previous)

    def effective_gas_price(self, index: int) -> int:
        tx = self.transactions[index]
        if tx.type_id in (2, 3, 4):
            base = int(self.header.base_fee_per_gas)
            return min(int(tx.max_fee_per_gas), base + int(tx.max_priority_fee_per_gas))
        return int(tx.gas_price)

    def contract_address(self, index: int) -> bytes | None:
        from eth._utils.address import generate_contract_address

        tx = self.transactions[index]
        if tx.to:
            return None
        sender: Any = self.senders[index]
        return bytes(generate_contract_address(sender, tx.nonce))


@dataclass(frozen=True, kw_only=True)
class TxRequest:
    """A transaction or call as an RPC client describes it; absent fields are ``None``."""

    sender: bytes | None = None
    to: bytes | None = None
    gas: int | None = None
    gas_price: int | None = None
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    value: int = 0
    data: bytes = b""
    nonce: int | None = None
    type: int | None = None
    access_list: tuple[tuple[bytes, tuple[int, ...]], ...] | None = None
    chain_id: int | None = None


def execution_error(error: BaseException | None, output: bytes, gas: int) -> DevnetFault:
    if isinstance(error, Revert):
        return ExecutionReverted(output, revert_reason(output))
    name = type(error).__name__ if error is not None else "error"
    if name == "OutOfGas":
        return DevnetFault(f"gas required exceeds allowance ({gas})")
    detail = str(error) if error is not None and str(error) else name
    return DevnetFault(f"execution failed: {detail}")


# py-evm names a sender by its bytes' repr (``Sender b'wl)\x82sec…'``): no one can match that to
# an account of theirs.
_SENDER_BYTES: Final = re.compile(r"""Sender (b'(?:[^'\\]|\\.)*'|b"(?:[^"\\]|\\.)*")""")


def _sender_as_address(found: re.Match[str]) -> str:
    try:
        raw = ast.literal_eval(found[1])
    except (ValueError, SyntaxError):
        return found[0]
    return f"sender 0x{raw.hex()}" if isinstance(raw, bytes) and len(raw) == 20 else found[0]


def rejection(exc: ValidationError) -> DevnetFault:
    """Say why py-evm refused a transaction in the words Ethereum clients recognise."""
    text = _SENDER_BYTES.sub(_sender_as_address, str(exc))
    lowered = text.lower()
    if "nonce" in lowered and "maximum" in lowered:
        return DevnetFault(f"nonce has max value: {text}")
    if "nonce" in lowered and "expected" in lowered:
        # py-evm: "Invalid transaction nonce: Expected 2, but got 0"
        numbers = [int(part) for part in text.replace(",", " ").split() if part.isdigit()]
        if len(numbers) >= 2 and numbers[1] < numbers[0]:
            return DevnetFault(f"nonce too low: next nonce {numbers[0]}, tx nonce {numbers[1]}")
        if len(numbers) >= 2:
            return DevnetFault(
                f"nonce too high: next nonce {numbers[0]}, tx nonce {numbers[1]}",
                hint="the devnet mines each transaction at once and keeps no queue",
            )
    if "balance" in lowered or "funds" in lowered:
        return DevnetFault(f"insufficient funds for gas * price + value: {text}")
    if "intrinsic" in lowered or "cannot be negative" in lowered:
        return DevnetFault(f"intrinsic gas too low: {text}")
    if "gas limit" in lowered or "exceeds" in lowered:
        return DevnetFault(f"exceeds block gas limit: {text}")
    if "base fee" in lowered or "max fee" in lowered:
        return DevnetFault(f"max fee per gas less than block base fee: {text}")
    return DevnetFault(f"invalid transaction: {text}")
