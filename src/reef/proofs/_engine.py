"""The matching engine service: index the market, keep the book, assign asks in batches.

Each :meth:`MatchingEngine.step`:

1. polls reef.chain's :class:`~reef.chain.Indexer` (the market's events into SQL, each range
   committed with its checkpoint, so a ``kill -9`` loses and repeats no event);
2. applies the stored events it has not applied yet to the in-memory :class:`OrderBook` (on a
   restart it replays them all from the database, so the book comes back exactly);
3. finishes a batch a previous run recorded but may not have sent (see below);
4. every few seconds, closes what nobody else closed: ``refundExpired`` for asks past their
   expiry, ``slash`` for provers past their deadline (the contract lets anyone do both);
5. matches a round (pure, ``_matching``) and assigns it in one ``assign`` transaction.

Retired markets (``MarketRetired``) are ignored: their open asks are never assigned (they stay
open until cancelled, or expire and step 4 refunds them); their assigned asks are still
slashed at their deadlines, as the contract's rules for them are unchanged.

Idempotence: a batch is written to the ``proofs_batches`` table *before* it is sent and marked
done after its receipt. A batch found pending on start is sent again: the contract assigns only
open asks and logs the rest as skipped, so a batch that had in fact been mined assigns nothing
twice, and one that had not is not lost. A stale ask (expired, cancelled, taken) in a batch is
skipped on chain, never reverting the others, so it cannot block the book.

Private inputs: the engine publishes its key on chain (``publishEngineKey``; the contract checks
it is the key of the ``matchingEngine`` address), requesters encrypt their inputs' AES key to
it, and for each private ask a round assigns, the engine opens that ACL, checks the key opens
the body (an ask whose body it cannot open is never assigned and is refunded at expiry), and
re-encrypts the key to the chosen prover's registered market key; the new ACL goes into the
batch (and into its record, so a re-sent batch carries the same ACLs).

The engine's account must be the market's ``matchingEngine``. Storage is SQLAlchemy Core on the
indexer's engine (SQLite by default; any URL): the batches table is one the indexer adds to its
database for the engine (:meth:`~reef.chain.Indexer.add_tables`).

History: the book is a projection of *every* event the market emitted, so the engine indexes
from the market's deployment block (or any earlier one). :meth:`MatchingEngine.on_database`
refuses a start block after it (``--from-block`` on the command line), naming the block to use,
rather than learning the skipped state from the contract's views: the contract cannot list its
provers nor their quotes, and private asks' ACLs live only in the event log, so views would
rebuild only part of the book, and a partial book assigns silently wrong (provers it never
offers, stake and compute it thinks free). An engine whose indexer was set up by hand and that
meets an event about a prover it never saw registered stops with the same advice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from web3 import Web3

from reef.chain import IndexedContract, Indexer, Web3BlockSource, translate_errors
from reef.crypto import Secp256k1PrivateKey
from reef.errors import (
    ChainError,
    ConfigError,
    ContractRevertError,
    InputError,
    InvalidProofInputError,
    ProofError,
)
from reef.proofs._book import OrderBook, _HistoryGapError
from reef.proofs._client import ProofMarketClient
from reef.proofs._events import TaskAssigned, proof_market_decoder
from reef.proofs._loop import _step_until_stopped
from reef.proofs._matching import Quote, match_round
from reef.proofs._secret import ecies_decrypt, ecies_encrypt, open_secret

__all__ = ["EngineStep", "MatchingEngine"]

log = logging.getLogger("reef.proofs.engine")

_PAGE = 5000
_SWEEP_S = 5  # how often the engine closes expired and deadline-crossed asks
_SWEEP_MAX = 32  # closing transactions per sweep (the rest wait for the next one)


@dataclass(frozen=True)
class EngineStep:
    """What one step did."""

    events: int
    assigned: int
    resent: bool


def _batches(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "proofs_batches",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("market", sa.String(42), nullable=False),
        sa.Column("pairs", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=True),
    )


class MatchingEngine:
    """Assigns a proof market's asks; see the module docstring.

    Args:
        client: the market, with the matching engine's account.
        indexer: an indexer following that market (its database also holds the batches).
        batch_size: most assignments per transaction.
        clock: seconds since the epoch, as the chain counts them (a parameter for tests).
        private_key: the engine's secp256k1 secret, which opens private inputs' ACLs (default:
            the client's account key, which is what the contract checks the published key
            against).
        ignore_provers: provers never to assign (compared case-insensitively): those known to
            be gone, e.g. the enclaves of an earlier ``reef up``, whose keys died with them and
            which so can never prove nor leave their markets.
    """

    def __init__(
        self,
        client: ProofMarketClient,
        indexer: Indexer,
        *,
        batch_size: int = 64,
        clock: Callable[[], float] = time.time,
        private_key: bytes | None = None,
        ignore_provers: Iterable[str] = (),
    ) -> None:
        if not 1 <= batch_size <= 256:
            raise ProofError("the batch size must be between 1 and 256 (the contract's bound)")
        self.client = client
        self.indexer = indexer
        self.batch_size = batch_size
        self.clock = clock
        self.book = OrderBook()
        self.ignore_provers = frozenset(p.lower() for p in ignore_provers)
        if private_key is None:
            private_key = getattr(client.account, "key", None)
        self._key = None if private_key is None else Secp256k1PrivateKey(bytes(private_key))
        self._key_published = False
        self._after = 0
        self._next_sweep = 0
        self._close_failures: dict[int, int] = {}
        self._meta = sa.MetaData()
        self._table = _batches(self._meta)
        indexer.add_tables(self._meta)

    @classmethod
    def on_database(
        cls,
        client: ProofMarketClient,
        db_url: str,
        *,
        start_block: int = 0,
        stream: str = "proofs",
        batch_size: int = 64,
        clock: Callable[[], float] = time.time,
        ignore_provers: Iterable[str] = (),
    ) -> MatchingEngine:
        """An engine for ``client``'s market whose indexer follows that market from
        ``start_block`` into the database at ``db_url`` (a SQLite file's folder is made), under
        ``stream`` (a restarted engine resumes the stream it finds there).

        Raises:
            ConfigError: the market was deployed before ``start_block``, so its history would
                be missed (see the module docstring); the hint names the block to start from.
            ConfigError: the database cannot be opened, or the engine's table not created in
                it.
            ProofError: ``batch_size`` is out of the contract's bounds.
        """
        _check_start_block(client, start_block)
        if db_url.startswith("sqlite:///"):
            Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        watched = IndexedContract(
            address=client.address,
            events=proof_market_decoder(),
            stream=stream,
            start_block=start_block,
        )
        indexer = Indexer(Web3BlockSource(client.w3), db_url, contracts=[watched])
        return cls(
            client, indexer, batch_size=batch_size, clock=clock, ignore_provers=ignore_provers
        )

    def _quotes(self) -> Iterable[Quote]:
        quotes = self.book.quotes.values()
        if not self.ignore_provers:
            return quotes
        return [q for q in quotes if q.prover.lower() not in self.ignore_provers]

    def _now(self) -> int:
        return int(self.clock())

    def _pending(self) -> tuple[int, list[tuple[int, str, bytes]]] | None:
        table = self._table
        query = sa.select(table.c.id, table.c.pairs).where(
            (table.c.state == "pending") & (table.c.market == self.client.address.lower())
        )
        with self.indexer.engine.connect() as conn:
            row = conn.execute(query.order_by(table.c.id).limit(1)).first()
        if row is None:
            return None
        return int(row.id), [
            (int(entry[0]), str(entry[1]), bytes.fromhex(entry[2]) if len(entry) > 2 else b"")
            for entry in json.loads(row.pairs)
        ]

    def record_batch(self, pairs: list[tuple[int, str]] | list[tuple[int, str, bytes]]) -> int:
        """Write a batch (ask, prover[, ACL]) as pending (before it is sent); returns its id."""
        rows = [[p[0], p[1], (p[2] if len(p) > 2 else b"").hex()] for p in pairs]
        with self.indexer.engine.begin() as conn:
            result = conn.execute(
                self._table.insert().values(
                    market=self.client.address.lower(), pairs=json.dumps(rows), state="pending"
                )
            )
            key = result.inserted_primary_key
            if key is None:  # pragma: no cover - an insert into an autoincrement table has one
                raise ChainError("recording a batch gave no id")
            return int(key[0])

    def _done(self, batch_id: int, tx_hash: str) -> None:
        with self.indexer.engine.begin() as conn:
            conn.execute(
                self._table.update()
                .where(self._table.c.id == batch_id)
                .values(state="done", tx_hash=tx_hash)
            )

    def _send(self, batch_id: int, pairs: list[tuple[int, str, bytes]]) -> int:
        try:
            result = self.client.assign(
                [a for a, _, _ in pairs], [p for _, p, _ in pairs], [acl for _, _, acl in pairs]
            )
        except ContractRevertError as exc:
            self._refused(batch_id, pairs, exc)
            return 0
        self._done(batch_id, result.tx_hash)
        return sum(1 for e in result.events if isinstance(e, TaskAssigned))

    def _refused(
        self, batch_id: int, pairs: list[tuple[int, str, bytes]], exc: ContractRevertError
    ) -> None:
        """The contract reverted a whole batch. ``assign`` skips a pair that no longer
        qualifies, so something in the batch breaks the contract itself (an ask's terms
        overflowing its arithmetic, say) and sending it again would revert again, blocking
        every later batch. The batch is retired and, in the same database transaction, each of
        its pairs recorded as a pending batch of its own: the good ones go through, and a pair
        the contract refuses alone is dropped (its ask is never offered again; it expires and
        is refunded)."""
        table = self._table
        with self.indexer.engine.begin() as conn:
            conn.execute(table.update().where(table.c.id == batch_id).values(state="reverted"))
            if len(pairs) > 1:
                for pair in pairs:
                    conn.execute(
                        table.insert().values(
                            market=self.client.address.lower(),
                            pairs=json.dumps([[pair[0], pair[1], pair[2].hex()]]),
                            state="pending",
                        )
                    )
        if len(pairs) > 1:
            log.warning(
                "a batch of %s assignments reverted (%s): sending each alone", len(pairs), exc
            )
            return
        ask_id = pairs[0][0]
        log.warning("ask %s: its assignment reverts (%s), never assigned", ask_id, exc)
        self.book.shelve(ask_id)

    def step(self) -> EngineStep:
        """Index, apply, finish a pending batch or match and send one; see the module docstring."""
        if not self._key_published:
            self.publish_key()
        self.indexer.poll()
        events = self.catch_up()
        pending = self._pending()
        if pending is not None:
            assigned = self._send(*pending)
            self.indexer.poll()
            events += self.catch_up()
            return EngineStep(events, assigned, resent=True)
        now = self._now()
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_S
            if self.sweep(now):
                self.indexer.poll()
                events += self.catch_up()
        pairs = match_round(
            self.book.candidates(),
            self._quotes(),
            self.book.capacity(now),
            self.book.penalties,
            now=now,
            limit=self.batch_size,
            on_unmatched=self.book.park,
        )
        batch = self._with_acls(pairs)
        if not batch:
            return EngineStep(events, 0, resent=False)
        assigned = self._send(self.record_batch(batch), batch)
        self.indexer.poll()
        events += self.catch_up()
        return EngineStep(events, assigned, resent=False)

    @property
    def public_key(self) -> bytes | None:
        """The engine's public key (64 bytes), to which requesters encrypt; None without a key."""
        return None if self._key is None else self._key.public_key.raw

    def publish_key(self) -> None:
        """Publish the engine's key on chain unless it is there already."""
        if self._key is None:
            self._key_published = True  # no key: this engine serves public asks only
            return
        if self.client.engine_key() != self._key.public_key.raw:
            self.client.publish_engine_key(self._key.public_key.raw)
        self._key_published = True

    def _with_acls(self, pairs: list[tuple[int, str]]) -> list[tuple[int, str, bytes]]:
        """Each pair with its ACL: empty for a public ask, else the ask's AES key re-encrypted
        to the prover's market key. Private asks whose ACL or body this engine cannot open are
        dropped and never offered again."""
        out = []
        for ask_id, prover in pairs:
            secret = self.book.secrets.get(ask_id)
            if secret is None:
                out.append((ask_id, prover, b""))
                continue
            prover_key = self.book.prover_keys.get((prover, secret.market_id))
            try:
                if self._key is None or prover_key is None:
                    raise ProofError("no engine key or no prover key")
                aes_key = ecies_decrypt(self._key.secret, secret.acl)
                # A body that opens but holds no valid inputs is assigned: the IVS closes it.
                with contextlib.suppress(InvalidProofInputError):
                    open_secret(secret.secret, aes_key, secret.market_id)
                out.append((ask_id, prover, ecies_encrypt(prover_key, aes_key)))
            except (ProofError, InputError) as exc:
                log.warning("ask %s: private inputs unusable, never assigned: %s", ask_id, exc)
                self.book.shelve(ask_id)
        return out

    def sweep(self, now: int) -> int:
        """Close what nobody else closed: refund asks past their expiry and slash provers past
        their deadline (anyone may; the engine does it so no ask lingers). Returns how many it
        closed; one that another caller closed first is skipped."""
        closed = 0
        work = [(a, self.client.refund_expired) for a in self.book.expired(now)]
        work += [(a, self.client.slash) for a in self.book.crossed(now)]
        work = [(a, close) for a, close in work if self._close_failures.get(a, 0) < 3]
        for ask_id, close in work[:_SWEEP_MAX]:
            try:
                close(ask_id)
            except ChainError:
                # Closed by someone else (its event is on the way), or the node hiccuped: try
                # again next sweep, but not forever, so a few odd asks cannot crowd out the rest.
                self._close_failures[ask_id] = self._close_failures.get(ask_id, 0) + 1
                continue
            closed += 1
        return closed

    def catch_up(self) -> int:
        """Apply every stored event not applied yet; returns how many."""
        applied = 0
        while True:
            page = self.indexer.events(after=self._after, limit=_PAGE)
            if not page:
                return applied
            now = self._now()
            for stored in page:
                try:
                    self.book.apply(stored.event, now)
                except _HistoryGapError as exc:
                    raise ConfigError(
                        f"the matching engine's events start after the market's history "
                        f"began: {exc}",
                        hint=f"index the market from the block that deployed it: {_START_HINT}",
                    ) from exc
                # Per event, so an event that fails is the next one applied, never one before it.
                self._after = stored.id
                applied += 1

    async def run(self, *, interval_s: float = 0.5, stop: asyncio.Event | None = None) -> None:
        """Step until ``stop`` is set; a failing step is retried after ``interval_s``."""
        await _step_until_stopped(
            self.step,
            busy=lambda result: result.assigned > 0 or result.resent,
            log=log,
            what="matching engine",
            interval_s=interval_s,
            stop=stop,
        )


_START_HINT = (
    "reef proofs engine run --from-block N (MatchingEngine.on_database(start_block=N)), with a "
    "fresh --db, or without --from-block"
)


def _has_code(client: ProofMarketClient, block: int) -> bool:
    with translate_errors(f"eth_getCode at block {block}", client.address):
        return bool(client.w3.eth.get_code(Web3.to_checksum_address(client.address), block))


def _deployment_block(client: ProofMarketClient, before: int) -> int:
    """The block that deployed the market, which has code at ``before``: a binary search over
    the market's code at past blocks.

    Raises:
        ChainError: the node cannot tell (a node that keeps no old state refuses old blocks).
    """
    low, high = 0, before  # no code before ``low`` (none at all before block 0); code at ``high``
    while low < high:
        middle = (low + high) // 2
        if _has_code(client, middle):
            high = middle
        else:
            low = middle + 1
    return high


def _check_start_block(client: ProofMarketClient, start_block: int) -> None:
    """Refuse to index the market from ``start_block`` if it existed at the block before.

    The check reads the market's code at that block: one request, where looking for its logs
    in every earlier block would scan the chain's whole history. It is stricter than needed by
    the blocks between the deployment and the market's first event, which a start block has no
    reason to skip. A node that keeps no state that old cannot answer: the engine then starts,
    with a warning, and the book stops it at the first event about an unknown prover.

    Raises:
        ConfigError: the market was deployed before ``start_block``.
    """
    if start_block <= 0:
        return
    try:
        existed = _has_code(client, start_block - 1)
    except ChainError as exc:
        log.warning(
            "cannot check that the market did not exist before block %s (%s): make sure it was "
            "deployed at or after it",
            start_block,
            exc,
        )
        return
    if not existed:
        return
    try:
        use = f"--from-block {_deployment_block(client, start_block - 1)}"
    except ChainError:
        use = "--from-block at or before the block that deployed it"
    raise ConfigError(
        f"the proof market {client.address} existed before the engine's first block "
        f"(--from-block {start_block}): indexing from there, the engine would never learn the "
        "markets, asks, provers and quotes of the blocks it skips, and would assign from a "
        "wrong order book",
        hint=f"start it with {use} (the market's deployment block), or without --from-block "
        "to start from reef up's block",
    )
