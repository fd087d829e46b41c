"""kill -9 of the control plane in the middle of a launch, then a restart: exactly one enclave per
paying job, none for a job that stopped paying while it was down.

The control plane is the real `reef provider run` process, on a devnet served over JSON-RPC,
with images from a real image store and enclaves on the local dev TEE."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from dev_tee_support import requires_isolation, stop_all_enclaves
from market.provider_support import (
    ProviderChain,
    provider_chain,
    serve_image_store,
    start_provider,
)
from net_support import free_port
from proc_support import stop_process
from reef.enclave import LocalBackend, build_image
from reef.home import ReefHome
from reef.market import (
    BackendRunner,
    ImageStore,
    RateCard,
    upload_image,
)
from reef.testing import dev_job_metadata

pytestmark = [pytest.mark.slow, requires_isolation]

REPO = Path(__file__).resolve().parents[2]
CARD = RateCard.dev().lookup("local", "dev.small")


@pytest.fixture
async def chain() -> AsyncIterator[ProviderChain]:
    async with provider_chain() as served:
        yield served


async def _provider(home: Path, chain: ProviderChain, port: int) -> asyncio.subprocess.Process:
    return await start_provider(home, chain, port, "--safety-margin", "2")


def _runner(home: Path, provider: str) -> BackendRunner:
    """The enclave runner ``reef provider run`` uses in ``home``, to read its enclaves."""
    return BackendRunner(
        LocalBackend(ReefHome(home)), home / "provider" / "launch", provider=provider
    )


async def _enclaves_by_job(home: Path, provider: str) -> Counter[str]:
    running = [e for e in await _runner(home, provider).list() if e.state == "running"]
    return Counter(e.job_id for e in running)


async def _until(what: str, check: Callable[[], Awaitable[bool]], seconds: float = 60) -> None:
    try:
        async with asyncio.timeout(seconds):
            while not await check():  # noqa: ASYNC110 - polling other processes' state
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def _explain(home: Path, provider: str) -> str:
    """What the enclaves and the control planes' log say, for a failure message."""
    states = [(e.id, e.job_id, e.state) for e in await _runner(home, provider).list()]
    log = (home / "provider.log").read_text(errors="replace")[-6000:]
    return f"enclaves (id, job, state): {states}\ncontrol plane log tail:\n{log}"


async def _first_enclave_started(home: Path) -> bool:
    directory = home / "enclaves"
    return directory.is_dir() and any(
        (entry / "state.json").exists() for entry in directory.iterdir()
    )


async def test_kill_9_mid_launch_then_restart(chain: ProviderChain, reef_home: Path) -> None:
    home = reef_home
    image = home / "hello.img"
    build_image(REPO / "examples" / "hello", image)
    store = await serve_image_store(ImageStore(home / "store"))
    port = free_port()
    chain.register(port)
    _, url = await asyncio.to_thread(upload_image, store.url, image, signer=None)
    metadata = dev_job_metadata(url, name="hello").to_json()
    cp = await _provider(home, chain, port)
    try:
        jobs = [
            chain.owner.open_job(metadata, chain.provider, CARD.min_rate, 10**6) for _ in range(3)
        ]
        # The first enclave's state appears before its processes boot: kill -9 right then.
        await _until("a launch to begin", lambda: _first_enclave_started(home), 30)
        cp.send_signal(signal.SIGKILL)
        await cp.wait()
        # It really died mid-way: not every paying job had its enclave running yet.
        assert sum((await _enclaves_by_job(home, chain.provider)).values()) < 3

        # While the control plane is down, the third job stops paying enough.
        chain.owner.revise_rate_initiate(jobs[2], CARD.min_rate - 1)

        cp = await _provider(home, chain, port)
        paying = {jobs[0].lower(), jobs[1].lower()}

        async def settled() -> bool:
            return await _enclaves_by_job(home, chain.provider) == Counter(
                {job: 1 for job in paying}
            )

        try:
            await _until("one enclave per paying job", settled)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{await _explain(home, chain.provider)}") from None
        # ... and it stays so across heartbeats (nothing relaunched twice, nothing revived).
        await asyncio.sleep(6)
        assert await _enclaves_by_job(home, chain.provider) == Counter({job: 1 for job in paying})
    finally:
        await stop_process(cp)
        await stop_all_enclaves(LocalBackend(ReefHome(home)))
        await store.aclose()
