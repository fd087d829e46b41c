"""The event indexer: copies contracts' events into a SQL database, exactly once, typed.

One indexer follows any number of contracts (:class:`IndexedContract`: an address, its event
types as an :class:`~reef.chain.EventDecoder`, and a stream name), each with its own checkpoint in
the same database: the market, the KMS registry, and the serverless and proof contracts to come
need no indexer of their own. For each contract it reads logs in block ranges (500 blocks by
default, as Oyster's indexer; halved when a node refuses a range as too large) up to
``head - confirmations`` and stores the logs of the contract's event types. Reading gives them
back typed (:meth:`Indexer.events`), each with the decoder's :class:`~reef.chain.EventRecord`
(for the market, Oyster's ``job_events`` shape, reference §4.4: names ``Opened``, ``Settled``,
...; U256 values as ``0x`` hex, addresses lowercase), so consumers match on types, never on
names and dict keys.

Storage is the logs as the node gave them: topics and data, with their block, transaction and
log index, the stored name and job id (Oyster's ``event_name`` and ``job_id`` columns, for SQL)
beside them. Events are decoded when read (:meth:`Indexer.events`), into the same typed events
as before, so catching up costs little more than reading the chain: no typed event, JSON record
or web3.py formatting is built per log on the way in. Each log is still checked against its
event's ABI before it is stored (topic count, padding, ranges, offsets), so a malformed log
stops the indexer at its range instead of reaching a consumer. The node is not trusted for the
rest either: a log of a block outside the range asked for, an index no block has, a block or
transaction hash that is none, the same log twice, or a range's block with such a hash or time
is an :class:`~reef.errors.RPCError`, and nothing of the range is stored.

Logs are committed together with the contract's checkpoint in **one transaction** per batch of
ranges (one ``executemany``; a commit costs as much as storing hundreds of logs). A batch ends
at 5000 logs, or as soon as the next range is not fetched yet (storing then costs no waiting).
A crash (``kill -9``) therefore loses nothing and repeats nothing: on restart each checkpoint
says exactly where that contract's stored events end. A unique key on (stream, block number,
log index) backs this up, and a checkpoint is advanced with a compare-and-set, so two indexers
writing one database fail loudly instead of duplicating.

While a range is checked and committed, reader threads already fetch the next ones (up to
``fetch_ahead`` ranges, all within the confirmed part of the chain), ``readers`` of them at
once: two for a JSON-RPC source (:class:`~reef.chain.Web3BlockSource`), so that the node
computes one range's answer while this process parses, checks and stores another (one after
the other, the node and the indexer would each wait for the other), and one for any other
source. Readers take the ranges in order and the ranges are stored in order; a failure
part-way still stores every range before it and nothing after it. A source that reads a range's
logs and its last block together (:class:`~reef.chain.Web3BlockSource`: one JSON-RPC batch
request) is asked for both at once; a range it refuses as too large is halved as above, its
block then asked for on its own.

Reorganisations: only blocks at least ``confirmations`` deep are read. Before each poll the hash of
the last indexed block is compared with the chain's; if a reorg went deeper than the confirmation
depth the indexer stops with a :class:`~reef.errors.ChainError` rather than keep events of an
abandoned fork (rewinding would silently undo what consumers already acted on).

Storage is SQLAlchemy Core, so any SQLAlchemy URL works (SQLite by default, PostgreSQL for a
production operator); it is synchronous because the work is a short transaction per range and the
RPC client (web3.py) is synchronous too; async callers run :meth:`Indexer.poll` in a thread. A
database written by an older reef (events stored decoded, as JSON) is refused with the file to
delete: the index is a copy of the chain, read again from the start block. A package that keeps
state beside the events it follows (the proof market's matching engine) adds its tables to the
same database (:meth:`Indexer.add_tables`), with the indexer's one translation of the
database's errors.

Reading the chain goes through the small :class:`~reef.chain.BlockSource` protocol (in
``_block_source.py``), so tests inject reorgs and failures, and the same indexer runs against
reef's devnet, a hardhat node or a public RPC.

One module (about 1 050 lines): exactly-once is one argument (ranges read in chain order, each
log checked against its ABI, rows committed with the checkpoint in one transaction, the
read-ahead never storing past a failed range), kept in one place so it can be checked there.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa

from reef.chain._abi_words import words_checker
from reef.chain._block_source import (
    BlockRef,
    BlockSource,
    LogEntrySource,
    LogRangeSource,
    RawLog,
    raw_log_entry,
)
from reef.chain._events import ChainEvent, EventDecoder, EventRecord, market_decoder
from reef.errors import ChainError, ConfigError, InputError, MisuseError, RPCError

__all__ = [
    "IndexedContract",
    "IndexedEvent",
    "Indexer",
    "IndexerCheckpoint",
    "open_database",
]

DEFAULT_RANGE = 500
DEFAULT_FETCH_AHEAD = 4
DEFAULT_READERS = 2  # for a JSON-RPC source: the node answers one range while we read another
# The most ranges one poll reads (50 million blocks at the default range): a poll lists its ranges
# before reading them, and a node claiming a head of 2^62 made that list exhaust the memory.
_POLL_RANGES = 100_000
# A transaction stores ranges until it holds this many logs or ranges.
_BATCH_ROWS = 5000
_BATCH_RANGES = 32
# SQLite pages the write-ahead log may hold before the indexer's commit copies it into the
# database (SQLite's default: 1000): 40 MiB at 4 KiB pages, about 60 000 events.
_WAL_PAGES = 10_000
# Rows per SQLite INSERT statement: 900 parameters, within the oldest SQLite limit (999).
_CHUNK = 100
# Phrases nodes use when a getLogs range or result set is too big (geth, erigon, alchemy, infura,
# hardhat): on these the indexer halves its range instead of failing.
_RANGE_REFUSALS = re.compile(
    r"range|too many|more than|limit|exceed|too large|response size|timeout", re.IGNORECASE
)
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
# The largest number a BigInteger column holds (SQLite's and PostgreSQL's signed 64 bits).
_MAX_STORED = 2**63 - 1
_LYING_NODE = "the JSON-RPC node answers what no chain holds: use a node you trust (--rpc)"
_UNKNOWN: Any = object()  # the layout of a topic 0 no followed event has
# The stored columns of a log, in the order of the rows the indexer builds.
_COLUMNS = (
    "stream",
    "block_number",
    "block_hash",
    "log_index",
    "tx_hash",
    "event_name",
    "job_id",
    "topics",
    "data",
)
_Row = tuple[str, int, str, int, str, str, str | None, str, str]


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
        # The log as the node gave it: its topics ("0x" + hex, comma-separated) and its data.
        sa.Column("topics", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
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


def _where(engine: sa.Engine) -> str:
    """The database's file (SQLite) or URL without its password, for messages."""
    if engine.dialect.name == "sqlite" and engine.url.database:
        return engine.url.database
    return engine.url.render_as_string(hide_password=True)


