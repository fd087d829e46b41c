"""What a fresh interpreter imports: for the tests that keep heavy or optional dependencies off a
module's import path (start-up time, enclaves without them).

pytest puts the tests folder on ``sys.path`` (``pythonpath`` in pyproject.toml)::

    from imports_support import loaded_after
"""

from __future__ import annotations

import subprocess
import sys

__all__ = ["loaded_after"]


def loaded_after(code: str) -> set[str]:
    """The names of the modules a fresh interpreter holds after running ``code`` (a child
    process, so nothing this test process already imported counts)."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return set(out.split())
