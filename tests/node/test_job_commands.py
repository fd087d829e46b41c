"""`reef jobs …` on a real devnet served over JSON-RPC, with 20 jobs open (no enclaves: the
provider's control plane is a real control-plane app over a scripted view of the jobs).

- job numbers: `17` is job 17 in every command (not 0x17 = 23, not 0x11 read back as 11); `0x11`
  and the 64-digit id name the same job; what is printed is what is typed;
- stop returns at once, saying when and with what command the job can be closed; close before
  that says the time and the command, never a contract function; `--wait` waits with one line;
- show prints the provider's view: state, last error, enclave id, endpoint, restarts;
- a withdrawal that leaves less than the provider's safety margin says the enclave stops now.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chain.rpc_support import CountingRpc
from net_support import serve_in_thread
from reef.chain import (
    Devnet,
    MarketClient,
    format_amount,
    parse_amount,
    parse_job_id,
    serve_devnet_in_thread,
)
from reef.cli import app
from reef.errors import InputError
from reef.market import RateCard, control_plane_app
from reef.testing import ScriptedJobView, dev_market

pytestmark = pytest.mark.slow

JOBS = 20
LOCK_S = 4
CARD = RateCard.dev().lookup("local", "dev.small")


@dataclass
class Market:
    rpc: str
    market: str
    key: Path
    owner: MarketClient
    view: ScriptedJobView
    jobs: list[str]

    @property
    def again(self) -> str:
        """The flags a printed next step repeats, so that it reaches this market and account."""
        return f" --rpc {self.rpc} --market {self.market} --key {self.key}"

    def cli(self, *args: str, key: bool = True) -> Any:
        flags = ["--rpc", self.rpc, "--market", self.market]
        if key:
            flags += ["--key", str(self.key)]
        return CliRunner().invoke(app, [*args, *flags])

    def json(self, *args: str, key: bool = True) -> Any:
        done = self.cli(*args, "--json", key=key)
        assert done.exit_code == 0, done.output
        return json.loads(done.stdout)


class LaggingClock:
    """The wall clock, set back while the fixture opens its jobs.

    The devnet mines one block per transaction, a second after the last when the wall clock has
    not moved on, so a burst of 40 transactions puts the chain's clock 40 s ahead and every rate
    lock would end that much later. Mining the burst in the past keeps the chain on the wall
    clock for the tests.
    """

    def __init__(self) -> None:
        self.behind = 0.0

    def __call__(self) -> float:
        return time.time() - self.behind


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    clock = LaggingClock()
    clock.behind = 120
    market = dev_market(Devnet(clock=clock), rate_lock_s=LOCK_S, fund=[0])
    view = ScriptedJobView(market.provider.address.lower())
    with serve_in_thread(control_plane_app(view)) as cp_url:
        market.register_provider(cp_url)
        jobs = [str(market.open_job(CARD.min_rate, 360_000)) for _ in range(JOBS)]
        clock.behind = 0
        key = market.write_key(tmp_path_factory.mktemp("keys") / "owner.key")
        with serve_devnet_in_thread(market.devnet) as rpc:
            yield Market(rpc.url, market.deployment.market, key, market.owner, view, jobs)


# -- 1. job numbers ------------------------------------------------------------------------------


def test_the_parser_reads_numbers_as_decimal_and_0x_as_the_full_id() -> None:
    full = "0x" + "00" * 31 + "11"
    assert parse_job_id("17") == parse_job_id(17) == parse_job_id("0x11") == full
    assert parse_job_id(full) == parse_job_id(full[2:]) == parse_job_id(b"\x11") == full
    assert parse_job_id(" 10 ") == "0x" + "00" * 31 + "0a"
    for bad in ("1f", "0x", "0xzz", "-1", "17.0", "0x" + "1" * 65, "", "١٧"):
        with pytest.raises(InputError):
            parse_job_id(bad)


def test_job_17_is_job_17_in_every_command(market: Market) -> None:
    assert market.jobs[17] == parse_job_id(17)
    listed = market.json("jobs", "list")
    assert [row["job"] for row in listed] == list(range(JOBS))
    assert [row["job_id"] for row in listed] == market.jobs

    for name in ("17", "0x11", market.jobs[17], market.jobs[17][2:]):
        shown = market.json("jobs", "show", name, key=False)
        assert (shown["job"], shown["job_id"]) == (17, market.jobs[17]), name

    deposited = market.json("jobs", "deposit", "17", "0.5")
    assert (deposited["job"], deposited["job_id"]) == (17, market.jobs[17])
    withdrawn = market.json("jobs", "withdraw", "17", "0.1")
    assert withdrawn["job"] == 17
    assert market.owner.job(11).balance == 360_000  # untouched (11 is what "0x11" misread gives)
    # job 17 got +0.5 -0.1 rUSD, less what the withdrawal's settlement charged
    assert 700_000 < market.owner.job(17).balance <= 760_000

    # the human table and the stop command print the number a user types back
    table = market.cli("jobs", "list")
    assert table.exit_code == 0
    assert "20 open jobs hold" in table.stdout
    stopped = market.json("jobs", "stop", "17")
    assert (stopped["job"], stopped["then_run"]) == (17, f"reef jobs close 17{market.again}")
    assert market.owner.rate_lock(17) is not None
    assert [n for n in range(JOBS) if market.owner.rate_lock(n)] == [17]


def test_a_bad_job_number_is_a_usage_error_that_says_how_to_write_one(market: Market) -> None:
    done = market.cli("jobs", "show", "1f", key=False)
    assert done.exit_code == 2
    assert "0x" in done.output
    assert "reef jobs list" in done.output
    missing = market.cli("jobs", "show", "23", key=False)
    assert missing.exit_code == 1
    assert "job 23 (0x" in missing.stderr
    assert "not open" in missing.stderr


# -- 2. stop returns at once; close says when ------------------------------------------------------


def test_stop_returns_at_once_and_close_says_when_and_how(market: Market) -> None:
    started = time.monotonic()
    done = market.cli("jobs", "stop", "5")
    assert done.exit_code == 0, done.output
    assert time.monotonic() - started < LOCK_S  # it did not wait out the lock
    assert "rate lock ends in" not in done.stderr
    assert "reef jobs close 5" in done.stdout
    assert "then_run" in done.stdout
    assert "close_after" in done.stdout
    assert "close_at" not in done.stdout  # unix seconds are for --json; people get the date

    early = market.cli("jobs", "close", "5")
    assert early.exit_code == 1
    assert "reef jobs close 5" in early.stderr
    assert "reef jobs stop 5 --wait" in early.stderr
    assert "only from 20" in early.stderr  # the exact time (a date)
    for internal in ("lockWaitTime", "RATE_LOCK_SELECTOR", "jobReviseRate", "jobClose"):
        assert internal not in early.stderr

    running = market.cli("jobs", "close", "6")
    assert running.exit_code == 1
    assert "reef jobs stop 6" in running.stderr
    assert "jobReviseRate" not in running.stderr

    waited = market.cli("jobs", "stop", "5", "--wait", "--json")  # the stop is pending: waits
    assert waited.exit_code == 0, waited.output
    assert json.loads(waited.stdout)["state"] == "closed"
    # one progress line, not one line every few seconds
    (bar,) = [line for line in waited.stderr.splitlines() if "rate lock" in line]
    assert bar.startswith("job 5: closing when the rate lock ends")
    assert bar.endswith("done")
    assert market.owner.find_job(5) is None


def test_stop_wait_closes_and_refunds(market: Market) -> None:
    done = market.json("jobs", "stop", "7", "--wait")
    assert (done["job"], done["state"]) == (7, "closed")
    assert parse_amount(done["refund"]) > 0
    assert market.owner.find_job(7) is None


# -- 3. the provider's view ---------------------------------------------------------------------


def test_show_prints_the_providers_view(market: Market) -> None:
    job = market.jobs[3]
    market.view.statuses[job] = {
        "job_id": job,
        "phase": "running",
        "reason": "",
        "enclave": {
            "id": "b94cfaf54b3a",
            "state": "crashed",
            "endpoints": {"ports": {"8080": "http://127.0.0.1:39351"}},
        },
        "last_error": "the app exited with code 3",
        "restarts": 2,
        "last_restart": "enclave b94cfaf54b3a was crashed; relaunched",
    }
    shown = market.json("jobs", "show", "3", key=False)
    assert shown["provider_state"] == "crashed"
    assert shown["last_error"] == "the app exited with code 3"
    assert shown["enclave_id"] == "b94cfaf54b3a"
    assert shown["endpoint"] == "http://127.0.0.1:39351"
    assert shown["restarts"] == 2
    human = market.cli("jobs", "show", "3", key=False).stdout
    assert "the app exited with code 3" in human
    assert "b94cfaf54b3a" in human

    market.view.statuses[job] = {**market.view.statuses[job], "phase": "done", "reason": "why"}
    assert market.json("jobs", "show", "3", key=False)["provider_state"] == "ended: why"
    unknown = market.json("jobs", "show", "4", key=False)  # the provider does not know it
    assert unknown["provider_state"] == "not seen by the provider yet"


def test_revert_hints_name_commands_not_contract_internals() -> None:
    from reef.chain import Revert
    from reef.chain._reasons import hint_for

    internals = ("lockWaitTime", "RATE_LOCK_SELECTOR", "jobReviseRate", "jobClose", "jobWithdraw")
    for reason in Revert:
        hint = hint_for(reason) or ""
        assert not [word for word in internals if word in hint], (reason, hint)
    assert "reef jobs stop JOB" in (hint_for(Revert.CLOSE_NEEDS_NOTICE) or "")


# -- 4. oyster-cvm verbs and the wallet -----------------------------------------------------------


def test_oyster_verbs_act_on_the_same_jobs(market: Market) -> None:
    assert [r["job"] for r in market.json("list")] == [
        r["job"] for r in market.json("jobs", "list")
    ]
    before = market.owner.job(2).balance
    deposited = market.json("deposit", "2", "0.25")
    assert (deposited["job"], deposited["deposited"]) == (2, "0.25")
    assert market.owner.job(2).balance == before + 250_000
    assert market.json("withdraw", "2", "0.05")["job"] == 2
    stopping = market.json("stop", "9")
    assert (stopping["job"], stopping["then_run"]) == (9, f"reef jobs close 9{market.again}")


def test_withdrawing_past_the_safety_margin_warns_that_the_enclave_stops_now(
    market: Market,
) -> None:
    """No network.json here: the provider's default margin (300 s) is longer than the notice
    reserve (LOCK_S), so taking all the reserve allows leaves less than the margin's worth."""
    some = market.cli("jobs", "withdraw", "19", "0.01", "--json")
    assert some.exit_code == 0, some.output
    assert "stops the enclave now" not in some.stderr
    assert json.loads(some.stdout)["enclave_stops_by"].startswith("20")  # a date
    rest = market.cli("jobs", "withdraw", "19", "--max", "--json")
    assert rest.exit_code == 0, rest.output
    assert (
        "what is left pays for less than the provider's 300 s safety margin: it stops the "
        "enclave now (deposit to keep it, or `reef jobs stop 19` to get the rest back)"
    ) in " ".join(rest.stderr.split())
    assert json.loads(rest.stdout)["job"] == 19


