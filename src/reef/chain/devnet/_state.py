"""py-evm's state with a memory of trie nodes across blocks: the devnet's CPU per transaction.

Why: py-evm builds a fresh ``AccountDB`` (and fresh storage tries) for every block, so each
account or slot a transaction reads walks the trie from the root again, reading and RLP-decoding
every node on the way in pure Python, and every write re-encodes the nodes it replaces just to
learn their hashes (py-trie's pruning). Profiled over 350 transfers, that was most of the work.

What: a :class:`NodeCache`, owned by one chain, remembers

- the nodes of its tries by hash (a node is immutable by its hash, so a remembered node is
  right for as long as the process lives, across blocks, reverts and reorgs alike), and the
  hash and encoding of each node it has seen or made (a pure function of the node);
- the values (accounts, slots) read or written at each trie root (:class:`TrieValues`: a root
  fixes its trie's contents), carried to the root a block's writes make, so what a block did
  not touch is read at the next one without a walk;
- accounts by encoding (py-evm's accounts are immutable).

:func:`vm_class` gives a VM class whose state uses them, injected through py-evm's own extension
points (the VM's ``_state_class``, the state's ``account_db_class``, the account database's
``_get_address_store``): nothing of py-evm is patched, and a chain without the cache runs py-evm
unchanged. Every map is bounded (least recently used entries go). The account database also
builds accounts from their fields where py-evm copies them, and :func:`encode_node`,
:func:`encode_account` and :func:`one_item_trie` give pyrlp's and py-trie's bytes without their
generic machinery.

What it does not change: which nodes are written (py-trie still builds, hashes and prunes every
node as before; only the decoding and encoding of nodes already known are skipped), so state
roots, blocks and the database are the same, which the tests check against plain py-evm over
random transactions, snapshots and reverts.

Nodes are handed out as fresh lists: py-trie edits the nodes it gets in place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, cast

import rlp
from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA3
from eth.db.account import AccountDB
from eth.db.batch import BatchDB
from eth.db.cache import CacheDB
from eth.db.journal import JournalDB
from eth.db.storage import AccountStorageDB, StorageLookup
from eth.rlp.accounts import Account
from eth.validation import (
    validate_canonical_address,
    validate_is_bytes,
    validate_uint64,
    validate_uint256,
)
from eth.vm.forks.prague import PragueVM
from eth.vm.forks.prague.state import PragueState
from eth_hash.auto import keccak
from eth_typing import Address, Hash32
from lru import LRU
from rlp.codec import encode_raw
from trie.constants import BLANK_NODE, BLANK_NODE_HASH
from trie.hexary import HexaryTrie
from trie.validation import validate_is_node

__all__ = ["NodeCache", "encode_account", "encode_node", "one_item_trie", "vm_class"]

DEFAULT_NODES: Final = 8192
"""Nodes remembered by default: every node a devnet's hot accounts and slots sit under, many
times over (a transfer touches about twenty), in at most some 20 MB (a branch node and its
encoding are about 2 kB)."""

DEFAULT_ROOTS: Final = 64
"""Roots whose values are kept: the head's and those of the blocks before it (calls at a past
block, a revert to a snapshot)."""
CARRY_LIMIT: Final = 2048
"""A root's values are carried to the next root while there are at most this many (a copy a
block: a few microseconds for the accounts a devnet uses, not a growing cost)."""

_EMPTY_ACCOUNT: Final = Account()
"""What py-evm reads for an address without an account (immutable, so shared)."""

_Frozen = tuple[Any, ...]
"""A node as a tuple of bytes and tuples (an embedded node is a nested tuple)."""


def _freeze(node: list[Any]) -> _Frozen:
    return tuple(_freeze(item) if type(item) is list else item for item in node)


def _thaw(node: _Frozen) -> list[Any]:
    return [_thaw(item) if type(item) is tuple else item for item in node]


def _encode_bytes(item: bytes) -> bytes:
    size = len(item)
    if size == 1 and item[0] < 0x80:
        return item
    if size < 56:
        return bytes((0x80 + size,)) + item
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0xB7 + len(length),)) + length + item


def encode_node(node: list[Any]) -> bytes:
    """RLP of a trie node (a list of byte strings and embedded nodes): ``rlp.encode_raw``'s
    bytes (RLP has one encoding per value), without its generic type dispatch, which made
    encoding nodes a tenth of a transaction."""
    payload = b"".join(
        _encode_bytes(item)
        if type(item) is bytes
        else encode_node(item)
        if type(item) is list
        else encode_raw(item)
        for item in node
    )
    return _encode_list(payload)


def one_item_trie(item: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """The root and nodes of the trie holding ``item`` (not empty) at index 0, as py-evm's
    ``make_trie_root_and_nodes`` makes for a block's one transaction or receipt: a single
    leaf (key ``rlp(0)`` = nibbles 8, 0, with the leaf flag: ``0x20 0x80``), without building
    a trie for it."""
    encoded = encode_node([b"\x20\x80", item])
    root = keccak(encoded)
    return root, {root: encoded}


def _encode_int(value: int) -> bytes:
    return _encode_bytes(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def encode_account(account: Account) -> bytes:
    """RLP of an account (nonce, balance, storage root, code hash): ``rlp.encode(account,
    sedes=Account)``'s bytes, a third of its cost."""
    payload = b"".join(
        (
            _encode_int(account.nonce),
            _encode_int(account.balance),
            _encode_bytes(account.storage_root),
            _encode_bytes(account.code_hash),
        )
    )
    return _encode_list(payload)


