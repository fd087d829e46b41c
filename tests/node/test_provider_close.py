"""A provider closes its runner's enclave backend when it stops (a spare supervisor the backend
keeps exits), even when it failed to start; its enclaves are left running. It is served as
every reef server: ``wait()`` returns when it stops."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from net_support import free_port
from reef.chain import parse_address
from reef.errors import RPCError
from reef.market import BackendRunner
from reef.node import ProviderService, ProviderSettings
from reef.testing import FakeBackend, dev_market


async def test_a_provider_that_failed_to_start_still_closes_its_backend(tmp_path: Path) -> None:
    backend = FakeBackend()
    runner = BackendRunner(backend, tmp_path / "launch")
    settings = ProviderSettings(
        rpc_url=f"http://127.0.0.1:{free_port()}",
        market=parse_address("0x" + "11" * 20, name="market"),
        provider=parse_address("0x" + "22" * 20, name="provider"),
        db_url=f"sqlite:///{tmp_path / 'index.db'}",
        cache_dir=tmp_path / "cache",
    )
    service = ProviderService(settings, runner)
    with pytest.raises(RPCError, match="cannot reach the JSON-RPC endpoint"):
        await service.start()
    assert not backend.closed
    await service.aclose()
    assert backend.closed


async def test_a_provider_is_served_until_it_stops(tmp_path: Path) -> None:
    """``wait()`` is how ``reef provider run`` serves it, as every reef server: it returns
    at once before start, waits while the provider serves (cancelling the wait leaves it
    serving), and returns once it stops."""
    market = dev_market(fund=[])
    settings = ProviderSettings(
        rpc_url="http://devnet.invalid",
        market=market.deployment.market,
        provider=parse_address(market.provider.address, name="provider"),
        db_url=f"sqlite:///{tmp_path / 'index.db'}",
        cache_dir=tmp_path / "cache",
        start_block=market.deployment.block,
        port=0,
    )
    service = ProviderService(
        settings, BackendRunner(FakeBackend(), tmp_path / "launch"), w3=market.devnet.web3()
    )
    await asyncio.wait_for(service.wait(), 5)  # not started: nothing to wait for
    await service.start()
    try:
        waiting = asyncio.create_task(service.wait())
        await asyncio.sleep(0.3)
        assert not waiting.done()
        waiting.cancel()
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{service.url}/spec")).status_code == 200
        waiting = asyncio.create_task(service.wait())
    finally:
        await service.aclose()
    await asyncio.wait_for(waiting, 5)
