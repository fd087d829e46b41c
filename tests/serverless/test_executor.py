"""Executors in process on the devnet: a deployed function is called through the Jobs contract
and answered by the three selected executors with outputs whose signatures eth-account recovers;
the user's balance moves exactly as the billing model says; misbehaving functions get their codes;
silent executors are slashed; the web2 gateway answers with verifiable signature headers.

The executors here run beside the test (no enclave): the enclave wiring is tested by the
``reef up`` extension's test. The verifier's statement is signed by a test verifier key.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from web3 import Web3

from reef.crypto import Secp256k1PrivateKey, recover_digest
from reef.serverless import (
    ErrorCode,
    ExecutorNode,
    ExecutorSettings,
    FunctionRuntime,
    JobsParams,
    Limits,
    SignedOutput,
    fund_gas,
    payout_shares,
    reef_gateway_digest,
)
from serverless.chain_support import PARAMS, ServerlessChain, gateway_signer, output_signer

pytestmark = pytest.mark.slow

HELLO = b"export default { async fetch(r) { return new Response('hello, ' + await r.text()); } };"
LOOP = b"export default { async fetch() { while (true) {} } };"
ECHO = (
    b"export default { async fetch(r) { const u = new URL(r.url);"
    b" return new Response(r.method + ' ' + u.pathname + u.search + ' '"
    b" + r.headers.get('x-test') + ' ' + await r.text(),"
    b" { status: 201, headers: { 'x-fn': 'yes' } }); } };"
)
# The devnet mines a block per transaction, each at least a second after the last: a burst of
# transactions runs the chain's clock ahead of the wall clock, so outputs need a buffer of some
# seconds past the deadline. The slashing test uses a short one to keep its waits short.
PARAMS_FAST = JobsParams(
    fee_per_ms=2,
    min_stake=1_000_000,
    slash_bips=1000,
    execution_buffer_s=30,
    num_select=3,
    min_deadline_ms=100,
    max_deadline_ms=60_000,
)
PARAMS_SHORT_BUFFER = dataclasses.replace(PARAMS_FAST, execution_buffer_s=3)


class Network:
    def __init__(self, chain: ServerlessChain, nodes: list[ExecutorNode]) -> None:
        self.chain = chain
        self.nodes = nodes


@pytest.fixture
async def network(
    workerd: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Network]:
    params = getattr(request, "param", PARAMS_FAST)
    chain = ServerlessChain.create(params, real_time=True)
    w3 = chain.devnet.web3()
    nodes: list[ExecutorNode] = []
    runtimes: list[FunctionRuntime] = []
    # Each job selects all three executors, and one test opens seven jobs back to back: with
    # room for four, the later ones raced the earlier ones' answers (and lost on a fast chain).
    capacity = 8
    try:
        for i, operator in enumerate(chain.operators[:3]):
            key = Secp256k1PrivateKey.generate()
            chain.register(operator, key=key, stake=5_000_000, capacity=capacity)
            fund_gas(w3, chain.deployer, key.public_key.checksum_address, 10**18)
            runtime = FunctionRuntime(workerd, max_idle=4)
            runtimes.append(runtime)
            node = ExecutorNode(key, runtime, tmp_path / f"code{i}", job_capacity=capacity)
            await node.configure(
                ExecutorSettings(
                    rpc_url="in-process",
                    jobs_contract=chain.jobs_address,
                    code_contract=chain.code_address,
                    limits=Limits(memory_bytes=192 * 1024 * 1024),
                ),
                owner=operator.address,
                w3=w3,
            )
            nodes.append(node)
        chain.catch_up()
        yield Network(chain, nodes)
    finally:
        for node in nodes:
            await node.aclose()
        for runtime in runtimes:
            await runtime.aclose()


async def wait_closed(chain: ServerlessChain, job_id: int, within_s: float = 30) -> None:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        job = await asyncio.to_thread(chain.jobs().job, job_id)
        if job is not None and job.closed:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not close in {within_s} s")


def recover(chain: ServerlessChain, signed: SignedOutput) -> str:
    domain = chain.jobs().domain()
    return output_signer(
        "reef.serverless.Jobs",
        "SubmitOutput",
        chain_id=domain.chain_id,
        contract=domain.jobs_contract,
        message={
            "jobId": signed.job_id,
            "codehash": signed.codehash,
            "inputHash": signed.input_hash,
            "output": signed.output,
            "totalTime": signed.total_time,
            "errorCode": signed.error_code,
            "signTimestamp": signed.sign_timestamp,
        },
        signature=signed.signature,
    )


async def test_a_call_is_answered_signed_and_billed_as_the_model_says(network: Network) -> None:
    chain = network.chain
    user = chain.users[0]
    codehash = await asyncio.to_thread(chain.code(user).deploy_code, HELLO)
    before = chain.balance(user.address)
    owners_before = {o.address: chain.balance(o.address) for o in chain.operators[:3]}
    request, _ = await asyncio.to_thread(chain.jobs(user).create_job, codehash, b"reef", 5000)
    await wait_closed(chain, request.job_id)
    jobs = chain.jobs()
    responses = jobs.responses(request.block_number, job_id=request.job_id)
    assert [r.output for r in responses] == [b"hello, reef"] * 3
    assert [r.error_code for r in responses] == [0, 0, 0]
    registered = {e.enclave: e for e in jobs.executors()}
    for response in responses:
        signed = jobs.signed_output(response.tx_hash)
        # Signed over the code and input the user asked for.
        assert signed.codehash == request.codehash
        assert signed.input_hash == Web3.keccak(b"reef")
        assert recover(chain, signed) == response.executor
        assert response.executor in registered
    first = responses[0]
    cost = min(first.total_time, 5000) * PARAMS_FAST.fee_per_ms
    assert chain.balance(user.address) == before - cost
    shares = payout_shares(cost, 3)
    for response, share in zip(responses, shares, strict=True):
        owner = registered[response.executor].owner
        assert chain.balance(owner) - owners_before[owner] == share


async def test_misbehaving_functions_get_their_codes_beside_normal_calls(
    network: Network,
) -> None:
    chain = network.chain
    user = chain.jobs(chain.users[0])
    code = chain.code(chain.users[0])
    functions = {
        "loop": (LOOP, ErrorCode.TIMEOUT),
        "syntax": (b"export default { async fetch( { ", ErrorCode.SYNTAX_ERROR),
        "big": (
            b"export default { async fetch() { return new Response('x'.repeat(1 << 20)); } };",
            ErrorCode.OUTPUT_TOO_LARGE,
        ),
        "net": (
            b"export default { async fetch() { const r = await fetch('http://127.0.0.1:9/');"
            b" return new Response(String(r.status)); } };",
            ErrorCode.OK,  # fetch throws: the worker answers 500 (not the network's answer)
        ),
        "oom": (
            b"export default { async fetch() { const a = [];"
            b" while (true) a.push(new Array(1e6).fill(1.5)); } };",
            ErrorCode.MEMORY_LIMIT,
        ),
        "hello": (HELLO, ErrorCode.OK),
    }
    hashes = {
        name: await asyncio.to_thread(code.deploy_code, src) for name, (src, _) in functions.items()
    }
    missing = "0x" + "ab" * 32
    # The heap bomb gets room to reach its heap limit on a loaded machine (at 1.5 s it was
    # sometimes still growing when its deadline came: a timeout, not the memory limit).
    deadlines = {name: 10_000 if name == "oom" else 1500 for name in [*functions, "missing"]}
    requests = {}
    for name in functions:
        requests[name], _ = await asyncio.to_thread(
            user.create_job, hashes[name], b"x", deadlines[name]
        )
    requests["missing"], _ = await asyncio.to_thread(user.create_job, missing, b"x", 1500)
    for request in requests.values():
        await wait_closed(chain, request.job_id)
    jobs = chain.jobs()
    for name, request in requests.items():
        responses = jobs.responses(request.block_number, job_id=request.job_id)
        expected = ErrorCode.CODE_NOT_FOUND if name == "missing" else functions[name][1]
        assert {r.error_code for r in responses} == {int(expected)}, name
        assert all(r.total_time <= deadlines[name] for r in responses), name
        if name == "hello":
            assert responses[0].output == b"hello, x"
        if name == "net":
            assert responses[0].output != b"200"


@pytest.mark.parametrize("network", [PARAMS_SHORT_BUFFER], indirect=True)
async def test_silent_executors_are_slashed_and_nobody_answering_refunds_all(
    network: Network,
) -> None:
    chain = network.chain
    user = chain.users[0]
    codehash = await asyncio.to_thread(chain.code(user).deploy_code, HELLO)
    chain.catch_up()
    # Two executors go silent (their watchers stop): only one answers.
    silent = network.nodes[1:]
    for node in silent:
        assert node.service is not None
        await node.service.aclose()
    stakes_before = {e.enclave: e.stake for e in chain.jobs().executors()}
    before = chain.balance(user.address)
    request, _ = await asyncio.to_thread(chain.jobs(user).create_job, codehash, b"", 1000)
    await wait_closed(chain, request.job_id, within_s=40)
    records = {e.enclave: e for e in chain.jobs().executors()}
    silent_addresses = {n.address for n in silent}
    slash = 5_000_000 * PARAMS_SHORT_BUFFER.slash_bips // 10_000
    for enclave, record in records.items():
        expected = stakes_before[enclave] - (slash if enclave in silent_addresses else 0)
        assert record.stake == expected
    responses = chain.jobs().responses(request.block_number, job_id=request.job_id)
    assert [r.executor for r in responses] == [network.nodes[0].address]
    cost = min(responses[0].total_time, 1000) * PARAMS_SHORT_BUFFER.fee_per_ms
    assert chain.balance(user.address) == before - payout_shares(cost, 3)[0] + 2 * slash
    # Now nobody answers: the whole deposit comes back (plus the slashed stakes).
    assert network.nodes[0].service is not None
    await network.nodes[0].service.aclose()
    before = chain.balance(user.address)
    request, _ = await asyncio.to_thread(chain.jobs(user).create_job, codehash, b"", 500)
    chain.advance(1 + PARAMS_SHORT_BUFFER.execution_buffer_s + 1)
    await asyncio.to_thread(chain.jobs(chain.users[1]).slash_on_timeout, request.job_id)
    after = {e.enclave: e.stake for e in chain.jobs().executors()}
    slashed = sum(records[a].stake - after[a] for a in after)
    assert chain.balance(user.address) == before + slashed
    assert slashed > 0


async def test_the_gateway_answers_with_verifiable_signature_headers(network: Network) -> None:
    chain = network.chain
    node = network.nodes[0]
    codehash = await asyncio.to_thread(chain.code(chain.users[0]).deploy_code, HELLO)
    transport = httpx.ASGITransport(app=node.gateway_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.post(f"/fn/{codehash}", content=b"web2")
        label = base64.b32encode(bytes.fromhex(codehash[2:])).decode().rstrip("=").lower()
        by_host = await client.post("/", content=b"host", headers={"host": f"{label}.localhost"})
        looping = await client.post(f"/fn/{codehash[:-2]}00", content=b"")
    assert response.status_code == 200
    assert response.content == b"hello, web2"
    digest, signer = gateway_signer(response)
    assert signer == node.address
    domain = chain.jobs().domain()
    assert response.headers["x-reef-chain-id"] == str(domain.chain_id)
    reef_sig = bytes.fromhex(response.headers["x-reef-signature"])
    assert recover_digest(reef_gateway_digest(domain, digest), reef_sig).checksum_address == (
        node.address
    )
    assert by_host.status_code == 200
    assert by_host.content == b"hello, host"
    # The function gets the whole request (method, path and query, headers) and its whole
    # response (status, headers) comes back, signed over the same body.
    echo = await asyncio.to_thread(chain.code(chain.users[0]).deploy_code, ECHO)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        full = await client.put(f"/fn/{echo}/a/b?c=1", content=b"e", headers={"x-test": "t"})
    assert full.status_code == 201
    assert full.content == b"PUT /a/b?c=1 t e"
    assert full.headers["x-fn"] == "yes"
    assert gateway_signer(full)[1] == node.address
    assert looping.status_code == 400  # no code under that hash
    assert looping.headers["x-reef-error-code"] == str(int(ErrorCode.CODE_NOT_FOUND))
    assert PARAMS.num_select == 3
