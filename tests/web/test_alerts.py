"""Alert rules: each condition on hand-made samples, the engine's firing/resolving over time,
the rules file, and end to end on a real chain: a job about to run out of money fires to a local
webhook receiver, and stops firing once it is topped up (library and ``reef alerts``)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from reef.chain import MarketClient, deploy_contracts
from reef.errors import ConfigError, InputError, ServiceError
from reef.home import ReefHome
from reef.market import JobMetadata
from reef.web import (
    CONDITIONS,
    AlertEngine,
    AlertRule,
    Dashboard,
    DashboardSettings,
    Sample,
    load_rules,
    network_samples,
    parse_samples,
    read_samples,
    send_notice,
)


def s(name: str, value: float, **labels: str) -> Sample:
    return Sample(name, labels, value)


# -- each condition --------------------------------------------------------------------------


def test_balance_runs_out_fires_below_the_window_only() -> None:
    samples = [
        s("reef_job_time_left_seconds", 600, job="1"),
        s("reef_job_time_left_seconds", 9000, job="2"),
    ]
    fired = CONDITIONS["balance_runs_out"](samples, {"within": "1h"})
    assert [f.key for f in fired] == ["job 1"]
    assert "600 s" in fired[0].message
    assert CONDITIONS["balance_runs_out"](samples, {"within": "3h"})[1].key == "job 2"


def test_enclave_down_restarting_provider_and_network_conditions() -> None:
    samples = [
        s("reef_job_running", 0, job="3"),
        s("reef_job_running", 1, job="4"),
        s("reef_job_restarts", 2, job="4"),
        s("reef_provider_up", 0, provider="0xabc"),
        s("reef_network_up", 1),
    ]
    assert [f.key for f in CONDITIONS["enclave_down"](samples, {})] == ["job 3"]
    assert [f.key for f in CONDITIONS["enclave_restarting"](samples, {"max": 1})] == ["job 4"]
    assert CONDITIONS["enclave_restarting"](samples, {"max": 2}) == []
    assert [f.key for f in CONDITIONS["provider_down"](samples, {})] == ["provider 0xabc"]
    assert CONDITIONS["network_down"](samples, {}) == []
    assert CONDITIONS["network_down"]([s("reef_network_up", 0)], {})[0].key == "network"
    assert CONDITIONS["network_down"]([], {})[0].key == "network"  # no reading is no network


def test_http_errors_and_threshold_over_metrics_text() -> None:
    text = (
        "# TYPE reef_http_errors counter\n"
        'reef_http_errors_total{service="verifier",route="/verify/raw"} 3.0\n'
        'reef_http_errors_total{service="verifier",route="/verify/hex"} 1.0\n'
        "# TYPE reef_chain_block gauge\nreef_chain_block 42.0\n"
    )
    samples = parse_samples(text)
    fired = CONDITIONS["http_errors"](samples, {"max": 3})
    assert [(f.key, f.message) for f in fired] == [
        ("service verifier", "verifier answered 4 server errors")
    ]
    rule = {"metric": "reef_chain_block", "op": "<", "value": 100}
    assert len(CONDITIONS["threshold"](samples, rule)) == 1
    assert CONDITIONS["threshold"](samples, {**rule, "op": ">"}) == []
    with pytest.raises(ConfigError):
        CONDITIONS["threshold"](samples, {"metric": "x", "op": "~"})


def test_read_samples_reads_a_metrics_url_and_names_a_url_that_fails() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/metrics":
            return httpx.Response(200, text="# TYPE reef_chain_block gauge\nreef_chain_block 7.0\n")
        if request.url.path == "/html":
            return httpx.Response(200, text="<html>not metrics</html>")
        return httpx.Response(404)

    transport = httpx.MockTransport(answer)
    assert read_samples("http://node/metrics", transport=transport) == [
        Sample("reef_chain_block", {}, 7.0)
    ]
    with pytest.raises(ServiceError, match="cannot read metrics from http://node/gone"):
        read_samples("http://node/gone", transport=transport)
    with pytest.raises(InputError, match="not Prometheus metrics"):
        read_samples("http://node/html", transport=transport)


# -- the engine ------------------------------------------------------------------------------


def test_a_key_fires_after_holding_for_its_duration_then_resolves_once() -> None:
    rule = AlertRule(name="money", condition="balance_runs_out", params={"within": "1h"}, for_s=60)
    engine = AlertEngine([rule])
    low = [s("reef_job_time_left_seconds", 100, job="7")]
    assert engine.step(low, now=1000) == []  # pending
    assert engine.step(low, now=1059) == []
    fired = engine.step(low, now=1060)
    assert [(n.state, n.key, n.since) for n in fired] == [("firing", "job 7", 1000)]
    assert engine.step(low, now=2000) == []  # fires once, not at every evaluation
    resolved = engine.step([s("reef_job_time_left_seconds", 99999, job="7")], now=2001)
    assert [(n.state, n.key) for n in resolved] == [("resolved", "job 7")]
    assert engine.firing == []
    # A blip shorter than `for` never fires nor resolves.
    assert engine.step(low, now=3000) == []
    assert engine.step([], now=3001) == []


def test_the_rules_file_is_checked_and_names_what_is_wrong(tmp_path: Path) -> None:
    good = load_rules(
        '[[rule]]\nname = "money"\ncondition = "balance_runs_out"\nwithin = "2h"\n'
        'for = "5m"\ndestination = "webhook"\nurl = "http://127.0.0.1:9/x"\n'
    )
    assert good == [
        AlertRule(
            name="money",
            condition="balance_runs_out",
            params={"within": "2h"},
            for_s=300,
            destination="webhook",
            url="http://127.0.0.1:9/x",
        )
    ]
    bad = {
        '[[rule]]\ncondition = "nope"\n': "unknown condition 'nope'",
        '[[rule]]\ncondition = "enclave_down"\ndestination = "webhook"\n': "needs url",
        '[[rule]]\ncondition = "enclave_down"\nfor = "soon"\n': "not a duration",
        '[[rule]]\ncondition = "balance_runs_out"\nwithin = "x"\n': "not a duration",
        "rule = 3\n": "[[rule]] tables",
        "[[rule\n": "not valid TOML",
    }
    for text, why in bad.items():
        with pytest.raises(ConfigError, match=re.escape(why)):
            load_rules(text)
    with pytest.raises(ConfigError, match="cannot read") as missing:
        load_rules(tmp_path / "missing.toml")
    # A newcomer who has no file yet, or a broken one, is told what one holds.
    assert "one [[rule]] table per alert" in (missing.value.hint or "")
    with pytest.raises(ConfigError, match="not valid TOML") as broken:
        load_rules("[[rule\n")
    assert "docs/dashboard.md" in (broken.value.hint or "")


# -- end to end: a real chain and a webhook receiver -------------------------------------------


class _Receiver:
    """A local webhook receiver that records every JSON body POSTed to it."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@dataclass
