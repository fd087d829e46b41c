"""What the devnet computes of a mined block from its parts (its size, its receipt's encoding)
is what py-evm's own encoding gives, for every kind of transaction and receipt."""

from __future__ import annotations

from typing import Any

import rlp
from eth.rlp.logs import Log
from eth.rlp.receipts import Receipt
from eth.vm.forks.prague.receipts import PragueTypedReceipt
from eth_account import Account
from hypothesis import given
from hypothesis import strategies as st

from reef.chain.devnet._engine import Chain
from reef.chain.devnet._trie import encode_receipt


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


_logs = st.lists(
    st.tuples(
        st.binary(min_size=20, max_size=20),
        st.lists(st.integers(0, 2**256 - 1), max_size=4),
        st.binary(max_size=300),
    ),
    max_size=4,
)


@given(
    st.sampled_from([None, 1, 2, 4]),
    st.sampled_from([b"", b"\x01", bytes(32)]),
    st.integers(0, 2**64),
    st.integers(0, 2**2048 - 1),
    _logs,
)
def test_receipt_encoding_is_py_evms(
    type_id: int | None,
    status: bytes,
    gas_used: int,
    bloom: int,
    logs: list[tuple[bytes, list[int], bytes]],
) -> None:
    inner = Receipt(status, gas_used, [Log(a, tuple(t), d) for a, t, d in logs], bloom)
    receipt = inner if type_id is None else PragueTypedReceipt(type_id, inner)
    assert encode_receipt(receipt) == receipt.encode()
