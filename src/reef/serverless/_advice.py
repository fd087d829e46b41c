"""What a function's verdict means for the person who ran it: which limit it passed and how to
try another, and workerd's logs as people read them. ``reef fn dev`` and ``reef fn call`` print
these; the executors' limits they compare with are reef up's (:data:`EXECUTOR_MEMORY_MIB`).
"""

from __future__ import annotations

import re

from reef.serverless._result import Limits

__all__ = ["EXECUTOR_MEMORY_MIB", "readable_logs", "verdict_hint"]

EXECUTOR_MEMORY_MIB = 192
"""What ``reef up``'s executors give a call (``--memory-mib`` in
``examples/serverless-executor/reef.toml``; a test keeps the two equal): ``reef fn dev``'s
default, so that what runs here runs there."""

_WORKERD_UNCAUGHT = re.compile(
    r"^workerd/\S+: error: Uncaught exception: (?:\S+: failed: )?(?:remote\.)?jsg\.(\w+): ",
    re.MULTILINE,
)
"""How workerd logs an exception a request's handler threw (its source file and line, the
assertion that carried it, the JS type through ``jsg``): people read ``Uncaught Error: ...``."""


def readable_logs(logs: str) -> str:
    """A call's logs for people: workerd's report of an uncaught exception as the exception
    (``Uncaught Error: boom``), without workerd's own source locations; the rest as it is."""
    return _WORKERD_UNCAUGHT.sub(r"Uncaught \1: ", logs).rstrip("\n")


def verdict_hint(error_code: int, timeout_ms: int, local: Limits | None) -> str | None:
    """What to do about a verdict other than "ok", for people: which limit the function passed
    and how to try it with another (``local``: ``reef fn dev``'s limits; None: a call's)."""
    usual = Limits()  # what reef up's executors run every job with
    if error_code == 3 and local is None:
        return (
            "the code does not load (a syntax error, an exception at load, or no `export "
            "default { fetch }`): `reef fn dev FILE` shows workerd's error; deploy the fixed "
            "file (it gets a new codehash)"
        )
    if error_code == 4:
        if local is not None:
            return (
                f"it ran past --timeout-ms ({timeout_ms} ms): an executor kills it at the job's "
                "deadline the same way"
            )
        return (
            f"it ran past the job's deadline ({timeout_ms} ms, paid in full): pass a "
            "longer --timeout-ms, or try it with `reef fn dev FILE --timeout-ms N`"
        )
    if error_code == 5:
        where = "the cap" if local is None else f"--max-output-bytes ({local.output_bytes})"
        return (
            f"its output passed {where}; reef up's executors keep at most "
            f"{usual.output_bytes} bytes of a function's output: answer less"
        )
    if error_code == 6:
        usual_mib = EXECUTOR_MEMORY_MIB
        if local is not None:
            return (
                f"it used more memory than --memory-mib ({local.memory_bytes >> 20}); reef up's "
                f"executors give a function {usual_mib} MiB"
            )
        return (
            f"it used more memory than the cap (reef up's executors give a function {usual_mib} "
            "MiB): try it with `reef fn dev FILE --memory-mib N`"
        )
    return None
