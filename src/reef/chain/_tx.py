"""Sending transactions and calls through web3.py, with reef's errors instead of web3's.

One :class:`Transactor` per client holds the provider, the sending account and an optional
progress callback. It signs locally with an eth-account ``LocalAccount`` (the node never sees
the key) or, given a plain address, lets the node sign (``eth_sendTransaction``, for dev nodes
with unlocked accounts). Every transaction is simulated first (``eth_estimateGas``), so a revert
is reported with the contract's reason before anything is sent; the gas limit then gets a
margin because settlement cost depends on the block time. Failures are translated at this one
boundary: reverts into :class:`~reef.errors.ContractRevertError` (with the reason and a hint),
transport and node errors into :class:`~reef.errors.RPCError`. A receipt is the node's word on
what a transaction did, so it is checked before it is believed: it must be the sent
transaction's (a node replaying an earlier success would have the command report that one's
events), with a block, a status of 0 or 1, the gas used and a list of logs; anything else is an
:class:`~reef.errors.RPCError`, not a traceback.

web3.py is the reference Python Ethereum client and works with any JSON-RPC endpoint and with
eth-tester in process; this module is the only place that knows its exception types. eth-tester's
own types are looked up only when eth-tester is loaded (see :func:`_error_types`): importing it
pulls in py-evm, about a second that a client of a remote chain should not pay.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import requests
from eth_account.signers.local import LocalAccount
from eth_utils.exceptions import ValidationError as NodeValidationError
from web3 import Web3
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import (
    BadFunctionCallOutput,
    ContractLogicError,
    MethodUnavailable,
    TimeExhausted,
    Web3Exception,
    Web3RPCError,
    Web3ValidationError,
)
from web3.types import TxParams, TxReceipt

from reef.chain._reasons import decode_revert_data, hint_for
from reef.chain._types import Address, parse_address
from reef.errors import ChainError, ContractRevertError, InputError, MisuseError, RPCError

__all__ = [
    "Hints",
    "ProgressCallback",
    "Sender",
    "Transactor",
    "TxProgress",
    "TxResult",
    "decode_revert_reason",
    "translate_errors",
]

EventT = TypeVar("EventT")
_T = TypeVar("_T")

Sender = LocalAccount | str | None
"""Who sends: a local account (signs in process), an address the node signs for, or nobody
(read-only; ``w3.eth.default_account`` is used if set)."""

_REVERT_PREFIXES = (
    "execution reverted: ",
    "VM Exception while processing transaction: reverted with reason string ",
    "VM Exception while processing transaction: revert ",
)


@dataclass(frozen=True)
class TxProgress:
    """One step of a transaction: ``sending`` (simulated, about to send), ``sent``, ``mined``."""

    stage: Literal["sending", "sent", "mined"]
    description: str
    tx_hash: str | None = None
    block_number: int | None = None


ProgressCallback = Callable[[TxProgress], None]


@dataclass(frozen=True, kw_only=True)
class TxResult(Generic[EventT]):
    """A mined, successful transaction and the events of the contract it called."""

    tx_hash: str
    block_number: int
    gas_used: int
    events: tuple[EventT, ...] = ()

    def first(self, cls: type[_T]) -> _T:
        """The first event of type ``cls`` (or a subclass) the transaction emitted.

        For an event the contract logs in every successful call of the function sent (the new
        job's ``JobOpened``, the new ask's ``AskCreated``).

        Raises:
            ChainError: naming the event and the transaction, when it emitted none.
        """
        for event in self.events:
            if isinstance(event, cls):
                return event
        raise ChainError(
            f"transaction {self.tx_hash} emitted no {cls.__name__} event",
            hint="a result carries only the events of the contract its client was made for"
            " (and none for a client that decodes no events)",
        )


def decode_revert_reason(data: bytes) -> str | None:
    """The reason string of ``Error(string)`` revert data (``Panic`` codes as ``panic 0x..``);
    ``None`` for other or malformed data (the node's message is used then)."""
    reason = decode_revert_data(data)
    if isinstance(reason, int):
        return f"panic 0x{reason:02x}"
    return reason


def _reason_from(exc: BaseException) -> str:
    """Best-effort revert reason of a web3 or eth-tester revert exception."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x") and len(data) > 10:
        try:
            decoded = decode_revert_reason(bytes.fromhex(data[2:]))
        except ValueError:
            decoded = None
        if decoded is not None:
            return decoded
    message = getattr(exc, "message", None) or (str(exc.args[0]) if exc.args else "")
    if isinstance(message, bytes):
        message = message.decode("utf-8", errors="replace")
    for prefix in _REVERT_PREFIXES:
        if message.startswith(prefix):
            return message[len(prefix) :].strip("'")
    if message.strip() in (
        "execution reverted",
        "VM Exception while processing transaction: revert",
    ):
        return ""
    return message


def _node_message(exc: Exception) -> str:
    """The message of a node's JSON-RPC error (web3.py's text is the whole error object's
    repr), else the exception's text."""
    response = getattr(exc, "rpc_response", None)
    error = response.get("error") if isinstance(response, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return str(exc)


def _error_types() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """The exception types that mean "reverted" and those that mean "the node refused it".

    eth-tester's own types are among them only when eth-tester is loaded: an exception of a class
    exists only once its module was imported, so without eth-tester in ``sys.modules`` there is
    nothing of it to translate (and no reason to pay for importing it).
    """
    reverts: tuple[type[Exception], ...] = (ContractLogicError,)
    refusals: tuple[type[Exception], ...] = (Web3RPCError, NodeValidationError)
    tester = sys.modules.get("eth_tester.exceptions")
    if tester is not None:
        reverts += (tester.TransactionFailed,)
        refusals += (tester.ValidationError,)
    return reverts, refusals


Hints = Callable[[str], str | None]
"""What to do about a contract's revert reason, or ``None`` when the reason says it all."""


def _revert_error(description: str, reason: str, hints: Hints) -> ContractRevertError:
    if reason:
        return ContractRevertError(
            f"{description} reverted: {reason}", hint=hints(reason), reason=reason
        )
    return ContractRevertError(
        f"{description} reverted without a reason",
        hint="an argument may be out of the contract's bounds (e.g. a string too long), or the "
        "address may hold another contract than the one meant: check it",
        reason="",
    )


@contextmanager
def translate_errors(
    description: str, address: str | None = None, *, hints: Hints = hint_for
) -> Iterator[None]:
    """Translate web3 / eth-tester / transport exceptions raised inside into reef errors; a
    revert's hint comes from ``hints``, the contract's own (the market's and token's by
    default)."""
    reverts, refusals = _error_types()
    try:
        yield
    except reverts as exc:
        raise _revert_error(description, _reason_from(exc), hints) from exc
    except BadFunctionCallOutput as exc:
        where = f" at {address}" if address else ""
        if "could not decode" in str(exc).lower():
            # web3.py's words when return data came but not in the ABI's shape: a contract is
            # there, of another version than the ABI reef holds.
            raise ChainError(
                f"{description}: the contract{where} answered in a shape this reef's ABI does "
                "not read",
                hint="the contract may be of another reef version: redeploy it with this "
                "version (reef up --fresh on a devnet), or use the reef that deployed it",
            ) from exc
        raise ChainError(
            f"{description}: no contract answered{where}",
            hint="check the contract address and the chain (was the devnet restarted fresh?)",
        ) from exc
    except TimeExhausted as exc:
        raise RPCError(
            f"{description}: the transaction was not mined in time",
            hint="check that the node is mining; the transaction may still be mined later",
        ) from exc
    except Web3ValidationError as exc:
        raise InputError(f"{description}: invalid argument: {exc}") from exc
    except refusals as exc:
        # eth-tester raises validation errors directly; JSON-RPC nodes answer with an error
        # object, each in its own case: geth's "insufficient funds for gas * price + value",
        # anvil's "Insufficient funds for gas * price + value".
        text = _node_message(exc)
        hint = None
        if "afford" in text.lower() or "insufficient funds" in text.lower():
            hint = "the sending account needs ETH for gas (the devnet funds its dev accounts)"
        elif "nonce" in text.lower():
            hint = "another transaction from this account may be in flight; retry"
        raise RPCError(f"{description}: the node refused: {text}", hint=hint) from exc
    except (Web3Exception, requests.RequestException, OSError) as exc:
        raise RPCError(
            f"{description}: the JSON-RPC endpoint failed: {exc}",
            hint="check that the node is running and the RPC URL is right",
        ) from exc


_LYING_NODE = "the JSON-RPC node answered what no chain holds: use a node you trust (--rpc)"


def _bad_receipt(description: str, problem: object) -> RPCError:
    return RPCError(
        f"{description}: the node answered a malformed receipt ({problem})"[:400],
        hint=_LYING_NODE,
    )


def _checked_receipt(description: str, tx_hash: str, receipt: Any) -> tuple[int, int]:
    """The block and status of ``receipt``, checked to be the receipt of ``tx_hash``.

    Raises:
        RPCError: it is another transaction's, or lacks (or garbles) its block, status, gas
            used or logs.
    """
    try:
        sent = receipt["transactionHash"]
        answered = sent if isinstance(sent, str) else Web3.to_hex(sent)
        block, status = int(receipt["blockNumber"]), int(receipt["status"])
        int(receipt["gasUsed"])
        logs = receipt["logs"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _bad_receipt(description, repr(exc)) from exc
    if answered.lower() != tx_hash.lower():
        raise RPCError(
            f"{description}: the node answered the receipt of another transaction "
            f"({answered[:80]}) for {tx_hash}",
            hint=_LYING_NODE,
        )
    if status not in (0, 1) or block < 0 or not isinstance(logs, (list, tuple)):
        raise _bad_receipt(description, f"status {status}, block {block}")
    return block, status


@contextmanager
def _node_answers(description: str) -> Iterator[None]:
    """Inside :func:`translate_errors`: what web3.py raises when it cannot read the node's
    answer (text that is not hex, null, an object, an ABI string longer than any memory: a
    ValueError, TypeError or OverflowError) becomes an :class:`~reef.errors.RPCError`; web3.py's
    and eth-tester's own errors pass on to :func:`translate_errors`."""
    reverts, refusals = _error_types()
    theirs: tuple[type[Exception], ...] = (*reverts, *refusals, Web3Exception)
    try:
        yield
    except theirs:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise RPCError(
            f"{description}: the node answered a malformed result ({exc})"[:400],
            hint=_LYING_NODE,
        ) from exc


class Transactor:
    """Sends transactions for one account and reports progress; see the module docstring.

    Args:
        w3: any web3 provider (HTTP URL, eth-tester in process, ...).
        account: a ``LocalAccount`` to sign with, an address the node signs for, or ``None``.
        progress: called at each stage of each transaction.
        receipt_timeout_s: how long to wait for a transaction to be mined.
        hints: what to advise for a revert reason of the contracts it calls.
    """

    def __init__(
        self,
        w3: Web3,
        account: Sender = None,
        *,
        progress: ProgressCallback | None = None,
        receipt_timeout_s: float = 120.0,
        hints: Hints = hint_for,
    ) -> None:
        self.w3 = w3
        self.hints = hints
        self._local = account if isinstance(account, LocalAccount) else None
        if isinstance(account, LocalAccount):
            self._sender: Address | None = Address(account.address)
        elif isinstance(account, str):
            self._sender = parse_address(account, name="sending account")
        else:
            self._sender = None
        self.progress = progress
        self.receipt_timeout_s = receipt_timeout_s
        self._chain_id: int | None = None

    @property
    def has_sender(self) -> bool:
        """Whether this transactor was given an account (no fallback to web3's default)."""
        return self._sender is not None

    @property
    def sender(self) -> Address:
        """The address transactions are sent from.

        Raises:
            MisuseError: when the client was made without an account and web3 has no default.
        """
        if self._sender is not None:
            return self._sender
        default = self.w3.eth.default_account
        if isinstance(default, str) and Web3.is_address(default):
            return Address(Web3.to_checksum_address(default))
        raise MisuseError(
            "this client has no account to send transactions from",
            hint="pass account=LocalAccount (or a node-managed address) when creating it",
        )

    def chain_id(self) -> int:
        if self._chain_id is None:
            with translate_errors("eth_chainId"):
                self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    def _report(self, progress: TxProgress) -> None:
        if self.progress is not None:
            self.progress(progress)

    def call(self, fn: ContractFunction, description: str) -> Any:
        """Run a view function (``eth_call``) and return its decoded result."""
        params: TxParams = {}
        if self._sender is not None:
            params["from"] = self._sender
        with (
            translate_errors(description, fn.address, hints=self.hints),
            _node_answers(description),
        ):
            return fn.call(params)

    def send(
        self, fn: ContractFunction | ContractConstructor, description: str
    ) -> tuple[str, TxReceipt]:
        """Simulate, send and wait for ``fn``; returns the hash and the (successful) receipt.

        Raises:
            ContractRevertError: the simulation or the mined transaction reverted.
            RPCError: the node failed or did not mine the transaction in time.
        """
        sender = self.sender
        address = getattr(fn, "address", None)
        with translate_errors(description, address, hints=self.hints), _node_answers(description):
            # Against the pending block, the one the transaction will be mined in: anvil
            # estimates "latest" at that block's timestamp, which stands still while no
            # transaction comes, so a rate lock that has ended on the wall clock still reverted.
            try:
                gas = fn.estimate_gas({"from": sender}, block_identifier="pending")
            except MethodUnavailable:  # eth-tester estimates at no block but its own
                gas = fn.estimate_gas({"from": sender})
            # Margin: the cost of a settlement depends on the block time (a zero charge skips
            # the token transfer), which may differ between simulation and mining.
            params: TxParams = {"from": sender, "gas": int(gas * 1.2) + 60_000}
            self._report(TxProgress("sending", description))
            if self._local is not None:
                params["nonce"] = self.w3.eth.get_transaction_count(
                    Web3.to_checksum_address(sender), "pending"
                )
                params["chainId"] = self.chain_id()
                tx = fn.build_transaction(params)
                signed = self._local.sign_transaction(tx)  # type: ignore[arg-type]
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            else:
                tx_hash = fn.transact(params)
            hex_hash = Web3.to_hex(tx_hash)
            self._report(TxProgress("sent", description, tx_hash=hex_hash))
            try:
                receipt = self.w3.eth.wait_for_transaction_receipt(
                    tx_hash, timeout=self.receipt_timeout_s, poll_latency=0.05
                )
            except (ValueError, TypeError) as exc:  # web3.py could not format what it got
                raise _bad_receipt(description, exc) from exc
        block, status = _checked_receipt(description, hex_hash, receipt)
        if status != 1:
            raise _revert_error(description, self._replay_reason(params, fn, block), self.hints)
        self._report(TxProgress("mined", description, tx_hash=hex_hash, block_number=block))
        return hex_hash, receipt

    def _replay_reason(
        self, params: TxParams, fn: ContractFunction | ContractConstructor, block: int
    ) -> str:
        """Why a mined transaction failed: re-run it as a call on the state before its block."""
        reverts, _ = _error_types()
        try:
            tx = fn.build_transaction(params)
            self.w3.eth.call(tx, block_identifier=max(block - 1, 0))
        except reverts as exc:
            return _reason_from(exc)
        except (Web3Exception, requests.RequestException, OSError, ValueError):
            return ""  # the replay is best effort: the revert itself is already certain
        return ""
