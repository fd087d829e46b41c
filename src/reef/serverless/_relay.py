"""Two chains: users pay on a request chain's Relay, executors run on the Jobs contract's chain.

- :class:`ServerlessRelayClient`: the ``ServerlessRelay`` contract (``relayJob``, ``claimJob``,
  ``jobResponse``, ``jobCancel``, its events);
- :func:`sign_job_response`: a gateway's EIP-712 ``JobResponse`` in the domain
  ``{name: "reef.serverless.Relay", version: "1", chainId, verifyingContract}``, over the job's
  codehash and input hash as well as its output, so the Relay accepts an answer only for the code
  and input its user asked for (a gateway whose node forged ``JobRelayed`` would otherwise have
  other code run and answer the user with its output);
- :class:`RelayGateway`: the service between them. It watches the Relay for ``JobRelayed``,
  claims each job (so only it may answer), opens the same job on the Jobs contract (paying there
  from its own account), waits for the first executor output, and answers on the Relay with its
  signature; the Relay pays it for the time used plus its fee and refunds the user the rest.

The gateway is trusted by the Relay (the admin registers it), as in Oyster; the output it relays
also carries the executor's own signature on the executors' chain (``exec_job_id``), which
anyone can check there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Unpack

from eth_account.signers.local import LocalAccount
from web3 import Web3

from reef.chain import (
    ProgressCallback,
    Sender,
    TxResult,
    check_uint,
    parse_address,
)
from reef.crypto import (
    Secp256k1PrivateKey,
    eip712_domain_separator,
    keccak256,
)
from reef.errors import ReefError
from reef.serverless._call import _await_output, _output_wait_s
from reef.serverless._contracts import (
    ServerlessJobsClient,
    _Client,
    _Constants,
    _job_terms,
)
from reef.serverless._events import (
    JobRelayed,
    RelayEvent,
    RelayJobResponded,
    serverless_relay_decoder,
)
from reef.serverless._polling import _poll_forever, _PollPolicy
from reef.serverless._signing import (
    OutputFields,
    SignedOutput,
    _output_digest,
    _sign_output,
    _unsigned,
)
from reef.serverless._tasks import _TaskSet

__all__ = [
    "JOB_RESPONSE_TYPE",
    "RELAY_DOMAIN_NAME",
    "RelayGateway",
    "RelayParams",
    "ServerlessRelayClient",
    "job_response_digest",
    "sign_job_response",
]

log = logging.getLogger("reef.serverless.relay")

RELAY_DOMAIN_NAME = "reef.serverless.Relay"
JOB_RESPONSE_TYPE = (
    "JobResponse(uint256 jobId,bytes32 codehash,bytes32 inputHash,bytes output,"
    "uint256 totalTime,uint8 errorCode,uint256 signTimestamp)"
)
_TYPEHASH = keccak256(JOB_RESPONSE_TYPE.encode())


def job_response_digest(chain_id: int, relay: str, **fields: Unpack[OutputFields]) -> bytes:
    """The digest a gateway signs to answer job ``job_id`` (of the code ``codehash`` on the input
    whose keccak256 is ``input_hash``) on the Relay at ``relay``.

    Raises:
        InputError: a hash that is not 32 bytes, or a number out of its ABI type's range.
    """
    return _output_digest(_separator(chain_id, relay), _TYPEHASH, _unsigned(fields))


def _separator(chain_id: int, relay: str) -> bytes:
    return eip712_domain_separator(
        RELAY_DOMAIN_NAME, "1", chain_id=chain_id, verifying_contract=relay
    )


def sign_job_response(
    key: Secp256k1PrivateKey, chain_id: int, relay: str, **fields: Unpack[OutputFields]
) -> SignedOutput:
    """A gateway's signed answer to a relayed job (same fields as an executor's output): the
    output of the code ``codehash`` on the input whose keccak256 is ``input_hash``, which the
    Relay accepts only when they are the ones its user asked for.

    Raises:
        InputError: a hash that is not 32 bytes, or a number out of its ABI type's range.
    """
    return _sign_output(key, _separator(chain_id, relay), _TYPEHASH, _unsigned(fields))


@dataclass(frozen=True, kw_only=True)
class RelayParams(_Constants):
    """The Relay's constants: fees (token base units), deadline bounds (ms), timeouts (s); its
    constructor takes them after the token."""

    fee_per_ms: int = 1
    gateway_fee: int = 100
    min_deadline_ms: int = 100
    max_deadline_ms: int = 300_000
    overall_timeout_s: int = 600
    sign_max_age_s: int = 600


class ServerlessRelayClient(_Client[RelayEvent]):
    """The Relay contract on the chain users pay on."""

    CONTRACT = "ServerlessRelay"
    EVENTS = serverless_relay_decoder
    PAID_IN = "TOKEN"

    @classmethod
    def deploy(
        cls,
        w3: Web3,
        account: Sender,
        *,
        token: str,
        params: RelayParams | None = None,
        progress: ProgressCallback | None = None,
    ) -> ServerlessRelayClient:
        return cls._deploy(
            w3,
            account,
            parse_address(token, name="token"),
            *(params or RelayParams()).args(),
            progress=progress,
        )

    def chain_id(self) -> int:
        return self._tx.chain_id()

    def check_response_type(self) -> None:
        """Check that the Relay takes answers of the type reef signs (:data:`JOB_RESPONSE_TYPE`).

        Raises:
            ChainError: it checks another type (a deployment by an older reef).
        """
        self._check_typehash("JOB_RESPONSE_TYPEHASH", JOB_RESPONSE_TYPE)

    def register_gateway(self, gateway: str, owner: str) -> TxResult[Any]:
        return self._transact(
            "registerGateway",
            parse_address(gateway, name="gateway"),
            parse_address(owner, name="owner"),
        )

    def relay_job(
        self,
        codehash: str | bytes,
        codeinputs: bytes,
        deadline_ms: int,
        *,
        callback: str | None = None,
        callback_gas_limit: int = 0,
    ) -> JobRelayed:
        """Ask for a call (pays ``deadline x FEE_PER_MS + GATEWAY_FEE``; approve first)."""
        result = self._transact(
            "relayJob", *_job_terms(codehash, codeinputs, deadline_ms, callback, callback_gas_limit)
        )
        return result.first(JobRelayed)

    def claim(self, job_id: int) -> TxResult[Any]:
        return self._transact("claimJob", check_uint(job_id, "job id"))

    def respond(self, signed: SignedOutput) -> TxResult[Any]:
        return self._transact("jobResponse", *signed.call_args())

    def cancel(self, job_id: int) -> TxResult[Any]:
        return self._transact("jobCancel", check_uint(job_id, "job id"))

    def relayed(self, from_block: int, to_block: int | str = "latest") -> list[JobRelayed]:
        """The requests (``JobRelayed``) in the block range, in chain order."""
        return self.events_of(JobRelayed, from_block, to_block)

    def responses(self, from_block: int, to_block: int | str = "latest") -> list[RelayJobResponded]:
        """The gateways' answers (``JobResponded``) in the block range, in chain order."""
        return self.events_of(RelayJobResponded, from_block, to_block)


