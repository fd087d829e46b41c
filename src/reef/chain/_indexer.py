"""The market indexer: copies a market contract's events into a SQL database, exactly once.

It reads logs in block ranges (500 blocks by default, as Oyster's indexer; halved when a node
refuses a range as too large) up to ``head - confirmations``, decodes them with reef.chain's typed event
decoder (MarketV1's ABI) and stores them in Oyster's ``job_events`` shape (reference §4.4: event names ``Opened``, ``Settled``, ...; U256
values as ``0x`` hex, addresses lowercase), and commits each range's events together with the
checkpoint in **one transaction**. A crash (``kill -9``) therefore loses nothing and repeats
nothing: on restart the checkpoint says exactly where the stored events end. A unique key on
(stream, block number, log index) backs this up, and the checkpoint is advanced with a
compare-and-set, so two indexers writing one database fail loudly instead of duplicating.

Reorganisations: only blocks at least ``confirmations`` deep are read. Before each poll the hash of
the last indexed block is compared with the chain's; if a reorg went deeper than the confirmation
depth the indexer stops with a :class:`~reef.errors.ChainError` rather than keep events of an
abandoned fork (rewinding would silently undo what consumers already acted on).

Storage is SQLAlchemy Core, so any SQLAlchemy URL works (SQLite by default, PostgreSQL for a
production operator); it is synchronous because the work is a short transaction per range and the
RPC client (web3.py) is synchronous too; async callers run :meth:`Indexer.poll` in a thread.

Reading the chain goes through the small :class:`BlockSource` protocol, so tests inject reorgs and
failures, and the same indexer runs against reef's devnet, a hardhat node or a public RPC.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
from web3 import Web3
from web3.exceptions import Web3Exception
from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint

from reef.chain._events import JOB_EVENTS, ChainEvent, EventDecoder, market_decoder
from reef.errors import ChainError, ConfigError, MisuseError, RPCError

__all__ = [
    "BlockRef",
    "BlockSource",
    "DecodedEvent",
    "IndexedEvent",
    "Indexer",
    "IndexerCheckpoint",
    "RawLog",
    "Web3BlockSource",
    "open_database",
    "oyster_event",
    "oyster_event_name",
]

DEFAULT_RANGE = 500
# Phrases nodes use when a getLogs range or result set is too big (geth, erigon, alchemy, infura,
# hardhat): on these the indexer halves its range instead of failing.
_RANGE_REFUSALS = re.compile(
    r"range|too many|more than|limit|exceed|too large|response size|timeout", re.IGNORECASE
)
# MarketV1 job events and the names Oyster's job_events table gives them (JobOpened -> Opened).
_OYSTER_NAMES = {cls.__name__: cls.__name__.removeprefix("Job") for cls in JOB_EVENTS}
# Field names of reef.chain's typed events that Oyster's event_data spells differently.
_FIELD_ALIASES = {"job": "job_id", "from_": "from"}
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def oyster_event_name(abi_name: str) -> str:
    """``JobOpened`` → ``Opened`` (Oyster's ``job_events`` names); other events keep theirs."""
    return _OYSTER_NAMES.get(abi_name, abi_name)


# -- chain side ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawLog:
    """One log as ``eth_getLogs`` returns it (hex strings ``0x``-prefixed, lowercase)."""

    block_number: int
    block_hash: str
    log_index: int
    tx_hash: str
    address: str
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True)
class BlockRef:
    """A block's identity and time: enough to detect reorgs and to know the chain's clock."""

    number: int
    hash: str
    timestamp: int


class BlockSource(Protocol):
    """What the indexer needs from a chain. Every method raises RPCError on failure."""

    def chain_id(self) -> int: ...

    def head(self) -> int:
        """The latest block number."""
        ...

    def block(self, number: int) -> BlockRef:
        """Block ``number`` on the current canonical chain."""
        ...

    def logs(self, address: str, from_block: int, to_block: int) -> Sequence[RawLog]:
        """The logs of ``address`` in ``[from_block, to_block]``, in chain order."""
        ...


