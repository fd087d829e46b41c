"""A devnet in process with the serverless contracts deployed, and helpers to register executors
and sign outputs as enclaves would (shared by the contract, model and executor tests), and to
recover who signed an output independently of reef's EIP-712 code, or a gateway's answer; the check that a service
polling a devnet slows down when idle (the executor's and the relay gateway's); and a node that
forges which code a job runs (the hostile executor and relay tests)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

import httpx
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import RPCEndpoint, RPCResponse

from reef.attestation import sign_statement
from reef.chain import Devnet, TokenClient
from reef.chain.devnet import DevnetProvider
from reef.crypto import Secp256k1PrivateKey, recover_digest
from reef.serverless import (
    ENV_JAVASCRIPT,
    ExecutorNode,
    ExecutorService,
    ExecutorSettings,
    JobsParams,
    ServerlessCodeClient,
    ServerlessJobsClient,
    SignedOutput,
    oyster_response_digest,
    sign_output,
    sign_registration,
)
from reef.testing import ManualWallClock

START = 4_000_000_000  # block time of the first block (2096): runs are reproducible
FUNDS = 1_000_000 * 10**6
IMAGE = bytes.fromhex("11" * 32)
PARAMS = JobsParams(
    fee_per_ms=3,
    min_stake=1_000_000,
    slash_bips=1000,
    execution_buffer_s=5,
    attestation_max_age_s=600,
    sign_max_age_s=600,
    num_select=3,
    min_deadline_ms=100,
    max_deadline_ms=60_000,
)

# The fields of an output, in order: ``SubmitOutput`` (Jobs) and ``JobResponse`` (Relay) share them.
OUTPUT_FIELDS = (
    ("jobId", "uint256"),
    ("codehash", "bytes32"),
    ("inputHash", "bytes32"),
    ("output", "bytes"),
    ("totalTime", "uint256"),
    ("errorCode", "uint8"),
    ("signTimestamp", "uint256"),
)


def output_signer(
    domain_name: str,
    message_type: str,
    *,
    chain_id: int,
    contract: str,
    message: Mapping[str, Any],
    signature: bytes,
) -> str:
    """The address that signed ``message`` (the :data:`OUTPUT_FIELDS` by name) as a
    ``message_type`` in the domain ``{domain_name, "1", chain_id, contract}``, recovered by
    eth-account's typed-data encoder."""
    typed = encode_typed_data(
        domain_data={
            "name": domain_name,
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": contract,
        },
        message_types={message_type: [{"name": n, "type": t} for n, t in OUTPUT_FIELDS]},
        message_data=dict(message),
    )
    return str(Account.recover_message(typed, signature=signature))


def gateway_signer(response: httpx.Response) -> tuple[bytes, str]:
    """The digest a web2 gateway's ``X-Oyster-Signature`` on ``response`` signs, over the request
    as it was sent (method, path and query, ``Host``, body) and the response body at the
    ``X-Oyster-Timestamp``, and the checksum address that signed it."""
    request = response.request
    digest = oyster_response_digest(
        timestamp=int(response.headers["x-oyster-timestamp"]),
        method=request.method,
        path_and_query=request.url.raw_path.decode(),
        host=request.headers["host"],
        request_body=request.content,
        response_body=response.content,
    )
    signature = bytes.fromhex(response.headers["x-oyster-signature"])
    return digest, recover_digest(digest, signature).checksum_address


class CodehashForgingNode(DevnetProvider):
    """A node over ``devnet`` that answers every log of ``event`` (a signature such as
    ``"JobCreated(uint256,...)"``, whose first data word is the job's codehash) with
    ``codehash`` in its place: the node of a host making its service act on other code than the
    user's."""

    def __init__(self, devnet: Devnet, *, event: str, codehash: bytes) -> None:
        super().__init__(devnet)
        self.topic = "0x" + Web3.keccak(text=event).hex().removeprefix("0x")
        self.codehash = codehash

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        answer = super().make_request(method, params)
        if method == "eth_getLogs" and isinstance(answer.get("result"), list):
            for log in answer["result"]:
                if log["topics"] and log["topics"][0] == self.topic:
                    log["data"] = "0x" + self.codehash.hex() + log["data"][66:]
        return answer


