"""Two reef enclaves (local dev TEE) exchange HTTP over Scallop, each seeing the other's image id.

Runs examples/scallop: the client enclave calls the server enclave through the host-mapped port,
both attest with their enclave identity keys, and the server app reads the client's image id
from the verified channel. A client whose policy names another image is refused before any
request reaches the server.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from dev_tee_support import get, requires_isolation
from reef.attestation import DevAuthority
from reef.crypto import generate_x25519
from reef.enclave import EnclaveInfo, EnclaveSpec, LocalBackend, build_image
from reef.home import ReefHome
from reef.scallop import PeerPolicy, ScallopTransport

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(sys.platform != "linux", reason="the dev TEE runs on Linux"),
    requires_isolation,
]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scallop"


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> ReefHome:
    return ReefHome(tmp_path_factory.mktemp("scallop-enclaves"))


@pytest.fixture(scope="module")
def authority(home: ReefHome) -> DevAuthority:
    return DevAuthority.load_or_create(home)


@pytest.fixture(scope="module")
def enclaves(
    home: ReefHome, authority: DevAuthority, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[EnclaveInfo, EnclaveInfo]]:
    out = tmp_path_factory.mktemp("images")
    server_image = build_image(EXAMPLES / "server", out / "server.img")
    client_image = build_image(EXAMPLES / "client", out / "client.img")
    assert server_image.image_id != client_image.image_id
    backend = LocalBackend(home, authority=authority)
    server = asyncio.run(backend.start(EnclaveSpec(image=out / "server.img")))
    try:
        client = asyncio.run(backend.start(EnclaveSpec(image=out / "client.img")))
        try:
            yield server, client
        finally:
            asyncio.run(backend.stop(client.id))
    finally:
        asyncio.run(backend.stop(server.id))


async def server_stats(server: EnclaveInfo, authority: DevAuthority) -> dict[str, int]:
    """Ask the server how many requests it answered, as an attested (dev) client from the host."""
    secret, public = generate_x25519()

    async def auther() -> bytes:
        pcrs = {0: b"\x11" * 48, 1: b"\x12" * 48, 2: b"\x13" * 48}
        return authority.mint(pcrs, timestamp_ms=time.time_ns() // 10**6, public_key=public)

    transport = ScallopTransport(
        static_key=secret, policy=PeerPolicy(roots=[authority.root]), auther=auther
    )
    port = port_of(server.endpoints["ports"][8443])
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(100):
            try:
                answer = await client.get(f"http://127.0.0.1:{port}/stats")
                break
            except Exception:
                await asyncio.sleep(0.1)
        else:
            answer = await client.get(f"http://127.0.0.1:{port}/stats")
    stats: dict[str, int] = answer.json()
    assert answer.extensions["scallop"].image_id == server.image_id
    return stats


async def test_two_enclaves_exchange_http_over_scallop_and_see_each_others_image(
    enclaves: tuple[EnclaveInfo, EnclaveInfo], authority: DevAuthority
) -> None:
    server, client = enclaves
    assert server.state == "running"
    assert client.state == "running"
    before = (await server_stats(server, authority))["hello"]
    server_port = port_of(server.endpoints["ports"][8443])
    call = f"{client.endpoints['ports'][8080]}/call?port={server_port}"

    answer = await get(
        f"{call}&image_id={server.image_id.hex()}&message=hi", attempts=100, request_timeout=30
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["client_image_id"] == client.image_id.hex()
    assert body["server_image_id_seen"] == server.image_id.hex()  # the client saw the server
    assert body["server_answer"]["client_image_id"] == client.image_id.hex()  # and vice versa
    assert body["server_answer"]["server_image_id"] == server.image_id.hex()
    assert body["server_answer"]["message"] == "hi"
    assert (await server_stats(server, authority))["hello"] == before + 1

    other = bytes(32).hex()
    refused = await get(f"{call}&image_id={other}", attempts=100, request_timeout=30)
    assert refused.status_code == 403
    assert "image_id" in refused.json()["refused"]
    assert server.image_id.hex() in refused.json()["refused"]
    # Refused before any data: the server answered nothing more.
    assert (await server_stats(server, authority))["hello"] == before + 1
