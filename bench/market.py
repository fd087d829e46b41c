"""Market benchmarks (prints, asserts nothing).

1. Deployment latency: seconds from the `jobOpen` transaction to an attested, reachable enclave,
   on a real local network (devnet over JSON-RPC, control plane, dev TEE, KMS root), split into
   the transaction, the provider's launch, and verification (live attestation + the app's port).
2. Indexer catch-up: events per second while the indexer catches up over 10 000 and 50 000
   market events (checks + SQLite, a transaction per batch of 500-block ranges), next to raw
   `eth_getLogs` throughput over the same ranges and the same JSON-RPC endpoint, in the same run
   (interleaved rounds, medians), with and without the indexer's read-ahead thread. The devnet
   answers from a child process, as any node an indexer reads is another process.

3. Burst: 20 jobs opened back to back on the same local network; how long after the first
   `jobOpen` each job's enclave is reachable (the provider's `/ip` names it and its app's port
   answers): the first, the median and the last.

Run: `.venv/bin/python bench/market.py [--events N ...] [--deploys N] [--burst N] [--repeat N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from eth_account import Account
from web3 import Web3
from web3.types import RPCEndpoint

from reef.chain import (
    Devnet,
    Indexer,
    JobOpened,
    MarketClient,
    Web3BlockSource,
    deploy_contracts,
    load_artifact,
    market_decoder,
    serve_devnet_in_thread,
)
from reef.enclave import build_image
from reef.home import ReefHome
from reef.market import DEV_REGION, ControlPlaneClient, JobMetadata, settlement_amount, upload_image
from reef.node import DeployRequest, LocalNetwork, UpSettings, deploy, open_session

REPO = Path(__file__).resolve().parents[1]
RANGE = 500


def _say(text: str) -> None:
    print(text, flush=True)


def _local_network(home: ReefHome) -> LocalNetwork:
    """A ``reef up`` network on free ports (not yet started)."""
    settings = UpSettings(
        rpc_port=0,
        cp_port=0,
        store_port=0,
        verifier_port=0,
        kms_scallop_port=0,
        kms_public_port=0,
        rate_lock_s=5,
    )
    return LocalNetwork(home, settings)


# -- 1. deployment latency --------------------------------------------------------------------


async def bench_deploy(count: int) -> None:
    _say(f"== deploy latency: {count} x examples/hello on a local network (reef up)")
    with tempfile.TemporaryDirectory() as tmp:
        home = ReefHome(Path(tmp))
        network = _local_network(home)
        started = time.perf_counter()
        await network.start()
        _say(f"network up in {time.perf_counter() - started:.1f} s")
        try:
            session = await asyncio.to_thread(open_session, home)
            request = DeployRequest(image=REPO / "examples" / "hello", duration_s=3600)
            runs = []
            for _ in range(count):
                result = await asyncio.to_thread(deploy, session, request)
                runs.append(result.timings)
            for name in ("open", "launch", "verify", "open_to_verified"):
                values = [run[name] for run in runs]
                _say(
                    f"  {name:<17} median {statistics.median(values):6.2f} s   "
                    f"min {min(values):6.2f} s   max {max(values):6.2f} s"
                )
            _say(
                "  (open = approve + jobOpen mined; launch = provider indexes the event, "
                "fetches the image, starts the enclave; verify = live attestation + app port)"
            )
        finally:
            await network.aclose()


async def bench_burst(count: int) -> None:
    """``count`` jobs opened back to back; when each one's enclave is reachable (the provider's
    ``/ip`` names it and its app's port answers), counted from the first ``jobOpen``."""
    _say(f"== burst: {count} jobs of examples/hello opened at once on a local network (reef up)")
    with tempfile.TemporaryDirectory() as tmp:
        home = ReefHome(Path(tmp))
        network = _local_network(home)
        await network.start()
        try:
            session = await asyncio.to_thread(open_session, home)
            market = session.market()

            # Everything synchronous runs in a thread: the devnet serves from this event loop.
            def prepare() -> tuple[str, str, str, int, int]:
                provider = session.default_provider()
                assert provider is not None
                cp_url = market.provider(provider)
                assert cp_url is not None
                card = ControlPlaneClient(cp_url).spec().lookup(DEV_REGION, "dev.small")
                image = Path(tmp) / "hello.img"
                build_image(REPO / "examples" / "hello", image)
                _, url = upload_image(session.image_store(), image, signer=session.account)
                metadata = JobMetadata(
                    instance="dev.small",
                    region=DEV_REGION,
                    memory=card.memory,
                    vcpu=card.cpu,
                    url=url,
                    name="burst",
                    family="tuna",
                    debug=False,
                    init_params="",
                ).to_json()
                cost = settlement_amount(card.min_rate, 3600)
                market.token().approve(session.market_address, cost * count)
                return provider, cp_url, metadata, card.min_rate, cost

            provider, cp_url, metadata, rate, cost = await asyncio.to_thread(prepare)

            loop = asyncio.get_running_loop()
            opened: asyncio.Queue[tuple[str, float]] = asyncio.Queue()

            def open_all() -> None:
                """All jobOpen transactions signed first, then sent back to back; each job (with
                when it was mined) is handed to its poller at once."""
                account = session.account
                assert account is not None
                w3 = session.w3
                market_address = Web3.to_checksum_address(session.market_address)
                contract = w3.eth.contract(address=market_address, abi=load_artifact("Market").abi)
                data = contract.encode_abi("jobOpen", [metadata, provider, rate, cost])
                nonce = w3.eth.get_transaction_count(account.address)
                signed = [
                    account.sign_transaction(
                        {
                            "to": market_address,
                            "data": data,
                            "gas": 1_000_000,
                            "gasPrice": w3.eth.gas_price,
                            "nonce": nonce + i,
                            "chainId": w3.eth.chain_id,
                        }
                    ).raw_transaction
                    for i in range(count)
                ]
                decoder = market_decoder()
                for raw in signed:
                    tx = w3.eth.send_raw_transaction(raw)
                    # the devnet mines each transaction as it comes
                    receipt = w3.eth.wait_for_transaction_receipt(tx, poll_latency=0.01)
                    mined = time.monotonic()
                    events = [decoder.decode(log) for log in receipt["logs"]]
                    (job,) = [e.job for e in events if isinstance(e, JobOpened)]
                    loop.call_soon_threadsafe(opened.put_nowait, (job, mined))

            async with httpx.AsyncClient(timeout=5) as client:

                async def reachable(job: str, mined: float) -> tuple[float, float]:
                    app = ""
                    while time.monotonic() - began < 180:
                        try:
                            if not app:
                                answer = await client.get(f"{cp_url}/ip", params={"id": job})
                                if answer.status_code == 200:
                                    ports = answer.json().get("endpoints", {}).get("ports", {})
                                    app = next(iter(ports.values()), "")
                            if app and (await client.get(app + "/")).status_code == 200:
                                now = time.monotonic()
                                return now - began, now - mined
                        except httpx.TransportError:
                            pass
                        await asyncio.sleep(0.02)
                    return float("inf"), float("inf")

                began = time.monotonic()
                opener = asyncio.create_task(asyncio.to_thread(open_all))
                pollers = []
                last = began
                for _ in range(count):
                    job, last = await opened.get()
                    pollers.append(asyncio.create_task(reachable(job, last)))
                await opener
                opening = last - began
                results = await asyncio.gather(*pollers)
            times = sorted(first for first, _ in results)
            own = sorted(each for _, each in results)
            _say(
                f"  {count} jobOpen transactions sent back to back, all mined {opening:.2f} s later"
            )
            _say(
                f"  reachable after the first jobOpen: first {times[0]:.2f} s, "
                f"median {statistics.median(times):.2f} s, all {times[-1]:.2f} s"
            )
            _say(
                f"  reachable after its own jobOpen: min {own[0]:.2f} s, "
                f"median {statistics.median(own):.2f} s, max {own[-1]:.2f} s"
            )
            _say("  each, after the first jobOpen: " + " ".join(f"{t:.1f}" for t in times))
        finally:
            await network.aclose()  # stops every enclave it started