class PollIntervals(TypedDict):
    """The keyword arguments of a service's poll intervals (``ExecutorSettings``,
    ``RelayGateway``)."""

    poll_interval_s: float
    idle_poll_interval_s: float
    idle_after_s: float


IDLE_POLLS = PollIntervals(poll_interval_s=0.01, idle_poll_interval_s=3, idle_after_s=0.3)
"""Poll intervals under which :func:`check_idle_polls` sees a service slow down."""


def record_requests(w3: Web3) -> list[str]:
    """The JSON-RPC methods ``w3`` sends from now on, in order (appended as they are sent)."""
    asked: list[str] = []
    make_request = w3.provider.make_request

    def counted(method: Any, params: Any) -> Any:
        asked.append(str(method))
        return make_request(method, params)

    w3.provider.make_request = counted  # type: ignore[method-assign]
    return asked


async def check_idle_polls(
    asked: list[str], devnet: Devnet, caught_up: Callable[[], bool], reads: set[str]
) -> None:
    """A service started on ``devnet`` with :data:`IDLE_POLLS` (its requests recorded in
    ``asked``, ``caught_up`` once it has read the head) asks only for the block number while no
    block comes, a few dozen times in the first 0.3 s and then not at all for 3 s; a block that
    comes is seen at the next (idle) poll and read (``reads``), and the polls are fast again."""
    for _ in range(500):  # it starts at the head: wait for that first read
        if caught_up():
            break
        await asyncio.sleep(0.01)
    asked.clear()
    await asyncio.sleep(1.0)
    assert set(asked) == {"eth_blockNumber"}
    quiet = len(asked)
    await asyncio.sleep(0.5)
    assert len(asked) == quiet
    devnet.mine()
    for _ in range(100):
        if caught_up():
            break
        await asyncio.sleep(0.1)
    assert caught_up()
    assert reads <= set(asked[quiet:])
    before = len(asked)
    await asyncio.sleep(0.2)
    assert len(asked) > before


class WallClock(ManualWallClock):
    """The wall clock plus a skew: :meth:`ServerlessChain.catch_up` moves it to the chain's
    latest block after a burst of transactions (each block is at least a second after the last,
    so a burst runs the chain ahead of the wall clock, and its time then stands still)."""

    def __init__(self) -> None:
        super().__init__(0.0)

    def __call__(self) -> float:
        return time.time() + self.now


