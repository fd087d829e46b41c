"""`reef store serve` as a child process, for the store's tests: started, read until ready,
stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REEF = Path(sys.executable).with_name("reef")


@contextmanager
def store_process(home: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """`reef store serve ARGS` in a child process, once it printed `ready`: the process and
    what it printed (``image store``, ``images``, ``uploads``, ...). A child still running at
    the end is killed."""
    process = subprocess.Popen(
        [str(REEF), "store", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "REEF_HOME": str(home), "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        said: dict[str, str] = {}
        for line in process.stdout:
            if line.strip() == "ready":
                break
            name, _, value = line.rstrip("\n").partition("  ")
            said[name.strip()] = value.strip()
        else:
            _, err = process.communicate(timeout=30)
            pytest.fail(f"reef store serve ended before ready: {err}")
        yield process, said
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def stop_store(process: subprocess.Popen[str]) -> str:
    """SIGTERM the store; it must exit 0 without a traceback. Its stderr."""
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    return err
