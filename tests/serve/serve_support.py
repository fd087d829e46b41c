"""A served Python script in a child process, for tests of how reef's servers start and stop.

pytest puts the tests folder on ``sys.path`` (``pythonpath`` in pyproject.toml)::

    from serve.serve_support import served_script
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["served_script"]


@contextmanager
def served_script(code: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run Python ``code``, a server that prints its URL as its first line, in a child process
    (text pipes for stdout and stderr), and yield the process and that URL.

    The test stops the child itself (the signal is what it tests); on exit a child still running
    is killed and reaped, so a failed test leaves no server behind.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield process, process.stdout.readline().strip()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
