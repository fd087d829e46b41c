"""The dashboard as a visitor's browser meets it, with strangers on the other side (round 3).

What a stranger controls reaches the visitor's browser: a provider's answers (the job page asks
the enclave's attestation endpoint the provider names), pages of other sites open in other tabs
(they frame the dashboard, or ask it from script), and browsers' caches. Each test replays the
attack in headless Chromium (or with httpx where only the headers matter) against the real app
on loopback; the provider and the other site are real HTTP servers on other ports (other
origins). Earlier rounds' attacks are in test_hostile.py and test_hostile_pages.py.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from reef.attestation import DevAuthority
from reef.chain import Devnet, MarketClient, deploy_contracts, job_index, serve_devnet_in_thread
from reef.home import ReefHome
from reef.market import JobMetadata, RateCard, job_user_data
from reef.web import TOKEN_HEADER, Dashboard, DashboardSettings, dashboard_app

CARD = RateCard.dev().lookup("local", "dev.small")
PWN = "window.__pwned=1"
SCRIPTED_URL = (
    f'javascript:{PWN}//"><img src=x onerror="{PWN}"><script>{PWN}</script>'
    f"<style>header{{display:none}}</style>"
)


# -- headers: caches and refusals ------------------------------------------------------------


def test_pages_and_answers_with_live_data_are_never_cached(
    serve_in_thread: Any, network_home: Any, tmp_path: Path
) -> None:
    """A page shows balances, jobs and the account; a browser (or a proxy) that keeps it shows
    stale money on Back, and keeps it on disk for the next user of the machine. Refusals carry
    the same headers as answers (a 403 is a page too)."""
    home = network_home(tmp_path)
    dash = Dashboard(DashboardSettings(home=home, token="the-token"))
    with serve_in_thread(dashboard_app(dash)) as url:
        answers = {
            path: httpx.get(f"{url}{path}", timeout=20)
            for path in ("/", "/jobs", "/jobs/1", "/attestation", "/api/jobs", "/api/overview")
        }
        answers["token check"] = httpx.post(
            f"{url}/api/token", headers={TOKEN_HEADER: "the-token"}, timeout=20
        )
        answers["cross-site refusal"] = httpx.post(
            f"{url}/api/jobs/1/stop",
            headers={TOKEN_HEADER: "the-token", "origin": "http://evil.example"},
            timeout=20,
        )
        port = url.rsplit(":", 1)[1]
        answers["rebinding refusal"] = httpx.get(
            f"{url}/api/jobs", headers={"host": f"evil.example:{port}"}, timeout=20
        )
    for what, answer in answers.items():
        assert "no-store" in answer.headers.get("cache-control", ""), what
        assert answer.headers.get("x-content-type-options") == "nosniff", what
        assert "frame-ancestors 'none'" in answer.headers.get("content-security-policy", ""), what
        assert answer.headers.get("referrer-policy") == "no-referrer", what
    assert answers["cross-site refusal"].status_code == 403
    assert answers["rebinding refusal"].status_code == 403


@pytest.mark.slow
def test_the_policy_allows_no_inline_style_and_the_pages_are_still_styled(
    browser: Any, serve_in_thread: Any, network_home: Any, tmp_path: Path
) -> None:
    """No inline script, no inline style: markup that a stranger slipped into a page through
    a path not yet found could not restyle it either (overlaying a fake "verified" badge or
    hiding the Stop button) — and the dashboard's own look comes from its static stylesheet."""
    home = network_home(tmp_path)
    dash = Dashboard(DashboardSettings(home=home))
    with serve_in_thread(dashboard_app(dash)) as url:
        policy = httpx.get(f"{url}/attestation", timeout=20).headers["content-security-policy"]
        assert "unsafe-inline" not in policy
        assert "style-src 'self'" in policy
        page = browser.new_page()
        violations: list[str] = []
        page.on(
            "console", lambda m: violations.append(m.text) if "Content Security" in m.text else None
        )
        try:
            page.goto(f"{url}/attestation")
            page.wait_for_load_state("load")
            header = page.evaluate(
                "() => getComputedStyle(document.querySelector('header')).backgroundColor"
            )
            assert header == "rgb(11, 61, 92)"
            assert violations == []
        finally:
            page.close()


