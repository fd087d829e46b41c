"""Calling a deployed function as a user: pay for the deadline, open a job, wait for the first
output the chain accepted, and read back the executor's signature on it (what ``reef fn call``
prints, so anyone can check it later against the Jobs contract's EIP-712 domain)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from web3 import Web3

from reef._fetch import run_blocking
from reef.chain import ProgressCallback, translate_errors
from reef.errors import InputError, MarketError, ServerlessError
from reef.serverless._contracts import JobsParams, ServerlessCodeClient, ServerlessJobsClient
from reef.serverless._events import JobCreated, JobResponded
from reef.serverless._signing import JobsDomain, SignedOutput, _hash32

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
    code: ServerlessCodeClient | None = None,
) -> FunctionCall:
    """Run the function ``codehash`` on ``body`` as ``client``'s account, paying for
    ``timeout_ms`` (the Jobs contract is approved for the token first when it must be);
    ``opened`` hears of the job once it is open.

    What would only revert, or open a job no function answers, is refused before anything is
    sent: a codehash that is not 32 bytes, a deadline out of the contract's bounds, an account
    without the deposit or without gas, and (given the ``code`` contract the executors fetch
    from) a codehash under which nothing is deployed.

    Raises:
        InputError: the codehash or the deadline is invalid, or no code is deployed under it.
        MarketError: the account cannot pay the deposit, or its gas.
        ServerlessError: no executor answered by the deadline (plus the contract's execution
            buffer); the hint says how the job is then closed and refunded.
    """
    _hash32(codehash, "codehash")
    params = client.params()
    deposit = _check_deadline(params, timeout_ms)
    if code is not None and code.fetch_code(codehash) is None:
        raise InputError(
            f"no function is deployed under codehash {_hex(codehash)} (on the code contract "
            f"{code.address})",
            hint="`reef fn list` lists the deployed functions; `reef fn deploy FILE` deploys one "
            "and prints its codehash",
        )
    _check_funds(client, deposit)
    client.ensure_allowance(deposit, progress=progress)
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


def _hex(codehash: str | bytes) -> str:
    return "0x" + _hash32(codehash, "codehash").hex()


def _check_deadline(params: JobsParams, timeout_ms: int) -> int:
    """The deposit a job of ``timeout_ms`` takes (``timeout_ms x fee_per_ms``), once the
    deadline is within the contract's bounds.

    Raises:
        InputError: it is not (the contract would revert, after the approval).
    """
    low, high = params.min_deadline_ms, params.max_deadline_ms
    if not low <= timeout_ms <= high:
        raise InputError(
            f"a deadline of {timeout_ms} ms is out of the Jobs contract's bounds, {low} to "
            f"{high} ms",
            hint=f"pass --timeout-ms between {low} and {high}",
        )
    return timeout_ms * params.fee_per_ms


def _check_funds(client: ServerlessJobsClient, deposit: int) -> None:
    """Refuse a call its account cannot pay: the deposit in the token, gas in the chain's coin.

    Raises:
        MarketError: the account holds less than ``deposit``, or no coin for gas.
    """
    if client.account is None:  # create_job says so (MisuseError)
        return
    address = client.sender
    client.require_tokens(
        address,
        deposit,
        taken="a call takes its deadline's fee up front:",
        hint="send rUSD to this account, or call with a funded key (--key FILE; on reef's "
        "devnet `reef chain accounts` lists the funded dev accounts), or pass a shorter "
        "--timeout-ms",
    )
    with translate_errors("eth_getBalance"):
        gas = int(client.w3.eth.get_balance(Web3.to_checksum_address(address)))
    if gas == 0:
        raise MarketError(
            f"account {address} holds no ETH to pay the call's gas",
            hint="send it ETH, or call with a funded key (--key FILE; on reef's devnet "
            "`reef chain accounts` lists the funded dev accounts)",
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
    A user's call and the relay gateway wait on it (:func:`_await_output`)."""
    # The job first, then its outputs: a job that closed (answered by all, or slashed) before
    # the read of its outputs has every output it will ever have.
    job = client.job(request.job_id)
    responses = client.responses(request.block_number, job_id=request.job_id)
    if responses:
        return responses[0], False
    return None, job is None or not job.closed


async def _await_output(
    client: ServerlessJobsClient, request: JobCreated, wait_s: float, poll_s: float = _POLL_S
) -> JobResponded | None:
    """The first output of the job ``request`` opened, or None once none can come (the job
    closed without one, or ``wait_s`` passed), looking every ``poll_s`` seconds: the relay
    gateway awaits it, a user's call runs it (:func:`_first_output`)."""
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        response, pending = await asyncio.to_thread(_look_for_output, client, request)
        if not pending:
            return response
        await asyncio.sleep(poll_s)
    return None


def _first_output(
    client: ServerlessJobsClient, request: JobCreated, wait_s: float
) -> JobResponded | None:
    """:func:`_await_output`, from blocking code."""
    return run_blocking(_await_output(client, request, wait_s))
