"""The devnet: a :class:`Chain` kept under ``$REEF_HOME/chain``, with reef's contracts on it.

Execution lives in :mod:`reef.chain.devnet._engine`; this module is persistence: opening a
devnet replays its journal (from a checkpoint of py-evm's database when one matches), every
block and clock change is appended to the journal through the :class:`Recorder` interface, a
snapshot revert truncates it, and closing writes ``devnet.json`` and a checkpoint. A new devnet
gets reef's contracts deployed and the dev accounts funded (:func:`reef.chain.deploy_contracts`).
The file formats are :mod:`reef.chain.devnet._store`'s.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from reef.chain._deploy import Deployment
from reef.chain.devnet._accounts import deploy_for_dev_accounts, settle_contracts
from reef.chain.devnet._engine import Chain
from reef.chain.devnet._store import (
    CHECKPOINT_NAME,
    INFO_NAME,
    JOURNAL_FORMAT,
    JOURNAL_NAME,
    DevnetInfo,
    DevnetLock,
    Journal,
    read_checkpoint,
    write_checkpoint,
    write_devnet_info,
)
from reef.chain.devnet._types import DEFAULT_BALANCE_WEI, TxRequest
from reef.errors import ChainError, ConfigError
from reef.home import ReefHome

if TYPE_CHECKING:
    from web3 import Web3

    from reef.chain.devnet._provider import DevnetProvider

__all__ = [
    "DEFAULT_BALANCE_WEI",
    "Devnet",
    "TxRequest",
]

_CHECKPOINT_AFTER: Final = 200
"""Replaying more journal entries than this at start writes a checkpoint straight away."""
_log = logging.getLogger("reef.chain.devnet")

ReplayProgress = Callable[[int, int], None]
"""Told (entries replayed, entries to replay) while a journal is replayed."""


def _checkpoint_start(
    header: Mapping[str, Any], entries: Sequence[Mapping[str, Any]], ends: Sequence[int]
) -> int | None:
    """The index of the first journal entry after a checkpoint, if the checkpoint matches the
    journal: its position is an entry boundary and the last block up to there is its head."""
    try:
        index = list(ends).index(int(header["journal_bytes"]))
    except (KeyError, TypeError, ValueError):
        return None
    last: Mapping[str, Any] = entries[0]
    for entry in entries[: index + 1]:
        if entry.get("kind") == "block":
            last = entry
    number = 0 if last is entries[0] else last.get("number")
    if number != header.get("head") or last.get("hash") != header.get("head_hash"):
        return None
    return index + 1


def _forget_state(directory: Path) -> None:
    """Delete a devnet's journal, ``devnet.json`` and checkpoint (the lock file stays)."""
    for name in (JOURNAL_NAME, INFO_NAME, CHECKPOINT_NAME):
        (directory / name).unlink(missing_ok=True)


@dataclass
class _Persistence:
    """A devnet's hold on ``$REEF_HOME/chain``, and the :class:`Recorder` its chain writes to."""

    home: ReefHome
    journal: Journal
    lock: DevnetLock
    info: DevnetInfo
    checkpoint_position: int | None = None
    """The journal position the checkpoint on disk reflects, if there is one."""

    @property
    def position(self) -> int:
        return self.journal.position

    def record(self, entries: Sequence[Mapping[str, Any]]) -> None:
        self.journal.extend(entries)

    def truncate(self, position: int) -> None:
        checkpoint = self.checkpoint_position
        if checkpoint is not None and position < checkpoint:
            # The checkpoint holds blocks this revert forgets: drop it first.
            (self.home.chain / CHECKPOINT_NAME).unlink(missing_ok=True)
            self.checkpoint_position = None
        self.journal.truncate(position)


