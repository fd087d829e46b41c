"""Host-side launch pieces that need no enclave: the readiness pipe is read by the event loop
(a line, or EOF), never by a worker thread, and the boot limit is checked."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from reef.enclave import LocalBackend
from reef.enclave.local._backend import _read_ready
from reef.errors import MisuseError
from reef.home import ReefHome


async def test_the_ready_line_is_read_without_a_worker_thread() -> None:
    read_fd, write_fd = os.pipe()
    threads = threading.active_count()
    reading = asyncio.create_task(_read_ready(read_fd))
    await asyncio.sleep(0.01)
    os.write(write_fd, b'{"ok": ')
    await asyncio.sleep(0.01)
    assert not reading.done()  # half a line
    assert threading.active_count() == threads
    os.write(write_fd, b"true}\n")
    assert await asyncio.wait_for(reading, 5) == b'{"ok": true}\n'
    os.close(read_fd)
    os.close(write_fd)


async def test_a_supervisor_that_dies_before_its_line_gives_eof() -> None:
    read_fd, write_fd = os.pipe()
    reading = asyncio.create_task(_read_ready(read_fd))
    os.write(write_fd, b"partial")
    os.close(write_fd)
    assert await asyncio.wait_for(reading, 5) == b"partial"
    os.close(read_fd)


def test_the_boot_limit_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(MisuseError, match="max_booting"):
        LocalBackend(ReefHome(tmp_path), max_booting=0)