def _check_schema(engine: sa.Engine) -> None:
    """Refuse a database whose ``job_events`` an older reef wrote (decoded JSON, no raw logs).

    Raises:
        ConfigError: naming the database to delete.
    """
    try:
        columns = {column["name"] for column in sa.inspect(engine).get_columns("job_events")}
    except sa.exc.NoSuchTableError:
        return
    except sa.exc.SQLAlchemyError as exc:
        raise ConfigError(f"cannot open the indexer database: {exc}") from exc
    if not {"topics", "data"} <= columns:
        where = _where(engine)
        raise ConfigError(
            f"the indexer database {where} was written by an older reef (events stored decoded, "
            "as JSON); this one stores the chain's logs and decodes them when read",
            hint=f"delete {where} (it is a copy of the chain: the indexer reads it again from "
            "the start block)",
        )


# -- checking logs without decoding them ---------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """What storing a log of one event type takes: its name, how many topics it has, how its
    topics and data are checked (as the node's hex text), and where its job id is (a topic or a
    data word, if any)."""

    name: str
    cls_name: str
    topics: int
    address_topics: tuple[int, ...]
    topic_checks: tuple[tuple[int, Callable[[str], None]], ...]
    check_data: Callable[[str], None]
    job_topic: int | None
    job_word: int | None


_ZERO_PADDING = "0" * 24  # an address topic's 12 zero bytes, in hex
_TOPICS = re.compile(r"0x[0-9a-fA-F]{64}(?:,0x[0-9a-fA-F]{64})*")  # topics, comma-joined


def _layouts(decoder: EventDecoder) -> dict[str, _Layout | None]:
    """A layout per topic 0 (``0x`` + lowercase hex) of ``decoder``; ``None``: check and name
    that event by decoding it.

    The ABI types come from the decoder's event specs. The decoder keeps them private; should it
    stop having them, every event takes the decoding path: slower, never wrong.
    """
    specs = getattr(decoder, "_specs", None)
    if not isinstance(specs, dict):
        return {"0x" + topic.hex(): None for topic in decoder.topics}
    layouts: dict[str, _Layout | None] = {}
    for topic0, spec in specs.items():
        key = "0x" + bytes(topic0).hex()
        try:
            cls: type[ChainEvent] = spec.cls
            indexed: tuple[tuple[str, str], ...] = tuple(spec.indexed)
            data: tuple[tuple[str, str], ...] = tuple(spec.data)
        except AttributeError:
            layouts[key] = None
            continue
        job_topic = job_word = None
        for position, (name, typ) in enumerate(indexed):
            if cls.JSON_KEYS.get(name, name) == "job_id":
                job_topic = position + 1 if typ == "bytes32" else -1
        for position, (name, typ) in enumerate(data):
            if cls.JSON_KEYS.get(name, name) == "job_id":
                job_word = position if typ == "bytes32" else -1
        if job_topic == -1 or job_word == -1 or any(t in ("bytes", "string") for _, t in indexed):
            layouts[key] = None  # a job id that is not a bytes32, or a hashed topic
            continue
        layouts[key] = _Layout(
            name=decoder.json_name(cls),
            cls_name=cls.__name__,
            topics=1 + len(indexed),
            address_topics=tuple(
                position + 1 for position, (_, typ) in enumerate(indexed) if typ == "address"
            ),
            # a uint256 or bytes32 topic needs no check beyond its length
            topic_checks=tuple(
                (position + 1, words_checker([typ]))
                for position, (_, typ) in enumerate(indexed)
                if typ not in ("uint256", "int256", "bytes32", "address")
            ),
            check_data=words_checker(["bytes" if t == "string" else t for _, t in data]),
            job_topic=job_topic,
            job_word=job_word,
        )
    return layouts


# -- the indexer ----------------------------------------------------------------------------------


@dataclass
class _Followed:
    """A contract being indexed, with its stream name once the chain id is known."""

    contract: IndexedContract
    address: str  # lowercase
    stream: str
    layouts: dict[str, _Layout | None]  # by topic 0, "0x" + lowercase hex


@dataclass(frozen=True)
class _Range:
    """A fetched range, checked and ready to store."""

    last: BlockRef
    rows: list[_Row]


# -- fetching ranges ------------------------------------------------------------------------------


class _Fetched(Protocol):
    """Fetched ranges, handed over in chain order."""

    def next(self) -> _Range:
        """The next range (raises StopIteration after the last, or the fetch's failure)."""
        ...

    def ready(self) -> bool:
        """Whether :meth:`next` would return without waiting for the chain."""
        ...

    def close(self) -> None: ...


class _InOrder:
    """Each range fetched when it is asked for, in this thread."""

    def __init__(self, fetch: Callable[[int, int], _Range], ranges: Sequence[tuple[int, int]]):
        self._fetch = fetch
        self._ranges = iter(ranges)

    def next(self) -> _Range:
        low, high = next(self._ranges)
        return self._fetch(low, high)

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        pass


class _Ahead:
    """Ranges fetched by ``readers`` threads, up to ``ahead`` of them (fetched or being fetched)
    past the one the caller stores, handed over in chain order.

    The readers take the ranges in order. One reader calls the chain exactly as a sequential
    indexer does (a range's logs, then its last block); with several, a range's calls overlap
    the next ones', so the node computes one answer while this process reads another. A failed
    range is handed over (raised) once every range before it was; no reader starts a range
    after it, and ranges already fetched past it are dropped.
    """

    def __init__(
        self,
        fetch: Callable[[int, int], _Range],
        ranges: Sequence[tuple[int, int]],
        ahead: int,
        readers: int,
    ) -> None:
        self._fetch = fetch
        self._ranges = ranges
        self._ahead = max(ahead, readers)
        self._done: dict[int, _Range | BaseException] = {}
        self._changed = threading.Condition()
        self._taken = 0  # ranges a reader has started
        self._handed = 0  # ranges handed to the caller
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._read, name=f"reef-indexer-reader-{n}", daemon=True)
            for n in range(min(readers, len(ranges)))
        ]
        for thread in self._threads:
            thread.start()

    def _read(self) -> None:
        changed = self._changed
        while True:
            with changed:
                while (
                    not self._stopped
                    and self._taken < len(self._ranges)
                    and self._taken - self._handed >= self._ahead
                ):
                    changed.wait()
                if self._stopped or self._taken >= len(self._ranges):
                    return
                index = self._taken
                self._taken += 1
            low, high = self._ranges[index]
            try:
                item: _Range | BaseException = self._fetch(low, high)
            except BaseException as exc:  # handed to the storing thread, which raises it
                item = exc
            with changed:
                self._done[index] = item
                if isinstance(item, BaseException):
                    self._stopped = True  # no range after a failed one is started
                changed.notify_all()

    def next(self) -> _Range:
        index = self._handed
        if index >= len(self._ranges):
            raise StopIteration
        with self._changed:
            while index not in self._done:
                self._changed.wait()
            item = self._done.pop(index)
            self._handed = index + 1
            self._changed.notify_all()
        if isinstance(item, BaseException):
            self._handed = len(self._ranges)
            raise item
        return item

    def ready(self) -> bool:
        with self._changed:
            return self._handed >= len(self._ranges) or self._handed in self._done

    def close(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join()


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
        fetch_ahead: how many ranges are fetched (or being fetched) ahead of the one being
            stored, by reader threads (0: read and store one range after the other, in one
            thread).
        readers: how many ranges are fetched at once, each by its own reader thread (at most
            ``fetch_ahead``). The source is then called from that many threads at once.
            ``None``: 2 for a source that gives the node's JSON logs (a JSON-RPC client such
            as :class:`~reef.chain.Web3BlockSource`, which keeps a connection per concurrent
            caller), 1 for any other.

    Raises:
        MisuseError: neither or both of ``contract`` and ``contracts``, two contracts with one
            stream, or a negative depth, range, start block or read-ahead.
        ConfigError: the database cannot be opened, or an older reef wrote it.
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
        fetch_ahead: int = DEFAULT_FETCH_AHEAD,
        readers: int | None = None,
    ) -> None:
        if confirmations < 0 or block_range < 1 or start_block < 0 or fetch_ahead < 0:
            raise MisuseError(
                "confirmations, start_block and fetch_ahead must be >= 0, block_range >= 1"
            )
        if readers is not None and readers < 1:
            raise MisuseError("readers must be >= 1")
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
        self._fetch_ahead = fetch_ahead
        if readers is None:
            readers = DEFAULT_READERS if isinstance(source, LogEntrySource) else 1
        self._readers = readers
        self._chain_id: int | None = None
        self._meta = sa.MetaData()
        self._state, self._events = _tables(self._meta)
        _check_schema(self._engine)
        self.add_tables(self._meta)
        # SQLite takes the rows as they are built (tuples): SQLAlchemy's per-row parameter
        # handling would cost as much as the insert itself. They go _CHUNK rows per statement
        # (a multi-row VALUES): one step per chunk instead of per row, and each step releases
        # the GIL, which the reader threads then hold until they wait again.
        self._sqlite_insert: tuple[str, str] | None = None  # one row, a chunk of rows
        if self._engine.dialect.name == "sqlite":
            insert = sa.insert(self._events).values({name: sa.bindparam(name) for name in _COLUMNS})
            compiled = insert.compile(dialect=self._engine.dialect)
            one = "(" + ", ".join(["?"] * len(_COLUMNS)) + ")"
            statement = str(compiled)
            if list(compiled.positiontup or ()) == list(_COLUMNS) and statement.endswith(
                " VALUES " + one
            ):
                self._sqlite_insert = (statement, statement + (", " + one) * (_CHUNK - 1))

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    def add_tables(self, metadata: sa.MetaData) -> None:
        """Create ``metadata``'s tables in the indexer's database where they are missing: a
        package that keeps its own state beside the events it follows (the matching engine's
        batches) keeps it in this database, and writes it with :attr:`engine`.

        Raises:
            MisuseError: a table has the name of one of the indexer's own.
            ConfigError: the database cannot be opened or written.
        """
        if metadata is not self._meta:
            taken = sorted(set(metadata.tables) & set(self._meta.tables))
            if taken:
                raise MisuseError(
                    f"the indexer's own tables are named {', '.join(taken)}",
                    hint="name a package's tables after the package (proofs_batches)",
                )
        try:
            metadata.create_all(self._engine)
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigError(
                f"cannot create the tables {', '.join(sorted(metadata.tables))} in the indexer "
                f"database {_where(self._engine)}: {exc}",
                hint="check that the database is reachable and writable",
            ) from exc

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
                followed.append(_Followed(contract, address, stream, _layouts(contract.events)))
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
            ChainError: the database cannot be read, or holds a log its contract's types do
                not decode.
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
            event = entry.contract.events.decode(
                {
                    "address": entry.address,
                    "topics": str(row.topics).split(","),
                    "data": str(row.data),
                    "blockNumber": int(row.block_number),
                    "logIndex": int(row.log_index),
                    "transactionHash": str(row.tx_hash),
                }
            )
            if event is None:
                raise ChainError(
                    f"stored event {row.id} ({row.event_name}) is none of the events of "
                    f"{entry.stream}",
                    hint="was this database written for another contract or ABI?",
                )
            out.append(
                IndexedEvent(
                    id=int(row.id),
                    stream=entry.stream,
                    block_hash=str(row.block_hash),
                    event=event,
                    record=entry.contract.events.to_json(event),
                )
            )
        return out

    # -- indexing -------------------------------------------------------------------------

    def poll(self, *, max_ranges: int | None = None) -> int:
        """Index every confirmed block not indexed yet, contract by contract (at most
        ``max_ranges`` ranges each, and never more than 100 000: 50 million blocks at the
        default range; the next poll goes on from there); return how many events were stored.

        Ranges are committed in batches, each with its checkpoint, so an error part-way keeps
        the ranges before it, and a kill keeps the batches before it; none is ever repeated.

        Raises:
            RPCError: the chain could not be read (nothing of the failed range is stored), or
                its head is past what a block number can be.
            ChainError: a reorganisation deeper than the confirmation depth, or a malformed log.
        """
        head = self._source.head()
        if not 0 <= head <= _MAX_STORED:
            raise RPCError(f"the node answered a head of block {head}", hint=_LYING_NODE)
        return sum(self._poll(entry, head, max_ranges) for entry in self._all())

    def _poll(self, entry: _Followed, head: int, max_ranges: int | None) -> int:
        checkpoint = self.checkpoint(entry.stream)
        safe = head - self._confirmations
        if checkpoint is not None:
            self._check_not_reorged(checkpoint)
            next_block = checkpoint.last_block + 1
        else:
            next_block = entry.contract.start_block
        lows = range(next_block, safe + 1, self._range)  # lazy: the head may be far away
        most = _POLL_RANGES if max_ranges is None else min(max_ranges, _POLL_RANGES)
        ranges = [(low, min(safe, low + self._range - 1)) for low in itertools.islice(lows, most)]
        readers = min(self._readers, self._fetch_ahead)
        fetched: _Fetched = (
            _Ahead(
                lambda low, high: self._fetch_range(entry, low, high),
                ranges,
                self._fetch_ahead,
                readers,
            )
            if readers and len(ranges) > 1
            else _InOrder(lambda low, high: self._fetch_range(entry, low, high), ranges)
        )
        # Ranges are stored together, a batch per transaction: a commit costs as much as storing
        # hundreds of logs. A batch is also stored as soon as the next range is not fetched yet
        # (the time would be spent waiting), so the last ranges' commits overlap their reads too.
        # A failure part-way still stores the ranges before it.
        stored = 0
        rows: list[_Row] = []
        last: BlockRef | None = None
        pending = 0
        with contextlib.closing(fetched):
            while True:
                try:
                    batch = fetched.next()
                except StopIteration:
                    break
                except BaseException:
                    if last is not None:  # keep what was read before the failure
                        self._store(entry, checkpoint, last, rows)
                    raise
                rows += batch.rows
                last = batch.last
                pending += 1
                if len(rows) >= _BATCH_ROWS or pending >= _BATCH_RANGES or not fetched.ready():
                    checkpoint = self._store(entry, checkpoint, last, rows)
                    stored += len(rows)
                    rows, last, pending = [], None, 0
        if last is not None:
            self._store(entry, checkpoint, last, rows)
            stored += len(rows)
        return stored

    def _fetch_range(self, entry: _Followed, low: int, high: int) -> _Range:
        """A range's logs of ``entry``, checked, and its last block (the range's checkpoint)."""
        source = self._source
        if isinstance(source, LogRangeSource):
            # Both in one request. A refused range is read again halved, its block on its own.
            try:
                entries, last = source.log_range(entry.address, low, high)
            except RPCError as exc:
                if low == high or not _RANGE_REFUSALS.search(str(exc)):
                    raise
            else:
                return _Range(_checked_block(last), self._rows(entry, entries, low, high))
        entries = self._read_range(entry.address, low, high)
        last = source.block(high)
        return _Range(_checked_block(last), self._rows(entry, entries, low, high))

    def _check_not_reorged(self, checkpoint: IndexerCheckpoint) -> None:
        current = self._source.block(checkpoint.last_block).hash
        if current.lower() != checkpoint.last_block_hash.lower():
            raise ChainError(
                f"block {checkpoint.last_block} changed after it was indexed "
                f"({checkpoint.last_block_hash} is now {current}): a reorganisation deeper "
                f"than the confirmation depth ({self._confirmations})",
                hint="index with more --confirmations; re-index from scratch into a new database",
            )

    def _read_range(self, address: str, from_block: int, to_block: int) -> list[Mapping[str, Any]]:
        """Logs of the range as JSON-RPC objects, halving it while the node refuses it as too
        large."""
        try:
            if isinstance(self._source, LogEntrySource):
                return list(self._source.log_entries(address, from_block, to_block))
            return [raw_log_entry(log) for log in self._source.logs(address, from_block, to_block)]
        except RPCError as exc:
            if to_block == from_block or not _RANGE_REFUSALS.search(str(exc)):
                raise
            middle = (from_block + to_block) // 2
            return self._read_range(address, from_block, middle) + self._read_range(
                address, middle + 1, to_block
            )

    def _rows(
        self,
        entry: _Followed,
        logs: Sequence[Mapping[str, Any]],
        low: int = 0,
        high: int = _MAX_STORED,
    ) -> list[_Row]:
        """The rows of the logs of ``entry`` in blocks ``low..high`` in chain order (other
        contracts', removed and unknown events skipped), each checked against its event's ABI.

        This runs for every log the indexer reads: it works on the node's hex text as it came,
        converting only what a check needs (a block's number and hash once per block).

        Raises:
            ChainError: a log of a known event is malformed (wrong topics, data or fields).
            RPCError: the node answered a log without its block, index or transaction, of a
                block outside ``low..high``, with an index out of range or a hash that is
                none, or the same log twice.
        """
        rows: list[_Row] = []
        stream, address, layouts = entry.stream, entry.address, entry.layouts
        ordered = True
        previous = (-1, -1)
        # the last log's block number, block hash and transaction, as given and converted
        number_was: Any = None
        number_int = 0
        block_was = block_lower = tx_was = tx_lower = ""
        for log in logs:
            try:
                topics = log["topics"]
                if not topics or log.get("removed"):
                    continue
                first = topics[0]
                if first.__class__ is not str:
                    topics = [_text(topic) for topic in topics]
                    first = topics[0]
                layout = layouts.get(first, _UNKNOWN)
                if layout is _UNKNOWN:
                    layout = layouts.get(first.lower(), _UNKNOWN)
                    if layout is _UNKNOWN:
                        continue  # an event this contract's types do not know
                emitter = log["address"]
                if emitter != address and emitter.lower() != address:
                    continue
                number, index = log["blockNumber"], log["logIndex"]
                if number != number_was:  # a block's logs come together: its number once
                    number_was = number
                    number_int = int(number, 16) if number.__class__ is str else int(number)
                    if not low <= number_int <= high:
                        raise RPCError(
                            f"the node answered a log of block {number_int}, outside the "
                            f"blocks asked for ({low}..{high})",
                            hint=_LYING_NODE,
                        )
                number = number_int
                index = int(index, 16) if index.__class__ is str else int(index)
                if not 0 <= index <= _MAX_STORED:
                    raise RPCError(
                        f"the node answered a log of block {number} with log index {index}",
                        hint=_LYING_NODE,
                    )
                block_hash, tx_hash = log["blockHash"], log["transactionHash"]
                if block_hash.__class__ is not str or tx_hash.__class__ is not str:
                    block_hash, tx_hash = _text(block_hash), _text(tx_hash)
                if block_hash != block_was:
                    _check_hash(block_hash, "block hash", number)
                    block_was, block_lower = block_hash, block_hash.lower()
                if tx_hash != tx_was:
                    _check_hash(tx_hash, "transaction hash", number)
                    tx_was, tx_lower = tx_hash, tx_hash.lower()
                data = log.get("data", "0x")
                if data.__class__ is not str:
                    data = _text(data)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise RPCError(f"the node answered a malformed log: {exc!r}") from exc
            if (number, index) <= previous:
                ordered = False
            previous = (number, index)
            try:
                if layout is None:
                    rows.append(self._decoded_row(entry, log, number, index, block_hash, tx_hash))
                    continue
                joined = ",".join(topics)  # also how they are stored
            except (TypeError, ValueError, AttributeError) as exc:  # a topic that is no text
                raise RPCError(f"the node answered a malformed log: {exc!r}") from exc
            if len(topics) != layout.topics or not _TOPICS.fullmatch(joined):
                raise ChainError(
                    f"malformed {layout.cls_name} log in block {number}: expected "
                    f"{layout.topics} topics of 32 bytes (0x + hex), got {topics!r}"[:400]
                )
            try:
                for at in layout.address_topics:
                    if topics[at][2:26] != _ZERO_PADDING:
                        raise InputError("an address topic has non-zero padding")
                for at, check in layout.topic_checks:
                    check(topics[at])
                layout.check_data(data)
            except InputError as exc:
                raise ChainError(
                    f"malformed {layout.cls_name} log in block {number}: {exc.message}"
                ) from exc
            job_id: str | None = None
            if layout.job_topic is not None:
                job_id = topics[layout.job_topic].lower()
            elif layout.job_word is not None:
                at = 2 + 64 * layout.job_word
                job_id = "0x" + data[at : at + 64].lower()
            rows.append(
                (
                    stream,
                    number,
                    block_lower,
                    index,
                    tx_lower,
                    layout.name,
                    job_id,
                    joined,
                    data,
                )
            )
        if not ordered:
            rows.sort(key=lambda row: (row[1], row[3]))
            for before, after in itertools.pairwise(rows):
                if (before[1], before[3]) == (after[1], after[3]):
                    raise RPCError(
                        f"the node answered the same log twice (block {after[1]}, log index "
                        f"{after[3]})",
                        hint=_LYING_NODE,
                    )
        return rows

    def _decoded_row(
        self,
        entry: _Followed,
        log: Mapping[str, Any],
        number: int,
        index: int,
        block_hash: str,
        tx_hash: str,
    ) -> _Row:
        """The row of a log whose event has no layout: checked and named by decoding it."""
        decoder = entry.contract.events
        event = decoder.decode(log)
        if event is None:  # cannot be: its topic 0 is one of the decoder's
            raise ChainError(f"the log {number}:{index} is none of its contract's events")
        record = decoder.to_json(event)
        return (
            entry.stream,
            number,
            block_hash.lower(),
            index,
            tx_hash.lower(),
            record.name,
            record.job_id,
            ",".join(_text(topic) for topic in log["topics"]),
            _text(log.get("data", "0x")),
        )

    def _commit(
        self,
        checkpoint: IndexerCheckpoint | None,
        last: BlockRef,
        logs: Sequence[RawLog],
        contract: str | None = None,
    ) -> int:
        """Store ``logs`` (of ``contract``) and move its checkpoint from ``checkpoint`` to
        ``last``, in one transaction; return how many events were stored."""
        entry = self._one(contract)
        rows = self._rows(entry, [raw_log_entry(log) for log in logs])
        self._store(entry, checkpoint, last, rows)
        return len(rows)

    @staticmethod
    def _insert_sqlite(conn: sa.Connection, rows: list[_Row], statements: tuple[str, str]) -> None:
        """Insert ``rows`` in order: whole chunks as multi-row statements (``statements[1]``),
        the rest one by one (``statements[0]``)."""
        whole = len(rows) - len(rows) % _CHUNK
        if whole:
            chunks = [
                tuple(itertools.chain.from_iterable(rows[at : at + _CHUNK]))
                for at in range(0, whole, _CHUNK)
            ]
            conn.exec_driver_sql(statements[1], chunks)
        if whole < len(rows):
            conn.exec_driver_sql(statements[0], rows[whole:])

    def _store(
        self,
        entry: _Followed,
        checkpoint: IndexerCheckpoint | None,
        last: BlockRef,
        rows: list[_Row],
    ) -> IndexerCheckpoint:
        """Insert ``rows`` and move the checkpoint, in one transaction; the new checkpoint.

        On SQLite the transaction is committed without waiting for the disk (``synchronous``
        NORMAL, for this transaction only): a power cut may then take back the last batches,
        but never part of one, and their checkpoint goes back with them, so the indexer reads
        them again and still stores each event once. A crash of the process loses nothing.

        SQLite copies its write-ahead log into the database (a checkpoint, with two fsyncs)
        whenever a commit leaves the log past a size: 1000 pages (4 MiB) by default, which a
        catch-up passes every 6000 events or so, copying the same index pages again each time
        (a third of the CPU of storing, and twice its time). The indexer's commits let the log
        grow to :data:`_WAL_PAGES` first; what a checkpoint does, and when a commit is durable,
        stay the same.
        """
        state = self._state
        try:
            with self._engine.connect() as conn:
                relaxed = self._sqlite_insert is not None
                if relaxed:
                    conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
                    conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={_WAL_PAGES}")
                    conn.commit()
                try:
                    with conn.begin():
                        if rows:
                            if self._sqlite_insert is not None:
                                self._insert_sqlite(conn, rows, self._sqlite_insert)
                            else:
                                conn.execute(
                                    sa.insert(self._events),
                                    [dict(zip(_COLUMNS, row, strict=True)) for row in rows],
                                )
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
                finally:
                    if relaxed:  # the pooled connection goes back as it was
                        conn.exec_driver_sql("PRAGMA synchronous=FULL")
                        conn.exec_driver_sql("PRAGMA wal_autocheckpoint=1000")
                        conn.commit()
        except sa.exc.IntegrityError as exc:
            raise ChainError(
                "an event of this range is already stored: another indexer is writing this "
                "database",
                hint="run one indexer per database",
            ) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise ChainError(f"cannot write the indexer database: {exc}") from exc
        return IndexerCheckpoint(
            chain_id=self.chain_id,
            contract=entry.address,
            start_block=checkpoint.start_block if checkpoint else entry.contract.start_block,
            last_block=last.number,
            last_block_hash=last.hash,
            last_block_timestamp=last.timestamp,
            events=(checkpoint.events if checkpoint else 0) + len(rows),
        )


