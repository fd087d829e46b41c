"""Processes tests start: ending them (politely, then for sure), and whether one is gone, read
from ``/proc`` (Linux), for tests that check nothing a service started outlives it.

pytest puts the tests folder on ``sys.path`` (``pythonpath`` in pyproject.toml)::

    from proc_support import process_gone, stop_popen, stop_process
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["process_gone", "stop_popen", "stop_process"]


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