class Chain:
    home: ReefHome
    rpc: str
    market: str
    key: Path
    owner: MarketClient
    job: str


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    from reef.chain import Devnet, serve_devnet_in_thread

    devnet = Devnet()
    accounts = devnet.accounts
    deployment = deploy_contracts(
        devnet.web3(), accounts[0].address, rate_lock_s=5, fund=[accounts[0].address]
    )
    provider = accounts[9]
    # A provider whose control plane is away: the money is on the chain all the same.
    MarketClient(devnet.web3(), deployment.market, account=provider.local_account).add_provider(
        "http://127.0.0.1:9"
    )
    owner = MarketClient(devnet.web3(), deployment.market, account=accounts[0].local_account)
    metadata = JobMetadata(
        instance="dev.small", region="local", memory=1024, vcpu=1, url="http://store/x"
    ).to_json()
    # 1 base unit per second, 3600 units: paid for an hour, stopped 300 s (the margin) before.
    job = str(owner.open_job(metadata, provider.address, 10**12, 3600))
    key = tmp_path_factory.mktemp("keys") / "owner.key"
    key.write_text(accounts[0].private_key.hex())
    home = ReefHome(tmp_path_factory.mktemp("home"))
    with serve_devnet_in_thread(devnet) as rpc:
        yield Chain(home, rpc.url, deployment.market, key, owner, job)


def test_a_job_about_to_run_out_fires_to_a_webhook_and_stops_after_a_top_up(
    chain: Chain,
) -> None:
    dash = Dashboard(
        DashboardSettings(home=chain.home, rpc=chain.rpc, market=chain.market, key=chain.key)
    )
    receiver = _Receiver()
    try:
        rule = AlertRule(
            name="money",
            condition="balance_runs_out",
            params={"within": "2h"},
            destination="webhook",
            url=receiver.url,
        )
        engine = AlertEngine([rule])

        def evaluate(now: float) -> None:
            samples = [Sample(n, labels, float(v)) for n, _, labels, v in network_samples(dash)]
            for notice in engine.step(samples, now):
                send_notice(notice, rule)

        evaluate(1.0)
        assert [(r["state"], r["rule"]) for r in receiver.received] == [("firing", "money")]
        assert "runs out of money" in receiver.received[0]["message"]
        evaluate(2.0)
        assert len(receiver.received) == 1  # still firing: not sent again

        chain.owner.deposit(chain.job, 10 * 3600)  # ten more hours
        evaluate(3.0)
        assert [r["state"] for r in receiver.received] == ["firing", "resolved"]
        evaluate(4.0)
        assert len(receiver.received) == 2
    finally:
        receiver.close()


def test_reef_alerts_check_and_run(chain: Chain, tmp_path: Path) -> None:
    from reef.cli import app

    receiver = _Receiver()
    try:
        rules = tmp_path / "alerts.toml"
        flags = ["--rpc", chain.rpc, "--market", chain.market, "--key", str(chain.key)]
        rules.write_text(
            '[[rule]]\nname = "money"\ncondition = "balance_runs_out"\nwithin = "1000h"\n'
            f'destination = "webhook"\nurl = "{receiver.url}"\n'
        )
        done = CliRunner().invoke(app, ["alerts", "check", str(rules), *flags, "--json"])
        assert done.exit_code == 1, done.output
        assert [row["rule"] for row in json.loads(done.stdout)] == ["money"]
        done = CliRunner().invoke(app, ["alerts", "run", str(rules), *flags, "--once"])
        assert done.exit_code == 0, done.output
        assert [r["state"] for r in receiver.received] == ["firing"]
        rules.write_text('[[rule]]\ncondition = "balance_runs_out"\nwithin = "1s"\n')
        done = CliRunner().invoke(app, ["alerts", "check", str(rules), *flags])
        assert done.exit_code == 0, done.output
        assert "nothing fires (1 rules)" in done.stdout
        rules.write_text('[[rule]]\ncondition = "bogus"\n')
        done = CliRunner().invoke(app, ["alerts", "check", str(rules), *flags])
        assert done.exit_code == 1
        assert "unknown condition 'bogus'" in done.stderr
    finally:
        receiver.close()
