"""Hostile function authors, web2 callers and jobs against an executor: each attack replayed.

A function author who can make honest executors submit nothing collects their slashed stakes
(the Jobs contract gives them to the job's user), so every way a function has of breaking its
own answer must end in a verdict the executors sign, never in "reef's failure". A web2 caller is
unbilled, so it must not take the room that chain jobs (billed, slashed when unanswered) need,
and a request the function cannot be handed must be a clear 400, not a dropped call.

The chain is the devnet in process, the executor an :class:`ExecutorNode` on a real workerd
runtime, its gateway served on loopback by reef's serving floor and called with httpx.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from web3 import Web3
from web3.types import RPCEndpoint, RPCResponse

from reef._serve import serve
from reef.chain.devnet import DevnetProvider
from reef.crypto import Secp256k1PrivateKey
from reef.errors import ChainError
from reef.serverless import (
    ErrorCode,
    ExecutorNode,
    FunctionRuntime,
    Limits,
    ServerlessCodeClient,
    fund_gas,
    oyster_response_digest,
)
from serverless.chain_support import (
    PARAMS,
    CodehashForgingNode,
    ServerlessChain,
    gateway_signer,
)

pytestmark = pytest.mark.node

HELLO = b"export default { async fetch(r) { return new Response('hello, ' + await r.text()); } };"
# The body stream throws after its first chunk: workerd has sent the head and drops the
# connection, while the process itself is fine.
STREAM_THROWS = b"""export default { async fetch() {
  const body = new ReadableStream({ start(c) {
    c.enqueue(new TextEncoder().encode("part")); c.error(new Error("broken on purpose"));
  } });
  return new Response(body);
} };"""
# One response header of 100 kB: more head than reef reads.
HUGE_HEADER = b"""export default { async fetch() {
  return new Response("x", { headers: { "x-big": "a".repeat(100000) } });
} };"""
# Sleeps (without burning CPU) until the gateway's 5 s deadline ends it.
SLEEPS = b"""export default { async fetch() {
  await new Promise((resolve) => setTimeout(resolve, 60000)); return new Response("late");
} };"""
ECHO = b"""export default { async fetch(r) {
  const u = new URL(r.url);
  return new Response(u.pathname + u.search + " " + r.headers.get("x-odd"));
} };"""

CAPACITY = 2  # the jobs this executor registers for
MAX_RUNNING = 4  # calls its runtime runs at once
# A deployment whose deadlines may exceed the runtime's own 300 s ceiling.
PARAMS_LONG = dataclasses.replace(PARAMS, max_deadline_ms=600_000)


@pytest.fixture
async def runtime(workerd: Path) -> AsyncIterator[FunctionRuntime]:
    async with FunctionRuntime(workerd, max_idle=2, max_running=MAX_RUNNING) as rt:
        yield rt


@dataclass
class Executor:
    chain: ServerlessChain
    node: ExecutorNode
    gateway: str

    async def deploy(self, source: bytes) -> str:
        user = self.chain.users[0]
        return await asyncio.to_thread(self.chain.code(user).deploy_code, source)


@pytest.fixture
async def executor(runtime: FunctionRuntime, tmp_path: Path) -> AsyncIterator[Executor]:
    """One executor registered on a fresh deployment (two more keys fill the job's selection),
    configured without its chain watcher (the tests drive its jobs), its gateway on loopback."""
    chain = ServerlessChain.create(PARAMS_LONG)
    key = Secp256k1PrivateKey.generate()
    chain.register(chain.operators[0], key=key, capacity=CAPACITY)
    for operator in chain.operators[1 : PARAMS.num_select]:
        chain.register(operator)
    fund_gas(chain.w3, chain.deployer, key.public_key.checksum_address, 10**18)
    node = ExecutorNode(key, runtime, tmp_path / "code", job_capacity=CAPACITY)
    await chain.configure(node)
    server = await serve(node.gateway_app(), host="127.0.0.1", port=0, what="executor gateway")
    try:
        yield Executor(chain, node, server.url)
    finally:
        await server.aclose()
        await node.aclose()


# -- a function breaking its own answer --------------------------------------------------------


async def test_a_response_stream_that_throws_is_the_functions_verdict(
    runtime: FunctionRuntime,
) -> None:
    result = await runtime.run(STREAM_THROWS, b"", limits=Limits(timeout_ms=3000))
    # As a function that throws: it answered, with a 500 and (its answer broken) no body.
    assert result.error_code is ErrorCode.OK
    assert result.status == 500
    assert result.output == b""
    assert "broken on purpose" in result.logs
    assert (await runtime.run(HELLO, b"next")).output == b"hello, next"


async def test_response_headers_over_the_cap_are_an_output_too_large(
    runtime: FunctionRuntime,
) -> None:
    result = await runtime.run(HUGE_HEADER, b"", limits=Limits(timeout_ms=3000))
    assert result.error_code is ErrorCode.OUTPUT_TOO_LARGE
    assert result.output == b""


async def test_executors_sign_a_verdict_on_a_function_that_breaks_its_answer(
    executor: Executor,
) -> None:
    """The attack: the author of a function whose answer breaks opens a job on it; executors
    that submit nothing are slashed to the author's profit. They must answer it instead."""
    chain, service = executor.chain, executor.node.service
    assert service is not None
    jobs = chain.jobs(chain.users[0])
    for source in (STREAM_THROWS, HUGE_HEADER):
        codehash = await executor.deploy(source)
        request, _ = await asyncio.to_thread(jobs.create_job, codehash, b"", 3000)
        assert executor.node.address in request.selected_executors
        signed = await service.execute(request)
        assert signed is not None, "the executor submitted nothing: it would be slashed"
        responses = chain.jobs().responses(request.block_number, job_id=request.job_id)
        assert [r.executor for r in responses] == [executor.node.address]
        expected = ErrorCode.OK if source is STREAM_THROWS else ErrorCode.OUTPUT_TOO_LARGE
        assert responses[0].error_code == expected
        assert responses[0].output == b""


async def test_a_deadline_past_the_runtimes_ceiling_is_run_to_that_ceiling(
    executor: Executor,
) -> None:
    """A deployment may allow deadlines over 300 s; the executor runs such a job (its own
    ceiling bounds the call) instead of failing on it and being slashed."""
    chain, service = executor.chain, executor.node.service
    assert service is not None
    codehash = await executor.deploy(HELLO)
    jobs = chain.jobs(chain.users[0])
    request, _ = await asyncio.to_thread(jobs.create_job, codehash, b"long", 400_000)
    result = await service.run(request)
    assert result.error_code is ErrorCode.OK
    assert result.output == b"hello, long"


# -- web2 callers ------------------------------------------------------------------------------


async def test_web2_callers_cannot_take_the_room_chain_jobs_need(executor: Executor) -> None:
    """Unbilled web2 calls that sleep to their 5 s deadline fill every free slot; a chain job
    (billed, and slashed when unanswered) must still run, and the extra web2 calls get 429."""
    chain, service = executor.chain, executor.node.service
    assert service is not None
    sleeper = await executor.deploy(SLEEPS)
    hello = await executor.deploy(HELLO)
    request, _ = await asyncio.to_thread(chain.jobs(chain.users[0]).create_job, hello, b"job", 3000)
    async with httpx.AsyncClient(base_url=executor.gateway, timeout=30) as client:
        flood = [
            asyncio.create_task(client.post(f"/fn/{sleeper}", content=b""))
            for _ in range(MAX_RUNNING + 2)
        ]
        await asyncio.sleep(1.0)  # the flood is running (or refused)
        result = await service.run(request)
        answers = await asyncio.gather(*flood)
        assert result.error_code is ErrorCode.OK
        assert result.output == b"hello, job"
        statuses = sorted(a.status_code for a in answers)
        assert statuses.count(408) == MAX_RUNNING - CAPACITY
        refused = [a for a in answers if a.status_code == 429]
        assert len(refused) == len(answers) - (MAX_RUNNING - CAPACITY)
        assert "busy" in refused[0].json()["error"]
        # Once the flood is over, web2 calls run again.
        again = await client.post(f"/fn/{hello}", content=b"web2")
        assert again.status_code == 200
        assert again.content == b"hello, web2"


async def test_a_path_and_header_bytes_are_forwarded_as_the_caller_sent_them(
    executor: Executor,
) -> None:
    """An escaped space or slash in the path and a non-ASCII header byte: the function gets
    them as sent (reef decoded them and could not forward them: a dropped call, then a 500)."""
    echo = await executor.deploy(ECHO)
    async with httpx.AsyncClient(base_url=executor.gateway, timeout=30) as client:
        response = await client.get(
            f"/fn/{echo}/a%20b%2Fc?q=%20x", headers={b"x-odd": "caf\xe9".encode("latin-1")}
        )
    assert response.status_code == 200, response.text
    # workerd reads header values as UTF-8: the lone latin-1 byte arrives as U+FFFD.
    assert response.content == "/a%20b%2Fc?q=%20x caf\ufffd".encode()
    assert gateway_signer(response)[1] == executor.node.address


async def test_spellings_of_one_codehash_share_one_warm_runtime(
    executor: Executor, runtime: FunctionRuntime
) -> None:
    """Each spelling of a codehash (case, 0x or not) was its own warm-pool key: a caller could
    cold-start a process per spelling and push other functions' warm processes out."""
    hello = await executor.deploy(HELLO)
    spellings = [hello, hello.upper().replace("0X", "0x"), hello[2:], hello[2:].upper()]
    async with httpx.AsyncClient(base_url=executor.gateway, timeout=30) as client:
        for spelling in spellings:
            response = await client.post(f"/fn/{spelling}", content=b"x")
            assert response.status_code == 200, response.text
        malformed = await client.post("/fn/0x1234", content=b"x")
    assert runtime.stats.started == 1
    assert runtime.stats.reused == len(spellings) - 1
    assert malformed.status_code == 400
    assert "codehash" in malformed.json()["error"]


PAGE = b"""export default { async fetch() {
  return new Response("<script>fetch('/fn/' + 'other').then(r => r.text())</script>",
    { headers: { "content-type": "text/html" } });
} };"""


async def test_a_page_served_by_path_gets_no_origin_of_its_own(executor: Executor) -> None:
    """On /fn/<codehash> every function shares the gateway's origin: one function's page would
    read another's answers and cookies in its viewer's browser. Path-form answers are sandboxed
    (an opaque origin, scripts allowed); on its own host a function keeps its origin."""
    page = await executor.deploy(PAGE)
    label = base64.b32encode(bytes.fromhex(page[2:])).decode().rstrip("=").lower()
    async with httpx.AsyncClient(base_url=executor.gateway, timeout=30) as client:
        by_path = await client.get(f"/fn/{page}")
        by_host = await client.get("/", headers={"host": f"{label}.localhost"})
    assert by_path.status_code == by_host.status_code == 200
    policy = by_path.headers["content-security-policy"]
    assert "sandbox" in policy
    assert "allow-scripts" in policy
    assert "allow-same-origin" not in policy
    assert by_path.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in by_host.headers
    assert gateway_signer(by_path)[1] == executor.node.address


COOKIES = b"""export default { async fetch(r) {
  return new Response("saw " + r.headers.get("cookie"), { headers: { "set-cookie": "s=1" } });
} };"""


async def test_functions_on_the_shared_origin_neither_set_nor_see_cookies(
    executor: Executor,
) -> None:
    """A cookie one path-form function sets (default path /fn) goes with its viewer's every
    request to every other function there: function B would read function A's sessions, or
    plant its own in A's. Cookies stay with the host form, a function's own origin."""
    fn = await executor.deploy(COOKIES)
    label = base64.b32encode(bytes.fromhex(fn[2:])).decode().rstrip("=").lower()
    async with httpx.AsyncClient(base_url=executor.gateway, timeout=30) as client:
        by_path = await client.get(f"/fn/{fn}", headers={"cookie": "other=secret"})
        by_host = await client.get("/", headers={"host": f"{label}.localhost", "cookie": "mine=1"})
    assert by_path.content == b"saw null"
    assert "set-cookie" not in by_path.headers
    assert by_host.content == b"saw mine=1"
    assert by_host.headers["set-cookie"] == "s=1"


async def test_a_signed_answer_cannot_be_read_as_another_request_and_answer(
    executor: Executor,
) -> None:
    """Oyster's digest joins its fields with markers and no lengths: a request body holding
    ``|response||body|`` makes the same digest read as another request answered with what the
    caller chose (a contract that ABI-decodes the answer ignores the tail). The gateway refuses
    to sign what can be read two ways."""
    sep = b"|response||body|"
    digest = functools.partial(
        oyster_response_digest, timestamp=1, method="POST", path_and_query="/fn/x", host="h"
    )
    forged_answer = b'{"price": 1}'
    assert digest(request_body=b"R" + sep + forged_answer, response_body=b"hello") == digest(
        request_body=b"R", response_body=forged_answer + sep + b"hello"
    )
    assert digest(request_body=b"x|response||body", response_body=b"hello") == digest(
        request_body=b"x", response_body=b"response||body|hello"
    )
    hello = await executor.deploy(HELLO)
    says = await executor.deploy(
        b"export default { fetch() { return new Response('a|response||body|b'); } };"
    )
    async with httpx.AsyncClient(base_url=executor.gateway, timeout=30) as client:
        body = await client.post(f"/fn/{hello}", content=b"R" + sep + forged_answer)
        # Ends in part of a marker that the next one completes: x, then "|response||body|".
        spans = await client.post(f"/fn/{hello}", content=b"x|response||body")
        path = await client.post(f"/fn/{hello}/a|host|b", content=b"x")
        answer = await client.post(f"/fn/{says}", content=b"x")
        fine = await client.post(f"/fn/{hello}/p?q=a|b", content=b"a|b")
        # A marker's name between two markers reads one way: "|body|host|response|..."
        named = await client.post(f"/fn/{hello}", content=b"host")
    for refused in (body, spans, path):
        assert refused.status_code == 400, refused.text
        assert "x-oyster-signature" not in refused.headers
        assert "|" in refused.json()["error"]
    assert answer.status_code == 502, answer.text
    assert "x-oyster-signature" not in answer.headers
    assert "not signed" in answer.json()["error"]
    assert fine.status_code == named.status_code == 200
    assert gateway_signer(fine)[1] == executor.node.address
    assert fine.content == b"hello, a|b"


# -- the chain's node (the enclave's host runs it) ---------------------------------------------


class SwappingProvider(DevnetProvider):
    """A node that answers every deployment transaction with ``calldata`` as its input: the
    host of an executor enclave making it run other code under a function's codehash."""

    calldata: bytes = b""

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        answer = super().make_request(method, params)
        result = answer.get("result")
        if method == "eth_getTransactionByHash" and isinstance(result, dict):
            result["input"] = "0x" + self.calldata.hex()
        return answer


async def test_code_a_node_swaps_under_a_codehash_is_not_run_or_signed(
    executor: Executor, runtime: FunctionRuntime, tmp_path: Path
) -> None:
    """The enclave's web2 signature says "this code, by its hash, answered this": a host whose
    node answers other code for the hash must not get that signature over its own code."""
    chain = executor.chain
    honest = await executor.deploy(HELLO)
    evil = await executor.deploy(b"export default { fetch() { return new Response('pwned'); } };")
    provider = SwappingProvider(chain.devnet)
    provider.calldata = bytes(chain.w3.eth.get_transaction(evil)["input"])
    w3 = Web3(provider)
    code = ServerlessCodeClient(w3, chain.code_address)
    with pytest.raises(ChainError, match="does not hash to"):
        code.fetch_code(honest)
    assert code.fetch_code(evil) is not None  # its own calldata does hash to it

    key = Secp256k1PrivateKey.generate()
    node = ExecutorNode(key, runtime, tmp_path / "swapped", job_capacity=CAPACITY)
    await chain.configure(node, w3=w3)  # the gateway alone, reading through the swapping node
    server = await serve(node.gateway_app(), host="127.0.0.1", port=0, what="executor gateway")
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            response = await client.post(f"/fn/{honest}", content=b"web2")
    finally:
        await server.aclose()
    assert response.status_code == 502, response.text
    assert "x-oyster-signature" not in response.headers
    assert "does not hash to" in response.json()["error"]


async def test_a_node_forging_a_jobs_codehash_cannot_get_other_code_accepted(
    executor: Executor, runtime: FunctionRuntime, tmp_path: Path
) -> None:
    """The enclave's output signature is what the Jobs contract believes, and it signs the
    codehash and input it ran: a host whose node forges the job's codehash has its enclave run
    the host's code, but that output is refused, not accepted for another user's job."""
    chain = executor.chain
    honest = await executor.deploy(HELLO)
    evil = await executor.deploy(b"export default { fetch() { return new Response('pwned'); } };")
    # The host of an executor enclave makes it run its own code for another user's job.
    provider = CodehashForgingNode(
        chain.devnet,
        event="JobCreated(uint256,uint8,address,bytes32,bytes,uint256,uint256,address[])",
        codehash=bytes.fromhex(evil[2:]),
    )
    service = await chain.service_through(executor.node.key, runtime, tmp_path / "forged", provider)
    request, _ = await asyncio.to_thread(
        chain.jobs(chain.users[1]).create_job, honest, b"user", 3000
    )
    seen = await asyncio.to_thread(
        service.jobs.requests, request.block_number, request.block_number
    )
    assert seen[0].codehash == bytes.fromhex(evil[2:])  # what the host made it believe
    submitted = await service.execute(seen[0])
    responses = chain.jobs().responses(request.block_number, job_id=request.job_id)
    assert all(r.output != b"pwned" for r in responses)
    assert submitted is None  # the contract refused it (the enclave did run the evil code)
    assert service.stats.failures == 1
    assert service.stats.outputs_submitted == 0
