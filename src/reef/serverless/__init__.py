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
from reef.serverless._contracts import (
    ENV_JAVASCRIPT,
    CodeDeployment,
    ExecutorRecord,
    JobRecord,
    JobRequest,
    JobResponse,
    JobsParams,
    ServerlessCodeClient,
    ServerlessJobsClient,
)
from reef.serverless._install import (
    RUNTIME_PACKAGE_DIR,
    WORKERD_VERSION,
    ensure_workerd,
    find_workerd,
)
from reef.serverless._model import (
    JobsModel,
    ModelExecutor,
    ModelJob,
    payout_shares,
    select_executors,
    selection_seed,
)
from reef.serverless._reasons import RelayRevert, ServerlessRevert, serverless_hint
from reef.serverless._relay import (
    JOB_RESPONSE_TYPE,
    RELAY_DOMAIN_NAME,
    RelayedJob,
    RelayGateway,
    RelayParams,
    ServerlessRelayClient,
    job_response_digest,
    sign_job_response,
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
from reef.serverless._signing import (
    JOBS_DOMAIN_NAME,
    JOBS_DOMAIN_VERSION,
    REGISTER_TYPE,
    SUBMIT_OUTPUT_TYPE,
    JobsDomain,
    SignedOutput,
    register_digest,
    sign_output,
    sign_registration,
    submit_output_digest,
)

__all__ = [
    "CallResult",
    "CodeCache",
    "CodeDeployment",
    "CodeSource",
    "DEFAULT_MEMORY_BYTES",
    "DEFAULT_OUTPUT_BYTES",
    "DEFAULT_TIMEOUT_MS",
    "ENV_JAVASCRIPT",
    "ErrorCode",
    "ExecutorRecord",
    "FunctionRuntime",
    "JOBS_DOMAIN_NAME",
    "JOBS_DOMAIN_VERSION",
    "JOB_RESPONSE_TYPE",
    "JobRecord",
    "JobRequest",
    "JobResponse",
    "JobsDomain",
    "JobsModel",
    "JobsParams",
    "Limits",
    "MAX_TIMEOUT_MS",
    "ModelExecutor",
    "ModelJob",
    "REGISTER_TYPE",
    "RELAY_DOMAIN_NAME",
    "RUNTIME_PACKAGE_DIR",
    "RelayGateway",
    "RelayParams",
    "RelayRevert",
    "RelayedJob",
    "RuntimeStats",
    "SUBMIT_OUTPUT_TYPE",
    "ServerlessCodeClient",
    "ServerlessJobsClient",
    "ServerlessRelayClient",
    "ServerlessRevert",
    "SignedOutput",
    "WORKERD_VERSION",
    "ensure_workerd",
    "find_workerd",
    "job_response_digest",
    "local_codehash",
    "payout_shares",
    "register_digest",
    "select_executors",
    "selection_seed",
    "serverless_hint",
    "sign_job_response",
    "sign_output",
    "sign_registration",
    "submit_output_digest",
]
