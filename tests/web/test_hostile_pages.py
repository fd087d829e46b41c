"""The dashboard and its alerts against strangers, round two: what ``test_hostile.py`` does not
already replay.

- a page of another site whose DNS name was rebound to 127.0.0.1, against a dashboard that
  listens on every address (``--host 0.0.0.0``): it must not make the dashboard fetch a URL and
  read the answer (the cloud's metadata address, a loopback service);
- a visitor's ``at_s`` that is no Unix time (a superscript digit, 5 000 digits, year 3 million);
- visitors that open many live log streams: each holds a socket to the enclave's console;
- an alert webhook or a ``/metrics`` URL that answers a gigabyte, trickles its head, or redirects.

Real servers on loopback (the dashboard on reef's serving floor, the devnet over JSON-RPC, raw
sockets for the trickling and the gigabyte) and real clients (httpx).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from net_support import SENT_AT_MOST, Sent, drip, ends, gigabyte, raw_server_in_thread
from reef.errors import ServiceError
from reef.home import ReefHome
from reef.market import RateCard
from reef.web import (
    AlertRule,
    Dashboard,
    DashboardSettings,
    Notice,
    dashboard_app,
    read_samples,
    send_notice,
)

EVIL = "evil.example"


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1]


# -- DNS rebinding against a dashboard that listens on every address ---------------------------


def test_a_rebound_name_cannot_make_a_public_dashboard_fetch_and_read_a_url(
    serve_in_thread: Any, stranger: Any, tmp_path: Path
) -> None:
    """``reef dashboard --host 0.0.0.0`` on a machine whose user opens a page of evil.example:
    the page rebinds its name to 127.0.0.1, so its requests come from loopback and name the
    page itself as their Origin (same-origin for the browser, so it reads the answers). The
    dashboard fetched the endpoint it named and returned its bytes (``document_hex``): any URL
    the dashboard's host can reach, read by another site."""
    stranger.routes["/secret"] = lambda q: (200, "text/plain", b"the instance's credentials")
    dash = Dashboard(DashboardSettings(home=ReefHome(tmp_path), host="0.0.0.0"))
    with serve_in_thread(dashboard_app(dash), host="0.0.0.0") as url:
        local = f"http://127.0.0.1:{_port(url)}"
        target = {"endpoint": f"{stranger.url}/secret", "mode": "replay"}
        rebound = f"{EVIL}:{_port(url)}"
        answer = httpx.post(
            f"{local}/api/attestation/verify",
            json=target,
            headers={"host": rebound, "origin": f"http://{rebound}"},
            timeout=30,
        )
        assert answer.status_code == 403, answer.text[:300]
        assert "loopback" in answer.json()["error"]
        assert answer.json()["hint"]
        assert stranger.hits.get("/secret", 0) == 0
        # The machine's own user, naming the dashboard by a loopback address, still may.
        own = httpx.post(f"{local}/api/attestation/verify", json=target, timeout=30)
        assert own.status_code == 200, own.text
        assert own.json()["ok"] is False  # not a document, but fetched
        assert stranger.hits.get("/secret", 0) == 1


def test_a_rebound_name_cannot_read_a_loopback_dashboards_metrics(
    serve_in_thread: Any, tmp_path: Path
) -> None:
    dash = Dashboard(DashboardSettings(home=ReefHome(tmp_path)))
    with serve_in_thread(dashboard_app(dash)) as url:
        page = httpx.get(f"{url}/verifier", headers={"host": f"{EVIL}:{_port(url)}"}, timeout=10)
        assert page.status_code == 403  # the pages refuse the rebound name...
        metrics = httpx.get(f"{url}/metrics", headers={"host": f"{EVIL}:{_port(url)}"}, timeout=30)
        assert metrics.status_code == 403  # ...and so must the network's gauges


# -- an instant that is no Unix time -----------------------------------------------------------


