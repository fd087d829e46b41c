"""Find the pinned snarkjs, or install it from npm on first use.

snarkjs (Groth16 prove/verify) and circom2 (to compile example circuits) are JavaScript: reef
pins them in ``runtime/package.json`` and ``runtime/package-lock.json`` beside this module and
installs them with ``npm ci`` (integrity-checked against the lock), the approach
``reef.serverless`` takes for workerd. The install goes into that ``runtime/`` directory when it
is writable (a source checkout), else into ``$REEF_HOME/proofs/runtime/<version>/`` (an
installed wheel). snarkjs was chosen because it *is* the reference implementation of circom's
Groth16: a proof it verifies is one every circom toolchain accepts.
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
from dataclasses import dataclass
from pathlib import Path

from reef.errors import ProofError
from reef.home import ReefHome

__all__ = ["RUNTIME_PACKAGE_DIR", "SNARKJS_VERSION", "SnarkjsRuntime", "ensure_snarkjs"]

SNARKJS_VERSION = "0.7.6"
"""The npm ``snarkjs`` version reef proves and verifies with (pinned in the lock file)."""
RUNTIME_PACKAGE_DIR = Path(__file__).parent / "runtime"
"""The npm project that pins snarkjs, circom2 and circomlib."""

_NPM_HINT = "install Node.js and npm (apt-get install nodejs npm), then run the command again"
_INSTALL_TIMEOUT_S = 600


@dataclass(frozen=True)
class SnarkjsRuntime:
    """Where the pinned toolchain lives: ``node``, the project directory and its snarkjs CLI."""

    node: Path
    project: Path

    @property
    def snarkjs_cli(self) -> Path:
        """snarkjs's own command-line entry point (``node <cli> groth16 verify ...``)."""
        return self.project / "node_modules" / "snarkjs" / "build" / "cli.cjs"

    @property
    def prove_script(self) -> Path:
        """reef's small Node program that runs ``groth16.fullProve`` on JSON from stdin."""
        return RUNTIME_PACKAGE_DIR / "prove.cjs"


def _home_dir(home: ReefHome) -> Path:
    return home.root / "proofs" / "runtime" / SNARKJS_VERSION


def _installed(project: Path) -> bool:
    try:
        meta = json.loads((project / "node_modules" / "snarkjs" / "package.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("version") == SNARKJS_VERSION


def _node() -> Path:
    node = shutil.which("node")
    if node is None:
        raise ProofError("Node.js (`node`) was not found; snarkjs needs it", hint=_NPM_HINT)
    return Path(node)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # Two concurrent `npm ci` runs in one directory delete each other's node_modules.
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"reef-snarkjs-install-{digest}.lock"
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_snarkjs(home: ReefHome | None = None, *, npm: str | None = None) -> SnarkjsRuntime:
    """The pinned snarkjs toolchain, installing it with ``npm ci`` first if it is missing.

    Raises:
        ProofError: node or npm is missing, or the install failed (the message says which).
    """
    node = _node()
    for place in (RUNTIME_PACKAGE_DIR, *(() if home is None else (_home_dir(home),))):
        if _installed(place):
            return SnarkjsRuntime(node, place)
    npm_path = npm or shutil.which("npm")
    if npm_path is None:
        raise ProofError(
            f"snarkjs {SNARKJS_VERSION} is not installed and npm was not found", hint=_NPM_HINT
        )
    if os.access(RUNTIME_PACKAGE_DIR, os.W_OK):
        target = RUNTIME_PACKAGE_DIR
    elif home is not None:
        target = _home_dir(home)
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(RUNTIME_PACKAGE_DIR / name, target / name)
    else:
        raise ProofError(
            f"snarkjs is not installed and {RUNTIME_PACKAGE_DIR} is not writable",
            hint="pass a ReefHome to install under $REEF_HOME, or run `npm ci` in that directory",
        )
    with _locked(target):
        if not _installed(target):
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
                raise ProofError(
                    f"installing snarkjs with npm in {target} failed: {exc}", hint=_NPM_HINT
                ) from exc
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip()[-800:]
                raise ProofError(
                    f"`npm ci` in {target} failed (exit {done.returncode}): {tail}",
                    hint="check that the npm registry is reachable, then run the command again",
                )
    if not _installed(target):
        raise ProofError(f"`npm ci` in {target} succeeded but snarkjs {SNARKJS_VERSION} is missing")
    return SnarkjsRuntime(node, target)
