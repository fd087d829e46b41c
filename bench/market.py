"""Market benchmarks (prints, asserts nothing).

1. Deployment latency: seconds from the `jobOpen` transaction to an attested, reachable enclave,
   on a real local network (devnet over JSON-RPC, control plane, dev TEE, KMS root), split into
   the transaction, the provider's launch, and verification (live attestation + the app's port).
2. Indexer catch-up: events per second while the indexer catches up over 10 000 market events
   (decode + SQLite, one transaction per 500-block range), next to raw `eth_getLogs` throughput
   over the same ranges and the same JSON-RPC endpoint, in the same run.

Run: `.venv/bin/python bench/market.py [--events N] [--deploys N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

from eth_account import Account
from web3 import Web3
from web3.types import RPCEndpoint

from reef.chain import (
    Devnet,
    Indexer,
    MarketClient,
    Web3BlockSource,
    deploy_contracts,
    load_artifact,
    serve_devnet_in_thread,
)
from reef.home import ReefHome
from reef.node import DeployRequest, LocalNetwork, UpSettings, deploy, open_session

REPO = Path(__file__).resolve().parents[1]
RANGE = 500


def _say(text: str) -> None:
    print(text, flush=True)


# -- 1. deployment latency --------------------------------------------------------------------


async def bench_deploy(count: int) -> None:
    _say(f"== deploy latency: {count} x examples/hello on a local network (reef up)")
    with tempfile.TemporaryDirectory() as tmp:
        home = ReefHome(Path(tmp))
        settings = UpSettings(
            rpc_port=0,
            cp_port=0,
            store_port=0,
            verifier_port=0,
            kms_scallop_port=0,
            kms_public_port=0,
            rate_lock_s=5,
        )
        network = LocalNetwork(home, settings)
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


# -- 2. indexer catch-up ----------------------------------------------------------------------


def _fill(devnet: Devnet, events: int) -> tuple[str, int]:
    """Deploy, open a job and emit at least ``events`` market events (2 per jobWithdraw)."""
    w3 = devnet.web3()
    owner = devnet.accounts[0]
    deployment = deploy_contracts(w3, owner.address, rate_lock_s=5, fund=[owner.address])
    MarketClient(w3, deployment.market, account=devnet.accounts[9].address).add_provider("x")
    market = MarketClient(w3, deployment.market, account=owner.address)
    job = market.open_job("{}", devnet.accounts[9].address, 1, 10**12)
    contract = w3.eth.contract(address=deployment.market, abi=load_artifact("Market").abi)
    data = contract.encode_abi("jobWithdraw", [bytes.fromhex(job[2:]), 1])
    nonce = w3.eth.get_transaction_count(owner.address)
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


def bench_indexer(events: int) -> None:
    _say(f"== indexer catch-up over {events} market events (JSON-RPC over loopback HTTP)")
    devnet = Devnet()
    market, start = _fill(devnet, events)
    head = devnet.block_number
    # The devnet serves from this process: keep its heap (every block and state object) out of
    # the collector's scans, which would otherwise be charged to whichever reader runs next.
    gc.collect()
    gc.freeze()
    with serve_devnet_in_thread(devnet) as server, tempfile.TemporaryDirectory() as tmp:
        w3 = Web3(Web3.HTTPProvider(server.url))
        ranges = [(low, min(head, low + RANGE - 1)) for low in range(start, head + 1, RANGE)]
        # raw: the same ranges as plain JSON-RPC requests, logs parsed from JSON and dropped
        began = time.perf_counter()
        raw_count = 0
        for low, high in ranges:
            answer = w3.provider.make_request(
                RPCEndpoint("eth_getLogs"),
                [{"address": market, "fromBlock": hex(low), "toBlock": hex(high)}],
            )
            raw_count += len(answer["result"])
        raw_s = time.perf_counter() - began
        # web3.py's eth.get_logs over the same ranges (what most Python indexers call)
        began = time.perf_counter()
        web3_count = 0
        for low, high in ranges:
            web3_count += len(
                w3.eth.get_logs({"address": market, "fromBlock": low, "toBlock": high})
            )
        web3_s = time.perf_counter() - began
        # the indexer: the same reads, plus decoding and a committed transaction per range
        indexer = Indexer(
            Web3BlockSource(w3),
            f"sqlite:///{Path(tmp) / 'index.db'}",
            contract=market,
            start_block=start,
            block_range=RANGE,
        )
        began = time.perf_counter()
        stored = indexer.poll()
        indexed_s = time.perf_counter() - began
    _say(f"  raw eth_getLogs  {raw_count:6d} events in {raw_s:6.2f} s  {raw_count / raw_s:9.0f}/s")
    _say(
        f"  web3 get_logs    {web3_count:6d} events in {web3_s:6.2f} s  {web3_count / web3_s:9.0f}/s"
    )
    _say(
        f"  indexer          {stored:6d} events in {indexed_s:6.2f} s  {stored / indexed_s:9.0f}/s"
    )
    _say(
        f"  indexer / raw    {raw_s / indexed_s:.2f} of the raw read throughput "
        "(the rest: decoding, and one committed SQLite transaction per range)"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--deploys", type=int, default=3)
    args = parser.parse_args(argv)
    if args.deploys:
        asyncio.run(bench_deploy(args.deploys))
    if args.events:
        bench_indexer(args.events)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
