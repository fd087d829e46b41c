"""The devnet's state caches (reef.chain.devnet._trie and _state) and block writing change
nothing but speed: the same random sequence of transactions, snapshots, reverts and calls, run
on a chain with the caches and on one running py-evm's own state classes and ``persist_block``,
gives the same blocks (hashes, so state roots), the same balances, slots and call results at
every step, and the same database at the end.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import rlp
from devnet_ab_support import ChainPair
from hypothesis import given
from hypothesis import strategies as st

from reef.chain.devnet._engine import Chain
from reef.chain.devnet._trie import encode_node
from reef.chain.devnet._types import DevnetFault, TxRequest

# A contract of 41 bytes: 32 bytes of calldata return slot calldata[0:32]; 64 bytes store
# calldata[32:64] at slot calldata[0:32]; more than 64 store, then revert.
RUNTIME = bytes.fromhex(
    "366020146016576020356000355560403611602357005b6000355460005260206000f35b60006000fd"
)
# Copy the runtime (after these 11 bytes) to memory and return it.
INITCODE = bytes.fromhex(f"60{len(RUNTIME):02x}80600b6000396000f3") + RUNTIME
SLOTS = (0, 1, 2, 7, 2**255 + 3)
SINKS = tuple(bytes([0x50 + n]) * 20 for n in range(4))


def _read(slot: int) -> bytes:
    return slot.to_bytes(32, "big")


def test_random_transactions_snapshots_and_calls_match_plain_py_evm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pair = ChainPair(monkeypatch)
    contract = pair.deploy(0, INITCODE, 200_000)
    assert pair.cached.code(contract) == RUNTIME
    rng = random.Random(14)
    for step in range(160):
        op = rng.choice(
            ["transfer", "store", "store", "clear", "revert_tx", "mine", "snapshot", "revert"]
        )
        sender = rng.randrange(4)
        slot = rng.choice(SLOTS)
        if op == "transfer":
            pair.send(sender, rng.choice(SINKS), rng.randrange(3), b"", 21_000)
        elif op == "store":
            pair.send(sender, contract, 0, _read(slot) + _read(rng.randrange(1, 2**64)), 90_000)
        elif op == "clear":
            pair.send(sender, contract, 0, _read(slot) + _read(0), 90_000)
        elif op == "revert_tx":
            pair.send(sender, contract, 0, _read(slot) + _read(5) + b"\x01", 90_000)
        elif op == "mine":
            pair.now[0] += 1
            for chain in pair.chains:
                chain.mine()
            pair.mined += 1
        elif op == "snapshot":
            pair.snapshots.append((pair.cached.snapshot(), pair.plain.snapshot()))
        elif op == "revert" and pair.snapshots:
            ids = pair.snapshots[rng.randrange(len(pair.snapshots))]
            index = pair.snapshots.index(ids)
            assert pair.cached.revert(ids[0]) == pair.plain.revert(ids[1]) is True
            del pair.snapshots[index:]
            pair.reverts += 1
        pair.same()
        # Reads and calls at the head and at an earlier block agree, and a call that writes
        # leaves nothing behind.
        past = rng.randrange(pair.cached.block_number + 1)
        for where in ("latest", past):
            read = TxRequest(to=contract, data=_read(slot))
            write = TxRequest(to=contract, data=_read(slot) + _read(99))
            cached, plain = pair.chains
            assert cached.call(read, where) == plain.call(read, where)
            assert cached.storage(contract, slot, where) == plain.storage(contract, slot, where)
            for sink in SINKS:
                assert cached.balance(sink, where) == plain.balance(sink, where)
            assert cached.estimate_gas(write, where) == plain.estimate_gas(write, where)
            assert cached.call(write, where) == b""
            assert cached.storage(contract, slot, where) == plain.storage(contract, slot, where)
        assert step < 10 or any(pair.cached.storage(contract, s) for s in SLOTS)
    # The whole databases, nodes and chain records alike.
    assert pair.cached._database() == pair.plain._database()
    assert pair.mined > 100  # the sequence really mined and reverted blocks
    assert pair.reverts > 5
    # The caches were in use: nodes, accounts and slots were remembered.
    nodes = pair.cached._nodes
    assert len(nodes.decoded) > 0
    assert len(nodes.mappings) > 0


def test_a_checkpointed_database_gives_the_same_state_on_both_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A chain adopted from a database (a checkpoint) reads through fresh caches correctly."""
    pair = ChainPair(monkeypatch)
    pair.send(1, SINKS[0], 5, b"", 21_000)
    database = dict(pair.cached._database())
    restored = Chain(accounts=4, clock=pair.clock)
    restored._adopt_database(database)
    assert restored.head.hash == pair.plain.head.hash
    assert restored.balance(SINKS[0]) == pair.plain.balance(SINKS[0]) == 5