def _hex(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    text = str(value).lower()
    return text if text.startswith("0x") else "0x" + text


def _raw(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    text = str(value)
    return bytes.fromhex(text[2:] if text[:2].lower() == "0x" else text)


class Web3BlockSource:
    """A :class:`BlockSource` over a web3.py ``Web3`` (any JSON-RPC URL, or in-process)."""

    def __init__(self, w3: Any) -> None:
        self._w3 = w3

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (OSError, TimeoutError) as exc:
            raise RPCError(
                f"{what} failed: {exc}", hint="check that the JSON-RPC endpoint is reachable"
            ) from exc
        except (Web3Exception, ValueError) as exc:
            raise RPCError(f"{what} failed: {exc}") from exc

    def chain_id(self) -> int:
        return int(self._call("eth_chainId", lambda: self._w3.eth.chain_id))

    def head(self) -> int:
        return int(self._call("eth_blockNumber", lambda: self._w3.eth.block_number))

    def block(self, number: int) -> BlockRef:
        block = self._call(
            f"eth_getBlockByNumber({number})", lambda: self._w3.eth.get_block(number)
        )
        return BlockRef(number, _hex(block["hash"]), int(block["timestamp"]))

    def logs(self, address: str, from_block: int, to_block: int) -> Sequence[RawLog]:
        if not isinstance(self._w3.provider, JSONBaseProvider):
            return self._formatted_logs(address, from_block, to_block)
        # A raw JSON-RPC request: web3.py's result formatters cost more than the HTTP round trip
        # on big ranges, and the node's own error message tells a too-large range apart.
        params = {
            "address": Web3.to_checksum_address(address),
            "fromBlock": hex(from_block),
            "toBlock": hex(to_block),
        }
        what = f"eth_getLogs({from_block}..{to_block})"
        response = self._call(
            what,
            lambda: self._w3.provider.make_request(RPCEndpoint("eth_getLogs"), [params]),
        )
        error = response.get("error") if isinstance(response, dict) else None
        if error:
            message = error.get("message", error) if isinstance(error, dict) else error
            raise RPCError(f"{what} failed: {message}")
        entries = response.get("result") if isinstance(response, dict) else None
        if not isinstance(entries, list):
            raise RPCError(f"{what} answered no list of logs")
        return _raw_logs(entries, what)

    def _formatted_logs(self, address: str, from_block: int, to_block: int) -> list[RawLog]:
        """Through web3.py's formatting, for providers that are not JSON-RPC (eth-tester)."""
        what = f"eth_getLogs({from_block}..{to_block})"
        entries = self._call(
            what,
            lambda: self._w3.eth.get_logs(
                {
                    "address": Web3.to_checksum_address(address),
                    "fromBlock": from_block,
                    "toBlock": to_block,
                }
            ),
        )
        return _raw_logs(entries, what)


def _raw_logs(entries: Sequence[Mapping[str, Any]], what: str) -> list[RawLog]:
    """Logs as a node or web3.py gives them (hex strings or bytes and ints), without removed ones.

    Raises:
        RPCError: naming ``what`` when an entry lacks a field or holds a malformed one.
    """
    try:
        return [
            RawLog(
                block_number=_int(entry["blockNumber"]),
                block_hash=_hex(entry["blockHash"]),
                log_index=_int(entry["logIndex"]),
                tx_hash=_hex(entry["transactionHash"]),
                address=_hex(entry["address"]),
                topics=tuple(_raw(t) for t in entry["topics"]),
                data=_raw(entry["data"]),
            )
            for entry in entries
            if not entry.get("removed", False)
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise RPCError(f"{what} answered a malformed log: {exc}") from exc


def _int(value: Any) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    return int(text, 16) if text[:2].lower() == "0x" else int(text)


# -- decoding -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodedEvent:
    """A log decoded into Oyster's ``job_events`` shape."""

    name: str
    job_id: str | None
    data: Mapping[str, Any]


def _oyster_value(value: Any) -> Any:
    """Oyster's event_data conventions: U256 as 0x hex, addresses lowercase, bytes as 0x hex."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, str) and _ADDRESS.match(value):
        return value.lower()
    return value


def oyster_event(event: ChainEvent) -> DecodedEvent:
    """A typed market event in Oyster's ``job_events`` shape (reference §4.4).

    ``JobOpened`` becomes ``Opened`` with ``event_data`` keys ``job_id, owner, provider,
    metadata, rate, balance, timestamp``; ``JobMetadataUpdated`` carries ``new_metadata``;
    ``JobDeposited`` ``from``. Other events keep their names and snake_case fields.
    """
    name = oyster_event_name(type(event).__name__)
    data: dict[str, Any] = {}
    for key, value in event.args().items():
        key = _FIELD_ALIASES.get(key, key)
        data[key] = _oyster_value(value)
    if name == "MetadataUpdated" and "metadata" in data:
        data["new_metadata"] = data.pop("metadata")
    job_id = data.get("job_id")
    return DecodedEvent(name, str(job_id) if job_id is not None else None, data)


# -- storage --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexedEvent:
    """One stored event. ``id`` orders events across the whole stream (consumers page by it)."""

    id: int
    block_number: int
    block_hash: str
    log_index: int
    tx_hash: str
    name: str
    job_id: str | None
    data: Mapping[str, Any] = field(default_factory=dict)


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


class Indexer:
    """Indexes one market contract into one database.

    Args:
        source: the chain.
        db: a SQLAlchemy URL or engine (tables are created if missing).
        contract: the market address.
        decoder: how to decode the contract's logs (default: the market's, by its ABI).
        start_block: the first block to read (the market's deployment block).
        confirmations: how deep a block must be before it is read (0 on a dev chain that never
            reorganises; a few on a real chain).
        block_range: the largest block range asked for at once.
    """

    def __init__(
        self,
        source: BlockSource,
        db: str | sa.Engine,
        *,
        contract: str,
        decoder: EventDecoder | None = None,
        start_block: int = 0,
        confirmations: int = 0,
        block_range: int = DEFAULT_RANGE,
    ) -> None:
        if confirmations < 0 or block_range < 1 or start_block < 0:
            raise MisuseError("confirmations and start_block must be >= 0, block_range >= 1")
        self._source = source
        self._engine = open_database(db) if isinstance(db, str) else db
        self._contract = contract.lower()
        self._decoder = decoder or market_decoder()
        self._start = start_block
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
    def stream(self) -> str:
        return f"{self.chain_id}:{self._contract}"

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self._source.chain_id()
        return self._chain_id

    # -- reading what is stored ------------------------------------------------------------

    def checkpoint(self) -> IndexerCheckpoint | None:
        rows = _fetch(
            self._engine, sa.select(self._state).where(self._state.c.stream == self.stream)
        )
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
        """The timestamp of the last indexed block: the chain's clock, as far as we know it."""
        checkpoint = self.checkpoint()
        return None if checkpoint is None else checkpoint.last_block_timestamp

    def events(self, *, after: int = 0, limit: int = 1000) -> list[IndexedEvent]:
        """Stored events with ``id > after``, oldest first."""
        return _read_events(self._engine, self._events, self.stream, after=after, limit=limit)

    # -- indexing -------------------------------------------------------------------------

    def poll(self, *, max_ranges: int | None = None) -> int:
        """Index every confirmed block not indexed yet; return how many events were stored.

        Each range is committed on its own, so an error (or a kill) part-way keeps the ranges
        before it and repeats none of them.

        Raises:
            RPCError: the chain could not be read (nothing of the failed range is stored).
            ChainError: a reorganisation deeper than the confirmation depth, or an undecodable log.
        """
        checkpoint = self.checkpoint()
        head = self._source.head()
        safe = head - self._confirmations
        if checkpoint is not None:
            self._check_not_reorged(checkpoint)
            next_block = checkpoint.last_block + 1
        else:
            next_block = self._start
        stored = 0
        ranges = 0
        while next_block <= safe and (max_ranges is None or ranges < max_ranges):
            to_block = min(safe, next_block + self._range - 1)
            logs = self._read_range(next_block, to_block)
            last = self._source.block(to_block)
            stored += self._commit(checkpoint, last, logs)
            checkpoint = self.checkpoint()
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

    def _read_range(self, from_block: int, to_block: int) -> list[RawLog]:
        """Logs of the range, halving it while the node refuses it as too large."""
        try:
            return list(self._source.logs(self._contract, from_block, to_block))
        except RPCError as exc:
            if to_block == from_block or not _RANGE_REFUSALS.search(str(exc)):
                raise
            middle = (from_block + to_block) // 2
            return self._read_range(from_block, middle) + self._read_range(middle + 1, to_block)

    def _commit(
        self, checkpoint: IndexerCheckpoint | None, last: BlockRef, logs: Sequence[RawLog]
    ) -> int:
        rows = []
        for log in sorted(logs, key=lambda item: (item.block_number, item.log_index)):
            if log.address.lower() != self._contract:
                continue
            event = self._decoder.decode(
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
            decoded = oyster_event(event)
            rows.append(
                {
                    "stream": self.stream,
                    "block_number": log.block_number,
                    "block_hash": log.block_hash,
                    "log_index": log.log_index,
                    "tx_hash": log.tx_hash,
                    "event_name": decoded.name,
                    "job_id": decoded.job_id,
                    "event_data": json.dumps(dict(decoded.data), sort_keys=True),
                }
            )
        try:
            with self._engine.begin() as conn:
                if rows:
                    conn.execute(sa.insert(self._events), rows)
                if checkpoint is None:
                    conn.execute(
                        sa.insert(self._state).values(
                            stream=self.stream,
                            chain_id=self.chain_id,
                            contract=self._contract,
                            start_block=self._start,
                            last_block=last.number,
                            last_block_hash=last.hash,
                            last_block_timestamp=last.timestamp,
                            events=len(rows),
                        )
                    )
                else:
                    result = conn.execute(
                        sa.update(self._state)
                        .where(self._state.c.stream == self.stream)
                        .where(self._state.c.last_block == checkpoint.last_block)
                        .values(
                            last_block=last.number,
                            last_block_hash=last.hash,
                            last_block_timestamp=last.timestamp,
                            events=self._state.c.events + len(rows),
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


def _read_events(
    engine: sa.Engine, table: sa.Table, stream: str, *, after: int, limit: int
) -> list[IndexedEvent]:
    query = (
        sa.select(table)
        .where(table.c.stream == stream)
        .where(table.c.id > after)
        .order_by(table.c.id)
        .limit(limit)
    )
    return [
        IndexedEvent(
            id=int(row.id),
            block_number=int(row.block_number),
            block_hash=str(row.block_hash),
            log_index=int(row.log_index),
            tx_hash=str(row.tx_hash),
            name=str(row.event_name),
            job_id=row.job_id,
            data=json.loads(row.event_data),
        )
        for row in _fetch(engine, query)
    ]


def _fetch(engine: sa.Engine, query: sa.Select[Any]) -> Sequence[sa.Row[Any]]:
    """The rows ``query`` selects; a database failure is a :class:`~reef.errors.ChainError`."""
    try:
        with engine.connect() as conn:
            return conn.execute(query).all()
    except sa.exc.SQLAlchemyError as exc:
        raise ChainError(f"cannot read the indexer database: {exc}") from exc
