"""Real local enclaves (E's dev TEE: bubblewrap, own network namespace) wired to a KMS root.

An app inside asks its derive server for a key and shows it on its port. The same image gets the
same key after a restart and on another provider (another LocalBackend with the same dev TEE
root); another image gets another key; the key is the one the root's public endpoint predicts;
secret init params sealed to the KMS key of the final image id open inside.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from dev_tee_support import requires_isolation, running_enclave
from kms.kms_support import dev_root_server, dev_root_store
from reef.attestation import DevAuthority
from reef.crypto import Secp256k1PrivateKey
from reef.home import ReefHome
from reef.kms import (
    KmsPublicClient,
    KmsRoot,
    RootServer,
    derive_key,
    init_params_public_key,
)

enclave = pytest.importorskip("reef.enclave")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="the dev TEE runs on Linux"),
    requires_isolation,
]

APP = """
import json, os, pathlib, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DERIVE = os.environ["REEF_KMS_DERIVE_URL"]
INIT = pathlib.Path(os.environ.get("REEF_INIT_PARAMS_DIR", "/init-params"))

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        with urllib.request.urlopen(DERIVE + "/derive/secp256k1?path=app", timeout=10) as r:
            secret = r.read().hex()
        secret_file = INIT / "secret.txt"
        body = json.dumps({
            "secp256k1_secret": secret,
            "init_secret": secret_file.read_text() if secret_file.exists() else "",
        }).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", 8080), Handler).serve_forever()
"""


def _image(root: Path, name: str, greeting: str) -> Path:
    src = root / name
    src.mkdir()
    (src / "reef.toml").write_text(
        f'name = "{name}"\ncommand = ["python3", "app.py"]\nports = [8080]\n'
        f'memory_mib = 128\n[env]\nGREETING = "{greeting}"\n'
    )
    (src / "app.py").write_text(textwrap.dedent(APP))
    out = root / f"{name}.img"
    enclave.build_image(src, out)
    return out


async def _ask(info: object) -> dict[str, str]:
    url = info.endpoints["ports"][8080]  # type: ignore[attr-defined]
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(100):
            try:
                response = await http.get(url)
                if response.status_code == 200:
                    data: dict[str, str] = response.json()
                    return data
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"the app at {url} did not answer")


@pytest.fixture
async def root_server(reef_home: Path, authority: DevAuthority) -> AsyncIterator[RootServer]:
    root_pcrs = {0: b"\x0a" * 48, 1: b"\x0b" * 48, 2: b"\x0c" * 48}
    root = KmsRoot.open(dev_root_store(ReefHome(reef_home), authority, root_pcrs))
    async with dev_root_server(root, authority) as s:
        yield s


async def test_enclaves_get_image_bound_keys(
    root_server: RootServer, authority: DevAuthority, reef_home: Path, tmp_path: Path
) -> None:
    wiring = root_server.wiring()
    keyring = root_server.root.keyring
    app_a = _image(tmp_path, "app-a", "a")
    app_b = _image(tmp_path, "app-b", "b")
    provider_1 = enclave.LocalBackend(ReefHome(reef_home), authority=authority, kms=wiring)
    # Another provider: its own state, the same dev TEE root (as two Nitro hosts share AWS's).
    shutil.copytree(ReefHome(reef_home).dev_tee, tmp_path / "provider-2" / "dev-tee")
    provider_2 = enclave.LocalBackend(
        ReefHome(tmp_path / "provider-2"), authority=authority, kms=wiring
    )

    async with running_enclave(provider_1, enclave.EnclaveSpec(image=app_a)) as first:
        key_first = (await _ask(first))["secp256k1_secret"]
    async with running_enclave(provider_1, enclave.EnclaveSpec(image=app_a)) as restarted:
        key_restarted = (await _ask(restarted))["secp256k1_secret"]
    async with (
        running_enclave(provider_2, enclave.EnclaveSpec(image=app_a)) as elsewhere,
        running_enclave(provider_1, enclave.EnclaveSpec(image=app_b)) as other,
    ):
        key_elsewhere = (await _ask(elsewhere))["secp256k1_secret"]
        key_other = (await _ask(other))["secp256k1_secret"]

    assert key_first == key_restarted == key_elsewhere
    assert key_other != key_first
    expected = derive_key(keyring.enclave_seed(first.image_id), "app", "secp256k1")
    assert key_first == expected.secret.hex()
    # Anyone could have learned the public half before the enclave ever ran.
    public = KmsPublicClient(root_server.public_url, signing_key=wiring.signing_keys[0])
    predicted = await public.public_key("secp256k1", "app", image_id=first.image_id)
    assert Secp256k1PrivateKey(bytes.fromhex(key_first)).public_key.raw == predicted


async def test_secret_init_params_open_inside(
    root_server: RootServer, authority: DevAuthority, reef_home: Path, tmp_path: Path
) -> None:
    wiring = root_server.wiring()
    image = _image(tmp_path, "app-s", "s")
    params = [
        enclave.InitParam("note.txt", b"public", should_attest=True),
        enclave.InitParam("secret.txt", b"s3cret", should_attest=True, should_decrypt=True),
    ]
    digest = enclave.init_params_digest((p.path, p.contents, p.should_attest) for p in params)
    final_id = enclave.load_image(image).measurements.with_init_params(digest).image_id
    seal_to = await asyncio.to_thread(
        init_params_public_key,
        root_server.public_url,
        final_id,
        signing_key=wiring.signing_keys[0],
    )
    built = enclave.InitParams.build(params, seal_to=seal_to)
    assert b"s3cret" not in built.to_json()
    path = tmp_path / "init-params.json"
    path.write_bytes(built.to_json())
    backend = enclave.LocalBackend(ReefHome(reef_home), authority=authority, kms=wiring)
    async with running_enclave(backend, enclave.EnclaveSpec(image=image, init_params=path)) as info:
        assert info.image_id == final_id
        answer = await _ask(info)
    assert answer["init_secret"] == "s3cret"
    assert json.loads(built.to_json())["params"][1]["should_decrypt"] is True