def test_wallet_shows_balances_and_spend(market: Market) -> None:
    wallet = market.json("wallet")
    owner = market.owner
    jobs = [n for n in range(JOBS) if owner.find_job(n) is not None]
    assert wallet["jobs"] == jobs
    assert wallet["open_jobs"] == len(jobs)
    assert wallet["rusd"] == format_amount(owner.token().balance())
    assert parse_amount(wallet["eth"], decimals=18) > 0
    spend = sum(owner.job(n).rate for n in jobs) * 3600 // 10**12
    assert wallet["spend_per_hour"] == format_amount(spend)
    # what the jobs hold now: at most what the chain last settled, at least that less an hour
    held = sum(owner.job(n).balance for n in jobs)
    assert held - spend <= parse_amount(wallet["jobs_balance"]) <= held


def test_every_use_case_refuses_a_job_that_is_not_open_with_one_message(market: Market) -> None:
    """`reef jobs`, the dashboard and `reef jobs update` share one lookup: the same MarketError
    (an update once raised a ValueError formatting the job's number)."""
    from reef.errors import MarketError
    from reef.home import ReefHome
    from reef.node import (
        JobUpdate,
        deposit_to_job,
        find_open_job,
        open_session,
        owned_job,
        update_job,
    )

    session = open_session(
        ReefHome.from_env(), rpc=market.rpc, market=market.market, key=market.key
    )
    client = session.market()
    gone = parse_job_id(23)
    expected = f"job 23 ({gone}) is not open in the market at {session.market_address}"
    attempts = {
        "find": lambda: find_open_job(session, client, gone),
        "owned": lambda: owned_job(session, client, gone),
        "deposit": lambda: deposit_to_job(session, client, gone, parse_amount("1")),
        "update": lambda: update_job(session, client, gone, JobUpdate(debug=True)),
    }
    for name, attempt in attempts.items():
        with pytest.raises(MarketError) as caught:
            attempt()
        assert caught.value.message == expected, name
        assert "reef jobs list" in (caught.value.hint or ""), name


