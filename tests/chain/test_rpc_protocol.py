"""The JSON-RPC dispatcher without HTTP: the JSON-RPC 2.0 envelope and error codes, every
method's shape (checked against eth-account, eth-utils, eth-bloom and reef.crypto rather than
against itself), logs and polling filters, fee history, and dev-account signing."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rlp
import vyper
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_bloom import BloomFilter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3.utils.address import get_create_address

from reef.chain import DEVNET_CHAIN_ID, Devnet
from reef.chain.devnet._rpc import FILTER_TIMEOUT_S, MAX_BATCH, DevnetRpc
from reef.crypto import (
    eip191_digest,
    eip712_digest,
    eip712_domain_separator,
    keccak256,
    recover_digest,
)
from reef.testing import ManualWallClock

EMITTER = """# pragma version 0.4.3
event Note:
    tag: indexed(bytes32)
    who: indexed(address)
    amount: uint256

@external
def note(tag: bytes32, amount: uint256):
    log Note(tag=tag, who=msg.sender, amount=amount)

@external
def fail():
    raise "always fails"
"""

# These REQUIRED methods are what the issue and the wallets need; the dispatcher must have them.
REQUIRED = [
    "web3_clientVersion",
    "net_version",
    "eth_chainId",
    "eth_blockNumber",
    "eth_accounts",
    "eth_getBalance",
    "eth_getTransactionCount",
    "eth_getCode",
    "eth_getStorageAt",
    "eth_call",
    "eth_estimateGas",
    "eth_gasPrice",
    "eth_maxPriorityFeePerGas",
    "eth_feeHistory",
    "eth_sendRawTransaction",
    "eth_sendTransaction",
    "eth_getTransactionByHash",
    "eth_getTransactionReceipt",
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
    "eth_getLogs",
    "eth_newFilter",
    "eth_newBlockFilter",
    "eth_getFilterChanges",
    "eth_uninstallFilter",
    "evm_increaseTime",
    "evm_setNextBlockTimestamp",
    "evm_mine",
    "evm_snapshot",
    "evm_revert",
]


class Client:
    """Speaks JSON-RPC objects to a dispatcher, as an HTTP client would (minus the socket)."""

    def __init__(self, rpc: DevnetRpc) -> None:
        self.rpc = rpc
        self.counter = 0

    def raw(self, method: str, *params: Any) -> dict[str, Any]:
        self.counter += 1
        request = {"jsonrpc": "2.0", "id": self.counter, "method": method, "params": list(params)}
        answer = self.rpc.handle(json.loads(json.dumps(request)))
        assert answer["id"] == self.counter
        return answer  # type: ignore[no-any-return]

    def __call__(self, method: str, *params: Any) -> Any:
        answer = self.raw(method, *params)
        assert "error" not in answer, answer
        return answer["result"]

    def error(self, method: str, *params: Any) -> dict[str, Any]:
        answer = self.raw(method, *params)
        assert "result" not in answer, answer
        return answer["error"]  # type: ignore[no-any-return]


@pytest.fixture
def devnet() -> Devnet:
    return Devnet()


@pytest.fixture
def monotonic() -> ManualWallClock:
    return ManualWallClock(0.0)


@pytest.fixture
def call(devnet: Devnet, monotonic: ManualWallClock) -> Client:
    return Client(DevnetRpc(devnet, monotonic=monotonic))


# A 1-wei transfer from dev account 0; sign() and sign_legacy() add the fee fields.
TRANSFER: dict[str, Any] = {
    "chainId": DEVNET_CHAIN_ID,
    "nonce": 0,
    "gas": 21000,
    "to": "0x" + "22" * 20,
    "value": 1,
}


def sign(devnet: Devnet, index: int = 0, **fields: Any) -> Any:
    fees = {"maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9}
    return Account.sign_transaction(
        {**TRANSFER, **fees, **fields}, devnet.accounts[index].private_key
    )


def sign_legacy(devnet: Devnet, **fields: Any) -> Any:
    """Like :func:`sign`, for a legacy (type 0, EIP-155) transaction: a gas price, no fee caps."""
    fees = {"gasPrice": 3 * 10**9}
    return Account.sign_transaction({**TRANSFER, **fees, **fields}, devnet.accounts[0].private_key)


@pytest.fixture(scope="module")
def emitter_code() -> dict[str, Any]:
    out = vyper.compile_code(EMITTER, output_formats=["abi", "bytecode"])
    return {"abi": out["abi"], "bytecode": out["bytecode"]}


def deploy_emitter(devnet: Devnet, call: Client, code: dict[str, Any]) -> str:
    sender = devnet.accounts[0].address
    tx_hash = call("eth_sendTransaction", {"from": sender, "data": code["bytecode"]})
    receipt = call("eth_getTransactionReceipt", tx_hash)
    assert receipt["status"] == "0x1"
    return str(receipt["contractAddress"])


def note(
    devnet: Devnet, call: Client, address: str, tag: bytes, amount: int, index: int = 0
) -> str:
    w3 = devnet.web3()
    contract = w3.eth.contract(address=w3.to_checksum_address(address), abi=EMITTER_ABI)
    data = contract.encode_abi("note", [tag, amount])
    return str(
        call(
            "eth_sendTransaction",
            {"from": devnet.accounts[index].address, "to": address, "data": data},
        )
    )


EMITTER_ABI = [
    {
        "type": "function",
        "name": "note",
        "inputs": [{"name": "tag", "type": "bytes32"}, {"name": "amount", "type": "uint256"}],
        "outputs": [],
        "stateMutability": "nonpayable",
    }
]


# ---------------------------------------------------------------------------- the envelope


def test_every_required_method_is_served(call: Client) -> None:
    missing = set(REQUIRED) - set(call.rpc.methods)
    assert not missing


def test_parse_errors_and_invalid_requests(call: Client) -> None:
    rpc = call.rpc
    parse = json.loads(rpc.handle_bytes(b'{"jsonrpc": "2.0", "method"') or b"")
    assert parse["error"]["code"] == -32700
    assert parse["id"] is None
    cases: list[Any] = [
        42,
        "eth_chainId",
        {"jsonrpc": "1.0", "id": 1, "method": "eth_chainId"},
        {"id": 1, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": 1, "method": 7},
        {"jsonrpc": "2.0", "id": {"x": 1}, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": True, "method": "eth_chainId"},
    ]
    for case in cases:
        assert rpc.handle(case)["error"]["code"] == -32600, case
    by_name = rpc.handle({"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance", "params": {}})
    assert by_name["error"]["code"] == -32602
    assert rpc.handle([])["error"]["code"] == -32600
    too_many = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId"} for i in range(MAX_BATCH + 1)]
    assert rpc.handle(too_many)["error"]["code"] == -32600


def test_ids_are_echoed_and_notifications_get_no_answer(call: Client) -> None:
    rpc = call.rpc
    for ident in ("abc", 7, 1.5, None):
        answer = rpc.handle({"jsonrpc": "2.0", "id": ident, "method": "eth_chainId"})
        assert answer == {"jsonrpc": "2.0", "id": ident, "result": "0x7a69"}
    assert rpc.handle({"jsonrpc": "2.0", "method": "eth_chainId"}) is None
    assert rpc.handle({"jsonrpc": "2.0", "method": "no_such_method"}) is None
    assert rpc.handle_bytes(b'[{"jsonrpc": "2.0", "method": "eth_chainId"}]') is None


def test_a_batch_answers_each_request_in_order(call: Client) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "method": "eth_blockNumber"},  # a notification: no answer
        {"jsonrpc": "2.0", "id": 2, "method": "nope"},
        "garbage",
        {"jsonrpc": "2.0", "id": 3, "method": "net_version", "params": []},
    ]
    answers = call.rpc.handle(batch)
    assert [a["id"] for a in answers] == [1, 2, None, 3]
    assert answers[0]["result"] == "0x7a69"
    assert answers[1]["error"] == {
        "code": -32601,
        "message": "the method nope does not exist/is not available",
    }
    assert answers[2]["error"]["code"] == -32600
    assert answers[3]["result"] == "31337"


@pytest.mark.parametrize(
    ("method", "params", "fragment"),
    [
        ("eth_getBalance", [], "expected 1 to 2 parameters, got 0"),
        ("eth_getBalance", ["0x12"], "address must be 20 bytes, got 1"),
        ("eth_getBalance", ["f39fd6e51aad88f6f4ce6ab8827279cfffb92266"], "0x-prefixed"),
        ("eth_getBalance", ["0x" + "zz" * 20], "not valid hex"),
        ("eth_getBalance", ["0x" + "00" * 20, "newest"], "hex quantity"),
        ("eth_getBalance", ["0x" + "00" * 20, {"nothing": 1}], "blockHash or blockNumber"),
        ("eth_getBlockByNumber", [True], "hex quantity"),
        ("eth_getBlockByNumber", ["latest", "yes"], "true or false"),
        ("eth_getTransactionByHash", ["0x1234"], "must be 32 bytes"),
        ("eth_call", ["not an object"], "JSON object"),
        ("eth_call", [{"data": "0x00", "input": "0x01"}], "differ"),
        ("eth_call", [{"to": "0x" + "00" * 20}, "latest", {"0x00": {}}], "overrides"),
        ("eth_getLogs", [{"topics": [1, 2, 3, 4, 5]}], "at most 4"),
        ("eth_feeHistory", ["0x401", "latest"], "at most 1024"),
        ("eth_feeHistory", ["0x1", "latest", [50, 10]], "increasing"),
        ("evm_increaseTime", ["-5"], "hex quantity"),
    ],
)
def test_invalid_params_are_named(
    call: Client, method: str, params: list[Any], fragment: str
) -> None:
    error = call.error(method, *params)
    assert error["code"] == -32602
    assert fragment in error["message"]


def test_an_unexpected_failure_costs_one_request(
    call: Client, devnet: Devnet, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(devnet, "balance", broken)
    error = call.error("eth_getBalance", "0x" + "00" * 20)
    assert error == {"code": -32603, "message": "internal error"}
    assert call("eth_chainId") == "0x7a69"


def test_client_and_network_identity(call: Client) -> None:
    assert call("web3_clientVersion").startswith("reef-devnet/v")
    assert call("net_version") == "31337"
    assert call("eth_chainId") == hex(DEVNET_CHAIN_ID)
    assert call("net_listening") is True
    assert call("eth_syncing") is False
    assert call("web3_sha3", "0x68656c6c6f") == "0x" + keccak256(b"hello").hex()
    assert call("eth_accounts")[0] == "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"


# --------------------------------------------------------------------- blocks and receipts


def test_transaction_and_receipt_fields_match_what_was_signed(call: Client, devnet: Devnet) -> None:
    signed = sign(devnet, gas=30000, accessList=[{"address": "0x" + "33" * 20, "storageKeys": []}])
    tx_hash = call("eth_sendRawTransaction", "0x" + bytes(signed.raw_transaction).hex())
    assert tx_hash == "0x" + bytes(signed.hash).hex()
    tx = call("eth_getTransactionByHash", tx_hash)
    assert tx["from"] == devnet.accounts[0].address.lower()
    assert tx["to"] == "0x" + "22" * 20
    assert (tx["nonce"], tx["gas"], tx["value"], tx["type"]) == ("0x0", hex(30000), "0x1", "0x2")
    assert (tx["r"], tx["s"], tx["yParity"]) == (hex(signed.r), hex(signed.s), hex(signed.v))
    assert tx["accessList"] == [{"address": "0x" + "33" * 20, "storageKeys": []}]
    assert tx["chainId"] == "0x7a69"
    block = call("eth_getBlockByNumber", "latest", False)
    assert block["transactions"] == [tx_hash]
    assert tx["blockHash"] == block["hash"]
    receipt = call("eth_getTransactionReceipt", tx_hash)
    base_fee = int(block["baseFeePerGas"], 16)
    assert int(receipt["effectiveGasPrice"], 16) == min(10**10, base_fee + 10**9)
    assert int(receipt["gasUsed"], 16) == 21000 + 2400  # one access-list address
    assert receipt["cumulativeGasUsed"] == receipt["gasUsed"]
    assert receipt["status"] == "0x1"
    assert receipt["contractAddress"] is None
    assert call("eth_getTransactionByBlockNumberAndIndex", block["number"], "0x0") == tx
    assert call("eth_getTransactionByBlockHashAndIndex", block["hash"], "0x0") == tx
    assert call("eth_getTransactionByBlockNumberAndIndex", block["number"], "0x1") is None
    assert call("eth_getBlockTransactionCountByNumber", "latest") == "0x1"
    assert call("eth_getBlockTransactionCountByHash", block["hash"]) == "0x1"
    assert call("eth_getBlockReceipts", "latest") == [receipt]
    assert call("eth_getTransactionReceipt", "0x" + "00" * 32) is None
    assert call("eth_getTransactionByHash", "0x" + "00" * 32) is None


def test_legacy_transaction_fields(call: Client, devnet: Devnet) -> None:
    signed = sign_legacy(devnet)
    tx_hash = call("eth_sendRawTransaction", "0x" + bytes(signed.raw_transaction).hex())
    tx = call("eth_getTransactionByHash", tx_hash)
    assert (tx["type"], tx["v"], tx["gasPrice"]) == ("0x0", hex(signed.v), hex(3 * 10**9))
    assert signed.v == 2 * DEVNET_CHAIN_ID + 35 + (signed.v - 35) % 2  # EIP-155
    assert "maxFeePerGas" not in tx


def test_blocks_by_number_hash_and_tag(call: Client, devnet: Devnet) -> None:
    call("eth_sendRawTransaction", "0x" + bytes(sign(devnet).raw_transaction).hex())
    latest = call("eth_getBlockByNumber", "latest", True)
    assert latest["number"] == "0x1"
    assert call("eth_getBlockByHash", latest["hash"], True) == latest
    assert call("eth_getBlockByNumber", {"blockHash": latest["hash"]}, True) == latest
    assert (
        latest["transactions"][0]["hash"] == call("eth_getBlockByNumber", "0x1")["transactions"][0]
    )
    genesis = call("eth_getBlockByNumber", "earliest", False)
    assert latest["parentHash"] == genesis["hash"]
    assert genesis["transactions"] == []
    for key in ("logsBloom", "stateRoot", "miner", "mixHash", "baseFeePerGas", "size", "gasLimit"):
        assert key in latest
    assert latest["gasLimit"] == hex(30_000_000)
    assert len(latest["logsBloom"]) == 2 + 512
    assert call("eth_getBlockByNumber", "0x2", False) is None
    assert call("eth_getBlockByHash", "0x" + "00" * 32, False) is None
    error = call.error("eth_getBalance", "0x" + "00" * 20, "0x5")
    assert error["code"] == -32000
    assert "header not found" in error["message"]


def test_the_pending_block_is_the_next_one(call: Client, devnet: Devnet) -> None:
    pending = call("eth_getBlockByNumber", "pending", False)
    assert pending["number"] == "0x1"
    assert pending["hash"] is None
    assert pending["parentHash"] == call("eth_getBlockByNumber", "latest", False)["hash"]
    assert int(pending["timestamp"], 16) == devnet.next_block_timestamp()
    assert int(pending["baseFeePerGas"], 16) == devnet.next_base_fee()


def test_contract_creation_receipt_and_bloom(
    call: Client, devnet: Devnet, emitter_code: dict[str, Any]
) -> None:
    address = deploy_emitter(devnet, call, emitter_code)
    sender = devnet.accounts[0].address
    assert address == get_create_address(sender, 0).lower()
    assert call("eth_getCode", address) != "0x"
    assert call("eth_getCode", address, "earliest") == "0x"
    tx_hash = note(devnet, call, address, b"\x01" * 32, 5)
    receipt = call("eth_getTransactionReceipt", tx_hash)
    bloom = BloomFilter(int(receipt["logsBloom"], 16))
    assert bytes.fromhex(address[2:]) in bloom
    assert b"\x01" * 32 in bloom
    assert bytes.fromhex(("00" * 12) + sender[2:].lower()) in bloom
    block = call("eth_getBlockByNumber", receipt["blockNumber"], False)
    assert block["logsBloom"] == receipt["logsBloom"]


def test_execution_reverted_carries_code_3_and_data(
    call: Client, devnet: Devnet, emitter_code: dict[str, Any]
) -> None:
    address = deploy_emitter(devnet, call, emitter_code)
    selector = "0x" + keccak256(b"fail()")[:4].hex()
    for method in ("eth_call", "eth_estimateGas"):
        error = call.error(method, {"to": address, "data": selector})
        assert error["code"] == 3
        assert error["message"] == "execution reverted: always fails"
        assert error["data"].startswith("0x08c379a0")
    sent = call.error(
        "eth_sendTransaction", {"from": devnet.accounts[0].address, "to": address, "data": selector}
    )
    assert sent["code"] == 3


def test_rejections_use_geths_words(call: Client, devnet: Devnet) -> None:
    raw = "0x" + bytes(sign(devnet).raw_transaction).hex()
    call("eth_sendRawTransaction", raw)
    low = call.error(
        "eth_sendRawTransaction", "0x" + bytes(sign(devnet, value=2).raw_transaction).hex()
    )
    assert low["code"] == -32000
    assert low["message"].startswith("nonce too low")
    chain = call.error(
        "eth_sendRawTransaction",
        "0x" + bytes(sign(devnet, nonce=1, chainId=1).raw_transaction).hex(),
    )
    assert "invalid chain id" in chain["message"]
    stranger = call.error("eth_sendTransaction", {"from": "0x" + "55" * 20, "to": "0x" + "22" * 20})
    assert "unknown account" in stranger["message"]
    cheap = sign(devnet, nonce=1, maxFeePerGas=1, maxPriorityFeePerGas=1)
    fee = call.error("eth_sendRawTransaction", "0x" + bytes(cheap.raw_transaction).hex())
    assert fee["code"] == -32000


# ------------------------------------------------------------------------ logs and filters


def test_get_logs_by_range_address_topics_and_block_hash(
    call: Client, devnet: Devnet, emitter_code: dict[str, Any]
) -> None:
    first = deploy_emitter(devnet, call, emitter_code)
    second = deploy_emitter(devnet, call, emitter_code)
    a, b = b"\xaa" * 32, b"\xbb" * 32
    note(devnet, call, first, a, 1)
    note(devnet, call, second, b, 2)
    note(devnet, call, first, b, 3, index=1)
    everything = call("eth_getLogs", {"fromBlock": "earliest"})
    assert [int(log["data"], 16) for log in everything] == [1, 2, 3]
    assert call("eth_getLogs", {}) == everything[-1:]  # latest..latest by default
    by_address = call("eth_getLogs", {"fromBlock": "0x0", "address": first})
    assert [int(log["data"], 16) for log in by_address] == [1, 3]
    either = call("eth_getLogs", {"fromBlock": "0x0", "address": [first, second]})
    assert len(either) == 3
    topic_b = call("eth_getLogs", {"fromBlock": "0x0", "topics": [None, "0x" + b.hex()]})
    assert [int(log["data"], 16) for log in topic_b] == [2, 3]
    one_of = call(
        "eth_getLogs", {"fromBlock": "0x0", "topics": [None, ["0x" + a.hex(), "0x" + b.hex()]]}
    )
    assert len(one_of) == 3
    who = "0x" + "00" * 12 + devnet.accounts[1].address[2:].lower()
    assert len(call("eth_getLogs", {"fromBlock": "0x0", "topics": [None, None, who]})) == 1
    block_hash = everything[1]["blockHash"]
    assert call("eth_getLogs", {"blockHash": block_hash}) == [everything[1]]
    assert call.error("eth_getLogs", {"fromBlock": "0x5", "toBlock": "0x1"})["code"] == -32602
    assert (
        call.error("eth_getLogs", {"blockHash": block_hash, "fromBlock": "0x0"})["code"] == -32602
    )
    log = everything[0]
    assert set(log) == {
        "address",
        "topics",
        "data",
        "blockNumber",
        "blockHash",
        "transactionHash",
        "transactionIndex",
        "logIndex",
        "removed",
    }


def test_block_and_log_filters_report_only_what_is_new(
    call: Client, devnet: Devnet, emitter_code: dict[str, Any]
) -> None:
    address = deploy_emitter(devnet, call, emitter_code)
    note(devnet, call, address, b"\x01" * 32, 1)  # before the filters: never reported
    blocks = call("eth_newBlockFilter")
    logs = call("eth_newFilter", {"address": address})
    pending = call("eth_newPendingTransactionFilter")
    assert call("eth_getFilterChanges", blocks) == []
    assert call("eth_getFilterChanges", logs) == []
    note(devnet, call, address, b"\x02" * 32, 2)
    note(devnet, call, address, b"\x03" * 32, 3)
    hashes = call("eth_getFilterChanges", blocks)
    assert hashes == [call("eth_getBlockByNumber", hex(n))["hash"] for n in (3, 4)]
    assert [int(log["data"], 16) for log in call("eth_getFilterChanges", logs)] == [2, 3]
    assert call("eth_getFilterChanges", logs) == []  # each change is reported once
    assert call("eth_getFilterChanges", pending) == []
    history = call("eth_newFilter", {"address": address, "fromBlock": "0x0", "toBlock": "0x3"})
    assert [int(log["data"], 16) for log in call("eth_getFilterLogs", history)] == [1, 2]
    assert call("eth_uninstallFilter", logs) is True
    assert call("eth_uninstallFilter", logs) is False
    assert call.error("eth_getFilterChanges", logs)["message"] == "filter not found"


def test_unpolled_filters_expire(call: Client, monotonic: ManualWallClock) -> None:
    kept = call("eth_newBlockFilter")
    dropped = call("eth_newBlockFilter")
    monotonic.now += FILTER_TIMEOUT_S / 2
    call("eth_getFilterChanges", kept)
    monotonic.now += FILTER_TIMEOUT_S / 2 + 1
    assert call("eth_getFilterChanges", kept) == []
    assert call.error("eth_getFilterChanges", dropped)["message"] == "filter not found"


def test_filters_survive_a_revert(call: Client, devnet: Devnet) -> None:
    blocks = call("eth_newBlockFilter")
    snapshot = call("evm_snapshot")
    call("evm_mine")
    call("evm_mine")
    assert call("evm_revert", snapshot) is True
    assert call("eth_getFilterChanges", blocks) == []  # the blocks it would report are gone
    call("evm_mine")
    assert len(call("eth_getFilterChanges", blocks)) == 1


# ------------------------------------------------------------------------------- fees


def test_gas_price_fee_history_and_rewards(call: Client, devnet: Devnet) -> None:
    call("eth_sendRawTransaction", "0x" + bytes(sign(devnet).raw_transaction).hex())
    call("evm_mine")
    assert int(call("eth_maxPriorityFeePerGas"), 16) == 10**9
    assert int(call("eth_gasPrice"), 16) == devnet.next_base_fee() + 10**9
    history = call("eth_feeHistory", "0x3", "latest", [25, 75])
    assert history["oldestBlock"] == "0x0"
    fees = [call("eth_getBlockByNumber", hex(n))["baseFeePerGas"] for n in range(3)]
    assert history["baseFeePerGas"] == [*fees, hex(devnet.next_base_fee())]
    assert history["gasUsedRatio"] == [0.0, 21000 / 30_000_000, 0.0]
    assert history["reward"] == [["0x0", "0x0"], [hex(10**9), hex(10**9)], ["0x0", "0x0"]]
    older = call("eth_feeHistory", 2, "0x1")
    assert older["oldestBlock"] == "0x0"
    assert older["baseFeePerGas"][-1] == fees[2]
    assert "reward" not in older
    assert call("eth_feeHistory", "0x0", "latest")["baseFeePerGas"] == []
    assert call("eth_feeHistory", "0x400", "pending")["oldestBlock"] == "0x0"


# ---------------------------------------------------------------------------- signing


def test_eth_sign_and_personal_sign_recover_to_the_dev_account(
    call: Client, devnet: Devnet
) -> None:
    address = devnet.accounts[2].address
    message = b"reef devnet"
    for signature in (
        call("eth_sign", address, "0x" + message.hex()),
        call("personal_sign", "0x" + message.hex(), address),
    ):
        raw = bytes.fromhex(signature[2:])
        assert recover_digest(eip191_digest(message), raw).checksum_address == address
        assert Account.recover_message(encode_defunct(message), signature=raw) == address
    assert "unknown account" in call.error("eth_sign", "0x" + "55" * 20, "0x00")["message"]


def test_typed_data_signatures_verify_under_reefs_eip712(call: Client, devnet: Devnet) -> None:
    address = devnet.accounts[1].address
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
            ],
            "Note": [{"name": "text", "type": "string"}, {"name": "amount", "type": "uint256"}],
        },
        "primaryType": "Note",
        "domain": {"name": "reef", "version": "1", "chainId": DEVNET_CHAIN_ID},
        "message": {"text": "hello", "amount": 42},
    }
    signature = bytes.fromhex(call("eth_signTypedData_v4", address, json.dumps(typed))[2:])
    struct = keccak256(
        keccak256(b"Note(string text,uint256 amount)")
        + keccak256(b"hello")
        + (42).to_bytes(32, "big")
    )
    digest = eip712_digest(eip712_domain_separator("reef", "1", chain_id=DEVNET_CHAIN_ID), struct)
    assert recover_digest(digest, signature).checksum_address == address
    assert call.error("eth_signTypedData_v4", address, "{not json")["code"] == -32602
    assert call.error("eth_signTypedData_v4", address, {"types": 1})["code"] == -32602


def test_sign_transaction_returns_a_raw_transaction_that_can_be_sent(
    call: Client, devnet: Devnet
) -> None:
    raw = call(
        "eth_signTransaction",
        {"from": devnet.accounts[0].address, "to": "0x" + "22" * 20, "value": "0x5"},
    )
    assert Account.recover_transaction(raw) == devnet.accounts[0].address
    assert call("eth_blockNumber") == "0x0"  # signing mines nothing
    tx_hash = call("eth_sendRawTransaction", raw)
    assert call("eth_getTransactionReceipt", tx_hash)["status"] == "0x1"


def test_state_reads_at_tags_numbers_and_eip1898_objects(call: Client, devnet: Devnet) -> None:
    address = "0x" + "22" * 20
    call("eth_sendRawTransaction", "0x" + bytes(sign(devnet, value=9).raw_transaction).hex())
    genesis = call("eth_getBlockByNumber", "0x0")["hash"]
    assert call("eth_getBalance", address) == "0x9"
    assert call("eth_getBalance", address, "pending") == "0x9"
    assert call("eth_getBalance", address, "0x0") == "0x0"
    assert call("eth_getBalance", address, {"blockNumber": "0x1"}) == "0x9"
    assert call("eth_getBalance", address, {"blockHash": genesis}) == "0x0"
    sender = devnet.accounts[0].address
    assert call("eth_getTransactionCount", sender) == "0x1"
    assert call("eth_getTransactionCount", sender, "earliest") == "0x0"
    assert call("eth_getStorageAt", address, "0x0") == "0x" + "00" * 32


def test_light_requests_are_those_needing_no_evm() -> None:
    light = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}
    heavy = {"jsonrpc": "2.0", "id": 2, "method": "eth_call", "params": [{}]}
    assert DevnetRpc.is_light(light)
    assert DevnetRpc.is_light([light, {**light, "method": "eth_blockNumber"}])
    assert not DevnetRpc.is_light([light, heavy])
    assert not DevnetRpc.is_light(heavy)
    assert not DevnetRpc.is_light([])
    assert not DevnetRpc.is_light("eth_chainId")


@pytest.fixture(scope="module")
def fuzz_devnet() -> Devnet:
    return Devnet()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["legacy", "access", "dynamic"]),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.none() | st.integers(0, 10_000),
)
def test_mangled_raw_transactions_are_refused_never_crash(
    fuzz_devnet: Devnet, kind: str, edits: list[tuple[int, int]], cut: int | None
) -> None:
    devnet = fuzz_devnet
    fields: dict[str, Any] = {**TRANSFER, "gas": 30000}
    if kind == "dynamic":
        fields.update(maxFeePerGas=10**10, maxPriorityFeePerGas=10**9, accessList=[])
    else:
        fields["gasPrice"] = 10**10
        if kind == "access":
            fields.update(type=1, accessList=[{"address": "0x" + "33" * 20, "storageKeys": []}])
    raw = bytearray(
        Account.sign_transaction(fields, devnet.accounts[9].private_key).raw_transaction
    )
    for position, value in edits:
        raw[position % len(raw)] = value
    if cut is not None:
        raw = raw[: cut % len(raw)]
    before = devnet.block_number
    answer = DevnetRpc(devnet).handle(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_sendRawTransaction",
            "params": ["0x" + raw.hex()],
        }
    )
    if "error" in answer:
        assert answer["error"]["code"] in (-32000, -32602), answer
        assert devnet.block_number == before
    else:  # the edits left a valid transaction (e.g. a byte rewritten with its own value)
        assert devnet.block_number == before + 1


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**300)
    | st.floats(allow_nan=False)
    | st.sampled_from(["0x", "0x0", "0x1", "0xzz", "latest", "pending", "0x" + "11" * 20])
    | st.sampled_from(["0x" + "ab" * 32, "0x" + "00" * 32, "earliest", "0x" + "f" * 70])
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "from",
                    "to",
                    "data",
                    "input",
                    "gas",
                    "value",
                    "nonce",
                    "type",
                    "accessList",
                    "address",
                    "topics",
                    "fromBlock",
                    "toBlock",
                    "blockHash",
                    "blockNumber",
                    "types",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(sorted(set(DevnetRpc(Devnet()).methods) - {"evm_mine"})),
    params=st.lists(JSON_VALUES, max_size=3),
)
def test_arbitrary_params_get_a_json_rpc_answer_never_an_internal_error(
    fuzz_devnet: Devnet, method: str, params: list[Any]
) -> None:
    answer = DevnetRpc(fuzz_devnet).handle(
        {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    )
    assert answer["id"] == 7
    if "error" in answer:
        assert answer["error"]["code"] != -32603, (method, params, answer)
    json.dumps(answer)  # always serialisable


def test_block_json_hashes_to_the_block_hash(call: Client, devnet: Devnet) -> None:
    """Rebuild each header from its JSON fields in the order Prague's header RLP defines
    (EIP-1559, -4895, -4844, -4788, -7685 append theirs) and check keccak gives the hash."""
    call("eth_sendRawTransaction", "0x" + bytes(sign(devnet).raw_transaction).hex())
    call("evm_mine")

    def raw(value: str) -> bytes:
        return bytes.fromhex(value[2:])

    def number(value: str) -> int:
        return int(value, 16)

    for n in range(3):
        block = call("eth_getBlockByNumber", hex(n), False)
        fields = [
            raw(block["parentHash"]),
            raw(block["sha3Uncles"]),
            raw(block["miner"]),
            raw(block["stateRoot"]),
            raw(block["transactionsRoot"]),
            raw(block["receiptsRoot"]),
            raw(block["logsBloom"]),
            number(block["difficulty"]),
            number(block["number"]),
            number(block["gasLimit"]),
            number(block["gasUsed"]),
            number(block["timestamp"]),
            raw(block["extraData"]),
            raw(block["mixHash"]),
            raw(block["nonce"]),
            number(block["baseFeePerGas"]),
            raw(block["withdrawalsRoot"]),
            number(block["blobGasUsed"]),
            number(block["excessBlobGas"]),
            raw(block["parentBeaconBlockRoot"]),
            raw(block["requestsHash"]),
        ]
        assert "0x" + keccak256(rlp.encode(fields)).hex() == block["hash"]


def test_transaction_json_hashes_to_the_transaction_hash(call: Client, devnet: Devnet) -> None:
    """Re-encode transactions from their JSON fields (EIP-2718 envelopes) and hash them."""
    access = [{"address": "0x" + "33" * 20, "storageKeys": ["0x" + "00" * 31 + "07"]}]
    dynamic = sign(devnet, nonce=0, gas=40000, accessList=access, data="0xabcdef")
    legacy = sign_legacy(devnet, nonce=1, value=5)
    for signed in (dynamic, legacy):
        call("eth_sendRawTransaction", "0x" + bytes(signed.raw_transaction).hex())

    def raw(value: str | None) -> bytes:
        return b"" if value is None else bytes.fromhex(value[2:])

    def number(value: str) -> int:
        return int(value, 16)

    for signed in (dynamic, legacy):
        tx = call("eth_getTransactionByHash", "0x" + bytes(signed.hash).hex())
        common = [number(tx["nonce"])]
        tail = [number(tx["gas"]), raw(tx["to"]), number(tx["value"]), raw(tx["input"])]
        signature = [number(tx["r"]), number(tx["s"])]
        if tx["type"] == "0x2":
            accesses = [
                [raw(item["address"]), [raw(key) for key in item["storageKeys"]]]
                for item in tx["accessList"]
            ]
            body = [
                number(tx["chainId"]),
                *common,
                number(tx["maxPriorityFeePerGas"]),
                number(tx["maxFeePerGas"]),
                *tail,
                accesses,
                number(tx["yParity"]),
                *signature,
            ]
            encoded = b"\x02" + rlp.encode(body)
        else:
            encoded = rlp.encode(
                [*common, number(tx["gasPrice"]), *tail, number(tx["v"]), *signature]
            )
        assert encoded == bytes(signed.raw_transaction)
        assert "0x" + keccak256(encoded).hex() == tx["hash"]


def test_receipt_json_rebuilds_the_blocks_receipts_root(
    call: Client, devnet: Devnet, emitter_code: dict[str, Any]
) -> None:
    """A block's receiptsRoot commits to status, cumulative gas, bloom and logs: rebuilding the
    receipts trie from the receipt JSON must give it (EIP-2718 typed receipt encoding)."""
    from trie import HexaryTrie

    address = deploy_emitter(devnet, call, emitter_code)
    note(devnet, call, address, b"\x05" * 32, 9)

    def raw(value: str) -> bytes:
        return bytes.fromhex(value[2:])

    for n in range(1, devnet.block_number + 1):
        block = call("eth_getBlockByNumber", hex(n), False)
        receipts = call("eth_getBlockReceipts", hex(n))
        trie = HexaryTrie({})
        for index, receipt in enumerate(receipts):
            logs = [
                [raw(log["address"]), [raw(t) for t in log["topics"]], raw(log["data"])]
                for log in receipt["logs"]
            ]
            body = rlp.encode(
                [
                    int(receipt["status"], 16),
                    int(receipt["cumulativeGasUsed"], 16),
                    raw(receipt["logsBloom"]),
                    logs,
                ]
            )
            kind = int(receipt["type"], 16)
            trie[rlp.encode(index)] = body if kind == 0 else bytes([kind]) + body
        assert "0x" + trie.root_hash.hex() == block["receiptsRoot"]


def test_set_code_transactions_delegate_an_account(call: Client, devnet: Devnet) -> None:
    """EIP-7702: a relayer sends the authorization an account signed; the account's code
    becomes the delegation designator 0xef0100 || target, and the JSON shows the list."""
    account = Account.from_key(devnet.accounts[1].private_key)
    target = "0x" + "42" * 20
    auth = account.sign_authorization({"chainId": DEVNET_CHAIN_ID, "address": target, "nonce": 0})
    signed = sign(
        devnet,
        to=account.address,
        value=0,
        gas=100_000,
        data=b"",
        authorizationList=[auth],
    )
    tx_hash = call("eth_sendRawTransaction", "0x" + bytes(signed.raw_transaction).hex())
    assert call("eth_getTransactionReceipt", tx_hash)["status"] == "0x1"
    assert call("eth_getCode", account.address) == "0xef0100" + "42" * 20
    assert call("eth_getTransactionCount", account.address) == "0x1"
    tx = call("eth_getTransactionByHash", tx_hash)
    assert tx["type"] == "0x4"
    assert tx["authorizationList"] == [
        {
            "chainId": hex(DEVNET_CHAIN_ID),
            "address": target,
            "nonce": "0x0",
            "yParity": hex(auth.y_parity),
            "r": hex(auth.r),
            "s": hex(auth.s),
        }
    ]
