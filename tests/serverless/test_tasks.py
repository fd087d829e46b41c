"""The background-task set the executor, the relay gateway and the function runtime share."""

from __future__ import annotations

import asyncio
import inspect
import logging

import pytest

from reef.errors import MisuseError
from reef.serverless._tasks import _TaskSet

LOG = logging.getLogger("reef.serverless.test_tasks")


async def _fail() -> None:
    await asyncio.sleep(0)
    raise KeyError("boom")


async def test_a_task_that_fails_is_logged_and_removed(caplog: pytest.LogCaptureFixture) -> None:
    tasks = _TaskSet("executor 0xabc", LOG)
    task = tasks.spawn(_fail(), "job 7")
    assert task.get_name() == "job 7"
    assert len(tasks) == 1
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        await asyncio.wait({task})  # the set's done callback was added first, so it has run
    assert len(tasks) == 0
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert "executor 0xabc" in record.getMessage()
    assert "job 7" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], KeyError)


async def test_tasks_that_end_well_or_are_cancelled_are_removed_silently(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = _TaskSet("runtime", LOG)
    ok = tasks.spawn(asyncio.sleep(0), "quick")
    stuck = tasks.spawn(asyncio.Event().wait(), "stuck")
    with caplog.at_level(logging.DEBUG, logger=LOG.name):
        await asyncio.wait({ok})
        stuck.cancel()
        await asyncio.wait({stuck})
    assert len(tasks) == 0
    assert caplog.records == []


async def test_cancel_all_cancels_the_rest_and_waits_for_them() -> None:
    tasks = _TaskSet("relay gateway", LOG)
    started = asyncio.Event()
    cleaned_up: list[str] = []

    async def run_until_cancelled(name: str) -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # clean-up that itself awaits must be waited for too
            cleaned_up.append(name)

    spawned = [tasks.spawn(run_until_cancelled(f"t{i}"), f"t{i}") for i in range(3)]
    await started.wait()
    await tasks.cancel_all()
    assert all(task.cancelled() for task in spawned)
    assert sorted(cleaned_up) == ["t0", "t1", "t2"]
    assert len(tasks) == 0


async def test_drain_waits_for_running_tasks_without_cancelling_them() -> None:
    tasks = _TaskSet("runtime", LOG)
    release = asyncio.Event()
    finished: list[str] = []

    async def work() -> None:
        await release.wait()
        finished.append("done")

    task = tasks.spawn(work(), "evict workerd 1")
    drain = asyncio.create_task(tasks.drain())
    await asyncio.sleep(0)
    assert not drain.done()  # still waiting for the work
    release.set()
    await drain
    assert finished == ["done"]
    assert task.done()
    assert not task.cancelled()


@pytest.mark.parametrize("close", ["cancel_all", "drain"])
async def test_spawning_after_close_is_refused_and_the_work_never_runs(close: str) -> None:
    tasks = _TaskSet("executor 0xabc", LOG)
    await getattr(tasks, close)()
    work = asyncio.sleep(0)
    with pytest.raises(MisuseError, match=r"executor 0xabc is closed.*job 9") as caught:
        tasks.spawn(work, "job 9")
    assert caught.value.hint
    # Closed, so Python does not warn that it was never awaited.
    assert inspect.getcoroutinestate(work) == inspect.CORO_CLOSED
    assert len(tasks) == 0


async def test_closing_twice_is_harmless() -> None:
    tasks = _TaskSet("runtime", LOG)
    tasks.spawn(asyncio.Event().wait(), "stuck")
    await tasks.cancel_all()
    await tasks.cancel_all()
    await tasks.drain()
    assert len(tasks) == 0
