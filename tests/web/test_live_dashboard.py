"""The dashboard on a real network (``reef up`` in-process, ports 0, the dashboard as its
extension) driven by headless Chromium: a deployed debug job appears with its id, image id and
endpoint; its enclave's console streams live; a request without the token changes nothing; stop
from the page stops the enclave. Each page is screenshotted at 1280 px and 390 px."""

from __future__ import annotations

import asyncio
import html
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import network_in_thread, up_settings

from dev_tee_support import requires_isolation
from reef.home import ReefHome
from reef.node import (
    DeployRequest,
    LocalNetwork,
    NetworkInfo,
    deploy,
    open_session,
    stop_margin_s,
    stops_at,
)
from reef.node._dashboard import DashboardExtension
from reef.web import parse_samples

pytestmark = [pytest.mark.slow, requires_isolation]

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello"
PAGES = ["/", "/jobs", "/enclaves", "/providers", "/verifier", "/kms"]


@dataclass
class Live:
    home: ReefHome
    url: str
    token: str
    job: int
    job_id: str
    endpoint: str
    image_id: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = ReefHome(tmp_path_factory.mktemp("reef-up"))
    settings = up_settings(rate_lock_s=5)
    network = LocalNetwork(home, settings, extensions=[DashboardExtension(port=0)])
    with network_in_thread(network, timeout=180) as info:
        dashboard = info.services["dashboard"]
        token = str(dashboard["manage_url"]).split("token=", 1)[1]
        session = open_session(home)
        result = deploy(session, DeployRequest(image=HELLO, duration_s=3600, debug=True))
        yield Live(
            home,
            str(dashboard["url"]),
            token,
            result.job,
            result.job_id,
            result.endpoint,
            result.image_id.hex(),
        )


def _job_state(live: Live) -> str:
    jobs = httpx.get(f"{live.url}/api/jobs", timeout=30).json()["jobs"]
    return next(j["state"] for j in jobs if j["job_id"] == live.job_id)


def test_a_deployed_job_appears_with_its_id_image_id_and_endpoint(
    browser: Any, live: Live, screenshots: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live.url}/jobs")
    row = page.locator(f"a[href='/jobs/{live.job}']")
    assert row.count() == 1
    assert live.endpoint in page.content()
    page.goto(f"{live.url}/jobs/{live.job}")
    assert live.job_id in page.locator("#job").inner_text()
    assert live.endpoint in page.locator("#job").inner_text()
    # The image id is what the enclave attests, verified live by the dashboard (dev root).
    # (Selectors, not wait_for_function: the dashboard's CSP forbids the eval it uses.)
    page.wait_for_selector("#image-id[data-image-id]", state="attached", timeout=20_000)
    shown = page.locator("#image-id")
    assert shown.get_attribute("data-image-id") == live.image_id, shown.inner_text()
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        for path in [*PAGES, f"/jobs/{live.job}"]:
            page.goto(f"{live.url}{path}")
            page.wait_for_load_state("networkidle")
            name = "overview" if path == "/" else path.strip("/").replace("/", "-")
            page.screenshot(path=str(screenshots / f"{name}-{width}.png"), full_page=True)
            # Usable at this width: nothing wider than the window but what scrolls inside.
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, (path, width, overflow)
    page.close()


def test_the_debug_enclaves_console_streams_live(browser: Any, live: Live) -> None:
    page = browser.new_page()
    page.goto(f"{live.url}/jobs/{live.job}")
    marker = f"live-{secrets.token_hex(4)}"
    page.wait_for_selector("#logs")
    time.sleep(1)  # the page's EventSource is connected by now; the line comes after it
    assert marker not in page.locator("#logs").inner_text()
    httpx.get(f"{live.endpoint}/{marker}", timeout=10)  # hello logs every request it answers
    page.wait_for_selector(f"#logs:has-text('{marker}')", timeout=20_000)
    page.close()


def test_without_the_token_nothing_changes(browser: Any, live: Live) -> None:
    session = open_session(live.home)
    before = session.market().job(live.job_id)
    for headers in ({}, {"x-reef-token": "not-the-token"}):
        for action, body in (("stop", {}), ("withdraw", {}), ("deposit", {"amount": "1"})):
            answer = httpx.post(
                f"{live.url}/api/jobs/{live.job}/{action}", json=body, headers=headers, timeout=30
            )
            assert answer.status_code == 401, (action, answer.text)
    # The page without a token: read-only, and its stop button is refused.
    page = browser.new_page()
    page.goto(f"{live.url}/jobs/{live.job}")
    assert "no token" in page.locator("#token-state").inner_text()
    page.click("#stop")
    page.wait_for_selector("#manage .result[data-status]")
    assert page.locator("#manage .result").get_attribute("data-status") == "401"
    page.close()
    after = session.market().job(live.job_id)
    assert (after.rate, after.balance) == (before.rate, before.balance)
    assert session.market().rate_lock(live.job_id) is None
    assert _job_state(live) == "running"


