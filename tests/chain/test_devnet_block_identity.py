"""The devnet's blocks are byte for byte what they were before its execution was sped up: a
journal written by an earlier reef must replay (every block's hash is checked), so a faster
way of building blocks may not change one bit of them.

The head hash below was computed by reef before the speed work of issue 14 (commit b841c65:
py-evm's ``mine_block`` with its validation, signature checked twice), for the same chain:
reef's contracts deployed at a pinned clock, five transfers seven seconds apart, a time jump
and an empty block.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from eth_account import Account

from reef.chain import DEVNET_CHAIN_ID, Devnet
from reef.home import ReefHome

HEAD_NUMBER = 19
HEAD_HASH = "b8e11983eefaad84abfa0e47c8df12c3b98d9522a7f6ca1963f79354fe2f8287"


def test_a_known_chain_builds_the_same_blocks_and_replays(reef_home: Path) -> None:
    home = ReefHome(reef_home)
    now = [1_800_000_000.0]
    with Devnet.open(home, fresh=True, clock=lambda: now[0]) as devnet:
        sender = devnet.accounts[3]
        for n in range(5):
            now[0] += 7
            raw = Account.sign_transaction(
                {
                    "chainId": DEVNET_CHAIN_ID,
                    "nonce": devnet.nonce(bytes.fromhex(sender.address[2:])),
                    "gas": 21000,
                    "to": "0x" + "33" * 20,
                    "value": n + 1,
                    "maxFeePerGas": 10**10,
                    "maxPriorityFeePerGas": 10**9,
                },
                sender.private_key,
            ).raw_transaction
            devnet.send_raw_transaction(bytes(raw))
        devnet.increase_time(100)
        devnet.mine()
        assert devnet.block_number == HEAD_NUMBER
        assert devnet.head.hash.hex() == HEAD_HASH
    (home.chain / "checkpoint.bin").unlink()  # replay the journal itself, block by block
    with Devnet.open(home, clock=lambda: now[0] + 1000) as devnet:
        assert devnet.head.hash.hex() == HEAD_HASH


def test_the_next_header_is_the_one_py_evm_makes() -> None:
    """Chain._next_header (a template with the parent-dependent fields set) against py-evm's
    create_header_from_parent, after empty blocks and transfers (the base fee falls) and a
    deployment using more than the gas target (it rises)."""
    now = [1_800_000_000.0]
    devnet = Devnet(clock=lambda: now[0])
    sender = devnet.accounts[0]
    # Initcode touching memory at 3 MiB: about 19M gas, over the 15M target, so the next base
    # fee rises (PUSH1 1, PUSH4 0x300000, MSTORE, STOP).
    big = "0x600163003000005200"
    steps: list[dict[str, object]] = [
        {"to": None, "data": big, "gas": 20_000_000},
        {"to": "0x" + "44" * 20, "data": "0x", "gas": 21_000},
        {"to": None, "data": big, "gas": 20_000_000},
    ]
    fees: list[int] = []
    for round_ in range(3):
        for step in [*steps, None]:
            now[0] += 3
            if step is None:
                devnet.mine()
            else:
                fields = {
                    "chainId": DEVNET_CHAIN_ID,
                    "nonce": devnet.nonce(bytes.fromhex(sender.address[2:])),
                    "value": 0,
                    "maxFeePerGas": 10**11,
                    "maxPriorityFeePerGas": 10**9,
                    **step,
                }
                if fields["to"] is None:
                    del fields["to"]
                raw = Account.sign_transaction(fields, sender.private_key).raw_transaction
                devnet.send_raw_transaction(bytes(raw))
            parent = devnet.head.header
            for timestamp, mix in ((parent.timestamp + 1, b"\x01" * 32), (2**40, b"\x00" * 32)):
                ours = devnet._next_header(parent, timestamp, mix)
                theirs = devnet._chain.create_header_from_parent(
                    parent, timestamp=timestamp, mix_hash=mix
                )
                assert type(ours) is type(theirs)
                assert ours.as_dict() == theirs.as_dict(), round_
                assert ours.hash == theirs.hash
            assert devnet.next_base_fee() == theirs.base_fee_per_gas
            fees.append(int(parent.base_fee_per_gas))
    # The base fee moved both ways, so both branches of its rule were compared.
    assert any(b > a for a, b in itertools.pairwise(fees))
    assert any(b < a for a, b in itertools.pairwise(fees))