def _encode_list(payload: bytes) -> bytes:
    size = len(payload)
    if size < 56:
        return bytes((0xC0 + size,)) + payload
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0xF7 + len(length),)) + length + payload


class NodeCache:
    """Trie nodes by hash, and node encodings by node, for one chain's tries.

    Args:
        size: how many nodes each of the two maps keeps (least recently used go first).
        roots: how many roots' values :attr:`accounts` and :attr:`slots` keep.
    """

    def __init__(self, size: int = DEFAULT_NODES, roots: int = DEFAULT_ROOTS) -> None:
        self.decoded: LRU[bytes, _Frozen] = LRU(size)
        """hash -> the node (frozen)."""
        self.mappings: LRU[_Frozen, tuple[bytes, bytes]] = LRU(size)
        """node (frozen) -> its (hash, encoding), for nodes stored by hash."""
        self.accounts = TrieValues(roots)
        """Accounts (RLP) by state root and address."""
        self.slots = TrieValues(roots)
        """Storage values (RLP) by storage root and slot."""
        self.decoded_accounts: LRU[bytes, Account] = LRU(size)
        """An account's RLP -> the account (py-evm's accounts are immutable)."""


class _CachingTrie(HexaryTrie):
    """A ``HexaryTrie`` that reads and maps nodes through a :class:`NodeCache`.

    The cache is a class attribute (:func:`vm_class` makes one subclass per chain) because
    py-trie makes new tries of ``type(self)`` with the constructor's own arguments
    (``squash_changes``).
    """

    __slots__ = ()
    node_cache: NodeCache

    def get_node(self, node_hash: Any) -> Any:
        # What HexaryTrie.get_node does for a blank node, an embedded one (already decoded, or
        # its encoding) and a hash (read, then decoded), with a memory of the last.
        if type(node_hash) is not bytes:
            return node_hash
        if node_hash in (BLANK_NODE, BLANK_NODE_HASH):
            return BLANK_NODE
        if len(node_hash) < 32:
            return rlp.decode(node_hash)
        cache = self.node_cache
        frozen = cache.decoded.get(node_hash)
        if frozen is not None:
            return _thaw(frozen)
        encoded = self.db[node_hash]  # a missing node raises KeyError, as py-trie expects
        node = rlp.decode(encoded)
        if type(node) is list:
            frozen = _freeze(node)
            cache.decoded[node_hash] = frozen
            cache.mappings[frozen] = (node_hash, encoded)
        return node

    def _node_to_db_mapping(self, node: Any) -> Any:
        """(hash, encoding) of a node stored by hash; (the node, None) of one embedded in its
        parent, which is cheap to encode and not remembered, so that no list is shared."""
        if type(node) is not list:
            validate_is_node(node)
            return BLANK_NODE, None  # the only node that is not a list
        mappings = self.node_cache.mappings
        frozen = _freeze(node)
        mapping = mappings.get(frozen)
        if mapping is not None:
            return mapping
        validate_is_node(node)
        encoded = encode_node(node)
        if len(encoded) < 32:
            return node, None
        mapping = (keccak(encoded), encoded)
        mappings[frozen] = mapping
        # A node just made is read back soon (the next block walks the same path).
        self.node_cache.decoded[mapping[0]] = frozen
        return mapping


