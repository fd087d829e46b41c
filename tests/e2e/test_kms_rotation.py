"""`reef kms rotate` on a running `reef up`, then deploys (issue 12 item 2).

Before: the enclaves' derive servers pinned the KMS root's Scallop key of the moment `reef up`
started; after a rotation every new launch failed ("the server's static key … is rejected by
our policy") until `reef up` restarted, and a deploy waited 120 s leaving a paid job open. After:
a launch after the rotation gets the current version's keys; enclaves started before keep theirs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from e2e_support import REEF, REPO, Network, start_network, stop_network
from test_market_e2e import KMS_APP

from dev_tee_support import requires_isolation
from reef.chain import read_devnet_info
from reef.home import ReefHome
from reef.node._deploy import wait_for_app

pytestmark = [pytest.mark.slow, requires_isolation]


def _key_hash(network: Network, app: Path) -> tuple[str, str]:
    deployed = network.cli.json("deploy", str(app), "--duration", "1h")
    wait_for_app(deployed["endpoint"], 30)
    answer = httpx.get(deployed["endpoint"], timeout=30).json()
    return deployed["endpoint"], answer["key_hash"]


def test_deploys_after_a_rotation_get_the_new_keys(tmp_path: Path) -> None:
    app = tmp_path / "kms-app"
    app.mkdir()
    (app / "app.py").write_text(KMS_APP)
    (app / "reef.toml").write_text(
        'name = "kms-demo"\ncommand = ["python3", "app.py"]\nports = [8080]\nmemory_mib = 128\n'
    )
    network = start_network(tmp_path / "home")
    try:
        old_endpoint, before = _key_hash(network, app)
        admin = read_devnet_info(ReefHome(network.cli.home)).accounts[0]
        rotated = subprocess.run(
            [REEF, "kms", "rotate", "--kms", network.info["kms"]["public"], "--admin-key", "-"],
            input=admin.private_key.hex(),
            env=network.cli.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert rotated.returncode == 0, rotated.stdout + rotated.stderr
        _, after = _key_hash(network, app)
        assert after != before  # the new enclave derives from the rotated (current) seed
        # The enclave started before the rotation still serves its keys.
        assert httpx.get(old_endpoint, timeout=30).json()["key_hash"] == before
    finally:
        assert stop_network(network) == 0