def test_metrics_carry_the_headers_and_refuse_another_sites_page(
    serve_in_thread: Any, network_home: Any, tmp_path: Path
) -> None:
    """Each scrape of the dashboard's /metrics reads the chain (the network's gauges): another
    tab's ``<img src=http://127.0.0.1:PORT/metrics>``, repeated, has it read the chain for
    nothing, and the answer (text/plain) comes without nosniff or no-store."""
    home = network_home(tmp_path)
    dash = Dashboard(DashboardSettings(home=home))
    with serve_in_thread(dashboard_app(dash)) as url:
        embedded = httpx.get(
            f"{url}/metrics",
            headers={
                "sec-fetch-site": "cross-site",
                "sec-fetch-mode": "no-cors",
                "sec-fetch-dest": "image",
            },
            timeout=20,
        )
        own = httpx.get(f"{url}/metrics", timeout=20)
    assert own.headers.get("x-content-type-options") == "nosniff"
    assert "no-store" in own.headers.get("cache-control", "")
    assert embedded.status_code == 403


# -- another site's page, in another tab ----------------------------------------------------------


def _other_site_page(dashboard: str) -> str:
    """A page of another origin that frames the dashboard's job page (to overlay its Stop
    button) and tries to read its API from script (CORS)."""
    return (
        "<!doctype html><title>other site</title>"
        f'<iframe id="victim" src="{dashboard}/jobs/1" width="800" height="600"></iframe>'
        "<script>"
        f"fetch({json.dumps(dashboard + '/api/jobs')})"
        ".then(r => r.text()).then(t => { window.__read = t; }, e => { window.__read = 'refused'; });"
        "</script>"
    )


@pytest.mark.slow
def test_another_sites_page_can_neither_frame_the_dashboard_nor_read_its_api(
    browser: Any, serve_in_thread: Any, network_home: Any, tmp_path: Path, stranger: Any
) -> None:
    home = network_home(tmp_path)
    dash = Dashboard(DashboardSettings(home=home, token="the-token"))
    with serve_in_thread(dashboard_app(dash)) as url:
        stranger.routes["/"] = lambda q: (200, "text/html", _other_site_page(url).encode())
        page = browser.new_page()
        try:
            page.goto(f"{stranger.url}/")
            page.wait_for_function("window.__read !== undefined", timeout=20_000)
            assert page.evaluate("window.__read") == "refused"
            frame = page.frame_locator("#victim")
            # The dashboard's own page renders a header with its brand and a Stop form; framed
            # by another origin, nothing of it is shown.
            assert frame.locator("header .brand").count() == 0
            assert frame.locator("#manage").count() == 0
        finally:
            page.close()


# -- a provider's enclave attested under a root anyone can sign with ------------------------------


@dataclass
class Net:
    url: str
    job: int
    hostile: Any  # conftest.StrangerServer
    bound: int
    """A job whose enclave attests it, under this machine's dev root."""
    other: int
    """A job for which the provider names ``bound``'s enclave."""


