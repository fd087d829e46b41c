"""``/metrics`` on reef's serving floor: on for servers started by serve/run, off for bare
Server objects (the enclave supervisor's), parseable by prometheus-client's own parser, and
prometheus_client never imported by importing the floor."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from imports_support import loaded_after
from reef._api import api_app
from reef._listen import bind
from reef._serve import Server, serve


def _app() -> object:
    app = api_app("t")

    @app.get("/job/{id}")
    async def job(id: str) -> dict[str, str]:
        return {"id": id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    return app


async def test_metrics_count_requests_by_route_template_and_parse() -> None:
    server = await serve(_app(), host="127.0.0.1", port=0, what="metrics test")
    async with server, httpx.AsyncClient(base_url=server.url) as http:
        for n in range(3):
            assert (await http.get(f"/job/{n}")).status_code == 200
        assert (await http.get("/nowhere")).status_code == 404
        assert (await http.get("/boom")).status_code == 500
        assert (await http.post("/job/1", content=b"x" * (6 * 1024 * 1024))).status_code == 413
        answer = await http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }
    key = lambda route, status: (  # noqa: E731
        "reef_http_requests_total",
        (("method", "GET"), ("route", route), ("service", "metrics test"), ("status", status)),
    )
    assert samples[key("/job/{id}", "200")] == 3  # one series for every /job/N
    assert samples[key("unmatched", "404")] == 1
    assert samples[key("/boom", "500")] == 1
    assert (
        samples[("reef_http_errors_total", (("route", "/boom"), ("service", "metrics test")))] == 1
    )
    assert (
        samples[("reef_http_refusals_total", (("service", "metrics test"), ("status", "413")))] == 1
    )
    assert samples[("process_resident_memory_bytes", ())] > 0


async def test_a_bare_server_has_no_metrics() -> None:
    sock = bind("127.0.0.1", 0, what="bare")
    async with Server(_app(), sock, what="bare") as server, httpx.AsyncClient() as http:
        assert (await http.get(f"{server.url}/metrics")).status_code == 404
    assert server.metrics is None


def test_importing_the_floor_does_not_import_prometheus_client() -> None:
    assert "prometheus_client" not in loaded_after("import reef._serve")


def test_the_grafana_dashboard_reads_only_metrics_reef_exposes() -> None:
    import json
    import re

    from reef.web import GRAFANA_DASHBOARD

    model = json.loads(GRAFANA_DASHBOARD.read_text())
    exprs = [t["expr"] for p in model["panels"] for t in p["targets"]]
    assert len(model["panels"]) >= 10
    exposed = {
        # the serving floor (reef._serve) and prometheus_client's process collector
        "reef_http_requests_total",
        "reef_http_request_duration_seconds_bucket",
        "reef_http_errors_total",
        "reef_http_refusals_total",
        "reef_http_requests_in_progress",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        # the dashboard's network gauges (reef.web.network_samples)
        "reef_job_balance",
        "reef_job_time_left_seconds",
        "reef_job_running",
        "reef_job_restarts",
        "reef_enclave_cpu_seconds",
        "reef_enclave_memory_bytes",
        "reef_provider_up",
        "reef_network_up",
        "reef_chain_block",
    }
    used = {name for e in exprs for name in re.findall(r"\b(reef_\w+|process_\w+)", e)}
    assert used <= exposed, used - exposed
    assert used == exposed  # and every metric has a panel
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
