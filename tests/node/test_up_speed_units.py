"""`reef up`'s faster start keeps its guarantees: the chain's lock is taken before anything else
starts (a second network in the home is refused before its KMS root is built or touched), the
chain takes over a lock its caller holds and gives it back when it fails to open, a start run
beside a failed one is cancelled and waited for, and the KMS root is polled over one transport
that each attempt's client leaves open."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from e2e_support import up_settings

from reef.chain import Devnet
from reef.chain.devnet import AnvilChain
from reef.chain.devnet._store import JOURNAL_NAME, DevnetLock
from reef.errors import ChainError, ConfigError, ServiceError
from reef.home import ReefHome
from reef.node import LocalNetwork
from reef.node._examples import example_dir
from reef.node._up import _abandon, _kept_transport


def _lock_is_free(home: ReefHome) -> bool:
    probe = DevnetLock(home)
    try:
        probe.acquire()
    except ChainError:
        return False
    probe.release()
    return True


def test_the_devnet_takes_over_a_lock_its_caller_holds(home: ReefHome) -> None:
    lock = DevnetLock(home)
    lock.acquire()
    devnet = Devnet.open(home, deploy=False, lock=lock)
    try:
        assert not _lock_is_free(home)
    finally:
        devnet.close()
    assert _lock_is_free(home)  # closing the devnet released the lock it was given


def test_a_devnet_that_fails_to_open_releases_the_lock_it_was_given(home: ReefHome) -> None:
    home.path("chain", JOURNAL_NAME).write_text("not a journal\n")
    lock = DevnetLock(home)
    lock.acquire()
    with pytest.raises(ConfigError):
        Devnet.open(home, lock=lock)
    assert _lock_is_free(home)


def test_anvil_missing_releases_the_lock_it_was_given(home: ReefHome, tmp_path: Path) -> None:
    lock = DevnetLock(home)
    lock.acquire()
    with pytest.raises(ConfigError, match="no anvil binary"):
        AnvilChain.open(home, binary=tmp_path / "no-anvil", lock=lock)
    assert _lock_is_free(home)


async def test_a_second_network_is_refused_before_its_kms_root_starts(home: ReefHome) -> None:
    running = DevnetLock(home)  # the chain lock of a network already running in this home
    running.acquire()
    try:
        network = LocalNetwork(home, up_settings(kms=True, insecure=True))
        with pytest.raises(ChainError, match="in use by"):
            await network.start()
        # Nothing of the KMS root was built or launched, so nothing of the running network's
        # (its KMS root enclave) was adopted or stopped.
        assert not home.path("builds", "kms-root.img").exists()
        assert network.kms_enclave is None
        assert network.devnet is None
    finally:
        running.release()
    assert _lock_is_free(home)


async def test_a_missing_kms_app_is_refused_before_the_chain_starts(
    home: ReefHome, tmp_path: Path
) -> None:
    network = LocalNetwork(home, up_settings(kms=True, insecure=True, kms_app=tmp_path / "none"))
    with pytest.raises(ServiceError, match="the KMS root app is not at"):
        await network.start()
    assert network.devnet is None
    assert not home.path("chain", JOURNAL_NAME).exists()
    assert _lock_is_free(home)
    assert (example_dir("kms-root") / "reef.toml").is_file()  # the default app is there


async def test_abandon_cancels_a_start_and_waits_for_it() -> None:
    stopped = asyncio.Event()

    async def starting() -> str:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0)  # its clean-up runs to the end before abandon returns
            stopped.set()
        return "started"

    task = asyncio.create_task(starting())
    await asyncio.sleep(0)
    await _abandon(task)
    assert task.cancelled()
    assert stopped.is_set()
    await _abandon(None)  # nothing was started beside: nothing to do

    async def failing() -> None:
        raise ServiceError("the KMS root enclave did not come up")

    failed = asyncio.create_task(failing())
    await asyncio.sleep(0)
    await _abandon(failed)  # its own failure is dropped: the first one is reported
    assert failed.done()


async def test_the_kms_polls_share_one_transport_that_clients_leave_open() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, text="ok")

    class Counting(httpx.MockTransport):
        closed = 0

        async def aclose(self) -> None:
            Counting.closed += 1
            await super().aclose()

    inner = Counting(answer)
    async with _kept_transport(inner) as transport:
        for attempt in range(3):
            # What each attempt does: a client of its own, closed when the attempt ends.
            async with httpx.AsyncClient(transport=transport) as client:
                response = await client.get(f"http://127.0.0.1:9/info?attempt={attempt}")
            assert response.text == "ok"
        assert Counting.closed == 0
    assert Counting.closed == 1
    assert seen == [f"http://127.0.0.1:9/info?attempt={n}" for n in range(3)]


def test_a_chain_left_running_by_a_killed_parent_keeps_the_lock_until_it_exits(
    home: ReefHome,
) -> None:
    """``reef up --chain anvil`` killed -9: its anvil is told to stop (PDEATHSIG) and writes its
    state on the way out, but the lock went with reef up, so the next ``reef up`` started a new
    anvil over a state file still being written (tests/e2e/test_crash_recovery on anvil failed
    about one run in five). The chain process holds the lock's descriptor too, and the next
    acquire, finding the recorded owner dead, waits for the chain to exit instead of racing it."""
    import subprocess
    import sys

    parent = f"""
import os, signal, subprocess, sys
from pathlib import Path
from reef.chain.devnet._store import DevnetLock
from reef.home import ReefHome
lock = DevnetLock(ReefHome(Path({str(home.root)!r})))
lock.acquire()
child = subprocess.Popen(["sleep", "1.5"], pass_fds=(lock.fileno(),))
print(child.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    done = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True)
    assert done.returncode == -9, done.stderr
    chain = int(done.stdout)
    lock = DevnetLock(home)
    lock.acquire()  # waits for the orphaned chain, whose owner is dead
    try:
        assert not Path(f"/proc/{chain}").exists() or _zombie(chain)
    finally:
        lock.release()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_live_owner_is_refused_at_once(home: ReefHome) -> None:
    held = DevnetLock(home)
    held.acquire()
    try:
        with pytest.raises(ChainError, match="is in use by pid"):
            DevnetLock(home).acquire()
    finally:
        held.release()
