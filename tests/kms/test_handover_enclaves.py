"""The upgrade of docs/kms.md with real local enclaves: examples/kms-root runs as an enclave (the
dev TEE seals its seed, attests it); a copy whose measured command adds --inherit-from (so it runs
under another image id, as the same image does under another reef runtime) is authorised with
`reef kms handover` and started: it reaches the old root through the host's loopback
($REEF_HOST_ADDR, `--allow-host-port`), inherits, and answers with the old root's keys. Before the
authorisation it exits without minting a seed of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dev_tee_support import requires_isolation
from net_support import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="the dev TEE runs on Linux"),
    requires_isolation,
]

REPO = Path(__file__).resolve().parents[2]
DEV_ADMIN_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # account 0
APP = "5a6693267fd7a7cc38d551d5a27dbf771f0fba0018094ae8f12db21b2e8a4647"


def _reef(home: Path, *args: str, stdin: str | None = None, check: bool = True) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "reef.cli", *args],
        cwd=REPO,
        env={**os.environ, "REEF_HOME": str(home)},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if check:
        assert result.returncode == 0, f"reef {' '.join(args)}: {result.stderr}"
    return result.stdout


def _json(home: Path, *args: str, stdin: str | None = None) -> Any:
    return json.loads(_reef(home, *args, "--json", stdin=stdin))


def _enclaves(home: Path) -> list[dict[str, Any]]:
    return list(_json(home, "enclave", "ps", "--all"))


@pytest.fixture
def home(reef_home: Path) -> Iterator[Path]:
    yield reef_home
    for enclave in _enclaves(reef_home):  # nothing left running, whatever failed
        if enclave["state"] in ("starting", "running"):
            _reef(reef_home, "enclave", "stop", enclave["id"], check=False)


def _info(home: Path, public_port: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        result = subprocess.run(
            [sys.executable, "-m", "reef.cli", "kms", "info", "--json", "--trust", "dev",
             "--kms", f"http://127.0.0.1:{public_port}"],
            cwd=REPO, env={**os.environ, "REEF_HOME": str(home)},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if result.returncode == 0:
            info: dict[str, Any] = json.loads(result.stdout)
            return info
        assert time.monotonic() < deadline, result.stderr
        time.sleep(0.5)


def _wallet(home: Path, public_port: int) -> str:
    answer = _json(
        home, "kms", "pubkey", "--kms", f"http://127.0.0.1:{public_port}", "--trust", "dev",
        "--image-id", APP, "--path", "wallet", "--type", "secp256k1",
    )  # fmt: skip
    address: str = answer["address"]
    return address


def test_a_new_root_enclave_inherits_the_old_roots_keys(home: Path, tmp_path: Path) -> None:
    old_scallop, old_public, new_scallop, new_public = (free_port() for _ in range(4))
    _reef(home, "examples", "kms-root", str(tmp_path / "old"))
    old_image = _json(home, "image", "build", str(tmp_path / "old"), "-o", str(tmp_path / "a.img"))
    _reef(
        home, "enclave", "run", str(tmp_path / "a.img"), "--detach",
        "--port", f"{old_scallop}:1110", "--port", f"{old_public}:1111",
    )  # fmt: skip
    old = _info(home, old_public)
    assert old["attestation"]["image_id"] == old_image["image_id"]

    # The new root: the same example, told (in its measured command) whom it inherits from.
    _reef(home, "examples", "kms-root", str(tmp_path / "new"))
    toml = tmp_path / "new" / "reef.toml"
    inherit = (
        f'  "--inherit-from", "127.0.0.1:{old_scallop}",\n'
        f'  "--inherit-image", "{old_image["image_id"]}",\n'
        f'  "--inherit-key", "{old["versions"][0]["scallop_key"]}",\n]'
    )
    toml.write_text(toml.read_text().replace("\n]", "\n" + inherit, 1))
    new_image = _json(home, "image", "build", str(tmp_path / "new"), "-o", str(tmp_path / "b.img"))
    run_new = [
        "enclave", "run", str(tmp_path / "b.img"), "--detach", "--allow-host-port",
        str(old_scallop), "--port", f"{new_scallop}:1110", "--port", f"{new_public}:1111",
    ]  # fmt: skip

    # Not authorised: the new root exits (code 1) and no seed of its own is made.
    _reef(home, *run_new)
    deadline = time.monotonic() + 60
    while not any(e["state"] == "crashed" for e in _enclaves(home)):
        assert time.monotonic() < deadline, _enclaves(home)
        time.sleep(0.5)
    state = home / "enclave-state" / new_image["image_id"]
    assert not (state / "root-seeds.sealed").exists()

    _reef(
        home, "kms", "handover", "--kms", f"http://127.0.0.1:{old_public}",
        "--to", new_image["image_id"], "--admin-key", "-", "--expires", "10m",
        stdin=DEV_ADMIN_KEY,
    )  # fmt: skip
    _reef(home, *run_new)
    new = _info(home, new_public)
    assert new["attestation"]["image_id"] == new_image["image_id"] != old_image["image_id"]
    assert new["versions"] == old["versions"]
    assert _wallet(home, new_public) == _wallet(home, old_public)
    assert (state / "root-seeds.sealed").exists()
