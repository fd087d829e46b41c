"""The devnet engine: dev accounts, wall-clock blocks, test controls, snapshots, validation,
execution and gas estimation, driven in process through web3.py and the Python API."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pytest
import rlp
import vyper
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3RPCError

from reef.chain import DEV_MNEMONIC, DEVNET_CHAIN_ID, Devnet, TxRequest, dev_accounts
from reef.chain.devnet._types import DevnetFault, ExecutionReverted
from reef.errors import ContractRevertError, InputError
from reef.testing import ManualWallClock

# hardhat's and anvil's published dev accounts for DEV_MNEMONIC (printed by `hardhat node` and
# in their docs): an independent statement of what BIP-39/BIP-44 derivation must give.
HARDHAT_ACCOUNTS = [
    (
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    ),
    (
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    ),
    (
        "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
        "2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
    ),
]

PROBE_SOURCE = """# pragma version 0.4.3
event Poked:
    who: indexed(address)
    value: uint256

value: public(uint256)
total: public(uint256)

@view
@external
def clock() -> (uint256, uint256):
    return block.timestamp, block.number

@external
def poke(v: uint256):
    assert v != 13, "unlucky number"
    self.value = v
    log Poked(who=msg.sender, value=v)

@external
def clear():
    self.value = 0

@external
def work(n: uint256):
    for i: uint256 in range(n, bound=500):
        self.total += i

@external
def forward(target: address, v: uint256):
    extcall Probe(target).poke(v)

@external
@payable
def pay():
    pass

interface Probe:
    def poke(v: uint256): nonpayable
"""


@pytest.fixture(scope="module")
def probe_artifact() -> dict[str, Any]:
    out = vyper.compile_code(PROBE_SOURCE, output_formats=["abi", "bytecode"])
    return {"abi": out["abi"], "bytecode": out["bytecode"]}


T0 = 1_800_000_000


@pytest.fixture
def clock() -> ManualWallClock:
    return ManualWallClock(T0 + 0.25)


@pytest.fixture
def devnet(clock: ManualWallClock) -> Devnet:
    return Devnet(clock=clock)


@dataclass
class Deployed:
    devnet: Devnet
    w3: Web3
    contract: Any
    sender: str


def deploy_probe(devnet: Devnet, artifact: dict[str, Any]) -> Deployed:
    w3 = devnet.web3()
    sender = devnet.accounts[0].address
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor().transact({"from": sender}))
    contract = w3.eth.contract(address=receipt.contractAddress, abi=artifact["abi"])
    return Deployed(devnet, w3, contract, sender)


@pytest.fixture
def probe(devnet: Devnet, probe_artifact: dict[str, Any]) -> Deployed:
    return deploy_probe(devnet, probe_artifact)


def raw_transfer(
    devnet: Devnet, *, index: int = 0, nonce: int = 0, chain_id: int = DEVNET_CHAIN_ID, **extra: Any
) -> bytes:
    fields: dict[str, Any] = {
        "chainId": chain_id,
        "nonce": nonce,
        "gas": 21000,
        "to": "0x" + "22" * 20,
        "value": 1,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 10**9,
    }
    fields.update(extra)
    key = devnet.accounts[index].private_key
    return bytes(Account.sign_transaction(fields, key).raw_transaction)


# ------------------------------------------------------------------------------ accounts


def test_dev_accounts_are_hardhats_published_accounts() -> None:
    accounts = dev_accounts(10)
    for account, (address, key) in zip(
        [accounts[0], accounts[1], accounts[9]], HARDHAT_ACCOUNTS, strict=True
    ):
        assert account.address == address
        assert account.private_key.hex() == key
        assert account.local_account.address == address
    assert DEV_MNEMONIC.split()[-1] == "junk"
    assert "private_key" not in repr(accounts[0])
    assert key not in repr(accounts[0])


@pytest.mark.parametrize("count", [0, 1001])
def test_dev_account_count_is_bounded(count: int) -> None:
    with pytest.raises(InputError, match="between 1 and 1000"):
        dev_accounts(count)


def test_invalid_mnemonic_is_an_input_error() -> None:
    with pytest.raises(InputError, match="BIP-39"):
        dev_accounts(1, mnemonic="not a real mnemonic at all")


def test_genesis_funds_dev_accounts_on_chain_31337(devnet: Devnet) -> None:
    w3 = devnet.web3()
    assert w3.eth.chain_id == 31337 == DEVNET_CHAIN_ID
    assert w3.eth.accounts == [a.address for a in devnet.accounts]
    assert len(devnet.accounts) == 10
    for account in devnet.accounts:
        assert w3.eth.get_balance(account.address) == 10_000 * 10**18
    genesis = w3.eth.get_block(0)
    assert genesis.number == 0
    assert genesis.timestamp == T0


def test_other_chain_ids_and_account_counts(clock: ManualWallClock) -> None:
    devnet = Devnet(chain_id=1337, accounts=3, balance_wei=5, clock=clock)
    w3 = devnet.web3()
    assert w3.eth.chain_id == 1337
    assert [w3.eth.get_balance(a.address) for a in devnet.accounts] == [5, 5, 5]
    with pytest.raises(InputError):
        Devnet(chain_id=0)


# ------------------------------------------------------------------------------ the clock


def test_each_transaction_gets_its_own_block_at_wall_clock_time(
    devnet: Devnet, clock: ManualWallClock
) -> None:
    w3 = devnet.web3()
    a, b = devnet.accounts[0].address, devnet.accounts[1].address
    clock.now = T0 + 100.9
    first = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": a, "to": b, "value": 1})
    )
    assert first.blockNumber == 1
    assert w3.eth.get_block(1).timestamp == T0 + 100  # the wall clock, floored
    clock.now = T0 + 3600
    second = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": a, "to": b, "value": 1})
    )
    assert second.blockNumber == 2
    assert w3.eth.get_block(2).timestamp == T0 + 3600
    assert len(w3.eth.get_block(2).transactions) == 1


def _burst(devnet: Devnet, clock: ManualWallClock) -> None:
    """Three transactions (blocks 1 to 3) within the wall clock's second T0 + 10."""
    clock.now = T0 + 10
    for nonce in range(3):
        devnet.send_raw_transaction(raw_transfer(devnet, nonce=nonce))


