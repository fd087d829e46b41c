"""Several reader threads fetch ranges at once (for a source of the node's JSON logs): the same
events are stored exactly once and in chain order, a failed range keeps every range before it and
nothing after it, and a range is committed while the next one is still being read."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from indexer_fakes import MARKET, FakeChain, deposited, opened

from reef.chain import IndexedEvent, Indexer
from reef.chain._block_source import LogEntrySource, raw_log_entry
from reef.errors import MisuseError, RPCError


@dataclass
class JsonChain(FakeChain):
    """A FakeChain that answers logs as the node's JSON objects, as a JSON-RPC client does, and
    lets a test hold a range's read (``hold``) or fail it (``fail_at``)."""

    hold: dict[int, threading.Event] = field(default_factory=dict)  # range start -> released
    meet: dict[int, threading.Barrier] = field(default_factory=dict)  # range start -> barrier
    fail_at: int | None = None  # the range start whose logs fail

    def log_entries(
        self, address: str, from_block: int, to_block: int
    ) -> Sequence[Mapping[str, Any]]:
        gate = self.hold.get(from_block)
        if gate is not None:
            assert gate.wait(timeout=30), f"range {from_block} was never released"
        barrier = self.meet.get(from_block)
        if barrier is not None:
            barrier.wait()  # BrokenBarrierError unless the other ranges are read meanwhile
        if from_block == self.fail_at:
            self.calls.append(("logs", from_block, to_block))
            raise RPCError("eth_getLogs failed: connection reset")
        return [raw_log_entry(log) for log in self.logs(address, from_block, to_block)]


def _mined(blocks: int) -> JsonChain:
    chain = JsonChain()
    for n in range(blocks):
        chain.mine(opened(n), deposited(n, n + 1))
    return chain


def _stored(indexer: Indexer) -> list[tuple[int, int, object]]:
    events: list[IndexedEvent] = indexer.events(limit=10_000)
    return [(e.block_number, e.log_index, e.event) for e in events]


def test_a_json_source_gets_two_readers_and_others_one(tmp_path: Path) -> None:
    assert isinstance(JsonChain(), LogEntrySource)
    assert not isinstance(FakeChain(), LogEntrySource)
    chain = _mined(8)
    # The first two ranges each wait until the other has started: only two readers fetching
    # at once get past them (else the barrier breaks and the poll raises).
    started = threading.Barrier(2, timeout=30)
    chain.meet = {0: started, 2: started}
    indexer = Indexer(chain, f"sqlite:///{tmp_path / 'a.db'}", contract=MARKET, block_range=2)
    assert indexer.poll() == 16
    with pytest.raises(MisuseError):
        Indexer(chain, f"sqlite:///{tmp_path / 'b.db'}", contract=MARKET, readers=0)


@pytest.mark.parametrize("readers", [2, 3])
def test_several_readers_store_what_one_stores(tmp_path: Path, readers: int) -> None:
    chain = _mined(40)
    one = Indexer(
        chain, f"sqlite:///{tmp_path / '1.db'}", contract=MARKET, block_range=3, readers=1
    )
    assert one.poll() == 80
    many = Indexer(
        chain,
        f"sqlite:///{tmp_path / 'n.db'}",
        contract=MARKET,
        block_range=3,
        readers=readers,
        fetch_ahead=4,
    )
    chain.calls.clear()
    assert many.poll() == 80
    assert sorted(chain.calls) == [("logs", low, min(low + 2, 39)) for low in range(0, 40, 3)]
    assert _stored(many) == _stored(one)
    ids = [e.id for e in many.events(limit=100)]
    assert ids == sorted(ids)  # stored in chain order
    assert many.poll() == 0


def test_a_failed_range_keeps_the_ranges_before_it_and_none_after(tmp_path: Path) -> None:
    chain = _mined(20)
    chain.fail_at = 9  # the fourth range of three blocks
    indexer = Indexer(
        chain, f"sqlite:///{tmp_path / 'f.db'}", contract=MARKET, block_range=3, readers=3
    )
    with pytest.raises(RPCError, match="connection reset"):
        indexer.poll()
    checkpoint = indexer.checkpoint()
    assert checkpoint is not None
    assert checkpoint.last_block == 8
    assert [(n, i) for n, i, _ in _stored(indexer)] == [(n, i) for n in range(9) for i in (0, 1)]
    chain.fail_at = None
    assert indexer.poll() == 22
    assert [(n, i) for n, i, _ in _stored(indexer)] == [(n, i) for n in range(20) for i in (0, 1)]


def test_a_range_is_committed_while_the_next_is_still_read(tmp_path: Path) -> None:
    chain = _mined(6)
    released = threading.Event()
    chain.hold = {3: released}  # the second range waits until the first is in the database
    db = tmp_path / "c.db"
    indexer = Indexer(chain, f"sqlite:///{db}", contract=MARKET, block_range=3)
    watcher = sa.create_engine(f"sqlite:///{db}")
    indexer.checkpoint()  # the tables exist before the watcher looks

    def release_once_stored() -> None:
        for _ in range(3000):
            with watcher.connect() as conn:
                stored = conn.execute(sa.text("SELECT count(*) FROM job_events")).scalar()
            if stored == 6:
                released.set()
                return
            threading.Event().wait(0.01)

    watching = threading.Thread(target=release_once_stored)
    watching.start()
    assert indexer.poll() == 12
    watching.join()
    watcher.dispose()
    assert released.is_set()  # else the second range's read would have failed its wait
