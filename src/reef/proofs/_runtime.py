"""Find the pinned snarkjs, or install it from npm on first use (:mod:`reef._npm`).

snarkjs (Groth16 prove/verify) and circom2 (to compile example circuits) are JavaScript: reef
pins them in ``runtime/package.json`` and ``runtime/package-lock.json`` beside this module and
installs them with ``npm ci`` (integrity-checked against the lock) into that directory (a
checkout) or under ``$REEF_HOME/proofs/runtime/<version>/`` (an installed wheel). snarkjs was
chosen because it *is* the reference implementation of circom's Groth16: a proof it verifies is
one every circom toolchain accepts.

``_run_program``, the package's own helper, runs the provers' external programs (snarkjs under
``node``, a TEE worker's command) and says, as a :class:`~reef.errors.ProofError`, when one
cannot start or overruns.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reef._npm import NPM_HINT, NpmProject
from reef.errors import ProofError
from reef.home import ReefHome

__all__ = [
    "RUNTIME_PACKAGE_DIR",
    "SNARKJS_VERSION",
    "SnarkjsRuntime",
    "ensure_snarkjs",
    "snarkjs_in",
]

SNARKJS_VERSION = "0.7.6"
"""The npm ``snarkjs`` version reef proves and verifies with (pinned in the lock file)."""
RUNTIME_PACKAGE_DIR = Path(__file__).parent / "runtime"
"""The npm project that pins snarkjs, circom2 and circomlib."""


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


def _run_program(
    argv: Sequence[str],
    *,
    what: str,
    stdin: str | None,
    timeout_s: float,
    cwd: Path | None = None,
    hint: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to its end, text in and out, and return whatever it exited with.

    Raises:
        ProofError: naming ``what``, when the program cannot be started (``hint`` says what to
            install) or runs longer than ``timeout_s`` (it is killed).
    """
    try:
        return subprocess.run(  # noqa: S603 - node and fixed scripts, or the prover's own program
            list(argv),
            cwd=cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProofError(f"{what} took longer than {timeout_s:.0f} s and was stopped") from exc
    except OSError as exc:
        raise ProofError(f"{what} did not run: {exc}", hint=hint) from exc


def _installed(project: Path) -> bool:
    try:
        meta = json.loads((project / "node_modules" / "snarkjs" / "package.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("version") == SNARKJS_VERSION


def ensure_snarkjs(home: ReefHome | None = None, *, npm: str | None = None) -> SnarkjsRuntime:
    """The pinned snarkjs toolchain, installing it with ``npm ci`` first if it is missing.

    Raises:
        ProofError: node or npm is missing, or the install failed (the message says which).
    """
    node = _node(hint=NPM_HINT)
    project = NpmProject(
        source=RUNTIME_PACKAGE_DIR,
        area="proofs",
        what=f"snarkjs {SNARKJS_VERSION}",
        version=SNARKJS_VERSION,
        installed=_installed,
        error=ProofError,
    )
    return SnarkjsRuntime(node, project.ensure(home, npm=npm))


def snarkjs_in(project: Path) -> SnarkjsRuntime:
    """The snarkjs a user installed in ``project`` (its ``node_modules``), run by this
    machine's ``node``; nothing is installed.

    Raises:
        ProofError: node is missing.
    """
    return SnarkjsRuntime(_node(), project)


def _node(hint: str | None = None) -> Path:
    node = shutil.which("node")
    if node is None:
        raise ProofError("Node.js (`node`) was not found; snarkjs needs it", hint=hint)
    return Path(node)