@pytest.mark.parametrize(
    ("at_s", "with_collateral"),
    [
        ("\u00b2", False),  # str.isdigit() says yes, int() says no
        ("9" * 5000, False),  # past int()'s 4300 digits
        ("99999999999999", True),  # year 3 million: datetime cannot name it
        (str(10**30), True),
    ],
)
def test_an_instant_that_is_no_unix_time_is_refused_not_a_server_error(
    serve_in_thread: Any, tmp_path: Path, vectors: Path, at_s: str, with_collateral: bool
) -> None:
    quote = (vectors / "dcap" / "tdx_quote").read_bytes()
    body = {"document": quote.hex(), "at_s": at_s}
    if with_collateral:
        body["collateral"] = (vectors / "dcap" / "tdx_quote_collateral.json").read_text()
    dash = Dashboard(DashboardSettings(home=ReefHome(tmp_path)))
    with serve_in_thread(dashboard_app(dash)) as url:
        answer = httpx.post(f"{url}/api/attestation/verify", json=body, timeout=30)
        assert answer.status_code == 400, answer.text[:300]
        assert "at_s" in answer.json()["error"]
        assert answer.json()["hint"]
        # A real instant inside the collateral's window is verified as before.
        body.update(
            at_s="1720000000",
            collateral=(vectors / "dcap" / "tdx_quote_collateral.json").read_text(),
        )
        fine = httpx.post(f"{url}/api/attestation/verify", json=body, timeout=30)
        assert fine.status_code == 200, fine.text[:300]
        assert fine.json()["kind"] == "quote"


# -- a hostile provider's numbers, and many live log streams -----------------------------------

CARD = RateCard.dev().lookup("local", "dev.small")
SLOW_JOBS = 40
"""Jobs at a provider that trickles its answers: 16 are asked at once, each for up to 6 s."""
SPAM = 120
"""Empty deposits a stranger makes to the owner's job."""


@dataclass
class Net:
    url: str
    public_url: str
    rpc: str
    market: str
    key: Path
    job: int
    loop_job: int
    provider: Any


def _console(stop: threading.Event) -> Iterator[bytes]:
    """A debug console: one line, then silence while the stream stays open (as a console's)."""
    yield b"data: hello\n\n"
    stop.wait(120)


def _trickle(stop: threading.Event) -> Iterator[bytes]:
    """An offer that never completes: a byte every half second (for a minute at most)."""
    yield b'{"min_rates": ['
    for _ in range(120):
        if stop.wait(0.5):
            return
        yield b" "


@pytest.fixture(scope="module")
def net(
    tmp_path_factory: pytest.TempPathFactory, stranger_server: Any, serve_in_thread: Any
) -> Iterator[Net]:
    """A devnet where dev account 8 is a hostile provider and account 0 has a debug job at it,
    and two dashboards of account 0: on loopback (4 log streams at most) and on every address
    (16, so 2 per visitor from elsewhere)."""
    from reef.chain import Devnet, MarketClient, deploy_contracts, job_index, serve_devnet_in_thread
    from reef.market import JobMetadata

    provider = stranger_server()

    consoles: dict[str, str] = {}
    """Console URLs by job id (lower-case hex), for jobs whose console is not the default."""

    def job(query: dict[str, str]) -> tuple[int, str, bytes]:
        logs = consoles.get(query.get("id", "").lower(), f"{provider.url}/logs")
        answer = {
            "job_id": query.get("id", ""),
            "phase": "running",
            "enclave": {"id": "e1", "state": "running", "endpoints": {"logs": logs}},
            "restarts": 0,
        }
        return 200, "application/json", json.dumps(answer).encode()

    provider.routes.update(
        {
            "/job": job,
            "/logs": lambda q: (200, "text/event-stream", _console(provider.stop)),
            "/slow/spec": lambda q: (200, "application/json", _trickle(provider.stop)),
            "/slow/job": lambda q: (200, "application/json", _trickle(provider.stop)),
        }
    )
    devnet = Devnet()
    accounts = devnet.accounts
    deployment = deploy_contracts(
        devnet.web3(), accounts[0].address, rate_lock_s=5, fund=[accounts[0].address]
    )
    evil = accounts[8]
    MarketClient(devnet.web3(), deployment.market, account=evil.local_account).add_provider(
        provider.url
    )
    # Another provider (anyone may register one) answers its offer a byte at a time.
    MarketClient(devnet.web3(), deployment.market, account=accounts[2].local_account).add_provider(
        f"{provider.url}/slow"
    )
    metadata = JobMetadata(
        instance="dev.small", region="local", memory=256, vcpu=1, url="http://x/y", debug=True
    ).to_json()
    own = MarketClient(devnet.web3(), deployment.market, account=accounts[0].local_account)
    job_id = own.open_job(metadata, evil.address, CARD.min_rate, 10**6)
    number = job_index(job_id)
    # A second job whose provider names the dashboard's own stream of it as its console.
    loop_id = own.open_job(metadata, evil.address, CARD.min_rate, 10**6)
    # Jobs at the provider that trickles: more than it can be asked about within a page's time.
    for _ in range(SLOW_JOBS):
        own.open_job(metadata, accounts[2].address, CARD.min_rate, 10**6)
    # Anyone may deposit to any job, nothing included: each is an event of the job's history.
    stranger = MarketClient(devnet.web3(), deployment.market, account=accounts[1].local_account)
    for _ in range(SPAM):
        stranger.deposit(job_id, 0)
    home = ReefHome(tmp_path_factory.mktemp("hostile-pages"))
    key = home.root / "owner.key"
    key.write_text(accounts[0].private_key.hex())
    try:
        with serve_devnet_in_thread(devnet) as rpc:
            where = {"home": home, "rpc": rpc.url, "market": deployment.market, "key": key}
            local = Dashboard(DashboardSettings(**where, max_log_streams=4))
            public = Dashboard(DashboardSettings(**where, host="0.0.0.0", max_log_streams=16))
            try:
                with (
                    serve_in_thread(dashboard_app(local)) as url,
                    serve_in_thread(dashboard_app(public), host="0.0.0.0") as public_url,
                ):
                    loop = job_index(loop_id)
                    consoles[str(loop_id).lower()] = f"{url}/api/jobs/{loop}/logs"
                    yield Net(
                        url, public_url, rpc.url, deployment.market, key, number, loop, provider
                    )
            finally:
                local.close()
                public.close()
    finally:
        provider.close()


