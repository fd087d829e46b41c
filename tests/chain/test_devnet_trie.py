"""The devnet's batched trie updates (reef.chain.devnet._trie) are py-trie's: the same root
and the same stored nodes for any batch of writes and deletions, and a chain whose state
roots are made by them has plain py-evm's blocks, answers and whole database.
"""

from __future__ import annotations

import random
from typing import Any, cast

import pytest
from devnet_ab_support import ChainPair
from eth.db.batch import BatchDB
from eth_hash.auto import keccak
from trie.constants import BLANK_NODE_HASH
from trie.hexary import HexaryTrie

from reef.chain.devnet._trie import NodeCache, update_trie
from reef.chain.devnet._types import TxRequest


def _py_trie(
    base: dict[bytes, bytes], root: bytes, writes: dict[bytes, bytes]
) -> tuple[bytes, dict[bytes, bytes]]:
    """What py-evm does with a block's writes: py-trie, pruning, on a batch over the
    database, whose writes (never its deletes) are then kept."""
    batch = BatchDB(cast(Any, base), read_through_deletes=True)  # a dict serves as a database
    trie: Any = HexaryTrie(batch, root, prune=True)  # py-trie's item deletion is untyped
    for key, value in writes.items():
        if value:
            trie[key] = value
        else:
            del trie[key]
    return trie.root_hash, dict(batch.diff().pending_items())


def _check_batches(
    rng: random.Random, keys: list[bytes], rounds: int, cache: NodeCache, *, read_back: bool
) -> None:
    ours: dict[bytes, bytes] = {}
    theirs: dict[bytes, bytes] = {}
    root = BLANK_NODE_HASH
    present: dict[bytes, bytes] = {}
    for _ in range(rounds):
        writes: dict[bytes, bytes] = {}
        for _ in range(rng.choice((1, 2, 5, 20, 60))):
            key = rng.choice(keys)
            if rng.random() < 0.3:
                writes[key] = b""  # a deletion (of a key there or not)
            else:
                size = rng.choice((1, 2, 3, 33, 70))
                writes[key] = bytes(rng.randrange(1, 256) for _ in range(size))
        their_root, their_nodes = _py_trie(theirs, root, writes)
        our_root, our_nodes = update_trie(cache, ours, root, writes)
        assert our_root == their_root
        # The same database afterwards (nodes are stored by hash: a node stored again is
        # the same entry).
        theirs.update(their_nodes)
        ours.update(our_nodes)
        assert ours == theirs
        root = our_root
        for key, value in writes.items():
            if value:
                present[key] = value
            else:
                present.pop(key, None)
        if read_back:  # py-trie cannot read a key that ends inside an extension's path
            reader = HexaryTrie(ours, root)
            for key in keys:
                assert reader[key] == present.get(key, b"")
    # Everything deleted: back to the empty trie.
    writes = dict.fromkeys(keys, b"")
    their_root, _ = _py_trie(theirs, root, writes)
    our_root, _ = update_trie(cache, ours, root, writes)
    assert our_root == their_root == BLANK_NODE_HASH


@pytest.mark.parametrize("seed", range(4))
def test_hashed_keys_match_py_trie(seed: int) -> None:
    """State and storage tries: keys are 32-byte hashes."""
    rng = random.Random(seed)
    keys = [keccak(bytes([seed]) + n.to_bytes(2, "big")) for n in range(400)]
    _check_batches(rng, keys, 40, NodeCache(size=256), read_back=True)


@pytest.mark.parametrize("seed", range(6))
def test_short_and_prefix_keys_match_py_trie(seed: int) -> None:
    """Short keys and keys that prefix others: embedded nodes (under 32 bytes), values in
    branches, short roots (stored by hash all the same), joins and splits at every depth."""
    rng = random.Random(100 + seed)
    keys = sorted({bytes(rng.randrange(3) for _ in range(rng.randrange(0, 4))) for _ in range(40)})
    _check_batches(rng, keys, 60, NodeCache(size=16), read_back=False)


