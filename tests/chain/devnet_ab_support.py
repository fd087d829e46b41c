"""Two devnet chains driven in step: one as reef runs it (its caches, batched tries, block
writing and interpreter) and one on py-evm's own classes and ``persist_block``, so a test can
check after every step that the speed work changed nothing but speed."""

from __future__ import annotations

from typing import Any

import pytest
import rlp
from eth_account import Account

from reef.chain.devnet import _engine
from reef.chain.devnet._engine import Chain
from reef.chain.devnet._types import DevnetFault, ExecutionReverted, TxRequest
from reef.crypto import keccak256

__all__ = ["ChainPair"]


def _plain_chain_class(chain_id: int, nodes: object) -> Any:
    """The devnet's chain class without the caches: py-evm's PragueVM as it comes."""
    return type("_PlainDevChain", (_engine._DevChain,), {"chain_id": chain_id})


class ChainPair:
    """The same chain twice, ``cached`` (reef's) and ``plain`` (py-evm's), on one clock."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, accounts: int = 4) -> None:
        self.now = [1_800_000_000.0]
        self.cached = Chain(accounts=accounts, clock=self.clock)
        with monkeypatch.context() as patch:
            patch.setattr(_engine, "_chain_class", _plain_chain_class)
            self.plain = Chain(accounts=accounts, clock=self.clock)
        # and py-evm's own ChainDB.persist_block for its blocks.
        plain = self.plain
        plain._persist_block = lambda block: plain._chain.chaindb.persist_block(block)  # type: ignore[method-assign]
        assert type(self.cached._chain) is not type(self.plain._chain)
        self.snapshots: list[tuple[int, int]] = []
        self.mined = 0
        self.reverts = 0

    def clock(self) -> float:
        return self.now[0]

    @property
    def chains(self) -> tuple[Chain, Chain]:
        return self.cached, self.plain

    def send(
        self, sender: int, to: bytes | None, value: int, data: bytes, gas: int, kind: int = 2
    ) -> None:
        """Send a transaction of type ``kind`` (0 legacy, 1 access list, 2 dynamic fee) on
        both chains: both mine it or both refuse it with the same message."""
        self.now[0] += 1
        outcomes = []
        for chain in self.chains:
            account = chain.accounts[sender]
            fields: dict[str, Any] = {
                "chainId": chain.chain_id,
                "nonce": chain.nonce(bytes.fromhex(account.address[2:])),
                "gas": gas,
                "value": value,
                "data": data,
            }
            if kind == 2:
                fields.update(maxFeePerGas=10**11, maxPriorityFeePerGas=10**9)
            else:
                fields["gasPrice"] = 10**11
            if kind == 1:
                fields["accessList"] = [{"address": "0x" + "11" * 20, "storageKeys": []}]
            if to is not None:
                fields["to"] = to
            raw = bytes(Account.sign_transaction(fields, account.private_key).raw_transaction)
            try:
                chain.send_raw_transaction(raw)
                outcomes.append("mined")
                self.mined += chain is self.cached
            except DevnetFault as exc:
                outcomes.append(str(exc))
        assert outcomes[0] == outcomes[1]

    def deploy(self, sender: int, initcode: bytes, gas: int = 300_000) -> bytes:
        """Create a contract from dev account ``sender`` on both chains, check they still
        agree, and return its address (the sender's and its nonce's, as CREATE makes it)."""
        account = bytes.fromhex(self.cached.accounts[sender].address[2:])
        address = keccak256(rlp.encode([account, self.cached.nonce(account)]))[12:]
        self.send(sender, None, 0, initcode, gas)
        self.same()
        return address

    def same(self) -> None:
        """The same head block on both: number, hash (so state root) and receipts."""
        cached, plain = self.chains
        assert cached.block_number == plain.block_number
        assert cached.head.hash == plain.head.hash
        assert cached.head.header.state_root == plain.head.header.state_root
        assert [r.encode() for r in cached.head.receipts] == [
            r.encode() for r in plain.head.receipts
        ]

    def answers(self, request: TxRequest) -> tuple[object, object]:
        """What each chain answers to ``request`` as a call and as a gas estimate."""
        results = []
        for chain in self.chains:
            try:
                output: object = chain.call(request)
            except ExecutionReverted as exc:
                output = ("reverted", exc.data)
            try:
                gas: object = chain.estimate_gas(request)
            except ExecutionReverted as exc:
                gas = ("reverted", exc.data)
            results.append((output, gas))
        return results[0], results[1]
