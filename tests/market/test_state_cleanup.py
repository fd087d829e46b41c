"""A tenant's ``/state`` volumes leave the provider's disk once its jobs end.

Replays what the enclave round found: every image id that ever ran on a provider left its
``/state`` volume (a sparse ext4 file of up to 1 GiB under ``$REEF_HOME/enclave-state``) behind for
good, so a tenant opening cheap jobs with ever new images (open, let it start, fill ``/state``,
stop) filled the provider's disk. Now a job that ends (closed, or stopped by its owner, while the
provider runs or while it is down) takes its image's ``/state`` with it, while a live job's stays,
and so does the one of a job whose enclave is merely restarting. An enclave the control plane did
not start (the KMS root ``reef up`` runs) keeps its ``/state`` even when a job ran the same image.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from dev_tee_support import requires_isolation, stop_all_enclaves
from market.provider_support import local_control_plane, serve_image_store
from reef.chain import JobId
from reef.enclave import EnclaveSpec, LocalBackend, build_image
from reef.home import ReefHome
from reef.market import BackendRunner, ControlPlane, ImageStore, RateCard
from reef.testing import DevMarket, FakeRunner, dev_job_metadata, dev_market

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CARD = RateCard.dev().lookup("local", "dev.small")


def _image(tmp: Path, variant: str) -> Path:
    """The hello example with one more file: another image, another image id."""
    app = tmp / f"app-{variant}"
    shutil.copytree(EXAMPLES / "hello", app)
    (app / "variant.txt").write_text(variant)
    path = tmp / f"{variant}.img"
    build_image(app, path)
    return path


async def _until(
    cp: ControlPlane, what: str, check: Callable[[], bool], seconds: float = 90
) -> None:
    try:
        async with asyncio.timeout(seconds):
            while not check():
                await cp.step()
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"no {what}: {cp.jobs()}") from None


def _end(market: DevMarket, job: JobId, *, close: bool) -> None:
    tenant = market.owner
    tenant.revise_rate_initiate(job, 0)
    if close:
        market.devnet.increase_time(10)  # past the rate lock
        tenant.close(job)


@pytest.mark.slow
@requires_isolation
async def test_ended_jobs_take_their_state_volumes_with_them(tmp_path: Path) -> None:
    home = ReefHome(tmp_path / "home")
    market = dev_market(control_plane="http://127.0.0.1:9")
    store = ImageStore(tmp_path / "store")
    served = await serve_image_store(store)
    images = {v: _image(tmp_path, v) for v in ("closed", "stopped", "live", "restarting", "kms")}
    backend = LocalBackend(home)

    def control_plane() -> ControlPlane:
        runner = BackendRunner(
            LocalBackend(home), home.root / "launch", provider=market.provider.address
        )
        return local_control_plane(market, runner, tmp_path)

    def open_job(variant: str) -> JobId:
        sha = store.put(images[variant].read_bytes())
        meta = dev_job_metadata(f"{served.url}/images/{sha}", memory=128).to_json()
        return market.owner.open_job(meta, market.provider.address, CARD.min_rate, 10**7)

    states: dict[str, Path] = {}

    def volume(variant: str) -> bool:
        directory = states[variant]
        return directory.exists() or directory.with_name(directory.name + ".ext4").exists()

    def volumes() -> dict[str, bool]:
        return {variant: volume(variant) for variant in sorted(states)}

    cp: ControlPlane | None = None
    try:
        # The KMS root: started by `reef up`, not by the market, from an image a tenant may run
        # too; between two runs of `reef up` its enclave is stopped, its sealed seed in /state.
        kms = await backend.start(EnclaveSpec(image=images["kms"], labels={"reef.role": "kms"}))
        await backend.stop(kms.id)
        # An image's /state is named by its image id (docs/enclave.md).
        states = {
            variant: home.root
            / "enclave-state"
            / backend.measure(EnclaveSpec(image=path)).image_id.hex()
            for variant, path in images.items()
        }
        states["kms-root"] = states["kms"]  # a tenant may run the KMS root's image

        jobs = {v: open_job(v) for v in images}
        cp = first = control_plane()
        await first.start()

        await _until(
            first, "five enclaves", lambda: all(_runs(first, job)() for job in jobs.values())
        )
        assert all(volume(v) for v in states)

        # A job whose enclave died is merely restarting: its /state stays.
        restarting = first.enclave(jobs["restarting"])
        assert restarting is not None
        await backend.stop(restarting.enclave_id)
        await first.reconcile()
        assert volume("restarting")

        # Jobs end while the provider runs: closed, and stopped by their owner.
        _end(market, jobs["closed"], close=True)
        _end(market, jobs["kms"], close=False)
        await _until(
            first,
            "the ended jobs' /state to go",
            lambda: not volume("closed") and first.enclave(jobs["kms"]) is None,
        )
        await _until(first, "the restarted enclave", _runs(first, jobs["restarting"]))
        # The KMS root's seed is never the market's to remove, though a job ran its image.
        assert volumes() == {
            "closed": False,
            "kms": True,
            "kms-root": True,
            "live": True,
            "restarting": True,
            "stopped": True,
        }

        # A job stopped while the provider is down: its /state goes once the provider is back.
        await first.aclose()
        cp = None
        _end(market, jobs["stopped"], close=False)
        cp = control_plane()
        await cp.start()
        assert volumes() == {
            "closed": False,
            "kms": True,
            "kms-root": True,
            "live": True,
            "restarting": True,
            "stopped": False,
        }
    finally:
        if cp is not None:
            await cp.aclose()
        await stop_all_enclaves(backend)
        await served.aclose()


def _runs(cp: ControlPlane, job: JobId) -> Callable[[], bool]:
    def check() -> bool:
        enclave = cp.enclave(job)
        return enclave is not None and enclave.state == "running"

    return check


async def test_a_shared_state_stays_while_any_job_has_it_and_an_updated_job_leaves_its_old_one(
    tmp_path: Path,
) -> None:
    """The control plane's bookkeeping, on the fake runner: two jobs of one image share its
    /state, which goes with the last of them; a job moved to another image (``jobs update``)
    leaves the old image's /state, which goes, and keeps the new one's."""
    market = dev_market(control_plane="http://127.0.0.1:9")
    store = ImageStore(tmp_path / "store")
    served = await serve_image_store(store)
    enclaves = FakeRunner()

    def meta(image: bytes) -> str:
        return dev_job_metadata(f"{served.url}/images/{store.put(image)}").to_json()

    def state_of(job: JobId) -> str:
        (enclave,) = enclaves.of(job)
        return enclave.state_key

    cp = local_control_plane(market, enclaves, tmp_path)
    try:
        shared = meta(b"one image, two jobs")
        first, second = (
            market.owner.open_job(shared, market.provider.address, CARD.min_rate, 10**7)
            for _ in range(2)
        )
        moving = market.owner.open_job(
            meta(b"the image before the update"), market.provider.address, CARD.min_rate, 10**7
        )
        await cp.start()
        await _until(cp, "three enclaves", lambda: len(enclaves.jobs()) == 3)
        one, before = state_of(first), state_of(moving)
        assert state_of(second) == one
        assert enclaves.states == {one, before}

        _end(market, first, close=False)
        await _until(cp, "the first job to stop", lambda: first not in enclaves.jobs())
        assert enclaves.states == {one, before}  # the second job still has it

        market.owner.update_metadata(moving, meta(b"the image after the update"))
        await _until(cp, "the update", lambda: state_of(moving) != before)
        after = state_of(moving)
        assert enclaves.states == {one, after}

        _end(market, second, close=False)
        await _until(cp, "the shared /state to go", lambda: enclaves.states == {after})
    finally:
        await cp.aclose()
        await served.aclose()