def test_a_write_that_changes_nothing_keeps_the_root() -> None:
    cache = NodeCache()
    db: dict[bytes, bytes] = {}
    root, nodes = update_trie(cache, db, BLANK_NODE_HASH, {b"\x01" * 32: b"a", b"\x02" * 32: b"b"})
    db.update(nodes)
    assert update_trie(cache, db, root, {b"\x01" * 32: b"a", b"\x03" * 32: b""})[0] == root


def test_a_missing_node_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        update_trie(NodeCache(), {}, b"\x11" * 32, {b"\x01" * 32: b"a"})


# A contract that stores each 64-byte pair of its calldata (slot, value): value 0 deletes.
STORE_PAIRS = bytes.fromhex("60005b803611600a57005b8060200135813555604001600256")
# PUSH1 len, DUP1, PUSH1 11, PUSH1 0, CODECOPY, PUSH1 0, RETURN, then the runtime.
INITCODE = bytes.fromhex(f"60{len(STORE_PAIRS):02x}80600b6000396000f3") + STORE_PAIRS
REVERTER = bytes.fromhex("60206000fd")  # revert with 32 zero bytes
REVERTER_INIT = bytes.fromhex(f"60{len(REVERTER):02x}80600b6000396000f3") + REVERTER


def _pairs(items: list[tuple[int, int]]) -> bytes:
    return b"".join(k.to_bytes(32, "big") + v.to_bytes(32, "big") for k, v in items)


def test_storage_heavy_chain_matches_plain_py_evm_to_the_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many slots (a storage trie several levels deep), set, changed and deleted to zero in
    batches, many accounts made by transfers, reverted transactions and calls: every block,
    receipt, call output, revert and gas estimate, and at the end the whole key-value store,
    as plain py-evm's."""
    pair = ChainPair(monkeypatch, accounts=3)
    store = pair.deploy(0, INITCODE)
    reverter = pair.deploy(0, REVERTER_INIT)
    assert pair.cached.code(store) == STORE_PAIRS
    rng = random.Random(1414)
    slots = [rng.randrange(2**256) for _ in range(150)] + list(range(40))
    sinks = [keccak(bytes([n, 7]))[:20] for n in range(120)]
    snapshots: list[tuple[int, int]] = []
    for _ in range(70):
        op = rng.choice(["store", "store", "store", "clear", "transfer", "revert", "snap", "oog"])
        sender = rng.randrange(3)
        if op in ("store", "clear"):
            chosen = rng.sample(slots, rng.choice((1, 3, 12, 30)))
            items = [
                (slot, 0 if op == "clear" or rng.random() < 0.2 else rng.randrange(1, 2**200))
                for slot in chosen
            ]
            pair.send(sender, store, 0, _pairs(items), 1_500_000)
        elif op == "transfer":
            pair.send(sender, rng.choice(sinks), rng.randrange(1, 10**9), b"", 21_000)
        elif op == "revert":
            pair.send(sender, reverter, 0, b"", 100_000)
        elif op == "oog":  # runs out of gas in its second or third SSTORE: status 0
            items = [(rng.choice(slots), rng.randrange(1, 2**64)) for _ in range(3)]
            pair.send(sender, store, 0, _pairs(items), 60_000)
        elif rng.random() < 0.5 or not snapshots:
            snapshots.append((pair.cached.snapshot(), pair.plain.snapshot()))
        else:
            ids = snapshots.pop(rng.randrange(len(snapshots)))
            assert pair.cached.revert(ids[0]) == pair.plain.revert(ids[1]) is True
            snapshots.clear()
        pair.same()
        probe = rng.choice(slots)
        for request in (
            TxRequest(to=store, data=_pairs([(probe, 5), (rng.choice(slots), 0)])),
            TxRequest(to=reverter, data=b""),
            TxRequest(sender=bytes(20), to=rng.choice(sinks), value=0),
        ):
            ours, plain = pair.answers(request)
            assert ours == plain
        assert pair.cached.storage(store, probe) == pair.plain.storage(store, probe)
    written = [s for s in slots if pair.plain.storage(store, s)]
    assert len(written) > 40  # a storage trie several levels deep
    for slot in slots:
        assert pair.cached.storage(store, slot) == pair.plain.storage(store, slot)
    assert pair.cached._database() == pair.plain._database()
