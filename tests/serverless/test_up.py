"""End to end on ``reef up``: the serverless extension deploys the contracts and three executor
enclaves; ``reef fn deploy`` and ``reef fn call`` then give an output whose signature eth-account
recovers to a registered executor whose attested image is the executor image, and the caller's
balance moves exactly as the billing model says. Misbehaving functions get their codes; the web2
gateway answers with verifiable headers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import network_in_thread, up_settings
from typer.testing import CliRunner
from web3 import Web3

from reef.chain import TokenClient, dev_accounts
from reef.cli import app
from reef.crypto import recover_digest
from reef.home import ReefHome
from reef.node import LocalNetwork
from reef.node._serverless import ServerlessExtension
from reef.serverless import (
    JobsDomain,
    ServerlessJobsClient,
    reef_gateway_digest,
)
from serverless.chain_support import gateway_signer, output_signer

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parents[2] / "examples" / "serverless"


@dataclass
class Up:
    home: ReefHome
    info: Any
    service: dict[str, Any]

    def reef(self, *args: str) -> Any:
        result = CliRunner().invoke(app, list(args), env={"REEF_HOME": str(self.home.root)})
        return result


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, workerd: Path) -> Iterator[Up]:
    home = ReefHome(tmp_path_factory.mktemp("reef-up-sl"))
    settings = up_settings(kms=False)
    network = LocalNetwork(home, settings, extensions=[ServerlessExtension()])
    with network_in_thread(network) as info:
        yield Up(home, info, dict(info.services["serverless"]))


def test_deploy_call_gives_an_attested_signed_output_billed_as_the_model_says(up: Up) -> None:
    service = up.service
    assert len(service["executors"]) == 3
    deployed = up.reef("fn", "deploy", str(EXAMPLES / "hello"), "--json")
    assert deployed.exit_code == 0, deployed.output
    codehash = json.loads(deployed.stdout)["codehash"]
    w3 = Web3(Web3.HTTPProvider(up.info.rpc_url))
    user = dev_accounts(1)[0]
    jobs = ServerlessJobsClient(w3, service["jobs_contract"])
    token = TokenClient(w3, jobs.token_address())
    before = token.balance(user.address)
    called = up.reef("fn", "call", codehash, "--input", "reef", "--timeout-ms", "3000", "--json")
    assert called.exit_code == 0, called.output
    out = json.loads(called.stdout)
    assert set(out) >= {
        "job_id",
        "exec_job_id",
        "error_code",
        "output_hex",
        "total_time_ms",
        "executor",
        "signature",
        "sign_timestamp",
        "chain_id",
        "jobs_contract",
    }
    assert bytes.fromhex(out["output_hex"][2:]) == b"hello, reef!"
    signer = output_signer(
        "reef.serverless.Jobs",
        "SubmitOutput",
        chain_id=out["chain_id"],
        contract=out["jobs_contract"],
        message={
            "jobId": out["exec_job_id"],
            "codehash": bytes.fromhex(codehash[2:]),  # what was called, on what
            "inputHash": Web3.keccak(b"reef"),
            "output": bytes.fromhex(out["output_hex"][2:]),
            "totalTime": out["total_time_ms"],
            "errorCode": out["error_code"],
            "signTimestamp": out["sign_timestamp"],
        },
        signature=bytes.fromhex(out["signature"][2:]),
    )
    assert signer == out["executor"]
    record = jobs.executor(signer)
    assert record is not None
    # The image the verifier attested for that key is the executor enclaves' image, as the
    # backend measured the running enclave (the reef runtime is part of it).
    running = {e["address"]: e["image_id"] for e in service["executors"]}
    assert "0x" + record.image_id.hex() == running[signer] == service["executor_image_id"]
    # The first output's time is what the user pays, per millisecond; the rest is refunded
    # (later outputs pay the other executors out of that same amount).
    fee = jobs.params().fee_per_ms
    assert token.balance(user.address) == before - min(out["total_time_ms"], 3000) * fee
    listed = up.reef("fn", "executors", "--json")
    assert listed.exit_code == 0, listed.output
    assert {e["address"] for e in json.loads(listed.stdout)} == {
        e["address"] for e in service["executors"]
    }


def test_misbehaving_functions_get_their_codes(up: Up) -> None:
    loop = up.reef("fn", "deploy", str(EXAMPLES / "endless"), "--json")
    broken = up.reef("fn", "deploy", str(EXAMPLES / "broken"), "--no-check", "--json")
    assert loop.exit_code == 0, loop.output
    assert broken.exit_code == 0, broken.output
    for deployed, code in ((loop, 4), (broken, 3)):
        codehash = json.loads(deployed.stdout)["codehash"]
        called = up.reef("fn", "call", codehash, "--timeout-ms", "1000", "--json")
        assert called.exit_code == 1, called.output
        out = json.loads(called.stdout)
        assert out["error_code"] == code
        assert out["total_time_ms"] <= 1000


def test_the_gateway_signs_its_answers(up: Up) -> None:
    deployed = up.reef("fn", "deploy", str(EXAMPLES / "hello"), "--json")
    codehash = json.loads(deployed.stdout)["codehash"]
    executor = up.service["executors"][0]
    gateway = executor["gateway"]
    response = httpx.post(f"{gateway}/fn/{codehash}", content=b"web", timeout=30)
    assert response.status_code == 200
    assert response.content == b"hello, web!"
    digest, oyster = gateway_signer(response)
    assert oyster == executor["address"]
    domain = JobsDomain(
        chain_id=int(response.headers["x-reef-chain-id"]),
        jobs_contract=up.service["jobs_contract"],
    )
    reef_sig = bytes.fromhex(response.headers["x-reef-signature"])
    assert (
        recover_digest(reef_gateway_digest(domain, digest), reef_sig).checksum_address
        == (executor["address"])
    )