# -- 2. indexer catch-up ----------------------------------------------------------------------


def _fill(devnet: Devnet, events: int) -> tuple[str, int]:
    """Deploy, open a job and emit at least ``events`` market events (2 per jobWithdraw)."""
    w3 = devnet.web3()
    owner = devnet.accounts[0]
    deployment = deploy_contracts(w3, owner.address, rate_lock_s=5, fund=[owner.address])
    MarketClient(w3, deployment.market, account=devnet.accounts[9].address).add_provider("x")
    market = MarketClient(w3, deployment.market, account=owner.address)
    job = market.open_job("{}", devnet.accounts[9].address, 1, 10**12)
    contract = w3.eth.contract(
        address=Web3.to_checksum_address(deployment.market), abi=load_artifact("Market").abi
    )
    data = contract.encode_abi("jobWithdraw", [bytes.fromhex(job[2:]), 1])
    nonce = w3.eth.get_transaction_count(Web3.to_checksum_address(owner.address))
    txs = events // 2 + 1
    started = time.perf_counter()
    for i in range(txs):
        raw = Account.sign_transaction(
            {
                "to": deployment.market,
                "data": data,
                "gas": 150_000,
                "gasPrice": 10**9,
                "nonce": nonce + i,
                "chainId": devnet.chain_id,
            },
            owner.private_key,
        ).raw_transaction
        devnet.send_raw_transaction(bytes(raw))
        if (i + 1) % 1000 == 0:
            rate = (i + 1) / (time.perf_counter() - started)
            _say(f"  emitted {2 * (i + 1)} events ({rate:.0f} tx/s)")
    return deployment.market, deployment.block