@dataclass
class ServerlessChain:
    __test__ = False

    devnet: Devnet
    clock: ManualWallClock
    deployer: LocalAccount
    users: list[LocalAccount]
    operators: list[LocalAccount]
    token: TokenClient
    jobs_address: str
    code_address: str
    verifier: Secp256k1PrivateKey
    params: JobsParams
    keys: dict[str, Secp256k1PrivateKey] = field(default_factory=dict)

    @classmethod
    def create(
        cls, params: JobsParams = PARAMS, *, chain_id: int = 31337, real_time: bool = False
    ) -> ServerlessChain:
        clock = ManualWallClock(START)
        if real_time:  # executors sleep through deadlines: the chain follows the wall clock
            clock = WallClock()
            devnet = Devnet(chain_id=chain_id, clock=clock)
        else:
            devnet = Devnet(chain_id=chain_id, clock=clock, genesis_timestamp=START - 1)
        w3 = devnet.web3()
        accounts = [a.local_account for a in devnet.accounts]
        deployer, users, operators = accounts[0], accounts[1:4], accounts[4:10]
        token = TokenClient.deploy(w3, deployer)
        verifier = Secp256k1PrivateKey.generate()
        jobs = ServerlessJobsClient.deploy(
            w3,
            deployer,
            token=token.address,
            verifier=verifier.public_key.checksum_address,
            params=params,
        )
        code = ServerlessCodeClient.deploy(w3, deployer)
        jobs.whitelist_image(IMAGE)
        for account in (*users, *operators):
            token.mint(account.address, FUNDS)
            TokenClient(w3, token.address, account=account).approve(jobs.address, 2**256 - 1)
        return cls(
            devnet,
            clock,
            deployer,
            users,
            operators,
            token,
            jobs.address,
            code.address,
            verifier,
            params,
        )

    @property
    def w3(self):  # type: ignore[no-untyped-def]
        return self.devnet.web3()

    def jobs(self, account: LocalAccount | None = None) -> ServerlessJobsClient:
        return ServerlessJobsClient(self.w3, self.jobs_address, account=account)

    def code(self, account: LocalAccount | None = None) -> ServerlessCodeClient:
        return ServerlessCodeClient(self.w3, self.code_address, account=account)

    def balance(self, address: str) -> int:
        return self.token.balance(address)

    def now(self) -> int:
        return self.devnet.next_block_timestamp()

    def catch_up(self) -> None:
        """Move a real-time chain's clock to its latest block (see :class:`WallClock`)."""
        latest = self.devnet.web3().eth.get_block("latest")["timestamp"]
        self.clock.now = max(self.clock.now, latest - time.time() + self.clock.now)

    def advance(self, seconds: int) -> None:
        """Move the chain's time ``seconds`` past its latest block (blocks run ahead of the
        fixed clock, one second each)."""
        self.devnet.increase_time(seconds)

    async def configure(self, node: ExecutorNode, *, w3: Web3 | None = None) -> None:
        """Configure ``node`` for this deployment (operator 0 owns it), reading the chain
        through ``w3`` (this devnet's by default), then stop its chain watcher: the node's APIs
        answer as configured, and nothing polls the chain."""
        service = await node.configure(
            ExecutorSettings(
                rpc_url="http://127.0.0.1:8545",
                jobs_contract=self.jobs_address,
                code_contract=self.code_address,
            ),
            owner=self.operators[0].address,
            w3=w3 or self.devnet.web3(),
        )
        await service.aclose()

    def register(
        self,
        operator: LocalAccount,
        *,
        stake: int = 5_000_000,
        capacity: int = 4,
        image: bytes = IMAGE,
        key: Secp256k1PrivateKey | None = None,
    ) -> str:
        """Register a new enclave key owned by ``operator``; returns its address."""
        key = key or Secp256k1PrivateKey.generate()
        jobs = self.jobs(operator)
        now = self.now()
        statement = sign_statement(
            self.verifier,
            image_id=image,
            timestamp_ms=now * 1000,
            public_key=key.public_key.raw,
            user_data=b"",
        )
        signature = sign_registration(
            key,
            jobs.domain(),
            owner=operator.address,
            job_capacity=capacity,
            env=ENV_JAVASCRIPT,
            sign_timestamp=now,
        )
        jobs.register_executor(
            statement,
            job_capacity=capacity,
            env=ENV_JAVASCRIPT,
            sign_timestamp=now,
            register_signature=signature,
            stake=stake,
        )
        address = key.public_key.checksum_address
        self.keys[address] = key
        return address

    async def service_through(
        self, key: Secp256k1PrivateKey, runtime: Any, workdir: Any, node: Any
    ) -> ExecutorService:
        """An executor's service (``key``, running on ``runtime``) that reads this chain
        through ``node``, a web3 provider that lies as the host of an executor enclave may.
        It is started and closed at once: the domain is read, and the test hands it jobs."""
        settings = ExecutorSettings(
            rpc_url="http://127.0.0.1:8545",
            jobs_contract=self.jobs_address,
            code_contract=self.code_address,
            slash=False,
        )
        service = ExecutorService(key, settings, runtime, workdir, w3=Web3(node))
        await service.start()
        await service.aclose()
        return service

    def output(
        self,
        enclave: str,
        job_id: int,
        output: bytes = b"ok",
        *,
        total_time: int = 100,
        error_code: int = 0,
        codehash: bytes | str | None = None,
        input_hash: bytes | str | None = None,
    ) -> SignedOutput:
        """``enclave``'s signed output of job ``job_id``: over the job's own codehash and input
        hash (the contract's record) unless others are given."""
        job = self.jobs().job(job_id)
        # No such job has no code: zeros then (the contract refuses the output as not found).
        own = (job.codehash, job.input_hash) if job else ("0x" + "00" * 32,) * 2
        return sign_output(
            self.keys[enclave],
            self.jobs().domain(),
            job_id=job_id,
            codehash=own[0] if codehash is None else codehash,
            input_hash=own[1] if input_hash is None else input_hash,
            output=output,
            total_time=total_time,
            error_code=error_code,
            sign_timestamp=self.now(),
        )
