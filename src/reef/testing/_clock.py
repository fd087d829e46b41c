"""Clocks for tests: the wall clock as a parameter, and one a test moves by hand."""

from __future__ import annotations

import time

__all__ = ["ManualClock", "wall_ms"]


def wall_ms() -> int:
    """The wall clock in Unix milliseconds."""
    return int(time.time() * 1000)


class ManualClock:
    """A clock that only moves when told; call it for Unix milliseconds."""

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms
