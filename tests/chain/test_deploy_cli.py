"""``reef chain deploy``: reef's contracts put on a chain the operator names, by the CLI.

Against npm's anvil (a plain node: no reef contracts until the command deploys them) and the
embedded devnet served over HTTP. What the command deployed is read back through an
independent client (raw ``eth_call``s, selectors and ABI decoding by eth-utils / eth-abi, not
reef's contract clients) and through reef's own commands pointed at the home it recorded in.
Each refusal is replayed, and shown to have sent nothing (the deployer's nonce is unchanged).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_abi.abi import decode, encode
from eth_account import Account
from eth_utils.crypto import keccak
from typer.testing import CliRunner

from chain.anvil_support import plain_anvil
from net_support import free_port
from reef.chain import (
    Deployment,
    Devnet,
    dev_accounts,
    parse_address,
    read_devnet_info,
    serve_devnet_in_thread,
)
from reef.cli import app
from reef.errors import ContractRevertError
from reef.home import ReefHome

runner = CliRunner()

FUNDED = parse_address("0x" + "f1" * 20)
IMAGE_ID = "0x" + "ab" * 32


# -- nodes ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def anvil() -> Iterator[str]:
    """A plain anvil node (chain 31337, the public mnemonic's accounts unlocked)."""
    yield from plain_anvil()


@pytest.fixture(scope="module")
def devnet_url() -> Iterator[str]:
    """The embedded devnet, with no contracts, served over HTTP."""
    with serve_devnet_in_thread(Devnet(accounts=3)) as server:
        yield server.url


# -- an independent client ------------------------------------------------------------------------


def _rpc(url: str, method: str, *params: Any) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    answer = httpx.post(url, json=body, timeout=30).json()
    assert "error" not in answer, answer
    return answer["result"]


def _call(url: str, to: str, signature: str, types: list[str], args: list[Any], out: str) -> Any:
    """``eth_call`` of ``signature`` on ``to``, encoded and decoded by eth-abi."""
    data = keccak(text=signature)[:4] + encode(types, args)
    result = _rpc(url, "eth_call", {"to": to, "data": "0x" + data.hex()}, "latest")
    return decode([out], bytes.fromhex(result[2:]))[0]


def _nonce(url: str, address: str) -> int:
    return int(_rpc(url, "eth_getTransactionCount", address, "latest"), 16)


def _deploy(*args: str) -> Any:
    return runner.invoke(app, ["chain", "deploy", *args])


def _key_file(tmp_path: Path, key: bytes, name: str = "deployer.key") -> Path:
    path = tmp_path / name
    path.write_text(key.hex() + "\n")
    return path


# -- deploying -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_deploy_on_anvil_from_its_unlocked_account_and_use_it(anvil: str, home: ReefHome) -> None:
    deployer = dev_accounts(1)[0].address  # anvil's first unlocked account
    before = int(_rpc(anvil, "eth_getBalance", deployer, "latest"), 16)
    result = _deploy(
        "--rpc-url", anvil, "--unlocked", "--chain-id", "31337", "--fund", FUNDED,
        "--fund-amount", "2.5", "--rate-lock", "60", "--approve-image", IMAGE_ID, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["chain_id"] == 31337
    assert out["deployer"] == deployer
    assert out["funded"] == [FUNDED]
    assert out["fund_amount"] == 2_500_000
    assert out["recorded_in"] == str(home.root)
    # Progress per transaction, and every address, on stderr.
    for line in ("sending deploy Token", "deploy Market: mined in block", "Token.mint"):
        assert line in result.stderr
    assert f"market at {out['market']}" in result.stderr
    # The price said before sending bounds what the deployment cost.
    said = re.search(r"\(4 transactions, up to ([0-9.]+) ETH\)", " ".join(result.stderr.split()))
    assert said is not None, result.stderr
    spent = before - int(_rpc(anvil, "eth_getBalance", deployer, "latest"), 16)
    assert 0 < spent <= Decimal(said.group(1)) * 10**18

    # An independent client reads the contracts back.
    token, market, registry = out["token"], out["market"], out["kms_registry"]
    assert _call(anvil, token, "name()", [], [], "string") == "reef test USD"
    assert _call(anvil, token, "symbol()", [], [], "string") == "rUSD"
    assert _call(anvil, token, "decimals()", [], [], "uint8") == 6
    assert _call(anvil, token, "balanceOf(address)", ["address"], [FUNDED], "uint256") == 2_500_000
    assert _call(anvil, market, "token()", [], [], "address").lower() == token.lower()
    assert _call(anvil, registry, "owner()", [], [], "address").lower() == deployer.lower()
    assert _call(anvil, token, "owner()", [], [], "address").lower() == deployer.lower()
    image = bytes.fromhex(IMAGE_ID[2:])
    assert _call(anvil, registry, "oysterKMSVerify(bytes32)", ["bytes32"], [image], "bool")
    # The start block is the market's creation block.
    receipt_block = int(
        _rpc(anvil, "eth_getBlockByNumber", hex(out["start_block"]), False)["number"], 16
    )
    assert receipt_block == out["start_block"]
    assert _rpc(anvil, "eth_getCode", market, hex(out["start_block"] - 1)) == "0x"
    assert _rpc(anvil, "eth_getCode", market, hex(out["start_block"])) != "0x"

    # The deployment file round-trips; the home records the same deployment.
    written = Deployment.load(out["deployment_file"])
    assert written == Deployment(
        chain_id=31337, token=token, market=market, kms_registry=registry, block=out["start_block"]
    )
    assert read_devnet_info(home).deployment == written

    # reef's own commands find the chain and market through $REEF_HOME alone.
    info = runner.invoke(app, ["chain", "info", "--json"])
    assert info.exit_code == 0, info.output
    described = json.loads(info.stdout)
    assert described["rpc_url"] == anvil
    assert described["running"] is True
    assert (described["market"], described["token"]) == (market, token)
    assert described["deployment_block"] == out["start_block"]
    wallet = runner.invoke(app, ["wallet", "--owner", FUNDED, "--json"])
    assert wallet.exit_code == 0, wallet.output
    assert json.loads(wallet.stdout)["rusd"] == "2.5"
    listed = runner.invoke(app, ["jobs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    # What reef provider run resolves: this chain, this market, indexed from its first block.
    from reef.node import locate_market

    where = locate_market(home)
    assert (where.rpc_url, where.market_address) == (anvil, market)
    assert where.start_block == out["start_block"]

    # Deploying again on the same chain would repoint the home away from a live market: refused
    # unless forced; forced, it replaces the record and says which market it replaced.
    refused = _deploy("--rpc-url", anvil, "--unlocked")
    assert refused.exit_code == 1, refused.output
    assert "--force" in refused.stderr
    assert read_devnet_info(home).deployment == written
    again = _deploy("--rpc-url", anvil, "--unlocked", "--force")
    assert again.exit_code == 0, again.output
    assert f"replaced in {home.root}'s record: market {market}" in again.stderr
    assert read_devnet_info(home).deployment != written


@pytest.mark.slow
def test_deploy_on_the_devnet_over_http_with_a_key_file(
    devnet_url: str, tmp_path: Path, home: ReefHome
) -> None:
    account = dev_accounts(2)[1]
    key = _key_file(tmp_path, account.private_key)
    out_file = tmp_path / "out" / "deployment.json"
    result = _deploy("--rpc", devnet_url, "--key", str(key), "--out", str(out_file), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["deployer"] == account.address
    assert out["funded"] == []
    assert out["fund_amount"] == 0
    assert out["deployment_file"] == str(out_file)
    assert Deployment.load(out_file).market == out["market"]
    owner = _call(devnet_url, out["kms_registry"], "owner()", [], [], "address")
    assert owner.lower() == account.address.lower()
    assert _call(devnet_url, out["market"], "token()", [], [], "address").lower() == (
        out["token"].lower()
    )
    # The key file's account pays, through reef wallet on the recorded home.
    wallet = runner.invoke(app, ["wallet", "--key", str(key), "--json"])
    assert wallet.exit_code == 0, wallet.output
    assert json.loads(wallet.stdout)["address"] == account.address
    people = runner.invoke(app, ["chain", "info"])
    assert "reef chain deploy" in people.stdout
    assert out["market"] in people.stdout
    assert "warning" not in people.stderr

    # A node reset under the record (its head before the deployment's block): info says so.
    record = home.path("chain", "devnet.json")
    data = json.loads(record.read_text())
    data["deployment"]["block"] = 10**6
    record.write_text(json.dumps(data))
    reset = runner.invoke(app, ["chain", "info"])
    assert reset.exit_code == 0, reset.output
    said = " ".join(reset.stderr.split())
    assert "before block 1000000 that reef's contracts were deployed in: the node was reset" in said


# -- refusals: nothing is sent ---------------------------------------------------------------------


def test_an_endpoint_that_does_not_answer_is_named(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = _deploy("--rpc-url", url, "--unlocked")
    assert result.exit_code == 1
    assert f"nothing answers at {url}" in result.stderr
    assert "Traceback" not in result.output


def test_an_endpoint_that_is_not_a_chain_is_named(devnet_url: str) -> None:
    url = devnet_url + "/nowhere"
    result = _deploy("--rpc-url", url, "--unlocked")
    assert result.exit_code == 1
    assert f"{url} answered eth_chainId with HTTP 404, but not as an Ethereum JSON-RPC" in (
        result.stderr
    )
    not_http = _deploy("--rpc-url", "ws://127.0.0.1:1", "--unlocked")
    assert not_http.exit_code == 1
    assert "must be an http(s) URL" in not_http.stderr


def test_another_chain_id_than_asked_is_refused(devnet_url: str) -> None:
    sender = dev_accounts(1)[0].address
    before = _nonce(devnet_url, sender)
    result = _deploy("--rpc-url", devnet_url, "--unlocked", "--chain-id", "11155111")
    assert result.exit_code == 1
    assert f"{devnet_url} is chain 31337, not --chain-id 11155111" in result.stderr
    assert _nonce(devnet_url, sender) == before


def test_a_dry_run_prints_the_checked_plan_and_sends_nothing(
    devnet_url: str, home: ReefHome, tmp_path: Path
) -> None:
    """An operator sees the sender, the contracts and the price before deploying (the operator
    walk asked for --dry-run; the checks already ran before anything was sent)."""
    sender = dev_accounts(1)[0].address
    before = _nonce(devnet_url, sender)
    out = tmp_path / "plan.json"
    planned = _deploy(
        "--rpc-url", devnet_url, "--unlocked", "--out", str(out), "--dry-run", "--json"
    )
    assert planned.exit_code == 0, planned.output
    plan = json.loads(planned.stdout)
    assert (plan["chain_id"], plan["sender"], plan["sent"]) == (31337, sender, False)
    assert plan["contracts"][:2] == ["token", "market"]
    assert 0 < plan["max_cost_wei"] <= plan["balance_wei"]
    assert plan["transactions"] >= len(plan["contracts"])
    assert _nonce(devnet_url, sender) == before
    assert not out.exists()
    shown = _deploy("--rpc-url", devnet_url, "--unlocked", "--out", str(out), "--dry-run")
    assert shown.exit_code == 0, shown.output
    assert "nothing (--dry-run)" in shown.stdout
    # The same checks refuse as a real run would, before pricing anything.
    refused = _deploy("--rpc-url", devnet_url, "--unlocked", "--chain-id", "5", "--dry-run")
    assert refused.exit_code == 1
    assert "not --chain-id 5" in refused.stderr


def test_a_key_without_gas_is_told_how_much_it_needs(devnet_url: str, tmp_path: Path) -> None:
    poor = Account.create()
    key = _key_file(tmp_path, bytes(poor.key))
    result = _deploy("--rpc-url", devnet_url, "--key", str(key), "--fund", FUNDED)
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert f"{poor.address} has 0 ETH on chain 31337; deploying needs up to" in message
    assert "4 transactions" in message
    assert "nothing was sent" in message
    assert _nonce(devnet_url, poor.address) == 0


def test_who_deploys_must_be_said(devnet_url: str, tmp_path: Path) -> None:
    result = _deploy("--rpc-url", devnet_url)
    assert result.exit_code == 1
    assert "who deploys?" in result.stderr
    stranger = _deploy("--rpc-url", devnet_url, "--from", FUNDED)
    assert stranger.exit_code == 1
    assert f"does not sign for {FUNDED}" in stranger.stderr


def test_an_out_file_of_another_chain_is_not_overwritten(devnet_url: str, tmp_path: Path) -> None:
    out_file = tmp_path / "sepolia.json"
    other = Deployment(chain_id=11155111, token=FUNDED, market=FUNDED, kms_registry=FUNDED, block=7)
    other.dump(out_file)
    sender = dev_accounts(1)[0].address
    before = _nonce(devnet_url, sender)
    result = _deploy("--rpc-url", devnet_url, "--unlocked", "--out", str(out_file))
    assert result.exit_code == 1
    assert f"{out_file} holds a deployment on chain 11155111" in " ".join(result.stderr.split())
    assert "--force" in result.stderr
    assert Deployment.load(out_file) == other
    assert _nonce(devnet_url, sender) == before
    junk = tmp_path / "notes.json"
    junk.write_text("my notes\n")
    refused = _deploy("--rpc-url", devnet_url, "--unlocked", "--out", str(junk))
    assert refused.exit_code == 1
    assert "does not hold a deployment" in refused.stderr
    assert junk.read_text() == "my notes\n"


def test_a_home_that_runs_a_devnet_or_records_another_chain_is_left_alone(
    devnet_url: str, home: ReefHome
) -> None:
    home.path("chain", "journal.jsonl").write_text("")
    result = _deploy("--rpc-url", devnet_url, "--unlocked")
    assert result.exit_code == 1
    assert "runs reef's own devnet or network" in result.stderr
    assert "REEF_HOME=" in result.stderr
    (home.chain / "journal.jsonl").unlink()
    from reef.chain import DevnetInfo
    from reef.chain.devnet._store import write_devnet_info

    other = Deployment(chain_id=5, token=FUNDED, market=FUNDED, kms_registry=FUNDED, block=1)
    recorded = DevnetInfo(chain_id=5, accounts=(), genesis_timestamp=0, deployment=other)
    write_devnet_info(home, recorded)
    refused = _deploy("--rpc-url", devnet_url, "--unlocked")
    assert refused.exit_code == 1
    assert "already records a deployment on chain 5" in " ".join(refused.stderr.split())
    assert read_devnet_info(home) == recorded


@pytest.mark.slow
def test_a_mainnet_chain_id_needs_explicit_consent(tmp_path: Path) -> None:
    for url in plain_anvil("--chain-id", "8453"):
        sender = dev_accounts(1)[0].address
        result = _deploy("--rpc-url", url, "--unlocked")
        assert result.exit_code == 1
        message = " ".join(result.stderr.split())
        assert "is Base (chain id 8453), where gas costs real money" in message
        assert "--yes-mainnet" in message
        assert _nonce(url, sender) == 0
        consented = _deploy("--rpc-url", url, "--unlocked", "--yes-mainnet", "--json")
        assert consented.exit_code == 0, consented.output
        assert json.loads(consented.stdout)["chain_id"] == 8453


# -- a failure half way --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_failure_half_way_prints_what_was_deployed(
    anvil: str, home: ReefHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token and market are really deployed; the registry's deployment then reverts (the
    one fault injected): the command names both, records nothing, and says how to go on."""
    from reef.chain import KmsRegistryClient

    def revert(*args: Any, **kwargs: Any) -> Any:
        raise ContractRevertError("deploy KmsRegistry reverted: out of luck", reason="out of luck")

    monkeypatch.setattr(KmsRegistryClient, "deploy", classmethod(revert))
    result = _deploy("--rpc-url", anvil, "--unlocked")
    assert result.exit_code == 1
    err = result.stderr
    assert "error: deploy KmsRegistry reverted: out of luck" in err
    addresses = {
        line.split()[0]: line.split()[1]
        for line in err.splitlines()
        if line.startswith("  token ") or line.startswith("  market ")
    }
    assert set(addresses) == {"token", "market"}
    assert "not deployed: kms_registry" in err
    assert "run the same command again" in " ".join(err.split())
    # They are on the chain, as printed.
    assert _call(anvil, addresses["market"], "token()", [], [], "address").lower() == (
        addresses["token"].lower()
    )
    assert not (home.chain / "devnet.json").exists()
    assert not (home.chain / "deployment.json").exists()


@pytest.mark.slow
def test_the_serverless_and_proof_market_contracts_come_with_with(
    anvil: str, home: ReefHome
) -> None:
    verifier = parse_address("0x" + "5e" * 20)
    result = _deploy(
        "--rpc-url", anvil, "--unlocked", "--with", "serverless,proofs",
        "--serverless-verifier", verifier, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    jobs = out["services"]["serverless"]["jobs_contract"]
    code = out["services"]["serverless"]["code_contract"]
    proofs = out["services"]["proofs"]["market"]
    deployer = out["deployer"].lower()
    assert _call(anvil, jobs, "verifier()", [], [], "address").lower() == verifier.lower()
    assert _call(anvil, jobs, "admin()", [], [], "address").lower() == deployer
    assert _call(anvil, jobs, "TOKEN()", [], [], "address").lower() == out["token"].lower()
    assert _rpc(anvil, "eth_getCode", code, "latest") != "0x"
    assert _call(anvil, proofs, "token()", [], [], "address").lower() == out["token"].lower()
    assert _call(anvil, proofs, "matchingEngine()", [], [], "address").lower() == deployer
    # Each service needs what it needs, said before anything is sent.
    for args, said in (
        (["--with", "serverless"], "--with serverless needs --serverless-verifier ADDR"),
        (["--with", "lambda"], "--with takes serverless and proofs, not lambda"),
    ):
        refused = _deploy("--rpc-url", anvil, "--unlocked", *args)
        assert refused.exit_code == 1
        assert said in refused.stderr


def test_the_devnet_does_not_start_over_a_recorded_deployment(home: ReefHome) -> None:
    from reef.chain import DevnetInfo
    from reef.chain.devnet._store import write_devnet_info

    deployment = Deployment(chain_id=5, token=FUNDED, market=FUNDED, kms_registry=FUNDED, block=1)
    recorded = DevnetInfo(
        chain_id=5,
        accounts=(),
        genesis_timestamp=0,
        deployment=deployment,
        rpc_url="http://127.0.0.1:1",
    )
    write_devnet_info(home, recorded)
    result = runner.invoke(app, ["chain", "--port", "0"])
    assert result.exit_code == 1
    assert "records reef's contracts on chain 5 at http://127.0.0.1:1" in result.stderr
    assert read_devnet_info(home) == recorded
    # What the record says, for people: no dev accounts, reef holds no key of that chain.
    accounts = runner.invoke(app, ["chain", "accounts"])
    assert accounts.exit_code == 0
    assert "reef holds none of its keys" in " ".join(accounts.stderr.split())
    assert "key 0x" not in accounts.stdout
