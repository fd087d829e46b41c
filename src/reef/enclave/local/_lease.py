"""An enclave's lease: the instant it stops by itself unless whoever launched it renews it.

A file in the enclave's run directory (``lease.json``), written by the launcher through
:meth:`reef.enclave.LocalBackend.renew` and watched by the enclave's supervisor. A market
provider sets it to the end of the job's paid time, so an enclave never outlives its payment
even while the provider is down.
"""

from __future__ import annotations

import json
from pathlib import Path

from reef.home import replace_file

__all__ = ["LEASE_FILE", "read_lease", "write_lease"]

LEASE_FILE = "lease.json"


def read_lease(path: Path) -> int | None:
    """The lease's end in Unix milliseconds, or None when the enclave has no lease.

    An unreadable lease counts as none rather than as expired: only its launcher writes it.
    """
    try:
        until = json.loads(path.read_text())["until_ms"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return until if isinstance(until, int) else None


def write_lease(path: Path, until_ms: int | None) -> None:
    """Set (atomically) or remove the lease."""
    if until_ms is None:
        path.unlink(missing_ok=True)
    else:
        replace_file(path, json.dumps({"until_ms": int(until_ms)}).encode())
