"""The devnet's execution: an EVM chain in this process whose blocks follow the wall clock.

Engine choice: py-evm, the EVM eth-tester wraps, driven directly through its ``MiningChain``.
eth-tester's ``PyEVMBackend`` was the first candidate, but it hard-codes chain id
131277322940537 (wallets and ethers then do not recognise a dev chain; reef uses hardhat's and
anvil's 31337), draws each block's ``prevrandao`` from ``os.urandom`` (so a journal of
transactions could not be replayed into the same block hashes), stamps blocks at the previous
timestamp + 1 s, and its snapshots re-import blocks through py-evm's reorg code. pyrevm (Rust
revm, PyPI 0.3.7) was measured as a faster engine and refused: its calls neither charge gas nor
bump nonces, accounts and slots stay warm from one transaction to the next (EIP-2929 gas then
differs from every real chain's), and its state cannot be read at past blocks or saved.
:class:`Chain` keeps eth-tester's shape (one ``MiningChain``, post-merge genesis, constant 30M
gas limit) and adds:

- **one block per transaction** (automine), mined at the **wall-clock** time: before each block
  the pending header is stamped ``max(now + offset, parent + 1)``, so per-second billing sees
  real seconds. Ethereum requires strictly increasing timestamps, so a burst of transactions in
  one second runs the chain's clock ahead by a second per block; it falls back to the wall
  clock once the burst ends.
- the test controls hardhat and anvil offer: ``increase_time`` (an offset added to the wall
  clock), ``set_next_block_timestamp``, ``mine``, ``snapshot``/``revert``;
- its own index of blocks, transactions and logs (py-evm's transaction index keeps stale entries
  after a revert, and reading receipts back out of tries is slow);
- strict validation py-evm leaves to the node: the chain id of signed transactions (py-evm
  accepts a transaction signed for any chain), a tip above the fee cap, the signature (recovered
  up front, so a bad one is a refusal rather than a failure deep in py-evm), blob transactions
  (refused), duplicates, 64-bit timestamps.

Execution knows nothing of files: what must be kept (blocks, clock changes) goes to a
:class:`Recorder`, which :class:`reef.chain.devnet.Devnet` implements with its journal. A
recorder that fails to write makes the block that caused it undone.

Every public method takes one re-entrant lock, so threads (the JSON-RPC server runs requests in
worker threads) see the EVM one operation at a time.

Speed (issue 14): a transfer costs about 1 ms of CPU in process, a ``jobDeposit`` 2.9 ms and an
``eth_call`` 0.3 ms, most of it py-evm's interpreter and signature recovery. Each chain runs
py-evm with state classes that remember trie nodes, accounts and slots from block to block and
write a block's changes into the tries in one batched update (:mod:`reef.chain.devnet._state`
over :mod:`reef.chain.devnet._trie`), and with an interpreter that makes fewer Python calls an
opcode (:mod:`reef.chain.devnet._vm`, whose VM class the chain runs). What this module adds
around py-evm is kept out of that path: one VM per block and no re-validation of the block just
built (:meth:`Chain._mine`, which also writes the block's one-leaf transaction and receipt tries
directly and copies the header once), the block's database entries written directly
(:meth:`Chain._persist_block`), headers from a template (:meth:`Chain._next_header`), one
signature recovery per transaction (coincurve called directly for a signature in eth_keys'
ranges, eth_keys' own path for any other: ~1.11 -> ~1.06 ms a transfer), eth-hash on its C
backend, a cached header and a reused VM
for calls (:meth:`Chain._simulate`), and receipts read without the lock. Blocks stay byte for
byte what py-evm's ``mine_block`` makes, and the database what py-evm's ``persist_block`` leaves
(the tests pin a known chain's hashes, and compare blocks, answers and whole databases with
plain py-evm's), so journals written before keep replaying.

One module (about 1150 lines): the chain's execution (blocks, transactions, receipts, logs,
state at a block, the clock and the test controls) shares one lock and one VM; persistence and
the JSON-RPC surface live elsewhere.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, Protocol, TypeVar

import rlp
from coincurve import PublicKey
from eth.chains.base import MiningChain
from eth.constants import (
    BLANK_ROOT_HASH,
    GENESIS_PARENT_HASH,
    POST_MERGE_DIFFICULTY,
    POST_MERGE_MIX_HASH,
    POST_MERGE_NONCE,
)
from eth.db.atomic import AtomicDB
from eth.db.backends.memory import MemoryDB
from eth.db.chain import BlockDataKey
from eth.db.chain_gaps import GAP_WRITES, GENESIS_CHAIN_GAPS, GapChange, fill_gap
from eth.db.schema import SchemaV1
from eth.rlp.sedes import chain_gaps
from eth.vm.forks.london.headers import calculate_expected_base_fee_per_gas
from eth.vm.forks.prague import PragueVM
from eth.vm.forks.prague.headers import calc_excess_blob_gas_prague
from eth_account import Account
from eth_bloom.bloom import BloomFilter
from eth_hash.auto import keccak as _shared_keccak
from eth_hash.backends.pysha3 import PySha3Backend
from eth_utils.address import to_checksum_address
from eth_utils.exceptions import ValidationError
from rlp.sedes import big_endian_int, binary
from rlp.sedes.serializable import BaseSerializable

from reef.chain.devnet._accounts import DEV_MNEMONIC, DEVNET_CHAIN_ID, DevAccount, dev_accounts
from reef.chain.devnet._exec import call_on, estimate_on
from reef.chain.devnet._trie import (
    NodeCache,
    encode_bytes,
    encode_list,
    encode_receipt,
    one_item_trie,
)
from reef.chain.devnet._types import (
    BLOCK_TAGS,
    DEFAULT_BALANCE_WEI,
    GAS_LIMIT,
    PRIORITY_FEE,
    BlockSelector,
    DevnetFault,
    ExecutionReverted,
    LogEntry,
    MinedBlock,
    TxRequest,
    rejection,
)
from reef.chain.devnet._vm import vm_class
from reef.crypto import SECP256K1_N, keccak256
from reef.errors import ChainError, ConfigError, InputError

__all__ = ["Chain", "Recorder"]

_T = TypeVar("_T")
_P = ParamSpec("_P")

MAX_TIMESTAMP: Final = 2**64 - 1
"""Block timestamps are 64-bit in Ethereum's header."""
_BLOB_TX_TYPE: Final = 3
_RANDAO_DOMAIN: Final = b"reef devnet prevrandao"

