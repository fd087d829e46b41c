"""``reef chain deploy``'s checks (reef.node's chain-deploy use case), without a chain.

Each refusal is a pure function of what the endpoint said, what the home and the ``--out`` file
hold and what the sender has; the endpoint's probe runs over httpx's MockTransport. The chain
behind them, the sending and the CLI's words are in ``tests/chain/test_deploy_cli.py``.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, cast

import httpx
import pytest
from typer.testing import CliRunner

from reef.chain import (
    Address,
    DeployEstimate,
    Deployment,
    DevnetInfo,
    TxProgress,
    dev_accounts,
    parse_address,
)
from reef.errors import ConfigError, InputError, ReefError, RPCError
from reef.home import ReefHome
from reef.node import (
    ChainDeployIncomplete,
    ChainDeployNotRecorded,
    ChainDeployPlan,
    ChainDeployRequest,
    ChainDeployResult,
    ChainEndpoint,
    DeployedContract,
    chain_extras,
    check_balance,
    check_chain,
    check_devnet_home,
    check_home_record,
    check_out_deployment,
    check_redeploy,
    deploy_on_chain,
    preflight,
    probe_chain,
)
from reef.node._chain_deploy import _check_out

if TYPE_CHECKING:
    from web3 import Web3

    from reef.chain import ProgressCallback

A = parse_address("0x" + "a1" * 20)
B = parse_address("0x" + "b2" * 20)
URL = "http://node.test:8545"
TX = "0x" + "cd" * 32


def _deployment(chain_id: int, market: Address = A) -> Deployment:
    return Deployment(chain_id=chain_id, token=A, market=market, kms_registry=A, block=3)


def _chain(chain_id: int) -> ChainEndpoint:
    return ChainEndpoint(url=URL, chain_id=chain_id, head=10)


# -- the chain ------------------------------------------------------------------------------------


def test_another_chain_than_expected_is_refused() -> None:
    check_chain(_chain(31337), expected=31337, yes_mainnet=False)
    check_chain(_chain(31337), expected=None, yes_mainnet=False)
    with pytest.raises(ConfigError) as refused:
        check_chain(_chain(31337), expected=11155111, yes_mainnet=False)
    assert refused.value.message == f"{URL} is chain 31337, not --chain-id 11155111"
    assert refused.value.hint is not None
    assert "drop --chain-id" in refused.value.hint


@pytest.mark.parametrize(("chain_id", "name"), [(1, "Ethereum mainnet"), (8453, "Base")])
def test_a_mainnet_needs_consent(chain_id: int, name: str) -> None:
    with pytest.raises(ConfigError) as refused:
        check_chain(_chain(chain_id), expected=None, yes_mainnet=False)
    assert f"is {name} (chain id {chain_id}), where gas costs real money" in refused.value.message
    assert refused.value.hint is not None
    assert "--yes-mainnet" in refused.value.hint
    check_chain(_chain(chain_id), expected=chain_id, yes_mainnet=True)
    # A test chain needs none (Sepolia, anvil's 31337).
    check_chain(_chain(11155111), expected=None, yes_mainnet=False)


def test_the_probe_reads_chain_id_and_head_and_names_what_is_not_a_node() -> None:
    asked: list[str] = []

    def node(request: httpx.Request) -> httpx.Response:
        method = json.loads(request.content)["method"]
        asked.append(method)
        answer = {"eth_chainId": "0xaa36a7", "eth_blockNumber": "0x10"}[method]
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "result": answer})

    found = probe_chain(URL, transport=httpx.MockTransport(node))
    assert found == ChainEndpoint(url=URL, chain_id=11155111, head=16)
    assert asked == ["eth_chainId", "eth_blockNumber"]

    def web_page(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="<html>not found</html>")

    with pytest.raises(RPCError) as refused:
        probe_chain(URL, transport=httpx.MockTransport(web_page))
    assert refused.value.message.startswith(
        f"{URL} answered eth_chainId with HTTP 404, but not as an Ethereum JSON-RPC node does"
    )

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(RPCError, match=f"nothing answers at {URL}"):
        probe_chain(URL, transport=httpx.MockTransport(down))
    with pytest.raises(InputError, match="must be an http"):
        probe_chain("ws://node.test:8546", transport=httpx.MockTransport(node))


# -- the home's record ----------------------------------------------------------------------------


def test_the_home_record_of_this_chain_is_replaced_and_another_chain_s_is_kept(
    home: ReefHome,
) -> None:
    assert check_home_record(home, None, _chain(5), force=False) is None
    mine = DevnetInfo(chain_id=5, accounts=(), genesis_timestamp=0, deployment=_deployment(5))
    assert check_home_record(home, mine, _chain(5), force=False) is mine
    with pytest.raises(ConfigError) as refused:
        check_home_record(home, mine, _chain(31337), force=False)
    assert refused.value.message.startswith(
        f"{home.root} already records a deployment on chain 5 (market {A} at None); "
        "this is chain 31337"
    )
    assert check_home_record(home, mine, _chain(31337), force=True) is mine


def test_a_live_market_of_this_chain_is_not_replaced_unasked(home: ReefHome) -> None:
    """The record of this chain may be replaced (above), but not while its market still has
    code there: the home's commands would lose that market's jobs. A reset node's is replaced."""
    mine = DevnetInfo(chain_id=5, accounts=(), genesis_timestamp=0, deployment=_deployment(5))
    check_redeploy(home, mine, _chain(5), market_is_live=False)
    with pytest.raises(ConfigError) as refused:
        check_redeploy(home, mine, _chain(5), market_is_live=True)
    assert f"already uses reef's market {A} on chain 5" in refused.value.message
    assert "--force" in (refused.value.hint or "")
    bare = DevnetInfo(chain_id=5, accounts=(), genesis_timestamp=0)
    check_redeploy(home, bare, _chain(5), market_is_live=True)  # no market recorded


