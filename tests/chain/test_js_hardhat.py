"""The same client code against a node reef did not write: ``hardhat node`` (npm) is started,
reef's contracts are deployed there with ``deploy_contracts`` over web3's HTTPProvider, and a
job runs its whole life (open, deposit, settle after time passes, rate revised to 0, close)
through reef's MarketClient. The identical lifecycle also runs on reef's own devnet over HTTP,
so the two nodes are held to the same expectations."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from net_support import free_port
from proc_support import stop_popen
from reef.chain import (
    Devnet,
    JobClosed,
    JobSettled,
    MarketClient,
    TokenClient,
    deploy_contracts,
    dev_accounts,
    serve_devnet_in_thread,
)
from reef.errors import ContractRevertError

JS = Path(__file__).resolve().parents[1] / "js"
HARDHAT = JS / "node_modules" / ".bin" / "hardhat"
RATE = 3 * 10**12 // 7  # token base units x 10**12 per second: not a whole unit per second
LOCK = 300

node_only = [
    pytest.mark.node,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed"),
    pytest.mark.skipif(
        not HARDHAT.exists(),
        reason="tests/js/node_modules is missing: run `npm ci` in tests/js (.ci/run does)",
    ),
]


@pytest.fixture
def hardhat_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true", "NO_COLOR": "1"}
    log = (tmp_path / "hardhat.log").open("w")
    process = subprocess.Popen(
        [str(HARDHAT), "node", "--hostname", "127.0.0.1", "--port", str(port)],
        cwd=JS,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"hardhat node exited: {(tmp_path / 'hardhat.log').read_text()}")
            try:
                answer = httpx.post(
                    url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, timeout=2
                )
                if answer.json().get("result") == "0x7a69":
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("hardhat node did not answer within 90 s")
            time.sleep(0.3)
        yield url
    finally:
        stop_popen(process)
        log.close()


@pytest.fixture
def reef_url() -> Iterator[str]:
    with serve_devnet_in_thread(Devnet()) as thread:
        yield thread.url


def advance(w3: Web3, seconds: int) -> None:
    """Let ``seconds`` pass on the chain (both nodes speak hardhat's test controls)."""
    for method, params in (("evm_increaseTime", [seconds]), ("evm_mine", [])):
        answer = w3.provider.make_request(method, params)  # type: ignore[arg-type]
        assert "error" not in answer, answer


def run_lifecycle(url: str) -> None:
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
    keys = dev_accounts(3)
    deployer: LocalAccount = Account.from_key(keys[0].private_key)
    user: LocalAccount = Account.from_key(keys[1].private_key)
    host: LocalAccount = Account.from_key(keys[2].private_key)
    deployment = deploy_contracts(w3, deployer, rate_lock_s=LOCK, fund=[user.address])
    assert deployment.chain_id == 31337
    token = TokenClient(w3, deployment.token)
    market = MarketClient(w3, deployment.market, account=user)
    MarketClient(w3, deployment.market, account=host).add_provider("http://127.0.0.1:8080")
    assert market.lock_wait_time() == LOCK
    user_start = token.balance(user.address)

    job = market.open_job('{"region": "local"}', host.address, RATE, 2_000_000)
    opened = market.job(job)
    market.deposit(job, 500_000)
    assert market.job(job).balance == 2_500_000

    advance(w3, 1000)
    settled = market.settle(job)
    (settlement,) = [e for e in settled.events if isinstance(e, JobSettled)]
    elapsed = settlement.timestamp - opened.last_settled
    assert elapsed >= 1000
    assert settlement.amount == -(-RATE * elapsed // 10**12)  # ceil, as MarketV1 charges
    assert token.balance(host.address) == settlement.amount

    with pytest.raises(ContractRevertError, match="rate revision to 0"):
        market.close(job)
    market.revise_rate_initiate(job, 0)
    with pytest.raises(ContractRevertError):
        market.close(job)  # the lock has not passed yet
    advance(w3, LOCK + 1)
    closed = market.close(job)
    assert any(isinstance(e, JobClosed) for e in closed.events)
    assert market.find_job(job) is None

    paid = token.balance(host.address)
    assert paid > settlement.amount  # the notice period was charged at the old rate too
    assert token.balance(user.address) + paid == user_start  # no token created or lost
    assert token.balance(deployment.market) == 0


@pytest.mark.parametrize("node", [pytest.param("hardhat", marks=node_only), "reef"])
def test_job_lifecycle_with_reefs_clients(node: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("hardhat_url" if node == "hardhat" else "reef_url")
    run_lifecycle(url)
