"""Find the pinned workerd binary, or install it from npm on first use (:mod:`reef._npm`).

workerd ships on npm as ``workerd`` plus one native package per platform
(``@cloudflare/workerd-linux-64``, ...). reef pins the version in ``runtime/package.json`` and
``runtime/package-lock.json`` beside this module; :class:`reef._npm.NpmProject` installs it
there (a checkout) or under ``$REEF_HOME/serverless/runtime/<version>/`` (an installed wheel).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from reef._npm import NpmProject
from reef.errors import ServerlessError
from reef.home import ReefHome

__all__ = ["RUNTIME_PACKAGE_DIR", "WORKERD_VERSION", "ensure_workerd", "find_workerd"]

WORKERD_VERSION = "1.20261123.1"
"""The npm ``workerd`` version reef runs functions on (pinned in ``runtime/package-lock.json``)."""
RUNTIME_PACKAGE_DIR = Path(__file__).parent / "runtime"
"""The npm project that pins workerd (``package.json`` and ``package-lock.json``)."""


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


def _project() -> NpmProject:
    return NpmProject(
        source=RUNTIME_PACKAGE_DIR,
        area="serverless",
        what=f"workerd {WORKERD_VERSION}",
        version=WORKERD_VERSION,
        installed=lambda project: _binary_in(project) is not None,
        error=ServerlessError,
    )


def find_workerd(home: ReefHome | None = None) -> Path | None:
    """The pinned workerd binary if it is installed (in the package or under ``home``), else None."""
    project = _project().find(home)
    return None if project is None else _binary_in(project)


def ensure_workerd(home: ReefHome | None = None, *, npm: str | None = None) -> Path:
    """The pinned workerd binary, installing it with ``npm ci`` first if it is missing.

    Args:
        home: where to install when the package's own ``runtime/`` directory is read-only.
        npm: the npm executable (default: ``npm`` on ``PATH``).

    Raises:
        ServerlessError: npm is missing or the install failed (the message says which, and how
            to fix it).
    """
    binary = _binary_in(_project().ensure(home, npm=npm))
    if binary is None:  # pragma: no cover - ensure checks the same predicate
        raise ServerlessError(f"no workerd binary for this platform in {RUNTIME_PACKAGE_DIR}")
    return binary