def test_a_burst_in_one_second_runs_ahead_then_falls_back_to_the_clock(
    devnet: Devnet, clock: ManualWallClock
) -> None:
    _burst(devnet, clock)
    stamps = [devnet.block(n).timestamp for n in (1, 2, 3)]  # type: ignore[union-attr]
    assert stamps == [T0 + 10, T0 + 11, T0 + 12]  # strictly increasing, as Ethereum requires
    clock.now = T0 + 60
    devnet.send_raw_transaction(raw_transfer(devnet, nonce=3))
    assert devnet.head.timestamp == T0 + 60


def test_increase_time_moves_every_later_block(devnet: Devnet, clock: ManualWallClock) -> None:
    w3 = devnet.web3()
    assert w3.provider.make_request("evm_increaseTime", [3600])["result"] == 3600
    assert w3.provider.make_request("evm_increaseTime", ["0x3c"])["result"] == 3660
    assert devnet.block_number == 0  # increasing time mines nothing
    assert w3.provider.make_request("evm_mine", [])["result"] == "0x0"
    assert devnet.head.timestamp == T0 + 3660
    clock.now += 5
    devnet.mine()
    assert devnet.head.timestamp == T0 + 3665
    assert devnet.time_offset == 3660
    with pytest.raises(InputError, match="at least 0"):
        devnet.increase_time(-1)


def test_increase_time_counts_from_a_head_that_ran_ahead(
    devnet: Devnet, clock: ManualWallClock
) -> None:
    _burst(devnet, clock)
    assert devnet.head.timestamp == T0 + 12  # two seconds ahead of the wall clock
    devnet.increase_time(100)
    devnet.mine()
    assert devnet.head.timestamp == T0 + 112  # 100 s after the chain's now, not the wall's


