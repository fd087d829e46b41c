"""Reads of a block's state (balance, nonce, code, storage) run on a state kept for that block:
each answers what a state built for it alone answers, at the head and at past blocks, across
new blocks, reverts and re-mined blocks."""

from __future__ import annotations

import random
from typing import Any

from eth_account import Account
from eth_hash.auto import keccak

from reef.chain.devnet._engine import Chain

# Stores calldata[32:64] at slot calldata[0:32].
STORE = bytes.fromhex("60203560003555")
INITCODE = bytes.fromhex(f"60{len(STORE):02x}80600b6000396000f3") + STORE


def _send(chain: Chain, to: bytes | None, data: bytes, value: int) -> None:
    account = chain.accounts[0]
    fields: dict[str, Any] = {
        "chainId": chain.chain_id,
        "nonce": chain.nonce(bytes.fromhex(account.address[2:])),
        "gas": 200_000,
        "value": value,
        "data": data,
        "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 10**9,
    }
    if to is not None:
        fields["to"] = to
    chain.send_raw_transaction(
        bytes(Account.sign_transaction(fields, account.private_key).raw_transaction)
    )


def _fresh(chain: Chain, number: int) -> Any:
    block = chain.block(number)
    assert block is not None
    return chain._chain.get_vm(at_header=block.header).state


def test_reads_on_the_kept_state_answer_as_on_a_fresh_one() -> None:
    chain = Chain(accounts=1, clock=lambda: 1_800_000_000.0)
    sender = bytes.fromhex(chain.accounts[0].address[2:])
    _send(chain, None, INITCODE, 0)
    contract = keccak(bytes([0xD6, 0x94]) + sender + b"\x80")[12:]
    assert chain.code(contract) == STORE
    sinks = [bytes([n + 1]) * 20 for n in range(5)]
    rng = random.Random(7)
    snapshots: list[int] = []
    kept = set()
    for _ in range(40):
        op = rng.choice(["pay", "store", "store", "snap", "revert"])
        if op == "pay":
            _send(chain, rng.choice(sinks), b"", rng.randrange(1, 1000))
        elif op == "store":
            slot, value = rng.randrange(4), rng.randrange(3)
            _send(chain, contract, slot.to_bytes(32, "big") + value.to_bytes(32, "big"), 0)
        elif op == "snap":
            snapshots.append(chain.snapshot())
        elif snapshots:
            assert chain.revert(snapshots.pop(rng.randrange(len(snapshots))))
            snapshots.clear()
        for number in (chain.block_number, rng.randrange(chain.block_number + 1)):
            fresh = _fresh(chain, number)
            used = []
            for _ in range(2):  # twice: the second read is on the kept state
                for who in (*sinks, sender, contract):
                    assert chain.balance(who, number) == fresh.get_balance(who)
                    assert chain.nonce(who, number) == fresh.get_nonce(who)
                    assert chain.code(who, number) == fresh.get_code(who)
                for slot in range(4):
                    assert chain.storage(contract, slot, number) == fresh.get_storage(
                        contract, slot
                    )
                assert chain._read_state is not None
                kept.add(id(chain._read_state[1]))
                used.append(chain._read_state[1])
            assert used[0] is used[1]
    assert len(kept) > 10  # a state was made for each block read
