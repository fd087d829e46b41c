"""Receipts and transactions by hash are light requests: answered without the chain's lock (so a
server answers them on its event loop, not behind a transaction being mined), and a location a
revert made stale is never answered with another transaction's block."""

from __future__ import annotations

import threading
from typing import Any

from chain.test_devnet_persistence import SINK, transfer
from reef.chain import Devnet
from reef.chain.devnet._rpc import MAX_LIGHT_BATCH, DevnetRpc


def request(method: str, *params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}


def test_receipt_and_transaction_lookups_are_light_in_small_batches() -> None:
    receipt = request("eth_getTransactionReceipt", "0x" + "00" * 32)
    by_hash = request("eth_getTransactionByHash", "0x" + "00" * 32)
    assert DevnetRpc.is_light(receipt)
    assert DevnetRpc.is_light([receipt, by_hash] * (MAX_LIGHT_BATCH // 2))
    assert not DevnetRpc.is_light([receipt] * (MAX_LIGHT_BATCH + 1))
    assert not DevnetRpc.is_light([receipt, request("eth_getBalance", SINK)])
    # A method that is not a string is not light (and is no error here: the RPC answers it).
    assert not DevnetRpc.is_light({**receipt, "method": ["eth_chainId"]})
    assert not DevnetRpc.is_light([receipt, {**receipt, "method": {"a": 1}}])


def test_a_receipt_is_answered_while_the_chain_is_busy() -> None:
    devnet = Devnet()
    rpc = DevnetRpc(devnet)
    tx_hash = "0x" + transfer(devnet, 0).hex()
    held, release = threading.Event(), threading.Event()

    def mine_for_a_while() -> None:
        with devnet._lock:  # as a transaction being mined holds it
            held.set()
            release.wait(30)

    miner = threading.Thread(target=mine_for_a_while)
    miner.start()
    answers: list[Any] = []
    try:
        assert held.wait(10)
        reader = threading.Thread(
            target=lambda: answers.append(rpc.handle(request("eth_getTransactionReceipt", tx_hash)))
        )
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), "the receipt waited for the chain's lock"
    finally:
        release.set()
        miner.join()
    assert answers[0]["result"]["transactionHash"] == tx_hash
    assert answers[0]["result"]["status"] == "0x1"


def test_a_stale_location_is_not_another_transactions_receipt() -> None:
    devnet = Devnet()
    snapshot = devnet.snapshot()
    gone = transfer(devnet, 0, value=1)
    assert devnet.transaction(gone) is not None
    assert devnet.revert(snapshot)
    kept = transfer(devnet, 0, value=2)  # the same block number and index, another transaction
    assert devnet.transaction(gone) is None
    # An index entry left behind by a revert racing this read points at the new block.
    devnet._tx_index[gone] = devnet._tx_index[kept]
    assert devnet.transaction(gone) is None
    devnet._tx_index[gone] = (devnet.block_number + 5, 0)  # or past the head
    assert devnet.transaction(gone) is None
    found = devnet.transaction(kept)
    assert found is not None
    assert (found[0].number, found[1]) == (1, 0)
