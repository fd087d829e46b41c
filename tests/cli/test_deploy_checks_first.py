"""`reef deploy DIR` checks what it can without the image before building it.

The operator walk: each mistake (an unknown provider, no image store, too little money) cost a
build of the app directory first, about 6 s, and a newcomer makes several. Now the root, the
provider, its offer, the money and the store are checked first; the build happens only when the
deployment can go on.
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from reef.attestation import DevAuthority
from reef.chain import serve_devnet_in_thread
from reef.cli import app
from reef.home import ReefHome
from reef.testing import dev_market

REPO = Path(__file__).resolve().parents[2]


def test_a_deploy_that_cannot_go_on_builds_nothing(reef_home: Path, tmp_path: Path) -> None:
    market = dev_market(control_plane="http://127.0.0.1:9", fund=[0])
    key = market.write_key(tmp_path / "owner.key")
    hello = REPO / "examples" / "hello"
    home = ReefHome(reef_home)
    DevAuthority.load_or_create(home)  # the dev root `--root dev` names
    built = home.app_image(hello)
    with serve_devnet_in_thread(market.devnet) as served:
        flags = ["--rpc", served.url, "--market", market.deployment.market, "--key", str(key)]
        flags += ["--duration", "1h"]
        unknown = "0x" + "ab" * 20
        result = CliRunner().invoke(app, ["deploy", str(hello), "--provider", unknown, *flags])
        assert result.exit_code == 1, result.output
        assert f"unknown provider {unknown}" in result.stderr.lower()
        assert not built.exists()  # refused before the build
        # A path that is neither an image nor an app is still said first.
        missing = CliRunner().invoke(app, ["deploy", str(tmp_path / "nope"), *flags])
        assert missing.exit_code != 0
        assert "no such image file or app directory" in missing.stderr
