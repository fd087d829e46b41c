"""Pinned npm projects that reef installs on first use (as ``make`` makes ``.venv``).

Some of reef's parts are JavaScript from npm: workerd for serverless functions, snarkjs and
circom for proofs. Each is pinned by a ``package.json`` and ``package-lock.json`` beside the
module that uses it and installed with ``npm ci``, so every machine runs the same versions,
checked against the lock's integrity hashes. The install goes into that directory when it is
writable (a source checkout: ``.ci/run`` and ``make up`` run ``npm ci`` there), else into
``$REEF_HOME/<area>/runtime/<version>/`` (an installed wheel). One installer at a time per
directory, across processes: two concurrent ``npm ci`` runs delete each other's node_modules.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from reef.errors import ReefError
from reef.home import ReefHome

__all__ = ["NPM_HINT", "NpmProject"]

NPM_HINT = "install Node.js and npm (apt-get install nodejs npm), then run the command again"
_INSTALL_TIMEOUT_S = 600


@dataclass(frozen=True)
class NpmProject:
    """One pinned npm project: where it is, what it is called, how to tell it is installed."""

    source: Path
    """The directory holding ``package.json`` and ``package-lock.json`` (in reef's package)."""
    area: str
    """Where under ``$REEF_HOME`` a read-only installation puts it (``serverless``, ``proofs``)."""
    what: str
    """How messages name it (``workerd 1.20261123.1``)."""
    version: str
    installed: Callable[[Path], bool]
    """Whether a project directory holds the pinned packages."""
    error: type[ReefError]
    """The error its users raise (ServerlessError, ProofError)."""

    def home_dir(self, home: ReefHome) -> Path:
        return home.root / self.area / "runtime" / self.version

    def find(self, home: ReefHome | None = None) -> Path | None:
        """The project directory where the pinned packages are installed, if any."""
        places = [self.source, *(() if home is None else (self.home_dir(home),))]
        return next((place for place in places if self.installed(place)), None)

    def ensure(self, home: ReefHome | None = None, *, npm: str | None = None) -> Path:
        """The installed project directory, running ``npm ci`` first if needed.

        Raises:
            ReefError (``self.error``): npm is missing or the install failed, saying which.
        """
        found = self.find(home)
        if found is not None:
            return found
        npm_path = npm or shutil.which("npm")
        if npm_path is None:
            raise self.error(
                f"{self.what} is not installed and npm was not found to install it",
                hint=NPM_HINT,
            )
        target = self._target(home)
        with _locked(target):
            if not self.installed(target):  # another process may have installed it meanwhile
                self._npm_ci(npm_path, target)
        if not self.installed(target):
            raise self.error(
                f"`npm ci` in {target} succeeded but {self.what} is not there for this platform"
            )
        return target

    def _target(self, home: ReefHome | None) -> Path:
        if os.access(self.source, os.W_OK):
            return self.source
        if home is None:
            raise self.error(
                f"{self.what} is not installed and {self.source} is not writable",
                hint="pass a ReefHome to install under $REEF_HOME, or run `npm ci` there",
            )
        target = self.home_dir(home)
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(self.source / name, target / name)
        return target

    def _npm_ci(self, npm: str, target: Path) -> None:
        try:
            done = subprocess.run(  # noqa: S603 (npm, fixed arguments)
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=target,
                capture_output=True,
                text=True,
                timeout=_INSTALL_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise self.error(
                f"installing {self.what} with npm in {target} failed: {exc}", hint=NPM_HINT
            ) from exc
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-800:]
            raise self.error(
                f"`npm ci` in {target} failed (exit {done.returncode}): {tail}",
                hint="check that the npm registry is reachable, then run the command again",
            )


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # The lock lives in the temporary directory, not beside package.json: a checkout stays clean.
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"reef-npm-install-{digest}.lock"
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
