"""How the indexer stores logs: as the node gave them, checked against their event's ABI without
decoding them, and decoded when read. The fast checks name and refuse exactly what decoding
would (every market and KMS registry event, through both paths), a database an older reef
wrote is refused with the file to delete, and the read-ahead thread changes nothing stored."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from eth_abi.abi import encode
from indexer_fakes import MARKET, FakeChain, deposited, job, market_abi, opened

from reef.chain import Indexer, market_decoder
from reef.chain._block_source import raw_log_entry
from reef.chain._indexer import _layouts
from reef.errors import ChainError, ConfigError

_VALUES = {
    "bytes32": job(7),
    "address": "0x" + "0c" * 20,
    "uint256": 10**20 + 3,
    "string": '{"image": "ü"}',
}


def _every_market_event() -> list[tuple[str, dict[str, object]]]:
    events = []
    for entry in market_abi():
        if entry.get("type") == "event":
            args = {p["name"]: _VALUES[p["type"]] for p in entry["inputs"]}
            events.append((entry["name"], args))
    return events


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'index.db'}"


def test_the_checks_store_what_decoding_would_for_every_market_event(tmp_path: Path) -> None:
    chain = FakeChain()
    for name, args in _every_market_event():
        chain.mine((name, args))
    fast = Indexer(chain, f"sqlite:///{tmp_path / 'fast.db'}", contract=MARKET)
    slow = Indexer(chain, f"sqlite:///{tmp_path / 'slow.db'}", contract=MARKET)
    (entry,) = slow._all()
    entry.layouts = dict.fromkeys(entry.layouts)  # every event through decode + to_json
    assert fast.poll() == slow.poll() == len(_every_market_event())
    query = (
        "SELECT block_number, log_index, tx_hash, event_name, job_id, topics, data FROM job_events"
    )
    rows = {}
    for name, indexer in (("fast", fast), ("slow", slow)):
        with indexer.engine.connect() as conn:
            rows[name] = conn.execute(sa.text(query)).all()
    assert rows["fast"] == rows["slow"]
    # read back, the events are the decoder's own decoding of the chain's logs
    decoder = market_decoder()
    logs = chain.logs(MARKET, 0, len(chain.blocks) - 1)
    expected = [decoder.decode(raw_log_entry(log)) for log in logs]
    stored = fast.events()
    assert [e.event for e in stored] == expected
    assert [e.record for e in stored] == [decoder.to_json(e) for e in expected if e]
    assert {e.name for e in stored} >= {"Opened", "Settled", "ProviderAdded", "LockCreated"}


def test_every_market_and_registry_event_has_a_fast_layout() -> None:
    from reef.chain import kms_registry_decoder

    for decoder in (market_decoder(), kms_registry_decoder()):
        layouts = _layouts(decoder)
        assert len(layouts) == len(decoder.topics)
        assert all(layout is not None for layout in layouts.values())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda log: {**log, "topics": log["topics"][:-1]}, "expected 4 topics"),
        (
            lambda log: {
                **log,
                "topics": [*log["topics"][:2], "0x01" + log["topics"][2][4:], log["topics"][3]],
            },
            "padding",
        ),
        (
            lambda log: {**log, "topics": [*log["topics"][:3], log["topics"][3][:-2] + "zz"]},
            "JobOpened",
        ),
        (lambda log: {**log, "data": log["data"][:-64]}, "JobOpened"),
        (lambda log: {**log, "data": "0x" + "00" * 31 + "ff" + log["data"][66:]}, "offset"),
    ],
    ids=["topic-missing", "address-padding", "topic-not-hex", "data-short", "string-offset"],
)
def test_a_damaged_log_is_refused_as_decoding_refuses_it(
    db: str, damage: object, message: str
) -> None:
    chain = FakeChain()
    chain.mine(opened(1))
    (log,) = chain.logs(MARKET, 0, 0)
    entry = damage(raw_log_entry(log))  # type: ignore[operator]
    # decoding refuses it too (a topic that is not hex escapes it as a ValueError)
    with pytest.raises((ChainError, ValueError)):
        market_decoder().decode(entry)
    indexer = Indexer(chain, db, contract=MARKET)
    with pytest.raises(ChainError, match=message):
        indexer._rows(indexer._one(None), [entry])


def test_a_database_of_an_older_reef_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE job_events (id INTEGER PRIMARY KEY, stream VARCHAR(120), "
            "block_number BIGINT, block_hash VARCHAR(66), log_index INTEGER, tx_hash VARCHAR(66), "
            "event_name VARCHAR(64), job_id VARCHAR(66), event_data TEXT)"
        )
    with pytest.raises(ConfigError, match="older reef") as raised:
        Indexer(FakeChain(), f"sqlite:///{path}", contract=MARKET)
    assert str(path) in (raised.value.hint or "")


def test_reading_ahead_stores_the_same_as_one_range_after_the_other(tmp_path: Path) -> None:
    chain = FakeChain()
    for n in range(40):
        chain.mine(opened(n), deposited(n, n))
    stored = []
    for ahead in (0, 1, 4):
        indexer = Indexer(
            chain,
            f"sqlite:///{tmp_path / f'{ahead}.db'}",
            contract=MARKET,
            block_range=3,
            fetch_ahead=ahead,
        )
        assert indexer.poll() == 80
        stored.append([(e.block_number, e.log_index, e.event) for e in indexer.events(limit=100)])
        assert chain.calls[-2:] == [("logs", 36, 38), ("logs", 39, 39)]  # in order, once each
        chain.calls.clear()
    assert stored[0] == stored[1] == stored[2]


def test_commits_leave_the_connection_fully_durable(db: str) -> None:
    chain = FakeChain()
    chain.mine(opened(1))
    indexer = Indexer(chain, db, contract=MARKET)
    indexer.poll()
    with indexer.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_node_logs_in_another_case_or_order_are_stored_in_chain_order(db: str) -> None:
    chain = FakeChain()
    chain.mine(opened(1), deposited(1, 5))
    indexer = Indexer(chain, db, contract=MARKET)
    entries = [raw_log_entry(log) for log in chain.logs(MARKET, 0, 0)]
    shouting = [
        {
            **e,
            "topics": [t.upper().replace("0X", "0x") for t in e["topics"]],
            "address": e["address"].upper().replace("0X", "0x"),
        }
        for e in reversed(entries)
    ]
    rows = indexer._rows(indexer._one(None), shouting)
    assert [(row[1], row[3], row[5]) for row in rows] == [(0, 0, "Opened"), (0, 1, "Deposited")]
    assert rows[0][6] == "0x" + job(1).hex()
    assert encode(["uint256"], [5]).hex() in rows[1][8]


def test_a_batch_of_many_logs_is_stored_whole_and_in_chain_order(tmp_path: Path) -> None:
    # 250 + 130 logs in one transaction: multi-row statements of 100 rows, then the rest.
    chain = FakeChain()
    chain.mine(*[deposited(n, n + 1) for n in range(250)])
    chain.mine(*[deposited(n, 7) for n in range(130)])
    path = tmp_path / "many.db"
    indexer = Indexer(chain, f"sqlite:///{path}", contract=MARKET, fetch_ahead=0)
    assert indexer.poll() == 380
    with sqlite3.connect(path) as conn:
        stored = conn.execute(
            "SELECT id, block_number, log_index, job_id, data FROM job_events ORDER BY id"
        ).fetchall()
    assert [(row[1], row[2]) for row in stored] == [(0, i) for i in range(250)] + [
        (1, i) for i in range(130)
    ]
    assert [row[0] for row in stored] == list(range(1, 381))
    entries = [raw_log_entry(log) for log in chain.logs(MARKET, 0, 1)]
    assert [row[4] for row in stored] == [entry["data"] for entry in entries]
    assert [row[3] for row in stored] == ["0x" + job(n).hex() for n in (*range(250), *range(130))]
    assert indexer.poll() == 0
