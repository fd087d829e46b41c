"""Set-ups the provider tests share: a devnet with reef's contracts on loopback and ``reef provider
run`` processes against it (restarts, hostile tenants) with a poll of their ``/job`` answers, a
control plane in the test's own loop on :func:`reef.testing.dev_market` (alone, or with fake
enclaves, an image store and the tenants who open jobs for it), and an image store anyone may
upload to."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from reef.chain import Indexer, JobId, MarketClient, Web3BlockSource, parse_address, serve_devnet
from reef.market import (
    ControlPlane,
    EnclaveRunner,
    ImageFetcher,
    ImagePolicy,
    ImageStore,
    JobPolicy,
    RateCard,
    UploadPolicy,
    image_store_app,
)
from reef.node import Served, serve_app
from reef.testing import FakeRunner, dev_job_metadata

if TYPE_CHECKING:  # the devnet (py-evm) loads only for the tests that start one
    from reef.chain import Devnet
    from reef.testing import DevMarket

REEF = str(Path(sys.executable).with_name("reef"))
CARD = RateCard.dev().lookup("local", "dev.small")


@dataclass
class ProviderChain:
    """A served devnet, its market, a funded job owner and the provider's address (dev
    account 9)."""

    devnet: Devnet
    rpc_url: str
    market: str
    start_block: int
    owner: MarketClient
    provider: str

    def register(self, port: int) -> None:
        """Register the provider with its control plane on loopback ``port``."""
        signer = self.devnet.accounts[9].local_account
        MarketClient(self.devnet.web3(), self.market, account=signer).add_provider(
            f"http://127.0.0.1:{port}"
        )


@asynccontextmanager
async def provider_chain() -> AsyncIterator[ProviderChain]:
    from reef.testing import dev_market

    market = dev_market()
    server = await serve_devnet(market.devnet, port=0)
    try:
        yield ProviderChain(
            market.devnet,
            server.url,
            market.deployment.market,
            market.deployment.block,
            market.owner,
            market.provider.address,
        )
    finally:
        await server.aclose()


async def start_provider(
    home: Path, chain: ProviderChain, port: int, *flags: str
) -> asyncio.subprocess.Process:
    """``reef provider run`` for ``chain``'s provider on ``port``, with ``flags`` added. Its
    output is appended to ``home/provider.log``, so a failure shows what each run did."""
    with (home / "provider.log").open("ab") as log:
        return await asyncio.create_subprocess_exec(
            REEF,
            "provider",
            "run",
            "--rpc",
            chain.rpc_url,
            "--market",
            chain.market,
            "--provider",
            chain.provider,
            "--port",
            str(port),
            "--start-block",
            str(chain.start_block),
            *flags,
            env={**os.environ, "REEF_HOME": str(home)},
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


async def provider_job(
    process: asyncio.subprocess.Process,
    home: Path,
    port: int,
    job: str,
    until: Callable[[dict[str, Any]], bool],
    seconds: float = 60,
) -> dict[str, Any]:
    """The ``/job`` answer of a :func:`start_provider` process (on ``port``) for ``job`` once
    ``until`` holds of it; fails at once, with the provider's log, if the process dies."""

    def log() -> str:
        return (home / "provider.log").read_text(errors="replace")[-3000:]

    async with httpx.AsyncClient(timeout=5) as http:
        try:
            async with asyncio.timeout(seconds):
                while True:
                    if process.returncode is not None:
                        raise AssertionError(
                            f"the provider died (exit {process.returncode}):\n{log()}"
                        )
                    try:
                        answer = await http.get(f"http://127.0.0.1:{port}/job", params={"id": job})
                    except httpx.TransportError:
                        answer = None
                    if answer is not None and answer.status_code == 200:
                        body: dict[str, Any] = answer.json()
                        if until(body):
                            return body
                    await asyncio.sleep(0.2)
        except TimeoutError:
            raise AssertionError(f"the provider never got there with {job}:\n{log()}") from None


