"""Calling a deployed function as a user: pay for the deadline, open a job, wait for the first
output the chain accepted, and read back the executor's signature on it (what ``reef fn call``
prints, so anyone can check it later against the Jobs contract's EIP-712 domain)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from reef.chain import ProgressCallback
from reef.errors import ServerlessError
from reef.serverless._contracts import JobsParams, ServerlessJobsClient
from reef.serverless._events import JobCreated, JobResponded
from reef.serverless._signing import JobsDomain, SignedOutput

__all__ = ["FunctionCall", "call_function"]

_POLL_S = 0.05
_SLACK_S = 5  # past the output window, for the output's block to be read


@dataclass(frozen=True)
class FunctionCall:
    """A job's first accepted output, with the signature that makes it checkable."""

    request: JobCreated
    response: JobResponded
    signed: SignedOutput
    domain: JobsDomain


def call_function(
    client: ServerlessJobsClient,
    codehash: str,
    body: bytes,
    timeout_ms: int,
    *,
    progress: ProgressCallback | None = None,
    opened: Callable[[JobCreated], None] | None = None,
) -> FunctionCall:
    """Run the function ``codehash`` on ``body`` as ``client``'s account, paying for
    ``timeout_ms`` (the Jobs contract is approved for the token first when it must be);
    ``opened`` hears of the job once it is open.

    Raises:
        ServerlessError: no executor answered by the deadline (plus the contract's execution
            buffer); the hint says how the job is then closed and refunded.
    """
    params = client.params()
    client.ensure_allowance(timeout_ms * params.fee_per_ms, progress=progress)
    request, _ = client.create_job(codehash, body, timeout_ms)
    if opened is not None:
        opened(request)
    response = _first_output(client, request, _output_wait_s(params, timeout_ms))
    if response is None:
        raise ServerlessError(
            f"no executor answered job {request.job_id} in time",
            hint=f"after the deadline, `reef fn job {request.job_id}` shows it; closing it "
            "refunds you and slashes the selected executors",
        )
    return FunctionCall(
        request=request,
        response=response,
        signed=client.signed_output(response.tx_hash),
        domain=client.domain(),
    )


def _output_wait_s(params: JobsParams, deadline_ms: int) -> float:
    """How long to wait for the first output of a job of ``deadline_ms``: its output window,
    and time for the output's block to be read."""
    return params.output_window_s(deadline_ms) + _SLACK_S


def _look_for_output(
    client: ServerlessJobsClient, request: JobCreated
) -> tuple[JobResponded | None, bool]:
    """One look at the job ``request`` opened: the first output the chain accepted (or None),
    and whether one may still come (not once it came, nor once the job closed without one).
    A user's call and the relay gateway wait on it, each in its own way (sync, async)."""
    # The job first, then its outputs: a job that closed (answered by all, or slashed) before
    # the read of its outputs has every output it will ever have.
    job = client.job(request.job_id)
    responses = client.responses(request.block_number, job_id=request.job_id)
    if responses:
        return responses[0], False
    return None, job is None or not job.closed


def _first_output(
    client: ServerlessJobsClient, request: JobCreated, wait_s: float
) -> JobResponded | None:
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        response, pending = _look_for_output(client, request)
        if not pending:
            return response
        time.sleep(_POLL_S)
    return None