@pytest.fixture(scope="module")
def net(
    tmp_path_factory: pytest.TempPathFactory,
    stranger_server: Any,
    serve_in_thread: Any,
    vectors: Path,
) -> Iterator[Net]:
    """A devnet where the visitor's job runs at a hostile provider whose enclave answers a
    Nitro document under Oyster's public *mock* root: its key is published, so anyone can sign
    a fresh document with any PCRs under it. The dashboard's clock is the document's own time
    (the stand-in for a document just signed with that key).

    Two more of the visitor's jobs run there under this machine's dev root: one enclave attests
    its job as a reef provider's do, and the provider names that same enclave for the other job
    (paid for running nothing)."""
    raw = (vectors / "nitro" / "mock_custom.bin").read_bytes()
    expected = json.loads((vectors / "nitro" / "expected.json").read_text())["mock_custom.bin"]
    hostile = stranger_server()
    base = f"http://127.0.0.1:{hostile.port}"
    home = ReefHome(tmp_path_factory.mktemp("browser-hostile-home"))
    signed_at = int(expected["timestamp_ms"])
    authority = DevAuthority.load_or_create(
        home, now=dt.datetime.fromtimestamp(signed_at / 1000 - 3600, dt.UTC)
    )
    dev_documents: dict[str, bytes] = {}  # job id -> what its named enclave answers

    def job(query: dict[str, str]) -> tuple[int, str, bytes]:
        job_id = query.get("id", "").lower()
        # An endpoint without the path: the attestation client asks its /attestation/raw.
        attestation = f"dev/{job_id}" if job_id in dev_documents else "attestation/raw"
        answer = {
            "job_id": query.get("id", ""),
            "phase": "running",
            "reason": "",
            "enclave": {
                "id": "enc-1",
                "state": "running",
                "endpoints": {
                    "ports": {},
                    "attestation": f"{base}/{attestation}",
                    "logs": f"{base}/logs",
                },
            },
            "last_error": "",
            "restarts": 0,
            "last_restart": "",
        }
        return 200, "application/json", json.dumps(answer).encode()

    hostile.routes.update(
        {
            "/job": job,
            "/ip": job,
            "/attestation/raw": lambda q: (200, "application/octet-stream", raw),
            "/logs": lambda q: (200, "text/event-stream", b"data: hello\n\n"),
        }
    )
    devnet = Devnet()
    accounts = devnet.accounts
    deployment = deploy_contracts(
        devnet.web3(), accounts[0].address, rate_lock_s=5, fund=[a.address for a in accounts]
    )
    evil = accounts[8]
    MarketClient(devnet.web3(), deployment.market, account=evil.local_account).add_provider(base)
    # Another stranger registers script as its control plane's URL (chain data: every page that
    # lists providers shows it).
    MarketClient(devnet.web3(), deployment.market, account=accounts[7].local_account).add_provider(
        SCRIPTED_URL
    )
    metadata = JobMetadata(
        instance="dev.small",
        region="local",
        memory=256,
        vcpu=1,
        url=f"{base}/images/{'ab' * 32}",
        name="mine",
        debug=False,
    ).to_json()
    own = MarketClient(devnet.web3(), deployment.market, account=accounts[0].local_account)
    number = job_index(own.open_job(metadata, evil.address, CARD.min_rate, 10**6))
    bound, other = (own.open_job(metadata, evil.address, CARD.min_rate, 10**6) for _ in range(2))
    enclave = authority.mint(
        {0: bytes([7]) * 48},
        timestamp_ms=signed_at,
        user_data=job_user_data(devnet.web3().eth.chain_id, deployment.market, bound),
    )
    for job_id in (bound, other):
        dev_documents[job_id.lower()] = enclave
        hostile.routes[f"/dev/{job_id.lower()}/attestation/raw"] = lambda q: (
            200,
            "application/octet-stream",
            enclave,
        )
    key = home.path("owner.key")
    key.write_text(accounts[0].private_key.hex())
    try:
        with serve_devnet_in_thread(devnet) as rpc:
            settings = DashboardSettings(
                home=home, rpc=rpc.url, market=deployment.market, key=key, token="the-token"
            )
            dash = Dashboard(settings, clock_ms=lambda: int(expected["timestamp_ms"]) + 1000)
            with serve_in_thread(dashboard_app(dash)) as url:
                yield Net(url, number, hostile, job_index(bound), job_index(other))
            dash.close()
    finally:
        hostile.close()


@pytest.mark.slow
def test_a_job_attested_under_a_root_anyone_can_sign_with_is_not_shown_as_attested(
    net: Net, browser: Any
) -> None:
    page = browser.new_page()
    try:
        page.goto(f"{net.url}/jobs/{net.job}")
        target = page.locator("#image-id")
        page.wait_for_selector("#image-id[data-image-id]", state="attached", timeout=30_000)
        text = target.inner_text()
        # The server did verify the signatures (so the page has a verdict to show) ...
        assert "b45dfd1807c1f4b8" in text, text
        # ... but under a root whose key is public: the page must say so, and must not hand the
        # id on as an attested one.
        assert "attested live" not in text, text
        assert "insecure" in text.lower(), text
        assert target.get_attribute("data-image-id") == ""
        assert target.get_attribute("data-insecure-root") == "mock"
    finally:
        page.close()


