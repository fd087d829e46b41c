"""A local enclave on the host network: the fallback when namespaces are not available."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dev_tee_support import attested, get
from net_support import free_port
from reef.attestation import DevAuthority
from reef.enclave import EnclaveSpec, LocalBackend, build_image
from reef.errors import EnclaveError, InputError
from reef.home import ReefHome

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="the dev TEE runs on Linux"),
]


@pytest.fixture
def backend(reef_home: Path, authority: DevAuthority) -> LocalBackend:
    return LocalBackend(ReefHome(reef_home), authority=authority, insecure=True)


HOST_APP = """
import json, os, urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

def post(url, data):
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST"), timeout=5) as r:
        return r.read()

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        sealed = post(os.environ["REEF_SEALING_URL"] + "/seal", b"host mode")
        body = json.dumps({
            "unsealed": post(os.environ["REEF_SEALING_URL"] + "/unseal", sealed).decode(),
            "id_pub": open(os.environ["REEF_APP_DIR"] + "/id.pub", "rb").read().hex()
                      if "REEF_APP_DIR" in os.environ else open("/app/id.pub", "rb").read().hex(),
        }).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


async def test_host_network_mode_works_and_warns(
    backend: LocalBackend, authority: DevAuthority, tmp_path: Path
) -> None:
    port = free_port()
    src = tmp_path / "hostapp"
    src.mkdir()
    (src / "app.py").write_text(HOST_APP)
    (src / "reef.toml").write_text(
        f'name = "hostapp"\ncommand = ["python3", "app.py"]\nports = [{port}]\n'
        f'[env]\nPORT = "{port}"\n'
    )
    image = tmp_path / "hostapp.img"
    build_image(src, image)
    secure = LocalBackend(backend.home, authority=authority)
    with pytest.raises(EnclaveError, match="host networking") as refused:
        await secure.start(EnclaveSpec(image=image, network="host"))
    assert "--insecure" in (refused.value.hint or "")
    with pytest.raises(InputError, match="must be equal"):
        await backend.start(EnclaveSpec(image=image, network="host", ports={port: port + 1}))
    info = await backend.start(EnclaveSpec(image=image, network="host"))
    try:
        assert info.network == "host"
        assert any("shares the host's network" in w for w in info.warnings)
        assert any(w.startswith("INSECURE") for w in info.warnings)
        assert info.endpoints["ports"][port] == f"http://127.0.0.1:{port}"
        verified = await attested(
            info.endpoints["attestation"], root=authority.root, image_id=info.image_id
        )
        answer = (await get(info.endpoints["ports"][port] + "/")).json()
        assert answer == {"unsealed": "host mode", "id_pub": verified.public_key.hex()}
    finally:
        await backend.stop(info.id)
