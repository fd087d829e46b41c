"""A provider closes its runner's enclave backend when it stops (a spare supervisor the backend
keeps exits), even when it failed to start; its enclaves are left running."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from reef.chain import parse_address
from reef.errors import RPCError
from reef.market import BackendRunner
from reef.node import ProviderService, ProviderSettings
from reef.testing import FakeBackend


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_provider_that_failed_to_start_still_closes_its_backend(tmp_path: Path) -> None:
    backend = FakeBackend()
    runner = BackendRunner(backend, tmp_path / "launch")
    settings = ProviderSettings(
        rpc_url=f"http://127.0.0.1:{_closed_port()}",
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
