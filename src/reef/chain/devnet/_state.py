"""py-evm's state with a memory of trie nodes across blocks: the devnet's CPU per transaction.

Why: py-evm builds a fresh ``AccountDB`` (and fresh storage tries) for every block, so each
account or slot a transaction reads walks the trie from the root again, reading and RLP-decoding
every node on the way in pure Python, and every write re-encodes the nodes it replaces just to
learn their hashes (py-trie's pruning). Profiled over 350 transfers, that was most of the work.

What: py-evm's account database, storage databases and storage lookups over one chain's
:class:`~reef.chain.devnet._trie.NodeCache` (trie nodes by hash, the accounts and slots known at
each root, accounts by encoding: see :mod:`reef.chain.devnet._trie`), so that what one block
read or wrote serves the next. :func:`state_class` gives a state class that uses them, injected
through py-evm's own extension points (the state's ``account_db_class``, the account database's
``_get_address_store``, the storage database's lookup): nothing of py-evm is patched, and a chain
without the cache runs py-evm unchanged. The account database also builds accounts from their
fields where py-evm copies them, and encodes them with
:func:`~reef.chain.devnet._trie.encode_account`.

A block's state root: py-evm writes each changed slot, then each changed account, into its trie
one key at a time through py-trie (a fifth of a contract transaction's CPU). Here the storage
databases and the account database hand a block's changes to
:func:`~reef.chain.devnet._trie.update_trie` at once, which gives the same root and stores the
same nodes.

What it does not change: the state roots, the blocks and the database's contents, which the
tests check against plain py-evm (whole databases compared) over random transactions, many
slots and accounts, deletions, snapshots and reverts.

The package's layers: :mod:`reef.chain.devnet._trie` below (the only module of the package this
one imports; the layering test holds it to that), :mod:`reef.chain.devnet._vm` above (the VM,
its interpreter and transaction executor, over this state).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, cast

import rlp
from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA3
from eth.db.accesslog import KeyAccessLoggerAtomicDB, KeyAccessLoggerDB
from eth.db.account import AccountDB
from eth.db.backends.memory import MemoryDB
from eth.db.batch import BatchDB
from eth.db.cache import CacheDB
from eth.db.hash_trie import HashTrie
from eth.db.journal import JournalDB
from eth.db.storage import CLEAR_COUNT_KEY_NAME, AccountStorageDB, StorageLookup
from eth.rlp.accounts import Account
from eth.validation import (
    validate_canonical_address,
    validate_is_bytes,
    validate_uint64,
    validate_uint256,
)
from eth.vm.forks.prague.state import PragueState
from eth_hash.auto import keccak
from eth_typing import Address, Hash32
from eth_utils.conversions import to_bytes
from eth_utils.logging import get_extended_debug_logger
from lru import LRU
from trie.hexary import HexaryTrie

from reef.chain.devnet._trie import (
    CachingTrie,
    NodeCache,
    TrieValues,
    encode_account,
    update_trie,
)

__all__ = ["state_class"]

_EMPTY_ACCOUNT: Final = Account()
"""What py-evm reads for an address without an account (immutable, so shared)."""


class _RootedReads(CacheDB):
    """py-evm's ``CacheDB`` in front of a trie, its entries kept in :class:`TrieValues` by
    the trie's root: they serve every later state of the chain over that root, and are carried
    to the root a write makes.

    py-evm's own cache is per state (per block) and emptied whenever the root changes.
    """

    def __init__(self, db: Any, root: Callable[[], bytes], values: TrieValues) -> None:
        self._db = db
        self._root = root
        self._values = values

    def reset_cache(self) -> None:
        pass  # entries are keyed by root: a root change is no reason to forget them

    def __getitem__(self, key: bytes) -> bytes:
        known = self._values.at(self._root())
        value = known.get(key)
        if value is None:
            value = self._db[key]
            known[key] = value
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        before = self._root()
        self._db[key] = value
        self._values.carry(before, self._root(), {key: value})

    def __delitem__(self, key: bytes) -> None:
        before = self._root()
        del self._db[key]
        self._values.carry(before, self._root(), {key: b""})


class _CachingStorageLookup(StorageLookup):
    """py-evm's ``StorageLookup`` (one account's storage trie) on a caching trie."""

    trie_class: type[CachingTrie]

    def _get_write_trie(self) -> HexaryTrie:
        if self._trie_nodes_batch is None:
            self._trie_nodes_batch = BatchDB(self._db, read_through_deletes=True)
        if self._write_trie is None:
            self._write_trie = self.trie_class(
                self._trie_nodes_batch, root_hash=self._starting_root_hash, prune=True
            )
        return self._write_trie

    def _get_read_trie(self) -> HexaryTrie:
        if self._write_trie is not None:
            return self._write_trie
        return self.trie_class(self._db, root_hash=self._starting_root_hash)

    def root(self) -> bytes:
        """The root the next read sees."""
        write_trie = self._write_trie
        return self._starting_root_hash if write_trie is None else write_trie.root_hash

    def write_all(self, writes: Mapping[bytes, bytes]) -> None:
        """Set slots (by their unhashed keys; ``b""`` deletes one) in one update of the trie
        (:func:`~reef.chain.devnet._trie.update_trie`): the root and the batch of nodes to
        store are what setting and deleting them one by one in py-trie leaves."""
        trie = self._get_write_trie()
        batch: Any = self._trie_nodes_batch
        hashed = {self._decode_key(key): value for key, value in writes.items()}
        root, made = update_trie(self.trie_class.node_cache, batch, trie.root_hash, hashed)
        for node_hash, encoded in made.items():
            batch[node_hash] = encoded
        trie.root_hash = root


class _CachingAccountStorageDB(AccountStorageDB):
    lookup_class: type[_CachingStorageLookup]

    def __init__(self, db: Any, storage_root: Hash32, address: Address) -> None:
        # What py-evm's constructor sets, over the caching lookup (not calling it: it builds a
        # lookup, a cache and two journals only for these to replace them, one account's
        # storage database per account a transaction or a call touches).
        self._address = address
        lookup = self.lookup_class(db, storage_root, address)
        self._storage_lookup = lookup
        self._lookup = lookup
        self._storage_cache = _RootedReads(lookup, lookup.root, lookup.trie_class.node_cache.slots)
        self._locked_changes = JournalDB(self._storage_cache)
        self._journal_storage = JournalDB(self._locked_changes)
        self._accessed_slots: set[int] = set()
        self._clear_count = JournalDB(MemoryDB({CLEAR_COUNT_KEY_NAME: to_bytes(0)}))

    def make_storage_root(self) -> None:
        # py-evm's: lock the changes, then persist them into the trie one slot at a time;
        # here the slots go into the trie in one update. A storage cleared in this block
        # (the journal's clear, which swaps in an empty trie) takes py-evm's own path.
        self.lock_changes()
        locked = self._locked_changes
        if locked.has_clear():
            locked.persist()
            return
        diff = locked.diff()
        writes = dict(diff.pending_items())
        writes.update(dict.fromkeys(diff.deleted_keys(), b""))
        locked.reset()  # what persist leaves: an empty journal
        if not writes:
            return
        lookup = self._lookup
        before = lookup.root()
        lookup.write_all(writes)
        lookup.trie_class.node_cache.slots.carry(before, lookup.root(), writes)


class _CachingAccountDB(AccountDB):
    trie_class: type[CachingTrie]
    storage_class: type[_CachingAccountStorageDB]

    def __init__(self, db: Any, state_root: Hash32 = BLANK_ROOT_HASH) -> None:
        # What py-evm's constructor sets (not calling it: it builds a trie, a cache and a
        # journal only for these to replace them, once a block and once a call's VM), with
        # the account trie (a HashTrie over a pruning HexaryTrie) on the caching trie, and
        # the account cache in front of it keyed by the root.
        self._raw_store_db = KeyAccessLoggerAtomicDB(db, log_missing_keys=False)
        self._batchdb = BatchDB(self._raw_store_db)
        self._batchtrie = BatchDB(self._raw_store_db, read_through_deletes=True)
        self._journaldb = JournalDB(self._batchdb)
        trie = self.trie_class(self._batchtrie, state_root, prune=True)
        self._hexary = trie
        self._trie = HashTrie(cast(Any, trie))
        self._trie_logger = KeyAccessLoggerDB(self._trie, log_missing_keys=False)
        self._trie_cache = _RootedReads(
            self._trie_logger, lambda: trie.root_hash, trie.node_cache.accounts
        )
        self._journaltrie = JournalDB(self._trie_cache)
        self._account_cache = LRU(2048)
        self._account_stores = {}
        self._dirty_accounts = set()
        self._root_hash_at_last_persist = state_root
        self._accessed_accounts = set()
        self._accessed_bytecodes = set()
        self._reset_access_counters()

    def make_state_root(self) -> Any:
        # py-evm's AccountDB.make_state_root, with the accounts' changes going into the trie
        # in one update (its own applies them one by one to a squashing copy of the trie).
        for _address, store in self._dirty_account_stores():
            store.make_storage_root()
        for address, storage_root in self._get_changed_roots():
            if self.account_exists(address) or storage_root != BLANK_ROOT_HASH:
                self._set_storage_root(address, storage_root)
        self._journaldb.persist()
        diff = self._journaltrie.diff()
        writes = dict(diff.pending_items())
        writes.update(dict.fromkeys(diff.deleted_keys(), b""))
        if writes:
            trie = self._hexary
            cache = trie.node_cache
            before = trie.root_hash
            hashed = {keccak(address): value for address, value in writes.items()}
            root, made = update_trie(cache, self._batchtrie, before, hashed)
            for node_hash, encoded in made.items():
                self._batchtrie[node_hash] = encoded
            trie.root_hash = root
            cache.accounts.carry(before, root, writes)
        self._journaltrie.reset()
        self._trie_cache.reset_cache()
        return self.state_root

    # Accounts: py-evm's methods, with an account built from its four fields where py-evm
    # copies one (``Serializable.copy`` deep-copies and re-validates every field: six times the
    # cost), encoded by :func:`encode_account`, and decoded once per distinct encoding.

    def _get_account(self, address: Address, from_journal: bool = True) -> Account:
        if from_journal:
            account: Account | None = self._account_cache.get(address)
            if account is not None:
                return account
        encoded = self._get_encoded_account(address, from_journal)
        if encoded:
            decoded = self.trie_class.node_cache.decoded_accounts
            account = decoded.get(encoded)
            if account is None:
                account = rlp.decode(encoded, sedes=Account)
                decoded[encoded] = account
        else:
            account = _EMPTY_ACCOUNT
        if from_journal:
            self._account_cache[address] = account
        return account

    def _set_account(self, address: Address, account: Account) -> None:
        self._account_cache[address] = account
        self._journaltrie[address] = encode_account(account)

    def set_balance(self, address: Address, balance: int) -> None:
        validate_canonical_address(address, title="Storage Address")
        validate_uint256(balance, title="Account Balance")
        old = self._get_account(address)
        self._set_account(address, Account(old.nonce, balance, old.storage_root, old.code_hash))

    def set_nonce(self, address: Address, nonce: int) -> None:
        validate_canonical_address(address, title="Storage Address")
        validate_uint64(nonce, title="Nonce")  # py-evm allows 2**64-1 here
        old = self._get_account(address)
        self._set_account(address, Account(nonce, old.balance, old.storage_root, old.code_hash))

    def _set_storage_root(self, address: Address, new_storage_root: Hash32) -> None:
        old = self._get_account(address)
        self._set_account(address, Account(old.nonce, old.balance, new_storage_root, old.code_hash))

    def set_code(self, address: Address, code: bytes) -> None:
        validate_canonical_address(address, title="Storage Address")
        validate_is_bytes(code, title="Code")
        old = self._get_account(address)
        code_hash = keccak(code)
        self._journaldb[code_hash] = code
        self._set_account(address, Account(old.nonce, old.balance, old.storage_root, code_hash))

    def delete_code(self, address: Address) -> None:
        validate_canonical_address(address, title="Storage Address")
        old = self._get_account(address)
        self._set_account(address, Account(old.nonce, old.balance, old.storage_root, EMPTY_SHA3))

    def _get_address_store(self, address: Any) -> Any:
        store = self._account_stores.get(address)
        if store is None:
            store = self.storage_class(self._raw_store_db, self._get_storage_root(address), address)
            self._account_stores[address] = store
        return store


def state_class(
    cache: NodeCache, *, computation_class: type[Any], transaction_executor_class: type[Any]
) -> Any:
    """py-evm's ``PragueState`` with its tries reading and writing through ``cache``, running
    transactions with ``transaction_executor_class`` and messages with ``computation_class``."""
    trie = type("_ChainTrie", (CachingTrie,), {"__slots__": (), "node_cache": cache})
    lookup = type("_ChainStorageLookup", (_CachingStorageLookup,), {"trie_class": trie})
    storage = type("_ChainAccountStorageDB", (_CachingAccountStorageDB,), {"lookup_class": lookup})
    accounts = type(
        "_ChainAccountDB", (_CachingAccountDB,), {"trie_class": trie, "storage_class": storage}
    )
    return type(
        "_ChainPragueState",
        (PragueState,),
        {
            "account_db_class": accounts,
            "computation_class": computation_class,
            "transaction_executor_class": transaction_executor_class,
            # py-evm's state makes its logger anew on each use (a property), several times a
            # transaction: the same logger (the same name), made once.
            "logger": get_extended_debug_logger("eth.vm.state._ChainPragueState"),
        },
    )
