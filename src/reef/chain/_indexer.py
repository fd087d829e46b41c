"""The event indexer: copies contracts' events into a SQL database, exactly once, typed.

One indexer follows any number of contracts (:class:`IndexedContract`: an address, its event
types as an :class:`~reef.chain.EventDecoder`, and a stream name), each with its own checkpoint in
the same database: the market, the KMS registry, and the serverless and proof contracts to come
need no indexer of their own. For each contract it reads logs in block ranges (500 blocks by
default, as Oyster's indexer; halved when a node refuses a range as too large) up to
``head - confirmations``, decodes them into the contract's typed events and stores each as the
decoder's :class:`~reef.chain.EventRecord` (for the market, Oyster's ``job_events`` shape,
reference §4.4: names ``Opened``, ``Settled``, ...; U256 values as ``0x`` hex, addresses
lowercase). Reading gives the same typed events back (:meth:`Indexer.events`), so consumers match
on types, never on names and dict keys.

Each range's events are committed together with the contract's checkpoint in **one
transaction**. A crash (``kill -9``) therefore loses nothing and repeats nothing: on restart each
checkpoint says exactly where that contract's stored events end. A unique key on (stream, block
number, log index) backs this up, and a checkpoint is advanced with a compare-and-set, so two
indexers writing one database fail loudly instead of duplicating.

Reorganisations: only blocks at least ``confirmations`` deep are read. Before each poll the hash of
the last indexed block is compared with the chain's; if a reorg went deeper than the confirmation
depth the indexer stops with a :class:`~reef.errors.ChainError` rather than keep events of an
abandoned fork (rewinding would silently undo what consumers already acted on).

Storage is SQLAlchemy Core, so any SQLAlchemy URL works (SQLite by default, PostgreSQL for a
production operator); it is synchronous because the work is a short transaction per range and the
RPC client (web3.py) is synchronous too; async callers run :meth:`Indexer.poll` in a thread.

Reading the chain goes through the small :class:`~reef.chain.BlockSource` protocol (in
``_block_source.py``), so tests inject reorgs and failures, and the same indexer runs against
reef's devnet, a hardhat node or a public RPC.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from reef.chain._block_source import BlockRef, BlockSource, RawLog
from reef.chain._events import ChainEvent, EventDecoder, EventRecord, market_decoder
from reef.errors import ChainError, ConfigError, MisuseError, RPCError

__all__ = [
    "IndexedContract",
    "IndexedEvent",
    "Indexer",
    "IndexerCheckpoint",
    "open_database",
]

DEFAULT_RANGE = 500
# Phrases nodes use when a getLogs range or result set is too big (geth, erigon, alchemy, infura,
# hardhat): on these the indexer halves its range instead of failing.
_RANGE_REFUSALS = re.compile(
    r"range|too many|more than|limit|exceed|too large|response size|timeout", re.IGNORECASE
)
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


# -- storage --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class IndexedContract:
    """A contract the indexer follows: where it is, its event types, and its stream.

    Args:
        address: the contract's address.
        events: its event types (:func:`market_decoder`, :func:`kms_registry_decoder`, or an
            :class:`EventDecoder` over any ABI and event classes).
        stream: the name its events and checkpoint are stored under; ``"<chain id>:<address>"``
            (lowercase) when not given.
        start_block: the first block to read (the contract's deployment block).
    """

    address: str
    events: EventDecoder
    stream: str | None = None
    start_block: int = 0

    def __post_init__(self) -> None:
        if not _ADDRESS.match(self.address):
            raise MisuseError(f"{self.address!r} is not a contract address")
        if self.start_block < 0:
            raise MisuseError("start_block must be >= 0")
        if self.stream is not None and not 0 < len(self.stream) <= 120:
            raise MisuseError("a stream name is 1 to 120 characters")


@dataclass(frozen=True, kw_only=True)
class IndexedEvent:
    """One stored event, typed. ``id`` orders events across the whole database (consumers page
    by it); ``record`` is the row as stored (Oyster's ``job_events`` shape)."""

    id: int
    stream: str
    block_hash: str
    event: ChainEvent
    record: EventRecord

    @property
    def block_number(self) -> int:
        return self.event.block_number

    @property
    def log_index(self) -> int:
        return self.event.log_index

    @property
    def tx_hash(self) -> str:
        return self.event.tx_hash

    @property
    def name(self) -> str:
        """The stored name (``Opened`` for ``JobOpened``)."""
        return self.record.name

    @property
    def job_id(self) -> str | None:
        return self.record.job_id

    @property
    def data(self) -> Mapping[str, Any]:
        """The stored fields (``event_data``): U256 as ``0x`` hex, addresses lowercase."""
        return self.record.data


@dataclass(frozen=True)
class IndexerCheckpoint:
    """Where the stored events end: every event of blocks ``<= last_block`` is stored."""

    chain_id: int
    contract: str
    start_block: int
    last_block: int
    last_block_hash: str
    last_block_timestamp: int
    events: int


def _tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    state = sa.Table(
        "indexer_state",
        metadata,
        sa.Column("stream", sa.String(120), primary_key=True),
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("contract", sa.String(42), nullable=False),
        sa.Column("start_block", sa.BigInteger, nullable=False),
        sa.Column("last_block", sa.BigInteger, nullable=False),
        sa.Column("last_block_hash", sa.String(66), nullable=False),
        sa.Column("last_block_timestamp", sa.BigInteger, nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
    )
    events = sa.Table(
        "job_events",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stream", sa.String(120), nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("log_index", sa.Integer, nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("event_name", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(66), nullable=True, index=True),
        sa.Column("event_data", sa.Text, nullable=False),
        sa.UniqueConstraint("stream", "block_number", "log_index", name="uq_job_events_log"),
    )
    return state, events


def open_database(url: str) -> sa.Engine:
    """An engine for ``url``; SQLite gets WAL mode so readers never block the indexer."""
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise ConfigError(f"not a usable database URL: {url!r} ({exc})") from exc
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

    return engine


@dataclass
class _Followed:
    """A contract being indexed, with its stream name once the chain id is known."""

    contract: IndexedContract
    address: str  # lowercase
    stream: str


class Indexer:
    """Indexes contracts' events into one database: one stream and checkpoint per contract.

    Args:
        source: the chain.
        db: a SQLAlchemy URL or engine (tables are created if missing).
        contracts: the contracts to follow (:class:`IndexedContract`), each resuming at its own
            checkpoint.
        contract: shorthand for one contract at this address, with ``decoder`` (the market's
            by default) and ``start_block``; give either this or ``contracts``.
        confirmations: how deep a block must be before it is read (0 on a dev chain that never
            reorganises; a few on a real chain).
        block_range: the largest block range asked for at once.

    Raises:
        MisuseError: neither or both of ``contract`` and ``contracts``, two contracts with one
            stream, or a negative depth, range or start block.
        ConfigError: the database cannot be opened.
    """

    def __init__(
        self,
        source: BlockSource,
        db: str | sa.Engine,
        *,
        contracts: Sequence[IndexedContract] = (),
        contract: str | None = None,
        decoder: EventDecoder | None = None,
        start_block: int = 0,
        confirmations: int = 0,
        block_range: int = DEFAULT_RANGE,
    ) -> None:
        if confirmations < 0 or block_range < 1 or start_block < 0:
            raise MisuseError("confirmations and start_block must be >= 0, block_range >= 1")
        if contract is not None:
            if contracts:
                raise MisuseError("give contract= or contracts=, not both")
            contracts = [
                IndexedContract(
                    address=contract,
                    events=decoder if decoder is not None else market_decoder(),
                    start_block=start_block,
                )
            ]
        if not contracts:
            raise MisuseError(
                "the indexer needs a contract to follow",
                hint="pass contract=ADDRESS (the market) or contracts=[IndexedContract(...)]",
            )
        self._contracts = tuple(contracts)
        self._followed: tuple[_Followed, ...] | None = None
        self._source = source
        self._engine = open_database(db) if isinstance(db, str) else db
        self._confirmations = confirmations
        self._range = block_range
        self._chain_id: int | None = None
        self._meta = sa.MetaData()
        self._state, self._events = _tables(self._meta)
        try:
            self._meta.create_all(self._engine)
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigError(f"cannot open the indexer database: {exc}") from exc

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self._source.chain_id()
        return self._chain_id

    @property
    def streams(self) -> tuple[str, ...]:
        """The stream of each contract, in the order given."""
        return tuple(f.stream for f in self._all())

    @property
    def stream(self) -> str:
        """The stream of the one contract this indexer follows.

        Raises:
            MisuseError: it follows several (use :attr:`streams`).
        """
        return self._one(None).stream

    def _all(self) -> tuple[_Followed, ...]:
        if self._followed is None:
            followed = []
            for contract in self._contracts:
                address = contract.address.lower()
                stream = contract.stream or f"{self.chain_id}:{address}"
                followed.append(_Followed(contract, address, stream))
            if len({f.stream for f in followed}) != len(followed):
                raise MisuseError("two indexed contracts have the same stream")
            self._followed = tuple(followed)
        return self._followed

    def _one(self, contract: str | None) -> _Followed:
        """The followed contract named by stream or address (the only one when ``None``)."""
        followed = self._all()
        if contract is None:
            if len(followed) != 1:
                raise MisuseError(
                    "this indexer follows several contracts",
                    hint="name one: contract=STREAM or ADDRESS",
                )
            return followed[0]
        for entry in followed:
            if contract in (entry.stream, entry.address) or contract.lower() == entry.address:
                return entry
        raise MisuseError(f"this indexer does not follow {contract!r}")

    # -- reading what is stored ------------------------------------------------------------

    def checkpoint(self, contract: str | None = None) -> IndexerCheckpoint | None:
        """Where the stored events of ``contract`` (stream or address) end; ``None`` before
        its first range. The only contract when ``None``."""
        stream = self._one(contract).stream
        rows = _fetch(self._engine, sa.select(self._state).where(self._state.c.stream == stream))
        if not rows:  # the stream is the primary key: one row at most
            return None
        row = rows[0]
        return IndexerCheckpoint(
            chain_id=int(row.chain_id),
            contract=str(row.contract),
            start_block=int(row.start_block),
            last_block=int(row.last_block),
            last_block_hash=str(row.last_block_hash),
            last_block_timestamp=int(row.last_block_timestamp),
            events=int(row.events),
        )

    def chain_time(self) -> int | None:
        """The chain's clock as far as every contract is indexed: the timestamp of the last
        block all of them have reached (``None`` until each has a checkpoint)."""
        times = []
        for entry in self._all():
            checkpoint = self.checkpoint(entry.stream)
            if checkpoint is None:
                return None
            times.append(checkpoint.last_block_timestamp)
        return min(times)

    def events(
        self, *, after: int = 0, limit: int = 1000, contract: str | None = None
    ) -> list[IndexedEvent]:
        """Stored events with ``id > after``, oldest first, typed: of every followed contract,
        or of ``contract`` (stream or address) alone.

        Raises:
            ChainError: the database cannot be read, or holds an event its contract's types do
                not know.
        """
        followed = self._all() if contract is None else (self._one(contract),)
        by_stream = {entry.stream: entry for entry in followed}
        table = self._events
        query = (
            sa.select(table)
            .where(table.c.stream.in_(list(by_stream)))
            .where(table.c.id > after)
            .order_by(table.c.id)
            .limit(limit)
        )
        out = []
        for row in _fetch(self._engine, query):
            entry = by_stream[str(row.stream)]
            try:
                data = json.loads(row.event_data)
            except ValueError as exc:
                raise ChainError(f"stored event {row.id} is not JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise ChainError(f"stored event {row.id} is not a JSON object")
            event = entry.contract.events.from_json(
                str(row.event_name),
                data,
                address=entry.address,
                block_number=int(row.block_number),
                log_index=int(row.log_index),
                tx_hash=str(row.tx_hash),
            )
            record = EventRecord(str(row.event_name), row.job_id, data)
            out.append(
                IndexedEvent(
                    id=int(row.id),
                    stream=entry.stream,
                    block_hash=str(row.block_hash),
                    event=event,
                    record=record,
                )
            )
        return out

    # -- indexing -------------------------------------------------------------------------

    def poll(self, *, max_ranges: int | None = None) -> int:
        """Index every confirmed block not indexed yet, contract by contract; return how many
        events were stored.

        Each range of each contract is committed on its own, so an error (or a kill) part-way
        keeps the ranges before it and repeats none of them.

        Raises:
            RPCError: the chain could not be read (nothing of the failed range is stored).
            ChainError: a reorganisation deeper than the confirmation depth, or an undecodable log.
        """
        head = self._source.head()
        return sum(self._poll(entry, head, max_ranges) for entry in self._all())

    def _poll(self, entry: _Followed, head: int, max_ranges: int | None) -> int:
        checkpoint = self.checkpoint(entry.stream)
        safe = head - self._confirmations
        if checkpoint is not None:
            self._check_not_reorged(checkpoint)
            next_block = checkpoint.last_block + 1
        else:
            next_block = entry.contract.start_block
        stored = 0
        ranges = 0
        while next_block <= safe and (max_ranges is None or ranges < max_ranges):
            to_block = min(safe, next_block + self._range - 1)
            logs = self._read_range(entry.address, next_block, to_block)
            last = self._source.block(to_block)
            stored += self._commit(checkpoint, last, logs, entry.stream)
            checkpoint = self.checkpoint(entry.stream)
            next_block = to_block + 1
            ranges += 1
        return stored

    def _check_not_reorged(self, checkpoint: IndexerCheckpoint) -> None:
        current = self._source.block(checkpoint.last_block).hash
        if current.lower() != checkpoint.last_block_hash.lower():
            raise ChainError(
                f"block {checkpoint.last_block} changed after it was indexed "
                f"({checkpoint.last_block_hash} is now {current}): a reorganisation deeper "
                f"than the confirmation depth ({self._confirmations})",
                hint="index with more --confirmations; re-index from scratch into a new database",
            )

    def _read_range(self, address: str, from_block: int, to_block: int) -> list[RawLog]:
        """Logs of the range, halving it while the node refuses it as too large."""
        try:
            return list(self._source.logs(address, from_block, to_block))
        except RPCError as exc:
            if to_block == from_block or not _RANGE_REFUSALS.search(str(exc)):
                raise
            middle = (from_block + to_block) // 2
            return self._read_range(address, from_block, middle) + self._read_range(
                address, middle + 1, to_block
            )

    def _rows(self, entry: _Followed, logs: Sequence[RawLog]) -> list[dict[str, Any]]:
        """The rows of a range's logs of ``entry`` (other contracts' and unknown events skipped)."""
        rows = []
        for log in sorted(logs, key=lambda item: (item.block_number, item.log_index)):
            if log.address.lower() != entry.address:
                continue
            event = entry.contract.events.decode(
                {
                    "address": log.address,
                    "topics": log.topics,
                    "data": log.data,
                    "blockNumber": log.block_number,
                    "logIndex": log.log_index,
                    "transactionHash": log.tx_hash,
                }
            )
            if event is None:
                continue
            record = entry.contract.events.to_json(event)
            rows.append(
                {
                    "stream": entry.stream,
                    "block_number": log.block_number,
                    "block_hash": log.block_hash,
                    "log_index": log.log_index,
                    "tx_hash": log.tx_hash,
                    "event_name": record.name,
                    "job_id": record.job_id,
                    "event_data": json.dumps(dict(record.data), sort_keys=True),
                }
            )
        return rows

    def _commit(
        self,
        checkpoint: IndexerCheckpoint | None,
        last: BlockRef,
        logs: Sequence[RawLog],
        contract: str | None = None,
    ) -> int:
        entry = self._one(contract)
        rows = self._rows(entry, logs)
        state = self._state
        try:
            with self._engine.begin() as conn:
                if rows:
                    conn.execute(sa.insert(self._events), rows)
                if checkpoint is None:
                    conn.execute(
                        sa.insert(state).values(
                            stream=entry.stream,
                            chain_id=self.chain_id,
                            contract=entry.address,
                            start_block=entry.contract.start_block,
                            last_block=last.number,
                            last_block_hash=last.hash,
                            last_block_timestamp=last.timestamp,
                            events=len(rows),
                        )
                    )
                else:
                    result = conn.execute(
                        sa.update(state)
                        .where(state.c.stream == entry.stream)
                        .where(state.c.last_block == checkpoint.last_block)
                        .values(
                            last_block=last.number,
                            last_block_hash=last.hash,
                            last_block_timestamp=last.timestamp,
                            events=state.c.events + len(rows),
                        )
                    )
                    if result.rowcount != 1:
                        raise ChainError(
                            "the indexer checkpoint moved under us: another indexer is writing "
                            "this database",
                            hint="run one indexer per database",
                        )
        except sa.exc.IntegrityError as exc:
            raise ChainError(
                "an event of this range is already stored: another indexer is writing this "
                "database",
                hint="run one indexer per database",
            ) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise ChainError(f"cannot write the indexer database: {exc}") from exc
        return len(rows)


def _fetch(engine: sa.Engine, query: sa.Select[Any]) -> Sequence[sa.Row[Any]]:
    """The rows ``query`` selects; a database failure is a :class:`~reef.errors.ChainError`."""
    try:
        with engine.connect() as conn:
            return conn.execute(query).all()
    except sa.exc.SQLAlchemyError as exc:
        raise ChainError(f"cannot read the indexer database: {exc}") from exc
