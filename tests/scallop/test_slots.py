"""Handshake slots shared fairly per peer address (the pure rules; sockets in test_fairness.py
and tests/serve/test_scallop_flood.py)."""

from __future__ import annotations

import pytest

from reef._peers import peer_group
from reef.scallop._slots import HandshakeSlots


def slots(capacity: int = 4, per_peer: int = 3, busy: float = 1.0) -> HandshakeSlots:
    return HandshakeSlots(capacity=capacity, per_peer=per_peer, busy_timeout=busy)


def test_one_address_holds_at_most_its_share_even_when_slots_are_free() -> None:
    pool = slots(capacity=10, per_peer=3)
    for _ in range(3):
        assert pool.admit("10.0.0.1", 0.0).slot is not None
    refused = pool.admit("10.0.0.1", 0.0)
    assert refused.slot is None
    assert "3 handshakes already in progress from 10.0.0.1" in refused.reason
    assert pool.admit("10.0.0.2", 0.0).slot is not None  # another address is not affected
    assert len(pool) == 4


def test_when_full_the_heaviest_peer_yields_its_oldest_slot() -> None:
    pool = slots(capacity=4, per_peer=3)
    heavy = [pool.admit("10.0.0.1", t).slot for t in (0.0, 0.1, 0.2)]
    pool.admit("10.0.0.2", 0.3)
    newcomer = pool.admit("10.0.0.3", 0.4)
    assert newcomer.slot is not None
    assert newcomer.evict is heavy[0]
    assert heavy[0] is not None
    assert heavy[0].evicted
    assert pool.held_by("10.0.0.1") == 2
    # Now everyone holds at most 2 and the newcomer's peer 1: a fourth address with 0 still
    # takes from the heaviest (10.0.0.1, 2 > 0); the next one from 10.0.0.3 (1) finds no
    # heavier peer than 2 > 1 -> takes again from a peer with 2.
    assert pool.admit("10.0.0.4", 0.5).evict is heavy[1]


def test_when_full_and_fair_a_handshake_older_than_busy_timeout_is_dropped() -> None:
    pool = slots(capacity=2, per_peer=2, busy=1.0)
    first = pool.admit("10.0.0.1", 0.0).slot
    pool.admit("10.0.0.2", 0.5)
    # 10.0.0.2 already holds as many as anyone: no one yields to it, and no handshake is a
    # second old yet, so it waits for its own; a second later the stalled one is dropped.
    young = pool.admit("10.0.0.2", 0.9)
    assert young.slot is not None
    assert young.slot.waiting
    assert young.evict is None
    pool.give_up(young.slot)
    late = pool.admit("10.0.0.2", 1.0)
    assert late.slot is not None
    assert not late.slot.waiting
    assert late.evict is first


def test_when_full_a_peer_holding_nothing_always_gets_a_slot() -> None:
    pool = slots(capacity=2, per_peer=2, busy=1.0)
    pool.admit("10.0.0.1", 0.0)
    pool.admit("10.0.0.2", 0.0)
    # 10.0.0.3 holds 0 < 1: it takes the oldest slot of a heaviest peer, whatever its age.
    taken = pool.admit("10.0.0.3", 0.1)
    assert taken.evict is not None
    assert taken.evict.peer == "10.0.0.1"


def test_a_peer_with_handshakes_under_way_queues_for_its_own_next_slot() -> None:
    pool = slots(capacity=2, per_peer=3)
    mine = pool.admit("10.0.0.1", 0.0).slot
    pool.admit("10.0.0.2", 0.0)
    place = pool.admit("10.0.0.1", 0.1).slot
    assert place is not None
    assert place.waiting
    assert len(pool) == 2
    assert mine is not None
    heir = pool.release(mine, 0.3)
    assert heir is place
    assert not place.waiting
    assert place.started == 0.3
    assert pool.held_by("10.0.0.1") == 1
    assert len(pool) == 2
    # A wait that ends counts no more; releasing twice is harmless.
    other = pool.admit("10.0.0.1", 0.4).slot
    assert other is not None
    assert other.waiting
    pool.give_up(other)
    assert pool.waiting() == 0
    assert pool.release(mine, 0.5) is None


def test_handshakes_still_waiting_for_a_first_message_are_dropped_first() -> None:
    pool = slots(capacity=3, per_peer=3, busy=1.0)
    honest = pool.admit("10.0.0.1", 0.0).slot
    stalled = pool.admit("10.0.0.1", 0.5).slot
    assert honest is not None
    assert stalled is not None
    honest.under_way = True  # its client's first message came at once
    pool.admit("10.0.0.2", 0.6)
    # 10.0.0.3 holds nothing, 10.0.0.1 the most: it yields its stalled slot, not the older one.
    assert pool.admit("10.0.0.3", 0.7).evict is stalled
    # Full and fair now (everyone 1): past busy_timeout the stalled one of 10.0.0.2 goes first.
    assert pool.admit("10.0.0.2", 2.0).evict is not honest


def test_many_addresses_of_stalled_handshakes_do_not_evict_one_hosts_enclaves() -> None:
    # The flood CI replayed (tests/serve/test_scallop_flood.py, 125 addresses): a crowd of
    # addresses holds two stalled slots each, and one host's four enclaves handshake at once.
    # That host then holds the most, so "the heaviest peer yields" took an enclave's slot for
    # the crowd's next newcomer, and the enclave got no seed.
    pool = slots(capacity=20, per_peer=16, busy=1.0)
    crowd = [f"10.1.0.{i}" for i in range(8)]
    for i, peer in enumerate(crowd * 2):
        pool.admit(peer, i * 0.01)
    enclaves = []
    for i in range(4):
        slot = pool.admit("10.0.0.1", 0.5 + i * 0.01).slot
        assert slot is not None
        assert not slot.waiting
        enclaves.append(slot)
    for slot in enclaves[:3]:
        slot.under_way = True  # the fourth just connected: its first message is not in yet
    for n in range(40):  # the crowd's evicted connections come back, each from a fresh address
        taken = pool.admit(f"10.2.0.{n}", 0.6 + n * 0.01)
        assert taken.evict is not None
        assert taken.evict.peer != "10.0.0.1", f"newcomer {n} evicted an enclave's handshake"
        if n == 10:
            enclaves[3].under_way = True  # its first message arrives
    assert pool.held_by("10.0.0.1") == 4


@pytest.mark.parametrize(
    ("peername", "group"),
    [
        (("127.0.0.2", 5000), "127.0.0.2"),
        (("2001:db8::1", 5000, 0, 0), "2001:db8::/64"),
        (("2001:db8::ffff:1", 5000, 0, 0), "2001:db8::/64"),
        (("2001:db8:0:1::1", 5000, 0, 0), "2001:db8:0:1::/64"),
        (("::ffff:10.1.2.3", 5000, 0, 0), "10.1.2.3"),
        (("fe80::1%lo", 5000, 0, 1), "fe80::/64"),
        (None, "None"),
    ],
)
def test_peers_are_grouped_by_address_and_ipv6_by_64(peername: object, group: str) -> None:
    assert peer_group(peername) == group