def local_control_plane(
    market: DevMarket, runner: EnclaveRunner, directory: Path, **options: Any
) -> ControlPlane:
    """A control plane for ``market``'s provider (a 5 s safety margin), indexing the devnet
    in-process into ``directory/index.db`` and caching images in ``directory/cache``; retries
    come quickly and heartbeats never (tests step it). ``options`` go to :class:`ControlPlane`."""
    return ControlPlane(
        policy=JobPolicy(
            RateCard.dev(), provider=parse_address(market.provider.address), safety_margin_s=5
        ),
        feed=Indexer(
            Web3BlockSource(market.devnet.web3()),
            f"sqlite:///{directory / 'index.db'}",
            contract=market.deployment.market,
            start_block=market.deployment.block,
        ),
        runner=runner,
        fetcher=ImageFetcher(ImageStore(directory / "cache")),
        retry_delay=0.05,
        heartbeat_interval=3600,
        **options,
    )


async def serve_image_store(store: ImageStore) -> Served:
    """``store`` served on loopback (a free port), taking uploads from anyone."""
    return await serve_app(
        image_store_app(store, uploads=UploadPolicy.anyone()),
        host="127.0.0.1",
        port=0,
        what="store",
    )


@dataclass
class TenantProvider:
    """A control plane following a devnet market (:func:`tenant_provider`), its fake enclaves,
    an image store on loopback, and the dev accounts who open jobs for it as its tenants."""

    cp: ControlPlane
    runner: FakeRunner
    market: DevMarket
    address: str
    store: ImageStore
    store_url: str

    @property
    def tenant(self) -> MarketClient:
        """Dev account 1, the tenant :meth:`open` uses unless told otherwise."""
        return self.market.client(1)

    def open(self, url: str, *, tenant: int = 1, deposit: int = 10**7) -> JobId:
        """Dev account ``tenant`` opens a job for this provider running the image at ``url``."""
        client = self.market.client(tenant)
        return client.open_job(
            dev_job_metadata(url).to_json(), self.address, CARD.min_rate, deposit
        )

    def image(self, content: bytes) -> str:
        """The URL of ``content`` in the image store (content-addressed)."""
        return f"{self.store_url}/images/{self.store.put(content)}"

    def status(self, job: JobId) -> dict[str, Any]:
        """The job's status (``{}`` until the control plane has seen the job)."""
        return dict(self.cp.job_status(job) or {})

    async def until(self, what: str, check: Callable[[], bool], seconds: float = 40) -> None:
        """Step the control plane until ``check`` holds; fail naming ``what`` after ``seconds``."""
        try:
            async with asyncio.timeout(seconds):
                while not check():
                    await self.cp.step()
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"no {what}: {self.cp.jobs()}") from None

    async def until_done(self, jobs: list[JobId]) -> None:
        await self.until(
            "end of every job", lambda: all(self.status(j).get("phase") == "done" for j in jobs)
        )


@asynccontextmanager
async def tenant_provider(
    tmp_path: Path,
    policy: ImagePolicy | None = None,
    *,
    head_s: float = 5.0,
    **options: Any,
) -> AsyncIterator[TenantProvider]:
    """A started control plane for a new dev market's provider (``options`` go to
    :class:`reef.market.ControlPlane`) whose fetcher follows ``policy`` (``reef up``'s by default)
    and gives up on a server after ``head_s``; closed, with its store, even on failure."""
    from reef.testing import dev_market

    market = dev_market(control_plane="http://127.0.0.1:9")
    store = ImageStore(tmp_path / "store")
    runner = FakeRunner()
    cp = local_control_plane(market, runner, tmp_path, **options)
    cp.fetcher = ImageFetcher(
        ImageStore(tmp_path / "cache"), policy or ImagePolicy(), timeout=head_s
    )
    served = await serve_image_store(store)
    try:
        await cp.start()
        yield TenantProvider(cp, runner, market, market.provider.address, store, served.url)
    finally:
        await cp.aclose()
        await served.aclose()