def test_a_job_that_is_not_open_is_refused_as_reef_jobs_refuses_it(live: Live) -> None:
    answer = httpx.get(f"{live.url}/api/jobs/999/logs", timeout=30)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error.startswith("job 999 (0x")
    assert "is not open in the market at 0x" in error
    page = httpx.get(f"{live.url}/jobs/999", timeout=30)
    assert "is not open in the market" in page.text
    assert "reef jobs list" in page.text  # the hint, as the CLI gives it


def test_metrics_parse_and_carry_the_job(live: Live) -> None:
    assert httpx.get(f"{live.url}/providers", timeout=30).status_code == 200
    text = httpx.get(f"{live.url}/metrics", timeout=30).text
    samples = parse_samples(text)
    names = {s.name for s in samples}
    routes = {s.labels["route"] for s in samples if s.name == "reef_http_requests_total"}
    assert "/providers" in routes
    assert {"reef_http_requests_total", "reef_job_balance", "reef_network_up"} <= names
    balance = [
        s for s in samples if s.name == "reef_job_balance" and s.labels["job"] == str(live.job)
    ]
    assert balance
    assert balance[0].value > 0
    running = [
        s for s in samples if s.name == "reef_job_running" and s.labels["job"] == str(live.job)
    ]
    assert running
    assert running[0].value in (0.0, 1.0)
    # Per-enclave CPU and memory, from the enclave's cgroup (reef-<name> groups).
    from reef.web import enclave_usage

    usage = enclave_usage()
    if usage:
        memory = {s.labels["enclave"] for s in samples if s.name == "reef_enclave_memory_bytes"}
        assert memory == {u.name for u in usage if u.memory_bytes is not None}
        enclaves = httpx.get(f"{live.url}/enclaves", timeout=30).text
        assert "MiB" in enclaves  # the job's enclave's memory, from its cgroup
    overview = httpx.get(f"{live.url}/api/overview", timeout=30)
    assert overview.status_code == 200, overview.text
    info = overview.json()
    assert info["chain_id"] > 0
    # Read-only visitors never see the management token (network.json carries it for reef up).
    for path in ("/api/overview", "/", "/services/dashboard"):
        assert live.token not in httpx.get(f"{live.url}{path}", timeout=30).text, path
    # Every /metrics of reef up parses with prometheus-client's own parser (an implementation
    # nobody here wrote): the dashboard's, and the other services' on the serving floor.
    from prometheus_client.parser import text_string_to_metric_families

    network = NetworkInfo.load(live.home)
    urls = (live.url, network.control_plane, network.verifier, network.image_store, network.rpc_url)
    for url in urls:
        families = list(
            text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text)
        )
        names = {family.name for family in families}
        assert "process_resident_memory_bytes" in names, url


