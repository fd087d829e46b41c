"""A client reef did not write: an ethers v6 script (tests/js/market_ethers.mjs) reads the
market through reef's JSON-RPC endpoint, derives the dev accounts from the mnemonic itself,
sends transactions, follows events with polling filters and decodes reverts."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from reef.chain import Devnet, DevnetThread, MarketClient, serve_devnet_in_thread
from reef.home import ReefHome

JS = Path(__file__).resolve().parents[1] / "js"

pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed"),
    pytest.mark.skipif(
        not (JS / "node_modules" / "ethers").is_dir(),
        reason="tests/js/node_modules is missing: run `npm ci` in tests/js (.ci/run does)",
    ),
]


@pytest.fixture
def served(reef_home: Path) -> Iterator[tuple[Devnet, DevnetThread]]:
    devnet = Devnet.open(ReefHome(reef_home))
    try:
        with serve_devnet_in_thread(devnet) as thread:
            yield devnet, thread
    finally:
        devnet.close()


def run_node(script: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        ["node", str(JS / script), *args],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_ethers_reads_the_market_and_sends_transactions(
    served: tuple[Devnet, DevnetThread],
) -> None:
    devnet, thread = served
    deployment = devnet.deployment
    assert deployment is not None
    artifacts = Path(str(resources.files("reef.chain"))) / "contracts" / "artifacts"
    out = run_node(
        "market_ethers.mjs", thread.url, str(artifacts), deployment.market, deployment.token
    )

    # ethers derived the same dev accounts from the mnemonic on its own.
    assert out["userAddress"] == devnet.accounts[7].address
    assert out["hostAddress"] == devnet.accounts[8].address
    assert out["chainId"] == 31337
    assert out["latestHasHash"] is True
    assert out["maxPriorityFeePerGas"] == str(10**9)
    assert out["userEth"] == str(10_000 * 10**18)

    # Reads through eth_call.
    assert out["marketToken"] == deployment.token
    assert out["lockWaitTime"] == 300
    assert out["extraDecimals"] == 12
    assert out["userTokens"] == str(1_000_000 * 10**6)

    # Writes, receipts and logs.
    assert out["providerAddedStatus"] == 1
    assert out["providerCp"] == "http://127.0.0.1:8080"
    assert out["openStatus"] == 1
    assert out["txType"] == 2
    assert out["txFrom"] == devnet.accounts[7].address
    assert out["openedBalance"] == "2000000"
    assert out["openedOwner"] == devnet.accounts[7].address
    assert out["depositEvent"] == {
        "job": out["jobId"],
        "from": devnet.accounts[7].address,
        "amount": "1000000",
    }
    assert out["jobOpenedCount"] == 1

    # Reverts decoded by ethers from reef's error data.
    assert out["revert"]["code"] == "CALL_EXCEPTION"
    assert "rate revision to 0" in out["revert"]["reason"]
    assert out["sendRevert"]["code"] == "CALL_EXCEPTION"
    assert "only the job owner" in out["sendRevert"]["reason"]

    # And the chain agrees, read back through reef's own client.
    market = MarketClient(devnet.web3(), deployment.market)
    job = market.job(out["jobId"])
    assert job.owner == devnet.accounts[7].address
    assert job.provider == devnet.accounts[8].address
    assert job.metadata == '{"from":"ethers"}'
    assert job.rate == 10**12
    assert str(job.balance) == out["jobOnChain"]["balance"]
    assert 0 < job.balance <= 3_000_000
    assert out["blockNumberAfter"] == devnet.block_number
