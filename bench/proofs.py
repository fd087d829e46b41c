"""The proof market's matching engine and Groth16 proving, measured.

Matching (pure core and order book, no chain; prints, does not assert):

- read: raw ProofMarket logs (1 market, 1 000 provers registering and joining, 100 000 asks)
  decoded into typed events per second: the cost of just reading what the engine reads;
- match: the same events applied to the order book, then rounds of up to 256 assignments (the
  contract's batch bound) with each round's assignments applied back, until no ask can be
  placed: asks matched per second (apply + match + bookkeeping);
- latency: with 100 000 stale asks in the book (rewards below every price) and provers with room,
  new asks arrive in pages of 10 while 10 tasks complete per page; p50/p99 from an ask's event
  being applied to its assignment being chosen (the chain transaction that follows is not
  included: on reef's devnet an assign transaction adds ~10-50 ms).

Groth16 (the example circuit, examples/proofs/poseidon): reef.proofs.prove and
verify_with_snarkjs next to the snarkjs CLI called directly (``groth16 fullprove`` and
``groth16 verify``), and the generated Vyper verifier on reef's devnet: an ``eth_call`` of a
new proof, the same call again (the devnet remembers its pairing precompile's answers) and an
``eth_estimateGas`` of a new proof, each as a share of the first.

Run: ``.venv/bin/python bench/proofs.py [--asks N] [--provers N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_account import Account

from reef.chain import Address, Amount, Devnet, load_artifact
from reef.crypto import keccak256
from reef.proofs import (
    OrderBook,
    TaskAssigned,
    deploy_verifier,
    ensure_snarkjs,
    load_verification_key,
    match_round,
    proof_market_decoder,
    prove,
    verify_with_snarkjs,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "proofs" / "poseidon"
MARKET = Address("0x" + "42" * 20)


def _specs() -> dict[str, dict[str, Any]]:
    return {e["name"]: dict(e) for e in load_artifact("ProofMarket").abi if e["type"] == "event"}


def _log(spec: dict[str, Any], values: dict[str, Any], index: int) -> dict[str, Any]:
    inputs = spec["inputs"]
    signature = f"{spec['name']}({','.join(i['type'] for i in inputs)})"
    topics = ["0x" + keccak256(signature.encode()).hex()]
    for i in inputs:
        if i["indexed"]:
            topics.append("0x" + abi_encode([i["type"]], [values[i["name"]]]).hex())
    data = [i for i in inputs if not i["indexed"]]
    encoded = abi_encode([i["type"] for i in data], [values[i["name"]] for i in data])
    return {
        "address": MARKET,
        "topics": topics,
        "data": "0x" + encoded.hex(),
        "blockNumber": hex(1 + index // 100),
        "logIndex": hex(index % 100),
        "transactionHash": "0x" + index.to_bytes(32, "big").hex(),
    }


def synthetic_logs(n_provers: int, n_asks: int, rng: random.Random) -> list[dict[str, Any]]:
    specs = _specs()
    zero = "0x" + "00" * 20
    logs = [
        _log(specs["MarketCreated"], {"marketId": 1, "creator": zero, "kind": 1, "verifier": zero,
             "imageId": b"\0" * 32, "artifactsHash": b"\0" * 32, "penalty": 10, "ivs": zero,
             "nInputs": 1, "metadata": ""}, 0),
    ]  # fmt: skip
    provers = [f"0x{i + 1:040x}" for i in range(n_provers)]
    for p in provers:
        logs.append(_log(specs["ProverRegistered"], {"prover": p, "rewardAddress": p,
                         "compute": rng.randint(50, 150), "stake": 10**12}, len(logs)))  # fmt: skip
        logs.append(_log(specs["ProverJoined"], {"prover": p, "marketId": 1,
                         "price": rng.randint(1, 100), "maxTime": rng.randint(10, 300), "compute": 1},
                         len(logs)))  # fmt: skip
    inputs = abi_encode(["uint256[]"], [[7]])
    for a in range(1, n_asks + 1):
        logs.append(_log(specs["AskCreated"], {"askId": a, "marketId": 1, "requester": zero,
                         "refundAddress": zero, "reward": rng.randint(50, 200), "expiry": 2**40,
                         "provingTime": rng.randint(200, 600), "inputs": inputs}, len(logs)))  # fmt: skip
    return logs


def _assigned(ask_id: int, prover: str) -> TaskAssigned:
    return TaskAssigned(address=MARKET, block_number=0, log_index=0, tx_hash="0x", ask_id=ask_id,
                        prover=Address(prover), market_id=1, deadline=0, price=Amount(0))  # fmt: skip


def bench_matching(n_provers: int, n_asks: int) -> None:
    rng = random.Random(7)
    logs = synthetic_logs(n_provers, n_asks, rng)
    decoder = proof_market_decoder()
    start = time.perf_counter()
    events = [decoder.decode(log) for log in logs]
    read_s = time.perf_counter() - start
    print(
        f"read    {len(events):>7} events   {len(events) / read_s:>10,.0f} events/s  ({read_s:.2f} s)"
    )

    book = OrderBook()
    start = time.perf_counter()
    for event in events:
        assert event is not None
        book.apply(event, 0)
    matched = 0
    while True:
        pairs = match_round(book.candidates(), book.quotes.values(), book.capacity(0),
                            book.penalties, now=0, limit=256, on_unmatched=book.park)  # fmt: skip
        if not pairs:
            break
        for ask_id, prover in pairs:
            book.apply(_assigned(ask_id, prover), 0)
        matched += len(pairs)
    match_s = time.perf_counter() - start
    print(f"match   {matched:>7} asks     {matched / match_s:>10,.0f} asks/s    ({match_s:.2f} s,"
          f" {n_provers} provers, {len(book.open_asks)} asks left open: no capacity)")  # fmt: skip

    bench_latency(events[: 1 + 2 * n_provers], n_asks)


def bench_latency(prover_events: list[Any], n_stale: int) -> None:
    """Asks arriving while the book holds ``n_stale`` asks nobody can take (reward below every
    price): each new ask's time from its event being applied to its assignment being chosen."""
    from reef.proofs import AskCreated, ProofSubmitted

    def ask(ask_id: int, reward: int) -> AskCreated:
        return AskCreated(address=MARKET, block_number=0, log_index=0, tx_hash="0x", ask_id=ask_id,
                          market_id=1, requester=MARKET, refund_address=MARKET,
                          reward=Amount(reward), expiry=2**40, proving_time=10**6,
                          inputs=b"")  # fmt: skip

    book = OrderBook()
    for event in prover_events:
        book.apply(event, 0)
    for ask_id in range(1, n_stale + 1):
        book.apply(ask(ask_id, 0), 0)  # below every price: parked by the first round
    match_round(book.candidates(), book.quotes.values(), book.capacity(0), book.penalties,
                now=0, limit=256, on_unmatched=book.park)  # fmt: skip
    arrived: dict[int, float] = {}
    latencies: list[float] = []
    next_id = n_stale + 1
    for _page in range(300):
        # Ten tasks complete (capacity comes back, as it does all the time) and ten asks arrive.
        for ask_id, (prover, _) in list(book.assigned.items())[:10]:
            book.apply(ProofSubmitted(address=MARKET, block_number=0, log_index=0, tx_hash="0x",
                       ask_id=ask_id, prover=prover, market_id=1, proof=b""), 0)  # type: ignore[arg-type]  # fmt: skip
        for _ in range(10):
            arrived[next_id] = time.perf_counter()
            book.apply(ask(next_id, 10**6), 0)
            next_id += 1
        pairs = match_round(book.candidates(), book.quotes.values(), book.capacity(0),
                            book.penalties, now=0, limit=256, on_unmatched=book.park)  # fmt: skip
        chosen = time.perf_counter()
        for ask_id, prover in pairs:
            book.apply(_assigned(ask_id, prover), 0)
            latencies.append(chosen - arrived.pop(ask_id))
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(f"latency {len(latencies):>7} asks     p50 {p50:.2f} ms, p99 {p99:.2f} ms"
          f" (event applied -> assignment chosen, with {n_stale:,} stale asks in the book;"
          f" {len(arrived)} never placed)")  # fmt: skip