def test_set_next_block_timestamp_then_time_continues_from_there(
    devnet: Devnet, clock: ManualWallClock
) -> None:
    w3 = devnet.web3()
    target = T0 + 86_400
    assert w3.provider.make_request("evm_setNextBlockTimestamp", [target])["result"] is None
    devnet.send_raw_transaction(raw_transfer(devnet))
    assert devnet.head.timestamp == target
    clock.now += 7
    devnet.mine()
    assert devnet.head.timestamp == target + 7
    error = w3.provider.make_request("evm_setNextBlockTimestamp", [target])["error"]
    assert error["code"] == -32602
    assert "must be after" in error["message"]


def test_evm_mine_with_a_timestamp_and_several_blocks(devnet: Devnet) -> None:
    w3 = devnet.web3()
    w3.provider.make_request("evm_mine", [T0 + 500])
    assert devnet.head.timestamp == T0 + 500
    w3.provider.make_request("evm_mine", [{"blocks": 3}])
    assert devnet.block_number == 4
    assert [devnet.block(n).timestamp for n in (2, 3, 4)] == [  # type: ignore[union-attr]
        T0 + 501,
        T0 + 502,
        T0 + 503,
    ]
    assert w3.provider.make_request("evm_mine", [{"blocks": 0}])["error"]["code"] == -32602


def test_calls_at_latest_see_the_next_block_at_wall_clock_time(
    probe: Deployed, clock: ManualWallClock
) -> None:
    clock.now = T0 + 1000.5
    timestamp, number = probe.contract.functions.clock().call()
    assert (timestamp, number) == (T0 + 1000, probe.devnet.block_number + 1)
    probe.devnet.increase_time(50)
    assert probe.contract.functions.clock().call()[0] == T0 + 1050
    # An explicit block runs in that block's own context, as geth does.
    head = probe.devnet.head
    assert probe.contract.functions.clock().call(block_identifier=head.number) == [
        head.timestamp,
        head.number,
    ]


# --------------------------------------------------------------------------- snapshots


def test_revert_forgets_blocks_transactions_logs_and_clock_changes(probe: Deployed) -> None:
    devnet, w3, contract = probe.devnet, probe.w3, probe.contract
    contract.functions.poke(1).transact({"from": probe.sender})
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    head = devnet.head
    balance = w3.eth.get_balance(probe.sender)
    tx = contract.functions.poke(2).transact({"from": probe.sender})
    devnet.increase_time(1000)
    assert contract.functions.value().call() == 2
    assert len(contract.events.Poked.get_logs(from_block=0)) == 2

    assert w3.provider.make_request("evm_revert", [snapshot])["result"] is True
    assert devnet.head.hash == head.hash
    assert contract.functions.value().call() == 1
    assert w3.eth.get_balance(probe.sender) == balance
    assert w3.provider.make_request("eth_getTransactionReceipt", [tx.to_0x_hex()])["result"] is None
    assert len(contract.events.Poked.get_logs(from_block=0)) == 1
    assert devnet.time_offset == 0
    # A snapshot is used up by its revert.
    assert w3.provider.make_request("evm_revert", [snapshot])["result"] is False
    # New blocks build on the reverted head.
    contract.functions.poke(3).transact({"from": probe.sender})
    assert devnet.block(head.number + 1).header.parent_hash == head.hash  # type: ignore[union-attr]
    assert contract.functions.value().call() == 3


def test_nested_snapshots_and_reverting_an_outer_one_drops_inner_ones(probe: Deployed) -> None:
    devnet, contract = probe.devnet, probe.contract
    outer = devnet.snapshot()
    contract.functions.poke(5).transact({"from": probe.sender})
    inner = devnet.snapshot()
    contract.functions.poke(6).transact({"from": probe.sender})
    assert devnet.revert(inner) is True
    assert contract.functions.value().call() == 5
    again = devnet.snapshot()
    assert devnet.revert(outer) is True
    assert contract.functions.value().call() == 0
    assert devnet.revert(again) is False
    assert devnet.revert(12345) is False


