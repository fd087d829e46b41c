"""What a function call returns: an error code, the output bytes and the time it took; and the
limits a call runs under.

Pure data, no I/O. The error codes 0–5 are Oyster's (reference/oyster_serverless.md §4.5), so a
result means the same thing on either network; 6 is reef's own. Failures on reef's side are never
an error code: they raise :class:`reef.errors.ServerlessError`, so an executor submits nothing
rather than blame the function for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from reef.errors import InputError

__all__ = [
    "DEFAULT_MEMORY_BYTES",
    "DEFAULT_OUTPUT_BYTES",
    "DEFAULT_TIMEOUT_MS",
    "MAX_TIMEOUT_MS",
    "CallResult",
    "ErrorCode",
    "Limits",
]

DEFAULT_TIMEOUT_MS = 5_000
"""The wall-clock deadline of a call when none is given (Oyster's web2 path uses 5 s)."""
MAX_TIMEOUT_MS = 300_000
"""The longest deadline a call may ask for (5 minutes)."""
DEFAULT_OUTPUT_BYTES = 20 * 1024
"""Oyster's output cap (``MAX_OUTPUT_BYTES_LENGTH``): larger outputs give code 5."""
DEFAULT_MEMORY_BYTES = 256 * 1024 * 1024
"""Resident memory of the runtime process running one call (an idle workerd uses ~50 MiB)."""


class ErrorCode(IntEnum):
    """The verdict on one call of a function (``errorCode`` of a submitted output).

    Every code other than ``OK`` comes with an empty output.
    """

    OK = 0
    """The function answered; the output is its response body (the HTTP status is not part of
    the verdict, as in Oyster: a function that throws answers 500 ``Internal Server Error``)."""
    CODE_NOT_FOUND = 1
    """No code is deployed under the codehash (no such transaction, or not to the code contract)."""
    CODE_NOT_DECODABLE = 2
    """The code is not UTF-8 text."""
    SYNTAX_ERROR = 3
    """The code does not load as an ES-module worker: a syntax error, an exception while the
    module is evaluated, or no ``export default { fetch }``."""
    TIMEOUT = 4
    """The call ran past its deadline; the runtime running it was killed."""
    OUTPUT_TOO_LARGE = 5
    """The response body exceeded the output cap."""
    MEMORY_LIMIT = 6
    """The call exceeded its memory cap (V8 heap or resident memory); reef's own code, not
    Oyster's (Oyster's cgroup kill gives no output at all)."""

    @property
    def description(self) -> str:
        """One line for people: what the code means."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    ErrorCode.OK: "ok",
    ErrorCode.CODE_NOT_FOUND: "code not found",
    ErrorCode.CODE_NOT_DECODABLE: "code is not UTF-8 text",
    ErrorCode.SYNTAX_ERROR: "code does not load (syntax error or exception at load)",
    ErrorCode.TIMEOUT: "deadline exceeded",
    ErrorCode.OUTPUT_TOO_LARGE: "output too large",
    ErrorCode.MEMORY_LIMIT: "memory limit exceeded",
}


@dataclass(frozen=True)
class Limits:
    """What one call may use. reef enforces each of them; workerd enforces none.

    Attributes:
        timeout_ms: wall-clock deadline of the call, from its start (including a cold start of
            the runtime) to the end of its output; past it the runtime is killed (code 4).
        memory_bytes: resident memory of the runtime process while it runs the call; V8's heap
            is capped at this less 64 MiB (an idle workerd's own share), so either exhaustion
            gives code 6.
        output_bytes: the largest response body accepted (code 5 beyond it).
        allow_network: address patterns the function may ``fetch()``, in workerd's network
            service terms (``"public"``, ``"private"``, ``"local"``, a CIDR such as
            ``"10.0.0.0/8"``). Empty (the default): no outbound network at all.
    """

    timeout_ms: int = DEFAULT_TIMEOUT_MS
    memory_bytes: int = DEFAULT_MEMORY_BYTES
    output_bytes: int = DEFAULT_OUTPUT_BYTES
    allow_network: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.timeout_ms <= MAX_TIMEOUT_MS:
            raise InputError(
                f"timeout must be between 1 and {MAX_TIMEOUT_MS} ms, got {self.timeout_ms}",
                hint="pass a deadline in milliseconds, e.g. --timeout-ms 5000",
            )
        if self.memory_bytes < 64 * 1024 * 1024:
            raise InputError(
                f"memory limit must be at least 64 MiB, got {self.memory_bytes} bytes",
                hint="an idle workerd alone uses about 50 MiB",
            )
        if self.output_bytes < 0:
            raise InputError(f"output limit must not be negative, got {self.output_bytes}")
        for pattern in self.allow_network:
            if not _network_pattern(pattern):
                # workerd refuses its whole configuration over one bad entry, which would read
                # as reef's failure at the first call: say which entry, and what is accepted.
                raise InputError(
                    f"invalid network pattern {pattern!r}",
                    hint="allow 'public', 'private', 'local', 'network', 'unix', "
                    "'unix-abstract' or an IP range with its prefix length (CIDR), such as "
                    "10.0.0.0/8 or 192.0.2.7/32",
                )


_NETWORK_NAMES = frozenset({"public", "private", "local", "network", "unix", "unix-abstract"})
"""The address classes a workerd network service's ``allow`` list names; else a CIDR."""


def _network_pattern(pattern: str) -> bool:
    """Whether workerd's ``allow`` list takes ``pattern``: a class name or a CIDR (with its
    prefix length: workerd refuses an address alone)."""
    import ipaddress

    if pattern in _NETWORK_NAMES:
        return True
    if "/" not in pattern:
        return False
    try:
        ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class CallResult:
    """The outcome of one call.

    Attributes:
        error_code: the verdict (:class:`ErrorCode`).
        output: the response body when ``error_code`` is ``OK``, else empty.
        total_time_ms: wall-clock milliseconds from the call's start to its end; the deadline
            itself for a timeout (as Oyster reports it).
        status: the function's HTTP status, when it answered.
        cold: the call started a new runtime process (not a warm one).
        logs: what the function wrote to the console during the call (best effort, capped),
            for ``reef fn dev``; never part of a signed result.
        headers: the function's response headers, when it answered (the web2 gateway returns
            them; a job's signed result is the body alone).
    """

    error_code: ErrorCode
    output: bytes
    total_time_ms: int
    status: int | None = None
    cold: bool = False
    logs: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.error_code is ErrorCode.OK
