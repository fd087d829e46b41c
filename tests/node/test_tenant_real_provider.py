"""A tenant deploys to a `reef provider run` of another home and verifies its real dev TEE enclave.

The whole path of ``tests/node/test_tenant_root.py`` on a real provider process (its own
``$REEF_HOME``, its own dev TEE authority, an enclave it launches) instead of a scripted control
plane: ``reef deploy --root provider`` from the tenant's home fetches the provider's root from its
control plane, stores it, and verifies the launched enclave under it; ``reef verify`` then takes
the stored name.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dev_tee_support import requires_isolation, stop_all_enclaves
from market.provider_support import (
    ProviderChain,
    provider_chain,
    serve_image_store,
    start_provider,
)
from net_support import free_port
from proc_support import stop_process
from reef.attestation import TrustedRoot
from reef.cli import app
from reef.enclave import LocalBackend, build_image
from reef.home import ReefHome
from reef.market import ImageStore

REPO = Path(__file__).resolve().parents[2]

runner = CliRunner()

pytestmark = [
    pytest.mark.slow,
    requires_isolation,
]


def _reef(*args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "250"})


async def _until_serving(url: str, process: asyncio.subprocess.Process) -> None:
    import httpx

    async with asyncio.timeout(60), httpx.AsyncClient() as client:
        while True:
            assert process.returncode is None, "the provider exited: see its provider.log"
            try:
                if (await client.get(f"{url}/spec", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)


async def test_a_tenant_on_another_home_verifies_a_real_providers_enclave(
    tmp_path: Path, reef_home: Path
) -> None:
    provider_home = tmp_path / "provider-home"
    provider_home.mkdir()
    image = tmp_path / "hello.img"
    build_image(REPO / "examples" / "hello", image)
    store = await serve_image_store(ImageStore(tmp_path / "store"))
    port = free_port()
    cp = None
    async with provider_chain() as chain:
        chain.register(port)
        try:
            cp = await start_provider(provider_home, chain, port)
            await _until_serving(f"http://127.0.0.1:{port}", cp)
            await _tenant_walk(chain, reef_home, tmp_path, image, store.url)
        finally:
            if cp is not None:
                await stop_process(cp)
            await stop_all_enclaves(LocalBackend(ReefHome(provider_home)))
            await store.aclose()


async def _tenant_walk(
    chain: ProviderChain, tenant_home: Path, tmp_path: Path, image: Path, store: str
) -> None:
    key = tmp_path / "tenant.key"
    key.write_text(chain.devnet.accounts[0].private_key.hex())
    flags = ["--rpc", chain.rpc_url, "--market", chain.market, "--key", str(key)]
    flags += ["--provider", chain.provider, "--store", store]
    done = await asyncio.to_thread(
        _reef, "deploy", str(image), "--duration", "1h", "--root", "provider", "--json", *flags
    )
    assert done.exit_code == 0, done.output
    deployed = json.loads(done.stdout)
    name = f"provider-{chain.provider.lower()}"
    assert deployed["root"] == name
    assert "INSECURE" in done.stderr
    provider_root = TrustedRoot.dev(ReefHome(tmp_path / "provider-home"))
    stored = TrustedRoot.stored(ReefHome(tenant_home), name)
    assert stored is not None
    assert stored.certificate == provider_root.certificate

    attestation = deployed["endpoints"]["attestation"]
    verified = await asyncio.to_thread(_reef, "verify", attestation, "--root", name)
    assert verified.exit_code == 0, verified.output
    assert "INSECURE" in verified.stderr
