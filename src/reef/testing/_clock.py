"""Clocks for tests: the wall clock as a parameter, and ones a test moves by hand (Unix
milliseconds for the services that take ``clock_ms``, float seconds for those that take a
``time.time``-like clock, such as the devnet)."""

from __future__ import annotations

from reef._clock import wall_clock_ms as wall_ms

__all__ = ["ManualClock", "ManualWallClock", "wall_ms"]


class ManualClock:
    """A clock that only moves when told; call it for Unix milliseconds."""

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


class ManualWallClock:
    """A ``time.time`` stand-in: float Unix seconds in :attr:`now`, moved only by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
