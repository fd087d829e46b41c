"""The dashboard against hostile visitors, pages of other sites, and a hostile provider.

The dashboard runs as the real ``reef dashboard`` process (so a crash shows as a dead process),
on a devnet served over JSON-RPC. The provider its jobs run at is the attacker: any account may
register a control plane in the market, and this one answers with script in every field, a
``javascript:`` endpoint, deeply nested JSON and a console line that does not end. The browser is
headless Chromium, and the page of "another site" is served from another origin on loopback.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from net_support import free_port
from reef.chain import Devnet, MarketClient, deploy_contracts, job_index, serve_devnet_in_thread
from reef.home import ReefHome
from reef.market import JobMetadata, RateCard
from reef.web import Dashboard, DashboardSettings, dashboard_app

pytestmark = pytest.mark.slow

REEF = str(Path(sys.executable).with_name("reef"))
CARD = RateCard.dev().lookup("local", "dev.small")
DEEP = "[" * 100_000
PWN = "document.title='pwned'"
SCRIPTED = f'<img src=x onerror="{PWN}"><script>{PWN}</script>'
LONG_LINE = 8 * 1024 * 1024


def _console() -> Iterator[bytes]:
    """A debug console whose first line is 8 MiB long, then a normal line carrying a CR, then
    silence (the stream stays open for a while, as a console does)."""
    yield b"data: "
    for _ in range(LONG_LINE // (1 << 20)):
        yield b"A" * (1 << 20)
    yield b"\n\ndata: after\revent: forged\n\n"
    time.sleep(30)


def _provider_routes(hostile_url: str) -> dict[str, Callable[[dict[str, str]], Any]]:
    def job(query: dict[str, str]) -> tuple[int, str, bytes]:
        answer = {
            "job_id": query.get("id", ""),
            "phase": "running",
            "reason": SCRIPTED,
            "enclave": {
                "id": SCRIPTED,
                "state": "running",
                "endpoints": {
                    "ports": {"8080": f"javascript:{PWN}"},
                    "logs": f"{hostile_url}/logs",
                    "attestation": f"{hostile_url}/attestation/raw",
                },
            },
            "last_error": SCRIPTED,
            "restarts": 0,
            "last_restart": SCRIPTED,
        }
        return 200, "application/json", json.dumps(answer).encode()

    return {
        "/job": job,
        "/ip": job,
        "/spec": lambda q: (200, "application/json", DEEP.encode()),
        "/bandwidth": lambda q: (200, "application/json", DEEP.encode()),
        "/logs": lambda q: (200, "text/event-stream", _console()),
        "/canary": lambda q: (200, "application/octet-stream", b"not a document"),
        "/other-site": lambda q: (200, "text/html", _other_site(q.get("target", "")).encode()),
    }


def _other_site(target: str) -> str:
    """A page of another site that asks the dashboard, unseen, to fetch a URL of its choice:
    a "simple" cross-origin POST (text/plain, no-cors), which needs no preflight."""
    body = json.dumps({"endpoint": target + "/canary-from-browser", "mode": "replay"})
    return (
        "<!doctype html><title>other site</title><script>"
        f"fetch({json.dumps(target + '/api/attestation/verify')}, {{method: 'POST', "
        f"mode: 'no-cors', headers: {{'content-type': 'text/plain'}}, body: {json.dumps(body)}}})"
        ".then(() => { document.title = 'sent'; }, () => { document.title = 'sent'; });"
        "</script>"
    )


# -- the network: a devnet with the hostile provider's jobs, and `reef dashboard` on it ---------


@dataclass
class Net:
    url: str
    hostile: Any  # conftest.StrangerServer
    own_job: int
    strangers_job: int
    process: subprocess.Popen[bytes]
    log: Path
    rpc_url: str
    market: str
    accounts: list[Any]

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(
                f"the dashboard died (exit {self.process.returncode}):\n"
                + self.log.read_text(errors="replace")[-3000:]
            )


def _wait_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(log.read_text(errors="replace"))
        try:
            httpx.get(f"{url}/attestation", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"the dashboard did not start:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory, stranger_server: Any) -> Iterator[Net]:
    home = tmp_path_factory.mktemp("hostile-home")
    hostile = stranger_server()
    hostile.routes.update(_provider_routes(f"http://127.0.0.1:{hostile.port}"))
    devnet = Devnet()
    accounts = devnet.accounts
    deployment = deploy_contracts(
        devnet.web3(), accounts[0].address, rate_lock_s=5, fund=[a.address for a in accounts]
    )
    evil = accounts[8]
    MarketClient(devnet.web3(), deployment.market, account=evil.local_account).add_provider(
        f"http://127.0.0.1:{hostile.port}"
    )
    metadata = JobMetadata(
        instance="dev.small",
        region="local",
        memory=256,
        vcpu=1,
        url=f"http://127.0.0.1:{hostile.port}/images/{'ab' * 32}",
        name=SCRIPTED,
        debug=True,
    ).to_json()
    own = MarketClient(devnet.web3(), deployment.market, account=accounts[0].local_account)
    own_job = job_index(own.open_job(metadata, evil.address, CARD.min_rate, 10**6))
    stranger = MarketClient(devnet.web3(), deployment.market, account=accounts[1].local_account)
    strangers_job = job_index(stranger.open_job(metadata, evil.address, CARD.min_rate, 10**6))
    key = home / "owner.key"
    key.write_text(accounts[0].private_key.hex())
    port = free_port()
    log = home / "dashboard.log"
    with serve_devnet_in_thread(devnet) as rpc, log.open("ab") as out:
        command = [REEF, "dashboard", "--rpc", rpc.url, "--market", deployment.market]
        command += ["--key", str(key), "--port", str(port)]
        process = subprocess.Popen(
            command, env={**os.environ, "REEF_HOME": str(home)}, stdout=out, stderr=out
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_up(url, process, log)
            yield Net(
                url,
                hostile,
                own_job,
                strangers_job,
                process,
                log,
                rpc.url,
                deployment.market,
                list(accounts),
            )
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            hostile.close()


# -- bodies that crash a parser --------------------------------------------------------------------


def test_deeply_nested_json_in_a_body_or_the_collateral_does_not_crash_the_dashboard(
    net: Net,
) -> None:
    answer = httpx.post(f"{net.url}/api/attestation/verify", content=DEEP, timeout=30)
    assert answer.status_code == 400
    assert "nested" in answer.json()["error"]
    # A TDX quote header (version 4, ECDSA key, TDX) and collateral that is one deep array.
    quote = (4).to_bytes(2, "little") + (2).to_bytes(2, "little") + (0x81).to_bytes(4, "little")
    body = {"document": (quote + bytes(64)).hex(), "collateral": DEEP}
    answer = httpx.post(f"{net.url}/api/attestation/verify", json=body, timeout=30)
    assert answer.status_code == 400
    assert "collateral is nested" in answer.json()["error"]
    # The provider answers /spec with the same: its row says so, the page still renders.
    providers = httpx.get(f"{net.url}/providers", timeout=60)
    assert providers.status_code == 200
    assert "nested more than" in providers.text
    net.alive()


def test_collateral_that_carries_deeply_nested_json_does_not_crash_the_dashboard(
    net: Net, vectors: Path
) -> None:
    """The collateral's own JSON is flat, but its QE identity is a string holding a document
    nested 100 000 deep: reef.attestation parses it when it explains why a quote is outside the
    collateral's window, and json.loads would crash the process there."""
    quote = (vectors / "dcap" / "tdx_quote").read_bytes()
    collateral = json.loads((vectors / "dcap" / "tdx_quote_collateral.json").read_text())
    collateral["qe_identity"] = DEEP
    body = {"document": quote.hex(), "collateral": json.dumps(collateral), "at_s": "1720000000"}
    answer = httpx.post(f"{net.url}/api/attestation/verify", json=body, timeout=30)
    assert answer.status_code == 400
    assert "collateral is nested" in answer.json()["error"]
    net.alive()


