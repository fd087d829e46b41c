"""Devnet throughput: transactions and ``eth_call``s per second through reef's JSON-RPC endpoint
(real HTTP on loopback), next to the same operations on the in-process provider
(``DevnetProvider``: the same dispatcher, no socket), in the same run.

The HTTP side is ``reef chain`` itself, started as its own process on a temporary
``$REEF_HOME``, as users run it; a server thread inside the benchmark process would share the
interpreter lock with the client and measure lock hand-offs instead of HTTP. The in-process side
is ``Devnet.open`` on another temporary home, so both keep a journal (fsync per block) and start
from the same deployment.

Operations:

- ``send raw tx``: ``eth_sendRawTransaction`` of pre-signed token transfers (the node's cost:
  decode, validate, execute, mine a block, index), then one receipt fetch per transaction;
- ``send via client``: ``TokenClient.transfer`` from a local key, as an app would (simulate,
  estimate gas, fetch nonce and fees, sign, send, wait for the receipt, decode events);
- ``eth_call``: ``balanceOf`` reads through a web3 contract object (web3.py sends
  ``eth_chainId`` around each call, so this is three requests);
- ``eth_call (raw)``: the same ``eth_call`` as a JSON-RPC body, posted with httpx or handed
  straight to the dispatcher: the transport's own cost, without web3.py's.

Measurements are interleaved in rounds so that load from other processes affects both paths
alike; each figure is the best round. The ratio is HTTP throughput over in-process throughput
(1.0 would mean HTTP costs nothing). Prints, asserts nothing.

Run: ``.venv/bin/python bench/chain.py [--rounds 3] [--txs 60] [--calls 300] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path as FsPath

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from reef.chain import DEVNET_CHAIN_ID, DevAccount, Devnet, TokenClient, dev_accounts, load_artifact
from reef.chain._devnet_rpc import DevnetRpc
from reef.home import ReefHome


@dataclass
class Path:
    name: str
    accounts: tuple[DevAccount, ...]
    w3: Web3
    token: str
    process: subprocess.Popen[str] | None = None
    devnet: Devnet | None = None


def in_process(home: FsPath) -> Path:
    devnet = Devnet.open(ReefHome(home))
    assert devnet.deployment is not None
    return Path("in-process", devnet.accounts, devnet.web3(), devnet.deployment.token, None, devnet)


def over_http(home: FsPath) -> Path:
    reef = FsPath(sys.executable).parent / "reef"
    process = subprocess.Popen(
        [str(reef), "chain", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "REEF_HOME": str(home), "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    url = token = None
    for line in process.stdout:
        if match := re.match(r"endpoint\s+(\S+)", line):
            url = match.group(1)
        if match := re.match(r"token\s+(0x[0-9a-fA-F]{40})", line):
            token = match.group(1)
        if line.strip() == "ready":
            break
    if url is None or token is None:
        process.kill()
        raise SystemExit(f"reef chain did not start (exit code {process.wait()})")
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
    return Path("http", dev_accounts(10), w3, token, process)


def presigned_transfers(path: Path, count: int, sender_index: int) -> list[bytes]:
    """Token transfers signed ahead of time, so only the node's work is measured."""
    account = path.accounts[sender_index]
    token = path.w3.eth.contract(
        address=Web3.to_checksum_address(path.token), abi=load_artifact("Token").abi
    )
    data = token.encode_abi("transfer", ["0x" + "22" * 20, 1])
    nonce = path.w3.eth.get_transaction_count(account.address)  # type: ignore[arg-type]
    raws = []
    for i in range(count):
        signed = Account.sign_transaction(
            {
                "chainId": DEVNET_CHAIN_ID,
                "nonce": nonce + i,
                "gas": 60_000,
                "to": path.token,
                "data": data,
                "value": 0,
                "maxFeePerGas": 10**11,
                "maxPriorityFeePerGas": 10**9,
            },
            account.private_key,
        )
        raws.append(bytes(signed.raw_transaction))
    return raws


def time_it(work: Callable[[], int]) -> float:
    start = time.perf_counter()
    count = work()
    return count / (time.perf_counter() - start)


