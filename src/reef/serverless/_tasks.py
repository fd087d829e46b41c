"""The background tasks a serverless service owns, held until they end and ended at its close.

The executor (each job and each deadline watch), the relay gateway (each relayed job) and the
function runtime (each eviction of an idle process) start work that runs beside the code that
caused it. asyncio keeps only weak references to tasks, so an owner must hold them; nobody awaits
them either, so an exception one ends with would be lost (or printed at garbage collection). A
:class:`_TaskSet` holds each task until it ends, logs an exception it ends with on its owner's
logger, and at close refuses new work and either cancels what runs (a service stopping) or waits
for it (work that must finish, such as killing a process).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine

from reef.errors import MisuseError

__all__: list[str] = []  # the package's own helper (executor, relay gateway, runtime)


class _TaskSet:
    """Named background tasks of one owner.

    Args:
        owner: names the owner in log lines and errors (``"executor 0xAb…"``).
        log: where a task that ends with an exception is reported.
    """

    def __init__(self, owner: str, log: logging.Logger) -> None:
        self._owner = owner
        self._log = log
        self._tasks: set[asyncio.Task[object]] = set()
        self._closed = False

    def __len__(self) -> int:
        """How many tasks are still running."""
        return len(self._tasks)

    def spawn(self, work: Coroutine[object, object, object], name: str) -> asyncio.Task[object]:
        """Run ``work`` as a task named ``name``, held until it ends.

        Raises:
            MisuseError: the set is closed (``work`` is closed unstarted).
        """
        if self._closed:
            work.close()  # never to run: close it, or Python warns it was never awaited
            raise MisuseError(
                f"{self._owner} is closed and starts no more work (refused: {name})",
                hint="start work before closing it, or create a new one",
            )
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        failure = task.exception()
        if failure is not None:
            self._log.error("%s: task %r failed", self._owner, task.get_name(), exc_info=failure)

    async def cancel_all(self) -> None:
        """Refuse new work, cancel every running task and wait until each has ended."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await self.drain()

    async def drain(self) -> None:
        """Refuse new work and wait until every running task has ended (none is cancelled)."""
        self._closed = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