@pytest.mark.slow
def test_a_strangers_empty_deposits_do_not_swamp_a_jobs_history(net: Net) -> None:
    """Anyone may deposit to any job, 0 rUSD included, for the gas alone: each deposit was a
    row of the job page's history, so a stranger could grow the owner's page (and what each
    visit costs the dashboard to render) without end. The latest events are shown, with how
    many earlier ones are not."""
    from reef.web._app import MAX_HISTORY_SHOWN

    page = httpx.get(f"{net.url}/jobs/{net.job}", timeout=60)
    assert page.status_code == 200
    assert page.text.count("<td>JobDeposited</td>") == MAX_HISTORY_SHOWN - 1
    assert f"{SPAM + 1 - MAX_HISTORY_SHOWN} earlier events are not shown" in page.text
    assert "<td>JobOpened</td>" in page.text  # the job's opening is always shown


def _stream(stack: contextlib.ExitStack, http: httpx.Client, url: str) -> httpx.Response:
    """A live log stream opened and held (until ``stack`` closes), its first event read."""
    response = stack.enter_context(http.stream("GET", url))
    if response.status_code == 200:
        # The iterator is kept: dropping it mid-stream would close the connection.
        lines = response.iter_lines()
        stack.callback(lines.close)
        assert next(lines) == "data: hello"
    else:
        response.read()
    return response


@pytest.mark.slow
def test_live_log_streams_are_bounded_in_all_and_per_visitor(net: Net) -> None:
    """Each live log stream holds a connection to the enclave's console for as long as its
    visitor likes: a visitor opening thousands of them took as many sockets (and file
    descriptors) from the dashboard, and from the enclave's console."""
    timeout = httpx.Timeout(10, read=60)
    path = f"/api/jobs/{net.job}/logs"
    with contextlib.ExitStack() as stack, httpx.Client(timeout=timeout) as http:
        held = [_stream(stack, http, f"{net.url}{path}") for _ in range(4)]
        assert [r.status_code for r in held] == [200] * 4
        refused = _stream(stack, http, f"{net.url}{path}")
        assert refused.status_code == 503
        assert "log streams are open" in refused.json()["error"]
        assert refused.json()["hint"]
        assert httpx.get(f"{net.url}/api/overview", timeout=timeout).status_code == 200
        held[0].close()
        time.sleep(0.5)  # the server notices the visitor left
        assert _stream(stack, http, f"{net.url}{path}").status_code == 200

    address = _own_address()
    if address is None:
        pytest.skip("this machine has no address but loopback to visit from elsewhere")
    port = _port(net.public_url)
    with contextlib.ExitStack() as stack, httpx.Client(timeout=timeout) as http:
        outside = f"http://{address}:{port}{path}"
        held = [_stream(stack, http, outside) for _ in range(2)]
        assert [r.status_code for r in held] == [200, 200]
        refused = _stream(stack, http, outside)
        assert refused.status_code == 429
        assert "as many as one visitor may" in refused.json()["error"]
        # Others (here: the machine's own user) are still served.
        assert _stream(stack, http, f"http://127.0.0.1:{port}{path}").status_code == 200


