"""ExecutorServer, what ``reef executor run`` serves: both apps up on real sockets, ``wait`` until
one stops, and a start that fails half-way closes what it had opened."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest

from reef.crypto import Secp256k1PrivateKey
from reef.errors import InputError, MisuseError, ServiceError
from reef.serverless import ExecutorServer, ExecutorSettings


def _server(tmp_path: Path, **kwargs: object) -> ExecutorServer:
    # No call reaches deployed code here, so workerd never starts.
    return ExecutorServer(
        Secp256k1PrivateKey.generate(),
        tmp_path / "workerd",
        tmp_path,
        control_port=0,
        gateway_port=0,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_both_apps_answer_and_wait_returns_once_closed(tmp_path: Path) -> None:
    server = await _server(tmp_path).start()
    waiting = asyncio.ensure_future(server.wait())
    try:
        async with httpx.AsyncClient() as http:
            details = (await http.get(f"{server.control_url}/details")).json()
            assert details["enclave_address"] == server.address
            assert details["configured"] is False
            unconfigured = await http.get(f"{server.gateway_url}/fn/not-a-codehash")
            assert unconfigured.status_code == 503, unconfigured.text
            assert "not configured" in unconfigured.text
        await asyncio.sleep(0.05)
        assert not waiting.done()
    finally:
        await server.aclose()
    await asyncio.wait_for(waiting, 5)
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"{server.control_url}/details")


async def test_a_start_that_fails_half_way_closes_the_server_it_opened(tmp_path: Path) -> None:
    with socket.socket() as busy, socket.socket() as spare:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        spare.bind(("127.0.0.1", 0))
        control_port = spare.getsockname()[1]
        spare.close()
        server = ExecutorServer(
            Secp256k1PrivateKey.generate(),
            tmp_path / "workerd",
            tmp_path,
            control_port=control_port,
            gateway_port=busy.getsockname()[1],
        )
        with pytest.raises(ServiceError):
            await server.start()
    # The control server had started before the gateway's port was refused: it is closed.
    with socket.socket() as again:
        again.bind(("127.0.0.1", control_port))


async def test_configuring_at_once_needs_an_owner_and_urls_need_a_start(tmp_path: Path) -> None:
    settings = ExecutorSettings(
        rpc_url="http://127.0.0.1:1", jobs_contract="0x" + "11" * 20, code_contract="0x" + "22" * 20
    )
    with pytest.raises(InputError, match="needs its owner"):
        _server(tmp_path, configure=settings)
    with pytest.raises(MisuseError):
        _ = _server(tmp_path).control_url
