"""``reef up`` in a home whose chain already runs refuses at once and leaves that network alone.

A newcomer runs ``make up`` again in the second terminal. The devnet's lock refused it, but a few
seconds into starting, and stopping that failed start removed the running network's
``network.json``: every command after it said "which provider? none is configured".
"""

from __future__ import annotations

import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from net_support import serve_in_thread
from reef.chain.devnet import DevnetInfo
from reef.cli import app

CHAIN_ID = 31337


def _node() -> Starlette:
    """A JSON-RPC node as far as a probe asks: the chain id and a block number."""

    async def rpc(request: Request) -> JSONResponse:
        answers = {"eth_chainId": hex(CHAIN_ID), "eth_blockNumber": "0x2a"}
        batch = await request.json()
        return JSONResponse(
            [{"jsonrpc": "2.0", "id": c["id"], "result": answers[c["method"]]} for c in batch]
        )

    return Starlette(routes=[Route("/", rpc, methods=["POST"])])


def _record_chain(home: Path, rpc_url: str | None) -> None:
    """What a running ``reef up`` (or ``reef chain``) keeps in the home: where its chain is."""
    info = DevnetInfo(chain_id=CHAIN_ID, accounts=(), genesis_timestamp=1, rpc_url=rpc_url)
    (home / "chain").mkdir(parents=True, exist_ok=True)
    (home / "chain" / "devnet.json").write_text(json.dumps(info.to_json()))


def test_a_second_reef_up_in_a_running_home_refuses_and_keeps_its_network(
    reef_home: Path,
) -> None:
    network = reef_home / "network.json"
    network.write_text('{"the running network": "its endpoints"}')
    with serve_in_thread(_node()) as url:
        _record_chain(reef_home, url)
        # Its own port: were the check gone, this start fails fast on it rather than running.
        port = url.rsplit(":", 1)[1]
        done = CliRunner().invoke(app, ["up", "--rpc-port", port, "--no-serverless", "--no-proofs"])
    assert done.exit_code == 1, done.output
    said = " ".join(done.stderr.split())
    assert f"a reef network already runs in {reef_home}: its chain answers at {url}" in said
    assert "every reef command finds it there" in said
    assert "Traceback" not in done.output
    assert network.read_text() == '{"the running network": "its endpoints"}'
    assert "starting the devnet" not in done.output  # refused before anything started


def test_a_chain_that_stopped_does_not_stop_reef_up_from_starting(reef_home: Path) -> None:
    """Only the check: a home whose chain no longer answers is not refused by it."""
    from reef.cli._up import refuse_a_second_network
    from reef.home import ReefHome

    _record_chain(reef_home, "http://127.0.0.1:9")  # nothing listens on the discard port
    refuse_a_second_network(ReefHome(reef_home))
    _record_chain(reef_home, None)  # a devnet that stopped cleanly
    refuse_a_second_network(ReefHome(reef_home))
    refuse_a_second_network(ReefHome(reef_home / "never-used"))
