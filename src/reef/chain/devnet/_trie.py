"""The devnet's trie nodes: a memory of them across blocks, their encodings, and a block's
writes applied to a trie at once.

Why: reading a state walks its tries node by node, and writing one re-encodes and hashes the
nodes it replaces; in py-evm and py-trie, in pure Python and anew for every block, that was
most of a transaction's CPU (profiled over 350 transfers; see :mod:`reef.chain.devnet._state`).

What: a :class:`NodeCache`, owned by one chain, remembers

- the nodes of its tries by hash (a node is immutable by its hash, so a remembered node is
  right for as long as the process lives, across blocks, reverts and reorgs alike), and the
  hash and encoding of each node it has seen or made (a pure function of the node);
- the values (accounts, slots) read or written at each trie root (:class:`TrieValues`: a root
  fixes its trie's contents), carried to the root a block's writes make, so what a block did
  not touch is read at the next one without a walk;
- accounts by encoding (py-evm's accounts are immutable).

:class:`CachingTrie` is py-trie's ``HexaryTrie`` reading and mapping its nodes through one.
Every map is bounded (least recently used entries go). :func:`update_trie` applies a block's
writes to a trie in one batched update with py-trie's root and node set (see the section above
it), and :func:`encode_node`, :func:`encode_account`, :func:`encode_receipt` and
:func:`one_item_trie` give pyrlp's and py-trie's bytes without their generic machinery.

Nodes are handed out as fresh lists: py-trie edits the nodes it gets in place.

What it does not change: roots and stored nodes, which the tests check against py-trie's own
(hashed, short and prefix keys, embedded nodes) and, through the state, a whole chain's
database against plain py-evm's.

The bottom layer of the package: it imports none of its other modules (the layering test holds
it to that). py-evm's state classes over it are :mod:`reef.chain.devnet._state`'s.

One module (about 600 lines): the node memory, the node encodings and the batched update share
one node representation and its in-place editing rule; split, each part would restate them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import rlp
from eth.rlp.accounts import Account
from eth_hash.auto import keccak
from lru import LRU
from rlp.codec import encode_raw
from trie.constants import BLANK_NODE, BLANK_NODE_HASH
from trie.hexary import HexaryTrie
from trie.validation import validate_is_node

__all__ = [
    "CachingTrie",
    "NodeCache",
    "TrieValues",
    "encode_account",
    "encode_bytes",
    "encode_list",
    "encode_node",
    "encode_receipt",
    "one_item_trie",
    "update_trie",
]

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

_Frozen = tuple[Any, ...]
"""A node as a tuple of bytes and tuples (an embedded node is a nested tuple)."""


def _freeze(node: Any) -> _Frozen:
    """A node (lists, or tuples already) as nested tuples."""
    return tuple([_freeze(item) if type(item) in (list, tuple) else item for item in node])


def _thaw(node: Any) -> list[Any]:
    """A node (tuples, or lists already) as fresh nested lists."""
    return [_thaw(item) if type(item) in (list, tuple) else item for item in node]


# ---------------------------------------------------------------- a block's writes at once
#
# A block's writes to a hexary (Merkle Patricia) trie applied at once: the new root and the
# nodes to store, as py-trie's ``HexaryTrie`` makes them one key at a time.
#
# Why: making a block's state root was a fifth of a contract transaction's CPU, nearly all of it
# py-trie: each key written walks its path, turns keys into tuples of nibbles, re-encodes and
# hashes every node on the way (once to store the new one, once more to prune the old one, with
# reference counts), and the next key written under the same branch does it all again.
#
# What: :func:`update_trie` loads the nodes on the written keys' paths, applies every write to an
# in-memory copy of that part of the trie (paths as strings of hex digits, so a hash's nibbles
# are ``key.hex()`` and a hex-prefix key is one ``bytes.fromhex``), then encodes each changed
# node once, bottom up. A hexary trie is canonical (one shape for one set of keys and values),
# so the root is py-trie's whatever the order of the writes; the nodes it returns are the new
# trie's nodes that the writes made (every node stored by hash, and the root by hash even when
# it is short, as py-trie stores it), which is the set py-trie leaves in its batch after
# pruning the ones it replaced (py-evm never applies the deletes): the database ends the same.
# The tests check both against py-trie and a whole chain's database against plain py-evm's.
#
# Nodes are read through the chain's :class:`NodeCache` (a node is immutable by its hash), and
# the nodes made are added to it.

_LEAF: Final = 0
_EXTENSION: Final = 1
_BRANCH: Final = 2

_DIGITS: Final = "0123456789abcdef"
_INDEX: Final = {digit: index for index, digit in enumerate(_DIGITS)}


_Ref = Any
"""How a parent refers to a child: ``b""`` (none), a 32-byte hash (not loaded), a :class:`_Node`,
or, for a node loaded or encoded already, its raw form (an embedded node's list)."""


# Compared and hashed by identity (eq=False), as the updater tells "unchanged" by ``is``.
@dataclass(slots=True, eq=False)
class _Node:
    """A trie node in memory: a leaf (``path``, ``value``), an extension (``path``, ``child``)
    or a branch (``children``: 16 references and the value).

    ``ref`` is what the node's parent holds for it when it is unchanged from the stored trie
    (its hash, or its raw list when it is embedded in the parent), ``None`` for a new node.
    """

    kind: int
    path: str = ""
    value: bytes = b""
    child: _Ref = b""
    children: list[_Ref] | None = None
    ref: Any = None


def encode_bytes(item: bytes) -> bytes:
    """RLP of a byte string."""
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
    parts: list[bytes] = []
    append = parts.append
    for item in node:
        if type(item) is bytes:
            # The common items first: a branch's empty slots and its children's hashes.
            if not item:
                append(b"\x80")
            elif len(item) == 32:
                append(b"\xa0" + item)
            else:
                append(encode_bytes(item))
        elif type(item) is list:
            append(encode_node(item))
        else:
            append(encode_raw(item))
    return encode_list(b"".join(parts))


def encode_list(payload: bytes) -> bytes:
    """RLP of a list whose items' encodings, joined, are ``payload``."""
    size = len(payload)
    if size < 56:
        return bytes((0xC0 + size,)) + payload
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0xF7 + len(length),)) + length + payload


