"""How often a serverless service polls its chain: fast while blocks come, slower once they stop.

The executor and the relay gateway each watch a chain by asking for its block number in a loop
(a devnet mines a block per transaction, so a 50 ms poll keeps request -> output well under a
second). Once no block has come for a while, each poll is wasted: every idle ``reef up`` runs
three executors, and at 20 polls a second each they kept a fifth of a core busy doing nothing.
One loop serves both (:func:`_poll_forever`): :class:`_PollPolicy` says how long to wait after
a quiet spell of a given length (a pure function), :class:`_Pacer` measures that spell for one
loop (its clock is a parameter, so both are tested without a chain or a socket), and a failed
poll is logged and retried, never the end of the service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from reef.errors import ReefError

__all__: list[str] = []  # the package's own helper (executor, relay gateway)


@dataclass(frozen=True, kw_only=True, slots=True)
class _PollPolicy:
    """Poll every ``interval_s`` while blocks come; once none has come for ``idle_after_s``
    seconds, every ``idle_interval_s`` until one does (the first block after a quiet spell is
    seen up to that much later)."""

    interval_s: float
    idle_interval_s: float
    idle_after_s: float

    def delay(self, quiet_s: float) -> float:
        """How long to wait before the next poll, ``quiet_s`` seconds after the last new block.

        An idle interval below the busy one never speeds an idle loop up.
        """
        if quiet_s >= self.idle_after_s:
            return max(self.interval_s, self.idle_interval_s)
        return self.interval_s


@dataclass(slots=True)
class _Pacer:
    """Paces one poll loop by ``policy``: after each poll, :meth:`after` says how long to wait.

    Args:
        policy: the intervals.
        clock: monotonic seconds (the quiet spell starts when the pacer is made).
    """

    policy: _PollPolicy
    clock: Callable[[], float] = time.monotonic
    _moved_at: float = field(init=False)

    def __post_init__(self) -> None:
        self._moved_at = self.clock()

    def after(self, *, moved: bool) -> float:
        """The wait before the next poll, given whether this one saw a new block."""
        now = self.clock()
        if moved:
            self._moved_at = now
        return self.policy.delay(now - self._moved_at)


async def _poll_forever(
    poll: Callable[[], Awaitable[bool]], policy: _PollPolicy, *, owner: str, log: logging.Logger
) -> None:
    """Call ``poll`` (which says whether it saw a new block) until cancelled, paced by ``policy``.

    A poll that fails is logged on ``log`` as ``owner``'s and the loop goes on.
    """
    pacer = _Pacer(policy)
    while True:
        moved = False
        try:
            moved = await poll()
        except ReefError as exc:
            log.warning("%s: polling the chain failed: %s", owner, exc)
        except Exception as exc:  # web3 and transport errors vary; a node hiccup must not stop it
            log.warning("%s: polling the chain failed: %r", owner, exc)
        await asyncio.sleep(pacer.after(moved=moved))
