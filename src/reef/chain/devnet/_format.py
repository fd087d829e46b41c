"""Blocks, transactions, receipts and logs in the JSON shapes of the Ethereum JSON-RPC spec.

Field names and encodings follow the execution-apis specification as geth answers it:
quantities are ``0x``-prefixed hex without leading zeros, data is ``0x``-prefixed hex of whole
bytes, addresses are lowercase. Clients (web3.py, ethers v6, wallets) parse these directly, so
the shapes are checked against both in the tests.
"""

from __future__ import annotations

from typing import Any

from reef.chain.devnet._types import LogEntry, MinedBlock

__all__ = [
    "block_json",
    "log_json",
    "pending_block_json",
    "quantity",
    "receipt_json",
    "transaction_json",
]

_EMPTY_UNCLES = "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347"


def quantity(value: int) -> str:
    return hex(value)


def data(value: bytes) -> str:
    return "0x" + value.hex()


def _bloom(value: int) -> str:
    return "0x" + value.to_bytes(256, "big").hex()


def _header_json(header: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "number": quantity(header.block_number),
        "hash": data(header.hash),
        "parentHash": data(header.parent_hash),
        "nonce": data(header.nonce),
        "sha3Uncles": data(header.uncles_hash),
        "logsBloom": _bloom(header.bloom),
        "transactionsRoot": data(header.transaction_root),
        "stateRoot": data(header.state_root),
        "receiptsRoot": data(header.receipt_root),
        "miner": data(header.coinbase),
        "difficulty": quantity(header.difficulty),
        "totalDifficulty": quantity(header.difficulty),
        "extraData": data(header.extra_data),
        "gasLimit": quantity(header.gas_limit),
        "gasUsed": quantity(header.gas_used),
        "timestamp": quantity(header.timestamp),
        "mixHash": data(header.mix_hash),
        "baseFeePerGas": quantity(header.base_fee_per_gas),
        "withdrawalsRoot": data(header.withdrawals_root),
        "blobGasUsed": quantity(header.blob_gas_used),
        "excessBlobGas": quantity(header.excess_blob_gas),
        "parentBeaconBlockRoot": data(header.parent_beacon_block_root),
    }
    requests_hash = getattr(header, "requests_hash", None)
    if requests_hash is not None:
        fields["requestsHash"] = data(requests_hash)
    return fields


def block_json(block: MinedBlock, *, full: bool, chain_id: int) -> dict[str, Any]:
    """``eth_getBlockBy*``: the header, and transaction hashes or (``full``) objects."""
    result = _header_json(block.header)
    result["size"] = quantity(block.size)
    if full:
        result["transactions"] = [
            transaction_json(block, index, chain_id=chain_id)
            for index in range(len(block.transactions))
        ]
    else:
        result["transactions"] = [data(tx.hash) for tx in block.transactions]
    result["uncles"] = []
    result["withdrawals"] = []
    return result


def pending_block_json(
    parent: MinedBlock, *, timestamp: int, base_fee: int, gas_limit: int
) -> dict[str, Any]:
    """``eth_getBlockByNumber("pending")``: the next block, empty (the devnet mines at once)."""
    number = parent.number + 1
    return {
        "number": quantity(number),
        "hash": None,
        "parentHash": data(parent.hash),
        "nonce": None,
        "sha3Uncles": _EMPTY_UNCLES,
        "logsBloom": _bloom(0),
        "transactionsRoot": data(parent.header.transaction_root),
        "stateRoot": data(parent.header.state_root),
        "receiptsRoot": data(parent.header.receipt_root),
        "miner": None,
        "difficulty": "0x0",
        "totalDifficulty": "0x0",
        "extraData": "0x",
        "size": "0x0",
        "gasLimit": quantity(gas_limit),
        "gasUsed": "0x0",
        "timestamp": quantity(timestamp),
        "mixHash": None,
        "baseFeePerGas": quantity(base_fee),
        "transactions": [],
        "uncles": [],
    }


def _access_list(tx: Any) -> list[dict[str, Any]]:
    return [
        {
            "address": data(entry[0]),
            "storageKeys": ["0x" + int(key).to_bytes(32, "big").hex() for key in entry[1]],
        }
        for entry in tx.access_list
    ]


def transaction_json(block: MinedBlock, index: int, *, chain_id: int) -> dict[str, Any]:
    """``eth_getTransactionByHash`` and friends: a mined transaction."""
    tx = block.transactions[index]
    kind = tx.type_id if tx.type_id is not None else 0
    result: dict[str, Any] = {
        "blockHash": data(block.hash),
        "blockNumber": quantity(block.number),
        "from": data(block.senders[index]),
        "gas": quantity(tx.gas),
        "gasPrice": quantity(block.effective_gas_price(index)),
        "hash": data(tx.hash),
        "input": data(tx.data),
        "nonce": quantity(tx.nonce),
        "to": data(tx.to) if tx.to else None,
        "transactionIndex": quantity(index),
        "value": quantity(tx.value),
        "type": quantity(kind),
        "r": quantity(tx.r),
        "s": quantity(tx.s),
    }
    if kind == 0:
        result["v"] = quantity(tx.v)
        if tx.chain_id is not None:
            result["chainId"] = quantity(tx.chain_id)
    else:
        result["v"] = quantity(tx.y_parity)
        result["yParity"] = quantity(tx.y_parity)
        result["chainId"] = quantity(tx.chain_id)
        result["accessList"] = _access_list(tx)
    if kind in (2, 4):
        result["maxFeePerGas"] = quantity(tx.max_fee_per_gas)
        result["maxPriorityFeePerGas"] = quantity(tx.max_priority_fee_per_gas)
    if kind == 4:
        result["authorizationList"] = [
            {
                "chainId": quantity(auth.chain_id),
                "address": data(auth.address),
                "nonce": quantity(auth.nonce),
                "yParity": quantity(auth.y_parity),
                "r": quantity(auth.r),
                "s": quantity(auth.s),
            }
            for auth in tx.authorization_list
        ]
    return result


def log_json(entry: LogEntry) -> dict[str, Any]:
    return {
        "address": data(entry.address),
        "topics": [data(topic) for topic in entry.topics],
        "data": data(entry.data),
        "blockNumber": quantity(entry.block_number),
        "blockHash": data(entry.block_hash),
        "transactionHash": data(entry.transaction_hash),
        "transactionIndex": quantity(entry.transaction_index),
        "logIndex": quantity(entry.log_index),
        "removed": False,
    }


def receipt_json(block: MinedBlock, index: int) -> dict[str, Any]:
    """``eth_getTransactionReceipt``: what a mined transaction did."""
    tx = block.transactions[index]
    receipt = block.receipts[index]
    contract = block.contract_address(index)
    status = 1 if receipt.state_root == b"\x01" else 0
    return {
        "transactionHash": data(tx.hash),
        "transactionIndex": quantity(index),
        "blockHash": data(block.hash),
        "blockNumber": quantity(block.number),
        "from": data(block.senders[index]),
        "to": data(tx.to) if tx.to else None,
        "cumulativeGasUsed": quantity(receipt.gas_used),
        "gasUsed": quantity(block.gas_used_by(index)),
        "effectiveGasPrice": quantity(block.effective_gas_price(index)),
        "contractAddress": data(contract) if contract is not None else None,
        "logs": [log_json(entry) for entry in block.logs[index]],
        "logsBloom": _bloom(receipt.bloom),
        "type": quantity(tx.type_id if tx.type_id is not None else 0),
        "status": quantity(status),
    }
