"""Set-ups the provider tests share: a devnet with reef's contracts on loopback and ``reef provider
run`` processes against it (restarts, hostile tenants), a control plane in the test's own loop
on :func:`reef.testing.dev_market`, and an image store anyone may upload to."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reef.chain import Indexer, MarketClient, Web3BlockSource, parse_address, serve_devnet
from reef.market import (
    ControlPlane,
    EnclaveRunner,
    ImageFetcher,
    ImageStore,
    JobPolicy,
    RateCard,
    UploadPolicy,
    image_store_app,
)
from reef.node import Served, serve_app

if TYPE_CHECKING:  # the devnet (py-evm) loads only for the tests that start one
    from reef.chain import Devnet
    from reef.testing import DevMarket

REEF = str(Path(sys.executable).with_name("reef"))


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
