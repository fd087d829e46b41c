"""Host-side launch pieces that need no enclave: the readiness pipe is read by the event loop
(a line, or EOF), never by a worker thread, and the boot limit is checked."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reef.enclave import LocalBackend
from reef.enclave.local._backend import _read_ready
from reef.errors import InputError, MisuseError
from reef.home import ReefHome


async def test_the_ready_line_is_read_without_a_worker_thread() -> None:
    read_fd, write_fd = os.pipe()
    threads = threading.active_count()
    reading = asyncio.create_task(_read_ready(read_fd))
    await asyncio.sleep(0.01)
    os.write(write_fd, b'{"ok": ')
    await asyncio.sleep(0.01)
    assert not reading.done()  # half a line
    assert threading.active_count() == threads
    os.write(write_fd, b"true}\n")
    assert await asyncio.wait_for(reading, 5) == b'{"ok": true}\n'
    os.close(read_fd)
    os.close(write_fd)


async def test_a_supervisor_that_dies_before_its_line_gives_eof() -> None:
    read_fd, write_fd = os.pipe()
    reading = asyncio.create_task(_read_ready(read_fd))
    os.write(write_fd, b"partial")
    os.close(write_fd)
    assert await asyncio.wait_for(reading, 5) == b"partial"
    os.close(read_fd)


def test_the_boot_limit_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(MisuseError, match="max_booting"):
        LocalBackend(ReefHome(tmp_path), max_booting=0)


def test_ports_picked_for_one_enclave_are_distinct_when_the_kernel_repeats_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel may hand the same free port to two probes in a row (seen in CI: `reef up`
    failed with "two of the enclave's ports map to the same host port"): the plan skips a port
    it already gave this enclave, and still refuses a user's own two ports on one host port."""
    import reef.enclave.local._backend as backend_module

    picks = iter([41001, 41001, 41002, 41002, 41003, 41001, 41004, 41005])
    monkeypatch.setattr(backend_module, "free_port", lambda: next(picks))
    backend = LocalBackend(ReefHome(tmp_path))
    app, attestation, logs = backend._ports((8080, 9090), {}, "netns", None)
    given = [*app.values(), *attestation.values(), logs]
    assert sorted(given) == [41001, 41002, 41003, 41004, 41005]

    fresh = itertools.count(41006)
    monkeypatch.setattr(backend_module, "free_port", lambda: next(fresh))
    monkeypatch.setattr(backend_module, "_port_free", lambda port: True)
    with pytest.raises(InputError, match="same host port"):
        backend._ports((8080, 9090), {8080: 42000, 9090: 42000}, "netns", None)


def test_two_launches_at_once_never_get_the_same_host_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each launch probed free ports against its own only, and nothing is bound to a picked
    port until pasta starts: two launches of a burst got the same port, and one of them failed
    to boot ("Failed to bind any port", seen in the market benchmark's bursts of 20). Ports a
    launch picked are the backend's until that launch is over."""
    import reef.enclave.local._backend as backend_module

    def kernel() -> Iterator[int]:  # hands out the same free ports to each launch
        return itertools.chain(range(41001, 41011))

    backend = LocalBackend(ReefHome(tmp_path))
    picks = kernel()
    monkeypatch.setattr(backend_module, "free_port", lambda: next(picks))
    first = backend._ports((8080,), {}, "netns", None, owner="a")
    picks = kernel()
    second = backend._ports((8080,), {}, "netns", None, owner="b")

    def ports(plan: tuple[dict[int, int], dict[int, int], int]) -> set[int]:
        return {*plan[0].values(), *plan[1].values(), plan[2]}

    assert not ports(first) & ports(second)
    backend._release_ports("a")
    picks = kernel()
    third = backend._ports((8080,), {}, "netns", None, owner="c")
    assert ports(third) == ports(first)  # free again once the first launch is over


async def test_following_a_console_that_rotated_past_the_position_loses_no_line_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console rotates by renaming, and the new file grows at once. The follower took a
    rotation only for a file smaller than its position, so a new file already past it was read
    from the old position: a line's head was joined to another's middle (CI saw a followed line
    of 16 379 characters among 16 383-character ones)."""
    from types import SimpleNamespace

    from reef.enclave.local._trusted_base import ROTATED_SUFFIX

    backend = LocalBackend(ReefHome(tmp_path))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    console = run_dir / "console.log"
    console.write_bytes(b"one\ntw")  # the follower reads this far, "tw" pending
    state = SimpleNamespace(state="running")

    async def no_logs(_enclave_id: str) -> str:
        return ""

    monkeypatch.setattr(backend, "_dir", lambda _enclave_id: run_dir)
    monkeypatch.setattr(backend, "_info", lambda _enclave_id: state)
    monkeypatch.setattr(backend, "logs", no_logs)
    lines = backend.follow("e", poll=0.01)
    assert await anext(lines) == "one"
    # Before the follower looks again: the line ends, the file rotates, the new one grows past
    # the position the follower had.
    with console.open("ab") as handle:
        handle.write(b"o\n")
    console.rename(console.with_name(console.name + ROTATED_SUFFIX))
    console.write_bytes(b"three\nfour\n")
    assert await anext(lines) == "two"
    assert await anext(lines) == "three"
    assert await anext(lines) == "four"
    state.state = "stopped"
    assert [line async for line in lines] == []