def test_a_devnet_s_record_is_never_replaced(home: ReefHome) -> None:
    devnet = DevnetInfo(chain_id=31337, accounts=tuple(dev_accounts(1)), genesis_timestamp=0)
    for force in (False, True):
        with pytest.raises(ConfigError, match="runs reef's own devnet or network"):
            check_home_record(home, devnet, _chain(31337), force=force)


def test_a_home_that_runs_a_devnet_is_refused_before_the_endpoint_is_asked(
    home: ReefHome,
) -> None:
    home.path("chain", "journal.jsonl").write_text("")
    # Nothing listens at port 9 (discard): had it been asked, the error would say so.
    request = ChainDeployRequest(rpc_url="http://127.0.0.1:9", unlocked=True)
    with pytest.raises(ConfigError) as refused:
        preflight(request, home)
    assert f"({home.chain / 'journal.jsonl'})" in refused.value.message
    assert refused.value.hint is not None
    assert "--out FILE" in refused.value.hint


def test_a_devnet_does_not_start_over_a_deployment_s_record(home: ReefHome) -> None:
    from reef.chain.devnet._store import write_devnet_info

    check_devnet_home(home)  # nothing recorded
    recorded = DevnetInfo(
        chain_id=5, accounts=(), genesis_timestamp=0, deployment=_deployment(5), rpc_url=URL
    )
    write_devnet_info(home, recorded)
    with pytest.raises(ConfigError, match=f"records reef's contracts on chain 5 at {URL}"):
        check_devnet_home(home)
    home.path("chain", "journal.jsonl").write_text("")  # a devnet's own journal: it may go on
    check_devnet_home(home)


# -- the --out file -------------------------------------------------------------------------------


def test_an_out_file_of_another_chain_is_kept_without_force() -> None:
    path = Path("/somewhere/out.json")
    held = _deployment(11155111, market=B)
    assert check_out_deployment(path, held, _chain(11155111), force=False) is held
    with pytest.raises(ConfigError) as refused:
        check_out_deployment(path, held, _chain(31337), force=False)
    assert refused.value.message == (
        f"{path} holds a deployment on chain 11155111 (market {B}); {URL} is chain 31337"
    )
    assert check_out_deployment(path, held, _chain(31337), force=True) is held


def test_what_is_at_the_out_path_decides(tmp_path: Path) -> None:
    chain = _chain(5)
    assert _check_out(tmp_path / "new" / "deeper" / "out.json", chain, force=False) is None
    with pytest.raises(ConfigError, match="is a directory"):
        _check_out(tmp_path, chain, force=True)
    junk = tmp_path / "notes.json"
    junk.write_text("my notes\n")
    with pytest.raises(ConfigError, match="exists and does not hold a deployment"):
        _check_out(junk, chain, force=False)
    assert _check_out(junk, chain, force=True) is None
    assert junk.read_text() == "my notes\n"  # checking writes nothing
    held = tmp_path / "held.json"
    _deployment(5).dump(held)
    assert _check_out(held, chain, force=False) == _deployment(5)


