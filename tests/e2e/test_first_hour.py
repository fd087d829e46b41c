"""A new user's first hour on a real `reef up`, where it used to surprise them (issue 12):

with 20 jobs open, the number `reef deploy` prints, `reef jobs show 17` and `reef jobs stop 17`
all name the same job (job numbers were read as hex past 16); `reef jobs stop` returns at once
and the enclave is gone; `reef jobs show` carries the provider's view of the enclave."""

from __future__ import annotations

import gc
import re
import time
import warnings
from pathlib import Path

import pytest
from e2e_support import REPO, Network, start_network, until
from web3 import Web3

from reef.chain import MarketClient, parse_job_id, read_devnet_info
from reef.home import ReefHome
from reef.market import ControlPlaneClient, RateCard
from reef.testing import dev_job_metadata

pytestmark = pytest.mark.slow

HELLO = str(REPO / "examples" / "hello")


def _open_elsewhere(network: Network, count: int) -> None:
    """Open ``count`` jobs from dev account 0 for another provider (no enclave is launched)."""
    home = ReefHome(network.cli.home)
    accounts = read_devnet_info(home).accounts
    w3 = Web3(Web3.HTTPProvider(network.info["rpc_url"]))
    market = network.info["deployment"]["market"]
    other = MarketClient(w3, market, account=accounts[5].local_account)
    if other.provider(accounts[5].address) is None:
        other.add_provider("http://127.0.0.1:9")
    owner = MarketClient(w3, market, account=accounts[0].local_account)
    metadata = dev_job_metadata("http://127.0.0.1:9/x", memory=1024).to_json()
    rate = RateCard.dev().lookup("local", "dev.small").min_rate
    for _ in range(count):
        owner.open_job(metadata, accounts[5].address, rate, 360_000)


def test_with_20_jobs_the_printed_number_show_and_stop_name_one_job(network: Network) -> None:
    _open_elsewhere(network, 17)  # jobs 0..16
    deployed = network.cli.run("deploy", HELLO, "--duration", "1h", process=True)
    printed = re.search(r"stop it\s+reef jobs stop (\S+)", deployed.stdout)
    assert printed is not None, deployed.stdout
    number = printed.group(1)
    assert number == "17"
    # A 1 h deposit does not run 1 h: deploy says until when, the time `jobs show` gives.
    runs_until = re.search(r"runs until\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+)", deployed.stdout)
    assert runs_until is not None, deployed.stdout
    _open_elsewhere(network, 2)  # 20 jobs open

    shown = network.cli.json("jobs", "show", number, process=True)
    assert shown["enclave_stops_by"] == runs_until.group(1)
    assert (shown["job"], shown["job_id"]) == (17, parse_job_id(17))
    assert shown["provider_state"] == "running"
    assert shown["endpoint"].startswith("http://127.0.0.1:")
    assert shown["enclave_id"]
    assert shown["last_error"] == ""
    cp = ControlPlaneClient(network.info["control_plane"])
    assert cp.ip(shown["job_id"]) is not None

    started = time.monotonic()
    stopped = network.cli.json("jobs", "stop", number, process=True)
    assert time.monotonic() - started < 30  # it returned without waiting out the lock
    assert (stopped["job"], stopped["state"]) == (17, "stopping")
    assert stopped["then_run"] == "reef jobs close 17"
    until("the enclave to stop", lambda: cp.ip(shown["job_id"]) is None)
    market = MarketClient(
        Web3(Web3.HTTPProvider(network.info["rpc_url"])), network.info["deployment"]["market"]
    )
    assert [n for n in range(20) if market.rate_lock(n) is not None] == [17]
    # The time stop printed is when close works (the chain's clock may run ahead of the wall
    # clock after the burst of transactions above, so it can be later than the 5 s lock).
    time.sleep(max(0.0, stopped["close_at"] - time.time()))
    closed = until(
        "the chain to pass the printed time",
        lambda: (
            (done := network.cli.run("jobs", "close", number, "--json", check=False))
            and done.returncode == 0
            and done
        ),
        timeout=10,
    )
    assert '"state": "closed"' in closed.stdout


def test_a_reef_up_that_fails_to_start_leaves_no_open_file(tmp_path: Path) -> None:
    # A failed start once leaked its stdout pipe; the collector closed it during a later test
    # (tests/enclave/test_cli_image.py), whose ResourceWarning then failed that test.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(AssertionError, match="did not print ready"):
            start_network(tmp_path, extra=["--rate-lock", "not-a-number"])
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == [], [str(w.message) for w in leaks]
