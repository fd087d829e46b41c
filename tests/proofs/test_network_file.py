"""``--network FILE`` (what ``reef up`` hands its proof market enclaves): loopback URLs are
reached through ``$REEF_HOST_ADDR`` inside an enclave, others are kept, and a bad file is a
clear error from the CLI, not a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reef.cli import app
from reef.cli._proofs_common import network_file
from reef.proofs import ServiceSettings


def test_loopback_urls_go_through_the_host_address_inside_an_enclave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "network.json"
    settings = {
        "rpc": "http://127.0.0.1:8545/",
        "proof_market": "0x" + "11" * 20,
        "ivs": {"1": "http://localhost:4000", "2": "https://ivs.example:443"},
    }
    path.write_text(json.dumps(settings))
    as_given = ServiceSettings(
        rpc="http://127.0.0.1:8545/",
        proof_market="0x" + "11" * 20,
        ivs={1: "http://localhost:4000", 2: "https://ivs.example:443"},
    )
    assert network_file(path) == as_given  # outside an enclave: as given
    monkeypatch.setenv("REEF_HOST_ADDR", "10.0.2.2")
    inside = network_file(path)
    assert inside.rpc == "http://10.0.2.2:8545/"
    assert inside.ivs == {1: "http://10.0.2.2:4000", 2: "https://ivs.example:443"}
    assert inside.proof_market == settings["proof_market"]
    assert network_file(None) == ServiceSettings()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the network file"),
        ("[1]", "is not a JSON object"),
        ("{", "cannot read"),
        ('{"from_block": "abc"}', "from_block must be a number >= 0"),
        ('{"ignore_provers": "0x1"}', "ignore_provers must be a list of addresses"),
        ('{"ivs": {"one": "http://x"}}', "ivs must be an object"),
        ('{"prover": {"stake": -1}}', "prover stake must be an integer >= 0"),
        ('{"prover": {"markets": [{"market_id": 1}]}}', "with price"),
    ],
)
def test_a_bad_network_file_is_a_clear_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "network.json"
    if content is not None:
        path.write_text(content)
    for command in (["proofs", "engine", "run", "--once"], ["prover", "run", "--once"]):
        result = CliRunner().invoke(app, [*command, "--network", str(path)])
        assert result.exit_code == 1, result.output
        assert message in result.output
        assert "Traceback" not in result.output


def test_the_ivs_without_a_key_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from reef.cli import app

    monkeypatch.delenv("REEF_KMS_DERIVE_URL", raising=False)
    base = [
        "proofs",
        "ivs",
        "run",
        "--rpc",
        "http://127.0.0.1:1",
        "--proof-market",
        "0x" + "11" * 20,
    ]
    for extra, said in (
        ([], "give --key-file FILE or --kms-path PATH"),
        (["--kms-path", "reef.proofs.ivs"], "$REEF_KMS_DERIVE_URL is not set"),
    ):
        result = CliRunner().invoke(app, [*base, *extra])
        assert result.exit_code != 0
        assert said in result.output
        assert "Traceback" not in result.output