class Devnet(Chain):
    """An in-process EVM chain for development: wall-clock blocks, dev accounts, test controls.

    Create one in memory with ``Devnet()``, or bound to ``$REEF_HOME`` (journal, lock, contracts
    deployed, ``devnet.json``) with :meth:`open`. Serve it over JSON-RPC with
    ``serve_devnet(devnet)``, or use it in process through :meth:`web3`.

    Its constructor is :class:`~reef.chain.devnet._engine.Chain`'s (same arguments, same
    errors); persistence is attached by :meth:`open`.
    """

    # Set by open(): a devnet made by the constructor lives in memory only.
    _persistence: _Persistence | None = None
    _deployment: Deployment | None = None
    _rate_lock_s: int | None = None

    @classmethod
    def _from_genesis(cls, genesis: Mapping[str, Any], *, clock: Callable[[], float]) -> Devnet:
        """A new devnet as a journal's genesis entry (:meth:`_genesis_entry`) describes it.

        Raises:
            ConfigError: if the entry lacks a field or holds an invalid one.
        """
        try:
            return cls(
                chain_id=int(genesis["chain_id"]),
                accounts=int(genesis["accounts"]),
                balance_wei=int(genesis["balance_wei"]),
                mnemonic=str(genesis["mnemonic"]),
                clock=clock,
                genesis_timestamp=int(genesis["timestamp"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"the devnet journal's genesis entry is invalid ({exc})",
                hint="start over with `reef chain --fresh`",
            ) from exc

    @classmethod
    def _from_database(
        cls,
        genesis: Mapping[str, Any],
        database: dict[bytes, bytes],
        *,
        clock: Callable[[], float],
    ) -> Devnet:
        """A devnet over a py-evm database restored from a checkpoint (see :meth:`open`)."""
        devnet = cls._from_genesis(genesis, clock=clock)
        devnet._adopt_database(database)
        return devnet

    # ----------------------------------------------------------------- opening from $REEF_HOME

    @classmethod
    def open(
        cls,
        home: ReefHome,
        *,
        fresh: bool = False,
        rate_lock_s: int | None = None,
        accounts: int = 10,
        deploy: bool = True,
        clock: Callable[[], float] = time.time,
        durable: bool = True,
        progress: ReplayProgress | None = None,
        lock: DevnetLock | None = None,
    ) -> Devnet:
        """The devnet kept under ``$REEF_HOME/chain``: replayed from its journal, or created.

        A new devnet gets reef's contracts deployed (token, market with ``rate_lock_s``, KMS
        registry) and every dev account funded with test tokens. ``devnet.json`` is written
        either way. The devnet holds a lock on the directory until :meth:`close`.

        Args:
            home: where the state lives.
            fresh: delete any existing state first.
            rate_lock_s: the market's rate lock wait time (300 s when creating); for an existing
                devnet it must match the one it was deployed with.
            accounts: how many dev accounts a new devnet funds.
            deploy: deploy reef's contracts on a new devnet.
            clock: the wall clock.
            durable: sync the journal to disk right after every block (in the background, see
                :mod:`reef.chain.devnet._store`); turn off only for throwaway state.
            progress: called with (entries replayed, entries to replay) while the journal is
                replayed at start, for a progress bar.
            lock: ``home``'s chain lock, acquired already (``reef up`` takes it before
                anything else starts, to refuse a second network there first); the devnet
                owns it from here on (released by :meth:`close`, or here if opening fails).

        Raises:
            ChainError: if another devnet holds the lock.
            ConfigError: if the journal cannot be replayed, or ``rate_lock_s`` differs from the
                deployed market's.
        """
        if lock is None:
            lock = DevnetLock(home)
            lock.acquire()
        directory = home.chain
        journal_path = directory / JOURNAL_NAME
        devnet: Devnet | None = None
        created = False
        try:
            if fresh:
                _forget_state(directory)
            replayed = 0
            checkpoint: int | None = None
            if journal_path.exists():
                journal, entries, ends = Journal.open(journal_path, durable=durable)
                try:
                    devnet, replayed, checkpoint = cls._resume(
                        home, entries, ends, clock=clock, progress=progress
                    )
                except BaseException:
                    with contextlib.suppress(OSError):  # the replay's error is the one to tell
                        journal.close()
                    raise
            else:
                devnet = cls(accounts=accounts, clock=clock)
                journal = Journal.create(journal_path, devnet._genesis_entry(), durable=durable)
                created = True
            info = DevnetInfo(
                chain_id=devnet.chain_id,
                accounts=devnet.accounts,
                genesis_timestamp=devnet._blocks[0].timestamp,
            )
            devnet._persistence = _Persistence(home, journal, lock, info, checkpoint)
            devnet._recorder = devnet._persistence
            settle_contracts(
                f"devnet in {directory}",
                devnet._rate_lock_s,
                rate_lock_s,
                deploy=devnet._deploy if deploy else None,
                hint="drop --rate-lock, or start over with `reef chain --fresh`",
            )
            devnet._write_info()
            if replayed >= _CHECKPOINT_AFTER:
                # A long replay is worth saving now, not only at a clean close.
                devnet._write_checkpoint()
            return devnet
        except BaseException:
            if devnet is not None and devnet._persistence is not None:
                with contextlib.suppress(OSError):  # the error that stopped open() matters
                    devnet._persistence.journal.close()
                devnet._persistence = None
                devnet._recorder = None
            if created:
                # A chain that failed to come up (say, its contracts did not deploy) is not
                # kept: the next start begins cleanly instead of replaying half a deployment.
                _forget_state(directory)
            lock.release()
            raise

    @classmethod
    def _resume(
        cls,
        home: ReefHome,
        entries: Sequence[Mapping[str, Any]],
        ends: Sequence[int],
        *,
        clock: Callable[[], float],
        progress: ReplayProgress | None = None,
    ) -> tuple[Devnet, int, int | None]:
        """The devnet the journal describes, from its checkpoint when one matches; also return
        how many journal entries were replayed and the journal position of the checkpoint
        used, if any."""
        path = home.chain / CHECKPOINT_NAME
        checkpoint = read_checkpoint(path)
        if checkpoint is not None:
            header, database = checkpoint
            start = _checkpoint_start(header, entries, ends)
            if start is not None:
                try:
                    devnet = cls._from_database(entries[0], database, clock=clock)
                    head = devnet._blocks[-1]
                    if (
                        "0x" + devnet._blocks[0].hash.hex() != entries[0].get("hash")
                        or head.number != header["head"]
                        or "0x" + head.hash.hex() != header["head_hash"]
                    ):
                        raise ConfigError("the checkpoint's chain is not the journal's")
                    for entry in entries[1:start]:
                        if entry.get("kind") == "deployment":
                            devnet._replay_entry(entry)
                    devnet._restore_clock(header)
                    devnet._replay_from(entries, start, progress)
                    return devnet, len(entries) - start, int(header["journal_bytes"])
                except Exception:
                    # A checkpoint only saves time; whatever is wrong with it, the journal
                    # (checked block by block) remains the record.
                    _log.warning("devnet: ignoring the checkpoint %s; replaying the journal", path)
        return cls._replay(entries, clock=clock, progress=progress), len(entries) - 1, None

    @classmethod
    def _replay(
        cls,
        entries: Sequence[Mapping[str, Any]],
        *,
        clock: Callable[[], float],
        progress: ReplayProgress | None = None,
    ) -> Devnet:
        genesis = entries[0]
        devnet = cls._from_genesis(genesis, clock=clock)
        if "0x" + devnet._blocks[0].hash.hex() != genesis.get("hash"):
            raise ConfigError(
                "the devnet journal's genesis block does not match this reef's genesis",
                hint="start over with `reef chain --fresh`",
            )
        devnet._replay_from(entries, 1, progress)
        return devnet

    def _replay_from(
        self,
        entries: Sequence[Mapping[str, Any]],
        start: int,
        progress: ReplayProgress | None = None,
    ) -> None:
        total = len(entries) - start
        for line, entry in enumerate(entries[start:], start + 1):
            if progress is not None and (line - start - 1) % 50 == 0:
                progress(line - start - 1, total)
            try:
                self._replay_entry(entry)
            except (KeyError, TypeError, ValueError, ChainError) as exc:
                raise ConfigError(
                    f"the devnet journal does not replay at line {line}: {exc}",
                    hint="start over with `reef chain --fresh`",
                ) from exc
        if progress is not None:
            progress(total, total)

    def _replay_entry(self, entry: Mapping[str, Any]) -> None:
        kind = entry.get("kind")
        if kind == "block":
            raw = entry.get("tx")
            self._replay_block(
                int(entry["number"]),
                int(entry["timestamp"]),
                bytes.fromhex(str(raw)[2:]) if raw else None,
                str(entry.get("hash")),
            )
        elif kind == "deployment":
            self._deployment = Deployment.from_json(entry["deployment"])
            self._rate_lock_s = int(entry["rate_lock_s"])
        elif kind == "clock":
            self._restore_clock(entry)
        else:
            raise ConfigError(f"unknown journal entry kind {kind!r}")

    def _genesis_entry(self) -> dict[str, Any]:
        # The journal's first line: the chain's genesis, and the journal's format.
        return {"kind": "genesis", "format": JOURNAL_FORMAT, **super()._genesis_entry()}

    def _deploy(self, rate_lock_s: int) -> None:
        deployment = deploy_for_dev_accounts(self.web3(), self._accounts, rate_lock_s=rate_lock_s)
        with self._lock:
            self._deployment = deployment
            self._rate_lock_s = rate_lock_s
            if self._persistence is not None:
                # The journal, not devnet.json, is the record of where the contracts are.
                self._persistence.journal.append(
                    {
                        "kind": "deployment",
                        "deployment": deployment.to_json(),
                        "rate_lock_s": rate_lock_s,
                    }
                )

    def _write_info(self) -> None:
        persistence = self._persistence
        if persistence is None:
            return
        persistence.info = self.info()
        write_devnet_info(persistence.home, persistence.info)

    def record_endpoint(self, url: str | None) -> None:
        """Note in ``devnet.json`` where this devnet is served (``serve_devnet`` calls this)."""
        with self._lock:
            persistence = self._persistence
            if persistence is None:
                return
            persistence.info = replace(persistence.info, rpc_url=url)
            self._write_info()

    def close(self) -> None:
        """Write ``devnet.json``, close the journal and release ``$REEF_HOME``'s lock."""
        with self._lock:
            persistence = self._persistence
            if persistence is None:
                return
            self._write_info()
            try:
                self._write_checkpoint()
            except OSError as exc:  # the journal is the record; a checkpoint only saves time
                _log.warning("devnet: could not write a checkpoint: %s", exc)
            try:
                persistence.journal.close()
            except OSError as exc:  # its last blocks were written, only not synced to disk
                _log.warning("devnet: could not sync the journal to disk: %s", exc)
            persistence.lock.release()
            self._persistence = None
            self._recorder = None

    def _write_checkpoint(self) -> None:
        persistence = self._persistence
        if persistence is None:
            return
        head = self._blocks[-1]
        header = {
            "journal_bytes": persistence.journal.position,
            "head": head.number,
            "head_hash": "0x" + head.hash.hex(),
            **self._clock_fields(),
        }
        write_checkpoint(
            persistence.home.chain / CHECKPOINT_NAME,
            header,
            self._database(),
        )
        persistence.checkpoint_position = persistence.journal.position

    def __enter__(self) -> Devnet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def home(self) -> ReefHome | None:
        """The ``$REEF_HOME`` this devnet persists to, if opened with :meth:`open`."""
        persistence = self._persistence
        return None if persistence is None else persistence.home

    @property
    def deployment(self) -> Deployment | None:
        """reef's contracts on this devnet (deployed by :meth:`open`), if any."""
        return self._deployment

    @property
    def rate_lock_s(self) -> int | None:
        return self._rate_lock_s

    def info(self) -> DevnetInfo:
        """What ``devnet.json`` says (or would say) about this devnet."""
        with self._lock:
            url = None if self._persistence is None else self._persistence.info.rpc_url
            return DevnetInfo(
                chain_id=self._chain_id,
                accounts=self._accounts,
                genesis_timestamp=self._blocks[0].timestamp,
                rate_lock_s=self._rate_lock_s,
                deployment=self._deployment,
                rpc_url=url,
                blocks=len(self._blocks) - 1,
            )

    def provider(self) -> DevnetProvider:
        """A web3.py provider that answers from this devnet in process (no HTTP)."""
        from reef.chain.devnet._provider import DevnetProvider

        return DevnetProvider(self)

    def web3(self) -> Web3:
        """A ``Web3`` over :meth:`provider`."""
        from web3 import Web3

        return Web3(self.provider())
