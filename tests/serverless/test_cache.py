"""The code cache: bounded LRU by codehash, one fetch per key, atomic entries."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from reef.errors import InputError
from reef.serverless import CodeCache


def _hash(n: int) -> str:
    return "0x" + f"{n:064x}"


def _names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


class Source:
    """A fake chain: code per codehash, counting fetches, optionally slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[str] = []

    async def __call__(self, codehash: str) -> bytes | None:
        self.calls.append(codehash)
        await asyncio.sleep(self.delay)
        if codehash.endswith("dead"):
            return None
        return f"// code {codehash}\n".encode() * 10


async def test_miss_fetches_once_then_hits(tmp_path: Path) -> None:
    source = Source()
    cache = CodeCache(tmp_path, source)
    first = await cache.get(_hash(1))
    assert first == await source(_hash(1))
    source.calls.clear()
    assert await cache.get(_hash(1).upper().replace("0X", "0x")) == first
    assert source.calls == []
    assert cache.path(_hash(1)).read_bytes() == first


async def test_absent_code_is_not_cached(tmp_path: Path) -> None:
    source = Source()
    cache = CodeCache(tmp_path, source)
    dead = "0x" + "00" * 30 + "dead"
    assert await cache.get(dead) is None
    assert await cache.get(dead) is None
    assert len(source.calls) == 2  # it may be deployed later: ask again
    assert cache.entries() == []


@pytest.mark.parametrize("bad", ["", "0x12", "0x" + "zz" * 32, "ab" * 33])
async def test_bad_codehash_is_refused(tmp_path: Path, bad: str) -> None:
    cache = CodeCache(tmp_path, Source())
    with pytest.raises(InputError, match="codehash"):
        await cache.get(bad)


async def test_entry_bound_evicts_least_recently_used(tmp_path: Path) -> None:
    cache = CodeCache(tmp_path, Source(), max_entries=3)
    for n in range(3):
        await cache.get(_hash(n))
        # mtime ordering with a coarse clock: push each older entry visibly into the past
        for k, entry in enumerate(cache.entries()):
            os.utime(entry, ns=(k * 10**9, k * 10**9))
    assert cache.cached(_hash(0)) is not None  # a hit makes 0 the most recent
    await cache.get(_hash(3))
    names = {path.name for path in cache.entries()}
    assert names == {f"{_hash(n)}.js" for n in (0, 2, 3)}  # 1 was least recently used


async def test_byte_bound(tmp_path: Path) -> None:
    source = Source()
    size = len(await source(_hash(0)))
    cache = CodeCache(tmp_path, source, max_bytes=size * 2 + 1)
    for n in range(5):
        await cache.get(_hash(n))
    entries = cache.entries()
    assert len(entries) == 2
    assert sum(path.stat().st_size for path in entries) <= size * 2 + 1
    assert cache.cached(_hash(4)) is not None  # the newest insert is always kept


async def test_concurrent_gets_share_one_fetch_per_key(tmp_path: Path) -> None:
    source = Source(delay=0.05)
    cache = CodeCache(tmp_path, source)
    keys = [_hash(n % 3) for n in range(30)]
    results = await asyncio.gather(*(cache.get(key) for key in keys))
    assert sorted(source.calls) == sorted({_hash(0), _hash(1), _hash(2)})
    for key, result in zip(keys, results, strict=True):
        assert result == f"// code {key}\n".encode() * 10


async def test_two_caches_on_one_directory_stay_whole(tmp_path: Path) -> None:
    # Two executors (here two instances, as two processes would be) fetching the same codes at
    # once: every read is a whole entry, and no temporary file is left behind.
    first, second = CodeCache(tmp_path, Source(0.01)), CodeCache(tmp_path, Source(0.01))
    keys = [_hash(n % 4) for n in range(40)]
    results = await asyncio.gather(*(cache.get(key) for key in keys for cache in (first, second)))
    expected = [f"// code {key}\n".encode() * 10 for key in keys for _ in (0, 1)]
    assert results == expected
    assert _names(tmp_path) == sorted(f"{_hash(n)}.js" for n in range(4))


async def test_a_failing_fetch_propagates_and_caches_nothing(tmp_path: Path) -> None:
    async def broken(codehash: str) -> bytes | None:
        raise OSError("chain unreachable")

    cache = CodeCache(tmp_path, broken)
    with pytest.raises(OSError, match="unreachable"):
        await cache.get(_hash(1))
    assert cache.entries() == []
    assert await CodeCache(tmp_path, Source()).get(_hash(1)) is not None  # the lock was released
