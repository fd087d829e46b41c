"""The whole loop as a user runs it, on a real `reef up` (devnet, provider, dev TEE, KMS root):

deploy → reach the app → `reef verify` → `reef jobs stop` (enclave gone, job closed, refund as
the billing model computes it); a job whose deposit runs out is stopped before the money is;
a new image in the metadata replaces the enclave; a rate below the minimum stops it; and
failures say why. Every command runs as a subprocess of the `reef` console script."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import REPO, Network, until
from web3 import Web3

from dev_tee_support import requires_isolation
from reef.attestation import TrustedRoot
from reef.chain import Job, JobOpened, JobSettled, MarketClient, parse_amount, read_devnet_info
from reef.enclave import InitParam, InitParams, LocalBackend
from reef.errors import ReefError
from reef.home import ReefHome
from reef.market import (
    ControlPlaneClient,
    RateCard,
    job_user_data,
    notice_reserve,
    settle,
    settlement_amount,
)
from reef.node import verify_enclave, wait_for_app

pytestmark = [pytest.mark.slow, requires_isolation]

HELLO = str(REPO / "examples" / "hello")


def _market(network: Network, *, owner: bool = False) -> MarketClient:
    w3 = Web3(Web3.HTTPProvider(network.info["rpc_url"]))
    account = None
    if owner:
        account = read_devnet_info(ReefHome(network.cli.home)).accounts[0].local_account
    return MarketClient(w3, network.info["deployment"]["market"], account=account)


def _cp(network: Network) -> ControlPlaneClient:
    return ControlPlaneClient(network.info["control_plane"])


def _running_enclaves(network: Network) -> set[str]:
    """Ids of the enclaves running in the network's home (the KMS root aside)."""
    infos = asyncio.run(LocalBackend(ReefHome(network.cli.home)).list())
    return {i.id for i in infos if i.state in ("starting", "running") and i.name != "kms-root"}


