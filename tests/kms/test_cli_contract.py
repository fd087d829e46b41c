"""`reef kms contract deploy|approve|revoke|verify` on a devnet served over JSON-RPC (issue 12,
item 8): the KMS registry was usable only from Python. The CLI's effects are checked through the
Python client (an independent reader of the same contract), and refusals are one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from web3 import Web3

from reef.chain import Devnet, KmsRegistryClient, serve_devnet_in_thread
from reef.cli import app

pytestmark = pytest.mark.slow

IMAGE_A = "aa" * 32
IMAGE_B = "bb" * 32
IMAGE_C = "0x" + "cc" * 32


@dataclass
class Chain:
    rpc: str
    w3: Web3
    owner_key: Path
    owner: str
    stranger_key: Path

    def cli(self, *args: str, key: Path | None = None) -> Any:
        flags = ["--rpc", self.rpc, "--key", str(key or self.owner_key)]
        return CliRunner().invoke(app, ["kms", "contract", *args, *flags])

    def json(self, *args: str, key: Path | None = None) -> Any:
        done = self.cli(*args, "--json", key=key)
        assert done.exit_code == 0, done.output
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    devnet = Devnet(accounts=3)
    keys = tmp_path_factory.mktemp("keys")
    owner, stranger = devnet.accounts[0], devnet.accounts[1]
    (keys / "owner.key").write_text(owner.private_key.hex())
    (keys / "stranger.key").write_text(stranger.private_key.hex())
    with serve_devnet_in_thread(devnet) as served:
        w3 = Web3(Web3.HTTPProvider(served.url))
        yield Chain(served.url, w3, keys / "owner.key", owner.address, keys / "stranger.key")


def test_deploy_approve_verify_revoke(chain: Chain) -> None:
    deployed = chain.json("deploy", "--approve", IMAGE_A)
    contract = deployed["contract"]
    registry = KmsRegistryClient(chain.w3, contract)
    assert deployed["owner"] == chain.owner == registry.owner()
    assert deployed["approved"] == [IMAGE_A]
    assert registry.is_approved(IMAGE_A)
    assert not registry.is_approved(IMAGE_B)

    approved = chain.json("approve", IMAGE_B, IMAGE_C, "--contract", contract)
    assert approved["approved"] == [IMAGE_B, IMAGE_C[2:]]
    assert approved["tx_hash"].startswith("0x")
    assert registry.is_approved(IMAGE_B)
    assert registry.is_approved(IMAGE_C)

    verified = chain.json("verify", IMAGE_B, "--contract", contract)
    assert verified == {"contract": contract, "image_id": IMAGE_B, "approved": True}

    revoked = chain.json("revoke", IMAGE_B, "--contract", contract)
    assert revoked["revoked"] == [IMAGE_B]
    assert not registry.is_approved(IMAGE_B)
    assert registry.is_approved(IMAGE_A)

    # verify exits 1 for an image that is not approved, so scripts can test it.
    done = chain.cli("verify", IMAGE_B, "--contract", contract)
    assert done.exit_code == 1
    assert "not approved" in done.output

    human = chain.cli("verify", IMAGE_A, "--contract", contract)
    assert human.exit_code == 0, human.output
    assert "approved" in human.stdout


def test_refusals_are_one_line_errors(chain: Chain) -> None:
    contract = chain.json("deploy")["contract"]
    stranger = chain.cli("approve", IMAGE_A, "--contract", contract, key=chain.stranger_key)
    assert stranger.exit_code == 1
    assert "Traceback" not in stranger.output
    assert "owner" in stranger.stderr
    assert not KmsRegistryClient(chain.w3, contract).is_approved(IMAGE_A)

    bad = chain.cli("approve", "abcd", "--contract", contract)
    assert bad.exit_code == 2
    assert "32 bytes" in bad.stderr

    nowhere = chain.cli("verify", IMAGE_A, "--contract", "0x" + "12" * 20)
    assert nowhere.exit_code == 1
    assert "Traceback" not in nowhere.output

    missing = CliRunner().invoke(app, ["kms", "contract", "verify", IMAGE_A, "--rpc", chain.rpc])
    assert missing.exit_code == 2  # a usage error: nothing names the registry
    assert "--contract" in missing.stderr
