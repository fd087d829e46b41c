"""Serverless functions: JavaScript workers run in workerd with limits reef enforces.

So far (issue 15, part one) the function runtime, with no chain yet:

- :func:`ensure_workerd` finds the pinned workerd (npm ``workerd``, :data:`WORKERD_VERSION`) or
  installs it with ``npm ci`` on first use;
- :class:`FunctionRuntime` runs an ES-module worker (``export default { async fetch(request,
  env) { ... } }``) on an input body and returns a :class:`CallResult` (output, :class:`ErrorCode`,
  time), under :class:`Limits` (deadline, memory, output size, network) enforced per call;
- :class:`CodeCache` keeps functions' code on disk by codehash (bounded LRU, concurrency-safe).

::

    binary = ensure_workerd(ReefHome.from_env())
    async with FunctionRuntime(binary) as runtime:
        result = await runtime.run(source, b"input", limits=Limits(timeout_ms=1000))
        print(result.error_code, result.output, result.total_time_ms)
"""

from __future__ import annotations

from reef.serverless._cache import CodeCache
from reef.serverless._install import (
    RUNTIME_PACKAGE_DIR,
    WORKERD_VERSION,
    ensure_workerd,
    find_workerd,
)
from reef.serverless._result import (
    DEFAULT_MEMORY_BYTES,
    DEFAULT_OUTPUT_BYTES,
    DEFAULT_TIMEOUT_MS,
    MAX_TIMEOUT_MS,
    CallResult,
    ErrorCode,
    Limits,
)
from reef.serverless._runtime import CodeSource, FunctionRuntime, RuntimeStats, local_codehash

__all__ = [
    "CallResult",
    "CodeCache",
    "CodeSource",
    "DEFAULT_MEMORY_BYTES",
    "DEFAULT_OUTPUT_BYTES",
    "DEFAULT_TIMEOUT_MS",
    "ErrorCode",
    "FunctionRuntime",
    "Limits",
    "MAX_TIMEOUT_MS",
    "RUNTIME_PACKAGE_DIR",
    "RuntimeStats",
    "WORKERD_VERSION",
    "ensure_workerd",
    "find_workerd",
    "local_codehash",
]