@pytest.mark.slow
def test_an_enclave_that_attests_another_job_is_not_shown_as_this_jobs(
    net: Net, browser: Any
) -> None:
    """The provider names, for one job, the enclave it runs for another (the same image, under a
    root the dashboard trusts): the image id is attested, but not for this job, so the page must
    not show it as this job's enclave. The job the enclave does attest shows as attested."""
    page = browser.new_page()
    try:
        verdicts = {}
        for number in (net.bound, net.other):
            page.goto(f"{net.url}/jobs/{number}")
            page.wait_for_selector("#image-id[data-image-id]", state="attached", timeout=30_000)
            target = page.locator("#image-id")
            verdicts[number] = (target.inner_text(), target.get_attribute("data-image-id"))
        text, image_id = verdicts[net.bound]
        assert "attested live, root dev" in text, text
        assert image_id
        assert image_id in text
        text, other_id = verdicts[net.other]
        assert "NOT this job's enclave" in text, text
        assert image_id in text  # the same enclave and image as the bound job's ...
        assert other_id == ""  # ... never handed on as this job's attested image
        assert page.locator("#image-id").get_attribute("data-other-job") == "yes"
    finally:
        page.close()


def _prodding_page(dashboard: str, job: int) -> str:
    """A page of another origin (another tab) that makes the visitor's browser ask the dashboard
    for a job's live console and its pages, unseen: each ask holds a relay to the enclave (the
    dashboard has a few dozen) or the providers' answers, and none needs the answer read."""
    logs = json.dumps(f"{dashboard}/api/jobs/{job}/logs")
    pages = json.dumps([f"{dashboard}/api/jobs", f"{dashboard}/jobs/{job}"])
    return (
        "<!doctype html><title>other site</title><script>"
        f"const asks = [0, 1, 2].map(() => fetch({logs}, {{mode: 'no-cors'}}))"
        f".concat({pages}.map((u) => fetch(u, {{mode: 'no-cors'}})));"
        "Promise.allSettled(asks).then(() => { document.title = 'asked'; });"
        "</script>"
    )


@pytest.mark.slow
def test_another_sites_page_cannot_make_the_dashboard_relay_consoles_or_ask_providers(
    net: Net, browser: Any, stranger: Any
) -> None:
    stranger.routes["/"] = lambda q: (200, "text/html", _prodding_page(net.url, net.job).encode())
    before = dict(net.hostile.hits)
    page = browser.new_page()
    try:
        page.goto(f"{stranger.url}/")
        page.wait_for_function("() => document.title === 'asked'", timeout=30_000)
        # Every ask was answered (refused) before the dashboard reached out: give a relay that
        # was started anyway a moment to show up at the console.
        page.wait_for_timeout(1000)
        for path in ("/logs", "/job", "/ip"):
            assert net.hostile.hits.get(path, 0) == before.get(path, 0), path
        # The dashboard's own pages still stream the console, for the visitor who opens them.
        own = browser.new_page()
        own.goto(f"{net.url}/jobs/{net.job}")
        own.wait_for_selector("#image-id[data-image-id]", state="attached", timeout=30_000)
        assert net.hostile.hits.get("/job", 0) > before.get("/job", 0)
        own.close()
    finally:
        page.close()


@pytest.mark.slow
def test_a_control_plane_url_of_script_runs_nothing_on_the_pages_that_list_providers(
    net: Net, browser: Any
) -> None:
    page = browser.new_page()
    try:
        for path in ("/", "/providers"):
            page.goto(f"{net.url}{path}")
            page.wait_for_load_state("load")
            assert SCRIPTED_URL in page.locator("main").inner_text(), path  # shown, as text
            assert page.evaluate("() => window.__pwned") is None, path
            hrefs = [a.get_attribute("href") or "" for a in page.locator("a").all()]
            assert not [h for h in hrefs if "javascript:" in h.lower()], path
            assert page.locator("header").is_visible(), path
    finally:
        page.close()