# -- requests made by other sites' pages ------------------------------------------------------------


def test_a_post_from_another_sites_page_is_refused_before_anything_is_fetched(
    net: Net, browser: Any
) -> None:
    canary = f"http://127.0.0.1:{net.hostile.port}/canary"
    forged = httpx.post(
        f"{net.url}/api/attestation/verify",
        content=json.dumps({"endpoint": canary}),
        headers={"origin": "http://evil.example", "content-type": "text/plain"},
        timeout=30,
    )
    assert forged.status_code == 403
    assert "another site" in forged.json()["error"]
    assert net.hostile.hits.get("/canary", 0) == 0
    # The dashboard's own pages (same origin) and programs (no Origin) are served as before.
    same = httpx.post(
        f"{net.url}/api/attestation/verify",
        json={"endpoint": canary},
        headers={"origin": net.url},
        timeout=30,
    )
    assert same.status_code == 200, same.text
    assert same.json()["ok"] is False  # the canary's bytes are no document, but were fetched
    assert net.hostile.hits.get("/canary", 0) >= 1

    # In a real browser: a page of another origin (localhost, not 127.0.0.1) posts unseen.
    page = browser.new_page()
    other = f"http://localhost:{net.hostile.port}/other-site?target={net.url}"
    page.goto(other)
    page.wait_for_function("document.title === 'sent'", timeout=20_000)
    time.sleep(1)  # the dashboard would have fetched by now
    page.close()
    assert net.hostile.hits.get("/canary-from-browser", 0) == 0
    net.alive()


