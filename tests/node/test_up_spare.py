"""reef up's provider backend keeps a spare supervisor loaded ahead (its first launch is faster),
and closing the network, even after a failed start, lets that spare go: no supervisor of the
home is left waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from e2e_support import up_settings

from dev_tee_support import spare_supervisors, spare_supervisors_left
from proc_support import process_gone
from reef.enclave import LocalBackend
from reef.errors import ServiceError
from reef.home import ReefHome
from reef.market import BackendRunner
from reef.node import LocalNetwork, UpContext

pytestmark = pytest.mark.slow


def _provider_backend(network: LocalNetwork) -> LocalBackend:
    assert network.provider is not None
    runner = network.provider.runner
    assert isinstance(runner, BackendRunner)
    assert isinstance(runner.backend, LocalBackend)
    return runner.backend


async def test_the_provider_keeps_a_spare_that_aclose_lets_go(tmp_path: Path) -> None:
    home = ReefHome(tmp_path / "home")
    network = LocalNetwork(home, up_settings(kms=False, insecure=True))
    try:
        await network.start()
        backend = _provider_backend(network)
        # Loaded from the provider's start (it lists its enclaves), before any job launches.
        await asyncio.wait_for(backend.wait_spare(), 60)
        spares = spare_supervisors(home)
        assert len(spares) == 1
    finally:
        await network.aclose()
    assert await spare_supervisors_left(home) == []
    assert all(process_gone(pid) for pid in spares)


class _Failing:
    """An extension that fails to start, once the provider's spare is loaded."""

    def __init__(self) -> None:
        self.network: LocalNetwork | None = None
        self.spares: list[int] = []

    @property
    def name(self) -> str:
        return "broken"

    async def start(self, ctx: UpContext) -> Mapping[str, Any]:
        assert self.network is not None
        await asyncio.wait_for(_provider_backend(self.network).wait_spare(), 60)
        self.spares = spare_supervisors(ctx.home)
        raise ServiceError("it cannot start", hint="leave it out")

    async def aclose(self) -> None:
        pass


async def test_a_failed_start_lets_the_spare_go_too(tmp_path: Path) -> None:
    home = ReefHome(tmp_path / "home")
    failing = _Failing()
    network = failing.network = LocalNetwork(home, up_settings(kms=False, insecure=True), [failing])
    with pytest.raises(ServiceError, match="reef up's broken could not start"):
        await network.start()
    assert len(failing.spares) == 1
    assert await spare_supervisors_left(home) == []
    assert all(process_gone(pid) for pid in failing.spares)
