"""``reef chain deploy`` stopped half way, then run again: it resumes, on a real node (anvil).

An operator on a testnet or a mainnet pays gas for each step, so a deployment interrupted after
some steps (a revert, Ctrl-C, a transaction sent but not yet mined) must not be paid again. Each
replay stops a real deployment at a chosen point, then runs the same command again and checks,
through raw JSON-RPC (not reef's clients), what the second run sent: the deployer's nonce moves
by exactly the steps that were missing, and the finished deployment works (the market names the
token, ``reef chain info`` reads it). The chain is the truth: after a node reset the record is
not believed and the deployment starts over; a record asked with other inputs is refused.

One anvil serves the module (each test has its own home); the tests that stop its mining or
revert it to a snapshot put it back before they end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_abi.abi import decode
from eth_utils.crypto import keccak
from typer.testing import CliRunner

from chain.anvil_support import plain_anvil
from reef.chain import TxProgress, parse_address
from reef.cli import app
from reef.errors import ConfigError, ContractRevertError
from reef.home import ReefHome
from reef.node import (
    ChainDeployIncomplete,
    ChainDeployRequest,
    check_chain,
    deploy_on_chain,
    preflight,
)
from reef.node._deploy_record import DeployRecord, StepRecord, check_inputs, record_path

runner = CliRunner()
FUNDED = parse_address("0x" + "f1" * 20)


@pytest.fixture(scope="module")
def anvil() -> Iterator[str]:
    """A plain anvil (chain 31337, the public mnemonic's accounts unlocked)."""
    yield from plain_anvil()


def _rpc(url: str, method: str, *params: Any) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    answer = httpx.post(url, json=body, timeout=30).json()
    assert "error" not in answer, answer
    return answer["result"]


def _deployer(url: str) -> str:
    return str(_rpc(url, "eth_accounts")[0])


def _nonce(url: str, address: str) -> int:
    return int(_rpc(url, "eth_getTransactionCount", address, "latest"), 16)


def _token_of(url: str, market: str) -> str:
    data = "0x" + keccak(text="token()")[:4].hex()
    result = _rpc(url, "eth_call", {"to": market, "data": data}, "latest")
    return str(decode(["address"], bytes.fromhex(result[2:]))[0])


def _deploy(*args: str) -> Any:
    return runner.invoke(app, ["chain", "deploy", *args])


def _registry_reverts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one fault injected: the KMS registry's deployment (the third step) reverts."""
    from reef.chain import KmsRegistryClient

    def revert(*args: Any, **kwargs: Any) -> Any:
        raise ContractRevertError("deploy KmsRegistry reverted: out of gas", reason="out of gas")

    monkeypatch.setattr(KmsRegistryClient, "deploy", classmethod(revert))


def _finished_and_working(url: str, home: ReefHome, out: dict[str, Any]) -> None:
    """The deployment is recorded, its step record gone, and it works."""
    assert _token_of(url, out["market"]).lower() == out["token"].lower()
    for field in ("token", "market", "kms_registry"):
        assert _rpc(url, "eth_getCode", out[field], "latest") != "0x"
    assert not record_path(home, 31337).exists()
    info = runner.invoke(app, ["chain", "info", "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["market"] == out["market"]


# -- a failure after k steps ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_deployment_stopped_after_two_steps_resumes_and_sends_only_the_rest(
    anvil: str, home: ReefHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = ["--rpc-url", anvil, "--unlocked", "--fund", FUNDED]
    deployer = _deployer(anvil)
    start = _nonce(anvil, deployer)
    with monkeypatch.context() as patch:
        _registry_reverts(patch)
        stopped = _deploy(*command)
    assert stopped.exit_code == 1
    err = " ".join(stopped.stderr.split())
    record = record_path(home, 31337)
    assert f"deployed on chain 31337 before the stop (recorded in {record})" in err
    assert "not deployed: kms_registry" in err
    assert "run the same command again: it resumes from the first step missing" in err
    assert _nonce(anvil, deployer) == start + 2  # token, market: paid once
    recorded = DeployRecord.load(record)
    assert [(s.name, s.mined) for s in recorded.steps] == [("token", True), ("market", True)]

    again = _deploy(*command, "--json")
    assert again.exit_code == 0, again.output
    out = json.loads(again.stdout)
    assert out["resumed"]["on_chain"] == ["token", "market"]
    assert out["resumed"]["started_over"] is False
    assert out["sent"] == ["kms_registry", f"fund {FUNDED}"]
    assert _nonce(anvil, deployer) == start + 4  # the registry and the mint, nothing twice
    # The resumed steps are the ones the first run made.
    assert out["token"] == recorded.step("token").address  # type: ignore[union-attr]
    assert out["market"] == recorded.step("market").address  # type: ignore[union-attr]
    assert "resuming the deployment recorded in" in again.stderr
    _finished_and_working(anvil, home, out)


# -- Ctrl-C while a transaction waits to be mined ------------------------------------------------


def _automine(url: str, on: bool) -> None:
    _rpc(url, "evm_setAutomine", on)


@pytest.mark.slow
def test_a_step_sent_but_not_mined_is_found_by_its_receipt_not_sent_again(
    anvil: str, home: ReefHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the market's transaction waits in the node's pool (mining stopped): the
    summary says it was sent and may still be mined; a run while it still waits sends nothing;
    once it is mined, the next run takes it by its receipt and sends only the registry."""
    import reef.cli._chain as chain_cli

    deployer = _deployer(anvil)
    start = _nonce(anvil, deployer)

    def ctrl_c_once_market_is_sent(progress: TxProgress) -> None:
        if progress.description == "deploy Market" and progress.stage == "sending":
            _automine(anvil, False)  # the node holds it in its pool
        if progress.description == "deploy Market" and progress.stage == "sent":
            raise KeyboardInterrupt

    try:
        with monkeypatch.context() as patch:
            patch.setattr(chain_cli, "tx_printer", ctrl_c_once_market_is_sent)
            stopped = _deploy("--rpc-url", anvil, "--unlocked")
        assert stopped.exit_code == 130
        err = " ".join(stopped.stderr.split())
        pending = DeployRecord.load(record_path(home, 31337)).step("market")
        assert pending is not None
        assert not pending.mined
        assert (
            f"market: sent in {pending.tx_hash}, not yet mined; `reef chain deploy` again "
            "resumes and checks it (it is not sent twice)"
        ) in err
        assert "not deployed: kms_registry" in err
        assert "not deployed: market" not in err

        # Still waiting: the plan shows it pending, and a run that gives up waiting sends nothing.
        request = ChainDeployRequest(rpc_url=anvil, unlocked=True)
        plan = preflight(request, home)
        assert plan.resume is not None
        assert plan.resume.pending == pending
        assert plan.to_send == ("kms_registry",)
        with pytest.raises(ChainDeployIncomplete) as waited:
            deploy_on_chain(plan, receipt_timeout_s=0.5)
        assert "is still not mined" in waited.value.message
        assert waited.value.pending == (pending.name, pending.tx_hash)
        pool = _rpc(anvil, "eth_getTransactionCount", deployer, "pending")
        assert int(pool, 16) == start + 2  # the token mined, the market waiting: nothing more
    finally:
        _automine(anvil, True)
    _rpc(anvil, "evm_mine")

    again = _deploy("--rpc-url", anvil, "--unlocked", "--json")
    assert again.exit_code == 0, again.output
    out = json.loads(again.stdout)
    assert out["resumed"]["mined_since"] == ["market"]
    assert out["sent"] == ["kms_registry"]
    assert _nonce(anvil, deployer) == start + 3  # token, market once, registry
    receipt = _rpc(anvil, "eth_getTransactionReceipt", pending.tx_hash)
    assert parse_address(receipt["contractAddress"]) == out["market"]
    _finished_and_working(anvil, home, out)


# -- the chain is the truth ----------------------------------------------------------------------


@pytest.mark.slow
def test_after_a_node_reset_the_record_is_not_believed_and_it_starts_over(
    anvil: str, home: ReefHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = _rpc(anvil, "evm_snapshot")
    with monkeypatch.context() as patch:
        _registry_reverts(patch)
        assert _deploy("--rpc-url", anvil, "--unlocked").exit_code == 1
    recorded = DeployRecord.load(record_path(home, 31337))
    assert _rpc(anvil, "evm_revert", snapshot) is True  # the node forgets both contracts
    deployer = _deployer(anvil)
    start = _nonce(anvil, deployer)

    again = _deploy("--rpc-url", anvil, "--unlocked", "--json")
    assert again.exit_code == 0, again.output
    out = json.loads(again.stdout)
    assert out["resumed"]["started_over"] is True
    assert out["resumed"]["sent_again"] == ["token", "market"]
    assert out["sent"] == ["token", "market", "kms_registry"]
    assert _nonce(anvil, deployer) == start + 3
    assert "is not on this chain (the node was reset" in again.stderr
    # Same nonces from the same sender: anvil gives the same addresses, but these are new.
    assert out["token"] == recorded.step("token").address  # type: ignore[union-attr]
    _finished_and_working(anvil, home, out)


def test_a_record_whose_contract_is_not_the_recorded_one_is_sent_again(
    anvil: str, home: ReefHome
) -> None:
    """A record pointing at a transaction that created something else (another contract's
    code) is not believed: the step is sent again. Checked by the plan, nothing sent."""
    request = ChainDeployRequest(rpc_url=anvil, unlocked=True)
    deployer = parse_address(_deployer(anvil))
    # A real mined transaction that is no token creation: a plain transfer.
    tx_hash = _rpc(anvil, "eth_sendTransaction", {"from": deployer, "to": FUNDED, "value": "0x1"})
    from reef.node._chain_deploy_send import deploy_inputs

    record = DeployRecord(
        chain_id=31337,
        rpc_url=anvil,
        inputs=deploy_inputs(request, deployer),
        steps=(StepRecord(name="token", tx_hash=tx_hash, mined=True, address=FUNDED, block=1),),
    )
    record.save(record_path(home, 31337))
    plan = preflight(request, home)
    assert plan.resume is not None
    assert plan.resume.started_over
    assert plan.to_send == ("token", "market", "kms_registry")


# -- other inputs --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_record_asked_with_other_inputs_is_refused_and_start_over_leaves_it(
    anvil: str, home: ReefHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        _registry_reverts(patch)
        assert _deploy("--rpc-url", anvil, "--unlocked").exit_code == 1
    deployer = _deployer(anvil)
    start = _nonce(anvil, deployer)
    other = _rpc(anvil, "eth_accounts")[1]
    for args, said in (
        (["--rate-lock", "60"], "rate_lock_s 300 there, 60 now"),
        (["--fund", FUNDED], f"fund [] there, [{FUNDED}] now"),
        (["--from", other], f"deployer {parse_address(deployer)} there, {parse_address(other)}"),
    ):
        sender = [] if "--from" in args else ["--unlocked"]
        refused = _deploy("--rpc-url", anvil, *sender, *args)
        assert refused.exit_code == 1, refused.output
        err = " ".join(refused.stderr.split())
        assert "records a deployment on chain 31337 under way (token, market sent)" in err
        assert said in err
        assert "--start-over" in err
    assert _nonce(anvil, deployer) == start  # nothing was sent

    fresh = _deploy("--rpc-url", anvil, "--unlocked", "--rate-lock", "60", "--start-over", "--json")
    assert fresh.exit_code == 0, fresh.output
    out = json.loads(fresh.stdout)
    assert "resumed" not in out
    assert out["rate_lock_s"] == 60
    assert _nonce(anvil, deployer) == start + 3
    _finished_and_working(anvil, home, out)


def test_check_inputs_names_each_difference() -> None:
    record = DeployRecord(
        chain_id=5, rpc_url="http://x", inputs={"deployer": "0xA", "rate_lock_s": 300}
    )
    check_inputs(Path("r.json"), record, {"deployer": "0xA", "rate_lock_s": 300})
    with pytest.raises(ConfigError) as refused:
        check_inputs(Path("r.json"), record, {"deployer": "0xB", "rate_lock_s": 300})
    assert "deployer 0xA there, 0xB now" in refused.value.message
    assert "(nothing sent)" in refused.value.message


def test_a_record_that_cannot_be_read_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "deploying-5.json"
    path.write_text('{"format": "something else"}')
    with pytest.raises(ConfigError) as refused:
        DeployRecord.load(path)
    assert str(path) in refused.value.message
    assert refused.value.hint is not None
    assert "move it away" in refused.value.hint


def test_a_record_round_trips(tmp_path: Path) -> None:
    step = StepRecord(name="token", tx_hash="0x" + "ab" * 32, mined=True, address=FUNDED, block=3)
    record = DeployRecord(chain_id=5, rpc_url="http://x", inputs={"proofs": False}, steps=(step,))
    record.save(tmp_path / "r.json")
    assert DeployRecord.load(tmp_path / "r.json") == record
    assert record.with_step(StepRecord(name="market", tx_hash="0x01")).step("market") is not None


# -- the guard fails safe ------------------------------------------------------------------------


def _endpoint(chain_id: int) -> Any:
    from reef.node import ChainEndpoint

    return ChainEndpoint(url="http://node", chain_id=chain_id, head=1)


@pytest.mark.parametrize("chain_id", [31337, 1337, 11155111, 17000, 84532, 421614, 11155420])
def test_a_known_test_chain_needs_no_consent(chain_id: int) -> None:
    check_chain(_endpoint(chain_id), expected=None, yes_mainnet=False)


@pytest.mark.parametrize("chain_id", [424242, 7777777, 2**40])
def test_an_unknown_chain_asks_for_consent_and_names_its_id(chain_id: int) -> None:
    with pytest.raises(ConfigError) as refused:
        check_chain(_endpoint(chain_id), expected=None, yes_mainnet=False)
    message = refused.value.message
    assert f"is chain id {chain_id}, which reef does not know as a test or dev chain" in message
    assert "it may be a mainnet, where gas costs real money" in message
    assert refused.value.hint is not None
    assert "--yes-real-money" in refused.value.hint
    check_chain(_endpoint(chain_id), expected=None, yes_mainnet=True)


def test_an_unknown_chain_on_a_real_node_asks_and_either_flag_consents(home: ReefHome) -> None:
    for url in plain_anvil("--chain-id", "424242"):
        refused = _deploy("--rpc-url", url, "--unlocked", "--dry-run")
        assert refused.exit_code == 1
        assert "is chain id 424242, which reef does not know" in " ".join(refused.stderr.split())
        for flag in ("--yes-real-money", "--yes-mainnet"):
            consented = _deploy("--rpc-url", url, "--unlocked", "--dry-run", "--json", flag)
            assert consented.exit_code == 0, consented.output
            assert json.loads(consented.stdout)["chain_id"] == 424242


def test_a_step_record_that_cannot_be_written_stops_before_paying_more(
    anvil: str, home: ReefHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills after the token's transaction is sent: the deployment stops there (the
    market is not sent), and the stop still names the token's transaction."""
    deployer = _deployer(anvil)
    start = _nonce(anvil, deployer)
    plan = preflight(ChainDeployRequest(rpc_url=anvil, unlocked=True), home)
    writes: list[int] = []
    real_save = DeployRecord.save

    def disk_full_after_the_first(self: DeployRecord, path: Path) -> None:
        writes.append(1)
        if len(writes) > 1:
            raise OSError(28, "No space left on device")
        real_save(self, path)

    monkeypatch.setattr(DeployRecord, "save", disk_full_after_the_first)
    with pytest.raises(ChainDeployIncomplete) as stopped:
        deploy_on_chain(plan)
    assert "cannot record the deployment's steps in" in stopped.value.message
    assert "No space left on device" in stopped.value.message
    assert stopped.value.pending is not None
    assert stopped.value.pending.name == "token"
    assert stopped.value.missing == ("market", "kms_registry")
    assert _nonce(anvil, deployer) == start + 1  # the token alone: nothing more was paid
