"""Deploying an app that crashes at start, on a real `reef up` (issue 12, item 5).

`reef deploy` used to wait ~120 s, then say the app "does not accept connections", without a word
on the job it had just paid for. Now it sees the crash in the provider's ``/job`` answer within
seconds, says the job is still open and paying and how to stop it, and with
``--stop-on-failure`` stops it itself."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from e2e_support import Network, until
from web3 import Web3

from reef.chain import MarketClient, parse_job_id
from reef.market import ControlPlaneClient
from reef.node._deploy import enclave_crash

# Generous: the crash is seen at the provider's next heartbeat (3 s under `reef up`); only the
# old behaviour (waiting out the 120 s timeout) comes near it.
FAILS_WITHIN_S = 30.0


def _crashing_app(root: Path) -> Path:
    app = root / "crasher"
    app.mkdir()
    (app / "reef.toml").write_text(
        'name = "crasher"\n'
        'command = ["python3", "-c", "import sys; print(\'boom: missing config\'); '
        'sys.exit(3)"]\n'
        "ports = [8080]\n"
    )
    return app


def _deploy(
    network: Network, app: Path, *extra: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = network.cli.run(
        "deploy", str(app), "--duration", "1h", *extra, check=False, process=True, timeout=200
    )
    return done, time.monotonic() - started


def _job_of(output: str) -> int:
    found = re.search(r"reef jobs stop (\d+)", output)
    assert found is not None, output
    return int(found.group(1))


@pytest.fixture(scope="module")
def crasher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _crashing_app(tmp_path_factory.mktemp("apps"))


@pytest.fixture(scope="module")
def debug_stopped(
    network: Network, crasher: Path
) -> tuple[subprocess.CompletedProcess[str], float]:
    return _deploy(network, crasher, "--debug", "--stop-on-failure")


def _market(network: Network) -> MarketClient:
    return MarketClient(
        Web3(Web3.HTTPProvider(network.info["rpc_url"])), network.info["deployment"]["market"]
    )


def test_a_fresh_or_running_job_is_no_crash() -> None:
    assert enclave_crash(None) is None
    assert enclave_crash({"restarts": 0, "enclave": None, "last_error": ""}) is None
    running = {"restarts": 0, "enclave": {"id": "ab", "state": "running"}, "last_restart": ""}
    assert enclave_crash(running) is None


def test_a_relaunch_is_a_crash_and_last_exit_says_how() -> None:
    relaunched = {
        "restarts": 2,
        "enclave": {"id": "cd", "state": "running"},
        "last_restart": "enclave ab was crashed at 2026-12-06 02:25:39 UTC; relaunched",
    }
    crash = enclave_crash(relaunched)
    assert crash is not None
    assert crash.describe() == (
        "crashed; its provider says: enclave ab was crashed at 2026-12-06 02:25:39 UTC; relaunched"
    )
    lines = [f"line {n}" for n in range(30)]
    reported = {
        **relaunched,
        "last_exit": {"state": "crashed", "exit_code": 3, "reason": None, "console": lines},
    }
    crash = enclave_crash(reported)
    assert crash is not None
    assert (crash.exit_code, crash.console) == (3, tuple(lines[-20:]))
    text = crash.describe()
    assert text.startswith(
        "crashed: the app exited with code 3 (the provider relaunched it 2 times)\n"
    )
    assert text.endswith("  line 28\n  line 29")
    assert "line 9\n" not in text
    assert enclave_crash({"restarts": "x", "last_exit": "garbage"}) is None


@pytest.mark.slow
def test_a_crashing_app_fails_deploy_within_seconds_and_says_the_job_still_pays(
    network: Network, crasher: Path
) -> None:
    done, took = _deploy(network, crasher)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert took < FAILS_WITHIN_S, output
    assert "Traceback" not in output
    assert "does not accept connections" not in output
    assert "crashed" in output
    number = _job_of(output)
    assert f"job {number} is still open and paying" in output
    assert f"reef jobs stop {number}" in output
    assert "--stop-on-failure" in output
    # It is still open and paying indeed: no rate revision was started.
    market = _market(network)
    assert market.job(parse_job_id(number)).rate > 0
    assert market.rate_lock(parse_job_id(number)) is None
    # Clean up: this job would otherwise keep crashing for the rest of the module.
    network.cli.run("jobs", "stop", str(number), process=True)


@pytest.mark.slow
def test_stop_on_failure_stops_the_job_itself(
    network: Network, debug_stopped: tuple[subprocess.CompletedProcess[str], float]
) -> None:
    done, took = debug_stopped
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert took < FAILS_WITHIN_S, output
    assert "crashed" in output
    found = re.search(r"stopped job (\d+)", output)
    assert found is not None, output
    job_id = parse_job_id(int(found.group(1)))
    assert f"reef jobs close {int(found.group(1))}" in output
    lock = _market(network).rate_lock(job_id)
    assert lock is not None
    assert lock.new_rate == 0
    cp = ControlPlaneClient(network.info["control_plane"])
    until(
        "the provider to end the job",
        lambda: (cp.job(job_id) or {}).get("phase") == "done",
        timeout=30,
    )
    assert cp.ip(job_id) is None


@pytest.mark.slow
def test_the_failure_names_the_exit_code_and_a_debug_apps_last_lines(
    debug_stopped: tuple[subprocess.CompletedProcess[str], float],
) -> None:
    done, _took = debug_stopped
    output = done.stdout + done.stderr
    assert "exited with code 3" in output
    assert "boom: missing config" in output