def _time(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_groth16(repeat: int) -> None:
    runtime = ensure_snarkjs()
    wasm, zkey, vkey_path = (
        EXAMPLE / "circuit.wasm",
        EXAMPLE / "circuit.zkey",
        EXAMPLE / "verification_key.json",
    )
    vkey = load_verification_key(vkey_path)
    proof = prove(runtime, wasm, zkey, {"x": 5})
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "input.json").write_text(json.dumps({"x": "5"}))
        (base / "public.json").write_text(json.dumps(proof.signals_json()))
        (base / "proof.json").write_text(json.dumps(dict(proof.proof)))
        cli = [str(runtime.node), str(runtime.snarkjs_cli), "groth16"]

        def cli_prove() -> None:
            subprocess.run([*cli, "fullprove", str(base / "input.json"), str(wasm), str(zkey),
                            str(base / "p.json"), str(base / "s.json")], cwd=runtime.project,
                           check=True, capture_output=True)  # fmt: skip

        def cli_verify() -> None:
            subprocess.run([*cli, "verify", str(vkey_path), str(base / "public.json"),
                            str(base / "proof.json")], cwd=runtime.project, check=True,
                           capture_output=True)  # fmt: skip

        rows = [
            ("prove  reef.proofs.prove", _time(lambda: prove(runtime, wasm, zkey, {"x": 5}), repeat)),
            ("prove  snarkjs fullprove (CLI)", _time(cli_prove, repeat)),
            ("verify reef verify_with_snarkjs", _time(lambda: verify_with_snarkjs(runtime, vkey, proof), repeat)),
            ("verify snarkjs verify (CLI)", _time(cli_verify, repeat)),
        ]  # fmt: skip
    devnet = Devnet(accounts=1)
    account = Account.from_key(devnet.accounts[0].private_key)
    address = deploy_verifier(devnet.web3(), account, vkey)
    abi = [{"type": "function", "name": "verifyProof", "stateMutability": "view",
            "inputs": [{"name": "proof", "type": "uint256[8]"}, {"name": "signals", "type": "uint256[]"}],
            "outputs": [{"name": "", "type": "bool"}]}]  # fmt: skip
    contract = devnet.web3().eth.contract(address=address, abi=abi)  # type: ignore[call-overload]
    # The devnet remembers what its pairing precompile answered per input, so a proof's first
    # verification computes the pairing and a repeat (an estimate's extra runs, the transaction
    # after its estimate) does not: each repeat of these rows proves afresh first.
    first, again, estimate = [], [], []
    for x in range(6, 6 + repeat):
        fresh = prove(runtime, wasm, zkey, {"x": x})
        call = contract.functions.verifyProof(list(fresh.words()), list(fresh.public_signals))
        first.append(_time(call.call, 1))
        again.append(_time(call.call, 1))
        other = prove(runtime, wasm, zkey, {"x": x + 1000})
        estimate.append(_time(contract.functions.verifyProof(
            list(other.words()), list(other.public_signals)).estimate_gas, 1))  # fmt: skip
    rows += [
        ("verify on chain, new proof (eth_call)", min(first)),
        ("verify on chain, same proof again", min(again)),
        ("eth_estimateGas of a new proof's check", min(estimate)),
    ]
    for name, seconds in rows:
        print(f"{name:<40} {seconds * 1000:>8.0f} ms (best of {repeat})")
    print(f"a repeated check costs {min(again) / min(first):.2f} of a new one; an estimate "
          f"(several runs) {min(estimate) / min(first):.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--asks", type=int, default=100_000)
    parser.add_argument("--provers", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bench_matching(args.provers, args.asks)
    bench_groth16(args.repeat)


if __name__ == "__main__":
    main()