def test_deposit_with_the_token_and_the_kms_keys_of_an_image(browser: Any, live: Live) -> None:
    session = open_session(live.home)
    before = session.market().job(live.job_id).balance
    answer = httpx.post(
        f"{live.url}/api/jobs/{live.job}/deposit",
        json={"amount": "0.5"},
        headers={"x-reef-token": live.token},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert session.market().job(live.job_id).balance > before + 400_000  # 0.5 rUSD less settlement
    bad = httpx.post(
        f"{live.url}/api/jobs/{live.job}/deposit",
        json={"amount": "1.0000001"},
        headers={"x-reef-token": live.token},
        timeout=60,
    )
    assert bad.status_code == 400
    assert "decimal" in bad.json()["error"] or "digits" in bad.json()["error"]

    from concurrent.futures import ThreadPoolExecutor

    from reef.attestation import TrustedRoot
    from reef.kms import KmsPublicClient, fetch_identity

    async def derive() -> bytes:
        network = NetworkInfo.load(live.home)
        identity = await fetch_identity(network.kms["public"], root=TrustedRoot.dev(live.home))
        client = KmsPublicClient(network.kms["public"], signing_key=identity.signing_keys)
        image = bytes.fromhex(live.image_id)
        return await client.public_key("secp256k1", "wallet", image_id=image)

    # Playwright's sync API runs an event loop in this thread: the client gets its own.
    with ThreadPoolExecutor(1) as pool:
        expected = pool.submit(asyncio.run, derive()).result(60)
    page = browser.new_page()
    page.goto(f"{live.url}/kms?image_id={live.image_id}&path=wallet&type=secp256k1")
    assert page.locator("#kms-key").inner_text() == expected.hex()
    page.close()


def test_deploy_and_withdraw_from_the_dashboard(live: Live) -> None:
    token = {"x-reef-token": live.token}
    # The verifier page counts what the verifier saw (one accepted document per verification).
    verifier = NetworkInfo.load(live.home).verifier
    assert verifier is not None
    doc = httpx.get(f"{live.endpoint}/attestation", timeout=30).content
    assert httpx.post(f"{verifier}/verify/raw", content=doc, timeout=30).status_code == 200
    page = httpx.get(f"{live.url}/verifier", timeout=30).text
    assert "documents accepted</dt><dd>1" in page or "documents accepted</dt><dd>2" in page

    deployed = httpx.post(
        f"{live.url}/api/deploy",
        json={"image": str(HELLO), "duration": "10m", "debug": False},
        headers=token,
        timeout=180,
    )
    assert deployed.status_code == 200, deployed.text
    job = deployed.json()["job"]
    assert job != live.job
    jobs = httpx.get(f"{live.url}/api/jobs", timeout=30).json()["jobs"]
    assert {j["job"]: j["state"] for j in jobs}[job] == "running"
    session = open_session(live.home)
    before = session.market().job(job).balance
    taken = httpx.post(f"{live.url}/api/jobs/{job}/withdraw", json={}, headers=token, timeout=60)
    assert taken.status_code == 200, taken.text
    after = session.market().job(job)
    assert after.balance < before
    # The answer says when the provider now stops the enclave, as reef jobs withdraw does (to
    # the second: the provider may settle the job in between, which moves it by less).
    answer = taken.json()
    expected = stops_at(after, stop_margin_s(session))
    assert expected is not None
    assert abs(answer["stops_at"] - expected) <= 1, answer
    assert answer["stopping_now"] == (answer["warning"] is not None), answer
    if answer["stopping_now"]:
        assert f"reef jobs stop {job}" in answer["warning"]
    # A refused action says why, and changes nothing.
    again = httpx.post(
        f"{live.url}/api/jobs/{job}/withdraw", json={"amount": "1000"}, headers=token, timeout=60
    )
    assert again.status_code == 400
    assert "at most" in again.json()["error"] or "nothing can be withdrawn" in again.json()["error"]
    # Update the image to one the provider cannot fetch: it says so, and the page shows it.
    bogus = "http://127.0.0.1:9/images/" + "ab" * 32
    updated = httpx.post(
        f"{live.url}/api/jobs/{job}/update", json={"url": bogus}, headers=token, timeout=60
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["updated"] == ["url"]
    deadline = time.monotonic() + 60
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        rows = httpx.get(f"{live.url}/api/jobs", timeout=30).json()["jobs"]
        row = next(j for j in rows if j["job"] == job)
        if row["last_error"]:
            break
        time.sleep(0.5)
    assert row["metadata"]["url"] == bogus
    assert row["last_error"], row
    page = httpx.get(f"{live.url}/jobs/{job}", timeout=30).text
    assert "provider&#x27;s last error" in page or "provider's last error" in page
    assert html.escape(row["last_error"][:40]) in page
    stopped = httpx.post(f"{live.url}/api/jobs/{job}/stop", headers=token, timeout=60)
    assert stopped.status_code == 200


def test_stop_from_the_page_stops_the_enclave(browser: Any, live: Live, screenshots: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live.url}/jobs/{live.job}?token={live.token}")
    page.wait_for_selector("#token-state.ok", timeout=10_000)
    assert page.locator("#token-state").inner_text() == "manage"
    page.click("#stop")
    page.wait_for_selector("#manage .result[data-status]", timeout=60_000)
    assert page.locator("#manage .result").get_attribute("data-status") == "200"
    deadline = time.monotonic() + 60
    while _job_state(live) == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _job_state(live) != "running"
    with pytest.raises(httpx.HTTPError):
        httpx.get(live.endpoint, timeout=3)
    page.goto(f"{live.url}/jobs/{live.job}")
    page.screenshot(path=str(screenshots / "job-stopped-1280.png"), full_page=True)
    page.close()
