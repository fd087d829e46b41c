"""Processes known by PID and start time, so a PID the kernel reused is never mistaken for ours.

The supervisor records each process it starts with its start time; whoever later stops or
cleans up an enclave (any process) trusts a PID only while that start time still matches.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["alive", "proc_start"]


def proc_start(pid: int) -> int | None:
    """The start time (clock ticks) of a live, non-zombie process; None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(pid: int | None, start: int | None) -> bool:
    """Whether ``pid`` is still the process that started at ``start`` (any, when None)."""
    if not pid:
        return False
    now = proc_start(pid)
    return now is not None and (start is None or now == start)
