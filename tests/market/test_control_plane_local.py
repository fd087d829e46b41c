"""The control plane's runner on the real local dev TEE: launch, find its own enclaves again from
another process's view by their labels, replace in place (same host ports), stop without
leftovers, and never touch enclaves someone else started."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import httpx
import pytest

from dev_tee_support import requires_isolation, stop_all_enclaves
from reef.enclave import EnclaveSpec, LocalBackend, build_image
from reef.home import ReefHome
from reef.market import BackendRunner, FetchedImage, LaunchSpec, launch_key
from reef.node._deploy import wait_for_app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
JOB = "0x" + "00" * 31 + "07"
PROVIDER = "0x" + "22" * 20

pytestmark = [pytest.mark.slow, requires_isolation]


def _spec(url: str, *, debug: bool = False) -> LaunchSpec:
    return LaunchSpec(
        job_id=JOB,
        owner="0x" + "11" * 20,
        image_url=url,
        init_params=b"",
        debug=debug,
        vcpu=1,
        memory=256,
        instance="dev.small",
        region="local",
        family="tuna",
        name="hello",
        bandwidth_kbit_s=0,
    )


@pytest.fixture
def image(reef_home: Path) -> FetchedImage:
    path = reef_home / "hello.img"
    build_image(EXAMPLES / "hello", path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return FetchedImage(f"http://store/images/{sha}", sha, path)


async def test_launch_list_replace_stop(reef_home: Path, image: FetchedImage) -> None:
    home = ReefHome(reef_home)
    backend = LocalBackend(home)
    workdir = reef_home / "provider" / "launch"
    runner = BackendRunner(backend, workdir, provider=PROVIDER)
    # Enclaves started by someone else on the same home are not the control plane's: one
    # without labels, and one with a job label that another runner would give.
    foreign = await backend.start(EnclaveSpec(image=image.path))
    lookalike = await backend.start(
        EnclaveSpec(image=image.path, labels={"reef.job": JOB, "reef.runner": "/elsewhere"})
    )
    try:
        spec = _spec(image.url)
        first = await runner.launch(spec, image, launch_key(spec))
        assert first.state == "running"
        assert (await backend.status(first.enclave_id)).labels == {
            "reef.runner": str(workdir.resolve()),
            "reef.provider": PROVIDER,
            "reef.job": JOB,
            "reef.launch-key": launch_key(spec),
        }
        app = first.endpoints["ports"]["8080"]
        await asyncio.to_thread(wait_for_app, app, 30)
        async with httpx.AsyncClient() as client:
            assert (await client.get(app, timeout=5)).json()["greeting"]

        # A fresh runner (a restarted control plane) recognises it, job and key included.
        again = BackendRunner(LocalBackend(home), workdir, provider=PROVIDER)
        (listed,) = await again.list()
        assert (listed.enclave_id, listed.job_id, listed.key) == (
            first.enclave_id,
            JOB,
            launch_key(spec),
        )
        # Another provider's runner over the same directory does not take it.
        assert await BackendRunner(backend, workdir, provider="0x" + "33" * 20).list() == []

        debug = _spec(image.url, debug=True)
        second = await again.replace(first.enclave_id, debug, image, launch_key(debug))
        assert second.enclave_id == first.enclave_id
        assert second.endpoints["ports"]["8080"] == app  # the user's endpoint did not move
        assert second.endpoints["logs"]
        (listed,) = await again.list()
        assert listed.key == launch_key(debug)

        await again.stop(second.enclave_id)
        assert await again.list() == []
        assert list(workdir.iterdir()) == []
        assert [e.id for e in await backend.list()] == [foreign.id, lookalike.id]
    finally:
        await stop_all_enclaves(backend)


async def test_a_providers_enclave_attests_its_job(reef_home: Path, image: FetchedImage) -> None:
    """An image id alone does not say whose enclave answers at the endpoint a provider names:
    a hostile provider named another provider's enclave of the same image as its job's, and was
    paid for running nothing. A provider's enclave attests its job (chain, market, job id) as
    its documents' user data, on both attestation endpoints, and a replacement keeps it."""
    from reef.attestation import AttestationClient, TrustedRoot
    from reef.market import job_user_data

    home = ReefHome(reef_home)
    backend = LocalBackend(home)
    runner = BackendRunner(backend, reef_home / "provider" / "launch", provider=PROVIDER)
    market = "0x" + "44" * 20
    runner.attest_jobs(chain_id=31337, market=market)
    try:
        spec = _spec(image.url)
        first = await runner.launch(spec, image, launch_key(spec))
        client = AttestationClient(root=TrustedRoot.resolve("dev", home), timeout=10.0)
        bound = job_user_data(31337, market, JOB)
        assert bound == f"reef-job/1 chain=31337 market={market} job={JOB}".encode()
        for endpoint in ("attestation", "attestation_secp256k1"):
            verified = await asyncio.to_thread(client.verify, first.endpoints[endpoint])
            assert verified.user_data == bound, endpoint
        debug = _spec(image.url, debug=True)
        second = await runner.replace(first.enclave_id, debug, image, launch_key(debug))
        fresh = AttestationClient(root=TrustedRoot.resolve("dev", home), timeout=10.0)
        again = await asyncio.to_thread(fresh.verify, second.endpoints["attestation"])
        assert again.user_data == bound
    finally:
        await stop_all_enclaves(backend)