_nodes = st.recursive(
    st.binary(max_size=80),
    lambda inner: st.lists(inner, max_size=17),
    max_leaves=40,
)


@given(st.lists(_nodes, max_size=17))
def test_node_encoding_is_rlp(node: list[Any]) -> None:
    """encode_node gives pyrlp's bytes for every node shape (embedded nodes, long strings)."""
    assert encode_node(node) == rlp.encode(node)


def test_node_encoding_of_long_payloads_is_rlp() -> None:
    for size in (55, 56, 255, 256, 70_000):
        node = [b"\x81" * size, [b"\x00", b"\x7f", b"\x80"]]
        assert encode_node(node) == rlp.encode(node)


def test_the_caching_trie_matches_py_trie_with_embedded_nodes() -> None:
    """Short keys and values make nodes of under 32 bytes, embedded in their parents (and
    edited in place by py-trie): two caching tries sharing one cache, and py-trie's own, give
    the same roots and values after every write."""
    from trie.hexary import HexaryTrie

    from reef.chain.devnet._trie import CachingTrie, NodeCache

    cache = NodeCache(size=64)  # small: entries are evicted and read again
    trie_class = type("_TestTrie", (CachingTrie,), {"__slots__": (), "node_cache": cache})
    rng = random.Random(2929)
    for _ in range(3):
        plain = HexaryTrie({}, prune=True)
        cached = trie_class({}, prune=True)
        keys = [
            bytes([rng.randrange(4), rng.randrange(3)])[: rng.randrange(1, 3)] for _ in range(12)
        ]
        for _ in range(300):
            key = rng.choice(keys)
            value = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 4)))
            plain[key] = value
            cached[key] = value
            assert cached.root_hash == plain.root_hash
            probe = rng.choice(keys)
            assert cached[probe] == plain[probe]
    assert len(cache.decoded) > 0


@given(
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**256 - 1),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
)
def test_account_encoding_is_py_evms(nonce: int, balance: int, root: bytes, code: bytes) -> None:
    from eth.rlp.accounts import Account as EvmAccount

    from reef.chain.devnet._trie import encode_account

    account = EvmAccount(nonce, balance, root, code)
    assert encode_account(account) == rlp.encode(account, sedes=EvmAccount)


@given(st.binary(min_size=1, max_size=600))
def test_one_item_trie_is_py_evms(item: bytes) -> None:
    """A block's one transaction or receipt: root and nodes as py-evm's trie builds them."""
    from eth.db.trie import _make_trie_root_and_nodes

    from reef.chain.devnet._trie import one_item_trie

    assert one_item_trie(item) == _make_trie_root_and_nodes((item,))


# Jump to the destination in calldata[0:32]; JUMPDESTs at 4, 14 and 54 store 1, 2 and 3 at slot
# 0, and 0x5b bytes inside a PUSH2 (12, 13) and a PUSH32 (22..53) are no destinations.
JUMPER = bytes.fromhex(
    "600035565b6001600055006"  # PUSH1 0 CALLDATALOAD JUMP; 4: JUMPDEST, store 1, STOP; 11: PUSH2
    "15b5b5b6002600055007f"  # 0x5b5b; 14: JUMPDEST, store 2, STOP; 21: PUSH32
    + "5b" * 32
    + "5b600360005500"  # 54: JUMPDEST, store 3, STOP
)
JUMPER_INITCODE = bytes.fromhex(f"60{len(JUMPER):02x}80600b6000396000f3") + JUMPER
JUMP_TARGETS = (4, 14, 54, 12, 13, 22, 40, 53, 0, 3, 21, 55, len(JUMPER), 2**64)