@pytest.mark.slow
def test_a_visitor_asking_slow_pages_at_once_does_not_hold_the_dashboard(net: Net) -> None:
    """A provider that trickles its offer holds ``/providers`` for its client's deadline (6 s).
    A visitor asking it a dozen times at once took every worker thread the pages share (six on
    two cores: asyncio's default pool), and every other page waited behind them. A visitor not
    on loopback may have a few requests under way at once; the pages run on a pool of the
    dashboard's own, so the others are served meanwhile."""
    from reef.web._app import MAX_BUSY_PER_VISITOR

    address = _own_address()
    if address is None:
        pytest.skip("this machine has no address but loopback to visit from elsewhere")
    port = _port(net.public_url)
    finished: list[str] = []
    lock = threading.Lock()

    def visit(url: str, what: str) -> int:
        status = httpx.get(url, timeout=httpx.Timeout(10, read=120)).status_code
        with lock:
            finished.append(f"{what} {status}")
        return status

    asked = MAX_BUSY_PER_VISITOR + 4
    with concurrent.futures.ThreadPoolExecutor(asked) as pool:
        slow = [
            pool.submit(visit, f"http://{address}:{port}/providers", "providers")
            for _ in range(asked)
        ]
        time.sleep(1.5)  # all of them are under way (or refused) by now
        quick = visit(f"http://127.0.0.1:{port}/api/overview", "overview")
        assert quick == 200
        with lock:
            assert "providers 200" not in finished, finished  # served while they were held
        statuses = sorted(f.result() for f in slow)
    assert statuses == [200] * MAX_BUSY_PER_VISITOR + [429] * 4, statuses


@pytest.mark.slow
def test_a_console_that_is_the_dashboard_itself_is_not_relayed_round_and_round(net: Net) -> None:
    """A provider names as a debug job's console the dashboard's own stream of that job
    (``http://127.0.0.1:8888/...``: the dashboard's default port, on its own host). Each relay
    opened another to itself, without end: sockets and threads until the serving floor's cap
    of connections per peer, which then refused the machine's own users too."""
    lines: list[str] = []
    timeout = httpx.Timeout(10, read=30)
    with httpx.stream("GET", f"{net.url}/api/jobs/{net.loop_job}/logs", timeout=timeout) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]  # the stream ends, by itself
    assert lines[0] == "event: error"
    assert "relays this dashboard" in lines[1], lines
    # Nothing is left held: every slot (4) is free again.
    with contextlib.ExitStack() as stack, httpx.Client(timeout=timeout) as http:
        held = [_stream(stack, http, f"{net.url}/api/jobs/{net.job}/logs") for _ in range(4)]
        assert [r.status_code for r in held] == [200] * 4


@pytest.mark.slow
def test_jobs_at_a_provider_that_trickles_do_not_hold_a_page_past_its_deadline(net: Net) -> None:
    """The providers' offers were asked with a deadline per page (a late one is shown as not
    answering), but not the jobs' states: 40 jobs at a provider that trickles its answers held
    every page that lists jobs (and every /metrics scrape) for 3 rounds of 16, 6 s each, and a
    few more jobs for as long as the provider liked."""
    from reef.web._data import PAGE_DEADLINE_S

    page = httpx.get(f"{net.url}/jobs", timeout=httpx.Timeout(10, read=120))
    assert page.status_code == 200
    late = page.text.count(f"did not answer within {PAGE_DEADLINE_S:g} s")
    assert 0 < late <= SLOW_JOBS, late
    assert page.text.count('<a href="/jobs/') == SLOW_JOBS + 2  # every job, all the same


def _own_address() -> str | None:
    """This machine's address on its default route, if it is not loopback (no packet is sent:
    a UDP socket's connect only picks the route)."""
    from reef.web import is_loopback

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if is_loopback(address) else address


# -- alert webhooks and /metrics URLs that answer like strangers --------------------------------

NOTICE = Notice("money", "job 1", "firing", "job 1 runs out of money in 60 s", 1.0)


_TEXT_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"


def _hook(url: str) -> AlertRule:
    return AlertRule(name="money", condition="balance_runs_out", destination="webhook", url=url)


def _within(seconds: float, call: Any) -> Any:
    """``call()`` in a thread, failing the test if it has not returned after ``seconds`` (it is
    the client's own bound that must end it, long before); what it raised is raised here."""
    out = ends(call, seconds)
    if isinstance(out, BaseException):
        raise out
    return out


