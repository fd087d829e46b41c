"""The proof market's and the serverless contracts' commands on a chain reached by ``--rpc``
alone, from a home that knows no network: they need no compute market (the proof market's
address once stood in for one), find their contracts through the same lookup, and send from
the same default account as ``reef jobs``, dev account 0 on a development chain."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from proofs.proofs_support import ProofChain
from reef.chain import dev_accounts, serve_devnet_in_thread
from reef.cli import app


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ProofChain, str]]:
    chain = ProofChain.create(n_users=1)
    with serve_devnet_in_thread(chain.devnet) as thread:
        yield chain, thread.url


def test_the_proof_market_needs_no_compute_market(served: tuple[ProofChain, str]) -> None:
    chain, url = served
    flags = ["--rpc", url, "--proof-market", chain.market_address, "--json"]
    listed = CliRunner().invoke(app, ["proofs", "market", "list", *flags])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == []  # no market created yet
    status = CliRunner().invoke(app, ["prover", "status", *flags])
    assert status.exit_code == 0, status.output
    shown = json.loads(status.stdout)
    assert shown["prover"] == dev_accounts(1)[0].address
    assert shown["registered"] is False


def test_the_proof_market_missing_is_named_with_its_flag(served: tuple[ProofChain, str]) -> None:
    _, url = served
    nowhere = CliRunner().invoke(app, ["proofs", "market", "list", "--rpc", url])
    assert nowhere.exit_code == 1
    assert "no proof market known" in nowhere.output
    assert "--proof-market ADDR" in nowhere.output


def test_serverless_commands_say_what_is_missing() -> None:
    zero = "0x" + "00" * 20
    no_code = CliRunner().invoke(app, ["fn", "list", "--rpc", "http://127.0.0.1:1", "--jobs", zero])
    assert no_code.exit_code == 1
    assert "no serverless deployment to talk to" in no_code.output
    assert "--jobs and --code" in no_code.output
    no_chain = CliRunner().invoke(app, ["fn", "list", "--jobs", zero, "--code", zero])
    assert no_chain.exit_code == 1
    assert "no chain endpoint" in no_chain.output
    assert "--rpc, --jobs and --code" in no_chain.output


def test_registering_an_executor_without_a_verifier_names_the_flag(
    served: tuple[ProofChain, str],
) -> None:
    _, url = served  # no network.json: no verifier known, and no other one named
    some = "0x" + "12" * 20
    command = ["executor", "register", "--control", "http://x", "--attestation", "http://y"]
    result = CliRunner().invoke(app, [*command, "--rpc", url, "--jobs", some, "--code", some])
    assert result.exit_code == 1
    assert "no verifier to attest the executor" in result.output
    assert "--verifier URL" in result.output