class _CappedSource(Web3BlockSource):
    """The chain as it was at block ``cap``: the indexer catches up to there and stops."""

    def __init__(self, w3: Web3, cap: int) -> None:
        super().__init__(w3)
        self._cap = cap

    def head(self) -> int:
        return min(self._cap, super().head())


def _raw_read(
    w3: Web3, market: str, ranges: list[tuple[int, int]], connections: int = 1
) -> tuple[int, float]:
    """The ranges as plain JSON-RPC requests through web3.py's HTTP provider (the indexer's
    client), logs parsed from JSON and dropped: one request after the other, or ``connections``
    at once (a thread each, as the indexer's readers)."""

    def read(low: int, high: int) -> int:
        answer = w3.provider.make_request(
            RPCEndpoint("eth_getLogs"),
            [{"address": market, "fromBlock": hex(low), "toBlock": hex(high)}],
        )
        return len(answer["result"])

    began = time.perf_counter()
    if connections == 1:
        count = sum(read(low, high) for low, high in ranges)
    else:
        with ThreadPoolExecutor(connections) as pool:
            count = sum(pool.map(lambda r: read(*r), ranges))
    return count, time.perf_counter() - began


def _index(
    w3: Web3, market: str, start: int, cap: int, db: Path, fetch_ahead: int
) -> tuple[int, float]:
    indexer = Indexer(
        _CappedSource(w3, cap),
        f"sqlite:///{db}",
        contract=market,
        start_block=start,
        block_range=RANGE,
        fetch_ahead=fetch_ahead,  # readers: the default (2 for a JSON-RPC source)
    )
    began = time.perf_counter()
    stored = indexer.poll()
    elapsed = time.perf_counter() - began
    indexer.engine.dispose()
    return stored, elapsed


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _served_by_a_child(devnet: Devnet) -> Iterator[tuple[str, int]]:
    """The filled devnet's JSON-RPC URL and the pid of the forked child process serving it.

    An indexer reads a node that is another process (anvil, geth, ``reef chain``); served from a
    thread of this one, the node would take the indexer's lock (the GIL) for every answer, and
    the indexer's read-ahead could never overlap a fetch with storing the range before it.
    """
    gc.collect()
    gc.freeze()  # the child's heap is every block and state object: keep it out of GC scans
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            with serve_devnet_in_thread(devnet) as server:
                os.write(write_end, server.url.encode() + b"\n")
                signal.sigwait({signal.SIGTERM})
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        with os.fdopen(read_end) as urls:
            url = urls.readline().strip()
        if not url:
            raise SystemExit("the devnet's child process did not start")
        yield url, pid
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)


