"""`reef scallop vectors` and `reef scallop call`, through Typer's CliRunner."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from typer.testing import CliRunner

from net_support import serve_in_thread
from reef.attestation import DevAuthority, image_id
from reef.cli import app
from reef.crypto import generate_x25519
from reef.home import ReefHome
from reef.scallop import PeerPolicy, ScallopServer, scallop_peer, serve_asgi

from .conftest import PCRS_A, PCRS_B

runner = CliRunner()


# --- vectors -------------------------------------------------------------------------------------


def test_vectors_pass_for_both_published_files(vectors: Path) -> None:
    for name in ("ix_25519_chachapoly_blake2b.json", "ix_25519_chachapoly_blake2b_snow.json"):
        result = runner.invoke(app, ["scallop", "vectors", str(vectors / "noise" / name)])
        assert result.exit_code == 0, result.output
        assert "1 passed, 0 failed" in result.output


def test_a_wrong_ciphertext_fails_and_exits_1(vectors: Path, tmp_path: Path) -> None:
    data = json.loads((vectors / "noise" / "ix_25519_chachapoly_blake2b.json").read_text())
    good = data["vectors"][0]
    bad = json.loads(json.dumps(good))
    last = bad["messages"][-1]
    last["ciphertext"] = ("00" if last["ciphertext"][:2] != "00" else "01") + last["ciphertext"][2:]
    psk = dict(good, protocol_name="Noise_XXfallback_25519_ChaChaPoly_BLAKE2b")
    path = tmp_path / "vectors.json"
    path.write_text(json.dumps({"vectors": [good, bad, psk]}))
    result = runner.invoke(app, ["scallop", "vectors", str(path)])
    assert result.exit_code == 1
    assert "1 passed, 1 failed (1 skipped" in result.output

    result = runner.invoke(app, ["scallop", "vectors", "--json", str(path)])
    report = json.loads(result.stdout)
    assert [r["status"] for r in report["results"]] == ["passed", "failed", "skipped"]
    assert report["results"][1]["detail"] == "transport message 5: ciphertext differs"
    assert "XXfallback" in report["results"][2]["detail"]


def test_a_file_with_nothing_reef_can_run_is_not_a_pass(tmp_path: Path) -> None:
    path = tmp_path / "p256.json"
    vector = {"protocol_name": "Noise_NN_P256_ChaChaPoly_BLAKE2b", "messages": []}
    path.write_text(json.dumps({"vectors": [vector]}))
    result = runner.invoke(app, ["scallop", "vectors", str(path)])
    assert result.exit_code == 1
    assert "0 passed, 0 failed" in result.output
    assert "no vector for a protocol reef implements" in result.output


def test_bad_vector_files_are_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{not json")
    result = runner.invoke(app, ["scallop", "vectors", str(tmp_path / "x.json")])
    assert result.exit_code == 2
    assert "is not JSON" in result.output
    (tmp_path / "y.json").write_text("[]")
    result = runner.invoke(app, ["scallop", "vectors", str(tmp_path / "y.json")])
    assert result.exit_code == 2
    assert "not a cacophony vector file" in result.output
    result = runner.invoke(app, ["scallop", "vectors", str(tmp_path / "missing.json")])
    assert result.exit_code == 2
    assert "cannot read" in result.output


# --- call ----------------------------------------------------------------------------------------


class BackgroundServer:
    """An attested Scallop HTTP server on its own event loop thread (CliRunner blocks)."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.loop = asyncio.new_event_loop()
        self.server: ScallopServer | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()

        async def hello(request: Request) -> PlainTextResponse:
            peer = scallop_peer(request)
            client = peer.image_id.hex() if peer.image_id else "anonymous"
            body = (await request.body()).decode()
            return PlainTextResponse(f"hello {client} {request.method} {body}".strip())

        app_ = Starlette(routes=[Route("/hello", hello, methods=["GET", "POST"])])
        future = asyncio.run_coroutine_threadsafe(
            serve_asgi(app_, "127.0.0.1", 0, **self.kwargs), self.loop
        )
        self.server = future.result(10)
        return self

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.port}"

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        asyncio.run_coroutine_threadsafe(self.server.aclose(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def dev_authority(reef_home: Path) -> DevAuthority:
    # The same $REEF_HOME the CLI reads, so `--root dev` names this authority's root.
    return DevAuthority.load_or_create(ReefHome(reef_home))


@pytest.fixture
def attested_server(dev_authority: DevAuthority) -> Iterator[tuple[BackgroundServer, bytes]]:
    secret, public = generate_x25519()

    async def auther() -> bytes:
        return dev_authority.mint(PCRS_A, timestamp_ms=time.time_ns() // 10**6, public_key=public)

    with BackgroundServer(static_key=secret, auther=auther) as server:
        yield server, public


def test_call_prints_the_servers_image_and_the_response(
    attested_server: tuple[BackgroundServer, bytes],
) -> None:
    server, public = attested_server
    wanted = image_id(PCRS_A).hex()
    result = runner.invoke(
        app,
        ["scallop", "call", server.endpoint, "/hello", "--root", "dev", "--image-id", wanted],
    )
    assert result.exit_code == 0, result.output
    assert wanted in result.stdout
    assert public.hex() in result.stdout
    assert "hello anonymous GET" in result.stdout
    assert "INSECURE" in result.output  # the dev root is named as such

    result = runner.invoke(
        app,
        [
            "scallop", "call", server.endpoint, "/hello", "--trust", "dev", "--json",
            "-X", "POST", "-d", "payload",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["peer"]["image_id"] == wanted
    assert out["peer"]["auth"] == "attested"
    assert out["peer"]["root"] == "dev"
    assert out["status"] == 200
    assert out["body"] == "hello anonymous POST payload"


def test_call_refuses_another_image_and_untrusted_roots(
    attested_server: tuple[BackgroundServer, bytes],
) -> None:
    server, _ = attested_server
    other = image_id(PCRS_B).hex()
    result = runner.invoke(
        app, ["scallop", "call", server.endpoint, "/hello", "--root", "dev", "--image-id", other]
    )
    assert result.exit_code == 1
    assert "refused" in result.output
    assert "image_id" in result.output
    assert "hello" not in result.stdout
    # The default root is AWS: a dev enclave is not trusted unless asked for.
    result = runner.invoke(app, ["scallop", "call", server.endpoint, "/hello"])
    assert result.exit_code == 1
    assert "aws" in result.output


def test_call_with_a_pinned_key(attested_server: tuple[BackgroundServer, bytes]) -> None:
    server, public = attested_server
    result = runner.invoke(
        app, ["scallop", "call", server.endpoint, "/hello", "--pin", public.hex()]
    )
    assert result.exit_code == 0, result.output
    assert "pinned" in result.stdout
    result = runner.invoke(
        app, ["scallop", "call", server.endpoint, "/hello", "--pin", generate_x25519()[1].hex()]
    )
    assert result.exit_code == 1
    assert "rejected" in result.output


def test_call_attests_the_client_with_its_key_file(
    dev_authority: DevAuthority, tmp_path: Path
) -> None:
    client_secret, client_public = generate_x25519()
    key_file = tmp_path / "id.sec"
    key_file.write_text(client_secret.hex())
    document = dev_authority.mint(
        PCRS_B, timestamp_ms=time.time_ns() // 10**6, public_key=client_public
    )
    # A one-shot attestation server for our own key (what an enclave's 1300 port serves).
    from starlette.responses import Response

    att_app = Starlette(routes=[Route("/attestation/raw", lambda r: Response(document))])
    policy = PeerPolicy(roots=[dev_authority.root])
    with (
        BackgroundServer(static_key=generate_x25519()[0], policy=policy) as server,
        serve_in_thread(att_app) as att_url,
    ):
        result = runner.invoke(
            app,
            [
                "scallop", "call", server.endpoint, "/hello", "--pin",
                server.server.static_public.hex() if server.server else "",
                "--key", str(key_file),
                "--attestation-url", f"{att_url}/attestation/raw",
            ],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"hello {image_id(PCRS_B).hex()} GET" in result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["nowhere", "/"], "ENDPOINT must be host:port"),
        (["127.0.0.1:1", "nopath"], "PATH must start with /"),
        (["127.0.0.1:1", "/", "--image-id", "abcd"], "must be 32 bytes"),
        (["127.0.0.1:1", "/", "--pin", "00", "--root", "dev"], "drop --image-id/--root"),
        (["127.0.0.1:1", "/", "--key", "/nonexistent/key"], "cannot read the key file"),
    ],
)
def test_call_usage_errors(args: list[str], words: str) -> None:
    result = runner.invoke(app, ["scallop", "call", *args])
    assert result.exit_code == 2
    assert words in result.output


def test_call_to_a_closed_port_says_so() -> None:
    result = runner.invoke(app, ["scallop", "call", "127.0.0.1:9", "/", "--pin", "00" * 32])
    assert result.exit_code == 1
    assert "could not connect to 127.0.0.1:9" in result.output
