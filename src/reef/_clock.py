"""The wall clock in Unix milliseconds: the default of every ``clock_ms`` parameter; and Unix
times as people read them (:func:`format_time`).

reef passes time as a parameter (a verifier, a cache or a policy takes ``clock_ms=`` or
``now_ms=``, and tests give a clock they move by hand); the real one is this function. It sits at
the top of the package, importing only the standard library, so that any package may default to
it (``reef.scallop`` must not load ``reef.attestation`` just for a clock). Milliseconds are an
integer, from ``time.time_ns``, never a float.
"""

from __future__ import annotations

import datetime as dt
import time

__all__ = ["format_time", "wall_clock_ms"]


def wall_clock_ms() -> int:
    """Now, in whole Unix milliseconds."""
    return time.time_ns() // 1_000_000


def format_time(unix_s: int, *, utc: bool = False) -> str:
    """A Unix time as people read it: ``2026-12-06 15:42:16 UTC``, in the local time zone (a
    person's own commands) or in UTC (what a server tells others).

    A time no calendar of the platform holds (a job whose money would last past year 9999:
    its owner chooses the balance) is shown as the number it is, not raised.
    """
    try:
        if utc:
            return dt.datetime.fromtimestamp(unix_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(unix_s))
    except (OverflowError, OSError, ValueError):
        return f"unix time {unix_s}"
