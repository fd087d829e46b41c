"""The function runtime's cost: warm-call overhead over bare workerd, and cold start.

In the same run, on the same function (a hello that echoes its input):

- bare workerd: one workerd process serving the function with reef's own config, on a Unix
  socket, and the cheapest client there is (pre-built request bytes over a fresh connection, read
  to EOF): what any runtime built on workerd pays at least;
- reef warm: :meth:`FunctionRuntime.run` on an idle process (limits enforced: the deadline timer,
  the resident-memory watch, the output cap, h11 parsing);
- overhead: reef warm minus bare, at p50 and p99;
- cold start: a call whose code has no idle process (a new workerd is started, loads the code,
  answers), through reef, against bare workerd spawn-to-first-answer.

Measurements alternate in rounds so load from other processes affects all alike. The aim for warm
overhead is ≤ 1 ms at p50. Prints, does not assert.

Then on chain (the devnet in process, the Jobs contract, three executors polling it every 50 ms,
each with its own runtime):

- request -> output: from sending ``createJob`` to the first ``JobResponded`` seen by the caller
  (one call at a time; aim ≤ 1 s);
- calls per second: jobs opened back to back by three users, until all are answered by all
  three executors (each job is three runs, three signed outputs and four transactions).

And on ``reef up`` itself (``--up devnet`` / ``--up anvil``): the serverless extension's three
executor enclaves, the caller over JSON-RPC as ``reef fn call`` is, the same two rows.

Run: ``.venv/bin/python bench/serverless.py [--calls N] [--cold N] [--chain-calls N]
[--up devnet|anvil ...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import tempfile
import time
from pathlib import Path

from reef.serverless import FunctionRuntime, Limits, ensure_workerd
from reef.serverless._config import MODULE_NAME, render_config

HELLO = b"""export default {
  async fetch(request) { return new Response("hello " + await request.text()); },
};"""
BODY = b"bench"
REQUEST = (
    b"POST / HTTP/1.1\r\nHost: function\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
    % (len(BODY), BODY)
)
ROUNDS = 5


def share(count: int, round_index: int) -> int:
    """This round's part of ``count`` samples spread over ``ROUNDS`` rounds (all of them taken:
    ``--cold 3`` is three cold starts, not ``3 // ROUNDS`` = none)."""
    return count // ROUNDS + (1 if round_index < count % ROUNDS else 0)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Bare:
    """workerd serving the function, started and spoken to as plainly as possible."""

    def __init__(self, workerd: Path, directory: Path) -> None:
        self.workerd = workerd
        self.directory = directory
        self.socket_path = str(directory / "s")
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        (self.directory / MODULE_NAME).write_bytes(HELLO)
        (self.directory / "config.capnp").write_text(render_config(heap_mib=256))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        listener.listen(128)
        self.proc = await asyncio.create_subprocess_exec(
            str(self.workerd),
            "serve",
            str(self.directory / "config.capnp"),
            f"--socket-fd=http={listener.fileno()}",
            pass_fds=(listener.fileno(),),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        listener.close()

    async def request(self) -> bytes:
        reader, writer = await asyncio.open_unix_connection(self.socket_path)
        writer.write(REQUEST)
        data = await reader.read()
        writer.close()
        return data

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            await self.proc.wait()
        os.unlink(self.socket_path)


async def timed(coro: object) -> float:
    start = time.perf_counter()
    await coro  # type: ignore[misc]
    return (time.perf_counter() - start) * 1000


async def main(calls: int, cold: int) -> None:
    workerd = await asyncio.to_thread(ensure_workerd)
    with tempfile.TemporaryDirectory(prefix="reef-bench-") as tmp:
        bare = Bare(workerd, Path(tmp))
        await bare.start()
        assert (await bare.request()).endswith(b"hello bench")
        bare_ms: list[float] = []
        reef_ms: list[float] = []
        cold_reef: list[float] = []
        cold_bare: list[float] = []
        # cold starts on a runtime of their own, so their idle processes never evict the warm one
        async with (
            FunctionRuntime(workerd, limits=Limits(timeout_ms=5000)) as runtime,
            FunctionRuntime(workerd, max_idle=0) as cold_runtime,
        ):
            result = await runtime.run(HELLO, BODY)  # warm the reef process
            assert result.output == b"hello bench"
            for round_index in range(ROUNDS):
                for _ in range(share(calls, round_index)):
                    bare_ms.append(await timed(bare.request()))
                    reef_ms.append(await timed(runtime.run(HELLO, BODY)))
                for n in range(share(cold, round_index)):
                    # new code (a unique comment) has no idle process: a cold start each time
                    source = HELLO + f"\n// {time.time_ns()} {n}".encode()
                    start = time.perf_counter()
                    answer = await cold_runtime.run(source, BODY)
                    cold_reef.append((time.perf_counter() - start) * 1000)
                    assert answer.cold
                    with tempfile.TemporaryDirectory(prefix="c", dir=tmp) as spawn_dir:
                        fresh = Bare(workerd, Path(spawn_dir))
                        start = time.perf_counter()
                        await fresh.start()
                        await fresh.request()
                        cold_bare.append((time.perf_counter() - start) * 1000)
                        await fresh.stop()
            stats = runtime.stats
        await bare.stop()

    def row(name: str, samples: list[float]) -> None:
        if not samples:
            print(f"{name:<34} not measured (n=0)")
            return
        print(
            f"{name:<34} p50 {percentile(samples, 0.5):7.3f} ms   "
            f"p99 {percentile(samples, 0.99):7.3f} ms   (n={len(samples)})"
        )

    print(f"workerd {workerd}")
    row("warm: bare workerd", bare_ms)
    row("warm: reef FunctionRuntime.run", reef_ms)
    if reef_ms:
        print(
            f"{'warm overhead (reef - bare)':<34} p50 "
            f"{percentile(reef_ms, 0.5) - percentile(bare_ms, 0.5):7.3f} ms   p99 "
            f"{percentile(reef_ms, 0.99) - percentile(bare_ms, 0.99):7.3f} ms"
        )
    row("cold: bare workerd spawn+answer", cold_bare)
    row("cold: reef run (new process)", cold_reef)
    print(f"runtime stats: {stats}")


async def chain_rows(calls: int) -> None:
    """Request -> output latency and calls per second through the Jobs contract."""
    from reef.attestation import sign_statement
    from reef.chain import Devnet, TokenClient
    from reef.crypto import Secp256k1PrivateKey
    from reef.serverless import (
        ExecutorNode,
        ExecutorSettings,
        JobsParams,
        ServerlessCodeClient,
        ServerlessJobsClient,
        fund_gas,
        sign_registration,
    )

    workerd = await asyncio.to_thread(ensure_workerd)
    devnet = Devnet()
    w3 = devnet.web3()
    accounts = [a.local_account for a in devnet.accounts]
    admin, users, operators = accounts[0], accounts[1:4], accounts[4:7]
    token = TokenClient.deploy(w3, admin)
    verifier = Secp256k1PrivateKey.generate()
    params = JobsParams(execution_buffer_s=600, max_deadline_ms=60_000)
    jobs = ServerlessJobsClient.deploy(
        w3,
        admin,
        token=token.address,
        verifier=verifier.public_key.checksum_address,
        params=params,
    )
    code = ServerlessCodeClient.deploy(w3, admin)
    image = bytes(32)
    jobs.whitelist_image(image)
    for account in (*users, *operators):
        token.mint(account.address, 10**15)
        TokenClient(w3, token.address, account=account).approve(jobs.address, 2**256 - 1)
    codehash = ServerlessCodeClient(w3, code.address, account=users[0]).deploy_code(HELLO)
    nodes: list[ExecutorNode] = []
    runtimes: list[FunctionRuntime] = []
    with tempfile.TemporaryDirectory(prefix="reef-bench-chain-") as tmp:
        for i, operator in enumerate(operators):
            key = Secp256k1PrivateKey.generate()
            owned = ServerlessJobsClient(w3, jobs.address, account=operator)
            now = int(w3.eth.get_block("latest")["timestamp"])
            statement = sign_statement(
                verifier,
                image_id=image,
                timestamp_ms=now * 1000,
                public_key=key.public_key.raw,
                user_data=b"",
            )
            signature = sign_registration(
                key,
                owned.domain(),
                owner=operator.address,
                job_capacity=64,
                env=1,
                sign_timestamp=now,
            )
            owned.register_executor(
                statement,
                job_capacity=64,
                env=1,
                sign_timestamp=now,
                register_signature=signature,
                stake=params.min_stake,
            )
            fund_gas(w3, admin, key.public_key.checksum_address, 10**20)
            runtime = FunctionRuntime(workerd, max_idle=4, max_running=64)
            runtimes.append(runtime)
            node = ExecutorNode(key, runtime, Path(tmp) / f"code{i}", job_capacity=64)
            await node.configure(
                ExecutorSettings(
                    rpc_url="in-process", jobs_contract=jobs.address, code_contract=code.address
                ),
                owner=operator.address,
                w3=w3,
            )
            nodes.append(node)
        try:
            callers = [ServerlessJobsClient(w3, jobs.address, account=u) for u in users]

            async def first_output(job_id: int, from_block: int) -> None:
                # The caller polls the chain's logs, as `reef fn call` does.
                while True:
                    if await asyncio.to_thread(jobs.responses, from_block, job_id=job_id):
                        return
                    await asyncio.sleep(0.01)

            latency: list[float] = []
            for n in range(calls):
                start = time.perf_counter()
                request, _ = await asyncio.to_thread(callers[0].create_job, codehash, BODY, 5000)
                await first_output(request.job_id, request.block_number)
                latency.append((time.perf_counter() - start) * 1000)
                del n
            # Throughput: every caller opens jobs back to back; done when every job has its
            # three outputs (the job is closed).
            start = time.perf_counter()

            async def burst(caller: ServerlessJobsClient) -> list[int]:
                ids = []
                for _ in range(calls // len(callers) + 1):
                    request, _ = await asyncio.to_thread(caller.create_job, codehash, BODY, 5000)
                    ids.append(request.job_id)
                return ids

            opened = [i for ids in await asyncio.gather(*(burst(c) for c in callers)) for i in ids]
            for job_id in opened:
                while True:
                    job = await asyncio.to_thread(jobs.job, job_id)
                    if job is not None and job.closed:
                        break
                    await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - start
        finally:
            for node in nodes:
                await node.aclose()
            for runtime in runtimes:
                await runtime.aclose()
    print(
        f"{'chain: request -> first output':<34} p50 {percentile(latency, 0.5):7.1f} ms   "
        f"p99 {percentile(latency, 0.99):7.1f} ms   (n={len(latency)}, devnet in process)"
    )
    print(
        f"{'chain: calls/s, 3 executors':<34} {len(opened) / elapsed:7.2f} jobs/s "
        f"({len(opened)} jobs, each 3 outputs, in {elapsed:.1f} s)"
    )


def up_rows(chain: str, calls: int) -> None:
    """The two chain rows against ``reef up`` (enclave executors, caller over JSON-RPC)."""
    import concurrent.futures
    import threading

    from web3 import Web3

    from reef.chain import dev_accounts
    from reef.errors import ContractRevertError
    from reef.home import ReefHome
    from reef.node import LocalNetwork, UpSettings
    from reef.node._serverless import ServerlessExtension
    from reef.serverless import ServerlessCodeClient, ServerlessJobsClient

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def on_loop(coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(600)  # type: ignore[arg-type]

    with tempfile.TemporaryDirectory(prefix="reef-bench-up-") as tmp:
        settings = UpSettings(
            rpc_port=0,
            cp_port=0,
            store_port=0,
            verifier_port=0,
            kms_scallop_port=0,
            kms_public_port=0,
            kms=False,
            chain=chain,  # type: ignore[arg-type]
        )
        network = LocalNetwork(ReefHome(Path(tmp)), settings, extensions=[ServerlessExtension()])
        try:
            info: object = on_loop(network.start())
            service = info.services["serverless"]  # type: ignore[attr-defined]
            w3 = Web3(Web3.HTTPProvider(info.rpc_url))  # type: ignore[attr-defined]
            users = [a.local_account for a in dev_accounts(4)[1:4]]
            callers = []
            for user in users:
                client = ServerlessJobsClient(w3, service["jobs_contract"], account=user)
                client.token().approve(client.address, 2**256 - 1)
                callers.append(client)
            codehash = ServerlessCodeClient(
                w3, service["code_contract"], account=users[0]
            ).deploy_code(HELLO)

            def call(client: ServerlessJobsClient) -> tuple[int, float]:
                start = time.perf_counter()
                while True:
                    try:
                        request, _ = client.create_job(codehash, BODY, 5000)
                        break
                    except ContractRevertError:  # every executor at capacity: retry
                        time.sleep(0.05)
                while not client.responses(request.block_number, job_id=request.job_id):
                    time.sleep(0.01)
                return request.job_id, (time.perf_counter() - start) * 1000

            latency = [call(callers[0])[1] for _ in range(calls)]
            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(len(callers)) as pool:
                ids = [
                    job_id
                    for job_id, _ in pool.map(
                        call, [callers[i % len(callers)] for i in range(calls)]
                    )
                ]
            for job_id in ids:
                while not callers[0].job(job_id).closed:  # type: ignore[union-attr]
                    time.sleep(0.02)
            elapsed = time.perf_counter() - start
        finally:
            on_loop(network.aclose())
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
    print(
        f"{'up ' + chain + ': request -> output':<34} p50 {percentile(latency, 0.5):7.1f} ms   "
        f"p99 {percentile(latency, 0.99):7.1f} ms   (n={len(latency)}, enclave executors)"
    )
    print(
        f"{'up ' + chain + ': calls/s, 3 executors':<34} {len(ids) / elapsed:7.2f} jobs/s "
        f"({len(ids)} jobs, each 3 outputs, in {elapsed:.1f} s)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="warm calls of each kind")
    parser.add_argument("--cold", type=int, default=40, help="cold starts of each kind")
    parser.add_argument("--chain-calls", type=int, default=30, help="jobs through the chain")
    parser.add_argument(
        "--up",
        action="append",
        default=[],
        choices=["devnet", "anvil"],
        help="also measure on reef up with this chain (repeatable)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.cold))
    if args.chain_calls > 0:  # both chain sections time --chain-calls jobs
        asyncio.run(chain_rows(args.chain_calls))
        for chain in args.up:
            up_rows(chain, args.chain_calls)