def test_an_out_file_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(ConfigError, match=f"{a_file} is not a writable directory"):
        _check_out(a_file / "sub" / "out.json", _chain(5), force=True)
    if os.geteuid() == 0:
        return  # root writes in any directory
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match=f"{locked} is not a writable directory"):
            _check_out(locked / "sub" / "out.json", _chain(5), force=False)
    finally:
        locked.chmod(0o700)


# -- the sender's balance -------------------------------------------------------------------------


def test_a_sender_who_cannot_pay_is_told_how_much_is_missing() -> None:
    estimate = DeployEstimate(transactions=4, gas=1_500_000, fee_per_gas=3_000_000_000)
    check_balance(A, estimate.wei, estimate, chain_id=5)  # exactly enough
    short = estimate.wei - 10**15
    with pytest.raises(ConfigError) as refused:
        check_balance(A, short, estimate, chain_id=5)
    # 1.5M gas at 3 gwei: 0.0045 ETH; the sender has 0.001 less.
    need, has = Decimal(estimate.wei) / 10**18, Decimal(short) / 10**18
    assert (need, has) == (Decimal("0.0045"), Decimal("0.0035"))
    assert refused.value.message == (
        f"{A} has 0.0035 ETH on chain 5; deploying needs up to 0.0045 ETH "
        "(4 transactions, 1500000 gas at 3 gwei)"
    )
    assert refused.value.hint is not None
    assert refused.value.hint.startswith(f"send at least 0.001 ETH to {A}")
    assert "nothing was sent" in refused.value.hint


# -- the extra contracts --------------------------------------------------------------------------


def test_with_takes_the_services_and_the_address_each_needs() -> None:
    none = chain_extras((), None, None)
    assert none.names() == ()
    assert none.creations(placeholder=A, deployer=B) == []
    both = chain_extras(["serverless, proofs", "proofs"], A.lower(), None)
    assert both.serverless_verifier == A
    assert both.proofs
    assert both.matching_engine is None
    assert both.names() == ("serverless_jobs", "serverless_code", "proof_market")
    created = both.creations(placeholder="0x" + "00" * 20, deployer=B)
    assert [name for name, _ in created] == ["ServerlessJobs", "ServerlessCode", "ProofMarket"]
    assert created[2][1] == ["0x" + "00" * 20, B]  # the deployer matches asks by default
    engine = chain_extras(["proofs"], None, B)
    assert engine.creations(placeholder=A, deployer=A) == [("ProofMarket", [A, B])]


@pytest.mark.parametrize(
    ("asked", "verifier", "engine", "said"),
    [
        (["lambda,proofs"], None, None, "--with takes serverless and proofs, not lambda"),
        (["serverless"], None, None, "--with serverless needs --serverless-verifier ADDR"),
        (["proofs"], "0x" + "5e" * 20, None, "--serverless-verifier is for --with serverless"),
        (["serverless"], "0x" + "5e" * 20, "0x" + "5e" * 20, "--matching-engine is for --with"),
        (["serverless"], "0x1234", None, "--serverless-verifier"),
    ],
)
def test_with_refuses_what_does_not_fit(
    asked: list[str], verifier: str | None, engine: str | None, said: str
) -> None:
    with pytest.raises(InputError) as refused:
        chain_extras(asked, verifier, engine)
    assert said in refused.value.message


# -- what a failure carries, what a success says ----------------------------------------------------


def test_a_failure_half_way_carries_what_is_on_the_chain() -> None:
    cause = ReefError("deploy KmsRegistry reverted", hint="check the image ids")
    done = [DeployedContract("token", A, 4), DeployedContract("market", B, 5)]
    planned = ("token", "market", "kms_registry", "proof_market")
    error = ChainDeployIncomplete(cause, chain_id=5, deployed=done, planned=planned)
    assert (error.message, error.hint, error.cause) == (cause.message, cause.hint, cause)
    assert error.deployed == tuple(done)
    assert error.missing == ("kms_registry", "proof_market")
    assert not error.interrupted
    every = ChainDeployIncomplete(cause, chain_id=5, deployed=done, planned=planned[:2])
    assert every.missing == ()  # every contract is there: the mints stopped