# -- 5. finding an owner's jobs ------------------------------------------------------------------


def test_deposit_spam_does_not_make_finding_an_owners_jobs_read_more_logs() -> None:
    # Anyone may add events to the market for the gas alone (an empty deposit to any job): the
    # dashboard finds its jobs on every page and /metrics scrape, so it asks for JobOpened logs
    # only (the owner's when it has an account), as reef jobs list does.
    from reef.chain import Address
    from reef.chain._rpc import HttpRpc
    from reef.home import ReefHome
    from reef.node import open_jobs, open_session

    market = dev_market(control_plane="http://127.0.0.1:9", fund=[0, 1])
    mine = [market.open_job(CARD.min_rate, 360_000) for _ in range(2)]
    owner = Address(market.devnet.accounts[0].address)
    spammer = market.client(2)
    with serve_devnet_in_thread(market.devnet) as rpc:

        def reads(who: Address | None) -> tuple[list[str], int, int]:
            session = open_session(
                ReefHome.from_env(),
                rpc=rpc.url,
                market=market.deployment.market,
                need_account=False,
            )
            poster = CountingRpc(HttpRpc(rpc.url, {}, 10.0))
            session.__dict__["rpc"] = poster  # what the session's reader sends through
            found = [job.id for job in open_jobs(session, session.reader, who)]
            return found, len(poster.posts), poster.logs

        before = {who: reads(who) for who in (owner, None)}
        assert before[owner] == (mine, 3, 2)  # the head, the owner's logs, the jobs (a batch)
        for _ in range(10):
            spammer.deposit(mine[0], 0)
        theirs = market.client(1).open_job(
            market.owner.job(mine[0]).metadata, market.provider.address, CARD.min_rate, 360_000
        )
        assert reads(owner) == before[owner]
        found, requests, logs = reads(None)  # no account: every open job, JobOpened logs only
        assert found == [*mine, theirs]
        assert (requests, logs) == (before[None][1], before[None][2] + 1)
