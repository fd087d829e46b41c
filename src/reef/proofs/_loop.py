"""The loop the matching engine and the prover run: one step at a time, until stopped.

A step is blocking chain and proving work, so it runs in a worker thread. A step that fails on
the chain or the market (:class:`~reef.errors.ChainError`, :class:`~reef.errors.ProofError`) is
logged and retried; after a failed or idle step the loop waits ``interval_s`` (or until stopped),
after a busy one it steps again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TypeVar

from reef.errors import ChainError, ProofError

__all__: list[str] = []  # the package's own helper (the engine and the prover)

_T = TypeVar("_T")


async def _step_until_stopped(
    step: Callable[[], _T],
    *,
    busy: Callable[[_T], bool],
    log: logging.Logger,
    what: str,
    interval_s: float,
    stop: asyncio.Event | None,
) -> None:
    """Run ``step`` until ``stop`` is set; ``busy(result)`` says whether to step again at once.

    ``what`` names the stepper in the warning a failed step logs on ``log``.
    """
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            result = await asyncio.to_thread(step)
        except (ChainError, ProofError) as exc:
            log.warning("%s step failed (retrying): %s", what, exc)
            worked = False  # the node or a transaction failed: try again next round
        else:
            worked = busy(result)
        if not worked:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