@pytest.mark.parametrize("declared", [True, False])
def test_a_webhook_or_metrics_url_answering_a_gigabyte_is_not_read(
    declared: bool, serve_in_thread: Any, network_home: Any, tmp_path: Path
) -> None:

    sent = Sent()
    with raw_server_in_thread(gigabyte(sent, declared=declared, head=_TEXT_HEAD)) as url:
        with pytest.raises(ServiceError, match="larger than any honest answer"):
            _within(30, lambda: send_notice(NOTICE, _hook(url)))
        with pytest.raises(ServiceError, match="larger than any honest answer"):
            _within(30, lambda: read_samples(url))
        # The verifier network.json names is read for the verifier page the same way.
        home = network_home(tmp_path, verifier=url)
        with serve_in_thread(dashboard_app(Dashboard(DashboardSettings(home=home)))) as dash:
            page = httpx.get(f"{dash}/verifier", timeout=60)
        assert page.status_code == 200
        assert "larger than any honest answer" in page.text
    assert sent.bytes < SENT_AT_MOST


@pytest.mark.slow
def test_a_webhook_or_metrics_url_trickling_its_head_is_given_up_on() -> None:
    with raw_server_in_thread(drip()) as url:
        with pytest.raises(ServiceError, match=r"did not answer within 5 s"):
            _within(30, lambda: send_notice(NOTICE, _hook(url)))
        with pytest.raises(ServiceError, match=r"did not answer within 5 s"):
            _within(30, lambda: read_samples(url))


def test_a_webhook_that_redirects_is_not_followed_nor_taken_for_delivered(stranger: Any) -> None:
    """A notice answered 307 was taken as delivered (only 4xx and 5xx were failures): the
    alert was lost without a word. A redirect is not followed (the notice would go where the
    webhook's server says, a loopback service say), and the rule's owner is told to fix the URL."""
    stranger.routes["/elsewhere"] = lambda q: (200, "text/plain", b"ok")

    async def redirect(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 307 Temporary Redirect\r\n"
            + f"location: {stranger.url}/elsewhere\r\n".encode()
            + b"content-length: 0\r\n\r\n"
        )
        await writer.drain()

    with raw_server_in_thread(redirect) as url:
        with pytest.raises(ServiceError, match="redirect") as caught:
            _within(30, lambda: send_notice(NOTICE, _hook(url)))
        assert f"{stranger.url}/elsewhere" in caught.value.message
        assert caught.value.hint
    assert stranger.hits.get("/elsewhere", 0) == 0


def test_a_metrics_urls_labels_cannot_write_to_the_operators_terminal(
    stranger: Any, tmp_path: Path
) -> None:
    """``reef alerts --metrics URL`` reads a server it may not control (a provider's, say), and
    a rule's message quotes its labels: one carrying terminal escapes retitled the operator's
    window and cleared the screen, or hid what fired, when printed."""
    from typer.testing import CliRunner

    from reef.cli import app

    escapes = "\x1b]0;pwned\x07\x1b[2J\u202e"
    stranger.routes["/metrics"] = lambda q: (
        200,
        "text/plain; version=0.0.4",
        f'reef_queue_depth{{queue="jobs{escapes}"}} 50\n'.encode(),
    )
    rules = tmp_path / "alerts.toml"
    rules.write_text(
        '[[rule]]\nname = "queue"\ncondition = "threshold"\nmetric = "reef_queue_depth"\n'
        'op = ">"\nvalue = 10\n'
    )
    flags = ["--metrics", f"{stranger.url}/metrics"]
    for command in (["check"], ["run", "--once"]):
        done = CliRunner().invoke(app, ["alerts", *command, str(rules), *flags])
        assert "reef_queue_depth" in done.output, (command, done.output)
        assert "jobs" in done.output
        for char in ("\x1b", "\x07", "\u202e"):
            assert char not in done.output, (command, done.output)


# -- a key type that is a path ------------------------------------------------------------------


def test_a_key_type_that_is_no_key_type_is_refused_before_the_kms_is_asked(
    serve_in_thread: Any, network_home: Any, tmp_path: Path
) -> None:
    """``/kms?type=`` went into the KMS's URL path unchecked (``/derive/{type}/public``): a
    visitor could have the dashboard ask the KMS for another of its routes, and an answer to an
    unknown type was a KeyError (a 500). The KMS here is a server that counts who reaches it."""
    asked = Sent()

    async def count(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked.bytes += 1
        writer.write(b"HTTP/1.1 500 no\r\ncontent-length: 0\r\n\r\n")

    with raw_server_in_thread(count) as kms:
        home = network_home(tmp_path, kms={"public": kms})
        with serve_in_thread(dashboard_app(Dashboard(DashboardSettings(home=home)))) as dash:
            query = {"image_id": "00" * 32, "path": "p", "type": "../../admin/rotate?x="}
            page = httpx.get(f"{dash}/kms", params=query, timeout=60)
    assert page.status_code == 200
    assert "no key type" in page.text
    assert "secp256k1, ed25519, x25519" in page.text
    assert asked.bytes == 0