class TrieValues:
    """What tries hold, by root: ``root -> {key: value}`` for the keys read or written there.

    A root fixes its trie's contents, so an entry is right for as long as the process lives.
    A root made from another by writing some keys (:meth:`carry`) starts with the other
    root's entries plus those writes: an account a block did not touch is read from the new
    root without a walk down the trie. Only the last ``size`` roots used are kept.
    """

    def __init__(self, size: int) -> None:
        self._roots: LRU[bytes, dict[bytes, bytes]] = LRU(size)

    def at(self, root: bytes) -> dict[bytes, bytes]:
        """The entries known at ``root`` (a dict to read and add to)."""
        known = self._roots.get(root)
        if known is None:
            known = {}
            self._roots[root] = known
        return known

    def carry(self, before: bytes, after: bytes, writes: Mapping[bytes, bytes]) -> None:
        """Root ``after`` is root ``before`` with ``writes`` (``b""`` for a deletion)."""
        if before == after:
            return
        known = self._roots.get(before)
        if known is None:
            return
        carried = {**known, **writes} if len(known) <= CARRY_LIMIT else dict(writes)
        existing = self._roots.get(after)
        if existing is not None:
            carried.update(existing)  # both right for this root
        self._roots[after] = carried


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

    trie_class: type[_CachingTrie]

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


class _CachingAccountStorageDB(AccountStorageDB):
    lookup_class: type[_CachingStorageLookup]

    def __init__(self, db: Any, storage_root: Hash32, address: Address) -> None:
        super().__init__(db, storage_root, address)
        # The same pipeline py-evm's constructor builds, over the caching lookup.
        lookup = self.lookup_class(db, storage_root, address)
        self._storage_lookup = lookup
        self._storage_cache = _RootedReads(lookup, lookup.root, lookup.trie_class.node_cache.slots)
        self._locked_changes = JournalDB(self._storage_cache)
        self._journal_storage = JournalDB(self._locked_changes)


class _CachingAccountDB(AccountDB):
    trie_class: type[_CachingTrie]
    storage_class: type[_CachingAccountStorageDB]

    def __init__(self, db: Any, state_root: Hash32 = BLANK_ROOT_HASH) -> None:
        super().__init__(db, state_root)
        # py-evm's account trie (a HashTrie over a pruning HexaryTrie), on the caching trie.
        trie = self.trie_class(self._batchtrie, state_root, prune=True)
        cast(Any, self._trie)._db = trie
        # and the account cache in front of it, keyed by the root as well.
        self._trie_cache = _RootedReads(
            self._trie_logger, lambda: trie.root_hash, trie.node_cache.accounts
        )
        self._journaltrie = JournalDB(self._trie_cache)
        self._applied: Any = None

    def _apply_account_diff_without_proof(self, diff: Any, trie: Any) -> None:
        self._applied = diff  # make_state_root's changes to the accounts, for make_state_root
        super()._apply_account_diff_without_proof(diff, trie)

    def make_state_root(self) -> Any:
        before = self._trie.root_hash
        self._applied = None
        root = super().make_state_root()
        diff, self._applied = self._applied, None
        if diff is not None:
            writes = dict(diff.pending_items())
            writes.update(dict.fromkeys(diff.deleted_keys(), b""))
            self.trie_class.node_cache.accounts.carry(before, root, writes)
        return root

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


def vm_class(cache: NodeCache) -> Any:
    """py-evm's ``PragueVM`` with its state's tries reading and writing through ``cache``."""
    trie = type("_ChainTrie", (_CachingTrie,), {"__slots__": (), "node_cache": cache})
    lookup = type("_ChainStorageLookup", (_CachingStorageLookup,), {"trie_class": trie})
    storage = type("_ChainAccountStorageDB", (_CachingAccountStorageDB,), {"lookup_class": lookup})
    accounts = type(
        "_ChainAccountDB", (_CachingAccountDB,), {"trie_class": trie, "storage_class": storage}
    )
    state = type("_ChainPragueState", (PragueState,), {"account_db_class": accounts})
    return type("_ChainPragueVM", (PragueVM,), {"_state_class": state})
