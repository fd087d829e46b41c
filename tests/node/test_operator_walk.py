"""An operator's first hour on a chain reef does not run itself, replayed where it went wrong.

The walk (README, then ``reef --help``): start anvil as an external node, ``reef chain deploy``
reef's contracts to it, run and register a provider, deploy an app as a tenant. The node here
is a plain npm anvil with a testnet's chain id (Base Sepolia's, 84532), not 31337, so nothing
passes only because the chain looks like reef's own devnet. Each test replays one step that
surprised the operator and says what was expected instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from typer.testing import CliRunner
from web3 import Web3

from chain.anvil_support import plain_anvil
from dev_tee_support import requires_isolation, stop_all_enclaves
from market.provider_support import (
    ProviderChain,
    provider_chain,
    serve_image_store,
    start_provider,
)
from net_support import free_port
from proc_support import stop_process
from reef.chain import Deployment, MarketClient, dev_accounts, read_devnet_info
from reef.cli import app
from reef.enclave import LocalBackend, build_image
from reef.home import ReefHome
from reef.market import ImageStore, RateCard, upload_image
from reef.testing import dev_job_metadata

runner = CliRunner()

REPO = Path(__file__).resolve().parents[2]

CHAIN_ID = 84532  # Base Sepolia's id: a testnet, so `reef chain deploy` needs no --yes-mainnet


@pytest.fixture(scope="module")
def anvil() -> Iterator[str]:
    """A plain anvil node on chain 84532 (the public mnemonic's accounts unlocked)."""
    yield from plain_anvil("--chain-id", str(CHAIN_ID))


def _rpc(url: str, method: str, *params: Any) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    answer = httpx.post(url, json=body, timeout=30).json()
    assert "error" not in answer, answer
    return answer["result"]


def _nonce(url: str, address: str) -> int:
    return int(_rpc(url, "eth_getTransactionCount", address, "latest"), 16)


def _reef(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _deploy_contracts(url: str) -> str:
    """``reef chain deploy`` from anvil's first unlocked account; the market's address."""
    result = _reef("chain", "deploy", "--rpc-url", url, "--unlocked", "--rate-lock", "60")
    assert result.exit_code == 0, result.output
    return result.stdout.split("market", 1)[1].split()[0]


def _hint(stderr: str) -> str:
    """The ``hint:`` part of an error, joined onto one line (empty when there is none)."""
    text = " ".join(stderr.split())
    return text.split("hint:", 1)[1] if "hint:" in text else ""


def test_an_unfunded_provider_key_is_told_it_needs_eth(anvil: str, tmp_path: Path) -> None:
    # anvil says 'Insufficient funds for gas * price + value' (capitalised): matched
    # case-sensitively, it used to reach the operator as the node's raw dict with no hint.
    _deploy_contracts(anvil)
    poor = Account.create()
    key = tmp_path / "provider.key"
    key.write_text(bytes(poor.key).hex() + "\n")
    result = _reef("provider", "register", "--cp", "http://127.0.0.1:9", "--key", str(key))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "Market.providerAdd" in result.stderr
    hint = _hint(result.stderr)
    assert "ETH" in hint, result.stderr
    assert _nonce(anvil, poor.address) == 0


def test_deploying_twice_on_one_home_asks_for_force_first(anvil: str, home: ReefHome) -> None:
    # A second deploy used to deploy a new set and silently repoint the home: `reef jobs list`
    # then hid the old market's open jobs, and a provider restarted there stopped their
    # still-paying enclaves.
    first = _deploy_contracts(anvil)
    sender = dev_accounts(1)[0].address  # anvil's first unlocked account
    before = _nonce(anvil, sender)
    again = _reef("chain", "deploy", "--rpc-url", anvil, "--unlocked", "--rate-lock", "60")
    assert again.exit_code == 1, again.output
    assert first in " ".join(again.stderr.split())  # names the market the home uses now
    assert "--force" in _hint(again.stderr)
    assert _nonce(anvil, sender) == before  # nothing was sent
    info = read_devnet_info(home)
    assert info is not None
    assert info.deployment is not None
    assert info.deployment.market == first
    forced = _reef("chain", "deploy", "--rpc-url", anvil, "--unlocked", "--force")
    assert forced.exit_code == 0, forced.output
    assert f"market {first}" in forced.stderr  # says which market it replaced


def test_an_unreachable_external_node_is_not_answered_with_reef_up(
    anvil: str, tmp_path: Path, home: ReefHome
) -> None:
    # The hint used to say `reef up` or `reef chain` starts a chain, which such a home refuses;
    # the operator's own node is what to restart.
    _deploy_contracts(anvil)
    info = read_devnet_info(home)
    assert info is not None
    gone = "http://127.0.0.1:9"  # the node moved or stopped: nothing answers there
    record = home.path("chain", "devnet.json")
    record.write_text(record.read_text().replace(info.rpc_url, gone))
    key = tmp_path / "tenant.key"
    key.write_text(bytes(Account.create().key).hex() + "\n")
    result = _reef("wallet", "--key", str(key))
    assert result.exit_code == 1
    assert gone in result.stderr
    hint = _hint(result.stderr)
    assert hint, result.stderr
    assert "reef up" not in hint, result.stderr
    assert "reef chain`" not in hint, result.stderr


def test_the_next_step_a_stop_prints_reaches_the_same_market(
    anvil: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider, owner = dev_accounts(3)[1:]
    result = _reef(
        "chain", "deploy", "--rpc-url", anvil, "--unlocked", "--fund", owner.address,
        "--rate-lock", "60",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    market = result.stdout.split("market", 1)[1].split()[0]
    w3 = Web3(Web3.HTTPProvider(anvil))
    MarketClient(w3, market, account=provider.local_account).add_provider("http://127.0.0.1:9")
    rate = RateCard.dev().lookup("local", "dev.small").min_rate
    metadata = dev_job_metadata("http://127.0.0.1:9/x", memory=1024).to_json()
    job = MarketClient(w3, market, account=owner.local_account).open_job(
        metadata, provider.address, rate, 360_000
    )
    # The tenant's own machine: a home that records no chain, the market named by flags.
    monkeypatch.setenv("REEF_HOME", str(tmp_path / "tenant-home"))
    key = tmp_path / "tenant.key"
    key.write_text(bytes(owner.local_account.key).hex() + "\n")
    number = str(int(job, 16))  # the job's index, as the commands take it
    stopped = _reef("jobs", "stop", number, "--rpc", anvil, "--market", market, "--key", str(key))
    assert stopped.exit_code == 0, stopped.output
    printed = " ".join(stopped.stdout.split()).split("then_run", 1)[1]
    assert f"reef jobs close {number}" in printed, stopped.stdout
    assert f"--market {market}" in printed, stopped.stdout
    assert f"--rpc {anvil}" in printed, stopped.stdout


@pytest.fixture
async def devnet_chain() -> AsyncIterator[ProviderChain]:
    """reef's devnet served over JSON-RPC, with a market whose provider is dev account 9."""
    async with provider_chain() as served:
        yield served


async def _running_enclaves(home: Path) -> list[str]:
    """The ids of the enclaves running in ``home`` (what `reef provider run` launched)."""
    infos = await LocalBackend(ReefHome(home)).list()
    return sorted(i.id for i in infos if i.state == "running")


async def _until_ready(home: Path, runs: int, seconds: float = 60) -> None:
    """Until ``home/provider.log`` holds ``runs`` lines ``ready`` (one per provider run)."""
    log = home / "provider.log"
    async with asyncio.timeout(seconds):
        while True:
            if log.read_text(errors="replace").split().count("ready") >= runs:
                return
            await asyncio.sleep(0.2)


@pytest.mark.slow
@requires_isolation
async def test_a_provider_moved_to_another_market_leaves_the_first_ones_enclaves(
    devnet_chain: ProviderChain, reef_home: Path, tmp_path: Path
) -> None:
    # The restarted provider used to stop the first market's still-paying enclave as "not paid
    # for" and delete its /state: enclaves were labelled with the provider and job id only,
    # and job ids repeat across markets.
    chain, home = devnet_chain, reef_home
    image = tmp_path / "hello.img"
    build_image(REPO / "examples" / "hello", image)
    store = await serve_image_store(ImageStore(tmp_path / "store"))
    port = free_port()
    chain.register(port)
    _, url = await asyncio.to_thread(upload_image, store.url, image, signer=None)
    metadata = dev_job_metadata(url, name="hello").to_json()
    cp = await start_provider(home, chain, port)
    try:
        chain.owner.open_job(metadata, chain.provider, RateCard.dev().lookup(
            "local", "dev.small").min_rate, 10**6)  # fmt: skip
        async with asyncio.timeout(90):
            while not await _running_enclaves(home):
                assert cp.returncode is None, (home / "provider.log").read_text()
                await asyncio.sleep(0.5)
        paying = await _running_enclaves(home)
        await stop_process(cp)  # enclaves keep running: the next run reconciles them
        assert await _running_enclaves(home) == paying

        # The operator redeploys reef's contracts on the same chain and restarts the provider.
        out = tmp_path / "second.json"
        again = await asyncio.to_thread(
            _reef, "chain", "deploy", "--rpc-url", chain.rpc_url, "--unlocked", "--out", str(out)
        )
        assert again.exit_code == 0, again.output
        second = Deployment.load(out)
        moved = dataclasses.replace(chain, market=second.market, start_block=second.block)
        cp = await start_provider(home, moved, free_port())
        await _until_ready(home, runs=2)
        await asyncio.sleep(3)
        # The first market's job still pays: its enclave must still run.
        assert await _running_enclaves(home) == paying, (home / "provider.log").read_text()[-3000:]
    finally:
        await stop_process(cp)
        await stop_all_enclaves(LocalBackend(ReefHome(home)))
        await store.aclose()
