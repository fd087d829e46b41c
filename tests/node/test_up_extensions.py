"""reef up's extensions: each reports its services into network.json; one that cannot start
stops the network with a message naming it and the flag that leaves it out."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from e2e_support import up_settings

from reef.errors import ConfigError, ServiceError
from reef.home import ReefHome
from reef.node import LocalNetwork, NetworkInfo, UpContext

pytestmark = pytest.mark.slow


class _Recording:
    def __init__(self, name: str, *, fail: bool = False) -> None:
        self._name = name
        self.fail = fail
        self.started: UpContext | None = None
        self.closed = False

    @property
    def name(self) -> str:
        return self._name

    async def start(self, ctx: UpContext) -> Mapping[str, Any]:
        self.started = ctx
        if self.fail:
            raise ServiceError("npm was not found", hint="apt-get install npm")
        return {"url": f"http://{self._name}.example", "chain_id": ctx.info.chain_id}

    async def aclose(self) -> None:
        self.closed = True


async def test_extensions_report_into_network_json(tmp_path: Path) -> None:
    home = ReefHome(tmp_path / "home")
    first, second = _Recording("first"), _Recording("second")
    network = LocalNetwork(home, up_settings(kms=False, insecure=True), [first, second])
    try:
        info = await network.start()
        assert first.started is not None
        assert second.started is not None
        assert first.started.info.rpc_url == info.rpc_url
        on_disk = NetworkInfo.load(home)
        assert on_disk.services["first"] == {"url": "http://first.example", "chain_id": 31337}
        assert set(on_disk.services) == {"first", "second"}
    finally:
        stopping: list[str] = []
        await network.aclose(progress=stopping.append)
    assert first.closed
    assert second.closed
    # A line per part as it stops (a full network takes a minute to stop on a busy machine:
    # one line for all of it read as a hang), the extensions first, in reverse order.
    assert stopping == [
        "stopping the second service",
        "stopping the first service",
        "stopping the provider and its enclaves",
        "stopping the chain",
    ]


async def test_an_extension_that_cannot_start_names_itself_and_its_flag(tmp_path: Path) -> None:
    home = ReefHome(tmp_path / "home")
    good, broken = _Recording("dashboard"), _Recording("serverless", fail=True)
    network = LocalNetwork(home, up_settings(kms=False, insecure=True), [good, broken])
    with pytest.raises(ServiceError) as caught:
        await network.start()
    assert "reef up's serverless could not start: npm was not found" in caught.value.message
    assert caught.value.hint == "apt-get install npm; or run `reef up --no-serverless`"
    # What started was stopped again, and no stale network.json is left behind.
    assert good.closed
    assert broken.closed
    with pytest.raises(ConfigError, match="no reef network"):
        NetworkInfo.load(home)
