"""`reef store serve`: the image store served on its own, for a market on a chain reef does not
run (the operator walk's finding 1: `reef deploy` had no store to upload to, and no reef command
served one).

The command runs as a real process against a devnet served over HTTP, found the way every
command finds a chain (the home's record of `reef chain deploy`, or --rpc); the uploads go
through `reef.market.upload_image`, the client `reef deploy` uses.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from typer.testing import CliRunner

from market.store_support import stop_store, store_process
from reef.chain.devnet import (
    Devnet,
    DevnetInfo,
    DevnetThread,
    dev_accounts,
    serve_devnet_in_thread,
    write_devnet_info,
)
from reef.errors import ConfigError, ServiceError
from reef.home import ReefHome
from reef.market import upload_image

REEF = Path(sys.executable).with_name("reef")
FUNDED = dev_accounts(1)[0].local_account
UNFUNDED = Account.from_key(hashlib.sha256(b"an account with no ether").digest())


@pytest.fixture(scope="module")
def chain() -> Iterator[DevnetThread]:
    with serve_devnet_in_thread(Devnet(accounts=1)) as served:
        yield served


def _record_chain(home: Path, rpc_url: str) -> None:
    """What `reef chain deploy` leaves in a home: the chain and its endpoint, no dev accounts."""
    write_devnet_info(
        ReefHome(home).ensure(),
        DevnetInfo(chain_id=31337, accounts=(), genesis_timestamp=0, rpc_url=rpc_url),
    )


def _port_of(url: str) -> int:
    found = re.fullmatch(r"http://127\.0\.0\.1:(\d+)", url)
    assert found, url
    return int(found.group(1))


def _image(tmp_path: Path, content: bytes) -> tuple[Path, str]:
    path = tmp_path / f"{hashlib.sha256(content).hexdigest()[:8]}.img"
    path.write_bytes(content)
    return path, hashlib.sha256(content).hexdigest()


@pytest.mark.slow
def test_a_funded_accounts_upload_is_stored_and_an_unfunded_ones_refused(
    chain: DevnetThread, reef_home: Path, tmp_path: Path
) -> None:
    # The chain as `reef chain deploy` records it: no --rpc needed.
    _record_chain(reef_home, chain.url)
    images = tmp_path / "images"
    with store_process(reef_home, "--port", "0", "--dir", str(images), "--quota", "1") as (
        process,
        said,
    ):
        url = said["image store"]
        assert said["images"] == str(images)
        assert said["uploads"] == (
            f"signed by accounts funded on chain 31337 ({chain.url}), up to 1 MiB each"
        )
        assert said["deploy with"] == f"reef deploy IMAGE --store {url}"

        path, digest = _image(tmp_path, b"an enclave image " * 100)
        sha, image_url = upload_image(url, path, signer=FUNDED)
        assert (sha, image_url) == (digest, f"{url}/images/{digest}")
        assert (images / digest).read_bytes() == path.read_bytes()
        fetched = httpx.get(image_url, timeout=10)
        assert fetched.status_code == 200
        assert hashlib.sha256(fetched.content).hexdigest() == digest

        other, other_digest = _image(tmp_path, b"someone else's image")
        with pytest.raises(ServiceError, match=r"\(403\).*holds no funds on chain 31337"):
            upload_image(url, other, signer=UNFUNDED)
        with pytest.raises(ServiceError, match=r"\(401\).*need an authorization"):
            upload_image(url, other, signer=None)
        # The quota: 1 MiB per account, the image already uploaded counted.
        big, _ = _image(tmp_path, b"b" * (1 << 20))
        with pytest.raises(ServiceError, match=r"\(413\).*quota of 1048576 bytes"):
            upload_image(url, big, signer=FUNDED)
        assert sorted(p.name for p in images.iterdir() if not p.name.startswith(".")) == [digest]
        assert httpx.get(f"{url}/images/{other_digest}", timeout=10).status_code == 404

        err = stop_store(process)
    # The operator sees each refusal the tenant was told of: who, what, why.
    assert re.search(
        rf"refused PUT /images/{other_digest} from 127\.0\.0\.1 \(403\): "
        rf"{UNFUNDED.address.lower()} holds no funds on chain 31337",
        err,
    ), err
    assert f"refused PUT /images/{other_digest} from 127.0.0.1 (401)" in err
    assert "stopping the image store" in err
    # Stopped means the port is free again.
    with socket.create_server(("127.0.0.1", _port_of(url))):
        pass


@pytest.mark.slow
def test_rpc_names_the_chain_and_open_admits_unsigned_uploads(
    chain: DevnetThread, reef_home: Path, tmp_path: Path
) -> None:
    # A home that records no chain: --rpc names it.
    path, digest = _image(tmp_path, b"image on a chain named by --rpc")
    with store_process(reef_home, "--port", "0", "--rpc", chain.url) as (process, said):
        assert said["images"] == str(ReefHome(reef_home).images)  # reef up's directory
        assert f"chain 31337 ({chain.url})" in said["uploads"]
        assert upload_image(said["image store"], path, signer=FUNDED)[0] == digest
        stop_store(process)
    assert (ReefHome(reef_home).images / digest).is_file()

    unsigned, unsigned_digest = _image(tmp_path, b"an unsigned upload")
    with store_process(reef_home, "--port", "0", "--open", "--host", "0.0.0.0") as (process, said):
        assert said["uploads"] == "anyone, unsigned (--open: no signature, no quota)"
        # Listening on every address: the URL to deploy with is the host's, not 0.0.0.0.
        port = int(said["image store"].removeprefix("http://0.0.0.0:"))
        assert said["deploy with"] == (
            f"reef deploy IMAGE --store http://<this host's address>:{port}"
        )
        url = f"http://127.0.0.1:{port}"
        assert upload_image(url, unsigned, signer=None) == (
            unsigned_digest,
            f"{url}/images/{unsigned_digest}",
        )
        assert httpx.get(f"{url}/images/{unsigned_digest}", timeout=10).content == (
            unsigned.read_bytes()
        )
        err = stop_store(process)
    assert "warning: --open: anyone who reaches this store can upload" in err


@pytest.mark.slow
def test_a_busy_port_is_a_clear_error(reef_home: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        result = subprocess.run(
            [str(REEF), "store", "serve", "--open", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "REEF_HOME": str(reef_home)},
        )
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert f"error: cannot listen on 127.0.0.1:{port} for the image store: the port is in use" in (
        result.stderr
    )
    assert "hint: another process uses that port; pick another with --port" in result.stderr
    assert "ready" not in result.stdout


def test_with_no_chain_known_it_says_which_flag_to_pass(reef_home: Path) -> None:
    from reef.cli import app

    result = CliRunner().invoke(app, ["store", "serve", "--port", "0"])
    assert result.exit_code == 1, result.output
    assert "error: no chain endpoint" in result.output
    assert "hint: pass --rpc URL" in result.output
    assert "or --open on a private network" in result.output


def test_a_directory_it_cannot_use_is_a_clear_error(reef_home: Path, tmp_path: Path) -> None:
    from reef.cli import app

    (tmp_path / "a-file").write_text("")
    result = CliRunner().invoke(
        app, ["store", "serve", "--open", "--port", "0", "--dir", str(tmp_path / "a-file" / "x")]
    )
    assert result.exit_code == 1, result.output
    assert f"error: cannot keep images in {tmp_path / 'a-file' / 'x'}: Not a directory" in (
        result.output
    )
    assert "hint: pass --dir DIR" in result.output


def test_open_and_rpc_together_are_a_usage_error(reef_home: Path) -> None:
    from reef.cli import app

    result = CliRunner().invoke(
        app, ["store", "serve", "--open", "--rpc", "http://127.0.0.1:1", "--port", "0"]
    )
    assert result.exit_code == 2, result.output
    assert "--open admits anyone, --rpc names the chain" in result.output


def test_an_unreachable_chain_is_said_before_serving(reef_home: Path) -> None:
    from reef.cli import app

    with socket.create_server(("127.0.0.1", 0)) as closed:
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    result = CliRunner().invoke(app, ["store", "serve", "--rpc", dead, "--port", "0"])
    assert result.exit_code == 1, result.output
    assert "error:" in result.output
    assert dead in result.output
    assert "ready" not in result.output


async def test_a_chain_that_stops_answering_refuses_uploads_with_503(tmp_path: Path) -> None:
    """The store keeps serving when its chain's node stops answering: an upload it cannot check
    is refused with 503 (try again later), not a 500, and the next one is checked again."""
    from reef.chain._rpc import HttpRpc
    from reef.node import funded_uploads, serve_image_store

    with socket.create_server(("127.0.0.1", 0)) as closed:
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    policy = funded_uploads(HttpRpc(dead, {}, 2.0), chain_id=31337)
    refusals: list[str] = []
    path, _ = _image(tmp_path, b"an image while the node is down")
    async with await serve_image_store(
        tmp_path / "images", uploads=policy, port=0, log=refusals.append
    ) as served:
        with pytest.raises(ServiceError, match=r"\(503\).*cannot read .* balance on chain 31337"):
            await asyncio.to_thread(upload_image, served.url, path, signer=FUNDED)
        # Still serving (this loop's own client: the server runs on it).
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            assert (await client.get("/health")).status_code == 200
    assert len(refusals) == 1
    assert "(503)" in refusals[0]


def test_reef_deploys_hint_names_reef_store_serve() -> None:
    from reef.chain import parse_address
    from reef.node import MarketLocation

    where = MarketLocation(
        rpc_url="http://127.0.0.1:1",
        market_address=parse_address("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"),
        network=None,
        devnet=None,
    )
    with pytest.raises(ConfigError) as raised:
        where.image_store()
    assert raised.value.message == "no image store to upload to"
    assert raised.value.hint == "pass --store URL (`reef store serve` runs one)"