def _read_as(
    name: str,
    w3: Web3,
    market: str,
    ranges: list[tuple[int, int]],
    start: int,
    cap: int,
    db: Path,
) -> tuple[int, float]:
    """The events up to block ``cap`` read by reader ``name``, and the seconds it took."""
    if name == "raw":
        return _raw_read(w3, market, ranges)
    if name == "raw2":
        return _raw_read(w3, market, ranges, connections=2)
    if name == "web3":
        began = time.perf_counter()
        address = Web3.to_checksum_address(market)
        count = sum(
            len(w3.eth.get_logs({"address": address, "fromBlock": low, "toBlock": high}))
            for low, high in ranges
        )
        return count, time.perf_counter() - began
    return _index(w3, market, start, cap, db, 0 if name == "seq" else 4)


def bench_indexer(sizes: list[int], repeat: int) -> None:
    _say(
        f"== indexer catch-up over {', '.join(map(str, sizes))} market events "
        "(JSON-RPC over loopback HTTP to the devnet in a child process)"
    )
    devnet = Devnet()
    market, start = _fill(devnet, max(sizes))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # the child waits for it
    with _served_by_a_child(devnet) as (url, node), tempfile.TemporaryDirectory() as tmp:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        del devnet
        w3 = Web3(Web3.HTTPProvider(url))
        every = w3.provider.make_request(RPCEndpoint("eth_blockNumber"), [])["result"]
        head = int(every, 16)
        labels = {
            "raw": "raw eth_getLogs",
            "raw2": "raw, 2 connections",
            "web3": "web3 get_logs",
            "seq": "indexer, one thread",
            "idx": "indexer (2 readers)",
        }
        for size in sorted(sizes):
            # the block where the first `size` events end (two per block after the setup)
            cap = min(head, start + size // 2 + 3)
            ranges = [(low, min(cap, low + RANGE - 1)) for low in range(start, cap + 1, RANGE)]
            # per reader: (events, wall seconds, CPU seconds of this process and of the node)
            runs: dict[str, list[tuple[int, float, float]]] = {name: [] for name in labels}

            for round_ in range(repeat):
                # interleaved, so that load from elsewhere falls on every reader alike
                for name in labels:
                    db = Path(tmp) / f"{name}{size}-{round_}.db"
                    cpu_before = time.process_time() + _cpu_seconds(node)
                    count, seconds = _read_as(name, w3, market, ranges, start, cap, db)
                    cpu = time.process_time() + _cpu_seconds(node) - cpu_before
                    runs[name].append((count, seconds, cpu))
            medians = {
                name: (
                    values[0][0],
                    statistics.median(t for _, t, _ in values),
                    statistics.median(c for _, _, c in values),
                )
                for name, values in runs.items()
            }
            _say(f"  {size} events, {len(ranges)} ranges of {RANGE} blocks, median of {repeat}:")
            for name, (count, seconds, cpu) in medians.items():
                _say(
                    f"    {labels[name]:<22} {count:6d} events in {seconds:6.2f} s "
                    f"{count / seconds:9.0f}/s  {seconds / count * 1e6:6.1f} us/event  "
                    f"(CPU, this process + node: {cpu / count * 1e6:5.1f} us/event)"
                )
            raw_s = medians["raw"][1]
            _say(
                f"    indexer / raw          {raw_s / medians['idx'][1]:.2f} of the raw read "
                f"throughput (one thread: {raw_s / medians['seq'][1]:.2f}; against the raw "
                f"read on 2 connections: {medians['raw2'][1] / medians['idx'][1]:.2f})"
            )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events",
        type=int,
        nargs="*",
        default=[10_000, 50_000],
        help="indexer sizes (one chain filled to the largest); none to skip",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--deploys", type=int, default=3)
    parser.add_argument("--burst", type=int, default=20, help="jobs opened at once (0: skip)")
    args = parser.parse_args(argv)
    if args.deploys:
        asyncio.run(bench_deploy(args.deploys))
    if args.burst:
        asyncio.run(bench_burst(args.burst))
    if args.events:
        bench_indexer(args.events, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
