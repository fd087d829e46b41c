"""reef's contracts on an anvil node (``AnvilChain``, ``reef up --chain anvil``): started from
npm's ``@foundry-rs/anvil`` (tests/js), deployed with reef's deploy code, kept across restarts
in anvil's own state file, described in ``devnet.json`` like the embedded devnet."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from reef.chain import Devnet, MarketClient, TokenClient, read_devnet_info
from reef.chain.devnet import AnvilChain
from reef.chain.devnet._anvil import find_anvil
from reef.errors import ChainError, ConfigError
from reef.home import ReefHome

try:
    find_anvil()
except ConfigError:  # pragma: no cover - tests/js is installed wherever the suite runs
    pytest.skip("anvil is not installed (cd tests/js && npm install)", allow_module_level=True)


@pytest.fixture
def home(tmp_path: Path) -> ReefHome:
    return ReefHome(tmp_path / "home").ensure()


@pytest.fixture
def chain(home: ReefHome) -> Iterator[AnvilChain]:
    with AnvilChain.open(home, port=0, rate_lock_s=60) as opened:
        yield opened


def test_a_new_chain_has_reefs_contracts_and_funded_accounts(
    chain: AnvilChain, home: ReefHome
) -> None:
    deployment = chain.deployment
    assert deployment is not None
    w3 = chain.web3()
    assert w3.eth.chain_id == 31337
    # The same dev accounts as the embedded devnet, with ETH and test tokens.
    assert [a.address for a in chain.accounts] == [a.address for a in Devnet().accounts]
    token = TokenClient(w3, deployment.token)
    assert token.balance(chain.accounts[5].address) > 0
    market = MarketClient(w3, deployment.market)
    assert market.lock_wait_time() == 60
    info = read_devnet_info(home)
    assert info.rpc_url == chain.url
    assert info.deployment == deployment
    assert info.rate_lock_s == 60


def test_state_and_deployment_survive_a_restart(home: ReefHome) -> None:
    with AnvilChain.open(home, port=0, rate_lock_s=60) as first:
        deployment = first.deployment
        account = first.accounts[4].local_account
        assert deployment is not None
        TokenClient(first.web3(), deployment.token, account=account).transfer("0x" + "22" * 20, 7)
        blocks = first.block_number
    assert read_devnet_info(home).rpc_url is None  # stopped
    with AnvilChain.open(home, port=0) as second:
        assert second.deployment == deployment
        assert second.rate_lock_s == 60
        assert second.block_number == blocks
        assert TokenClient(second.web3(), deployment.token).balance("0x" + "22" * 20) == 7
    with AnvilChain.open(home, port=0, fresh=True) as fresh:
        assert fresh.deployment is not None
        assert TokenClient(fresh.web3(), fresh.deployment.token).balance("0x" + "22" * 20) == 0


def test_a_different_rate_lock_for_a_kept_chain_is_refused(home: ReefHome) -> None:
    AnvilChain.open(home, port=0, rate_lock_s=60).close()
    with pytest.raises(ConfigError, match="rate lock of 60 s, not 5 s"):
        AnvilChain.open(home, port=0, rate_lock_s=5)
    with AnvilChain.open(home, port=0):  # the lock was released after the refusal
        pass


def test_one_chain_per_home(chain: AnvilChain, home: ReefHome) -> None:
    with pytest.raises(ChainError, match="in use"):
        Devnet.open(home)


def test_test_controls_move_anvils_clock(chain: AnvilChain) -> None:
    w3 = chain.web3()
    before = w3.eth.get_block("latest")["timestamp"]
    chain.increase_time(3600)
    assert chain.next_block_timestamp() >= before + 3600
    chain.mine()
    assert w3.eth.get_block("latest")["timestamp"] >= before + 3600
    snapshot = chain.snapshot()
    chain.mine()
    assert chain.revert(snapshot)
    chain.set_next_block_timestamp(before + 10_000)
    assert chain.next_block_timestamp() == before + 10_000
    chain.mine()
    assert w3.eth.get_block("latest")["timestamp"] == before + 10_000


def test_a_missing_binary_says_how_to_install_it(
    home: ReefHome, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REEF_ANVIL", str(tmp_path / "no-anvil"))
    with pytest.raises(ConfigError, match="no anvil binary") as caught:
        AnvilChain.open(home, port=0)
    assert "npm" in (caught.value.hint or "")


def test_a_port_in_use_is_a_clear_error(chain: AnvilChain, home: ReefHome, tmp_path: Path) -> None:
    port = int(chain.url.rsplit(":", 1)[1])
    other = ReefHome(tmp_path / "other").ensure()
    with pytest.raises(ChainError, match="anvil exited"):
        AnvilChain.open(other, port=port)


def test_reef_up_runs_the_network_on_anvil(tmp_path: Path) -> None:
    from e2e_support import up_settings

    from reef.chain import Deployment
    from reef.node import LocalNetwork, NetworkInfo

    home = ReefHome(tmp_path / "up").ensure()
    settings = up_settings(kms=False, chain="anvil")
    network = LocalNetwork(home, settings)

    async def run() -> tuple[NetworkInfo, str, Deployment | None, str | None]:
        info = await network.start()
        try:
            assert isinstance(network.devnet, AnvilChain)
            url, deployment = network.devnet.url, network.devnet.deployment
            market = MarketClient(network.devnet.web3(), info.deployment.market)
            return info, url, deployment, market.provider(info.provider)
        finally:
            await network.aclose()

    info, url, deployment, registered = asyncio.run(run())
    assert info.rpc_url == url  # clients talk to anvil itself
    assert info.deployment == deployment
    assert registered == info.control_plane  # the provider registered on anvil's market
    assert read_devnet_info(home).rpc_url is None  # anvil stopped with reef up
    with AnvilChain.open(home, port=0) as again:  # and its state was kept
        assert again.deployment == deployment


def test_reef_up_refuses_an_unknown_chain() -> None:
    from typer.testing import CliRunner

    from reef.cli import app

    result = CliRunner().invoke(app, ["up", "--chain", "geth"])
    assert result.exit_code == 2
    assert "'geth' is not one of 'devnet', 'anvil'" in result.output


def test_anvil_stops_when_the_process_that_started_it_is_killed(home: ReefHome) -> None:
    script = (
        "import sys, time\n"
        "from reef.chain.devnet import AnvilChain\n"
        "from reef.home import ReefHome\n"
        "from pathlib import Path\n"
        "chain = AnvilChain.open(ReefHome(Path(sys.argv[1])), port=0)\n"
        "print(chain.url, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(home.root)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    url = parent.stdout.readline().strip()
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
    assert httpx.post(url, json=body, timeout=10).status_code == 200
    parent.kill()  # SIGKILL: reef gets no chance to stop anvil itself
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(url, json=body, timeout=1)
        except httpx.TransportError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"anvil at {url} outlived the process that started it")
    while not (home.chain / "anvil-state.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # SIGTERM, not SIGKILL: anvil wrote its state on the way out
    assert (home.chain / "anvil-state.json").exists()


def test_a_rate_lock_ended_on_the_wall_clock_lets_the_job_close_with_no_block_since(
    home: ReefHome,
) -> None:
    """Found running the e2e suite with ``--chain anvil``: transactions were simulated at anvil's
    latest block, whose timestamp stands still while no transaction comes, so ``jobClose``
    after the rate lock had ended on the wall clock still reverted "rate locked" (and `reef jobs
    close` said "in 0 s" forever). They are simulated at the pending block, which is mined at
    the wall clock."""
    with AnvilChain.open(home, port=0, rate_lock_s=1) as chain:
        assert chain.deployment is not None
        w3 = chain.web3()
        provider, owner = (Account.from_key(a.private_key) for a in chain.accounts[1:3])
        MarketClient(w3, chain.deployment.market, account=provider).add_provider("http://cp")
        market = MarketClient(w3, chain.deployment.market, account=owner)
        balance = market.token().balance() // 10
        job = market.open_job("{}", provider.address, 10**12, balance)
        market.revise_rate_initiate(job, 0)
        latest = int(w3.eth.get_block("latest")["timestamp"])
        time.sleep(max(0.0, latest + 3 - time.time()))  # the lock ends; no block is mined
        assert int(w3.eth.get_block("latest")["timestamp"]) == latest
        market.close(job)
        assert market.find_job(job) is None
