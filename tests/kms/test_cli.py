"""`reef kms info|pubkey|rotate` against a live root on loopback, and `reef kms root serve` as a
process: its seed survives a restart sealed, and never appears in plaintext on disk or in logs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from kms.kms_support import dev_root_server
from net_support import free_port
from reef.attestation import DevAuthority, image_id
from reef.cli import app
from reef.crypto import Secp256k1PrivateKey
from reef.errors import KMSError
from reef.home import ReefHome
from reef.kms import (
    AeadSealer,
    KmsRoot,
    PinStore,
    RootKeyring,
    RootServer,
    SeedStore,
    derive_key,
)
from reef.testing import wall_ms

REPO = Path(__file__).resolve().parents[2]
ROOT_PCRS = {0: b"\xa0" * 48, 1: b"\xa1" * 48, 2: b"\xa2" * 48}
IMAGE = bytes.fromhex("107a6d53ba665ae961bb407bccf8b8bc95fa048e1eb59e012caac30ef29d72a9")
ADMIN = Secp256k1PrivateKey(hashlib.sha256(b"reef kms admin").digest())

runner = CliRunner()


@pytest.fixture
def live_root(
    keyring: RootKeyring, authority: DevAuthority, background_loop: asyncio.AbstractEventLoop
) -> Iterator[RootServer]:
    root = KmsRoot(
        keyring,
        attester=authority.attester(ROOT_PCRS, clock_ms=wall_ms),
        admin=ADMIN.public_key.address,
    )
    server = dev_root_server(root, authority)
    asyncio.run_coroutine_threadsafe(server.start(), background_loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.aclose(), background_loop).result(10)


def _kms(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["kms", *args])
    return result.exit_code, result.stdout, result.stderr


def test_info_learns_the_attested_identity(live_root: RootServer, keyring: RootKeyring) -> None:
    code, out, err = _kms("info", "--kms", live_root.public_url, "--trust", "dev", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["current_version"] == 0
    assert data["versions"][0]["signing_key"] == keyring.identity().signing_key.hex()
    assert data["attestation"]["image_id"] == image_id(ROOT_PCRS).hex()
    assert data["rotation_admin"] == ADMIN.public_key.address
    assert "INSECURE" in err
    code, out, err = _kms("info", "--kms", live_root.public_url, "--trust", "dev")
    assert code == 0, err
    assert "v0 signing_key" in out
    assert keyring.identity().signing_address in out
    assert f"image{image_id(ROOT_PCRS).hex()}underrootdev" in "".join(out.split())
    code, _, err = _kms("info", "--kms", live_root.public_url, "--trust", "aws")
    assert code == 1
    assert "KMS attestation rejected" in err
    code, _, err = _kms(
        "info", "--kms", live_root.public_url, "--trust", "dev", "--kms-image-id", "00" * 32
    )
    assert code == 1
    assert "rejected" in err


def test_pubkey_with_a_given_key_a_learned_pin_and_a_wrong_key(
    live_root: RootServer, keyring: RootKeyring, reef_home: Path
) -> None:
    url = live_root.public_url
    expected = derive_key(keyring.enclave_seed(IMAGE), "wallet", "secp256k1")
    signing = keyring.identity().signing_key.hex()
    args = ["pubkey", "--kms", url, "--image-id", IMAGE.hex(), "--path", "wallet"]
    code, out, err = _kms(*args, "--type", "secp256k1", "--verification-key", signing, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["public_key"] == expected.public_key.hex()
    assert data["address"] == expected.address
    assert "--verification-key" in err

    code, _, err = _kms(*args, "--type", "secp256k1")
    assert code == 1
    assert "no signing key is known" in err

    code, out, err = _kms(*args, "--type", "ed25519", "--trust", "dev", "--json")
    assert code == 0, err
    assert "now pinned" in err
    ed = derive_key(keyring.enclave_seed(IMAGE), "wallet", "ed25519")
    assert json.loads(out)["address"] == ed.address
    assert PinStore.for_home(ReefHome(reef_home)).get(url) is not None

    code, out, err = _kms(*args, "--type", "x25519")  # the pin is used now
    assert code == 0, err
    assert "pinned" in err
    assert derive_key(keyring.enclave_seed(IMAGE), "wallet", "x25519").public_key.hex() in out

    wrong = Secp256k1PrivateKey(b"\x05" * 32).public_key.raw.hex()
    code, _, err = _kms(*args, "--type", "x25519", "--verification-key", wrong)
    assert code == 1
    assert "signed by another key" in err

    code, _, err = _kms(*args, "--type", "rsa")
    assert code == 2
    code, _, err = _kms("pubkey", "--kms", url, "--path", "p", "--type", "x25519")
    assert code == 2
    assert "exactly one of --image-id and --address" in err


def test_rotate_extends_the_pin(live_root: RootServer, keyring: RootKeyring) -> None:
    url = live_root.public_url
    assert _kms("info", "--kms", url, "--trust", "dev", "--pin")[0] == 0
    mallory = Secp256k1PrivateKey(b"\x09" * 32).secret.hex()
    code, _, err = _kms("rotate", "--kms", url, "--admin-key", mallory)
    assert code == 1
    assert "401" in err
    assert "\\x0a" not in err  # the answer's trailing newline is not shown escaped
    result = runner.invoke(
        app, ["kms", "rotate", "--kms", url, "--admin-key", "-", "--json"], input=ADMIN.secret.hex()
    )
    assert result.exit_code == 0, result.stderr
    new = json.loads(result.stdout)
    assert new["version"] == 1
    assert new["signing_key"] == live_root.root.keyring.identity(1).signing_key.hex()
    assert "extended to version 1" in result.stderr
    args = ["pubkey", "--kms", url, "--image-id", IMAGE.hex(), "--path", "p", "--type", "x25519"]
    code, current, err = _kms(*args, "--json")
    assert code == 0, err
    code, old, err = _kms(*args, "--version", "0", "--json")
    assert code == 0, err
    assert json.loads(old)["public_key"] == (
        derive_key(keyring.enclave_seed(IMAGE), "p", "x25519").public_key.hex()
    )
    assert json.loads(current)["public_key"] != json.loads(old)["public_key"]
    # Which version each key is of: the current one is what an enclave starting now derives.
    assert (json.loads(current)["version"], json.loads(old)["version"]) == (1, 0)


def _reef(*args: str, home: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "REEF_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "reef.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _ready(process: subprocess.Popen[str]) -> dict[str, object]:
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith("{") and "kms-root-ready" in line:
            ready: dict[str, object] = json.loads(line)
            return ready
    process.kill()
    _, err = process.communicate()
    raise AssertionError(f"the root did not start: {err}")


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err  # a clean shutdown, listeners closed
    return out, err


@pytest.mark.slow
def test_root_serve_process_keeps_its_seed_sealed(reef_home: Path) -> None:
    root_image = image_id(ROOT_PCRS).hex()
    args = [
        "kms", "root", "serve", "--trust", "dev", "--sealer", "dev-home", "--image-id",
        root_image, "--scallop-port", "0", "--public-port", "0", "--log-level", "debug",
    ]  # fmt: skip
    logs: list[str] = []
    first = _reef(*args, home=reef_home)
    ready = _ready(first)
    code, _, err = _kms(
        "pubkey", "--kms", str(ready["public_url"]), "--image-id", IMAGE.hex(),
        "--path", "p", "--type", "secp256k1", "--verification-key", str(ready["signing_key"]),
    )  # fmt: skip
    assert code == 0, err
    logs.extend(_stop(first))
    second = _reef(*args, home=reef_home)
    again = _ready(second)
    logs.extend(_stop(second))
    assert again["signing_key"] == ready["signing_key"]
    assert again["scallop_key"] == ready["scallop_key"]

    # The seed, recovered here only through the dev TEE's sealing key for the root's image.
    authority = DevAuthority.load_or_create(ReefHome(reef_home))
    sealer = AeadSealer(authority.sealing_key(bytes.fromhex(root_image)))
    keyring = SeedStore(ReefHome(reef_home).kms, sealer).load()
    assert keyring.identity().signing_key.hex() == ready["signing_key"]
    secret = keyring.seed(0).seed
    needles = [secret, secret.hex().encode(), secret.hex().upper().encode(), secret[:16]]
    for path in reef_home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for needle in needles:
                assert needle not in data, f"the root seed is in {path}"
    text = "\n".join(logs)
    assert "KMS root v0" in text  # debug logging was on, so the logs are not empty
    for needle in needles:
        assert needle.decode("latin-1") not in text

    # Another image cannot unseal it.
    other = AeadSealer(authority.sealing_key(b"\x00" * 32))
    with pytest.raises(KMSError, match="does not open"):
        SeedStore(ReefHome(reef_home).kms, other).load()


@pytest.mark.slow
def test_derive_server_command_with_oysters_flags(
    live_root: RootServer,
    keyring: RootKeyring,
    authority: DevAuthority,
    reef_home: Path,
    tmp_path: Path,
    serve_thread: Any,
) -> None:
    from reef.attestation import attestation_app
    from reef.crypto import generate_x25519

    secret, public = generate_x25519()
    (tmp_path / "id.sec").write_bytes(secret)
    app_pcrs = {0: b"\x31" * 48, 1: b"\x32" * 48, 2: b"\x33" * 48}
    attester = authority.attester(app_pcrs, clock_ms=wall_ms)
    wiring = live_root.wiring()
    config = tmp_path / "root-server-config.json"
    config.write_text(
        json.dumps({"kms_endpoint": wiring.endpoint, "kms_pubkey": wiring.scallop_key.hex()})
    )
    port = free_port()
    with serve_thread(attestation_app(attester, public_key=public)) as attestation_url:
        process = _reef(
            "kms", "derive-server", "--root-server-config", str(config),
            "--listen-addr", f"127.0.0.1:{port}",
            "--attestation-endpoint", attestation_url + "/attestation/raw",
            "--secret-path", str(tmp_path / "id.sec"),
            home=reef_home,
        )  # fmt: skip
        try:
            answer = None
            for _ in range(200):
                try:
                    answer = httpx.get(
                        f"http://127.0.0.1:{port}/derive/ed25519", params={"path": "k"}
                    )
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
                    assert process.poll() is None, process.communicate()[1]
            assert answer is not None
            assert answer.status_code == 200
        finally:
            _stop(process)
    seed = keyring.enclave_seed(image_id(app_pcrs))
    assert answer.content == derive_key(seed, "k", "ed25519").secret

    bad = runner.invoke(app, ["kms", "derive-server", "--kms-endpoint", "h:1"])
    assert bad.exit_code == 2
    assert "--kms-pubkey" in bad.stderr