def bench_raw(path: Path, count: int, sender: int) -> float:
    raws = presigned_transfers(path, count, sender)

    def work() -> int:
        hashes = [path.w3.eth.send_raw_transaction(raw) for raw in raws]
        for tx_hash in hashes:
            assert path.w3.eth.get_transaction_receipt(tx_hash).status == 1
        return len(raws)

    return time_it(work)


def bench_client(path: Path, count: int, sender: int) -> float:
    account: LocalAccount = Account.from_key(path.accounts[sender].private_key)
    token = TokenClient(path.w3, path.token, account=account)

    def work() -> int:
        for _ in range(count):
            token.transfer("0x" + "33" * 20, 1)
        return count

    return time_it(work)


def bench_calls(path: Path, count: int) -> float:
    token = path.w3.eth.contract(
        address=Web3.to_checksum_address(path.token), abi=load_artifact("Token").abi
    )
    holder = path.accounts[1].address
    balance_of = token.functions.balanceOf(holder)

    def work() -> int:
        for _ in range(count):
            balance_of.call()
        return count

    return time_it(work)


def bench_raw_calls(path: Path, count: int) -> float:
    holder = path.accounts[1].address
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_call",
            "params": [
                {"to": path.token, "data": "0x70a08231" + "00" * 12 + holder[2:].lower()},
                "latest",
            ],
        }
    ).encode()
    if path.devnet is not None:
        rpc = DevnetRpc(path.devnet)

        def work() -> int:
            for _ in range(count):
                assert b'"result"' in (rpc.handle_bytes(body) or b"")
            return count

        return time_it(work)
    url = str(path.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    with httpx.Client(timeout=60) as client:
        headers = {"content-type": "application/json"}

        def work_http() -> int:
            for _ in range(count):
                assert b'"result"' in client.post(url, content=body, headers=headers).content
            return count

        return time_it(work_http)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--txs", type=int, default=60, help="transactions per round and path")
    parser.add_argument("--calls", type=int, default=300, help="eth_calls per round and path")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()

    scratch = tempfile.TemporaryDirectory(prefix="reef-bench-chain-")
    local = in_process(FsPath(scratch.name) / "in-process")
    remote = over_http(FsPath(scratch.name) / "http")
    best: dict[tuple[str, str], float] = {}
    try:
        for round_index in range(args.rounds):
            sender = 2 + round_index % 8  # fresh nonces per round, same work on both paths
            for path in (local, remote):
                measured = (
                    ("send raw tx", bench_raw(path, args.txs, sender)),
                    ("send via client", bench_client(path, max(1, args.txs // 4), sender)),
                    ("eth_call", bench_calls(path, args.calls)),
                    ("eth_call (raw)", bench_raw_calls(path, args.calls)),
                )
                for operation, value in measured:
                    key = (operation, path.name)
                    best[key] = max(best.get(key, 0.0), value)
    finally:
        if remote.process is not None:
            remote.process.send_signal(signal.SIGINT)
            remote.process.wait(timeout=60)
            assert remote.process.stdout is not None
            remote.process.stdout.close()
        if local.devnet is not None:
            local.devnet.close()
        scratch.cleanup()

    rows = []
    for operation in ("send raw tx", "send via client", "eth_call", "eth_call (raw)"):
        inproc, http = best[(operation, "in-process")], best[(operation, "http")]
        rows.append(
            {
                "operation": operation,
                "in_process_per_s": round(inproc, 1),
                "http_per_s": round(http, 1),
                "http_over_in_process": round(http / inproc, 3),
            }
        )
    if args.json:
        print(json.dumps({"rounds": args.rounds, "results": rows}, indent=2))
        return
    print(f"devnet throughput, best of {args.rounds} rounds (reef JSON-RPC over loopback HTTP)")
    print(f"{'operation':<17}{'in-process/s':>14}{'HTTP/s':>10}{'HTTP/in-process':>17}")
    for row in rows:
        print(
            f"{row['operation']:<17}{row['in_process_per_s']:>14.1f}{row['http_per_s']:>10.1f}"
            f"{row['http_over_in_process']:>17.3f}"
        )


if __name__ == "__main__":
    main()
