"""``reef executor run`` as a process, registered with ``reef executor register`` through a real
attestation server (the dev TEE's document for the executor's key) and the verifier service, then
called with ``reef fn call``: the whole operator path without an enclave around it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from net_support import free_port
from proc_support import stop_popen
from reef._serve import serve
from reef.attestation import DevAuthority, TrustedRoot, attestation_app, verifier_app
from reef.chain import TokenClient, serve_devnet_in_thread
from reef.cli import app
from reef.crypto import Secp256k1PrivateKey
from reef.home import ReefHome
from reef.serverless import JobsParams, ServerlessJobsClient
from reef.testing import wall_ms
from serverless.chain_support import ServerlessChain

pytestmark = pytest.mark.slow

REEF = Path(sys.executable).parent / "reef"
PCRS = {0: b"\x01" * 48, 1: b"\x02" * 48, 2: b"\x03" * 48}
ONE = JobsParams(fee_per_ms=1, min_stake=1_000_000, execution_buffer_s=60, num_select=1)


class Services:
    """The attestation server of the executor's key and the verifier, on a loop in a thread."""

    def __init__(self, home: ReefHome, key: Secp256k1PrivateKey) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        authority = DevAuthority.load_or_create(home)
        attester = authority.attester(PCRS, clock_ms=wall_ms)
        self.verifier_key = Secp256k1PrivateKey.generate()
        self.servers = [
            self.run(
                serve(
                    attestation_app(attester, public_key=key.public_key.raw),
                    host="127.0.0.1",
                    port=0,
                    what="attestation",
                )
            ),
            self.run(
                serve(
                    verifier_app(self.verifier_key, root=TrustedRoot.dev(home)),
                    host="127.0.0.1",
                    port=0,
                    what="verifier",
                )
            ),
        ]

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        for server in self.servers:
            self.run(server.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def setup(tmp_path: Path, workerd: Path) -> Iterator[dict[str, Any]]:
    home = ReefHome(tmp_path / "home").ensure()
    key = Secp256k1PrivateKey.generate()
    key_file = tmp_path / "ecdsa.sec"
    key_file.write_bytes(key.secret)
    services = Services(home, key)
    chain = ServerlessChain.create(ONE, real_time=True)
    # The Jobs contract trusts this verifier (deployed again: the chain's own trusts another).
    jobs = ServerlessJobsClient.deploy(
        chain.devnet.web3(),
        chain.deployer,
        token=chain.token.address,
        verifier=services.verifier_key.public_key.checksum_address,
        params=ONE,
    )
    for account in (*chain.users, *chain.operators):
        TokenClient(chain.devnet.web3(), chain.token.address, account=account).approve(
            jobs.address, 2**256 - 1
        )
    control, gateway = free_port(), free_port()
    rpc = serve_devnet_in_thread(chain.devnet)
    process = subprocess.Popen(
        [
            str(REEF),
            "executor",
            "run",
            "--key-file",
            str(key_file),
            "--workerd",
            str(workerd),
            "--control-port",
            str(control),
            "--gateway-port",
            str(gateway),
            "--workdir",
            str(tmp_path / "work"),
        ],
        env={**os.environ, "REEF_HOME": str(home.root)},
    )
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                httpx.get(f"http://127.0.0.1:{control}/details", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield {
            "chain": chain,
            "jobs": jobs,
            "key": key,
            "rpc": rpc.url,
            "control": f"http://127.0.0.1:{control}",
            "attestation": services.servers[0].url,
            "verifier": services.servers[1].url,
            "tmp": tmp_path,
        }
    finally:
        stop_popen(process)
        rpc.close()
        services.close()


def test_run_register_and_call_through_the_cli(setup: dict[str, Any]) -> None:
    chain: ServerlessChain = setup["chain"]
    tmp: Path = setup["tmp"]
    operator, user = chain.operators[0], chain.users[0]
    (tmp / "operator.key").write_text(operator.key.hex())
    (tmp / "user.key").write_text(user.key.hex())
    # Whitelist the image the dev TEE attests for these PCRs (as reef up does for its image).
    document = httpx.get(f"{setup['attestation']}/attestation/raw", timeout=10).content
    statement = httpx.post(f"{setup['verifier']}/verify/raw", content=document, timeout=10).json()
    image_id = bytes.fromhex(statement["image_id"])
    setup["jobs"].whitelist_image(image_id)
    flags = ["--rpc", setup["rpc"], "--jobs", setup["jobs"].address, "--code", chain.code_address]
    registered = CliRunner().invoke(
        app,
        [
            "executor",
            "register",
            "--control",
            setup["control"],
            "--attestation",
            setup["attestation"],
            "--verifier",
            setup["verifier"],
            "--stake",
            "2000000",
            *flags,
            "--key",
            str(tmp / "operator.key"),
            "--json",
        ],
    )
    assert registered.exit_code == 0, registered.output
    record = json.loads(registered.stdout)
    assert record["address"] == setup["key"].public_key.checksum_address
    assert record["owner"] == operator.address
    assert record["image_id"] == "0x" + image_id.hex()
    assert record["stake"] == 2_000_000
    source = tmp / "fn.js"
    source.write_text(
        "export default { async fetch(r) { return new Response('cli ' + await r.text()); } };"
    )
    deployed = CliRunner().invoke(
        app, ["fn", "deploy", str(source), *flags, "--key", str(tmp / "user.key"), "--json"]
    )
    assert deployed.exit_code == 0, deployed.output
    codehash = json.loads(deployed.stdout)["codehash"]
    called = CliRunner().invoke(
        app,
        ["fn", "call", codehash, "--input", "x", *flags, "--key", str(tmp / "user.key"), "--json"],
    )
    assert called.exit_code == 0, called.output
    out = json.loads(called.stdout)
    assert bytes.fromhex(out["output_hex"][2:]) == b"cli x"
    assert out["executor"] == record["address"]
    # What the call cost: the 5 s default deadline paid up front, its time kept at the first
    # output (the contract's fee per ms, read from the job it opened).
    job = CliRunner().invoke(app, ["fn", "job", str(out["exec_job_id"]), *flags, "--json"])
    assert job.exit_code == 0, job.output
    fee_per_ms = json.loads(job.stdout)["deposit"] // 5000
    assert fee_per_ms > 0
    assert out["deposit"] == json.loads(job.stdout)["deposit"]
    assert out["charged"] == min(out["total_time_ms"], 5000) * fee_per_ms
