"""The wall clock in Unix milliseconds: the default of every ``clock_ms`` parameter.

reef passes time as a parameter (a verifier, a cache or a policy takes ``clock_ms=`` or
``now_ms=``, and tests give a clock they move by hand); the real one is this function. It sits at
the top of the package, importing only the standard library, so that any package may default to
it (``reef.scallop`` must not load ``reef.attestation`` just for a clock). Milliseconds are an
integer, from ``time.time_ns``, never a float.
"""

from __future__ import annotations

import time

__all__ = ["wall_clock_ms"]


def wall_clock_ms() -> int:
    """Now, in whole Unix milliseconds."""
    return time.time_ns() // 1_000_000
