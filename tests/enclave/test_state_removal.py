"""Removing an image's ``/state`` (:meth:`EnclaveBackend.remove_state`): the volume file, its
directory and its lock files go, never while an enclave of that image runs, and only names the
backend gives are accepted (no path outside ``$REEF_HOME/enclave-state``)."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import pytest

from dev_tee_support import requires_isolation, stop_all_enclaves
from reef.enclave import EnclaveSpec, LocalBackend, build_image
from reef.enclave.local import _state_volume
from reef.enclave.local._state_volume import remove_volume
from reef.errors import EnclaveError, InputError
from reef.home import ReefHome
from reef.testing import FakeBackend

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.parent.iterdir() if p.name.startswith(directory.name))


@pytest.mark.slow
@requires_isolation
async def test_a_volume_goes_once_no_enclave_of_its_image_runs(reef_home: Path) -> None:
    home = ReefHome(reef_home)
    image = reef_home / "hello.img"
    build_image(EXAMPLES / "hello", image)
    backend = LocalBackend(home)
    try:
        info = await backend.start(EnclaveSpec(image=image))
        directory = reef_home / "enclave-state" / info.state_key
        assert info.state_key == info.image_id.hex()
        assert directory.with_name(info.state_key + ".ext4").exists()
        with pytest.raises(EnclaveError, match="still runs"):
            await backend.remove_state(info.state_key)
        assert directory.with_name(info.state_key + ".ext4").exists()

        await backend.stop(info.id)
        assert await backend.remove_state(info.state_key)
        assert _leftovers(directory) == []
        assert not await backend.remove_state(info.state_key)  # nothing left to remove

        # A new enclave of the image starts afresh with a new volume.
        again = await backend.start(EnclaveSpec(image=image))
        assert again.state_key == info.state_key
        assert directory.with_name(info.state_key + ".ext4").exists()
    finally:
        await stop_all_enclaves(backend)


async def test_only_names_the_backend_gives_are_removed(reef_home: Path) -> None:
    backend = LocalBackend(ReefHome(reef_home))
    outside = reef_home / "precious"
    outside.mkdir()
    for name in ("../precious", "", "..", "ab/cd", "AB", "ab-debugx", "ab-debug-debug", "-debug"):
        with pytest.raises(InputError):
            await backend.remove_state(name)
    assert outside.exists()


def test_a_held_volume_is_refused_and_a_plain_directory_goes_without_following_links(
    tmp_path: Path,
) -> None:
    """The volume level, without mounting: a holder's shared lock refuses the removal; a
    plain state directory (no loop devices, --insecure) goes, links in it removed, not followed."""
    root = tmp_path / "enclave-state"
    host = tmp_path / "host-file"
    host.write_text("the host's")
    directory = root / "ab"
    (directory / "sub").mkdir(parents=True)
    (directory / "sub" / "link").symlink_to(host)
    (directory / "escape").symlink_to(tmp_path)
    lock = os.open(root / "ab.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_SH)  # an enclave of the image holds it
        with pytest.raises(EnclaveError, match="in use"):
            remove_volume(directory)
        assert (directory / "sub" / "link").is_symlink()
    finally:
        os.close(lock)
    assert remove_volume(directory)
    assert list(root.iterdir()) == []
    assert host.read_text() == "the host's"
    assert not remove_volume(directory)


def test_a_holder_waiting_on_a_removed_lock_file_starts_afresh(tmp_path: Path) -> None:
    """The mutex and lock files are unlinked by a removal: whoever waited on them must not end
    up holding a lock on a file nobody else sees (two holders of one volume, one unmounting it
    under the other)."""
    root = tmp_path / "enclave-state"
    directory = root / "cd"
    directory.mkdir(parents=True)
    mutex = os.open(root / "cd.mount", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(mutex, fcntl.LOCK_EX)  # a removal under way holds the mutex
    entered = threading.Event()

    def waiting() -> None:
        with _state_volume._mutex(root / "cd.mount"):
            entered.set()

    waiter = threading.Thread(target=waiting)
    waiter.start()
    try:
        assert not entered.wait(0.2)
        (root / "cd.mount").unlink()  # what remove_volume does before it lets go
    finally:
        os.close(mutex)
    waiter.join(10)
    assert entered.is_set()
    assert (root / "cd.mount").exists()  # the waiter locked a file that is there


async def test_the_fake_backend_follows_the_same_rules(reef_home: Path) -> None:
    image = reef_home / "hello.img"
    build_image(EXAMPLES / "hello", image)
    backend = FakeBackend()
    info = await backend.start(EnclaveSpec(image=image))
    debug = await backend.start(EnclaveSpec(image=image, debug=True))
    assert debug.state_key == info.state_key + "-debug"
    with pytest.raises(EnclaveError):
        await backend.remove_state(info.state_key)
    await backend.stop(info.id)
    assert await backend.remove_state(info.state_key)
    assert not await backend.remove_state(info.state_key)
    assert backend.states == {debug.state_key}
