"""The serverless contracts' events, typed, and their decoders (reef.chain's ``EventDecoder``).

The Code, Jobs and Relay contracts' logs decode as every other reef contract's do: topic-0
dispatch, raw JSON-RPC or web3 logs, typed frozen dataclasses, a hostile log refused with a
``ChainError`` rather than crashing a reader. The clients in :mod:`reef.serverless._contracts`
and :mod:`reef.serverless._relay` read them; an indexer can store them
(``IndexedContract(events=serverless_jobs_decoder())``).

A class takes its event's ABI name unless another reef event class already has that name; then
it carries its contract's prefix (``Serverless`` for the Jobs contract, ``Relay`` for the
Relay) and ``ABI_NAME`` gives the ABI's.
"""

from __future__ import annotations

from typing import ClassVar, get_args

from reef.chain import Address, ChainEvent, EventDecoder, load_artifact
from reef.crypto import keccak256

__all__ = [
    "CodeCreated",
    "ExecutorDeregistered",
    "ExecutorDrained",
    "ExecutorRegistered",
    "ExecutorRevived",
    "ExecutorStakeAdded",
    "GatewayRegistered",
    "GatewayRemoved",
    "ImageWhitelisted",
    "JobCancelled",
    "JobClaimed",
    "JobCreated",
    "JobRefunded",
    "JobRelayed",
    "JobResponded",
    "JobResultCallbackCalled",
    "RelayEvent",
    "RelayJobResponded",
    "RelayJobResultCallbackCalled",
    "ServerlessImageRevoked",
    "ServerlessJobClosed",
    "ServerlessJobsEvent",
    "SlashedOnExecutionTimeout",
    "VerifierUpdated",
    "serverless_code_decoder",
    "serverless_jobs_decoder",
    "serverless_relay_decoder",
]

# ---- the code contract ----


class CodeCreated(ChainEvent):
    """A function deployed: its codehash is this event's transaction hash."""

    owner: Address
    metadata: bytes


# ---- the Jobs contract ----


class ImageWhitelisted(ChainEvent):
    image_id: bytes


class ServerlessImageRevoked(ChainEvent):
    ABI_NAME: ClassVar[str] = "ImageRevoked"

    image_id: bytes


class VerifierUpdated(ChainEvent):
    verifier: Address


class ExecutorRegistered(ChainEvent):
    enclave: Address
    owner: Address
    image_id: bytes
    stake: int
    job_capacity: int
    env: int


class ExecutorStakeAdded(ChainEvent):
    enclave: Address
    amount: int


class ExecutorDrained(ChainEvent):
    enclave: Address


class ExecutorRevived(ChainEvent):
    enclave: Address


class ExecutorDeregistered(ChainEvent):
    enclave: Address
    stake_returned: int


class _JobInput:
    """A job event's input (``code_inputs``, a field of the event) and its hash."""

    code_inputs: bytes

    @property
    def input_hash(self) -> bytes:
        """keccak256 of the input: what an output's signature (and a gateway's answer's) binds
        beside the codehash, as the Jobs contract and the Relay hash it."""
        return keccak256(self.code_inputs)


class JobCreated(_JobInput, ChainEvent):
    """A job opened: what its selected executors must run."""

    job_id: int
    env: int
    owner: Address
    codehash: bytes
    code_inputs: bytes
    deadline: int
    deposit: int
    selected_executors: tuple[Address, ...]


class JobResponded(ChainEvent):
    """One executor's output, as the Jobs contract accepted it."""

    job_id: int
    executor: Address
    output: bytes
    total_time: int
    error_code: int
    output_count: int
    payment: int


class JobRefunded(ChainEvent):
    job_id: int
    owner: Address
    amount: int


class JobResultCallbackCalled(ChainEvent):
    job_id: int
    success: bool


class SlashedOnExecutionTimeout(ChainEvent):
    job_id: int
    enclave: Address
    amount: int


class ServerlessJobClosed(ChainEvent):
    ABI_NAME: ClassVar[str] = "JobClosed"

    job_id: int
    output_count: int


ServerlessJobsEvent = (
    ImageWhitelisted
    | ServerlessImageRevoked
    | VerifierUpdated
    | ExecutorRegistered
    | ExecutorStakeAdded
    | ExecutorDrained
    | ExecutorRevived
    | ExecutorDeregistered
    | JobCreated
    | JobResponded
    | JobRefunded
    | JobResultCallbackCalled
    | SlashedOnExecutionTimeout
    | ServerlessJobClosed
)

# ---- the Relay (the chain users pay on) ----


class GatewayRegistered(ChainEvent):
    gateway: Address
    owner: Address


class GatewayRemoved(ChainEvent):
    gateway: Address


class JobRelayed(_JobInput, ChainEvent):
    """A request on the request chain, for a gateway to claim and run."""

    job_id: int
    owner: Address
    codehash: bytes
    code_inputs: bytes
    deadline: int
    deposit: int
    callback: Address
    callback_gas_limit: int


class JobClaimed(ChainEvent):
    job_id: int
    gateway: Address


class RelayJobResponded(ChainEvent):
    """A gateway's answer on the Relay: what the user paid and got back."""

    ABI_NAME: ClassVar[str] = "JobResponded"

    job_id: int
    gateway: Address
    output: bytes
    total_time: int
    error_code: int
    paid: int
    refunded: int


class RelayJobResultCallbackCalled(ChainEvent):
    ABI_NAME: ClassVar[str] = "JobResultCallbackCalled"

    job_id: int
    success: bool


class JobCancelled(ChainEvent):
    job_id: int
    refunded: int


RelayEvent = (
    GatewayRegistered
    | GatewayRemoved
    | JobRelayed
    | JobClaimed
    | RelayJobResponded
    | RelayJobResultCallbackCalled
    | JobCancelled
)


def serverless_code_decoder() -> EventDecoder:
    """A decoder for the code contract's ``CodeCreated``."""
    return EventDecoder(load_artifact("ServerlessCode").abi, (CodeCreated,))


def serverless_jobs_decoder() -> EventDecoder:
    """A decoder for every event of the Jobs contract."""
    return EventDecoder(load_artifact("ServerlessJobs").abi, get_args(ServerlessJobsEvent))


def serverless_relay_decoder() -> EventDecoder:
    """A decoder for every event of the Relay."""
    return EventDecoder(load_artifact("ServerlessRelay").abi, get_args(RelayEvent))