def _check_hash(value: str, what: str, number: int) -> None:
    """Refuse a log's ``what`` that is not a 32-byte hash (``0x`` and 64 hex digits).

    Raises:
        RPCError: naming the block and the first characters of what the node answered.
    """
    if not _HASH.fullmatch(value):
        raise RPCError(
            f"the node answered a log of block {number} whose {what} is no hash: {value[:80]!r}",
            hint=_LYING_NODE,
        )


def _checked_block(block: BlockRef) -> BlockRef:
    """A range's last block (its checkpoint), refused if its hash or time cannot be one.

    Raises:
        RPCError: the node answered a hash that is none, or a time no column holds.
    """
    if not _HASH.fullmatch(block.hash) or not 0 <= block.timestamp <= _MAX_STORED:
        raise RPCError(
            f"the node answered block {block.number} with hash {block.hash[:80]!r} and time "
            f"{block.timestamp}",
            hint=_LYING_NODE,
        )
    return block


def _text(value: Any) -> str:
    """A hash or topic as ``0x`` + lowercase hex (nodes give text; some clients bytes)."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return str(value).lower()


def _fetch(engine: sa.Engine, query: sa.Select[Any]) -> Sequence[sa.Row[Any]]:
    """The rows ``query`` selects; a database failure is a :class:`~reef.errors.ChainError`."""
    try:
        with engine.connect() as conn:
            return conn.execute(query).all()
    except sa.exc.SQLAlchemyError as exc:
        raise ChainError(f"cannot read the indexer database: {exc}") from exc