def test_the_json_document_of_a_deployment(tmp_path: Path) -> None:
    result = ChainDeployResult(
        deployment=_deployment(5),
        rpc_url=URL,
        deployer=B,
        rate_lock_s=60,
        funded=(A,),
        fund_amount=2_500_000,
        approved_images=(b"\xab" * 32,),
        services={"proofs": {"market": A, "matching_engine": B}},
        deployment_file=tmp_path / "d.json",
        recorded_in=None,
    )
    assert result.to_json() == {
        "chain_id": 5,
        "rpc_url": URL,
        "deployer": B,
        "token": A,
        "market": A,
        "kms_registry": A,
        "start_block": 3,
        "rate_lock_s": 60,
        "funded": [A],
        "fund_amount": 2_500_000,
        "approved_images": ["0x" + "ab" * 32],
        "deployment_file": str(tmp_path / "d.json"),
        "recorded_in": None,
        "services": {"proofs": {"market": A, "matching_engine": B}},
    }
    json.dumps(result.to_json())  # plain JSON


def _plan(home: ReefHome, out: Path) -> ChainDeployPlan:
    """A plan as preflight returns it, for a chain nobody is asked about (``w3`` is unused
    by the faked steps)."""
    return ChainDeployPlan(
        request=ChainDeployRequest(rpc_url=URL, unlocked=True),
        home=home,
        chain=_chain(5),
        w3=cast("Web3", None),
        deployer=B,
        who=B,
        estimate=DeployEstimate(transactions=3, gas=1, fee_per_gas=1),
        balance=1,
        out_path=out,
        devnet=out,  # not recorded in the home: no genesis block to read
        previous=None,
        replaced=None,
    )


def test_ctrl_c_half_way_carries_what_is_on_the_chain_and_exits_130(
    home: ReefHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reef.node
    import reef.node._chain_deploy_send
    from reef.cli import app

    def token_then_ctrl_c(
        plan: object, name: str, known: object, progress: ProgressCallback
    ) -> Address:
        if name != "token":
            raise KeyboardInterrupt  # before the market's transaction is sent
        progress(TxProgress("sent", "deploy Token", tx_hash=TX))
        progress(TxProgress("mined", "deploy Token", tx_hash=TX, block_number=7))
        return A

    monkeypatch.setattr(reef.node._chain_deploy_send, "_send_step", token_then_ctrl_c)
    plan = _plan(home, tmp_path / "out.json")
    with pytest.raises(ChainDeployIncomplete) as stopped:
        deploy_on_chain(plan)
    assert stopped.value.interrupted
    assert stopped.value.deployed == (DeployedContract("token", A, 7),)
    assert stopped.value.missing == ("market", "kms_registry")
    assert not plan.out_path.exists()

    # The command says it as for a failure, with the shell's code for SIGINT.
    monkeypatch.setattr(reef.node, "preflight", lambda request, home: plan)
    result = CliRunner().invoke(app, ["chain", "deploy", "--rpc-url", URL, "--unlocked"])
    assert result.exit_code == 130
    assert "error: interrupted" in result.stderr
    assert f"  token        {A}  block 7" in result.stderr
    assert "not deployed: market, kms_registry" in result.stderr


def test_a_deployment_that_cannot_be_written_down_is_printed(
    home: ReefHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reef.node
    import reef.node._chain_deploy_send
    from reef.cli import app

    def deployed_all(plan: object, name: str, known: object, progress: ProgressCallback) -> Address:
        progress(TxProgress("mined", f"deploy {name}", tx_hash=TX, block_number=3))
        return A

    monkeypatch.setattr(reef.node._chain_deploy_send, "_send_step", deployed_all)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    plan = _plan(home, blocked / "out.json")  # its folder is a file: the write fails
    with pytest.raises(ChainDeployNotRecorded) as unwritten:
        deploy_on_chain(plan)
    assert unwritten.value.deployment == _deployment(5)
    monkeypatch.setattr(reef.node, "preflight", lambda request, home: plan)
    result = CliRunner().invoke(app, ["chain", "deploy", "--rpc-url", URL, "--unlocked"])
    assert result.exit_code == 1
    assert "deployed, but not recorded:" in result.stderr
    assert json.loads(result.stderr.splitlines()[-1]) == _deployment(5).to_json()
