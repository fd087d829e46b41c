"""``reef jobs deposit`` says until when the job's enclave now runs; ``update`` says where to
read the replaced enclave.

The README's quick tour says "`reef jobs deposit 0 AMOUNT` adds time", but the command printed
only the amount and its transaction: how much time it bought took a second command (``reef
jobs withdraw`` says the same thing for the money taken back).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from reef.chain import MarketClient, serve_devnet_in_thread
from reef.cli import app
from reef.market import JobMetadata, RateCard
from reef.node import format_time
from reef.testing import dev_market

CARD = RateCard.dev().lookup("local", "dev.small")
MARGIN_S = 300  # the provider's default safety margin (no network.json names another)


@dataclass(frozen=True)
class Chain:
    flags: list[str]
    """``--rpc``, ``--market`` and ``--key`` (the job owner's) for the served devnet."""
    owner: MarketClient

    def again(self, *names: str) -> str:
        """The flags (of ``names``: rpc, market, key) a printed next step must repeat: this
        home records no market, so a bare `reef jobs close 0` would reach none."""
        pairs = dict(zip(self.flags[::2], self.flags[1::2], strict=True))
        wanted = names or ("rpc", "market", "key")
        return "".join(f" --{name} {pairs['--' + name]}" for name in wanted)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    market = dev_market(control_plane="http://127.0.0.1:9", fund=[0])
    market.open_job(CARD.min_rate, 360_000)  # 0.36 rUSD: 1 h
    key = market.write_key(tmp_path_factory.mktemp("keys") / "owner.key")
    with serve_devnet_in_thread(market.devnet) as served:
        flags = ["--rpc", served.url, "--market", market.deployment.market, "--key", str(key)]
        yield Chain(flags, market.owner)


def test_deposit_says_until_when_the_enclave_now_runs(chain: Chain) -> None:
    done = CliRunner().invoke(app, ["jobs", "deposit", "0", "0.36", *chain.flags, "--json"])
    assert done.exit_code == 0, done.output
    out = json.loads(done.stdout)
    assert (out["job"], out["deposited"]) == (0, "0.36")
    # What the chain now holds pays from its last settlement on; the provider stops the enclave
    # its safety margin before that runs out: two hours' worth, less what has been charged.
    job = chain.owner.job(0)
    paid_s = job.balance * 10**12 // job.rate
    assert out["enclave_stops_by"] == format_time(job.last_settled + paid_s - MARGIN_S)
    assert job.balance > 360_000  # the deposit landed

    shown = CliRunner().invoke(
        app, ["jobs", "deposit", "0", "0.01", *chain.flags], env={"COLUMNS": "200"}
    )
    assert shown.exit_code == 0, shown.output
    assert "enclave_stops_by" in shown.stdout


def test_update_without_a_new_image_says_where_the_new_enclave_is_shown(chain: Chain) -> None:
    """`reef jobs update JOB --debug` printed a blank image_id row."""
    shown = CliRunner().invoke(
        app, ["jobs", "update", "0", "--debug", *chain.flags], env={"COLUMNS": "200"}
    )
    assert shown.exit_code == 0, shown.output
    row = next(line for line in shown.stdout.splitlines() if line.startswith("image_id"))
    # A debug enclave attests zero PCRs: no image id to show, and `jobs show` prints none (the
    # first-hour walk's finding); the row says so and where the enclave is.
    shown_again = chain.again("rpc", "market")  # jobs show takes no --key
    assert f"it attests no image; `reef jobs show 0{shown_again}` names its attestation" in row
    assert JobMetadata.parse(chain.owner.job(0).metadata).debug is True
    machine = CliRunner().invoke(app, ["jobs", "update", "0", "--no-debug", *chain.flags, "--json"])
    assert machine.exit_code == 0, machine.output
    out = json.loads(machine.stdout)
    assert (out["updated"], out["image_id"]) == (["debug"], "")  # scripts keep the empty id
    # Not in debug: the same image file, whose enclave is replaced.
    again = CliRunner().invoke(
        app, ["jobs", "update", "0", "--no-debug", *chain.flags], env={"COLUMNS": "200"}
    )
    assert again.exit_code == 0, again.output
    row = next(line for line in again.stdout.splitlines() if line.startswith("image_id"))
    assert f"(same image file; `reef jobs show 0{shown_again}` shows the replaced enclave)" in row


def test_stop_says_the_job_pays_until_it_is_closed(chain: Chain) -> None:
    """The market charges a stopped job its old rate until it is closed; stop said only when
    closing becomes possible, and a newcomer who read "rate to zero" left it open."""
    done = CliRunner().invoke(app, ["jobs", "stop", "0", *chain.flags, "--json"])
    assert done.exit_code == 0, done.output
    assert "until you close it, it pays at its old rate" in " ".join(done.stderr.split())
    assert json.loads(done.stdout)["then_run"] == f"reef jobs close 0{chain.again()}"
