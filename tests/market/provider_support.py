"""A devnet with reef's contracts on loopback, and ``reef provider run`` processes against it:
for the tests that run the real provider process (restarts, hostile tenants)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from reef.chain import Deployment, Devnet, MarketClient, deploy_contracts, serve_devnet

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


def deploy_market(devnet: Devnet, *, control_plane: str | None = None) -> Deployment:
    """reef's contracts on ``devnet`` (a 5 s rate lock), every dev account funded; with
    ``control_plane``, dev account 9 registered as the provider serving there."""
    accounts = devnet.accounts
    deployment = deploy_contracts(
        devnet.web3(), accounts[0].address, rate_lock_s=5, fund=[a.address for a in accounts]
    )
    if control_plane is not None:
        provider = accounts[9].local_account
        MarketClient(devnet.web3(), deployment.market, account=provider).add_provider(control_plane)
    return deployment


@asynccontextmanager
async def provider_chain() -> AsyncIterator[ProviderChain]:
    devnet = Devnet()
    accounts = devnet.accounts
    deployment = deploy_market(devnet)
    server = await serve_devnet(devnet, port=0)
    owner = MarketClient(devnet.web3(), deployment.market, account=accounts[0].local_account)
    try:
        yield ProviderChain(
            devnet, server.url, deployment.market, deployment.block, owner, accounts[9].address
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
