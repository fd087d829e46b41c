"""The checked-in artifacts are what the sources compile to, the revert reasons the Python side
knows are exactly the contracts', and the market speaks MarketV1's ABI.

The MarketV1 interface below is written from the reference (§4.1) and MarketV1's deployed ABI
(function and event names, parameter types, order and indexing), independently of reef's
artifact: web3.py's own encoder and event decoder, driven by that interface alone, must run a
job's lifecycle against reef's market and read back every field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from market_support import TestChain
from web3 import Web3
from web3.logs import DISCARD

from reef.chain import Revert, load_artifact
from reef.chain._artifacts import build_artifact, contract_names, render_artifact
from reef.crypto import keccak256

CONTRACTS = Path(__file__).resolve().parents[2] / "src" / "reef" / "chain" / "contracts"

MARKET_V1 = """
event ProviderAdded(address indexed provider, string cp)
event ProviderRemoved(address indexed provider)
event ProviderUpdatedWithCp(address indexed provider, string newCp)
event JobOpened(bytes32 indexed job, string metadata, address indexed owner, address indexed provider, uint256 rate, uint256 balance, uint256 timestamp)
event JobSettled(bytes32 indexed job, uint256 amount, uint256 timestamp)
event JobClosed(bytes32 indexed job)
event JobDeposited(bytes32 indexed job, address indexed from, uint256 amount)
event JobWithdrew(bytes32 indexed job, address indexed to, uint256 amount)
event JobReviseRateInitiated(bytes32 indexed job, uint256 newRate)
event JobReviseRateCancelled(bytes32 indexed job)
event JobReviseRateFinalized(bytes32 indexed job, uint256 newRate)
event JobMetadataUpdated(bytes32 indexed job, string metadata)
event LockCreated(bytes32 indexed selector, bytes32 indexed key, uint256 iValue, uint256 unlockTime)
event LockDeleted(bytes32 indexed selector, bytes32 indexed key, uint256 iValue)
event LockWaitTimeUpdated(bytes32 indexed selector, uint256 prevLockTime, uint256 updatedLockTime)
event TokenUpdated(address indexed oldToken, address indexed newToken)
function providerAdd(string _cp)
function providerRemove()
function providerUpdateWithCp(string _cp)
function jobOpen(string _metadata, address _provider, uint256 _rate, uint256 _balance)
function jobSettle(bytes32 _job)
function jobClose(bytes32 _job)
function jobDeposit(bytes32 _job, uint256 _amount)
function jobWithdraw(bytes32 _job, uint256 _amount)
function jobReviseRateInitiate(bytes32 _job, uint256 _newRate)
function jobReviseRateCancel(bytes32 _job)
function jobReviseRateFinalize(bytes32 _job)
function jobMetadataUpdate(bytes32 _job, string _metadata)
view providers(address) returns (string cp)
view jobs(bytes32) returns (string metadata, address owner, address provider, uint256 rate, uint256 balance, uint256 lastSettled)
view lockWaitTime(bytes32) returns (uint256)
view locks(bytes32) returns (uint256 unlockTime, uint256 iValue)
view jobIndex() returns (uint256)
view token() returns (address)
view EXTRA_DECIMALS() returns (uint256)
view RATE_LOCK_SELECTOR() returns (bytes32)
"""

KMS_VERIFIABLE = """
event ImageApproved(bytes32 imageId)
event ImageRevoked(bytes32 imageId)
function approveImages(bytes32[] _imageIds)
function revokeImages(bytes32[] _imageIds)
view oysterKMSVerify(bytes32 _imageId) returns (bool)
view images(bytes32) returns (bool)
view owner() returns (address)
"""


def _params(text: str, *, event: bool = False) -> list[dict[str, Any]]:
    out = []
    for i, part in enumerate(p.strip() for p in text.split(",") if p.strip()):
        words = part.split()
        entry: dict[str, Any] = {"type": words[0], "name": words[-1] if len(words) > 1 else ""}
        if event:
            entry["indexed"] = "indexed" in words
        elif entry["name"] == "indexed":  # pragma: no cover - guards the parser
            raise AssertionError(part)
        if not entry["name"]:
            entry["name"] = f"arg{i}" if not event else ""
        out.append(entry)
    return out


def _abi(spec: str) -> list[dict[str, Any]]:
    """A JSON ABI from the one-line-per-item interface notation above."""
    abi: list[dict[str, Any]] = []
    for line in filter(None, (line.strip() for line in spec.splitlines())):
        m = re.fullmatch(r"(event|function|view) (\w+)\(([^)]*)\)(?: returns \(([^)]*)\))?", line)
        assert m, line
        kind, name, inputs, outputs = m.groups()
        if kind == "event":
            abi.append(
                {
                    "type": "event",
                    "name": name,
                    "anonymous": False,
                    "inputs": _params(inputs, event=True),
                }
            )
        else:
            abi.append(
                {
                    "type": "function",
                    "name": name,
                    "inputs": _params(inputs),
                    "outputs": [
                        {
                            "type": o["type"],
                            "name": o["name"] if not o["name"].startswith("arg") else "",
                        }
                        for o in _params(outputs or "")
                    ],
                    "stateMutability": "view" if kind == "view" else "nonpayable",
                }
            )
    return abi


def _signatures(abi: Any) -> set[str]:
    return {
        f"{e['type']} {e['name']}({','.join(i['type'] for i in e['inputs'])})"
        + ("".join(f" {i['indexed']}" for i in e["inputs"]) if e["type"] == "event" else "")
        for e in abi
        if e["type"] in ("event", "function")
    }


# ---- artifacts ----


@pytest.mark.parametrize("name", contract_names())
def test_artifacts_are_fresh(name: str) -> None:
    """Recompiling the source gives the checked-in artifact byte for byte (STYLE §7 item 12)."""
    checked_in = (CONTRACTS / "artifacts" / f"{name}.json").read_text()
    assert render_artifact(build_artifact(name)) == checked_in, (
        f"{name}.json is stale: run .venv/bin/python -m reef.chain._artifacts"
    )
    data = json.loads(checked_in)
    assert data["_generated"].startswith("generated by `python -m reef.chain._artifacts`")
    assert "vyper 0.4.3" in data["_generated"]


def test_deployed_code_is_the_artifacts_runtime_code() -> None:
    chain = TestChain.create(n_users=0, n_providers=0)
    deployment = chain.deployment
    for name, address in (
        ("Token", deployment.token),
        ("Market", deployment.market),
        ("KmsRegistry", deployment.kms_registry),
    ):
        code = bytes(chain.w3.eth.get_code(Web3.to_checksum_address(address)))
        assert code == load_artifact(name).deployed_bytecode  # type: ignore[arg-type]


# ---- revert reasons ----


def _vyper_strings(path: Path) -> set[str]:
    text = re.sub(r'"""[\s\S]*?"""', "", path.read_text())  # drop docstrings
    return set(re.findall(r'"([^"\n]+)"', text)) - {"RATE_LOCK"}


def test_revert_reasons_match_the_contracts_exactly() -> None:
    # reef.chain.Revert covers the market's contracts; serverless and proofs keep their own
    # reasons next to their clients (each package tests its contracts' strings the same way).
    market_contracts = ("Token", "Market", "KmsRegistry")
    in_sources = set().union(*(_vyper_strings(CONTRACTS / f"{n}.vy") for n in market_contracts))
    known = {r.value for r in Revert}
    assert in_sources - known == set(), "reasons in the contracts that reef.chain.Revert lacks"
    assert known - in_sources == set(), "reasons in reef.chain.Revert that no contract gives"


# ---- MarketV1 / KmsVerifiable interfaces ----


def test_market_has_every_marketv1_function_and_event() -> None:
    ours = _signatures(load_artifact("Market").abi)
    theirs = _signatures(_abi(MARKET_V1))
    # Output types matter too (they decide how callers decode results).
    ours_outputs = {
        e["name"]: [o["type"] for o in e["outputs"]]
        for e in load_artifact("Market").abi
        if e["type"] == "function"
    }
    assert theirs - ours == set()
    for entry in _abi(MARKET_V1):
        if entry["type"] == "function":
            assert ours_outputs[entry["name"]] == [o["type"] for o in entry["outputs"]], entry[
                "name"
            ]


def test_event_topics_are_marketv1s() -> None:
    # topic0 of JobOpened as Oyster's indexers filter for it.
    signature = "JobOpened(bytes32,string,address,address,uint256,uint256,uint256)"
    ours = {
        e["name"]: keccak256(f"{e['name']}({','.join(i['type'] for i in e['inputs'])})".encode())
        for e in load_artifact("Market").abi
        if e["type"] == "event"
    }
    assert ours["JobOpened"] == keccak256(signature.encode())


def test_kms_registry_has_kmsverifiables_interface() -> None:
    ours = _signatures(load_artifact("KmsRegistry").abi)
    assert _signatures(_abi(KMS_VERIFIABLE)) - ours == set()


def test_a_marketv1_abi_client_runs_a_job_against_reefs_market() -> None:
    """web3.py with only the MarketV1 interface: encode calls, decode getters and events."""
    chain = TestChain.create(n_users=1, n_providers=1, lock=300)
    w3 = chain.w3
    user, provider = chain.users[0], chain.providers[0]
    market = w3.eth.contract(address=chain.deployment.market, abi=_abi(MARKET_V1))

    def send(fn: Any, sender: Any) -> Any:
        tx = fn.build_transaction(
            {"from": sender.address, "nonce": w3.eth.get_transaction_count(sender.address)}
        )
        tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        return receipt

    assert market.functions.EXTRA_DECIMALS().call() == 12
    assert market.functions.lockWaitTime(market.functions.RATE_LOCK_SELECTOR().call()).call() == 300
    assert market.functions.token().call() == chain.deployment.token
    assert market.functions.providers(provider.address).call() == chain.cp[provider.address]

    index = market.functions.jobIndex().call()
    opened_at = chain.next_time()
    receipt = send(
        market.functions.jobOpen('{"instance":"x"}', provider.address, 10**12, 5000), user
    )
    (opened,) = market.events.JobOpened().process_receipt(receipt, errors=DISCARD)
    job = opened["args"]["job"]
    assert job == index.to_bytes(32, "big")
    assert dict(opened["args"]) == {
        "job": job,
        "metadata": '{"instance":"x"}',
        "owner": user.address,
        "provider": provider.address,
        "rate": 10**12,
        "balance": 5000,
        "timestamp": opened_at,
    }
    stored = market.functions.jobs(job).call()
    assert stored == ['{"instance":"x"}', user.address, provider.address, 10**12, 5000, opened_at]

    chain.at(opened_at + 10)
    receipt = send(market.functions.jobDeposit(job, 100), user)
    (deposited,) = market.events.JobDeposited().process_receipt(receipt, errors=DISCARD)
    assert dict(deposited["args"]) == {"job": job, "from": user.address, "amount": 100}

    receipt = send(market.functions.jobReviseRateInitiate(job, 0), user)
    (created,) = market.events.LockCreated().process_receipt(receipt, errors=DISCARD)
    (initiated,) = market.events.JobReviseRateInitiated().process_receipt(receipt, errors=DISCARD)
    assert initiated["args"]["newRate"] == 0
    lock_id = keccak256(created["args"]["selector"] + job)
    assert market.functions.locks(lock_id).call() == [opened_at + 11 + 300, 0]

    chain.at(opened_at + 11 + 300)
    receipt = send(market.functions.jobClose(job), user)
    (settled,) = market.events.JobSettled().process_receipt(receipt, errors=DISCARD)
    assert dict(settled["args"]) == {"job": job, "amount": 311, "timestamp": opened_at + 311}
    (closed,) = market.events.JobClosed().process_receipt(receipt, errors=DISCARD)
    assert closed["args"]["job"] == job
    assert market.functions.jobs(job).call()[1] == "0x" + "00" * 20
