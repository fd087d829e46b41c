"""`reef deploy`'s failure hints reach the market the deploy was given, not the home's.

The operator walk: a tenant deploying with ``--rpc/--market/--key`` (its home records no network)
was told, once its job was open and its enclave failed, to "stop it with `reef jobs stop 0`":
run as printed, that command looks for the home's market and fails, or acts on another market's
job 0. Every command a deploy hint names now repeats the flags that named the market and the
account (``--key`` only for the commands that send).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from net_support import serve_in_thread
from reef.chain import serve_devnet_in_thread
from reef.cli import app
from reef.enclave import build_image
from reef.market import ImageStore, UploadPolicy, control_plane_app, image_store_app
from reef.testing import ScriptedJobView, dev_market

REPO = Path(__file__).resolve().parents[2]
REFUSED = "0x" + "00" * 32  # the first job: the provider refuses it

runner = CliRunner()


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[tuple[Any, str, str]]:
    """``reef deploy`` of hello to a provider that refuses the first job and never runs the
    second, addressed by flags only; with the flags that name the market and the account."""
    image = tmp_path / "hello.img"
    build_image(REPO / "examples" / "hello", image)
    market = dev_market(fund=[0])
    view = ScriptedJobView(market.provider.address.lower())
    view.statuses[REFUSED] = {"job_id": REFUSED, "phase": "done", "reason": "owner not allowed"}
    with ExitStack() as stack:
        market.register_provider(stack.enter_context(serve_in_thread(control_plane_app(view))))
        store = image_store_app(ImageStore(tmp_path / "store"), uploads=UploadPolicy.anyone())
        store_url = stack.enter_context(serve_in_thread(store))
        rpc = stack.enter_context(serve_devnet_in_thread(market.devnet))
        key = market.write_key(tmp_path / "tenant.key")
        where = f"--rpc {rpc.url} --market {market.deployment.market}"
        others = ["--store", store_url, "--provider", market.provider.address, "--root", "mock"]
        others += [*where.split(), "--key", str(key)]

        def run(*args: str) -> Any:
            return runner.invoke(app, ["deploy", str(image), "--duration", "1h", *others, *args])

        yield run, where, f"{where} --key {key}"


def _hint(stderr: str) -> str:
    text = " ".join(stderr.split())
    assert "hint:" in text, stderr
    return text.split("hint:", 1)[1]


def test_the_commands_a_failed_deploy_names_carry_its_flags(deploy: tuple[Any, str, str]) -> None:
    run, where, sender = deploy
    refused = run()
    assert refused.exit_code == 1, refused.output
    assert "the provider will not run job 0: owner not allowed" in refused.stderr
    hint = _hint(refused.stderr)
    assert f"`reef jobs stop 0 {sender}`" in hint
    assert hint.count("reef jobs stop") == 1  # said once, not by each layer

    late = run("--timeout", "1")
    assert late.exit_code == 1, late.output
    hint = _hint(late.stderr)
    assert f"`reef jobs show 1 {where}`" in hint  # show reads only: no --key
    assert f"`reef jobs stop 1 {sender}`" in hint

    stopped = run("--timeout", "1", "--stop-on-failure")
    assert stopped.exit_code == 1, stopped.output
    hint = _hint(stopped.stderr)
    assert "stopped job 2 (--stop-on-failure)" in hint
    assert f"`reef jobs close 2 {sender}`" in hint