# -------------------------------------------------------------------------- validation


def test_a_transaction_signed_for_another_chain_is_refused(devnet: Devnet) -> None:
    with pytest.raises(DevnetFault, match="invalid chain id for signer: have 1 want 31337"):
        devnet.send_raw_transaction(raw_transfer(devnet, chain_id=1))
    assert devnet.block_number == 0


def test_duplicates_nonces_funds_and_garbage_are_refused(devnet: Devnet) -> None:
    raw = raw_transfer(devnet)
    devnet.send_raw_transaction(raw)
    with pytest.raises(DevnetFault, match="already known"):
        devnet.send_raw_transaction(raw)
    with pytest.raises(DevnetFault, match="nonce too low"):
        devnet.send_raw_transaction(raw_transfer(devnet, value=2))
    with pytest.raises(DevnetFault, match="nonce too high"):
        devnet.send_raw_transaction(raw_transfer(devnet, nonce=5))
    with pytest.raises(DevnetFault, match="insufficient funds"):
        devnet.send_raw_transaction(raw_transfer(devnet, nonce=1, value=10**30))
    with pytest.raises(DevnetFault, match="could not be decoded"):
        devnet.send_raw_transaction(b"\x02\xff\x00")
    with pytest.raises(DevnetFault, match="blob transactions"):
        devnet.send_raw_transaction(b"\x03" + b"\x00" * 10)
    with pytest.raises(DevnetFault, match="empty"):
        devnet.send_raw_transaction(b"")
    with pytest.raises(DevnetFault, match="max priority fee per gas higher than max fee"):
        devnet.send_raw_transaction(raw_transfer(devnet, nonce=1, maxPriorityFeePerGas=10**11))
    with pytest.raises(DevnetFault, match="intrinsic gas too low"):
        devnet.send_raw_transaction(raw_transfer(devnet, nonce=1, gas=20000))
    fields = rlp.decode(raw_transfer(devnet, nonce=1)[1:])
    fields[-3] = b"\x05"  # a y-parity that is neither 0 nor 1
    with pytest.raises(DevnetFault, match="invalid transaction signature"):
        devnet.send_raw_transaction(b"\x02" + rlp.encode(fields))
    assert devnet.block_number == 1  # nothing refused was mined


def test_legacy_and_access_list_transactions_are_mined(devnet: Devnet) -> None:
    w3 = devnet.web3()
    fields = {
        "chainId": DEVNET_CHAIN_ID,
        "nonce": 0,
        "gas": 21000,
        "to": "0x" + "22" * 20,
        "value": 1,
        "gasPrice": 10**10,
    }
    legacy = bytes(Account.sign_transaction(fields, devnet.accounts[0].private_key).raw_transaction)
    access = bytes(
        Account.sign_transaction(
            {**fields, "nonce": 1, "gas": 30000, "accessList": [], "type": 1},
            devnet.accounts[0].private_key,
        ).raw_transaction
    )
    for raw in (legacy, access):
        receipt = w3.eth.get_transaction_receipt(devnet.send_raw_transaction(raw))
        assert receipt.status == 1
    assert w3.eth.get_transaction(w3.eth.get_block(1).transactions[0]).type == 0
    assert w3.eth.get_transaction(w3.eth.get_block(2).transactions[0]).type == 1
    assert w3.eth.get_balance("0x" + "22" * 20) == 2


def test_dev_account_sending_fills_nonce_gas_and_fees(devnet: Devnet) -> None:
    sender = bytes.fromhex(devnet.accounts[3].address[2:])
    tx_hash = devnet.send_transaction(TxRequest(sender=sender, to=b"\x44" * 20, value=7))
    block, index = devnet.transaction(tx_hash)  # type: ignore[misc]
    tx = block.transactions[index]
    assert tx.type_id == 2
    assert tx.gas == 21000
    assert tx.nonce == 0
    assert tx.max_priority_fee_per_gas == 10**9
    with pytest.raises(DevnetFault, match="unknown account"):
        devnet.send_transaction(TxRequest(sender=b"\x55" * 20, to=b"\x44" * 20))
    legacy = devnet.send_transaction(TxRequest(sender=sender, to=b"\x44" * 20, gas_price=10**10))
    block, index = devnet.transaction(legacy)  # type: ignore[misc]
    assert block.transactions[index].type_id is None  # a legacy transaction