def _deploy(network: Network, *args: str, process: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = network.cli.json("deploy", *args, process=process)
    return out


def test_deploy_reach_verify_stop_refund(network: Network) -> None:
    # This test runs every command as a real `reef` process, as a user would.
    deployed = _deploy(network, HELLO, "--duration", "1h", process=True)
    job_id, endpoint, image_id = deployed["job_id"], deployed["endpoint"], deployed["image_id"]

    # the app answers, from inside the enclave whose image id was verified
    wait_for_app(endpoint, 30)
    hello = httpx.get(endpoint, timeout=10).json()
    assert hello["greeting"] == "hello from a reef enclave"
    assert hello["image_id"] == image_id

    # anyone can check what runs there; a wrong expectation is refused
    attestation = deployed["endpoints"]["attestation"]
    verified = network.cli.json(
        "verify", attestation, "--image-id", image_id, "--root", "dev", process=True
    )
    assert verified["image_id"] == image_id
    # ... and that it runs for this job of this market: what deploy checked
    bound = job_user_data(
        int(network.info["chain_id"]), network.info["deployment"]["market"], job_id
    )
    assert bytes.fromhex(verified["user_data"].removeprefix("0x")) == bound
    wrong = network.cli.run(
        "verify", attestation, "--image-id", "00" * 32, "--root", "dev", check=False, process=True
    )
    assert wrong.returncode == 1

    # stop --wait: rate 0, wait for the 5 s lock, close, refund
    enclave_id = deployed["enclave_id"]
    stopped = network.cli.json("jobs", "stop", job_id, "--wait", process=True)
    assert stopped["state"] == "closed"
    assert _cp(network).ip(job_id) is None
    assert enclave_id not in _running_enclaves(network)
    gone = network.cli.run("jobs", "show", job_id, check=False, process=True)
    assert gone.returncode == 1
    assert "not open" in gone.stderr

    # the refund is what the billing model computes from the chain's own timestamps
    market = _market(network)
    events = market.events(network.info["deployment"]["block"], job=job_id)
    (opened,) = [e for e in events if isinstance(e, JobOpened)]
    settled = [e for e in events if isinstance(e, JobSettled)]
    job = Job(
        id=opened.job,
        metadata=opened.metadata,
        owner=opened.owner,
        provider=opened.provider,
        rate=opened.rate,
        balance=opened.balance,
        last_settled=opened.timestamp,
    )
    expected = settle(job, settled[-1].timestamp).job.balance
    assert parse_amount(stopped["refund"]) == expected
    assert sum(e.amount for e in settled) == opened.balance - expected


def test_deposit_withdraw_then_stop_and_close_later(network: Network) -> None:
    deployed = _deploy(network, HELLO, "--duration", "1h")
    job_id = deployed["job_id"]
    market = _market(network)
    lock = int(network.info["rate_lock_s"])

    before = market.job(job_id).balance
    deposited = network.cli.json("jobs", "deposit", job_id, "0.5")
    assert deposited["deposited"] == "0.5"
    assert market.job(job_id).balance == before + 500_000  # a deposit does not settle

    # --max takes all but the notice reserve and the few seconds the CLI leaves for mining
    withdrawn = network.cli.json("jobs", "withdraw", job_id, "--max")
    after = market.job(job_id)
    assert parse_amount(withdrawn["withdrawn"]) > 500_000
    assert after.balance >= notice_reserve(after.rate, lock)
    assert after.balance <= notice_reserve(after.rate, lock) + settlement_amount(after.rate, 30)

    stopping = network.cli.json("jobs", "stop", job_id, "--no-wait")
    assert stopping["state"] == "stopping"
    assert stopping["then_run"] == f"reef jobs close {deployed['job']}"
    closed = until(
        "the rate lock to end",
        lambda: (
            (done := network.cli.run("jobs", "close", job_id, "--json", check=False))
            and done.returncode == 0
            and json.loads(done.stdout)
        ),
    )
    assert closed["state"] == "closed"
    assert parse_amount(closed["refund"]) > 0
    gone = network.cli.run("jobs", "show", job_id, check=False)
    assert "not open" in gone.stderr


def test_a_job_whose_deposit_runs_out_is_stopped_before_the_money(network: Network) -> None:
    # 12 s of money; the provider's margin is 5 s, so it must stop the enclave at ~7 s.
    deployed = _deploy(network, HELLO, "--duration", "12s")
    job_id = deployed["job_id"]
    market = _market(network)
    status = until(
        "the provider to stop the job",
        lambda: (s := _cp(network).job(job_id)) and s["phase"] == "done" and s,
    )
    now = int(time.time())
    job = market.job(job_id)
    assert "would run out" in status["reason"]
    assert settle(job, now).job.balance > 0  # the money had not run out yet
    until("the enclave to stop", lambda: deployed["enclave_id"] not in _running_enclaves(network))
    assert settle(job, int(time.time())).job.balance > 0  # ... and has not when it is gone


def test_a_new_image_in_the_metadata_replaces_the_enclave(network: Network, tmp_path: Path) -> None:
    # The job has init params, which the update keeps: the new image id must count them (PCR16).
    init_params = tmp_path / "init.json"
    init_params.write_bytes(InitParams.build([InitParam("greeting.txt", b"hi")]).to_json())
    deployed = _deploy(network, HELLO, "--duration", "1h", "--init-params", str(init_params))
    job_id = deployed["job_id"]
    logs = network.cli.run("logs", job_id, check=False)
    assert logs.returncode == 1
    assert "not a debug job" in logs.stderr

    app = tmp_path / "hello2"
    shutil.copytree(HELLO, app)
    manifest = app / "reef.toml"
    manifest.write_text(manifest.read_text().replace("hello from a reef enclave", "hello, v2"))
    updated = network.cli.json("jobs", "update", job_id, "--image", str(app))
    new_id = updated["image_id"]
    assert new_id != deployed["image_id"]

    attestation = deployed["endpoints"]["attestation"]

    root = TrustedRoot.dev(ReefHome(network.cli.home))

    def attests_new_image() -> bool:
        try:
            verify_enclave(attestation, image_id=bytes.fromhex(new_id), root=root)
        except ReefError:
            return False
        return True

    until("the new image to run", attests_new_image, timeout=60)
    endpoint = deployed["endpoint"]  # replaced in place: same endpoint
    wait_for_app(endpoint, 30)
    assert httpx.get(endpoint, timeout=10).json()["greeting"] == "hello, v2"
    infos = asyncio.run(LocalBackend(ReefHome(network.cli.home)).list())
    mine = [i for i in infos if i.state == "running" and i.image_id.hex() == new_id]
    assert [i.id for i in mine] == [deployed["enclave_id"]]


def test_a_rate_revision_below_the_minimum_stops_it(network: Network) -> None:
    deployed = _deploy(network, HELLO, "--duration", "1h")
    job_id = deployed["job_id"]
    minimum = RateCard.dev().lookup("local", "dev.small").min_rate
    _market(network, owner=True).revise_rate_initiate(job_id, minimum - 1)
    status = until(
        "the provider to stop the job",
        lambda: (s := _cp(network).job(job_id)) and s["phase"] == "done" and s,
    )
    assert "below this provider's minimum" in status["reason"]
    assert _cp(network).ip(job_id) is None
    until("the enclave to stop", lambda: deployed["enclave_id"] not in _running_enclaves(network))


def test_failures_say_why(network: Network, tmp_path: Path) -> None:
    def refused(*args: str) -> str:
        done = network.cli.run(*args, check=False)
        assert done.returncode == 1, done
        assert "Traceback" not in done.stderr
        return done.stderr

    assert "unknown provider" in refused(
        "deploy", HELLO, "--duration", "1h", "--provider", "0x" + "12" * 20
    )
    assert "not offered" in refused("deploy", HELLO, "--duration", "1h", "--instance", "c5.xlarge")
    assert "would never run" in refused("deploy", HELLO, "--duration", "3s")
    assert "no such image" in refused("deploy", str(tmp_path / "nope"), "--duration", "1h")
    assert "not a duration" in refused("deploy", HELLO, "--duration", "soon")
    key = tmp_path / "poor.key"
    key.write_text(os.urandom(32).hex())
    assert "insufficient balance" in refused("deploy", HELLO, "--duration", "1h", "--key", str(key))
    assert "not open" in refused("jobs", "stop", "999")
    assert "give an AMOUNT or --max" in refused("jobs", "withdraw", "0")
    assert "more than 0" in refused("jobs", "deposit", "0", "0")
    listed = json.loads(network.cli.run("jobs", "list", "--json").stdout)
    assert isinstance(listed, list)


KMS_APP = """
import hashlib, json, os, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DERIVE = os.environ.get("REEF_KMS_DERIVE_URL", "http://127.0.0.1:1100")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        with urllib.request.urlopen(DERIVE + "/derive/secp256k1?path=reef-e2e", timeout=20) as r:
            secret = r.read()
        body = json.dumps({"key_hash": hashlib.sha256(secret).hexdigest()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("127.0.0.1", 8080), Handler).serve_forever()
"""


def test_enclaves_get_their_keys_from_the_kms_root(network: Network, tmp_path: Path) -> None:
    """Two jobs of one image get the same key from the KMS root that reef up wired to them:
    keys belong to the image, not to one enclave's boot."""
    app = tmp_path / "kms-app"
    app.mkdir()
    (app / "app.py").write_text(KMS_APP)
    (app / "reef.toml").write_text(
        'name = "kms-demo"\ncommand = ["python3", "app.py"]\nports = [8080]\nmemory_mib = 128\n'
    )
    hashes = []
    for _ in range(2):
        deployed = _deploy(network, str(app), "--duration", "1h")
        wait_for_app(deployed["endpoint"], 30)
        hashes.append(httpx.get(deployed["endpoint"], timeout=30).json()["key_hash"])
    assert hashes[0] == hashes[1]


def test_logs_of_a_debug_job(network: Network) -> None:
    deployed = _deploy(network, HELLO, "--duration", "1h", "--debug")
    wait_for_app(deployed["endpoint"], 30)
    httpx.get(deployed["endpoint"] + "/nothing-here", timeout=10)

    def logged() -> str | None:
        out = network.cli.run("logs", deployed["job_id"]).stdout
        return out if "nothing-here" in out else None

    assert "404" in until("the request in the console", logged, timeout=20)
