"""The wall clock in Unix milliseconds: the default of every ``clock_ms`` parameter; Unix
times as people read them (:func:`format_time`), and durations as people write them
(:func:`parse_duration`: ``--duration 1h30m``, an alert's ``for = "15m"``).

reef passes time as a parameter (a verifier, a cache or a policy takes ``clock_ms=`` or
``now_ms=``, and tests give a clock they move by hand); the real one is this function. It sits at
the top of the package, importing only the standard library, so that any package may default to
it (``reef.scallop`` must not load ``reef.attestation`` just for a clock). Milliseconds are an
integer, from ``time.time_ns``, never a float.
"""

from __future__ import annotations

import datetime as dt
import re
import time

from reef.errors import InputError

__all__ = ["format_time", "parse_duration", "wall_clock_ms"]

_DURATION = re.compile(r"(\d+)\s*([smhdw]?)", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


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


def parse_duration(text: str, *, zero: bool = False) -> int:
    """Seconds from ``90``, ``90s``, ``30m``, ``1h``, ``1h30m``, ``2d``, ``1w``.

    Here, with the standard library alone: a command that takes a duration (``reef proofs
    request --expiry``) refuses a typo before it loads the chain's modules.

    Args:
        zero: accept a zero duration (an alert's ``for = 0``: at once).

    Raises:
        InputError: for anything else, or a zero duration unless ``zero``.
    """
    cleaned = text.strip().lower().replace(" ", "")
    pos, total = 0, 0
    for match in _DURATION.finditer(cleaned):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not cleaned or pos != len(cleaned):
        raise InputError(f"not a duration: {text!r}", hint="write e.g. 90s, 30m, 1h, 1h30m or 2d")
    if total <= 0 and not zero:
        raise InputError("the duration must be longer than zero")
    return total