def _hex_prefix(path: str, leaf: bool) -> bytes:
    """The compact (hex-prefix) encoding of a node's path (Yellow Paper, appendix C)."""
    flag = 2 if leaf else 0
    if len(path) % 2:
        return bytes.fromhex(_DIGITS[flag + 1] + path)
    return bytes.fromhex(_DIGITS[flag] + "0" + path)


class _Updater:
    """One batch of writes on one trie."""

    def __init__(self, cache: NodeCache, db: Mapping[bytes, bytes]) -> None:
        self._cache = cache
        self._db = db
        self.made: dict[bytes, bytes] = {}
        """hash -> encoding of every node made and stored by hash."""

    # ------------------------------------------------------------------------------ reading

    def _resolve(self, ref: _Ref) -> _Node | None:
        if type(ref) is _Node:
            return ref
        if type(ref) is bytes:
            if not ref:
                return None
            return self._load(ref)
        return self._from_raw(ref, ref)  # an embedded node (a list or a tuple)

    def _load(self, node_hash: bytes) -> _Node:
        cache = self._cache
        frozen = cache.decoded.get(node_hash)
        if frozen is None:
            encoded = self._db[node_hash]  # a missing node raises KeyError, as in py-trie
            raw = rlp.decode(encoded)
            frozen = _freeze(raw)
            cache.decoded[node_hash] = frozen
            cache.mappings[frozen] = (node_hash, encoded)
        return self._from_raw(frozen, node_hash)

    def _from_raw(self, raw: Any, ref: Any) -> _Node:
        if len(raw) == 17:
            children: list[_Ref] = [
                item if type(item) is bytes else _thaw(item) for item in raw[:16]
            ]
            children.append(raw[16])
            return _Node(_BRANCH, children=children, ref=_as_ref(ref))
        digits = raw[0].hex()
        flag = digits[0]
        path = digits[1:] if flag in "13" else digits[2:]
        if flag in "23":
            return _Node(_LEAF, path, value=raw[1], ref=_as_ref(ref))
        child = raw[1]
        return _Node(
            _EXTENSION,
            path,
            child=child if type(child) is bytes else _thaw(child),
            ref=_as_ref(ref),
        )

    # ------------------------------------------------------------------------------ writing

    def insert(self, node: _Node | None, path: str, value: bytes) -> _Node:
        if node is None:
            return _Node(_LEAF, path, value=value)
        kind = node.kind
        if kind == _BRANCH:
            children = node.children
            assert children is not None
            if not path:
                if children[16] == value:
                    return node
                updated = list(children)
                updated[16] = value
                return _Node(_BRANCH, children=updated)
            index = _INDEX[path[0]]
            child = self._resolve(children[index])
            new_child = self.insert(child, path[1:], value)
            if new_child is child:
                return node
            updated = list(children)
            updated[index] = new_child
            return _Node(_BRANCH, children=updated)
        own = node.path
        if kind == _LEAF and own == path:
            return node if node.value == value else _Node(_LEAF, path, value=value)
        if kind == _EXTENSION and path.startswith(own):
            child = self._resolve(node.child)
            new_child = self.insert(child, path[len(own) :], value)
            if new_child is child:
                return node
            return _Node(_EXTENSION, own, child=new_child)
        return _split(node, path, value)

    def delete(self, node: _Node | None, path: str) -> _Node | None:
        if node is None:
            return None
        kind = node.kind
        if kind == _LEAF:
            return None if node.path == path else node
        if kind == _EXTENSION:
            own = node.path
            if not path.startswith(own):
                return node
            child = self._resolve(node.child)
            new_child = self.delete(child, path[len(own) :])
            if new_child is child:
                return node
            if new_child is None:
                return None
            if new_child.kind == _BRANCH:
                return _Node(_EXTENSION, own, child=new_child)
            # A shorter leaf or extension below: the two paths join.
            return _Node(
                new_child.kind, own + new_child.path, value=new_child.value, child=new_child.child
            )
        children = node.children
        assert children is not None
        updated = list(children)
        if not path:
            if not children[16]:
                return node
            updated[16] = b""
        else:
            index = _INDEX[path[0]]
            child = self._resolve(children[index])
            new_child = self.delete(child, path[1:])
            if new_child is child:
                return node
            updated[index] = b"" if new_child is None else new_child
        return self._normalise(updated)

    def _normalise(self, children: list[_Ref]) -> _Node | None:
        """A branch left with one item becomes a leaf or extension (py-trie's
        ``_normalize_branch_node``)."""
        used = [index for index in range(16) if _present(children[index])]
        value = children[16]
        if len(used) + (1 if value else 0) >= 2:
            return _Node(_BRANCH, children=children)
        if value:
            return _Node(_LEAF, "", value=value)
        if not used:
            return None
        index = used[0]
        ref = children[index]
        sub = self._resolve(ref)
        assert sub is not None
        digit = _DIGITS[index]
        if sub.kind == _BRANCH:
            return _Node(_EXTENSION, digit, child=ref)
        return _Node(sub.kind, digit + sub.path, value=sub.value, child=sub.child)

    # ----------------------------------------------------------------------------- encoding

    def reference(self, node: _Node | None) -> Any:
        """What a parent holds for ``node``: its hash (the node then stored) or, when its
        encoding is under 32 bytes, the node itself."""
        if node is None:
            return b""
        if node.ref is not None:
            return node.ref
        raw = self._raw(node)
        encoded = encode_node(raw)
        if len(encoded) < 32:
            node.ref = raw
            return raw
        node_hash = self._store(raw, encoded)
        node.ref = node_hash
        return node_hash

    def root(self, node: _Node | None) -> bytes:
        """The trie's root hash; the root node is stored by hash even when it is short."""
        if node is None:
            return BLANK_NODE_HASH
        if type(node.ref) is bytes:
            return node.ref
        raw = node.ref if node.ref is not None else self._raw(node)
        return self._store(raw, encode_node(raw))

    def _raw(self, node: _Node) -> list[Any]:
        kind = node.kind
        if kind == _LEAF:
            return [_hex_prefix(node.path, True), node.value]
        if kind == _EXTENSION:
            return [_hex_prefix(node.path, False), self._child(node.child)]
        children = node.children
        assert children is not None
        reference = self.reference
        raw = [reference(ref) if type(ref) is _Node else ref for ref in children[:16]]
        raw.append(children[16])
        return raw

    def _child(self, ref: _Ref) -> Any:
        if type(ref) is _Node:
            return self.reference(ref)
        return ref

    def _store(self, raw: list[Any], encoded: bytes) -> bytes:
        node_hash: bytes = keccak(encoded)
        self.made[node_hash] = encoded
        frozen = _freeze(raw)
        self._cache.decoded[node_hash] = frozen
        self._cache.mappings[frozen] = (node_hash, encoded)
        return node_hash


