"""``reef up`` stopped and started again on the same home (the devnet persists): the proof
market is reused, new engine and prover enclaves replace the old ones (the new engine's key
becomes the market's engine), and an ask goes to the new prover, never to the old one, whose
key died with its enclave. The input verification service's enclave is replaced too, but its
KMS-derived key is the same, so the example markets (whose IVS is fixed) are kept."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from e2e_support import network_in_thread, up_settings
from typer.testing import CliRunner

from net_support import free_port
from proofs.proofs_support import EXAMPLE
from reef.cli import app
from reef.home import ReefHome
from reef.node import LocalNetwork
from reef.node._proofs import ProofsExtension
from reef.proofs import ProofMarketClient

pytestmark = pytest.mark.slow


def test_a_restarted_reef_up_replaces_its_enclaves_and_keeps_the_market(tmp_path: Path) -> None:
    home = ReefHome(tmp_path / "home").ensure()
    # The RPC port is the same in both runs (as reef up's default 8545 is): it is part of the IVS
    # enclave's attested network.json, so of its image id and KMS key.
    settings = up_settings(rpc_port=free_port())
    network = LocalNetwork(home, settings, extensions=[ProofsExtension()])
    with network_in_thread(network, timeout=600) as info:
        first = dict(info.services["proofs"])
    network = LocalNetwork(home, settings, extensions=[ProofsExtension()])
    with network_in_thread(network, timeout=600) as info:
        second = dict(info.services["proofs"])
        assert second["market"] == first["market"]
        # The IVS enclave is new, its key (the KMS's for the same image id) is not: the example
        # markets are kept, and the new enclave answers as the address they have on chain.
        assert second["ivs"] == first["ivs"]
        assert (second["example_market"], second["private_market"]) == (
            first["example_market"],
            first["private_market"],
        )
        assert second["enclaves"]["ivs"]["enclave_id"] != first["enclaves"]["ivs"]["enclave_id"]
        answer = httpx.get(second["ivs_url"] + "/", timeout=10).json()
        assert answer["address"] == first["ivs"]
        assert second["engine"] != first["engine"]
        assert second["prover"] != first["prover"]
        ids = {first["enclaves"][p]["enclave_id"] for p in ("engine", "prover", "ivs")}
        running = CliRunner().invoke(
            app, ["enclave", "ps", "--json"], env={"REEF_HOME": str(home.root)}
        )
        assert not ids & {e["id"] for e in json.loads(running.stdout) if e["state"] == "running"}
        market = ProofMarketClient(network.devnet.web3(), second["market"])  # type: ignore[union-attr]
        assert market.matching_engine() == second["engine"]
        assert market.prover(first["prover"]).registered  # still on chain, but never assigned
        env = {"REEF_HOME": str(home.root)}
        requested = CliRunner().invoke(
            app,
            ["proofs", "request", "1", "--input", str(EXAMPLE / "input.json"), "--reward", "1",
             "--json"],
            env=env,
        )  # fmt: skip
        assert requested.exit_code == 0, requested.output
        ask_id = json.loads(requested.stdout)["ask_id"]
        waited = CliRunner().invoke(
            app, ["proofs", "wait", str(ask_id), "--timeout", "3m", "--json"], env=env
        )
        assert waited.exit_code == 0, waited.output
        assert json.loads(waited.stdout)["prover"] == second["prover"]
