"""The dashboard's JSON API as /openapi.json describes it (issue 11), and what fuzzing found.

No network runs here: the app is called in-process (``httpx.ASGITransport``, ``Host:
127.0.0.1`` as a browser on this machine sends it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from reef.home import ReefHome
from reef.web import Dashboard, DashboardSettings, dashboard_app
from reef.web._app import JobSummary, Overview
from reef.web._data import JobRow


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return dashboard_app(Dashboard(DashboardSettings(home=ReefHome(tmp_path), token="t")))


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


async def test_the_schema_describes_the_api_and_no_page(app: Any) -> None:
    async with _client(app) as http:
        schema = (await http.get("/openapi.json")).json()
        assert (await http.get("/docs")).status_code == 200
    assert all(path.startswith("/api/") for path in schema["paths"])
    assert "/api/deploy" in schema["paths"]
    deposit = schema["paths"]["/api/jobs/{job}/deposit"]["post"]
    assert {"200", "400", "401", "403"} <= set(deposit["responses"])
    assert {p["name"] for p in deposit["parameters"]} == {"job", "x-reef-token"}
    assert "amount" in deposit["requestBody"]["content"]["application/json"]["schema"]["properties"]
    jobs = schema["paths"]["/api/jobs"]["get"]["responses"]
    assert jobs["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Jobs")


def test_a_job_row_is_what_the_schema_says() -> None:
    row = JobRow(
        job_id="0x" + "ab" * 32,  # type: ignore[arg-type]
        number=1,
        owner="0x" + "11" * 20,  # type: ignore[arg-type]
        provider="0x" + "22" * 20,  # type: ignore[arg-type]
        metadata={"url": "http://images/x", "debug": True},
        rate=10,
        balance=1000,
        balance_on_chain=1200,
        paid_until=None,
        stops_at=None,
        time_left_s=None,
        phase="running",
        state="running",
        enclave_id="enc-1",
        endpoints={"http": "http://127.0.0.1:1"},
        endpoint="http://127.0.0.1:1",
        last_error="",
        restarts=0,
        reason="",
    )
    described = JobSummary.model_validate(row.to_json())
    assert described.model_dump() == row.to_json()


def test_the_overview_is_what_the_schema_says() -> None:
    summary = {
        "rpc_url": "http://127.0.0.1:8545",
        "chain_id": 31337,
        "block": 3,
        "market": "0x" + "11" * 20,
        "token": "0x" + "22" * 20,
        "job_count": 0,
        "rate_lock_s": 300,
        "account": None,
        "token_balance": None,
        "eth_balance": None,
        "services": {},
    }
    assert Overview.model_validate(summary).model_dump() == summary


@pytest.mark.parametrize("endpoint", ["\u0080", "http://[::1", "http://a b/"])
async def test_an_endpoint_that_is_no_url_is_refused(app: Any, endpoint: str) -> None:
    """Found by schemathesis: httpx's InvalidURL escaped the verify handler (500)."""
    async with _client(app) as http:
        answer = await http.post(
            "/api/attestation/verify", json={"endpoint": endpoint, "mode": "live"}
        )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]
