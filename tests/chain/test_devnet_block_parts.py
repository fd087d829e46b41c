"""What the devnet computes of a mined block from its parts (its size) is what py-evm's own
encoding of the block stored in its database gives, for every kind of transaction."""

from __future__ import annotations

from typing import Any

import rlp
from eth_account import Account

from reef.chain.devnet._engine import Chain


def test_block_sizes_are_the_stored_blocks_encodings() -> None:
    chain = Chain(accounts=1, clock=lambda: 1_800_000_000.0)
    account = chain.accounts[0]
    base: dict[str, Any] = {"chainId": chain.chain_id, "gas": 100_000, "value": 7}
    kinds: list[dict[str, Any]] = [
        {"gasPrice": 10**11, "to": "0x" + "33" * 20},  # legacy (EIP-155)
        {"gasPrice": 10**11, "to": "0x" + "33" * 20, "type": 1, "accessList": []},
        {"maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9, "to": "0x" + "33" * 20},
        {"maxFeePerGas": 10**11, "maxPriorityFeePerGas": 1, "data": b"\x60\x00" * 40},
        {"gasPrice": 10**11, "data": bytes(300)},  # a legacy creation with long data
    ]
    for nonce, kind in enumerate(kinds):
        fields = {**base, **kind, "nonce": nonce}
        raw = Account.sign_transaction(fields, account.private_key).raw_transaction
        chain.send_raw_transaction(bytes(raw))
        chain.mine()  # and an empty block after each
    assert chain.block_number == 2 * len(kinds)
    for number in range(chain.block_number + 1):
        stored = chain._chain.get_canonical_block_by_number(number)
        mined = chain.block(number)
        assert mined is not None
        assert mined.size == len(rlp.encode(stored))