# --------------------------------------------------------------------------- execution


def test_a_reverting_transaction_is_mined_with_status_0(probe: Deployed) -> None:
    w3, contract = probe.w3, probe.contract
    tx = contract.functions.poke(13).build_transaction({"from": probe.sender, "gas": 100_000})
    tx_hash = w3.eth.send_transaction(tx)
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    assert receipt.status == 0
    assert receipt.blockNumber == probe.devnet.block_number
    assert receipt.logs == []


def test_reverts_carry_the_reason_and_data(probe: Deployed) -> None:
    with pytest.raises(ContractLogicError, match="unlucky number") as caught:
        probe.contract.functions.poke(13).call()
    assert caught.value.data is not None
    assert caught.value.data.startswith("0x08c379a0")
    request = TxRequest(
        to=bytes.fromhex(probe.contract.address[2:]),
        data=bytes.fromhex(probe.contract.encode_abi("poke", [13])[2:]),
    )
    with pytest.raises(ExecutionReverted) as reverted:
        probe.devnet.call(request)
    assert isinstance(reverted.value, ContractRevertError)
    assert reverted.value.reason == "unlucky number"
    assert reverted.value.code == 3
    # Sending through a dev account estimates first, so the revert surfaces before mining.
    with pytest.raises(ContractLogicError, match="unlucky number"):
        probe.contract.functions.poke(13).transact({"from": probe.sender})


def test_logs_are_indexed_and_filtered(probe: Deployed) -> None:
    w3, contract, devnet = probe.w3, probe.contract, probe.devnet
    other = devnet.accounts[1].address
    contract.functions.poke(1).transact({"from": probe.sender})
    contract.functions.poke(2).transact({"from": other})
    contract.functions.poke(3).transact({"from": probe.sender})
    events = contract.events.Poked.get_logs(from_block=0)
    assert [e.args.value for e in events] == [1, 2, 3]
    mine = contract.events.Poked.get_logs(from_block=0, argument_filters={"who": other})
    assert [e.args.value for e in mine] == [2]
    assert [e.logIndex for e in events] == [0, 0, 0]
    receipt = w3.eth.get_transaction_receipt(events[1].transactionHash)
    assert receipt.logs[0].blockHash == events[1].blockHash


def test_gas_estimates_are_minimal(probe: Deployed, probe_artifact: dict[str, Any]) -> None:
    devnet, contract = probe.devnet, probe.contract
    sender = bytes.fromhex(probe.sender[2:])
    to = bytes.fromhex(contract.address[2:])
    contract.functions.poke(9).transact({"from": probe.sender})
    other = deploy_probe(devnet, probe_artifact)
    cases = [
        contract.encode_abi("poke", [7]),
        contract.encode_abi("clear", []),  # a storage refund: gas needed > gas used
        contract.encode_abi("work", [200]),
        contract.encode_abi("forward", [other.contract.address, 4]),  # the 63/64 rule
    ]
    for payload in cases:
        request = TxRequest(sender=sender, to=to, data=bytes.fromhex(payload[2:]))
        estimate = devnet.estimate_gas(request)
        devnet.call(TxRequest(sender=sender, to=to, data=request.data, gas=estimate))
        with pytest.raises(DevnetFault):
            devnet.call(TxRequest(sender=sender, to=to, data=request.data, gas=estimate - 1))


