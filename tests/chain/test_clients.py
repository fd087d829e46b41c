"""reef's chain clients as users meet them: accounts, progress, errors, decoding, deployments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_account import Account
from market_support import FUNDS, TestChain
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractLogicError, Web3RPCError

from net_support import free_port
from reef.chain import (
    MAX_METADATA_BYTES,
    Deployment,
    JobDeposited,
    JobMetadataUpdated,
    JobOpened,
    MarketClient,
    Revert,
    TokenClient,
    TxProgress,
    amount_per_hour,
    decode_market_log,
    deploy_contracts,
    format_amount,
    market_decoder,
    parse_address,
    parse_amount,
    parse_job_id,
    rate_per_hour,
)
from reef.chain._tx import translate_errors
from reef.errors import ChainError, ConfigError, InputError, MarketError, MisuseError, RPCError


@pytest.fixture(scope="module")
def chain() -> TestChain:
    return TestChain.create()


def test_open_job_approves_the_market_when_the_allowance_is_short(chain: TestChain) -> None:
    user = chain.users[2]
    token = chain.token(user)
    token.approve(chain.deployment.market, 0)
    market = chain.market(user)
    before = token.balance()
    job = market.open_job("{}", chain.providers[0].address, 0, 1234)
    assert market.job(job).balance == 1234
    assert token.balance() == before - 1234
    # Exactly the amount was approved and then spent: nothing is left approved.
    assert token.allowance(user.address, chain.deployment.market) == 0
    market.deposit(job, 66)
    assert market.job(job).balance == 1300
    with pytest.raises(ChainError, match="exceeds allowance"):
        market.deposit(job, 1, approve=False)
    token.approve(chain.deployment.market, 2**256 - 1)


def test_open_job_does_not_approve_for_a_call_bound_to_fail(chain: TestChain) -> None:
    user = chain.users[2]
    token = chain.token(user)
    token.approve(chain.deployment.market, 0)
    market = chain.market(user)
    stranger = chain.users[0].address  # not a provider
    with pytest.raises(ChainError) as info:
        market.open_job("{}", stranger, 0, 10)
    assert getattr(info.value, "reason", None) == Revert.PROVIDER_NOT_REGISTERED
    with pytest.raises(ChainError) as info:
        market.open_job("{}", chain.providers[0].address, 0, 10**18)
    assert getattr(info.value, "reason", None) == Revert.INSUFFICIENT_BALANCE
    with pytest.raises(ChainError) as info:
        market.deposit(parse_job_id(10**6), 10)
    assert getattr(info.value, "reason", None) == Revert.JOB_NOT_FOUND
    assert token.allowance(user.address, chain.deployment.market) == 0
    token.approve(chain.deployment.market, 2**256 - 1)


def test_a_paid_contract_gives_its_token_and_approves_it_once(chain: TestChain) -> None:
    user = chain.users[2]
    heard: list[TxProgress] = []
    market = MarketClient(chain.w3, chain.deployment.market, account=user, progress=heard.append)
    token = market.token()
    assert (token.address, market.token_address()) == (chain.deployment.token,) * 2
    assert (token.account, token.sender) == (user, user.address)
    chain.token(user).approve(chain.deployment.market, 0)
    market.ensure_allowance(1)
    assert token.allowance(user.address, chain.deployment.market) == 2**256 - 1
    assert heard, "the approval told the market client's progress"
    block = chain.w3.eth.block_number
    market.ensure_allowance(10**30)
    assert chain.w3.eth.block_number == block, "enough allowance: no transaction"
    # A contract paid in no token says so, rather than calling a getter it does not have.
    for unpaid in (chain.registry(), token):
        with pytest.raises(MisuseError, match=f"the {unpaid.CONTRACT} contract is paid in no"):
            unpaid.token()
        with pytest.raises(MisuseError, match="is paid in no token"):
            unpaid.ensure_allowance(1)


def test_node_managed_accounts_send_through_the_node(chain: TestChain) -> None:
    # eth-tester's own accounts are unlocked: the node signs (eth_sendTransaction).
    node_account = chain.w3.eth.accounts[9]
    chain.token(chain.deployer).mint(node_account, 5000)
    chain.token(node_account).approve(chain.deployment.market, 5000)
    market = MarketClient(chain.w3, chain.deployment.market, account=node_account)
    assert market.sender == node_account
    job = market.open_job("node", chain.providers[0].address, 0, 5000)
    assert market.job(job).owner == node_account


def test_progress_reports_each_stage(chain: TestChain) -> None:
    seen: list[TxProgress] = []
    market = MarketClient(
        chain.w3, chain.deployment.market, account=chain.users[0], progress=seen.append
    )
    job = market.open_job("{}", chain.providers[0].address, 0, 0)
    result = market.settle(job)
    stages = [(p.stage, p.description) for p in seen]
    assert stages[-3:] == [
        ("sending", "Market.jobSettle"),
        ("sent", "Market.jobSettle"),
        ("mined", "Market.jobSettle"),
    ]
    assert seen[-1].tx_hash == result.tx_hash
    assert seen[-1].block_number == result.block_number


def test_a_read_only_client_refuses_to_send(chain: TestChain) -> None:
    reader = chain.market()
    assert reader.job_count() >= 0  # reads work without an account
    with pytest.raises(MisuseError, match="no account"):
        reader.settle(0)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        # geth / reef's devnet / anvil: message plus Error(string) data
        (
            ContractLogicError(
                "execution reverted: job not found",
                data="0x08c379a0" + encode(["string"], ["job not found"]).hex(),
            ),
            "job not found",
        ),
        # hardhat's wording, without data
        (
            ContractLogicError(
                "VM Exception while processing transaction: reverted with reason string "
                "'job not found'"
            ),
            "job not found",
        ),
        # ganache's wording
        (
            ContractLogicError("VM Exception while processing transaction: revert job not found"),
            "job not found",
        ),
        # a bare revert, and a Solidity panic (0x11: arithmetic overflow)
        (ContractLogicError("execution reverted"), ""),
        (
            ContractLogicError(
                "execution reverted", data="0x4e487b71" + encode(["uint256"], [0x11]).hex()
            ),
            "panic 0x11",
        ),
    ],
)
def test_revert_reasons_in_every_nodes_dialect(error: Exception, reason: str) -> None:
    with pytest.raises(ChainError) as info, translate_errors("Market.jobSettle"):
        raise error
    assert getattr(info.value, "reason", None) == reason
    if reason == "job not found":
        assert info.value.hint == "check the job id; a closed job is deleted from the market"


def test_an_account_without_eth_gets_a_clear_rpc_error(chain: TestChain) -> None:
    poor = Account.create()
    with pytest.raises(RPCError, match="the node refused") as info:
        chain.market(poor).add_provider("http://127.0.0.1:8080")
    assert (
        info.value.hint
        == "the sending account needs ETH for gas (the devnet funds its dev accounts)"
    )


@pytest.mark.parametrize(
    "message",
    [
        "insufficient funds for gas * price + value",  # geth
        "Insufficient funds for gas * price + value",  # anvil (the operator walk met it)
    ],
)
def test_a_nodes_refusal_is_shown_by_its_message_with_the_eth_hint(message: str) -> None:
    answer = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32003, "message": message}}
    refusal = Web3RPCError(repr(answer["error"]), rpc_response=answer)  # type: ignore[arg-type]
    with pytest.raises(RPCError) as info, translate_errors("Market.providerAdd"):
        raise refusal
    assert str(info.value.message) == f"Market.providerAdd: the node refused: {message}"
    assert (
        info.value.hint
        == "the sending account needs ETH for gas (the devnet funds its dev accounts)"
    )


def test_revert_errors_carry_reason_and_hint(chain: TestChain) -> None:
    market = chain.market(chain.users[0])
    with pytest.raises(ChainError) as info:
        market.close(parse_job_id(10**9))
    error = info.value
    assert type(error).__name__ == "ContractRevertError"
    assert error.message == "Market.jobClose reverted: job not found"
    assert error.reason == "job not found"  # type: ignore[attr-defined]
    assert error.hint == "check the job id; a closed job is deleted from the market"


def test_unknown_job_is_a_market_error(chain: TestChain) -> None:
    market = chain.market()
    assert market.find_job(10**9) is None
    assert market.rate_lock(10**9) is None
    with pytest.raises(MarketError, match="is not open") as info:
        market.job(10**9)
    # Named as users see it (its index) and as the market keys it, as reef.node's
    # find_open_job names it (which may then be this method).
    job_id = "0x" + (10**9).to_bytes(32, "big").hex()
    assert info.value.message == (
        f"job {10**9} ({job_id}) is not open in the market at {market.address}"
    )
    assert info.value.hint == (
        "`reef jobs list` shows your open jobs; a closed job is deleted from the market"
    )


def test_an_address_without_a_contract_is_reported(chain: TestChain) -> None:
    nowhere = MarketClient(chain.w3, "0x" + "42" * 20)
    with pytest.raises(ChainError, match="no contract answered"):
        nowhere.job_count()
    with pytest.raises(ChainError, match="no contract answered"):
        nowhere.find_job(0)


def test_an_answer_that_does_not_decode_is_not_called_a_missing_contract(
    chain: TestChain,
) -> None:
    """A contract that answers in another shape than the ABI reef holds (a deployment older
    or newer than this reef) is said to be one: "no contract answered" sent users looking for
    a contract that was there."""
    wrong_abi = [
        {
            "type": "function",
            "name": "name",
            "stateMutability": "view",
            "inputs": [],
            "outputs": [{"name": "", "type": "uint256[]"}],
        }
    ]
    token = chain.w3.eth.contract(address=chain.deployment.token, abi=wrong_abi)
    with pytest.raises(ChainError) as info, translate_errors("Token.name", token.address):
        token.functions.name().call()
    assert "no contract answered" not in info.value.message
    assert f"the contract at {token.address} answered in a shape" in info.value.message
    assert "version" in (info.value.hint or "")


def test_an_unreachable_node_is_an_rpc_error() -> None:
    port = free_port()  # nothing listens on it
    w3 = Web3(HTTPProvider(f"http://127.0.0.1:{port}", request_kwargs={"timeout": 2}))
    market = MarketClient(w3, "0x" + "42" * 20)
    with pytest.raises(RPCError, match="JSON-RPC endpoint failed") as info:
        market.job_count()
    assert info.value.hint
    assert "node is running" in info.value.hint


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, p: m.open_job("x" * (MAX_METADATA_BYTES + 1), p, 0, 0), "at most 32768"),
        (lambda m, p: m.open_job("{}", "0x1234", 0, 0), "provider is not an Ethereum address"),
        (lambda m, p: m.open_job("{}", p, -1, 0), "rate must be between"),
        (lambda m, p: m.open_job("{}", p, 2**128, 0), "maximum 2\\*\\*128-1"),
        (lambda m, p: m.open_job("{}", p, 0, True), "balance must be an integer"),
        (lambda m, p: m.deposit("0x" + "1" * 65, 1), "does not fit in 32 bytes"),
        (lambda m, p: m.withdraw("job-1", 1), "job id is not hex"),
        (lambda m, p: m.add_provider("u" * 1025), "at most 1024"),
    ],
)
def test_bad_arguments_are_input_errors(chain: TestChain, call: Any, message: str) -> None:
    market = chain.market(chain.users[0])
    with pytest.raises(InputError, match=message):
        call(market, chain.providers[0].address)


def test_clients_over_json_rpc_http() -> None:
    """The same clients through an HTTP JSON-RPC endpoint (reef's devnet served by uvicorn):
    reverts arrive as JSON-RPC errors and must still give the contract's reason."""
    from reef.chain import Devnet, serve_devnet_in_thread

    devnet = Devnet(accounts=4)
    with serve_devnet_in_thread(devnet) as server:
        w3 = Web3(HTTPProvider(server.url, request_kwargs={"timeout": 30}))
        deployer, user, provider, node_managed = (
            Account.from_key(a.private_key) for a in devnet.accounts
        )
        deployment = deploy_contracts(w3, deployer, fund=[user.address])
        MarketClient(w3, deployment.market, account=provider).add_provider("http://cp")
        market = MarketClient(w3, deployment.market, account=user)
        job = market.open_job("{}", provider.address, 10**12, 10**6)
        assert market.job(job).balance == 10**6
        with pytest.raises(ChainError) as info:
            market.withdraw(job, 10**6)
        assert getattr(info.value, "reason", None) == Revert.WITHDRAW_RESERVE
        # A node-managed account: the devnet signs with its dev key.
        MarketClient(w3, deployment.market, account=node_managed.address).add_provider("http://x")
        assert market.provider(node_managed.address) == "http://x"
        assert [type(e) for e in market.events(job=job)] == [JobOpened]


# ---- events ----


def _raw_json_log(log: Any) -> dict[str, Any]:
    """A web3 log as a JSON-RPC node sends it (hex strings everywhere)."""
    return {
        "address": log["address"].lower(),
        "topics": ["0x" + bytes(t).hex() for t in log["topics"]],
        "data": "0x" + bytes(log["data"]).hex(),
        "blockNumber": hex(log["blockNumber"]),
        "logIndex": hex(log["logIndex"]),
        "transactionHash": "0x" + bytes(log["transactionHash"]).hex(),
    }


def test_logs_decode_the_same_from_web3_and_raw_json(chain: TestChain) -> None:
    market = chain.market(chain.users[0])
    job = market.open_job('{"n":1}', chain.providers[0].address, 7, 99)
    market.deposit(job, 1)
    logs = chain.w3.eth.get_logs(
        {"address": chain.deployment.market, "fromBlock": 0, "toBlock": "latest"}
    )
    decoder = market_decoder()
    decoded = [decode_market_log(log, decoder) for log in logs]
    assert decoded == [decode_market_log(_raw_json_log(log), decoder) for log in logs]
    assert decoded == market.events() == market.events(chunk=3)
    opened = [e for e in decoded if isinstance(e, JobOpened) and e.job == job]
    deposited = [e for e in decoded if isinstance(e, JobDeposited) and e.job == job]
    assert [e.balance for e in opened] == [99]
    assert [(e.from_, e.amount) for e in deposited] == [(chain.users[0].address, 1)]
    # Filtering by job keeps exactly that job's events.
    assert market.events(job=job) == [*opened, *deposited]


def test_events_of_job_zero_are_only_its_own() -> None:
    # Job 0's id is 32 zero bytes, like the zero address in TokenUpdated's first topic.
    chain = TestChain.create(n_users=1, n_providers=1)
    market = chain.market(chain.users[0])
    job = market.open_job("{}", chain.providers[0].address, 0, 0)
    assert job == parse_job_id(0)
    assert [type(e) for e in market.events(job=job)] == [JobOpened]


def test_decoding_ignores_foreign_events_and_rejects_malformed_ones(chain: TestChain) -> None:
    transfer = {
        "address": chain.deployment.token,
        "topics": ["0x" + "dd" * 32],
        "data": "0x",
    }
    assert decode_market_log(transfer) is None
    log = chain.w3.eth.get_logs({"address": chain.deployment.market, "fromBlock": 0})[0]
    broken = _raw_json_log(log)
    broken["topics"] = broken["topics"][:1]  # indexed fields missing
    with pytest.raises(ChainError, match="malformed"):
        decode_market_log(broken)
    not_hex = _raw_json_log(log)
    not_hex["topics"] = [not_hex["topics"][0], "0x" + "zz" * 32, *not_hex["topics"][2:]]
    with pytest.raises(ChainError, match="not hex"):
        decode_market_log(not_hex)
    with pytest.raises(ChainError, match="not hex"):
        decode_market_log({**transfer, "topics": ["0xnothex"]})


def test_remembered_addresses_change_no_result(chain: TestChain) -> None:
    """The decoder caches checksummed addresses: any spelling decodes alike, a bad one always fails."""
    log = chain.w3.eth.get_logs({"address": chain.deployment.market, "fromBlock": 0})[0]
    decoder = market_decoder()
    raw = _raw_json_log(log)
    first = decoder.decode(raw)
    assert first is not None
    assert first.address == chain.deployment.market
    as_bytes = {**raw, "address": bytearray.fromhex(raw["address"][2:])}
    assert decoder.decode(raw) == decoder.decode(as_bytes) == decoder.decode(log) == first
    for _ in range(2):
        with pytest.raises(ChainError, match="malformed"):
            decoder.decode({**raw, "address": "0x" + "zz" * 20})


def test_invalid_utf8_metadata_neither_crashes_reads_nor_decoding(chain: TestChain) -> None:
    """Anyone can store non-UTF-8 bytes as a `string`; readers must survive it."""
    user = chain.users[1]
    market = chain.market(user)
    job = market.open_job("ok", chain.providers[0].address, 0, 0)
    # Hand-encode jobMetadataUpdate(bytes32,string) with bytes that are not UTF-8.
    selector = bytes(Web3.keccak(text="jobMetadataUpdate(bytes32,string)"))[:4]
    data = selector + encode(["bytes32", "bytes"], [bytes.fromhex(job[2:]), b"\xff\xfex"])
    w3 = chain.w3
    tx = {
        "from": user.address,
        "to": chain.deployment.market,
        "data": "0x" + data.hex(),
        "gas": 300_000,
        "nonce": w3.eth.get_transaction_count(user.address),
        "chainId": w3.eth.chain_id,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 10**9,
    }
    tx_hash = w3.eth.send_raw_transaction(user.sign_transaction(tx).raw_transaction)  # type: ignore[arg-type]
    assert w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1
    assert market.job(job).metadata == "\ufffd\ufffdx"
    (event,) = [e for e in market.events(job=job) if isinstance(e, JobMetadataUpdated)]
    assert event.metadata == "\ufffd\ufffdx"


# ---- deployment ----


def test_deploy_contracts_funds_accounts_and_round_trips(tmp_path: Path) -> None:
    chain = TestChain.create(n_users=0, n_providers=0)
    funded = [chain.w3.eth.accounts[5], chain.w3.eth.accounts[6]]
    deployment = deploy_contracts(
        chain.w3, chain.deployer, rate_lock_s=60, fund=funded, fund_amount=777
    )
    token = TokenClient(chain.w3, deployment.token)
    assert [token.balance(a) for a in funded] == [777, 777]
    assert MarketClient(chain.w3, deployment.market).lock_wait_time() == 60
    assert deployment.chain_id == chain.w3.eth.chain_id
    assert chain.w3.eth.get_code(deployment.market)  # type: ignore[arg-type]
    assert deployment.block <= chain.w3.eth.block_number

    path = tmp_path / "chain" / "deployment.json"
    deployment.dump(path)
    assert Deployment.load(path) == deployment
    assert json.loads(path.read_text())["market"] == deployment.market
    # A path as text, as an operator deploying from Python writes it (dump raised
    # AttributeError on a str).
    deployment.dump(str(tmp_path / "text.json"))
    assert Deployment.load(str(tmp_path / "text.json")) == deployment


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "JSON object"),
        ({"chain_id": 1, "token": "0x" + "11" * 20, "block": 0}, "lacks the field"),
        (
            {
                "chain_id": -1,
                "token": "0x" + "11" * 20,
                "market": "0x" + "22" * 20,
                "kms_registry": "0x" + "33" * 20,
                "block": 0,
            },
            "chain_id must be",
        ),
        (
            {
                "chain_id": 1,
                "token": "0x11",
                "market": "0x" + "22" * 20,
                "kms_registry": "0x" + "33" * 20,
                "block": 0,
            },
            "token is not an Ethereum address",
        ),
    ],
)
def test_bad_deployments_are_config_errors(data: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Deployment.from_json(data)


def test_missing_deployment_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no deployment") as info:
        Deployment.load(tmp_path / "nope.json")
    assert info.value.hint
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        Deployment.load(tmp_path / "bad.json")


# ---- units ----


def test_amount_parsing_and_formatting_are_exact() -> None:
    assert parse_amount("1.5") == 1_500_000
    assert parse_amount("0.000001") == 1
    assert parse_amount(" 1000000 ") == FUNDS
    assert format_amount(1_500_000) == "1.5"
    assert format_amount(1) == "0.000001"
    assert format_amount(2_000_000) == "2"
    for bad in ("1.0000001", "-1", "abc", "nan", "inf"):
        with pytest.raises(InputError):
            parse_amount(bad)


def test_rate_per_hour_and_job_ids() -> None:
    # 0.189 USDC per hour (reference §4.3's c5.xlarge) -> 52_500_000_000_000 per second.
    assert rate_per_hour(189_000) == 52_500_000_000_000
    assert amount_per_hour(52_500_000_000_000) == 189_000  # and back
    assert amount_per_hour(rate_per_hour(1)) == 0  # both round down
    assert parse_job_id(5) == "0x" + "00" * 31 + "05"
    assert parse_job_id("0x5") == parse_job_id(b"\x05") == parse_job_id("05")
    assert parse_address("0x" + "ab" * 20) == Web3.to_checksum_address("0x" + "ab" * 20)
    with pytest.raises(InputError):
        parse_job_id(-1)
