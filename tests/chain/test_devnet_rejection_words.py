"""A transaction the devnet refuses for want of funds names its sender as people write it.

py-evm says ``Sender b'wl)\\x82secA…' cannot afford txn gas``: the 20 bytes' repr, which a user
who sent from ``reef fn deploy --key <unfunded>`` cannot match to any account of theirs.
"""

from __future__ import annotations

from eth_account import Account
from eth_utils.exceptions import ValidationError

from reef.chain import DEVNET_CHAIN_ID, Devnet
from reef.chain.devnet._types import rejection
from reef.errors import ReefError


def test_a_refusal_names_the_sender_by_its_address() -> None:
    sender = bytes.fromhex("776c29827365634163c2a9b0d84e1a5f2e3d4c5b")
    fault = rejection(
        ValidationError(f"Sender {sender!r} cannot afford txn gas 21000 with account balance 0")
    )
    assert "insufficient funds" in fault.message
    assert f"sender 0x{sender.hex()}" in fault.message
    assert "b'" not in fault.message


def test_an_unfunded_key_sees_its_own_address(tmp_path: object) -> None:
    devnet = Devnet()
    poor = Account.create()
    fields = {
        "chainId": DEVNET_CHAIN_ID,
        "nonce": 0,
        "gas": 21000,
        "to": "0x" + "22" * 20,
        "value": 0,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 10**9,
    }
    raw = bytes(Account.sign_transaction(fields, poor.key).raw_transaction)
    try:
        devnet.send_raw_transaction(raw)
    except ReefError as exc:
        said = exc.message
    else:
        raise AssertionError("an unfunded sender's transaction was accepted")
    assert "insufficient funds" in said
    assert poor.address.lower() in said.lower()
    assert "b'" not in said
