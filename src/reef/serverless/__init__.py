"""Serverless functions: JavaScript on attested executors, paid per millisecond, signed results.

The runtime (loaded at import; no chain):

- :func:`ensure_workerd` finds the pinned workerd (npm ``workerd``, :data:`WORKERD_VERSION`) or
  installs it with ``npm ci`` on first use;
- :class:`FunctionRuntime` runs an ES-module worker (``export default { async fetch(request,
  env) { ... } }``) on an input body and returns a :class:`CallResult` (output, :class:`ErrorCode`,
  time), under :class:`Limits` (deadline, memory, output size, network) enforced per call;
- :class:`CodeCache` keeps functions' code on disk by codehash (bounded LRU, concurrency-safe).

The chain side (loaded on first use, see ``__getattr__``: web3 and Starlette cost a second that
``reef fn dev`` need not pay):

- the contracts' clients: :class:`ServerlessCodeClient` (code by transaction hash),
  :class:`ServerlessJobsClient` (executors, jobs, outputs, slashing), :class:`ServerlessRelayClient`
  (the chain users pay on, for two chains), their revert reasons (:class:`ServerlessRevert`,
  :class:`RelayRevert`);
- their events, typed (decoded by reef.chain's ``EventDecoder``; :func:`serverless_jobs_decoder`
  and its siblings for an indexer): the clients return them and the executors, the relay gateway
  and ``reef fn`` read them as they are (:class:`JobCreated` is a job to run,
  :class:`JobResponded` an output the chain accepted);
- calling a deployed function as a user (:func:`call_function`: pay, open a job, the first
  accepted output and its executor's signature, what ``reef fn call`` prints);
- EIP-712 signing bound to a deployment and to the code and input that ran (:class:`JobsDomain`,
  :func:`sign_output` of the :class:`OutputFields`);
- the billing model (:class:`JobsModel`, :func:`payout_shares`, :func:`select_executors`);
- executors (:class:`ExecutorNode`, :class:`ExecutorService`, and :class:`ExecutorServer`, what
  an executor enclave runs), their registration through the
  attestation verifier (:func:`register_enclave_executor`), the web2 gateway's signatures
  (:func:`oyster_response_digest`, :func:`reef_gateway_digest`) and the two-chain
  :class:`RelayGateway`.

::

    binary = ensure_workerd(ReefHome.from_env())
    async with FunctionRuntime(binary) as runtime:
        result = await runtime.run(source, b"input", limits=Limits(timeout_ms=1000))
        print(result.error_code, result.output, result.total_time_ms)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reef._lazy import lazy_attributes
from reef.serverless._advice import EXECUTOR_MEMORY_MIB, readable_logs, verdict_hint
from reef.serverless._cache import CodeCache
from reef.serverless._http import HttpRequest
from reef.serverless._install import (
    RUNTIME_PACKAGE_DIR,
    WORKERD_VERSION,
    ensure_workerd,
    find_workerd,
)
from reef.serverless._reasons import RelayRevert, ServerlessRevert, serverless_hint
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

if TYPE_CHECKING:
    from reef.serverless._call import FunctionCall, call_function
    from reef.serverless._contracts import (
        ENV_JAVASCRIPT,
        CodeDeployment,
        ExecutorRecord,
        JobRecord,
        JobsParams,
        ServerlessCodeClient,
        ServerlessJobsClient,
    )
    from reef.serverless._events import (
        CodeCreated,
        ExecutorDeregistered,
        ExecutorDrained,
        ExecutorRegistered,
        ExecutorRevived,
        ExecutorStakeAdded,
        GatewayRegistered,
        GatewayRemoved,
        ImageWhitelisted,
        JobCancelled,
        JobClaimed,
        JobCreated,
        JobRefunded,
        JobRelayed,
        JobResponded,
        JobResultCallbackCalled,
        RelayEvent,
        RelayJobResponded,
        RelayJobResultCallbackCalled,
        ServerlessImageRevoked,
        ServerlessJobClosed,
        ServerlessJobsEvent,
        SlashedOnExecutionTimeout,
        VerifierUpdated,
        serverless_code_decoder,
        serverless_jobs_decoder,
        serverless_relay_decoder,
    )
    from reef.serverless._executor import (
        ExecutorService,
        ExecutorSettings,
        ExecutorStats,
    )
    from reef.serverless._model import (
        JobsModel,
        ModelExecutor,
        ModelJob,
        payout_shares,
        select_executors,
        selection_seed,
    )
    from reef.serverless._node import (
        GATEWAY_TIMEOUT_MS,
        ExecutorNode,
        load_key,
        oyster_response_digest,
        reef_gateway_digest,
    )
    from reef.serverless._operator import (
        fund_gas,
        register_enclave_executor,
    )
    from reef.serverless._relay import (
        JOB_RESPONSE_TYPE,
        RELAY_DOMAIN_NAME,
        RelayGateway,
        RelayParams,
        ServerlessRelayClient,
        job_response_digest,
        sign_job_response,
    )
    from reef.serverless._server import ExecutorServer
    from reef.serverless._signing import (
        JOBS_DOMAIN_NAME,
        JOBS_DOMAIN_VERSION,
        REGISTER_TYPE,
        SUBMIT_OUTPUT_TYPE,
        JobsDomain,
        OutputFields,
        SignedOutput,
        register_digest,
        sign_output,
        sign_registration,
        submit_output_digest,
    )

__all__ = [
    "CallResult",
    "CodeCache",
    "CodeCreated",
    "CodeDeployment",
    "CodeSource",
    "DEFAULT_MEMORY_BYTES",
    "DEFAULT_OUTPUT_BYTES",
    "DEFAULT_TIMEOUT_MS",
    "ENV_JAVASCRIPT",
    "EXECUTOR_MEMORY_MIB",
    "ErrorCode",
    "ExecutorDeregistered",
    "ExecutorDrained",
    "ExecutorNode",
    "ExecutorRecord",
    "ExecutorRegistered",
    "ExecutorRevived",
    "ExecutorServer",
    "ExecutorService",
    "ExecutorSettings",
    "ExecutorStakeAdded",
    "ExecutorStats",
    "FunctionCall",
    "FunctionRuntime",
    "GATEWAY_TIMEOUT_MS",
    "GatewayRegistered",
    "GatewayRemoved",
    "HttpRequest",
    "ImageWhitelisted",
    "JOBS_DOMAIN_NAME",
    "JOBS_DOMAIN_VERSION",
    "JOB_RESPONSE_TYPE",
    "JobCancelled",
    "JobClaimed",
    "JobCreated",
    "JobRecord",
    "JobRefunded",
    "JobRelayed",
    "JobResponded",
    "JobResultCallbackCalled",
    "JobsDomain",
    "JobsModel",
    "JobsParams",
    "Limits",
    "MAX_TIMEOUT_MS",
    "ModelExecutor",
    "ModelJob",
    "OutputFields",
    "REGISTER_TYPE",
    "RELAY_DOMAIN_NAME",
    "RUNTIME_PACKAGE_DIR",
    "RelayEvent",
    "RelayGateway",
    "RelayJobResponded",
    "RelayJobResultCallbackCalled",
    "RelayParams",
    "RelayRevert",
    "RuntimeStats",
    "SUBMIT_OUTPUT_TYPE",
    "ServerlessCodeClient",
    "ServerlessImageRevoked",
    "ServerlessJobClosed",
    "ServerlessJobsClient",
    "ServerlessJobsEvent",
    "ServerlessRelayClient",
    "ServerlessRevert",
    "SignedOutput",
    "SlashedOnExecutionTimeout",
    "VerifierUpdated",
    "WORKERD_VERSION",
    "call_function",
    "ensure_workerd",
    "find_workerd",
    "fund_gas",
    "job_response_digest",
    "load_key",
    "local_codehash",
    "oyster_response_digest",
    "payout_shares",
    "readable_logs",
    "reef_gateway_digest",
    "register_digest",
    "register_enclave_executor",
    "select_executors",
    "selection_seed",
    "serverless_code_decoder",
    "serverless_hint",
    "serverless_jobs_decoder",
    "serverless_relay_decoder",
    "sign_job_response",
    "sign_output",
    "sign_registration",
    "submit_output_digest",
    "verdict_hint",
]

# Loaded on first use (reef._lazy): the chain side (web3, eth-abi, Starlette) that `reef fn dev`
# and the runtime never need.
__getattr__ = lazy_attributes(
    __name__,
    {
        "FunctionCall": "_call",
        "call_function": "_call",
        "ENV_JAVASCRIPT": "_contracts",
        "CodeDeployment": "_contracts",
        "ExecutorRecord": "_contracts",
        "JobRecord": "_contracts",
        "JobsParams": "_contracts",
        "ServerlessCodeClient": "_contracts",
        "ServerlessJobsClient": "_contracts",
        "CodeCreated": "_events",
        "ExecutorDeregistered": "_events",
        "ExecutorDrained": "_events",
        "ExecutorRegistered": "_events",
        "ExecutorRevived": "_events",
        "ExecutorStakeAdded": "_events",
        "GatewayRegistered": "_events",
        "GatewayRemoved": "_events",
        "ImageWhitelisted": "_events",
        "JobCancelled": "_events",
        "JobClaimed": "_events",
        "JobCreated": "_events",
        "JobRefunded": "_events",
        "JobRelayed": "_events",
        "JobResponded": "_events",
        "JobResultCallbackCalled": "_events",
        "RelayEvent": "_events",
        "RelayJobResponded": "_events",
        "RelayJobResultCallbackCalled": "_events",
        "ServerlessImageRevoked": "_events",
        "ServerlessJobClosed": "_events",
        "ServerlessJobsEvent": "_events",
        "SlashedOnExecutionTimeout": "_events",
        "VerifierUpdated": "_events",
        "serverless_code_decoder": "_events",
        "serverless_jobs_decoder": "_events",
        "serverless_relay_decoder": "_events",
        "ExecutorService": "_executor",
        "ExecutorSettings": "_executor",
        "ExecutorStats": "_executor",
        "JobsModel": "_model",
        "ModelExecutor": "_model",
        "ModelJob": "_model",
        "payout_shares": "_model",
        "select_executors": "_model",
        "selection_seed": "_model",
        "GATEWAY_TIMEOUT_MS": "_node",
        "ExecutorNode": "_node",
        "load_key": "_node",
        "oyster_response_digest": "_node",
        "reef_gateway_digest": "_node",
        "ExecutorServer": "_server",
        "fund_gas": "_operator",
        "register_enclave_executor": "_operator",
        "JOB_RESPONSE_TYPE": "_relay",
        "RELAY_DOMAIN_NAME": "_relay",
        "RelayGateway": "_relay",
        "RelayParams": "_relay",
        "ServerlessRelayClient": "_relay",
        "job_response_digest": "_relay",
        "sign_job_response": "_relay",
        "JOBS_DOMAIN_NAME": "_signing",
        "JOBS_DOMAIN_VERSION": "_signing",
        "REGISTER_TYPE": "_signing",
        "SUBMIT_OUTPUT_TYPE": "_signing",
        "JobsDomain": "_signing",
        "OutputFields": "_signing",
        "SignedOutput": "_signing",
        "register_digest": "_signing",
        "sign_output": "_signing",
        "sign_registration": "_signing",
        "submit_output_digest": "_signing",
    },
)
