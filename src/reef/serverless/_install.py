"""Find the pinned workerd binary, or install it from npm on first use (as ``make`` makes ``.venv``).

workerd ships on npm as ``workerd`` plus one native package per platform
(``@cloudflare/workerd-linux-64``, ...). reef pins the version in ``runtime/package.json`` and
``runtime/package-lock.json`` beside this module and installs it with ``npm ci``, so every machine
runs the same workerd, checked against the lock's integrity hashes. The install goes into that
``runtime/`` directory when it is writable (a source checkout: ``.ci/run`` and ``make up`` run
``npm ci`` there), else into ``$REEF_HOME/serverless/runtime/<version>/`` (an installed wheel).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from reef.errors import ServerlessError
from reef.home import ReefHome

__all__ = ["RUNTIME_PACKAGE_DIR", "WORKERD_VERSION", "ensure_workerd", "find_workerd"]

WORKERD_VERSION = "1.20261123.1"
"""The npm ``workerd`` version reef runs functions on (pinned in ``runtime/package-lock.json``)."""
RUNTIME_PACKAGE_DIR = Path(__file__).parent / "runtime"
"""The npm project that pins workerd (``package.json`` and ``package-lock.json``)."""

_NPM_HINT = "install Node.js and npm (apt-get install nodejs npm), then run the command again"
_INSTALL_TIMEOUT_S = 600


def _home_dir(home: ReefHome) -> Path:
    return home.root / "serverless" / "runtime" / WORKERD_VERSION


def _binary_in(project: Path) -> Path | None:
    """The native workerd binary in ``project``'s node_modules, if the pinned version is there."""
    modules = project / "node_modules"
    try:
        meta = json.loads((modules / "workerd" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("version") != WORKERD_VERSION:
        return None
    # The platform package holds the real binary; the `workerd` package's bin/ may be a shim
    # (or a copy made by its postinstall script), so prefer the native one.
    candidates = sorted((modules / "@cloudflare").glob("workerd-*/bin/workerd"))
    candidates.append(modules / "workerd" / "bin" / "workerd")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_workerd(home: ReefHome | None = None) -> Path | None:
    """The pinned workerd binary if it is installed (in the package or under ``home``), else None."""
    places = [RUNTIME_PACKAGE_DIR]
    if home is not None:
        places.append(_home_dir(home))
    for place in places:
        binary = _binary_in(place)
        if binary is not None:
            return binary
    return None


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # One installer at a time per directory, across processes: two concurrent `npm ci` runs in
    # one directory delete each other's node_modules. The lock file lives in the temporary
    # directory, not beside package.json, so a source checkout stays clean.
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"reef-workerd-install-{digest}.lock"
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_workerd(home: ReefHome | None = None, *, npm: str | None = None) -> Path:
    """The pinned workerd binary, installing it with ``npm ci`` first if it is missing.

    Args:
        home: where to install when the package's own ``runtime/`` directory is read-only.
        npm: the npm executable (default: ``npm`` on ``PATH``).

    Raises:
        ServerlessError: npm is missing or the install failed (the message says which, and how
            to fix it).
    """
    found = find_workerd(home)
    if found is not None:
        return found
    npm_path = npm or shutil.which("npm")
    if npm_path is None:
        raise ServerlessError(
            f"workerd {WORKERD_VERSION} is not installed and npm was not found to install it",
            hint=_NPM_HINT,
        )
    if os.access(RUNTIME_PACKAGE_DIR, os.W_OK):
        target = RUNTIME_PACKAGE_DIR
    elif home is not None:
        target = _home_dir(home)
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(RUNTIME_PACKAGE_DIR / name, target / name)
    else:
        raise ServerlessError(
            f"workerd is not installed and {RUNTIME_PACKAGE_DIR} is not writable",
            hint="pass a ReefHome to install under $REEF_HOME, or run `npm ci` in that directory",
        )
    with _locked(target):
        binary = _binary_in(target)  # another process may have installed it while we waited
        if binary is not None:
            return binary
        try:
            done = subprocess.run(  # noqa: S603 (npm, fixed arguments)
                [npm_path, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=target,
                capture_output=True,
                text=True,
                timeout=_INSTALL_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerlessError(
                f"installing workerd with npm in {target} failed: {exc}", hint=_NPM_HINT
            ) from exc
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-800:]
            raise ServerlessError(
                f"`npm ci` in {target} failed (exit {done.returncode}): {tail}",
                hint="check that the npm registry is reachable, then run the command again",
            )
        binary = _binary_in(target)
    if binary is None:
        raise ServerlessError(
            f"`npm ci` in {target} succeeded but no workerd binary for this platform was installed",
            hint="workerd runs on Linux and macOS, x86-64 and arm64",
        )
    return binary