class RelayGateway:
    """Relays jobs from a Relay (request chain) to a Jobs contract (executors' chain).

    Args:
        key: the gateway's signing key; its address is registered on the Relay and sends the
            claims and responses there (it needs gas on the request chain).
        relay: a Relay client (any account; the gateway sends from ``key``).
        jobs: a Jobs client sending from the account that pays for jobs on the executors' chain
            (it must have approved the Jobs contract).
        poll_interval_s: how often both chains are polled: the Relay's while its blocks come,
            the Jobs contract's while a relayed job waits for its first output.
        idle_poll_interval_s, idle_after_s: once no block has come on the Relay's chain for
            ``idle_after_s`` seconds, it is polled every ``idle_poll_interval_s`` until one does
            (the executor's policy, :mod:`reef.serverless._polling`).
        clock: wall-clock seconds (the earliest timestamp of a response's signature).
    """

    def __init__(
        self,
        key: Secp256k1PrivateKey,
        relay: ServerlessRelayClient,
        jobs: ServerlessJobsClient,
        *,
        poll_interval_s: float = 0.05,
        idle_poll_interval_s: float = 0.25,
        idle_after_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from eth_account import Account

        self.key = key
        account: LocalAccount = Account.from_key(key.secret)
        self.relay = ServerlessRelayClient(relay.w3, relay.address, account=account)
        self.jobs = jobs
        self.poll_interval_s = poll_interval_s
        self.poll_policy = _PollPolicy(
            interval_s=poll_interval_s,
            idle_interval_s=idle_poll_interval_s,
            idle_after_s=idle_after_s,
        )
        self._clock = clock
        self._next_block = 0
        self._tasks = _TaskSet("relay gateway", log)  # the poll loop and each job it relays
        self._relay_lock = asyncio.Lock()
        self._jobs_lock = asyncio.Lock()
        self.relayed = 0
        self.answered = 0
        self._type_checked = False  # the Relay takes the answer type this gateway signs

    @property
    def address(self) -> str:
        return self.key.public_key.checksum_address

    async def start(self) -> RelayGateway:
        self._next_block = await asyncio.to_thread(lambda: int(self.relay.w3.eth.block_number))
        polls = _poll_forever(self._poll, self.poll_policy, owner="relay gateway", log=log)
        self._tasks.spawn(polls, "relay gateway")
        return self

    async def aclose(self) -> None:
        """Stop polling, cancel the jobs being relayed and wait for them to end."""
        await self._tasks.cancel_all()

    async def _poll(self) -> bool:
        """Start relaying the jobs of the Relay's new blocks; whether there were any blocks."""
        start = self._next_block
        found, self._next_block = await asyncio.to_thread(
            self.relay.events_to_head, start, JobRelayed
        )
        for job in found:
            self._tasks.spawn(self.handle(job), f"relay {job.job_id}")
        return self._next_block > start

    async def handle(self, job: JobRelayed) -> None:
        """Claim, run on the executors' chain, answer on the request chain (not a job of a
        Relay that checks another answer type than this gateway signs: it would refuse it)."""
        try:
            if not self._type_checked:
                await asyncio.to_thread(self.relay.check_response_type)
                self._type_checked = True
            async with self._relay_lock:
                await asyncio.to_thread(self.relay.claim, job.job_id)
            async with self._jobs_lock:
                request, _ = await asyncio.to_thread(
                    self.jobs.create_job, job.codehash, job.code_inputs, job.deadline
                )
            self.relayed += 1
            params = await asyncio.to_thread(self.jobs.params)
            wait_s = _output_wait_s(params, job.deadline)
            response = await _await_output(self.jobs, request, wait_s, self.poll_interval_s)
            if response is None:
                log.warning("relay gateway: no executor answered job %s", job.job_id)
                return
            timestamp = int(
                await asyncio.to_thread(lambda: self.relay.w3.eth.get_block("latest")["timestamp"])
            )
            signed = sign_job_response(
                self.key,
                self.relay.chain_id(),
                self.relay.address,
                job_id=job.job_id,
                # What it relayed: the Relay checks them against the job its user opened.
                codehash=job.codehash,
                input_hash=job.input_hash,
                output=response.output,
                total_time=response.total_time,
                error_code=response.error_code,
                sign_timestamp=max(timestamp, int(self._clock())),
            )
            async with self._relay_lock:
                await asyncio.to_thread(self.relay.respond, signed)
            self.answered += 1
        except ReefError as exc:
            log.warning("relay gateway: job %s not relayed: %s", job.job_id, exc)
