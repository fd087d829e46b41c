"""What the devnet keeps under ``$REEF_HOME/chain``: its journal, its lock and ``devnet.json``.

Persistence is a **journal** rather than a database dump: every block the devnet mines is one
JSON line (its timestamp, the raw signed transaction it holds, if any, and its hash), and every
change to the clock controls and the deployment of reef's contracts is a line too. On start the journal is replayed through the same
EVM, which rebuilds exactly the same chain (same block hashes; the replay checks them), so the
format does not depend on py-evm's internal database layout. Lines are written to the file
before the RPC call that caused them returns, so an acknowledged transaction survives the
devnet's process dying (a crash, ``kill -9``), and a background thread syncs them to the disk
right after (``fdatasync``, within one sync's latency, a few milliseconds), so a power cut
loses at most the last few milliseconds' blocks: what geth's and ganache's databases give, and
more than hardhat or anvil keep. Syncing before answering instead cost as much as executing
the transaction (2-3 ms per block on this machine's disk, half the devnet's throughput). A
snapshot revert truncates the journal back to where the snapshot was taken, synced at once.

``devnet.json`` is the devnet's public face for other processes and for ``reef chain info``:
chain id, dev accounts (keys marked dev-only), deployed contract addresses and the RPC endpoint.
It is rewritten atomically (write to a temporary file, then rename).

A **checkpoint** saves the start-up replay: when the devnet closes (and after a long replay) it
writes py-evm's whole key-value store to ``checkpoint.bin`` with the journal position it
reflects. On start, a checkpoint whose position and head hash match the journal is loaded and
only the journal's later entries are replayed; a missing, damaged or stale checkpoint falls back
to replaying the whole journal, which stays the record.

A lock file (``fcntl.flock``) keeps two devnets from writing one journal.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from reef.chain._deploy import Deployment
from reef.chain.devnet._accounts import DEV_KEYS_WARNING, DevAccount
from reef.errors import ChainError, ConfigError
from reef.home import ReefHome, read_file, replace_file, replace_json

__all__ = [
    "DevnetInfo",
    "local_chain_state",
    "read_devnet_info",
    "write_devnet_info",
]

JOURNAL_FORMAT = 1
JOURNAL_NAME = "journal.jsonl"
CHECKPOINT_FORMAT = 1
CHECKPOINT_NAME = "checkpoint.bin"
INFO_NAME = "devnet.json"
ANVIL_STATE_NAME = "anvil-state.json"
"""What an anvil of ``reef up --chain anvil`` loads at start and writes on exit (``--state``)."""
LOCK_NAME = "devnet.lock"

# How long the lock is waited for while a chain process outlives its killed owner (an anvil
# writing its state on the way out: seconds for a large one).
_ORPHAN_WAIT_S = 30.0

_FRESH_HINT = "start over with `reef chain --fresh` (this deletes the devnet's state)"


@dataclass(frozen=True, kw_only=True)
class DevnetInfo:
    """The contents of ``$REEF_HOME/chain/devnet.json``: how to reach and use the devnet."""

    chain_id: int
    accounts: tuple[DevAccount, ...]
    genesis_timestamp: int
    rate_lock_s: int | None = None
    """The market's rate lock wait time, once contracts are deployed."""
    deployment: Deployment | None = None
    """reef's contracts on the devnet, once deployed."""
    rpc_url: str | None = None
    """The JSON-RPC endpoint of the last ``serve_devnet`` on this home (it may have stopped)."""
    blocks: int = 0
    """Blocks mined after genesis when this file was last written."""

    def probe(self, *, timeout: float = 1.0) -> int | None:
        """The block number of the devnet at :attr:`rpc_url`, or ``None`` if nothing answers
        there with this chain id (stopped, or another node took the port)."""
        import httpx

        if not self.rpc_url:
            return None
        batch = [
            {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            {"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber", "params": []},
        ]
        try:
            response = httpx.post(self.rpc_url, json=batch, timeout=timeout)
            answers = {item["id"]: item["result"] for item in response.json()}
            if int(answers[1], 16) != self.chain_id:
                return None
            return int(answers[2], 16)
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "rpc_url": self.rpc_url,
            "genesis_timestamp": self.genesis_timestamp,
            "blocks": self.blocks,
            "rate_lock_s": self.rate_lock_s,
            "deployment": None if self.deployment is None else self.deployment.to_json(),
            "accounts_warning": DEV_KEYS_WARNING,
            "accounts": [account.to_json() for account in self.accounts],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DevnetInfo:
        """Parse the JSON written by :meth:`to_json`.

        Raises:
            ConfigError: naming the field that is missing or malformed.
        """
        try:
            accounts = tuple(
                DevAccount(
                    index=int(item["index"]),
                    address=str(item["address"]),
                    private_key=bytes.fromhex(str(item["private_key"]).removeprefix("0x")),
                )
                for item in data["accounts"]
            )
            deployment = data.get("deployment")
            rate_lock = data.get("rate_lock_s")
            return cls(
                chain_id=int(data["chain_id"]),
                accounts=accounts,
                genesis_timestamp=int(data["genesis_timestamp"]),
                rate_lock_s=None if rate_lock is None else int(rate_lock),
                deployment=None if deployment is None else Deployment.from_json(deployment),
                rpc_url=data.get("rpc_url") or None,
                blocks=int(data.get("blocks", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{INFO_NAME} is not a valid devnet description ({type(exc).__name__}: {exc})",
                hint=_FRESH_HINT,
            ) from exc


def read_devnet_info(home: ReefHome) -> DevnetInfo:
    """Read ``$REEF_HOME/chain/devnet.json``.

    Raises:
        ConfigError: if no devnet was ever started on this home, or the file cannot be read or
            is invalid.
    """
    path = home.chain / INFO_NAME
    missing = ConfigError(
        f"no devnet has been started in {home.root} ({path} does not exist)",
        hint="start one with `reef chain` (or `reef up`)",
    )
    text = read_file(path, missing=missing, unreadable=f"cannot read {path}")
    try:
        data = json.loads(text)
    except ValueError as exc:  # not UTF-8, or not JSON
        raise ConfigError(f"{path} is not valid JSON: {exc}", hint=_FRESH_HINT) from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path} does not hold a JSON object", hint=_FRESH_HINT)
    return DevnetInfo.from_json(data)


def local_chain_state(home: ReefHome) -> Path | None:
    """The file through which a chain of reef's own keeps its state in ``home`` (the embedded
    devnet's journal, or the state an anvil of ``reef up --chain anvil`` dumps), if any: such a
    home's ``devnet.json`` describes that chain, and is not to be written over."""
    for path in (home.chain / JOURNAL_NAME, home.chain / ANVIL_STATE_NAME):
        if path.exists():
            return path
    return None


def write_devnet_info(home: ReefHome, info: DevnetInfo) -> None:
    """Replace ``devnet.json`` atomically (owner-only: it lists private keys, even dev ones)."""
    replace_json(home.path("chain", INFO_NAME), info.to_json(), durable=True)


class DevnetLock:
    """An exclusive lock on ``$REEF_HOME/chain``, held while a devnet uses its journal (or an
    anvil its state file).

    A chain process started under the lock may be given its descriptor (:meth:`fileno`, through
    ``pass_fds``): it then holds the lock until it exits, even if the process that took it was
    killed. Another :meth:`acquire` that finds the owner it recorded dead waits for that.
    """

    def __init__(self, home: ReefHome, *, orphan_wait_s: float = _ORPHAN_WAIT_S) -> None:
        self._path = home.path("chain", LOCK_NAME)
        self._handle: IO[str] | None = None
        self._orphan_wait_s = orphan_wait_s

    def acquire(self) -> None:
        """Take the lock; while the process that holds it is a chain whose owner is gone (it
        stops with its owner, writing its state on the way out), wait for it, up to
        ``orphan_wait_s``.

        Raises:
            ChainError: if another devnet holds it.
        """
        handle = open(self._path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        deadline = time.monotonic() + self._orphan_wait_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:
                handle.seek(0)
                owner = handle.read().strip() or "another process"
                if _owner_alive(owner) or time.monotonic() >= deadline:
                    handle.close()
                    raise ChainError(
                        f"the devnet state in {self._path.parent} is in use by {owner}",
                        hint="stop that devnet first, or give this one its own REEF_HOME",
                    ) from exc
                time.sleep(0.05)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def fileno(self) -> int:
        """The locked descriptor, for a chain process to hold the lock until it exits."""
        if self._handle is None:
            raise ChainError("the devnet lock is not held", hint="acquire it first")
        return self._handle.fileno()

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.seek(0)
                self._handle.truncate()
            # Closing releases the flock, unless a chain process given the descriptor still runs.
            self._handle.close()
            self._handle = None


def _owner_alive(owner: str) -> bool:
    """Whether the lock's recorded owner (``pid N``) still runs; unknown counts as alive."""
    words = owner.split()
    if len(words) != 2 or words[0] != "pid" or not words[1].isdigit():
        return True
    try:
        os.kill(int(words[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Syncer:
    """Syncs a file to disk from a background thread soon after each write is handed to it.

    One sync covers every write before it, so under a burst of writes the thread syncs back to
    back and the disk sees one sync per sync latency rather than one per write. The thread
    exits after a second without writes and is started again by the next one. Under a devnet's
    sends over HTTP it costs each block its ``fdatasync`` (~0.06 ms of kernel time) and one
    wakeup; syncing in the server's worker thread once the answer was handed back measured no
    cheaper (see :mod:`reef.chain.devnet._server`). A failed sync is
    kept and raised by the next :meth:`check` (and by :meth:`close`): the journal checks before
    each write, so the chain then refuses the transaction that would have been written next.
    """

    _IDLE_S = 1.0

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._cond = threading.Condition()
        self._dirty = False
        self._closed = False
        self._error: OSError | None = None
        self._thread: threading.Thread | None = None

    def check(self) -> None:
        """Raise the error of a failed background sync, if one failed since the last check.

        Raises:
            OSError: that error.
        """
        with self._cond:
            self._raise_error()

    def written(self) -> None:
        """Note that the file was written: sync it soon."""
        with self._cond:
            self._dirty = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="reef-devnet-journal-sync", daemon=True
                )
                self._thread.start()
            else:
                self._cond.notify()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._dirty and not self._closed:
                    self._cond.wait(self._IDLE_S)
                if not self._dirty:
                    self._thread = None
                    return
                self._dirty = False
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                with self._cond:
                    self._error = exc

    def close(self) -> None:
        """Sync what is left, stop the thread (the file may be closed after this).

        Raises:
            OSError: if a sync failed.
        """
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join()
        with self._cond:
            self._raise_error()


class Journal:
    """An append-only JSON-lines journal, truncatable to an earlier position.

    Each entry is written to the file before :meth:`append` returns and synced to disk by a
    background thread right after (see the module docstring); ``durable=False`` never syncs.
    """

    def __init__(self, path: Path, handle: IO[bytes], *, durable: bool = True) -> None:
        self._path = path
        self._handle = handle
        self._durable = durable
        self._syncer = _Syncer(handle.fileno()) if durable else None

    @classmethod
    def create(cls, path: Path, header: Mapping[str, Any], *, durable: bool = True) -> Journal:
        """Start a new journal at ``path`` (replacing any old one) with ``header`` as line 1."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        journal = cls(path, os.fdopen(fd, "r+b"), durable=durable)
        journal.append(header)
        return journal

    @classmethod
    def open(
        cls, path: Path, *, durable: bool = True
    ) -> tuple[Journal, list[dict[str, Any]], list[int]]:
        """Open an existing journal; return it, its entries, and the byte offset where each
        entry ends (what :attr:`position` was after writing it).

        A last line cut short by a crash (no newline) is dropped and cut from the file, so the
        journal ends at the last entry that was completely written.

        Raises:
            ConfigError: if a complete line is not a JSON object, or the format is unknown.
        """
        fd = os.open(path, os.O_RDWR)
        handle = os.fdopen(fd, "r+b")
        try:
            entries, ends = cls._read(path, handle)
        except BaseException:
            handle.close()
            raise
        handle.seek(0, os.SEEK_END)
        return cls(path, handle, durable=durable), entries, ends

    @staticmethod
    def _read(path: Path, handle: IO[bytes]) -> tuple[list[dict[str, Any]], list[int]]:
        """The entries of the journal open as ``handle`` and where each ends; a last line cut
        short is cut from the file (see :meth:`open`)."""
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            handle.seek(end)
            handle.truncate()
        entries: list[dict[str, Any]] = []
        ends: list[int] = []
        offset = 0
        for number, line in enumerate(data[:end].splitlines(), 1):
            offset += len(line) + 1
            ends.append(offset)
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"the devnet journal {path} is corrupt at line {number}: {exc}",
                    hint=_FRESH_HINT,
                ) from exc
            if not isinstance(entry, dict):
                raise ConfigError(
                    f"the devnet journal {path} is corrupt at line {number} (not an object)",
                    hint=_FRESH_HINT,
                )
            entries.append(entry)
        if not entries or entries[0].get("kind") != "genesis":
            raise ConfigError(f"the devnet journal {path} has no genesis entry", hint=_FRESH_HINT)
        if entries[0].get("format") != JOURNAL_FORMAT:
            raise ConfigError(
                f"the devnet journal {path} has format {entries[0].get('format')!r}, "
                f"this reef reads format {JOURNAL_FORMAT}",
                hint=_FRESH_HINT,
            )
        return entries, ends

    @property
    def path(self) -> Path:
        return self._path

    @property
    def position(self) -> int:
        """The journal's length in bytes: a mark to :meth:`truncate` back to."""
        return self._handle.tell()

    def append(self, entry: Mapping[str, Any]) -> None:
        """Write ``entry`` to the file (synced to disk right after, in the background).

        Raises:
            OSError: if it could not be written, or an earlier entry could not be synced.
        """
        self.extend((entry,))

    def extend(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Write ``entries`` to the file in one write (see :meth:`append`)."""
        if self._syncer is not None:
            self._syncer.check()
        lines = b"".join(
            json.dumps(entry, separators=(",", ":")).encode() + b"\n" for entry in entries
        )
        self._handle.write(lines)
        self._handle.flush()
        if self._syncer is not None:
            self._syncer.written()

    def truncate(self, position: int) -> None:
        """Forget every entry written after ``position`` (a value of :attr:`position`), synced
        to disk before returning."""
        self._handle.seek(position)
        self._handle.truncate()
        self._handle.flush()
        if self._durable:
            os.fdatasync(self._handle.fileno())

    def close(self) -> None:
        """Sync what is not yet synced and close the file.

        Raises:
            OSError: if a sync failed (the file is closed all the same).
        """
        try:
            if self._syncer is not None:
                self._syncer.close()
        finally:
            self._handle.close()


def write_checkpoint(
    path: Path, header: Mapping[str, Any], database: Mapping[bytes, bytes]
) -> None:
    """Write py-evm's key-value store and ``header`` to ``path`` atomically.

    The file is one JSON line (``header`` plus the format, payload size and SHA-256), then the
    pairs as ``len(key) key len(value) value`` with 4-byte big-endian lengths.
    """
    payload = b"".join(
        len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value
        for key, value in database.items()
    )
    described = {
        **header,
        "format": CHECKPOINT_FORMAT,
        "payload_bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    header_line = json.dumps(described, separators=(",", ":")).encode() + b"\n"
    replace_file(path, header_line + payload, durable=True)


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[bytes, bytes]] | None:
    """The header and key-value store of a checkpoint, or ``None`` if there is none or it is
    damaged (a checkpoint only saves time: the journal is the record)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    newline = data.find(b"\n")
    if newline < 0:
        return None
    try:
        header = json.loads(data[:newline])
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    payload = memoryview(data)[newline + 1 :]
    if (
        not isinstance(header, dict)
        or header.get("format") != CHECKPOINT_FORMAT
        or header.get("payload_bytes") != len(payload)
        or header.get("sha256") != hashlib.sha256(payload).hexdigest()
    ):
        return None
    database: dict[bytes, bytes] = {}
    at = 0
    while at < len(payload):
        size = int.from_bytes(payload[at : at + 4], "big")
        key = bytes(payload[at + 4 : at + 4 + size])
        at += 4 + size
        size = int.from_bytes(payload[at : at + 4], "big")
        database[key] = bytes(payload[at + 4 : at + 4 + size])
        at += 4 + size
    return header, database