def test_jumps_into_push_data_fail_as_on_plain_py_evm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The jump analysis a VM class shares between runs of the same code gives py-evm's answer
    whatever order the destinations are first asked in, mined and in calls alike."""
    pair = ChainPair(monkeypatch)
    contract = pair.deploy(0, JUMPER_INITCODE, 200_000)
    assert pair.cached.code(contract) == JUMPER
    assert JUMPER[4] == JUMPER[14] == JUMPER[54] == JUMPER[12] == JUMPER[40] == 0x5B
    rng = random.Random(9)
    outcomes: set[str] = set()
    for _ in range(3):
        for target in rng.sample(JUMP_TARGETS, len(JUMP_TARGETS)):
            pair.send(rng.randrange(4), contract, 0, _read(target), 60_000)
            pair.same()
            assert pair.cached.storage(contract, 0) == pair.plain.storage(contract, 0)
            results = []
            for chain in pair.chains:
                try:
                    results.append(repr(chain.call(TxRequest(to=contract, data=_read(target)))))
                except DevnetFault as exc:
                    results.append(str(exc))
            assert results[0] == results[1]
            outcomes.add(results[0])
    # Both kinds happened: runs that stopped at a destination and runs that faulted.
    assert "b''" in outcomes
    assert len(outcomes) > 1
    assert {pair.cached.storage(contract, 0)} <= {1, 2, 3}
    assert pair.cached._database() == pair.plain._database()
    # The analysis was shared: the VM class remembers the contract's code.
    vm = pair.cached._chain.get_vm_class_for_block_number(0)
    jumps = vm._state_class.computation_class._jumps
    valid, invalid = jumps[JUMPER]
    assert {4, 14, 54} <= valid
    assert {12, 13, 22, 40, 53} <= invalid


# LOG3 of the calldata with topics calldata[0:32], calldata[32:64] and a constant.
LOGGER = bytes.fromhex(
    "366000600037"  # CALLDATACOPY(0, 0, CALLDATASIZE)
    "7f" + "ab" * 32 + "602035600035366000a300"  # topics, LOG3(0, CALLDATASIZE), STOP
)
LOGGER_INITCODE = bytes.fromhex(f"60{len(LOGGER):02x}80600b6000396000f3") + LOGGER


def test_receipts_with_logs_are_plain_py_evms(monkeypatch: pytest.MonkeyPatch) -> None:
    """Receipts built with remembered bloom bits (every transaction type, logs with repeated and
    new topics, failed runs) give py-evm's blocks and databases."""
    pair = ChainPair(monkeypatch)
    contract = pair.deploy(0, LOGGER_INITCODE, 200_000)
    assert pair.cached.code(contract) == LOGGER
    rng = random.Random(5)
    blooms = set()
    for step in range(40):
        topics = _read(rng.choice((1, 2, step))) + _read(rng.choice((7, 2**255, step)))
        if step % 7:
            pair.send(
                rng.randrange(4), contract, 0, topics + bytes(rng.randrange(40)), 40_000, step % 3
            )
        else:  # past the intrinsic gas, short of LOG3's: out of gas, status 0, no logs
            pair.send(rng.randrange(4), contract, 0, topics, 23_000)
        pair.same()
        blooms.add(pair.cached.head.header.bloom)
    assert pair.mined == 41
    assert len(blooms) > 10
    assert 0 in blooms  # the failed runs' blocks
    assert pair.cached._database() == pair.plain._database()
    vm = pair.cached._chain.get_vm_class_for_block_number(0)
    assert contract in vm._bloom_bits
    assert b"\xab" * 32 in vm._bloom_bits
