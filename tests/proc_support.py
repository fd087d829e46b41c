"""Whether a process is gone, read from ``/proc`` (Linux), for tests that check nothing a
service started outlives it.

pytest puts the tests folder on ``sys.path`` (``pythonpath`` in pyproject.toml)::

    from proc_support import process_gone
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["process_gone"]


def process_gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs: no such process, or one that exited and waits only to be
    reaped (state Z, zombie) or is being torn down (state X)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The command name in parentheses may hold spaces or parentheses: the state follows the last.
    return stat[stat.rfind(")") + 2] in "ZX"
