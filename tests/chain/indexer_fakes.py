"""A scriptable chain for indexer tests: blocks of market logs, reorgs and injected RPC failures.

Logs are encoded from the real Market ABI with eth-abi, so the indexer decodes what the contract
would emit. Shared by tests/chain/test_indexer*.py and the kill -9 subprocess script.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_abi.abi import encode

from reef.chain import BlockRef, RawLog
from reef.crypto import keccak256
from reef.errors import RPCError

MARKET = "0x" + "5a" * 20
ARTIFACT = Path(__file__).resolve().parents[2] / "src/reef/chain/contracts/artifacts/Market.json"


def market_abi() -> list[dict[str, Any]]:
    abi: list[dict[str, Any]] = json.loads(ARTIFACT.read_text())["abi"]
    return abi


def _events() -> dict[str, Mapping[str, Any]]:
    return {e["name"]: e for e in market_abi() if e.get("type") == "event"}


def encode_log(
    name: str, args: Mapping[str, Any], *, block: int, index: int, block_hash: str
) -> RawLog:
    entry = _events()[name]
    inputs = entry["inputs"]
    signature = f"{name}({','.join(p['type'] for p in inputs)})"
    topics = [keccak256(signature.encode())]
    plain_types, plain_values = [], []
    for param in inputs:
        value = args[param["name"]]
        if param["indexed"]:
            topics.append(encode([param["type"]], [value]))
        else:
            plain_types.append(param["type"])
            plain_values.append(value)
    return RawLog(
        block_number=block,
        block_hash=block_hash,
        log_index=index,
        tx_hash="0x" + hashlib.sha256(f"{block}:{index}".encode()).hexdigest(),
        address=MARKET,
        topics=tuple(topics),
        data=encode(plain_types, plain_values),
    )


def job(n: int) -> bytes:
    return n.to_bytes(32, "big")


@dataclass
class FakeChain:
    """Blocks 0..head, each with a hash and market logs; a fork label changes the hashes."""

    blocks: list[tuple[str, list[RawLog]]] = field(default_factory=list)
    fork: str = "a"
    fail_on: dict[str, int] = field(default_factory=dict)  # method -> calls left before failing
    fail_message: str = "connection refused"
    max_range: int | None = None
    calls: list[tuple[str, int, int]] = field(default_factory=list)

    def _hash(self, number: int, fork: str) -> str:
        return "0x" + hashlib.sha256(f"{fork}:{number}".encode()).hexdigest()

    def mine(self, *events: tuple[str, Mapping[str, Any]]) -> int:
        number = len(self.blocks)
        block_hash = self._hash(number, self.fork)
        logs = [
            encode_log(name, args, block=number, index=i, block_hash=block_hash)
            for i, (name, args) in enumerate(events)
        ]
        self.blocks.append((block_hash, logs))
        return number

    def reorg(self, from_block: int, fork: str, replacement: Sequence[Sequence[Any]]) -> None:
        """Drop blocks >= from_block and mine ``replacement`` (one event list per block)."""
        del self.blocks[from_block:]
        self.fork = fork
        for events in replacement:
            self.mine(*events)

    def _maybe_fail(self, method: str) -> None:
        left = self.fail_on.get(method)
        if left is None:
            return
        if left == 0:
            del self.fail_on[method]
            raise RPCError(f"{method} failed: {self.fail_message}")
        self.fail_on[method] = left - 1

    # BlockSource
    def chain_id(self) -> int:
        return 31337

    def head(self) -> int:
        self._maybe_fail("head")
        return len(self.blocks) - 1

    def block(self, number: int) -> BlockRef:
        self._maybe_fail("block")
        return BlockRef(number, self.blocks[number][0], 1_700_000_000 + 12 * number)

    def logs(self, address: str, from_block: int, to_block: int) -> list[RawLog]:
        self.calls.append(("logs", from_block, to_block))
        self._maybe_fail("logs")
        if self.max_range is not None and to_block - from_block + 1 > self.max_range:
            raise RPCError("eth_getLogs failed: block range is too large (max 4)")
        return [
            log
            for number in range(from_block, to_block + 1)
            for log in self.blocks[number][1]
            if log.address == address.lower()
        ]


def opened(n: int, *, owner: str = "0x" + "0c" * 20, provider: str = "0x" + "0b" * 20) -> tuple:
    return (
        "JobOpened",
        {
            "job": job(n),
            "metadata": json.dumps({"n": n}),
            "owner": owner,
            "provider": provider,
            "rate": 10**14,
            "balance": 10**6 + n,
            "timestamp": 1_700_000_000 + n,
        },
    )


def deposited(n: int, amount: int) -> tuple:
    return ("JobDeposited", {"job": job(n), "_from": "0x" + "0d" * 20, "amount": amount})