def test_a_visitor_from_elsewhere_cannot_make_a_public_dashboard_fetch_urls(
    tmp_path: Path, stranger_server: Any
) -> None:
    """``--host 0.0.0.0`` serves read-only pages to the network; fetching an endpoint for such a
    visitor would make the dashboard a proxy into its host's loopback services."""
    canary = stranger_server({"/canary": lambda q: (200, "application/octet-stream", b"x")})
    try:
        dash = Dashboard(DashboardSettings(home=ReefHome(tmp_path), host="0.0.0.0"))
        app = dashboard_app(dash)

        async def post() -> httpx.Response:
            transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://dash") as http:
                return await http.post(
                    "/api/attestation/verify",
                    json={"endpoint": f"http://127.0.0.1:{canary.port}/canary"},
                )

        # In a thread of its own: this module's browser keeps an event loop in the main one.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(asyncio.run, post()).result(60)
        assert answer.status_code == 403
        assert "loopback" in answer.json()["error"]
        assert canary.hits.get("/canary", 0) == 0
    finally:
        canary.close()


# -- what a hostile provider puts on the pages ---------------------------------------------------


def test_a_hostile_providers_answers_run_no_script_and_give_no_javascript_link(
    net: Net, browser: Any
) -> None:
    page = browser.new_page()
    for path in ("/", "/jobs", f"/jobs/{net.own_job}", f"/jobs/{net.strangers_job}", "/enclaves"):
        page.goto(f"{net.url}{path}")
        page.wait_for_load_state("load")
        html = page.content()
        assert "<script>document.title" not in html, path
        if path.startswith("/jobs/"):  # the provider's words are on the page, as text
            assert f"<script>{PWN}</script>" in page.locator("main").inner_text(), path
        hrefs = [a.get_attribute("href") or "" for a in page.locator("a").all()]
        assert not [h for h in hrefs if h.strip().lower().startswith("javascript:")], path
        assert page.title() != "pwned", path
    page.close()
    net.alive()


# -- the live console relay --------------------------------------------------------------------


def test_a_console_line_without_end_is_relayed_cut_and_no_field_can_be_forged(net: Net) -> None:
    events: list[str] = []
    with httpx.stream(
        "GET",
        f"{net.url}/api/jobs/{net.own_job}/logs",
        timeout=httpx.Timeout(10, read=20),
    ) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            if line:
                events.append(line)
            if len(events) >= 2:
                break
    cut, after = events
    assert cut.startswith("data: AAAA")
    assert "[line cut: longer than" in cut
    assert len(cut) < 64 * 1024
    assert after == "data: afterevent: forged"
    net.alive()


# -- many slow providers ---------------------------------------------------------------------------


def _trickle() -> Iterator[bytes]:
    """An answer that never completes: a byte a second (for two minutes, then it gives up)."""
    yield b'{"min_rates": ['
    for _ in range(120):
        time.sleep(1)
        yield b" "


def test_providers_that_trickle_their_answers_do_not_hold_the_pages(net: Net) -> None:
    """Anyone may register a provider: seven of them answer a byte a second, forever. The pages
    that ask every provider still answer, and say which did not."""
    from web3 import HTTPProvider, Web3

    w3 = Web3(HTTPProvider(net.rpc_url))
    slow = [net.accounts[i] for i in (2, 3, 4, 5, 6, 7, 9)]
    for n, account in enumerate(slow):
        net.hostile.routes[f"/slow{n}/spec"] = lambda q: (200, "application/json", _trickle())
        MarketClient(w3, net.market, account=account.local_account).add_provider(
            f"http://127.0.0.1:{net.hostile.port}/slow{n}"
        )
    for path in ("/providers", "/"):
        answer = httpx.get(f"{net.url}{path}", timeout=httpx.Timeout(10, read=60))
        assert answer.status_code == 200, path
    page = httpx.get(f"{net.url}/providers", timeout=httpx.Timeout(10, read=60)).text
    for account in slow:
        assert account.address[:12] in page
    assert page.count("took longer than") + page.count("did not answer within") == len(slow)
    net.alive()
