"""The indexer's storage layer against a scriptable chain: exactly-once storage, confirmation
depth, failures part-way, reorgs within and beyond the depth, adaptive ranges, resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from indexer_fakes import MARKET, FakeChain, deposited, job, opened

from reef.chain import IndexedEvent, Indexer, oyster_event_name
from reef.errors import ChainError, ConfigError, MisuseError, RPCError


def make_indexer(chain: FakeChain, db: str, **kwargs: object) -> Indexer:
    return Indexer(chain, db, contract=MARKET, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'index.db'}"


def keys(events: list[IndexedEvent]) -> list[tuple[int, int]]:
    return [(e.block_number, e.log_index) for e in events]


def test_events_are_stored_in_oysters_job_events_shape(db: str) -> None:
    chain = FakeChain()
    chain.mine(opened(1), deposited(1, 500))
    indexer = make_indexer(chain, db)
    assert indexer.poll() == 2
    first, second = indexer.events()
    assert first.name == "Opened"
    assert first.job_id == "0x" + job(1).hex()
    assert first.data == {
        "job_id": "0x" + job(1).hex(),
        "metadata": json.dumps({"n": 1}),
        "owner": "0x" + "0c" * 20,
        "provider": "0x" + "0b" * 20,
        "rate": hex(10**14),
        "balance": hex(10**6 + 1),
        "timestamp": hex(1_700_000_001),
    }
    assert second.name == "Deposited"
    assert second.data == {"job_id": first.job_id, "from": "0x" + "0d" * 20, "amount": hex(500)}
    assert first.id < second.id


def test_oyster_names() -> None:
    # Oyster's job_events names (reference §4.4), for each MarketV1 job event.
    oyster = {
        "JobOpened": "Opened",
        "JobSettled": "Settled",
        "JobClosed": "Closed",
        "JobDeposited": "Deposited",
        "JobWithdrew": "Withdrew",
        "JobReviseRateInitiated": "ReviseRateInitiated",
        "JobReviseRateCancelled": "ReviseRateCancelled",
        "JobReviseRateFinalized": "ReviseRateFinalized",
        "JobMetadataUpdated": "MetadataUpdated",
    }
    assert {name: oyster_event_name(name) for name in oyster} == oyster
    assert oyster_event_name("ProviderAdded") == "ProviderAdded"
    assert oyster_event_name("LockCreated") == "LockCreated"


def test_confirmation_depth_holds_back_recent_blocks(db: str) -> None:
    chain = FakeChain()
    for n in range(5):
        chain.mine(opened(n))
    indexer = make_indexer(chain, db, confirmations=2)
    assert indexer.poll() == 3
    checkpoint = indexer.checkpoint()
    assert checkpoint is not None
    assert (checkpoint.last_block, checkpoint.events) == (2, 3)
    assert checkpoint.last_block_timestamp == chain.block(2).timestamp
    assert indexer.chain_time() == chain.block(2).timestamp
    chain.mine()
    assert indexer.poll() == 1
    assert keys(indexer.events()) == [(0, 0), (1, 0), (2, 0), (3, 0)]


def test_polling_again_stores_nothing_twice(db: str) -> None:
    chain = FakeChain()
    chain.mine(opened(1))
    indexer = make_indexer(chain, db)
    indexer.poll()
    assert indexer.poll() == 0
    assert make_indexer(chain, db).poll() == 0  # a new process resumes at the checkpoint
    assert len(indexer.events()) == 1


def test_a_failure_part_way_keeps_earlier_ranges_and_repeats_none(db: str) -> None:
    chain = FakeChain()
    for n in range(10):
        chain.mine(opened(n))
    indexer = make_indexer(chain, db, block_range=3)
    chain.fail_on["logs"] = 2  # the third getLogs call fails
    with pytest.raises(RPCError):
        indexer.poll()
    checkpoint = indexer.checkpoint()
    assert checkpoint is not None
    assert checkpoint.last_block == 5
    assert len(indexer.events()) == 6
    assert indexer.poll() == 4
    stored = indexer.events()
    assert keys(stored) == [(n, 0) for n in range(10)]
    assert [e.id for e in stored] == sorted({e.id for e in stored})


def test_a_block_hash_failure_after_reading_logs_stores_nothing_of_that_range(db: str) -> None:
    chain = FakeChain()
    for n in range(4):
        chain.mine(opened(n))
    indexer = make_indexer(chain, db, block_range=2)
    chain.fail_on["block"] = 1  # the range's closing hash of the second range
    with pytest.raises(RPCError):
        indexer.poll()
    assert keys(indexer.events()) == [(0, 0), (1, 0)]
    indexer.poll()
    assert keys(indexer.events()) == [(n, 0) for n in range(4)]


def test_an_undecodable_log_fails_the_range_without_a_partial_write(db: str) -> None:
    chain = FakeChain()
    chain.mine(opened(1))
    number = chain.mine(opened(2))
    block_hash, logs = chain.blocks[number]
    broken = logs[0].__class__(**{**logs[0].__dict__, "data": b"\x00" * 7})
    chain.blocks[number] = (block_hash, [broken])
    indexer = make_indexer(chain, db)
    with pytest.raises(ChainError, match="malformed JobOpened"):
        indexer.poll()
    assert indexer.events() == []
    assert indexer.checkpoint() is None


def test_a_reorg_within_the_confirmation_depth_is_never_seen(db: str) -> None:
    chain = FakeChain()
    chain.mine(opened(1))
    chain.mine(opened(2))
    chain.mine(opened(3))
    indexer = make_indexer(chain, db, confirmations=2)
    indexer.poll()
    assert keys(indexer.events()) == [(0, 0)]
    # blocks 1 and 2 are replaced: job 2 is gone, job 22 appears in its place
    chain.reorg(1, "b", [[opened(22)], [], []])
    indexer.poll()
    stored = indexer.events()
    assert [e.job_id for e in stored] == ["0x" + job(1).hex(), "0x" + job(22).hex()]


def test_a_reorg_deeper_than_the_depth_stops_the_indexer(db: str) -> None:
    chain = FakeChain()
    chain.mine(opened(1))
    chain.mine(opened(2))
    indexer = make_indexer(chain, db)
    indexer.poll()
    chain.reorg(1, "b", [[opened(9)], []])
    with pytest.raises(ChainError, match="reorganisation deeper"):
        indexer.poll()
    assert len(indexer.events()) == 2  # nothing rewritten


def test_ranges_are_halved_when_the_node_refuses_them(db: str) -> None:
    chain = FakeChain(max_range=4)
    for n in range(20):
        chain.mine(opened(n))
    indexer = make_indexer(chain, db, block_range=16)
    assert indexer.poll() == 20
    assert all(to - frm + 1 <= 16 for _, frm, to in chain.calls)
    assert keys(indexer.events()) == [(n, 0) for n in range(20)]


def test_connection_failures_are_not_mistaken_for_range_limits(db: str) -> None:
    chain = FakeChain()
    chain.mine(opened(1))
    chain.mine(opened(2))
    chain.fail_on["logs"] = 0
    indexer = make_indexer(chain, db)
    with pytest.raises(RPCError, match="connection refused"):
        indexer.poll()
    assert chain.calls == [("logs", 0, 1)]


def test_start_block_skips_history(db: str) -> None:
    chain = FakeChain()
    chain.mine(opened(1))
    chain.mine(opened(2))
    indexer = make_indexer(chain, db, start_block=1)
    indexer.poll()
    assert keys(indexer.events()) == [(1, 0)]


def test_paging_by_id(db: str) -> None:
    chain = FakeChain()
    for n in range(7):
        chain.mine(opened(n))
    indexer = make_indexer(chain, db)
    indexer.poll()
    page = indexer.events(limit=3)
    rest = indexer.events(after=page[-1].id)
    assert keys(page + rest) == [(n, 0) for n in range(7)]


def test_logs_of_other_contracts_and_unknown_events_are_skipped(db: str) -> None:
    chain = FakeChain()
    number = chain.mine(opened(1))
    block_hash, logs = chain.blocks[number]
    foreign = logs[0].__class__(**{**logs[0].__dict__, "address": "0x" + "ee" * 20})
    unknown = logs[0].__class__(**{**logs[0].__dict__, "topics": (b"\x01" * 32,), "log_index": 1})
    chain.blocks[number] = (block_hash, [*logs, foreign, unknown])
    indexer = make_indexer(chain, db)
    assert indexer.poll() == 1


def test_two_indexers_on_one_database_fail_loudly(db: str) -> None:
    chain = FakeChain()
    chain.mine(opened(1))
    first = make_indexer(chain, db)
    first.poll()
    second = make_indexer(chain, db)
    checkpoint = second.checkpoint()
    chain.mine(opened(2))
    first.poll()
    # the second indexer still believes the checkpoint is at block 0
    with pytest.raises(ChainError, match="another indexer"):
        second._commit(checkpoint, chain.block(1), chain.logs(MARKET, 1, 1))
    assert len(first.events()) == 2


def test_the_unique_key_rejects_a_duplicate_log(db: str) -> None:
    chain = FakeChain()
    chain.mine(opened(1))
    indexer = make_indexer(chain, db)
    indexer.poll()
    with pytest.raises(ChainError, match="already stored"):
        indexer._commit(None, chain.block(0), chain.logs(MARKET, 0, 0))


def test_an_unreadable_database_is_a_chain_error(db: str) -> None:
    chain = FakeChain()
    chain.mine(opened(1))
    indexer = make_indexer(chain, db)
    indexer.poll()
    with indexer.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE job_events"))
        conn.execute(sa.text("DROP TABLE indexer_state"))
    with pytest.raises(ChainError, match="cannot read the indexer database"):
        indexer.checkpoint()
    with pytest.raises(ChainError, match="cannot read the indexer database"):
        indexer.events()


def test_a_package_adds_its_own_tables_to_the_indexer_database(db: str, tmp_path: Path) -> None:
    chain = FakeChain()
    chain.mine(opened(1))
    indexer = make_indexer(chain, db)
    metadata = sa.MetaData()
    batches = sa.Table("proofs_batches", metadata, sa.Column("id", sa.Integer, primary_key=True))
    indexer.add_tables(metadata)
    indexer.add_tables(metadata)  # what exists is kept
    with indexer.engine.begin() as conn:
        conn.execute(sa.insert(batches).values(id=7))
    assert indexer.poll() == 1
    with sa.create_engine(db).connect() as conn:
        assert conn.execute(sa.select(batches.c.id)).scalars().all() == [7]
    # The indexer's own tables are its own.
    clash = sa.MetaData()
    sa.Table("job_events", clash, sa.Column("id", sa.Integer, primary_key=True))
    with pytest.raises(MisuseError, match="the indexer's own tables are named job_events"):
        indexer.add_tables(clash)
    # A database the tables cannot be written to: the one translation of its error.
    read_only = f"sqlite:///file:{tmp_path / 'index.db'}?mode=ro&uri=true"
    more = sa.MetaData()
    sa.Table("proofs_more", more, sa.Column("id", sa.Integer, primary_key=True))
    with pytest.raises(ConfigError, match="cannot create the tables proofs_more in the indexer"):
        make_indexer(chain, read_only).add_tables(more)


def test_bad_database_url() -> None:
    with pytest.raises(ConfigError, match="database URL"):
        make_indexer(FakeChain(), "nosuchdb://x")


def test_the_schema_is_plain_sql(db: str) -> None:
    """Any SQLAlchemy database works: the tables use portable column types only."""
    chain = FakeChain()
    chain.mine(opened(1))
    make_indexer(chain, db).poll()
    engine = sa.create_engine(db)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT event_name, job_id FROM job_events")).all()
        state = conn.execute(sa.text("SELECT chain_id, last_block FROM indexer_state")).one()
    assert rows == [("Opened", "0x" + job(1).hex())]
    assert tuple(state) == (31337, 0)


def test_a_pooled_connection_goes_back_with_sqlites_settings(db: str) -> None:
    """The indexer's commits relax durability (``synchronous``) and let the write-ahead log
    grow before a checkpoint (``wal_autocheckpoint``); the connection it returns to the pool
    has SQLite's settings again, for whoever writes through the same engine next."""
    chain = FakeChain()
    for n in range(3):
        chain.mine(opened(n), deposited(n, 1))
    engine = sa.create_engine(db, poolclass=sa.pool.StaticPool)  # one connection, reused
    make_indexer(chain, engine, block_range=1).poll()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
        assert conn.exec_driver_sql("SELECT count(*) FROM job_events").scalar() == 6
