"""Processes tests start: ending them (politely, then for sure), and, read from ``/proc``
(Linux), whether one is gone and which processes match a test's description, for tests that
check nothing a service started outlives it.

pytest puts the tests folder on ``sys.path`` (``pythonpath`` in pyproject.toml)::

    from proc_support import pids_where, process_gone, stop_popen, stop_process
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["pids_where", "process_gone", "stop_popen", "stop_process"]


def pids_where(matches: Callable[[Path], bool]) -> list[int]:
    """PIDs of the processes whose ``/proc/PID`` directory ``matches`` holds of. A process that
    ends, or that we may not read, while ``matches`` reads it is left out."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if matches(entry):
                    found.append(int(entry.name))
    return found


def process_gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs: no such process, or one that exited and waits only to be
    reaped (state Z, zombie) or is being torn down (state X)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The command name in parentheses may hold spaces or parentheses: the state follows the last.
    return stat[stat.rfind(")") + 2] in "ZX"


async def stop_process(
    process: asyncio.subprocess.Process, *, sig: int = signal.SIGINT, grace_s: float = 30
) -> None:
    """Send ``sig`` to ``process`` unless it has ended, and wait for it; kill it if it has not
    ended within ``grace_s`` seconds. SIGINT by default: reef's servers then stop what they
    started (enclaves), which a kill would leave running."""
    if process.returncode is not None:
        return
    process.send_signal(sig)
    try:
        await asyncio.wait_for(process.wait(), grace_s)
    except TimeoutError:
        process.kill()
        await process.wait()


def stop_popen(
    process: subprocess.Popen[Any], *, sig: int = signal.SIGTERM, grace_s: float = 20
) -> None:
    """:func:`stop_process` for a :class:`subprocess.Popen`: ``sig``, then a kill after
    ``grace_s`` seconds; either way the process is reaped (no zombie is left)."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
