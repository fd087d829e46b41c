"""`reef init-params build --secret` finds the KMS and trusts its key as `reef kms pubkey` does.

A newcomer who started `reef up` and pinned its KMS once (`reef kms info --pin --trust dev`)
seals secret params with `--secret` and `--image` alone: the KMS is the local network's
(`network.json`), its answers are checked against the pinned keys. Before, the command wanted
`--kms URL` and a key option every time, while `reef kms pubkey` beside it needed neither.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from kms.kms_support import dev_root_server, dev_root_store
from node.network_support import network_json
from reef.attestation import DevAuthority
from reef.cli import app as cli
from reef.enclave import InitParams, build_image, load_image
from reef.home import ReefHome
from reef.kms import KmsRoot, RootServer, derive_key
from reef.node import NetworkInfo
from reef.testing import wall_ms

ROOT_PCRS = {0: b"\x0a" * 48, 1: b"\x0b" * 48, 2: b"\x0c" * 48}


@pytest.fixture
async def root(home: ReefHome, authority: DevAuthority) -> AsyncIterator[RootServer]:
    store = dev_root_store(home, authority, ROOT_PCRS)
    kms = KmsRoot.open(store, attester=authority.attester(ROOT_PCRS, clock_ms=wall_ms))
    async with dev_root_server(kms, authority) as server:
        yield server


async def invoke(args: list[str], home: ReefHome) -> Result:
    """The CLI from an async test (its commands run event loops of their own)."""
    return await asyncio.to_thread(CliRunner().invoke, cli, args, env={"REEF_HOME": str(home.root)})


def an_image(tmp_path: Path) -> Path:
    src = tmp_path / "app"
    src.mkdir()
    (src / "reef.toml").write_text('name = "sealed"\ncommand = ["python3", "app.py"]\n')
    (src / "app.py").write_text("print('hi')\n")
    build_image(src, tmp_path / "app.img")
    return tmp_path / "app.img"


async def test_secret_params_use_the_networks_kms_and_its_pinned_keys(
    home: ReefHome, root: RootServer, tmp_path: Path
) -> None:
    image = an_image(tmp_path)
    (tmp_path / "key.txt").write_text("s3cr3t")
    build = ["init-params", "build", "--secret", f"key.txt={tmp_path / 'key.txt'}"]
    build += ["--image", str(image)]

    # No network in this home and no --kms: says where a KMS comes from, writes nothing.
    missing = await invoke([*build, "-o", str(tmp_path / "none.json")], home)
    assert missing.exit_code == 1, missing.output
    assert "no --kms given" in missing.output
    assert not (tmp_path / "none.json").exists()

    # A KMS but no key to check its answers against: says how to get one, writes nothing.
    unpinned = await invoke(
        [*build, "--kms", root.public_url, "-o", str(tmp_path / "u.json")], home
    )
    assert unpinned.exit_code == 1, unpinned.output
    assert f"no signing key is known for the KMS at {root.public_url}" in unpinned.output
    assert "reef kms info --pin" in unpinned.output
    assert not (tmp_path / "u.json").exists()

    pinned = await invoke(
        ["kms", "info", "--kms", root.public_url, "--trust", "dev", "--pin"], home
    )
    assert pinned.exit_code == 0, pinned.output
    # `reef up` records its KMS root in network.json; the next build finds it there.
    NetworkInfo.from_json(
        network_json(block=0, rate_lock_s=300, kms={"public": root.public_url})
    ).dump(home)

    out = tmp_path / "params.json"
    built = await invoke([*build, "-o", str(out), "--json"], home)
    assert built.exit_code == 0, built.output
    assert f"KMS: {root.public_url}" in built.stderr
    params = InitParams.from_json(out.read_bytes())
    final = load_image(image).measurements.with_init_params(params.digest).image_id
    assert json.loads(built.stdout)["image_id"] == final.hex()
    # Sealed to the key the KMS derives for that image id: its seed's init-params key opens it.
    seed = root.root.keyring.enclave_seed(final)
    secret = derive_key(seed, "oyster.init-params", "x25519").secret
    assert params.open(secret)["key.txt"] == b"s3cr3t"