# py-evm and py-trie hash every trie node, header and transaction through eth-hash's shared
# ``keccak``, whose automatic backend is pycryptodome: five to seven microseconds a call, about
# 30 calls a transaction, 6 % of the devnet's work. Its pysha3 backend (safe-pysha3, what
# reef.crypto hashes with) computes the same digests in one; ``hasher`` is the attribute
# eth-hash itself replaces once it has chosen a backend (an instance attribute typed as the
# method it starts as, hence setattr).
setattr(_shared_keccak, "hasher", PySha3Backend().keccak256)  # noqa: B010


class Recorder(Protocol):
    """Where a chain puts what must outlive the process (a journal), entry by entry.

    Entries are JSON objects: ``{"kind": "block", ...}`` for each block mined and
    ``{"kind": "clock", ...}`` for each change of the clock controls.
    """

    @property
    def position(self) -> int:
        """A mark :meth:`truncate` can go back to (the journal's size)."""
        ...

    def record(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Keep ``entries`` durably before returning.

        Raises:
            OSError: if they could not be kept (the chain then undoes what they describe).
        """
        ...

    def truncate(self, position: int) -> None:
        """Forget every entry recorded after ``position`` (a snapshot was reverted)."""
        ...


class _DevChain(MiningChain):
    """py-evm's mining chain at Prague, with a constant gas limit (as eth-tester keeps it)."""

    chain_id = DEVNET_CHAIN_ID
    vm_configuration: Any = ((0, PragueVM),)

    def create_header_from_parent(self, parent_header: Any, **header_params: Any) -> Any:
        header_params["gas_limit"] = parent_header.gas_limit
        return super().create_header_from_parent(parent_header, **header_params)


def _chain_class(chain_id: int, nodes: NodeCache) -> Any:
    """A chain class of its own for one :class:`Chain`: its id, and a VM whose state reads
    and writes trie nodes through ``nodes`` (see :mod:`reef.chain.devnet._vm`)."""
    return type(
        "_DevChainWithCache",
        (_DevChain,),
        {"chain_id": chain_id, "vm_configuration": ((0, vm_class(nodes)),)},
    )


@dataclass(frozen=True)
class _Snapshot:
    number: int
    offset: int
    next_timestamp: int | None
    position: int | None
    """The recorder's position when the snapshot was taken."""


def _recover_sender(tx: Any) -> None:
    """Set ``tx.sender`` as py-evm's ``extract_transaction_sender`` would, with fewer calls.

    py-evm goes through eth_keys (a validated Signature, its backend, a validated PublicKey):
    ~20 us of wrapping around coincurve's ~60 us recovery. For a signature inside the ranges
    eth_keys accepts, this is the same coincurve call on the same bytes and the same hash, and
    the address is the key's keccak; anything else (or a recovery coincurve refuses) goes to
    ``tx.sender`` itself, which raises eth_keys' errors.
    """
    key = None
    try:
        r, s, parity = tx.r, tx.s, tx.y_parity
        # eth_keys takes a signature's r and s below the group order and a parity of 0 or 1.
        if 0 <= r < SECP256K1_N and 0 <= s < SECP256K1_N and parity in (0, 1):
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes((parity,))
            digest = _shared_keccak(tx.get_message_for_signing())
            key = PublicKey.from_signature_and_message(signature, digest, hasher=None)
    except Exception:
        key = None
    if key is None:
        _ = tx.sender
        return
    # SignedTransactionMethods.sender is a cached_property: its value lives in the instance.
    tx.__dict__["sender"] = _shared_keccak(key.format(compressed=False)[1:])[12:]


class Chain:
    """An in-process EVM chain for development: wall-clock blocks, dev accounts, test controls.

    The execution half of :class:`reef.chain.devnet.Devnet` (which adds ``$REEF_HOME``, the
    journal and reef's contracts); on its own, a chain kept in memory only.

    Args:
        chain_id: the EIP-155 chain id (hardhat's and anvil's 31337 by default).
        accounts: how many dev accounts to derive from ``mnemonic`` and fund at genesis.
        balance_wei: each dev account's genesis balance.
        mnemonic: the BIP-39 phrase of the dev accounts.
        clock: the wall clock, in seconds since the epoch (a parameter so tests can move it).
        genesis_timestamp: the genesis block's timestamp; the clock's now by default.

    Raises:
        InputError: for an invalid account count, balance or chain id.
    """

    def __init__(
        self,
        *,
        chain_id: int = DEVNET_CHAIN_ID,
        accounts: int = 10,
        balance_wei: int = DEFAULT_BALANCE_WEI,
        mnemonic: str = DEV_MNEMONIC,
        clock: Callable[[], float] = time.time,
        genesis_timestamp: int | None = None,
    ) -> None:
        if not 1 <= chain_id < 2**63:
            raise InputError(f"the chain id must be between 1 and 2**63-1, got {chain_id}")
        if not 0 <= balance_wei < 2**256:
            raise InputError("the dev account balance must fit in 256 bits")
        self._lock = threading.RLock()
        self._clock = clock
        self._mnemonic = mnemonic
        self._balance_wei = balance_wei
        self._accounts = dev_accounts(accounts, mnemonic=mnemonic)
        self._keys = {bytes.fromhex(a.address[2:]): a for a in self._accounts}
        self._offset = 0
        self._next_timestamp: int | None = None
        self._snapshots: dict[int, _Snapshot] = {}
        self._snapshot_counter = 0
        self._recorder: Recorder | None = None
        self._header_template: Any = None
        """A header py-evm made for a new block: see :meth:`_next_header`."""
        self._call_header: tuple[tuple[bytes, int], Any] | None = None
        """The header calls at a tag last ran in, keyed by (head hash, timestamp)."""
        self._idle_call_vm: tuple[tuple[bytes, int], Any] | None = None
        """A VM calls at a tag ran on (its state reverted after each), by the same key: the
        next call with that key takes it (see :meth:`_call_setup`)."""

        self._chain_id = chain_id
        timestamp = int(clock()) if genesis_timestamp is None else genesis_timestamp
        params: dict[str, Any] = {
            "coinbase": b"\x00" * 20,
            "difficulty": POST_MERGE_DIFFICULTY,
            "extra_data": b"",
            "gas_limit": GAS_LIMIT,
            "mix_hash": POST_MERGE_MIX_HASH,
            "nonce": POST_MERGE_NONCE,
            "receipt_root": BLANK_ROOT_HASH,
            "timestamp": timestamp,
            "transaction_root": BLANK_ROOT_HASH,
        }
        state: dict[bytes, Any] = {
            address: {"balance": balance_wei, "nonce": 0, "code": b"", "storage": {}}
            for address in self._keys
        }
        self._nodes = NodeCache()
        self._chain: Any = _chain_class(chain_id, self._nodes).from_genesis(
            AtomicDB(), params, state
        )
        self._index()

    def _index(self) -> None:
        """(Re)build the block, transaction and log indexes from py-evm's canonical chain."""
        chain = self._chain
        self._blocks: list[MinedBlock] = []
        self._numbers: dict[bytes, int] = {}
        self._tx_index: dict[bytes, tuple[int, int]] = {}
        self._logs: list[LogEntry] = []
        self._log_blocks: list[int] = []
        self._idle_call_vm = None  # a VM over the chain's previous database
        self._gap_records: dict[bytes, tuple[bytes, Any]] = {}
        """The chain gaps records last read or written, by key: (encoding, decoded)."""
        self._read_state: tuple[bytes, Any] | None = None
        """The state reads at a block last used, by that block's hash (see :meth:`_state`)."""
        head = chain.get_canonical_head()
        for number in range(int(head.block_number) + 1):
            block = chain.get_canonical_block_by_number(number)
            self._record(block, tuple(block.get_receipts(chain.chaindb)))
        chain.header = chain.create_header_from_parent(head)

    def _adopt_database(self, database: dict[bytes, bytes]) -> None:
        """Run on a py-evm database restored from a checkpoint instead of the genesis one."""
        self._chain = _chain_class(self._chain_id, self._nodes)(AtomicDB(MemoryDB(database)))
        self._index()

    def _database(self) -> dict[bytes, bytes]:
        """py-evm's whole key-value store (for a checkpoint; the caller holds the lock)."""
        database: dict[bytes, bytes] = self._chain.chaindb.db.wrapped_db.kv_store
        return database

    def _genesis_entry(self) -> dict[str, Any]:
        """What a journal needs to create this chain again: its genesis parameters and hash."""
        return {
            "kind": "genesis",
            "chain_id": self._chain_id,
            "timestamp": self._blocks[0].timestamp,
            "accounts": len(self._accounts),
            "balance_wei": str(self._balance_wei),
            "mnemonic": self._mnemonic,
            "hash": "0x" + self._blocks[0].hash.hex(),
        }

    # ------------------------------------------------------------------------------ metadata

    @property
    def chain_id(self) -> int:
        return self._chain_id

    @property
    def accounts(self) -> tuple[DevAccount, ...]:
        """The funded dev accounts (their keys are public: dev only)."""
        return self._accounts

    @property
    def block_number(self) -> int:
        # No lock: one len() of a list is atomic, and the RPC server answers this inline.
        return len(self._blocks) - 1

    @property
    def head(self) -> MinedBlock:
        with self._lock:
            return self._blocks[-1]

    # ----------------------------------------------------------------------------- the lock

    def run_if_free(
        self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> tuple[bool, _T | None]:
        """Run ``fn(*args, **kwargs)`` under the chain's lock, if the lock can be taken without
        waiting.

        For a caller that must not block, such as an event loop answering a cheap read in
        place: when another thread holds the lock (a block being mined, a call running),
        nothing runs, and the caller can run ``fn`` where waiting is allowed (a worker thread).
        The lock is re-entrant, so ``fn`` may use the chain's methods, which take it again.

        Returns:
            ``(True, fn's result)`` when ``fn`` ran; ``(False, None)`` when the lock was held.

        Raises:
            Whatever ``fn`` raises (the lock is released first).
        """
        lock = self._lock
        if not lock.acquire(blocking=False):
            return False, None
        try:
            return True, fn(*args, **kwargs)
        finally:
            lock.release()

    # ---------------------------------------------------------------------------- the clock

    def _now(self) -> int:
        return int(self._clock())

    def next_block_timestamp(self) -> int:
        """The timestamp the next block would get if it were mined now."""
        with self._lock:
            if self._next_timestamp is not None:
                return self._next_timestamp
            return max(self._now() + self._offset, self._blocks[-1].timestamp + 1)

    @property
    def time_offset(self) -> int:
        """Seconds added to the wall clock by :meth:`increase_time` (and timestamp pins)."""
        return self._offset

    def increase_time(self, seconds: int) -> int:
        """Move the chain's clock ``seconds`` ahead; return the total offset from the wall clock.

        The chain's "now" is the later of wall clock + offset and the latest block's timestamp
        (a burst of blocks can run ahead of the wall clock, a second per block). The next block
        is stamped at least ``seconds`` after that now, and later blocks keep the new offset.
        Like hardhat's ``evm_increaseTime``, this mines nothing by itself.

        Raises:
            InputError: if ``seconds`` is negative (block time cannot run backwards).
        """
        if seconds < 0:
            raise InputError(
                f"the time increase must be at least 0 seconds, got {seconds}",
                hint="block timestamps only move forward",
            )
        with self._lock:
            wall = self._now()
            chain_now = max(wall + self._offset, self._blocks[-1].timestamp)
            if chain_now + seconds > MAX_TIMESTAMP:
                raise InputError(
                    f"increasing the time by {seconds} s would pass the largest block "
                    f"timestamp Ethereum allows (2**64-1)"
                )
            self._offset = chain_now - wall + seconds
            self._journal_clock()
            return self._offset

    def set_next_block_timestamp(self, timestamp: int) -> None:
        """Stamp the next block at ``timestamp``; the clock then continues from there.

        Raises:
            InputError: if ``timestamp`` is not after the latest block's.
        """
        with self._lock:
            latest = self._blocks[-1].timestamp
            if timestamp > MAX_TIMESTAMP:
                raise InputError(
                    f"the timestamp {timestamp} is past the largest one Ethereum allows (2**64-1)"
                )
            if timestamp <= latest:
                raise InputError(
                    f"the next block's timestamp {timestamp} must be after the latest "
                    f"block's ({latest})"
                )
            self._next_timestamp = timestamp
            self._journal_clock()

    def mine(self, timestamp: int | None = None) -> MinedBlock:
        """Mine one empty block (at ``timestamp`` if given); return it.

        Raises:
            InputError: if ``timestamp`` is not after the latest block's.
        """
        with self._lock:
            if timestamp is not None:
                self.set_next_block_timestamp(timestamp)
            return self._mine_and_record(None, None)

    def snapshot(self) -> int:
        """Remember the chain's state and clock; return an id for :meth:`revert`."""
        with self._lock:
            self._snapshot_counter += 1
            position = None if self._recorder is None else self._recorder.position
            self._snapshots[self._snapshot_counter] = _Snapshot(
                len(self._blocks) - 1, self._offset, self._next_timestamp, position
            )
            return self._snapshot_counter

    def revert(self, snapshot_id: int) -> bool:
        """Go back to snapshot ``snapshot_id``: blocks after it are forgotten, the clock offset
        restored (the wall clock keeps running). That snapshot and later ones are used up, as
        in hardhat. Return ``False`` for an unknown or used-up id.
        """
        with self._lock:
            snap = self._snapshots.get(snapshot_id)
            if snap is None:
                return False
            for key in [k for k in self._snapshots if k >= snapshot_id]:
                del self._snapshots[key]
            self._rewind(snap.number)
            self._offset = snap.offset
            self._next_timestamp = snap.next_timestamp
            if self._recorder is not None and snap.position is not None:
                self._recorder.truncate(snap.position)
            return True

    def _journal_clock(self) -> None:
        if self._recorder is not None:
            self._recorder.record([{"kind": "clock", **self._clock_fields()}])

    def _clock_fields(self) -> dict[str, Any]:
        """The clock controls as a journal's ``clock`` entry and a checkpoint keep them."""
        return {"offset": self._offset, "next_timestamp": self._next_timestamp}

    def _restore_clock(self, fields: Mapping[str, Any]) -> None:
        """Set the clock controls from a record holding :meth:`_clock_fields`."""
        self._offset = int(fields["offset"])
        nxt = fields.get("next_timestamp")
        self._next_timestamp = None if nxt is None else int(nxt)

    # ------------------------------------------------------------------------------ mining

    def _decode(self, raw: bytes) -> Any:
        if not raw:
            raise DevnetFault("the raw transaction is empty", code=-32602)
        if raw[0] == _BLOB_TX_TYPE:
            raise DevnetFault("blob transactions (type 3) are not supported by the reef devnet")
        try:
            builder = self._chain.get_vm_class_for_block_number(len(self._blocks))
            tx = builder.get_transaction_builder().decode(raw)
        except Exception as exc:
            # Untrusted bytes into py-evm's decoder, which raises rlp, py-evm, Type and Value
            # errors alike: every one of them means "not a transaction".
            raise DevnetFault(f"the raw transaction could not be decoded: {exc!r}") from exc
        chain_id = tx.chain_id
        if chain_id is not None and chain_id != self._chain_id:
            raise DevnetFault(
                f"invalid chain id for signer: have {chain_id} want {self._chain_id}",
                hint=f"sign for chain id {self._chain_id}",
            )
        try:
            # Recover the sender now: py-evm would otherwise fail deep inside validation. One
            # recovery is the whole check: the signature's ranges are validated on the way, and
            # py-evm's check_signature_validity would only add a second recovery and a
            # verification against the key just recovered from it (true by construction).
            _recover_sender(tx)
        except Exception as exc:  # as above: BadSignature, ValidationError, ValueError, ...
            raise DevnetFault(f"invalid transaction signature: {exc}") from exc
        if tx.type_id in (2, 4) and tx.max_priority_fee_per_gas > tx.max_fee_per_gas:
            # EIP-1559 makes this invalid; py-evm does not check it.
            raise DevnetFault(
                "max priority fee per gas higher than max fee per gas: "
                f"tip {tx.max_priority_fee_per_gas}, cap {tx.max_fee_per_gas}"
            )
        return tx

    def send_raw_transaction(self, raw: bytes) -> bytes:
        """Validate ``raw`` (a signed transaction), mine it in its own block, return its hash.

        A transaction that reverts is still mined (status 0), as on any Ethereum node.

        Raises:
            DevnetFault: if it is malformed, signed for another chain, already known, or
                invalid (nonce, funds, fees, gas).
        """
        with self._lock:
            tx = self._decode(raw)
            if bytes(tx.hash) in self._tx_index:
                raise DevnetFault(f"already known: transaction 0x{bytes(tx.hash).hex()}")
            self._mine_and_record(tx, raw)
            return bytes(tx.hash)

    def sign_transaction(self, request: TxRequest) -> bytes:
        """Fill in a dev account's transaction (nonce, gas, fees, chain id) and sign it.

        Raises:
            DevnetFault: if the sender is not a dev account, or gas estimation fails.
            ExecutionReverted: if estimating the gas reverts.
        """
        with self._lock:
            if request.sender is None:
                raise DevnetFault("the transaction has no 'from'", code=-32602)
            account = self._keys.get(request.sender)
            if account is None:
                raise DevnetFault(
                    f"unknown account {to_checksum_address(request.sender)}: the devnet signs "
                    "only for its dev accounts",
                    hint="sign the transaction yourself and use eth_sendRawTransaction",
                )
            if request.chain_id is not None and request.chain_id != self._chain_id:
                raise DevnetFault(f"chainId {request.chain_id} is not {self._chain_id}")
            nonce = request.nonce
            if nonce is None:
                nonce = self.nonce(request.sender, "latest")
            gas = request.gas
            if gas is None:
                gas = self.estimate_gas(request, "latest")
            fields: dict[str, Any] = {
                "chainId": self._chain_id,
                "nonce": nonce,
                "gas": gas,
                "value": request.value,
                "data": request.data,
            }
            if request.to is not None:
                fields["to"] = to_checksum_address(request.to)
            legacy = request.type in (0, 1) or (
                request.type is None
                and request.gas_price is not None
                and request.max_fee_per_gas is None
            )
            if legacy:
                fields["gasPrice"] = (
                    request.gas_price if request.gas_price is not None else self.gas_price()
                )
                if request.type == 1 or request.access_list is not None:
                    fields["accessList"] = _access_list_json(request.access_list or ())
                    fields["type"] = 1
            else:
                tip = request.max_priority_fee_per_gas
                if tip is None:
                    tip = PRIORITY_FEE
                cap = request.max_fee_per_gas
                if cap is None:
                    cap = 2 * self.next_base_fee() + tip
                fields.update(maxFeePerGas=cap, maxPriorityFeePerGas=tip, type=2)
                fields["accessList"] = _access_list_json(request.access_list or ())
            signed = Account.sign_transaction(fields, account.private_key)
            return bytes(signed.raw_transaction)

    def send_transaction(self, request: TxRequest) -> bytes:
        """Sign ``request`` with its dev account and mine it (``eth_sendTransaction``)."""
        with self._lock:
            return self.send_raw_transaction(self.sign_transaction(request))

    def _mine_and_record(self, tx: Any | None, raw: bytes | None) -> MinedBlock:
        timestamp = self.next_block_timestamp()
        if timestamp > MAX_TIMESTAMP:
            raise DevnetFault(
                "the chain's clock has reached the largest block timestamp (2**64-1)",
                hint="start over with `reef chain --fresh`",
            )
        pinned = self._next_timestamp is not None
        clock_before = (self._offset, self._next_timestamp)
        block = self._mine(tx, timestamp)
        if pinned:
            # As in hardhat: after a pinned timestamp, time continues from it.
            self._next_timestamp = None
            self._offset = timestamp - self._now()
        if self._recorder is not None:
            entries: list[dict[str, Any]] = [
                {
                    "kind": "block",
                    "number": block.number,
                    "timestamp": block.timestamp,
                    "tx": None if raw is None else "0x" + raw.hex(),
                    "hash": "0x" + block.hash.hex(),
                }
            ]
            if pinned:
                entries.append({"kind": "clock", **self._clock_fields()})
            try:
                self._recorder.record(entries)
            except OSError as exc:
                self._rewind(block.number - 1)
                self._offset, self._next_timestamp = clock_before
                raise ChainError(
                    f"could not write the devnet journal: {exc}",
                    hint="check the disk under $REEF_HOME; the transaction was not kept",
                ) from exc
        return block

    def _replay_block(
        self, number: int, timestamp: int, raw: bytes | None, block_hash: str
    ) -> None:
        """Mine block ``number`` again as a journal recorded it, and check its hash.

        Raises:
            ConfigError: if the block is out of order or replays to another hash.
            DevnetFault: if its transaction is refused.
        """
        tx = self._decode(raw) if raw else None
        if number != len(self._blocks):
            raise ConfigError(f"expected block {len(self._blocks)}, found {number}")
        block = self._mine(tx, timestamp)
        if "0x" + block.hash.hex() != block_hash:
            raise ConfigError(f"block {block.number} replays to a different hash")

    def _next_header(self, parent: Any, timestamp: int, mix_hash: bytes) -> Any:
        """The header ``create_header_from_parent(parent, timestamp=, mix_hash=)`` makes, made
        faster.

        py-evm builds a new header through every fork since Frontier, one header object each,
        about a twelfth of a transaction. Of a new block's header only the fields set here
        depend on its parent and its time (the others are the post-merge constants and the
        empty block's roots), so the first header py-evm made serves as a template for the
        rest, with the same base fee and blob gas rules (py-evm's own functions). The tests
        check the result against py-evm's for parents full, empty and in between.
        """
        template = self._header_template
        if template is None:
            template = self._chain.create_header_from_parent(
                parent, timestamp=timestamp, mix_hash=mix_hash
            )
            self._header_template = template
            return template
        return _with_fields(
            template,
            parent_hash=parent.hash,
            block_number=parent.block_number + 1,
            timestamp=timestamp,
            mix_hash=mix_hash,
            state_root=parent.state_root,
            gas_limit=parent.gas_limit,
            base_fee_per_gas=calculate_expected_base_fee_per_gas(parent),
            excess_blob_gas=calc_excess_blob_gas_prague(parent),
        )

    def _mine(self, tx: Any | None, timestamp: int) -> MinedBlock:
        """Mine a block holding ``tx`` (or nothing) at ``timestamp`` and make it the head.

        One VM builds the whole block: the transaction, the block's tries, then finalisation
        (state root), which is what ``MiningChain.apply_transaction`` followed by
        ``mine_block`` does, without its second VM, second block load, second state persist
        and re-validation of the block just built (the same block, byte for byte: journals
        replay to the same hashes). A failure leaves the chain as it was: only trie nodes, which nothing refers to, were
        added to the database.
        """
        chain = self._chain
        parent = self._blocks[-1]
        randao = keccak256(_RANDAO_DOMAIN + parent.hash)
        header = self._next_header(parent.header, timestamp, randao)
        vm = chain.get_vm(header)
        transactions: tuple[Any, ...] = ()
        receipts: tuple[Any, ...] = ()
        try:
            if tx is not None:
                receipt, _ = vm.apply_transaction(header, tx)
                transactions, receipts = (tx,), (receipt,)
            # What VM.mine_block does, without its validate_block: the header already holds
            # the mix hash (pack_block's only field here), the block was built here from its
            # parent by py-evm's own header and trie code (and a replay is checked against the
            # journal's hashes), and the re-check cost a tenth of a transaction. Post-merge
            # finalisation assigns no reward: it is the state's persist (the state root), done
            # before the block is assembled so that the header is copied once, not four times.
            vm.state.persist()
            fields: dict[str, Any] = {"state_root": vm.state.state_root}
            if tx is not None:
                # VM.add_receipt_to_header (Byzantium's rule, which Prague keeps).
                fields["bloom"] = int(BloomFilter(header.bloom) | receipt.bloom)
                fields["gas_used"] = receipt.gas_used
                # VM.set_block_transactions_and_withdrawals for one transaction and no
                # withdrawals: its two tries of one leaf each, without building tries (an
                # empty block keeps the template's empty roots, as that method gives it).
                for name, encoded in (
                    ("transaction_root", tx.encode()),
                    ("receipt_root", encode_receipt(receipt)),
                ):
                    root, nodes = one_item_trie(encoded)
                    chain.chaindb.persist_trie_data_dict(nodes)
                    fields[name] = root
            filled = _with_fields(header, **fields)
            block = vm.get_block().copy(transactions=transactions, header=filled)
        except ValidationError as exc:
            raise rejection(exc) from exc
        self._persist_block(block)
        senders = () if tx is None else (bytes(tx.sender),)
        return self._record(block, receipts, senders)

    def _persist_block(self, block: Any) -> None:
        """py-evm's ``ChainDB.persist_block``: the same entries in the database, written
        directly for a block on the canonical head (a sixth of a transfer, most of it reading
        back and decoding what this chain knows).

        For a block extending the head, py-evm writes its header by hash, its score (the
        parent's plus its difficulty, or plus its number after the merge), the header and
        block gap records (:func:`eth.db.chain_gaps.fill_gap`), its number's canonical hash,
        the head, and where each transaction is; it reads the rest only to choose among
        cases that do not arise here (a fork, uncles, withdrawals, a gap being filled).
        Anything else goes to py-evm. The tests compare whole databases with py-evm's.
        """
        chaindb = self._chain.chaindb
        db = chaindb.db
        header = block.header
        head_key = SchemaV1.make_canonical_head_hash_lookup_key()
        if block.uncles or block.withdrawals or db.get(head_key) != header.parent_hash:
            chaindb.persist_block(block)
            return
        number = header.block_number
        parent_score = rlp.decode(
            db[SchemaV1.make_block_hash_to_score_lookup_key(header.parent_hash)],
            sedes=big_endian_int,
        )
        difficulty = header.difficulty
        score = parent_score + (difficulty if difficulty != 0 else number)
        header_gaps_key = SchemaV1.make_header_chain_gaps_lookup_key()
        header_change, header_gaps = fill_gap(number, self._gaps(db, header_gaps_key))
        if header_change in GAP_WRITES or score <= parent_score:
            chaindb.persist_block(block)
            return
        block_gaps_key = SchemaV1.make_chain_gaps_lookup_key()
        block_change, block_gaps = fill_gap(number, self._gaps(db, block_gaps_key))
        block_hash = header.hash
        writes = {
            block_hash: rlp.encode(header),
            SchemaV1.make_block_hash_to_score_lookup_key(block_hash): rlp.encode(
                score, sedes=big_endian_int
            ),
            SchemaV1.make_block_number_to_hash_lookup_key(number): rlp.encode(
                block_hash, sedes=binary
            ),
            head_key: block_hash,
        }
        if header_change is not GapChange.NoChange:
            writes[header_gaps_key] = self._gaps_encoded(header_gaps_key, header_gaps)
        if block_change is not GapChange.NoChange:
            writes[block_gaps_key] = self._gaps_encoded(block_gaps_key, block_gaps)
        for index, tx in enumerate(block.transactions):
            key = SchemaV1.make_transaction_hash_to_block_lookup_key(tx.hash)
            writes[key] = rlp.encode(BlockDataKey(number, index))
        with db.atomic_batch() as batch:
            for key, value in writes.items():
                batch[key] = value

    def _gaps(self, db: Any, key: bytes) -> Any:
        """A chain gaps record as py-evm reads it (its genesis value when there is none),
        decoded once: the record this chain wrote last is remembered with its encoding."""
        encoded = db.get(key)
        if encoded is None:
            return GENESIS_CHAIN_GAPS
        known = self._gap_records.get(key)
        if known is not None and known[0] == encoded:
            return known[1]
        gaps = rlp.decode(encoded, sedes=chain_gaps)
        self._gap_records[key] = (encoded, gaps)
        return gaps

    def _gaps_encoded(self, key: bytes, gaps: Any) -> bytes:
        encoded: bytes = rlp.encode(gaps, sedes=chain_gaps)
        self._gap_records[key] = (encoded, gaps)
        return encoded

    def _record(
        self, block: Any, receipts: tuple[Any, ...], senders: tuple[bytes, ...] | None = None
    ) -> MinedBlock:
        """Add a block that py-evm has made canonical to the devnet's own indexes.

        ``senders`` are its transactions' senders when the caller knows them already (each
        recovery from a signature costs an elliptic-curve operation).
        """
        if senders is None:
            senders = tuple(bytes(t.sender) for t in block.transactions)
        number = int(block.number)
        block_hash = bytes(block.hash)
        logs: list[tuple[LogEntry, ...]] = []
        log_index = 0
        for index, (t, r) in enumerate(zip(block.transactions, receipts, strict=True)):
            entries = []
            for log in r.logs:
                entries.append(
                    LogEntry(
                        block_number=number,
                        block_hash=block_hash,
                        transaction_hash=bytes(t.hash),
                        transaction_index=index,
                        log_index=log_index,
                        address=bytes(log.address),
                        topics=tuple(topic.to_bytes(32, "big") for topic in log.topics),
                        data=bytes(log.data),
                    )
                )
                log_index += 1
            logs.append(tuple(entries))
        mined = MinedBlock(
            block.header,
            tuple(block.transactions),
            receipts,
            senders,
            _block_size(block),
            tuple(logs),
        )
        self._blocks.append(mined)
        self._numbers[block_hash] = number
        for index, t in enumerate(block.transactions):
            self._tx_index[bytes(t.hash)] = (number, index)
        for block_logs in logs:
            self._logs.extend(block_logs)
            self._log_blocks.extend([number] * len(block_logs))
        return mined

    def _rewind(self, number: int) -> None:
        """Forget every block after ``number`` and make ``number`` the head again."""
        removed = self._blocks[number + 1 :]
        del self._blocks[number + 1 :]
        for block in removed:
            self._numbers.pop(block.hash, None)
            for tx in block.transactions:
                self._tx_index.pop(bytes(tx.hash), None)
        cut = bisect.bisect_right(self._log_blocks, number)
        del self._logs[cut:]
        del self._log_blocks[cut:]
        head = self._blocks[-1].header
        chaindb = self._chain.chaindb
        # py-evm has no public "set head" operation; this is the one its own reorgs use.
        chaindb._set_as_canonical_chain_head(chaindb.db, head, GENESIS_PARENT_HASH)
        self._chain.header = self._chain.create_header_from_parent(head)

    # ----------------------------------------------------------------------- reading blocks

    def block(self, selector: BlockSelector) -> MinedBlock | None:
        """The block a number, tag or hash names, or ``None`` if there is none (yet)."""
        with self._lock:
            if isinstance(selector, bytes):
                number = self._numbers.get(selector)
                return None if number is None else self._blocks[number]
            if isinstance(selector, str):
                if selector == "earliest":
                    return self._blocks[0]
                if selector in BLOCK_TAGS:
                    return self._blocks[-1]
                raise DevnetFault(f"unknown block tag {selector!r}", code=-32602)
            if 0 <= selector < len(self._blocks):
                return self._blocks[selector]
            return None

    def _state_block(self, selector: BlockSelector) -> MinedBlock:
        block = self.block(selector)
        if block is None:
            raise DevnetFault(f"header not found: block {_describe(selector)} does not exist")
        return block

    def transaction(self, tx_hash: bytes) -> tuple[MinedBlock, int] | None:
        """The block holding ``tx_hash`` and the transaction's index in it.

        Without the lock (the RPC server answers receipts on its event loop, not stuck behind
        a transaction being mined): a dict lookup and a list index are atomic, blocks are
        immutable, and a location a revert has just made stale is caught by checking that the
        block there still holds this transaction.
        """
        location = self._tx_index.get(tx_hash)
        if location is None:
            return None
        number, index = location
        try:
            block = self._blocks[number]
            if bytes(block.transactions[index].hash) != tx_hash:
                return None
        except IndexError:
            return None
        return block, index

    def logs(
        self,
        from_block: int,
        to_block: int,
        *,
        addresses: frozenset[bytes] | None = None,
        topics: Sequence[frozenset[bytes] | None] = (),
        limit: int | None = None,
    ) -> list[LogEntry]:
        """Logs in blocks ``from_block..to_block`` (inclusive) matching the filter, in order.

        ``topics`` is positional: ``None`` matches anything, a set matches any of its members.
        With ``limit``, the scan stops once ``limit`` logs are found (a caller that refuses more
        asks for ``limit + 1``).
        """
        with self._lock:
            start = bisect.bisect_left(self._log_blocks, from_block)
            end = bisect.bisect_right(self._log_blocks, to_block)
            found = []
            for entry in self._logs[start:end]:
                if addresses is not None and entry.address not in addresses:
                    continue
                if len(topics) > len(entry.topics):
                    continue
                if all(
                    wanted is None or entry.topics[i] in wanted for i, wanted in enumerate(topics)
                ):
                    found.append(entry)
                    if limit is not None and len(found) >= limit:
                        break
            return found

    # ------------------------------------------------------------------------- reading state

    def _state(self, selector: BlockSelector) -> Any:
        """The state after block ``selector``, to read (the caller holds the lock).

        The last block's state is kept for the next read at the same block: reads never
        write to it, and a block's state never changes (its hash fixes its state root), while
        building a VM and its state for each read was most of an ``eth_getBalance``.
        """
        block = self._state_block(selector)
        kept = self._read_state
        if kept is not None and kept[0] == block.hash:
            return kept[1]
        state = self._chain.get_vm(at_header=block.header).state
        self._read_state = (block.hash, state)
        return state

    def balance(self, address: bytes, selector: BlockSelector = "latest") -> int:
        with self._lock:
            return int(self._state(selector).get_balance(address))

    def nonce(self, address: bytes, selector: BlockSelector = "latest") -> int:
        with self._lock:
            return int(self._state(selector).get_nonce(address))

    def code(self, address: bytes, selector: BlockSelector = "latest") -> bytes:
        with self._lock:
            return bytes(self._state(selector).get_code(address))

    def storage(self, address: bytes, slot: int, selector: BlockSelector = "latest") -> int:
        with self._lock:
            return int(self._state(selector).get_storage(address, slot))

    def next_base_fee(self) -> int:
        """The base fee per gas of the next block (EIP-1559's rule, as py-evm's headers)."""
        return int(calculate_expected_base_fee_per_gas(self.head.header))

    def gas_price(self) -> int:
        """A gas price that gets a transaction into the next block: base fee + 1 gwei tip."""
        return self.next_base_fee() + PRIORITY_FEE

    # ------------------------------------------------------------------- calls and estimates

    def _call_vm(self, selector: BlockSelector) -> tuple[Any, tuple[bytes, int] | None]:
        """A VM to run calls in, and the key under which it may run the next call (``None``:
        it may not).

        For a tag (``latest``, ``pending``, ...) calls run on the latest state in the context of
        the *next* block as it would be mined now (its number and wall-clock timestamp), as
        hardhat does, so a time-dependent view agrees with the next transaction. For a block
        number or hash they run in that block's own context, as geth does. The base fee is 0
        so calls cost nothing.
        """
        block = self._state_block(selector)
        if isinstance(selector, str) and selector != "earliest":
            # The next block's header is the same for every call in the same second on the same
            # head, and building one cost an eighth of a call: keep the last one.
            key = (block.hash, self.next_block_timestamp())
            idle = self._idle_call_vm
            if idle is not None and idle[0] == key:
                self._idle_call_vm = None
                return idle[1], key
            cached = self._call_header
            if cached is not None and cached[0] == key:
                return self._chain.get_vm(at_header=cached[1]), key
            header = self._chain.create_header_from_parent(block.header, timestamp=key[1])
            header = header.copy(base_fee_per_gas=0)
            self._call_header = (key, header)
            return self._chain.get_vm(at_header=header), key
        return self._chain.get_vm(at_header=block.header.copy(base_fee_per_gas=0)), None

    def _call_setup(self, selector: BlockSelector) -> tuple[Any, tuple[bytes, int] | None]:
        # Only taking the VM needs the lock. The execution itself runs on a private state
        # (journal) over the state root of that block: trie nodes are only ever added, so other
        # threads may mine, read and revert meanwhile, and reads are not stuck behind a call.
        with self._lock:
            vm, key = self._call_vm(selector)
            _ = vm.state
            return vm, key

    def _simulate(self, selector: BlockSelector, run: Callable[[Any], _T]) -> _T:
        """``run`` (a call or an estimate) on a VM for ``selector``.

        A VM whose runs ended in an answer (an output or a revert) is kept for the next call
        with the same key: every run of :mod:`reef.chain.devnet._exec` is reverted, leaving
        the state as it found it (as the runs of one estimate always did on one state), and
        building a VM, its state and the storage databases of the accounts a call reads was a
        sixth of an ``eth_call``. One call at a time takes it; a call that finds it taken
        builds its own. A VM whose run was cut short (a time-out, a refusal) is dropped.
        """
        vm, key = self._call_setup(selector)
        try:
            result = run(vm)
        except ExecutionReverted:
            self._keep_call_vm(vm, key)
            raise
        self._keep_call_vm(vm, key)
        return result

    def _keep_call_vm(self, vm: Any, key: tuple[bytes, int] | None) -> None:
        if key is not None:
            with self._lock:
                self._idle_call_vm = (key, vm)

    def call(
        self,
        request: TxRequest,
        selector: BlockSelector = "latest",
        *,
        gas_cap: int = GAS_LIMIT,
        timeout_s: float | None = None,
    ) -> bytes:
        """Run ``request`` without mining it (``eth_call``); return its output.

        It runs with the request's gas, at most ``gas_cap`` (the block gas limit by default),
        and for at most ``timeout_s`` seconds of wall time.

        Raises:
            ExecutionReverted: if it reverts (with the revert data).
            DevnetFault: if it fails otherwise (out of gas, out of time, invalid opcode, bad
                nonce/funds).
        """
        gas = min(request.gas, gas_cap) if request.gas is not None else gas_cap
        return self._simulate(selector, lambda vm: call_on(vm, request, gas, timeout_s=timeout_s))

    def estimate_gas(
        self,
        request: TxRequest,
        selector: BlockSelector = "latest",
        *,
        gas_cap: int = GAS_LIMIT,
        timeout_s: float | None = None,
    ) -> int:
        """The least gas with which ``request`` succeeds (``eth_estimateGas``), up to the
        request's gas or ``gas_cap`` (the block gas limit by default), found within
        ``timeout_s`` seconds of wall time.

        Raises:
            ExecutionReverted: if it reverts even with the cap.
            DevnetFault: if it fails with the cap for another reason, or runs out of time.
        """
        cap = min(request.gas, gas_cap) if request.gas is not None else gas_cap
        return self._simulate(
            selector, lambda vm: estimate_on(vm, request, cap, timeout_s=timeout_s)
        )


def _with_fields(header: Any, **fields: Any) -> Any:
    """``header.copy(**fields)``, in a fifth of its time: py-evm's ``copy`` deep-copies each
    unchanged field (ints and bytes here, immutable) and merges positional arguments no caller
    passes, and the header class's constructor only names its fields to pyrlp's, which merges
    them back into their order. Here pyrlp's constructor gets them in order."""
    values = header.as_dict()
    values.update(fields)
    cls: Any = type(header)
    made = cls.__new__(cls)
    BaseSerializable.__init__(made, *values.values())
    return made


def _block_size(block: Any) -> int:
    """``len(rlp.encode(block))``, from the encodings its parts have already (the header's,
    made for its hash, and each transaction's, made for the transaction trie) instead of
    serialising the whole block again, a twentieth of a transfer. A block is the RLP list of
    its header, its transactions (a typed one as the byte string of its type and payload, a
    legacy one as its own list), its uncles and its withdrawals, none on the devnet."""
    if block.uncles or block.withdrawals:
        return len(rlp.encode(block))
    transactions = b"".join(
        tx.encode() if tx.type_id is None else encode_bytes(tx.encode())
        for tx in block.transactions
    )
    payload = rlp.encode(block.header) + encode_list(transactions) + b"\xc0\xc0"
    return len(encode_list(payload))


def _access_list_json(
    access_list: Iterable[tuple[bytes, tuple[int, ...]]],
) -> list[dict[str, Any]]:
    return [
        {
            "address": to_checksum_address(address),
            "storageKeys": ["0x" + key.to_bytes(32, "big").hex() for key in keys],
        }
        for address, keys in access_list
    ]


def _describe(selector: BlockSelector) -> str:
    if isinstance(selector, bytes):
        return "0x" + selector.hex()
    return str(selector)
