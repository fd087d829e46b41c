"""Chain throughput: reef's devnet next to anvil and hardhat node, same client, same run.

Each node runs as its own process on loopback, as users run it: ``reef chain`` on a temporary
``$REEF_HOME`` (its journal written per block and synced to disk right after, as always),
``anvil`` from npm (``@foundry-rs/anvil``, tests/js) and ``hardhat node`` (tests/js) where
installed. A ``reef-inproc`` column (``--nodes reef,reef-inproc,...``) answers the same JSON
bodies through ``DevnetRpc.handle_bytes`` of a devnet in this process: the devnet without its
HTTP layer, to tell the two costs apart. reef's
contracts are deployed on each by reef.chain's own deploy code, and one client (httpx, raw
JSON-RPC bodies on a kept-alive connection; transactions signed before the clock starts) then
measures, interleaved in rounds so that load from other processes affects every node alike:

- ``ETH transfers/s``: ``eth_sendRawTransaction`` of a signed value transfer, then its receipt
  (``eth_getTransactionReceipt``), one after the other: what a wallet waits for;
- ``token transfers/s``: the same with an ERC-20 ``transfer`` (a contract call with a log);
- ``market tx/s``: ``jobDeposit`` on an open job (the market's most common write);
- ``eth_call/s``: ``balanceOf`` through ``eth_call``;
- ``eth_getLogs logs/s``: the token's ``Transfer`` logs over every block, logs returned per second.

Figures are medians of the rounds; the last columns are reef's share of anvil and of hardhat
(issue 14 aims at reef >= hardhat on every row and >= 0.5 of anvil on transfers). Prints,
asserts nothing.

Run: ``.venv/bin/python bench/chain.py [--rounds 3] [--txs 100] [--calls 300] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from web3 import Web3

from reef.chain import (
    DEVNET_CHAIN_ID,
    Devnet,
    MarketClient,
    deploy_contracts,
    dev_accounts,
    load_artifact,
)
from reef.chain.devnet._rpc import DevnetRpc
from reef.home import ReefHome

REPO = Path(__file__).resolve().parents[1]
JS = REPO / "tests" / "js"
ANVIL = JS / "node_modules" / ".bin" / "anvil"
HARDHAT = JS / "node_modules" / ".bin" / "hardhat"
ACCOUNTS = dev_accounts(10)
SINK = "0x" + "22" * 20
ROWS = ("ETH transfers/s", "token transfers/s", "market tx/s", "eth_call/s", "eth_getLogs logs/s")


class RpcFailure(Exception):
    pass


@dataclass
class Node:
    name: str
    url: str
    process: subprocess.Popen[bytes] | None
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=120))
    devnet: Devnet | None = None
    """For ``reef-inproc``: the devnet answering in this process, instead of ``url``."""
    token: str = ""
    market: str = ""
    job_id: bytes = b""
    next_id: int = 0

    def __post_init__(self) -> None:
        self._local = None if self.devnet is None else DevnetRpc(self.devnet)

    def rpc(self, method: str, *params: Any) -> Any:
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": list(params)}
        if self._local is not None:
            # The same bytes a client would send, answered without the HTTP layer.
            answer = self._local.handle_bytes(json.dumps(body).encode())
            reply = json.loads(answer or b"{}")
        else:
            reply = self.client.post(self.url, json=body).json()
        if "error" in reply:
            raise RpcFailure(f"{self.name}: {method}: {reply['error']}")
        return reply["result"]

    def web3(self) -> Web3:
        if self.devnet is not None:
            return self.devnet.web3()
        return Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 120}))

    def stop(self) -> None:
        self.client.close()
        if self.devnet is not None:
            self.devnet.close()
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(name: str, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.post(url, json=body, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{name} did not answer within 120 s")


def start(name: str, scratch: Path) -> Node | None:
    if name == "reef-inproc":
        devnet = Devnet.open(ReefHome(scratch / "reef-inproc-home"), fresh=True)
        node = Node(name, "", None, devnet=devnet)
        assert devnet.deployment is not None
        node.token, node.market = devnet.deployment.token, devnet.deployment.market
        return node
    port = _free_port()
    log = scratch / f"{name}.log"
    env = dict(os.environ)
    cwd = None
    if name == "reef":
        home = scratch / "reef-home"
        env["REEF_HOME"] = str(home)
        reef = Path(sys.executable).with_name("reef")
        argv = [str(reef), "chain", "--fresh", "--port", str(port)]
    elif name == "anvil":
        if not ANVIL.exists():
            return None
        argv = [str(ANVIL), "--port", str(port), "--silent", "--chain-id", str(DEVNET_CHAIN_ID)]
    else:
        if not HARDHAT.exists() or shutil.which("node") is None:
            return None
        argv = [str(HARDHAT), "node", "--hostname", "127.0.0.1", "--port", str(port)]
        cwd = JS
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    _wait_ready(name, url, process, log)
    node = Node(name, url, process)
    deployment = deploy_contracts(
        Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 120})),
        ACCOUNTS[0].address,
        rate_lock_s=300,
        fund=[account.address for account in ACCOUNTS],
    )
    node.token, node.market = deployment.token, deployment.market
    return node


def _signed(node: Node, sender: int, txs: list[tuple[str, bytes, int]]) -> list[str]:
    """``txs`` (to, data, gas) signed by dev account ``sender`` with consecutive nonces."""
    account = ACCOUNTS[sender]
    nonce = int(node.rpc("eth_getTransactionCount", account.address, "latest"), 16)
    raws = []
    for offset, (to, data, gas) in enumerate(txs):
        fields = {
            "chainId": DEVNET_CHAIN_ID,
            "nonce": nonce + offset,
            "gas": gas,
            "to": to,
            "data": data,
            "value": 1 if not data else 0,
            "maxFeePerGas": 10**11,
            "maxPriorityFeePerGas": 10**9,
        }
        signed = Account.sign_transaction(fields, account.private_key)
        raws.append("0x" + bytes(signed.raw_transaction).hex())
    return raws


def _rate(count: int, work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


def bench_sends(node: Node, raws: list[str]) -> float:
    def work() -> None:
        for raw in raws:
            tx_hash = node.rpc("eth_sendRawTransaction", raw)
            receipt = node.rpc("eth_getTransactionReceipt", tx_hash)
            while receipt is None:  # anvil answers the send before its block is mined
                receipt = node.rpc("eth_getTransactionReceipt", tx_hash)
            if receipt is None or receipt["status"] != "0x1":
                raise RpcFailure(f"{node.name}: transaction {tx_hash} failed: {receipt}")

    return _rate(len(raws), work)


def bench_calls(node: Node, count: int) -> float:
    holder = ACCOUNTS[1].address[2:].lower()
    call = {"to": node.token, "data": "0x70a08231" + "00" * 12 + holder}

    def work() -> None:
        for _ in range(count):
            node.rpc("eth_call", call, "latest")

    return _rate(count, work)


def bench_logs(node: Node, repeats: int) -> float:
    topic = "0x" + Web3.keccak(text="Transfer(address,address,uint256)").hex().removeprefix("0x")
    query = {"fromBlock": "0x0", "toBlock": "latest", "address": node.token, "topics": [topic]}
    count = len(node.rpc("eth_getLogs", query))

    def work() -> None:
        for _ in range(repeats):
            node.rpc("eth_getLogs", query)

    return _rate(count * repeats, work)


def open_job(node: Node, sender: int) -> None:
    """A job of ``sender`` on the node's market, for the ``jobDeposit`` row."""
    w3 = node.web3()
    account = Account.from_key(ACCOUNTS[sender].private_key)
    market = MarketClient(w3, node.market, account=account)
    market.token().approve(node.market, 10**30)
    provider = Account.from_key(ACCOUNTS[9].private_key)
    MarketClient(w3, node.market, account=provider).add_provider("http://cp.example")
    job = market.open_job("{}", provider.address, 1, 10**9, approve=False)
    node.job_id = bytes.fromhex(str(job).removeprefix("0x"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--txs", type=int, default=100, help="transactions per row, round, node")
    parser.add_argument("--calls", type=int, default=300, help="eth_calls per round and node")
    parser.add_argument(
        "--nodes",
        default="reef,anvil,hardhat",
        help="comma-separated, of reef, reef-inproc, anvil, hardhat",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="reef-bench-chain-"))
    nodes: list[Node] = []
    try:
        for name in args.nodes.split(","):
            node = start(name, scratch)
            if node is None:
                print(f"({name} is not installed under tests/js: its column is left out)")
            else:
                nodes.append(node)
        token_abi = load_artifact("Token").abi
        market_abi = load_artifact("Market").abi
        token = Web3().eth.contract(abi=token_abi)
        market = Web3().eth.contract(abi=market_abi)
        transfer = bytes.fromhex(token.encode_abi("transfer", [SINK, 1])[2:])
        for node in nodes:
            open_job(node, 8)
        results: dict[str, dict[str, list[float]]] = {
            node.name: {row: [] for row in ROWS} for node in nodes
        }
        for round_index in range(args.rounds):
            sender = 1 + round_index % 7
            for node in nodes:
                eth = _signed(node, sender, [(SINK, b"", 21_000)] * args.txs)
                results[node.name][ROWS[0]].append(bench_sends(node, eth))
                tok = _signed(node, sender, [(node.token, transfer, 80_000)] * args.txs)
                results[node.name][ROWS[1]].append(bench_sends(node, tok))
                deposit = market.encode_abi("jobDeposit", [node.job_id, 1])
                mkt = _signed(
                    node, 8, [(node.market, bytes.fromhex(deposit[2:]), 200_000)] * args.txs
                )
                results[node.name][ROWS[2]].append(bench_sends(node, mkt))
                results[node.name][ROWS[3]].append(bench_calls(node, args.calls))
                results[node.name][ROWS[4]].append(bench_logs(node, 5))
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    medians = {
        name: {row: statistics.median(values) for row, values in rows.items()}
        for name, rows in results.items()
    }
    if args.json:
        print(json.dumps({"rounds": args.rounds, "median_per_s": medians}, indent=2))
        return
    names = [node.name for node in nodes]
    ratios = [name for name in names if name not in ("reef", "reef-inproc")]
    print(f"chain throughput over loopback JSON-RPC, median of {args.rounds} rounds")
    header = f"{'':20}" + "".join(f"{name:>12}" for name in names)
    header += "".join(f"{'reef/' + name:>14}" for name in ratios)
    print(header)
    for row in ROWS:
        line = f"{row:20}" + "".join(f"{medians[name][row]:>12.1f}" for name in names)
        if "reef" in medians:
            line += "".join(
                f"{medians['reef'][row] / medians[name][row]:>14.2f}" for name in ratios
            )
        print(line)


if __name__ == "__main__":
    main()
