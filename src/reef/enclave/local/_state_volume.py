"""A size-limited ``/state`` for each image: an ext4 file system in a sparse file, loop-mounted.

``/state`` is the one writable place of an enclave that outlives it, on the provider's disk. A
plain directory would let a hostile app fill the host's disk; a file system of a fixed size
cannot grow past it (the app gets ``ENOSPC``). The file (``<image_id>.ext4`` beside the state
directory) is sparse, so it costs the disk only what is written, plus a 4 MiB journal.

Enclaves of one image share their state (they are the same code, as their KMS keys are the
same), so the volume is mounted once, on the state directory itself, and stays mounted while any
of them runs: each holder keeps a shared ``flock`` on ``<key>.lock``; the last one to leave (an
exclusive lock on it succeeds) unmounts it. Mounting and unmounting happen under a second lock,
``<key>.mount``, held only for that moment, so a new holder never waits for the others to leave.
A holder killed with -9 releases its locks with its process; the mount it leaves is reused by the
next enclave, or removed by reef's cleanup.

A state directory from before volumes existed is copied into the new file system when it is
made (``mkfs.ext4 -d``), so nothing sealed there (the KMS root's seed) is lost.

:func:`remove_volume` deletes an image's volume for good (the file, its directory, its lock
files) when no enclave holds it: a provider removes the ``/state`` of images no job wants any
more, or every image a tenant ever ran would keep up to its size of the provider's disk. It takes
the exclusive lock under the mutex, so it never removes a volume an enclave holds or is mounting.
It unlinks the lock files too, so holders open the lock file only under the mutex, and the mutex
file is checked by inode once locked (:func:`_mutex`): one who waited on a file just removed
starts afresh instead of holding a lock nobody else can see.
"""

# ruff: noqa: S603, S607  (runs mkfs.ext4, mount and umount with argument lists, never a shell)
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from reef.errors import EnclaveError

__all__ = ["StateVolume", "release_if_unused", "remove_volume"]


def _mounted(path: Path) -> bool:
    target = str(path.resolve())
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[4] == target for line in lines if len(line.split()) > 4)


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise EnclaveError(
            f"cannot {what}: {result.stderr.strip() or result.stdout.strip()}",
            hint="the enclave's /state needs loop devices and mkfs.ext4 (apt-get install "
            "e2fsprogs); or run with --insecure (an unlimited /state directory)",
        )


class StateVolume:
    """The ``/state`` volume of one image id, held mounted while this object is open."""

    def __init__(self, directory: Path, *, size_mib: int, uid: int) -> None:
        self.directory = directory
        self.image = directory.with_name(directory.name + ".ext4")
        self.lock_path = directory.with_name(directory.name + ".lock")
        self.mutex_path = directory.with_name(directory.name + ".mount")
        self.size_mib = size_mib
        self.uid = uid
        self._lock: int | None = None

    def open(self) -> Path:
        """Mount the volume (made on first use) unless it is; returns the directory to bind.

        Raises:
            EnclaveError: when the file system cannot be made or mounted.
        """
        self.directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd: int | None = None
        try:
            with _mutex(self.mutex_path):
                # Under the mutex, so that remove_volume (which holds it) cannot unlink the lock
                # file between this open and the lock.
                self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(fd, fcntl.LOCK_SH)
                if not _mounted(self.directory):
                    if not self.image.exists():
                        self._make()
                    _run(
                        ["mount", "-o", "loop,nosuid,nodev", str(self.image), str(self.directory)],
                        f"mount the enclave's /state volume {self.image}",
                    )
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        self._lock = fd
        return self.directory

    def _make(self) -> None:
        partial = self.image.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        with partial.open("wb") as out:
            out.truncate(self.size_mib * 1024 * 1024)
        argv = ["mkfs.ext4", "-q", "-F", "-m", "0", "-J", "size=4"]
        argv += ["-E", f"root_owner={self.uid}:{self.uid}"]
        if any(self.directory.iterdir()):
            argv += ["-d", str(self.directory)]  # what a plain state directory held
        _run([*argv, str(partial)], "make the enclave's /state file system")
        partial.rename(self.image)

    def close(self) -> None:
        """Give up this hold; the last holder unmounts the volume."""
        if self._lock is None:
            return
        fd, self._lock = self._lock, None
        try:
            release_if_unused(self.directory, fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _mutex(path: Path) -> Iterator[None]:
    """Hold ``path``'s exclusive lock; the file is made if it is missing.

    :func:`remove_volume` unlinks the file while it holds the lock: whoever waited on the old
    file then holds a lock nobody else sees, so a lock is only kept once the file it is on is
    still the one at ``path``.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                yield
                return
        finally:
            os.close(fd)


def release_if_unused(directory: Path, fd: int | None = None) -> None:
    """Unmount ``directory``'s volume when no enclave holds it (after a crash, too).

    ``fd`` is the caller's own hold (a shared lock), which this turns exclusive if it can.
    """
    lock_path = directory.with_name(directory.name + ".lock")
    if fd is None and not lock_path.exists():
        return
    with _mutex(directory.with_name(directory.name + ".mount")):
        # Opened under the mutex: remove_volume may have unlinked the file just before.
        try:
            held = os.open(lock_path, os.O_RDWR) if fd is None else fd
        except FileNotFoundError:
            return
        try:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another enclave of the image still uses it
            if _mounted(directory):
                subprocess.run(["umount", str(directory)], capture_output=True, timeout=60)
        finally:
            if fd is None:
                os.close(held)


def remove_volume(directory: Path) -> bool:
    """Delete ``directory``'s ``/state`` for good: unmount it, then remove its file system
    file, the directory and its lock files. Returns whether there was anything to remove.

    Also removes a plain state directory (a host without loop devices, ``--insecure``), whose
    enclaves take no lock: the caller checks that none of them runs.

    Raises:
        EnclaveError: an enclave holds the volume (it is mounted for a running enclave), or it
            cannot be unmounted.
    """
    image = directory.with_name(directory.name + ".ext4")
    lock_path = directory.with_name(directory.name + ".lock")
    mutex_path = directory.with_name(directory.name + ".mount")
    partial = image.with_suffix(".partial")
    paths = (directory, image, lock_path, mutex_path, partial)
    if not any(os.path.lexists(p) for p in paths):
        return False
    with _mutex(mutex_path):
        held: int | None = None
        with contextlib.suppress(FileNotFoundError):
            held = os.open(lock_path, os.O_RDWR)
        try:
            if held is not None:
                try:
                    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise EnclaveError(
                        f"the /state volume {directory.name} is in use by a running enclave",
                        hint="stop the enclaves of that image first",
                    ) from None
            if _mounted(directory):
                _run(["umount", str(directory)], f"unmount the /state volume {directory}")
            # The directory is the app's (when no volume is mounted on it): rmtree removes
            # links without following them, by descriptor, so no host path outside is touched.
            if directory.is_dir() and not directory.is_symlink():
                shutil.rmtree(directory)
            else:
                with contextlib.suppress(FileNotFoundError):
                    directory.unlink()
            for path in (image, partial, lock_path, mutex_path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        finally:
            if held is not None:
                os.close(held)
    return True
