"""Functions' code on disk, by codehash: a bounded LRU that is safe under concurrent fetches.

An executor fetches a function's source from the chain once (the calldata of its deployment
transaction) and keeps it here, so warm calls never touch the chain. Safety:

- **atomic writes**: an entry is written to a unique temporary file and renamed into place
  (:func:`reef.home.replace_file`), so a reader in any process sees a whole entry or none;
- **one fetch per key at a time**: concurrent :meth:`CodeCache.get` calls for the same missing
  codehash share one fetch (a per-key lock in this process); other keys proceed in parallel.
  Across processes two fetches may race, and both write the same bytes by rename;
- **bounded**: after each insert the least recently used entries (by modification time, which a
  hit refreshes) are removed until the cache fits both its byte and its entry bound. A removed
  file that another reader has open stays readable to it (POSIX unlink semantics).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from pathlib import Path

from reef.errors import InputError
from reef.home import replace_file
from reef.serverless._runtime import CodeSource

__all__ = ["CodeCache", "canonical_codehash"]

_CODEHASH = re.compile(r"0x[0-9a-f]{64}")
_SUFFIX = ".js"


def canonical_codehash(codehash: str) -> str:
    """``0x`` + 64 lowercase hex digits: the one spelling of a codehash (cache and pool key).

    Raises:
        InputError: it is not 32 bytes of hex.
    """
    value = codehash.strip().lower()
    if not value.startswith("0x"):
        value = "0x" + value
    if not _CODEHASH.fullmatch(value):
        raise InputError(
            f"not a codehash: {codehash!r}",
            hint="a codehash is 32 bytes in hex (0x + 64 hex digits): the deployment's tx hash",
        )
    return value


class CodeCache:
    """Code by codehash under ``root``, fetched through ``fetch`` on a miss.

    Args:
        root: the cache directory (e.g. ``ReefHome.path("serverless", "code")``); created.
        fetch: gets the code of a codehash from its source of truth (the chain); None when
            there is none (not cached: it may be deployed later).
        max_bytes: the total size the cache keeps.
        max_entries: the number of entries the cache keeps.

    The instance is itself a :data:`CodeSource` (``await cache(codehash)``), to hand to
    :meth:`FunctionRuntime.call`.
    """

    def __init__(
        self,
        root: Path,
        fetch: CodeSource,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        max_entries: int = 4096,
    ) -> None:
        if max_bytes < 1 or max_entries < 1:
            raise InputError("a code cache needs max_bytes >= 1 and max_entries >= 1")
        self._root = root
        self._root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fetch = fetch
        self._max_bytes = max_bytes
        self._max_entries = max_entries
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiters: dict[str, int] = {}
        self.fetches = 0
        """How many times ``fetch`` was called (a miss), for tests and metrics."""

    async def __call__(self, codehash: str) -> bytes | None:
        return await self.get(codehash)

    def path(self, codehash: str) -> Path:
        """Where the entry for ``codehash`` lives (whether or not it exists)."""
        return self._root / (canonical_codehash(codehash) + _SUFFIX)

    def cached(self, codehash: str) -> bytes | None:
        """The cached code of ``codehash``, refreshing its recency; None on a miss."""
        path = self.path(codehash)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return data

    async def get(self, codehash: str) -> bytes | None:
        """The code of ``codehash``: from disk, or fetched once and stored."""
        key = canonical_codehash(codehash)
        hit = self.cached(key)
        if hit is not None:
            return hit
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiters[key] = self._waiters.get(key, 0) + 1
        try:
            async with lock:
                hit = self.cached(key)  # fetched by whoever held the lock before us
                if hit is not None:
                    return hit
                self.fetches += 1
                code = await self._fetch(key)
                if code is not None:
                    self.put(key, code)
                return code
        finally:
            self._waiters[key] -= 1
            if self._waiters[key] == 0:  # keep the lock table as small as the keys in flight
                del self._waiters[key]
                del self._locks[key]

    def put(self, codehash: str, code: bytes) -> None:
        """Store ``code`` under ``codehash`` (atomically), then trim the cache to its bounds."""
        path = self.path(codehash)
        replace_file(path, code, mode=0o600)
        self._trim(keep=path)

    def entries(self) -> list[Path]:
        """The cached entries, least recently used first."""
        found: list[tuple[int, Path]] = []
        for entry in self._root.glob("0x*" + _SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                found.append((entry.stat().st_mtime_ns, entry))
        return [path for _, path in sorted(found)]

    def _trim(self, *, keep: Path) -> None:
        entries = self.entries()
        sizes: dict[Path, int] = {}
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                sizes[entry] = entry.stat().st_size
        total = sum(sizes.values())
        count = len(sizes)
        for entry in entries:
            if total <= self._max_bytes and count <= self._max_entries:
                break
            if entry == keep or entry not in sizes:
                continue
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
            total -= sizes[entry]
            count -= 1
        # Clock resolution can give two entries one mtime; stamping the kept one now makes the
        # newest insert the most recent even then.
        with contextlib.suppress(OSError):
            now = time.time_ns()
            os.utime(keep, ns=(now, now))