def _split(node: _Node, path: str, value: bytes) -> _Node:
    """A leaf or an extension whose path ``path`` leaves: a branch where the two part, under
    an extension for what they share (py-trie's ``_set_kv_node``)."""
    own = node.path
    common = 0
    limit = min(len(own), len(path))
    while common < limit and own[common] == path[common]:
        common += 1
    children: list[_Ref] = [b""] * 17
    own_rest, new_rest = own[common:], path[common:]
    if node.kind == _LEAF:
        if own_rest:
            children[_INDEX[own_rest[0]]] = _Node(_LEAF, own_rest[1:], value=node.value)
        else:
            children[16] = node.value
    elif len(own_rest) == 1:
        children[_INDEX[own_rest[0]]] = node.child
    else:
        children[_INDEX[own_rest[0]]] = _Node(_EXTENSION, own_rest[1:], child=node.child)
    if new_rest:
        children[_INDEX[new_rest[0]]] = _Node(_LEAF, new_rest[1:], value=value)
    else:
        children[16] = value
    branch = _Node(_BRANCH, children=children)
    if common:
        return _Node(_EXTENSION, path[:common], child=branch)
    return branch


def _present(ref: _Ref) -> bool:
    return type(ref) is _Node or bool(ref)


def _as_ref(ref: Any) -> Any:
    return ref if type(ref) is bytes else _thaw(ref)


