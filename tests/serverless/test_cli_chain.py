"""``reef fn`` and ``reef executor`` against a devnet served over JSON-RPC (no workerd needed):
deploy and list functions, read jobs and executors, drain and deregister; usage errors exit 2
with a message, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reef.chain import serve_devnet_in_thread
from reef.cli import app
from serverless.chain_support import ServerlessChain


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ServerlessChain, str]]:
    chain = ServerlessChain.create()
    with serve_devnet_in_thread(chain.devnet) as thread:
        yield chain, thread.url


def flags(chain: ServerlessChain, url: str) -> list[str]:
    return ["--rpc", url, "--jobs", chain.jobs_address, "--code", chain.code_address]


def test_deploy_list_job_and_executors(served: tuple[ServerlessChain, str], tmp_path: Path) -> None:
    chain, url = served
    source = tmp_path / "fn.js"
    source.write_text("export default { async fetch() { return new Response('x'); } };")
    deployed = CliRunner().invoke(app, ["fn", "deploy", str(source), *flags(chain, url), "--json"])
    assert deployed.exit_code == 0, deployed.output
    codehash = json.loads(deployed.stdout)["codehash"]
    assert chain.code().fetch_code(codehash) == source.read_bytes()
    listed = CliRunner().invoke(app, ["fn", "list", *flags(chain, url), "--json"])
    assert listed.exit_code == 0, listed.output
    assert codehash in {row["codehash"] for row in json.loads(listed.stdout)}
    enclaves = [chain.register(op) for op in chain.operators[:3]]
    request, _ = chain.jobs(chain.users[0]).create_job(codehash, b"in", 1000)
    shown = CliRunner().invoke(
        app, ["fn", "job", str(request.job_id), *flags(chain, url), "--json"]
    )
    assert shown.exit_code == 0, shown.output
    job = json.loads(shown.stdout)
    assert job["selected"] == list(request.selected_executors)
    assert job["deposit"] == 1000 * chain.params.fee_per_ms
    assert job["outputs"] == []
    executors = CliRunner().invoke(app, ["fn", "executors", *flags(chain, url), "--json"])
    assert executors.exit_code == 0, executors.output
    rows = json.loads(executors.stdout)
    assert {r["address"] for r in rows} == set(enclaves)
    assert set(rows[0]) >= {"address", "owner", "stake", "image_id", "capacity", "active_jobs"}
    missing = CliRunner().invoke(app, ["fn", "job", "999", *flags(chain, url)])
    assert missing.exit_code == 1
    assert "there is no job 999" in missing.output


def test_drain_and_deregister_with_the_owners_key(
    served: tuple[ServerlessChain, str], tmp_path: Path
) -> None:
    chain, url = served
    operator = chain.operators[5]
    enclave = chain.register(operator)
    key = tmp_path / "owner.key"
    key.write_text(operator.key.hex())
    base = ["--rpc", url, "--jobs", chain.jobs_address, "--key", str(key), "--json"]
    early = CliRunner().invoke(app, ["executor", "deregister", enclave, *base])
    assert early.exit_code == 1
    assert "drain the executor before deregistering it" in early.output
    assert "reef executor drain" in early.output
    drained = CliRunner().invoke(app, ["executor", "drain", enclave, *base])
    assert drained.exit_code == 0, drained.output
    assert json.loads(drained.stdout)["draining"] is True
    gone = CliRunner().invoke(app, ["executor", "deregister", enclave, *base])
    assert gone.exit_code == 0, gone.output
    assert json.loads(gone.stdout)["registered"] is False


def test_the_admin_whitelists_and_revokes_an_image_from_the_cli(
    served: tuple[ServerlessChain, str], tmp_path: Path
) -> None:
    """A first-hour report: an operator's own executor, started after reef changed, attests
    another image id, and only Python could whitelist it; the refusal now names the command."""
    chain, url = served
    image = "0x" + "ab" * 32
    admin, stranger = tmp_path / "admin.key", tmp_path / "stranger.key"
    admin.write_text(chain.deployer.key.hex())
    stranger.write_text(chain.operators[0].key.hex())
    base = ["--rpc", url, "--jobs", chain.jobs_address, "--json"]
    refused = CliRunner().invoke(
        app, ["executor", "whitelist", image, *base, "--key", str(stranger)]
    )
    assert refused.exit_code == 1
    assert "only the admin can whitelist images" in refused.output
    assert not chain.jobs(chain.deployer).is_whitelisted(bytes.fromhex(image[2:]))
    done = CliRunner().invoke(app, ["executor", "whitelist", image, *base, "--key", str(admin)])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["whitelisted"] is True
    assert chain.jobs(chain.deployer).is_whitelisted(bytes.fromhex(image[2:]))
    revoked = CliRunner().invoke(
        app, ["executor", "whitelist", image, "--revoke", *base, "--key", str(admin)]
    )
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(revoked.stdout)["whitelisted"] is False
    short = CliRunner().invoke(app, ["executor", "whitelist", "0x12", *base, "--key", str(admin)])
    assert short.exit_code == 2
    assert "image id" in short.output


def test_usage_errors_exit_2_with_a_message(tmp_path: Path) -> None:
    both = CliRunner().invoke(
        app, ["fn", "call", "0x" + "11" * 32, "--input", "a", "--input-file", str(tmp_path / "f")]
    )
    assert both.exit_code == 2
    assert "not both" in both.output
    missing = CliRunner().invoke(app, ["fn", "deploy", str(tmp_path / "nope.js")])
    assert missing.exit_code == 2
    partial = CliRunner().invoke(app, ["executor", "run", "--key-file", "k", "--rpc", "x"])
    assert partial.exit_code == 2
    assert "--jobs" in partial.output


def test_without_a_network_the_commands_say_how_to_get_one() -> None:
    result = CliRunner().invoke(app, ["fn", "executors"])
    assert result.exit_code == 1
    assert "reef up" in result.output


def test_a_calls_signing_time_reads_as_a_time_and_keeps_its_seconds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`reef fn call` printed the output's sign_timestamp as bare unix seconds; people get the
    time, and the seconds the signature covers stay beside it."""
    from reef.cli._fn import _answer_json, _print_output
    from reef.node import format_time

    _print_output({**_answer_json(0, b"hi", 12), "sign_timestamp": 1_796_586_712})
    shown = capsys.readouterr().out
    assert f"{format_time(1_796_586_712)} (1796586712)" in shown
    assert "0 (ok)" in shown