def test_value_transfers_and_eth_call_errors(probe: Deployed) -> None:
    w3, contract = probe.w3, probe.contract
    contract.functions.pay().transact({"from": probe.sender, "value": 12345})
    assert w3.eth.get_balance(contract.address) == 12345
    poor = "0x" + "77" * 20
    with pytest.raises(Web3RPCError, match="insufficient funds"):
        w3.eth.call({"from": poor, "to": contract.address, "value": 1, "data": "0x"})
    with pytest.raises(Web3RPCError, match="gas required exceeds allowance"):
        contract.functions.work(400).call({"gas": 50_000})


def test_storage_code_and_nonce_at_past_blocks(probe: Deployed) -> None:
    w3, contract, devnet = probe.w3, probe.contract, probe.devnet
    before = devnet.block_number
    contract.functions.poke(42).transact({"from": probe.sender})
    assert int.from_bytes(w3.eth.get_storage_at(contract.address, 0), "big") == 42
    assert int.from_bytes(w3.eth.get_storage_at(contract.address, 0, before), "big") == 0
    assert w3.eth.get_code(contract.address, 0) == b""
    assert len(w3.eth.get_code(contract.address)) > 0
    assert w3.eth.get_transaction_count(probe.sender, before) + 1 == w3.eth.get_transaction_count(
        probe.sender
    )


# ---------------------------------------------------------------------------- threads


def test_concurrent_senders_are_serialised_by_the_lock(devnet: Devnet) -> None:
    many_threads = 6
    errors: list[BaseException] = []

    def send(index: int) -> None:
        try:
            for nonce in range(5):
                devnet.send_raw_transaction(raw_transfer(devnet, index=index, nonce=nonce))
                devnet.balance(b"\x22" * 20)
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(many_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert devnet.block_number == 5 * many_threads
    assert devnet.balance(b"\x22" * 20) == 5 * many_threads
    numbers = [devnet.block(n).number for n in range(devnet.block_number + 1)]  # type: ignore[union-attr]
    assert numbers == list(range(devnet.block_number + 1))


def test_timestamps_stay_within_64_bits(devnet: Devnet) -> None:
    with pytest.raises(InputError, match="2\\*\\*64-1"):
        devnet.increase_time(2**64)
    with pytest.raises(InputError, match="2\\*\\*64-1"):
        devnet.set_next_block_timestamp(2**64)
    devnet.set_next_block_timestamp(2**64 - 1)
    devnet.mine()
    assert devnet.head.timestamp == 2**64 - 1
    with pytest.raises(DevnetFault, match="largest block timestamp"):
        devnet.mine()


def test_web3_reads_every_shape_the_devnet_answers(probe: Deployed) -> None:
    """web3.py's result formatters accept each answer (they raise on a malformed field)."""
    w3, contract, devnet = probe.w3, probe.contract, probe.devnet
    blocks = w3.eth.filter("latest")
    pokes = contract.events.Poked.create_filter(from_block="latest")
    tx_hash = contract.functions.poke(8).transact({"from": probe.sender})
    assert blocks.get_new_entries() == [w3.eth.get_block("latest").hash]
    assert [e.args.value for e in pokes.get_new_entries()] == [8]
    assert w3.eth.get_block("latest", full_transactions=True).transactions[0].hash == tx_hash
    assert w3.eth.get_block("pending").number == devnet.block_number + 1
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    assert receipt.effectiveGasPrice > 0
    assert w3.eth.max_priority_fee == 10**9
    assert w3.eth.gas_price == devnet.next_base_fee() + 10**9
    history = w3.eth.fee_history(2, "latest", [50])
    assert len(history.baseFeePerGas) == 3
    assert w3.eth.get_block_transaction_count("latest") == 1
    signature = w3.eth.sign(probe.sender, text="reef")
    assert len(signature) == 65
    assert w3.eth.syncing is False
    assert w3.net.version == "31337"
    assert w3.eth.uninstall_filter(blocks.filter_id) is True
    with w3.batch_requests() as batch:  # the in-process provider batches too
        batch.add(w3.eth.get_block(0))
        batch.add(w3.eth.get_balance(probe.sender))
        genesis, balance = batch.execute()
    assert genesis["number"] == 0
    assert balance == w3.eth.get_balance(probe.sender)
