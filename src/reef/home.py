"""Where reef keeps its state: ``$REEF_HOME`` (default ``~/.reef``).

Callers resolve the home once, at the edge (CLI, ``reef up``), and pass a :class:`ReefHome` down,
so library code never reads the environment itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reef.errors import ReefError

__all__ = ["ReefHome", "cache_root", "read_file", "read_json", "replace_file", "replace_json"]


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where reef keeps, across homes, what it can always rebuild (the example images ``reef
    up`` builds): ``$REEF_CACHE``, else ``$XDG_CACHE_HOME/reef``, else ``~/.cache/reef``.

    An entry is named by a digest of its build's inputs and holds what that build writes (the
    build is deterministic), so deleting the folder costs only rebuilds.
    """
    env = os.environ if environ is None else environ
    if value := env.get("REEF_CACHE"):
        return Path(value).expanduser()
    xdg = env.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "reef"


def read_file(path: Path, *, missing: ReefError, unreadable: str) -> bytes:
    """The contents of a file, or the caller's error saying what is wrong.

    The reading side of :func:`replace_file`, and of any file a user names (an image, init
    params): a file is either absent, which the caller explains (what creates it), or unreadable,
    which only the operating system can explain.

    Args:
        path: the file to read.
        missing: raised when ``path`` does not exist.
        unreadable: what could not be read (``"cannot read the dev TEE root /x"``); the error
            raised, of ``missing``'s class, adds why.

    Raises:
        ReefError: ``missing``, or one of its class for a file that exists but cannot be read.
    """
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise missing from exc
    except OSError as exc:
        raise type(missing)(f"{unreadable}: {exc.strerror or exc}") from exc


def read_json(path: Path, *, missing: ReefError, unreadable: str) -> Any:
    """The JSON value in a state file (the reading side of :func:`replace_json`), or in a file
    a user names (a verification key, an input file).

    Raises:
        ReefError: as :func:`read_file`, and of ``missing``'s class, with its hint (what the
            file should hold), for a file that is not JSON.
    """
    data = read_file(path, missing=missing, unreadable=unreadable)
    try:
        return json.loads(data)
    except ValueError as exc:  # not UTF-8, or not JSON
        raise type(missing)(f"{unreadable}: {exc}; it is not JSON", hint=missing.hint) from exc


def replace_file(path: Path, data: bytes, *, mode: int = 0o600, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically: readers see the old file or the new, never half.

    The data goes to a uniquely named temporary file beside ``path`` (so concurrent writers do not
    clobber each other's), which is then renamed over it.

    Args:
        path: the file to replace; its directory must exist.
        data: the new contents.
        mode: the new file's permissions (owner-only unless asked otherwise).
        durable: also fsync the file and its directory, so the new contents survive a power cut
            (for state that cannot be rebuilt, like a journal or a sealed seed).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def replace_json(
    path: Path, data: Any, *, indent: int = 2, sort_keys: bool = False, durable: bool = False
) -> None:
    """Replace ``path`` with ``data`` as indented JSON and a final newline, atomically and
    owner-only (:func:`replace_file`).

    Args:
        path: the file to replace; its directory must exist.
        data: what :func:`json.dumps` can encode.
        indent: spaces per level (files already written keep their indent, so their bytes
            do not change from one release to the next).
        sort_keys: write object keys sorted (stable diffs for maps keyed by URL or address).
        durable: as for :func:`replace_file`.
    """
    text = json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n"
    replace_file(path, text.encode(), durable=durable)


@dataclass(frozen=True)
class ReefHome:
    """The state directory and the well-known places inside it."""

    root: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReefHome:
        """``$REEF_HOME`` if set, else ``~/.reef``."""
        env = os.environ if environ is None else environ
        value = env.get("REEF_HOME")
        return cls(Path(value).expanduser() if value else Path.home() / ".reef")

    def ensure(self) -> ReefHome:
        """Create the directory (owner-only) if it does not exist, and return self."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self

    def path(self, *parts: str) -> Path:
        """A path under the home, its parent directories created."""
        target = self.root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return target

    @property
    def dev_tee(self) -> Path:
        """The dev TEE authority: its root key and certificate."""
        return self.root / "dev-tee"

    @property
    def enclaves(self) -> Path:
        """State of local enclaves, one directory per enclave."""
        return self.root / "enclaves"

    def enclave_state(self, image_id_hex: str) -> Path:
        """The persistent state directory of enclaves of one image id, created owner-only.

        It is the provider's disk, not the enclave's: only sealed data belongs there.
        """
        target = self.root / "enclave-state" / image_id_hex
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        return target

    def app_image(self, app: Path) -> Path:
        """Where the image of the app directory ``app`` is built when no file is named
        (``reef deploy DIR``, ``reef jobs update --image DIR``, ``reef image build DIR``):
        ``builds/<directory name>.img``, never inside the app, where it would be in its next
        build. Its parent is created."""
        return self.path("builds", f"{app.resolve().name}.img")

    @property
    def chain(self) -> Path:
        """The embedded devnet: its state, accounts and deployed addresses."""
        return self.root / "chain"

    @property
    def kms(self) -> Path:
        """The KMS root server's sealed seed."""
        return self.root / "kms"

    @property
    def images(self) -> Path:
        """The content-addressed image store."""
        return self.root / "images"
