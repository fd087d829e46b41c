"""Two chains: a user pays on the Relay of one devnet (chain id 31337), three executors run the
job on the Jobs contract of another (chain id 421614), and a gateway relays between them. The
user gets the output on the request chain and pays exactly the time used plus the gateway's fee;
the gateway's response signature is bound to the request chain (eth-account recovers it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hexbytes import HexBytes
from web3 import Web3

from reef.chain import Devnet, TokenClient
from reef.crypto import Secp256k1PrivateKey
from reef.errors import ContractRevertError
from reef.serverless import (
    ExecutorNode,
    ExecutorSettings,
    FunctionRuntime,
    JobsParams,
    RelayGateway,
    RelayJobResponded,
    RelayParams,
    RelayRevert,
    ServerlessJobsClient,
    ServerlessRelayClient,
    fund_gas,
    sign_job_response,
)
from serverless.chain_support import (
    OUTPUT_FIELDS,
    CodehashForgingNode,
    ServerlessChain,
    output_signer,
)

pytestmark = pytest.mark.slow

HELLO = b"export default { async fetch(r) { return new Response('relayed ' + await r.text()); } };"
RELAY_PARAMS = RelayParams(
    fee_per_ms=5, gateway_fee=1000, overall_timeout_s=120, max_deadline_ms=60_000
)


@dataclass(frozen=True)
class TwoChains:
    request: Devnet
    relay: ServerlessRelayClient
    token: TokenClient
    executors: ServerlessChain
    gateway: RelayGateway


@pytest.fixture
async def chains(workerd: Path, tmp_path: Path) -> AsyncIterator[TwoChains]:
    request_chain = Devnet(chain_id=31337)
    w3a = request_chain.web3()
    accounts = [a.local_account for a in request_chain.accounts]
    admin_a, user_a, gateway_owner = accounts[0], accounts[1], accounts[2]
    token_a = TokenClient.deploy(w3a, admin_a)
    relay = ServerlessRelayClient.deploy(w3a, admin_a, token=token_a.address, params=RELAY_PARAMS)
    token_a.mint(user_a.address, 10**12)
    TokenClient(w3a, token_a.address, account=user_a).approve(relay.address, 2**256 - 1)
    gateway_key = Secp256k1PrivateKey.generate()
    relay.register_gateway(gateway_key.public_key.checksum_address, gateway_owner.address)
    fund_gas(w3a, admin_a, gateway_key.public_key.checksum_address, 10**18)

    executors = ServerlessChain.create(
        JobsParams(
            fee_per_ms=2, min_stake=1_000_000, execution_buffer_s=30, max_deadline_ms=60_000
        ),
        chain_id=421614,
        real_time=True,
    )
    w3b = executors.devnet.web3()
    nodes, runtimes = [], []
    payer_b = executors.users[2]  # the gateway's account on the executors' chain
    try:
        for i, operator in enumerate(executors.operators[:3]):
            key = Secp256k1PrivateKey.generate()
            executors.register(operator, key=key)
            fund_gas(w3b, executors.deployer, key.public_key.checksum_address, 10**18)
            runtime = FunctionRuntime(workerd, max_idle=2)
            runtimes.append(runtime)
            node = ExecutorNode(key, runtime, tmp_path / f"c{i}")
            await node.configure(
                ExecutorSettings(
                    rpc_url="in-process",
                    jobs_contract=executors.jobs_address,
                    code_contract=executors.code_address,
                ),
                owner=operator.address,
                w3=w3b,
            )
            nodes.append(node)
        executors.catch_up()
        gateway = await RelayGateway(
            gateway_key, relay, ServerlessJobsClient(w3b, executors.jobs_address, account=payer_b)
        ).start()
        yield TwoChains(request_chain, relay, token_a, executors, gateway)
        await gateway.aclose()
    finally:
        for node in nodes:
            await node.aclose()
        for runtime in runtimes:
            await runtime.aclose()


async def test_a_job_paid_on_one_chain_runs_on_the_other(chains: TwoChains) -> None:
    relay = chains.relay
    w3a = chains.request.web3()
    user = chains.request.accounts[1].local_account
    owner = chains.request.accounts[2].address
    codehash = chains.executors.code(chains.executors.users[0]).deploy_code(HELLO)
    assert chains.request.chain_id != chains.executors.devnet.chain_id
    before = chains.token.balance(user.address)
    job = await asyncio.to_thread(
        ServerlessRelayClient(w3a, relay.address, account=user).relay_job, codehash, b"x", 4000
    )
    assert job.job_id >> 192 == chains.request.chain_id  # ids carry the request chain's id
    assert job.deposit == 4000 * RELAY_PARAMS.fee_per_ms + RELAY_PARAMS.gateway_fee
    end = time.monotonic() + 60
    responses: list[RelayJobResponded] = []
    while time.monotonic() < end and not responses:
        responses = await asyncio.to_thread(relay.responses, job.block_number)
        await asyncio.sleep(0.1)
    assert responses, "the gateway did not answer on the request chain"
    answer = responses[0]
    assert answer.job_id == job.job_id
    assert answer.output == b"relayed x"
    assert answer.error_code == 0
    paid = min(answer.total_time, 4000) * RELAY_PARAMS.fee_per_ms + RELAY_PARAMS.gateway_fee
    assert answer.paid == paid
    assert chains.token.balance(user.address) == before - paid
    assert chains.token.balance(owner) == paid
    assert chains.token.balance(relay.address) == 0
    # The response was signed by the gateway in the request chain's Relay domain.
    tx = w3a.eth.get_transaction(HexBytes(answer.tx_hash))
    _, call = relay.contract.decode_function_input(tx["input"])
    signer = output_signer(
        "reef.serverless.Relay",
        "JobResponse",
        chain_id=chains.request.chain_id,
        contract=relay.address,
        message={
            **{name: call[f"_{name}"] for name, _ in OUTPUT_FIELDS if f"_{name}" in call},
            # The user's code and input: what the Relay holds for the job, not the calldata.
            "codehash": bytes.fromhex(codehash[2:]),
            "inputHash": Web3.keccak(b"x"),
        },
        signature=call["_signature"],
    )
    assert signer == chains.gateway.address
    # On the executors' chain, the three executors answered the job the gateway opened.
    jobs_b = chains.executors.jobs()
    executed = jobs_b.responses(0)
    assert {r.output for r in executed} == {b"relayed x"}


async def test_only_the_claiming_gateway_may_answer_and_stale_jobs_refund(
    chains: TwoChains,
) -> None:
    await chains.gateway.aclose()  # nobody relays in this test
    relay = chains.relay
    w3a = chains.request.web3()
    user = chains.request.accounts[1].local_account
    job = ServerlessRelayClient(w3a, relay.address, account=user).relay_job(
        "0x" + "11" * 32, b"", 1000
    )
    impostor = Secp256k1PrivateKey.generate()
    signed = sign_job_response(
        impostor,
        chains.request.chain_id,
        relay.address,
        job_id=job.job_id,
        codehash="0x" + "11" * 32,
        input_hash=Web3.keccak(b""),
        output=b"lie",
        total_time=1,
        error_code=0,
        sign_timestamp=int(time.time()),
    )
    with pytest.raises(ContractRevertError) as exc:
        relay.respond(signed)
    assert exc.value.reason == RelayRevert.WRONG_GATEWAY.value
    before = chains.token.balance(user.address)
    with pytest.raises(ContractRevertError) as exc:
        relay.cancel(job.job_id)
    assert exc.value.reason == RelayRevert.NOT_TIMED_OUT.value
    chains.request.increase_time(RELAY_PARAMS.overall_timeout_s + 1)
    relay.cancel(job.job_id)
    assert chains.token.balance(user.address) == before + job.deposit


async def test_a_gateway_whose_node_forges_the_code_cannot_answer_with_its_output(
    chains: TwoChains,
) -> None:
    """The gateway signs the codehash and input it relayed, and the Relay checks them against
    the job its user opened: other code's output, run honestly by the executors for the job
    the gateway opened, is refused on the request chain, and the user can still cancel."""
    await chains.gateway.aclose()  # this test hands the job to a gateway it builds
    code = chains.executors.code(chains.executors.users[0])
    honest = await asyncio.to_thread(code.deploy_code, HELLO)
    evil = await asyncio.to_thread(
        code.deploy_code, b"export default { fetch() { return new Response('pwned'); } };"
    )
    # The request chain's node of the gateway's host makes it relay other code for a user's job.
    node = CodehashForgingNode(
        chains.request,
        event="JobRelayed(uint256,address,bytes32,bytes,uint256,uint256,address,uint256)",
        codehash=bytes.fromhex(evil[2:]),
    )
    gateway = RelayGateway(
        chains.gateway.key,
        ServerlessRelayClient(Web3(node), chains.relay.address),
        chains.gateway.jobs,
    )
    user = chains.request.accounts[1].local_account
    w3a = chains.request.web3()
    job = await asyncio.to_thread(
        ServerlessRelayClient(w3a, chains.relay.address, account=user).relay_job,
        honest,
        b"x",
        4000,
    )
    seen = await asyncio.to_thread(gateway.relay.relayed, job.block_number, job.block_number)
    assert seen[0].codehash == bytes.fromhex(evil[2:])  # what the host made it believe
    await gateway.handle(seen[0])
    # The executors ran the evil code for the job the gateway opened, and were paid for it...
    executed = await asyncio.to_thread(chains.executors.jobs().responses, 0)
    assert b"pwned" in {r.output for r in executed}
    # ...but the gateway's answer with it was refused for the user's job.
    assert (gateway.relayed, gateway.answered) == (1, 0)
    assert await asyncio.to_thread(chains.relay.responses, job.block_number) == []
    before = chains.token.balance(user.address)
    chains.request.increase_time(RELAY_PARAMS.overall_timeout_s + 1)
    chains.relay.cancel(job.job_id)
    assert chains.token.balance(user.address) == before + job.deposit