def update_trie(
    cache: NodeCache,
    db: Mapping[bytes, bytes],
    root_hash: bytes,
    writes: Mapping[bytes, bytes],
) -> tuple[bytes, dict[bytes, bytes]]:
    """Apply ``writes`` (key -> value, ``b""`` deleting the key, as py-trie's ``set``) to the
    trie at ``root_hash`` whose nodes are in ``db``.

    Returns:
        The new root hash, and the nodes to store for it (hash -> encoding): those py-trie
        would have written for the same writes and not pruned again.

    Raises:
        KeyError: if a node on a written key's path is missing from ``db``.
    """
    updater = _Updater(cache, db)
    root = None if root_hash == BLANK_NODE_HASH else updater._load(root_hash)
    for key, value in writes.items():
        path = key.hex()
        root = updater.insert(root, path, value) if value else updater.delete(root, path)
    return updater.root(root), updater.made


def one_item_trie(item: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """The root and nodes of the trie holding ``item`` (not empty) at index 0, as py-evm's
    ``make_trie_root_and_nodes`` makes for a block's one transaction or receipt: a single
    leaf (key ``rlp(0)`` = nibbles 8, 0, with the leaf flag: ``0x20 0x80``), without building
    a trie for it."""
    encoded = encode_node([b"\x20\x80", item])
    root = keccak(encoded)
    return root, {root: encoded}


def _encode_int(value: int) -> bytes:
    return encode_bytes(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def encode_receipt(receipt: Any) -> bytes:
    """A receipt's ``encode()`` (py-evm's: the type byte of a typed one, then the RLP of
    status, gas used, the 256-byte bloom and the logs, each log's topics as 32-byte words),
    without pyrlp's generic serialisation, a fortieth of a transfer."""
    logs = b"".join(
        encode_list(
            encode_bytes(log.address)
            + encode_list(b"".join(encode_bytes(topic.to_bytes(32, "big")) for topic in log.topics))
            + encode_bytes(log.data)
        )
        for log in receipt.logs
    )
    payload = (
        encode_bytes(receipt.state_root)
        + _encode_int(receipt.gas_used)
        + encode_bytes(receipt.bloom.to_bytes(256, "big"))
        + encode_list(logs)
    )
    type_id = receipt.type_id
    body = encode_list(payload)
    return body if type_id is None else bytes((type_id,)) + body


def encode_account(account: Account) -> bytes:
    """RLP of an account (nonce, balance, storage root, code hash): ``rlp.encode(account,
    sedes=Account)``'s bytes, a third of its cost."""
    payload = b"".join(
        (
            _encode_int(account.nonce),
            _encode_int(account.balance),
            encode_bytes(account.storage_root),
            encode_bytes(account.code_hash),
        )
    )
    return encode_list(payload)


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


class CachingTrie(HexaryTrie):
    """A ``HexaryTrie`` that reads and maps nodes through a :class:`NodeCache`.

    The cache is a class attribute (:func:`reef.chain.devnet._state.state_class` makes one
    subclass per chain) because
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
