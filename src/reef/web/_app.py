"""The dashboard's ASGI app: server-rendered pages, a JSON API, live logs, management.

Read-only pages and ``GET /api/...`` need nothing; every state-changing request
(``POST /api/jobs/...``, ``POST /api/deploy``) needs the token in the ``x-reef-token`` header,
is refused unless the dashboard listens on loopback, and is answered 401/403 before anything is
read from its body. ``POST /api/attestation/verify`` changes nothing and needs no token.

Chain and control-plane reads are synchronous (web3.py), so each page runs them in a worker
thread of the dashboard's own pool; a page whose data cannot be read says why instead of
failing. Visitors are strangers: one not on loopback may have :data:`MAX_BUSY_PER_VISITOR`
requests under way at once, live log streams are bounded in all and per visitor
(:class:`_LogStreams`), and the dashboard fetches a URL a visitor names only for the machine's
own users calling it by a loopback name (:func:`_no_fetch_for`).

The JSON API (``/api/...``) is described at ``/openapi.json`` and ``/docs`` (the pages are not):
its handlers read their requests themselves (the token is checked before the body is read), so
the pydantic models below describe what they take and answer without parsing it for them.

One module (about 1 400 lines): the dashboard's routes, page by page, sharing the page frame,
the session and the token check; the data, management actions, HTML helpers, metrics and
alerts live in their own modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    Response,
    StreamingResponse,
)

from reef._api import api_app, path_param
from reef._fetch import FetchError, read_bounded, request_to, stream_bounded
from reef._serve import foreign_subrequest
from reef.encoding import MAX_JSON_DEPTH, json_depth, terminal_text
from reef.errors import InputError, ReefError, ServiceError
from reef.web import _data, _manage
from reef.web._attest import known_roots, parse_evidence, server_verdict
from reef.web._dashboard import TOKEN_HEADER, Dashboard, is_loopback
from reef.web._html import amount, badge, dl, esc, page, short, table, when

if TYPE_CHECKING:
    from reef.chain import Job, JobId, MarketClient
    from reef.node import Session

__all__ = ["dashboard_app"]

STATIC = Path(__file__).with_name("static")
_STATIC_FILES = {
    "nitro.js": "text/javascript",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}
_T = TypeVar("_T")


def _error_box(exc: ReefError) -> str:
    hint = f"<br><span class='muted'>hint: {esc(exc.hint)}</span>" if exc.hint else ""
    return f'<section class="bad" role="alert">{esc(exc.message)}{hint}</section>'


def public_services(services: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``network.json``'s services as pages may show them: without the dashboard itself and
    without anything that carries a token (its ``manage_url``): read-only visitors must never
    see the management token."""

    def secret(key: str, value: Any) -> bool:
        return "token" in key.lower() or "token=" in str(value)

    return {
        name: {k: v for k, v in entry.items() if not secret(k, v)}
        for name, entry in services.items()
        if name != "dashboard"
    }


def _rows_of_services(services: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    return [(f"/services/{name}", name.capitalize()) for name in sorted(public_services(services))]


def _state_badge(state: str) -> str:
    kind = "ok" if state == "running" else "bad" if state.startswith("ended") else "warn"
    return badge(state, kind)


def _job_row(row: _data.JobRow) -> dict[str, Any]:
    return {
        "job": f'<a href="/jobs/{row.number}">{row.number}</a>',
        "state": _state_badge(row.state),
        "rate/h": amount(row.rate_per_hour),
        "balance": amount(row.balance),
        "time left": "—" if row.time_left_s is None else f"{row.time_left_s // 60} min",
        "enclave": short(row.enclave_id, 8) if row.enclave_id else "",
        "endpoint": _link(row.endpoint),
        "image": short(str(row.metadata.get("url", "")), 12),
        "debug": "yes" if row.debug else "",
        "last error": esc(row.last_error),
    }


def _link(url: str) -> str:
    """``url`` as a link when it is an http(s) URL, else as text: a provider (any stranger may
    register one) names the endpoints, and a ``javascript:`` link would run on a click wherever
    the Content-Security-Policy is not enforced."""
    if not url.lower().startswith(("http://", "https://")):
        return f'<span class="mono">{esc(url)}</span>'
    return f'<a class="mono" href="{esc(url)}">{esc(url)}</a>'


_CSP = (
    "default-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _hardened(response: Response, path: str) -> Response:
    """``response`` with the headers every answer of the dashboard carries, refusals included.

    Scripts only from the dashboard itself (no inline script runs; the page data is JSON),
    never framed (no clickjacking of the stop button), no Referer (a page opened with ?token=
    must not hand the token to the endpoints it links to), no sniffing, and nothing kept by a
    cache but the static scripts: pages and answers carry balances, jobs and the account, and a
    kept copy shows stale money on Back and stays on disk for the machine's next user.
    """
    response.headers.setdefault("content-security-policy", _CSP)
    response.headers.setdefault("x-frame-options", "DENY")
    response.headers.setdefault("referrer-policy", "no-referrer")
    response.headers.setdefault("x-content-type-options", "nosniff")
    if not path.startswith("/static/"):
        response.headers.setdefault("cache-control", "no-store")
    return response


def _cross_site(request: Request) -> str | None:
    """Why a request that is not a GET comes from another site's page, or ``None``.

    Browsers name the page that sends a request in ``Origin`` (every POST carries it), and a
    page elsewhere can POST to a loopback dashboard without asking (a "simple" request of
    ``text/plain``): it cannot read the answer, but the dashboard would still act on it (fetch an
    endpoint it names, parse its body). Requests without ``Origin`` come from programs
    (curl, httpx), which are not a visitor's browser acting for another site.
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    origin = request.headers.get("origin")
    if origin is None:
        return None
    host = request.headers.get("host", "")
    if origin.lower() in (f"http://{host}".lower(), f"https://{host}".lower()):
        return None
    return f"a request from another site's page ({origin[:100]}) is refused"


def _host_name(request: Request) -> str:
    """The request's Host header without its port (``[::1]:8888`` -> ``::1``)."""
    host = request.headers.get("host", "")
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _no_fetch_for(request: Request) -> str | None:
    """Why the dashboard must not fetch a URL for ``request``'s visitor, or ``None``.

    Only the machine's own users may have it fetch (the answer is handed back, so the dashboard
    would otherwise read any URL its host reaches for whoever asks), and only when they name the
    dashboard by a loopback address: a page of another site whose DNS name was rebound to
    127.0.0.1 also comes from loopback, and names itself as its Origin (so the same-origin check
    lets it through), but it can only ever call the dashboard by its own name.
    """
    if not is_loopback(request.client.host if request.client else ""):
        return "only loopback visitors may have the dashboard fetch an endpoint"
    host = _host_name(request)
    if not is_loopback(host):
        return (
            f"the dashboard fetches an endpoint only for a loopback visitor who names it by a "
            f"loopback address, not {host[:100]!r} (a page of another site can rebind its name "
            f"to 127.0.0.1)"
        )
    return None


MAX_AT_S = 253_402_300_799
"""The latest instant a verification may be asked at: 9999-12-31T23:59:59Z (later ones have no
date to name them, and no certificate is valid then)."""


def _unix_seconds(text: str) -> int | None:
    """``text`` as unix seconds in ``0..MAX_AT_S``, else ``None`` (``str.isdigit`` also takes
    superscripts and other scripts' digits, which ``int`` refuses)."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_AT_S)):
        return None
    value = int(text)
    return value if value <= MAX_AT_S else None


def _value_html(value: Any) -> str:
    """A value an extension reported, as HTML: URLs as links, tables as nested lists."""
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return f'<a class="mono" href="{esc(value)}">{esc(value)}</a>'
    if isinstance(value, Mapping):
        return dl({str(k): _value_html(v) for k, v in value.items()}, raw=map(str, value))
    if isinstance(value, list | tuple):
        return "<br>".join(_value_html(v) for v in value)
    return (
        f'<span class="mono">{esc(value if isinstance(value, str) else json.dumps(value))}</span>'
    )


_JOB_COLUMNS = ["job", "state", "rate/h", "balance", "time left", "enclave", "endpoint", "image"]


def dashboard_app(dash: Dashboard) -> FastAPI:
    """The dashboard for ``dash`` (see the module docstring). ``/metrics`` comes from the
    serving floor, with the network's own gauges (:func:`reef.web.network_collector`)."""
    from reef.web._metrics import enclave_usage, network_collector

    app = api_app(
        "reef dashboard",
        description="Pages, attestation verification and management of a reef network.",
    )
    app.reef_collectors = (network_collector(dash),)  # type: ignore[attr-defined]

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        return _hardened(await guarded_call(request, call_next), request.url.path)

    async def guarded_call(request: Request, call_next: Any) -> Response:
        """``request`` answered, unless it is refused first (a rebound name, another site's
        page, a visitor from elsewhere with too many requests under way)."""
        if is_loopback(dash.settings.host) and not is_loopback(_host_name(request)):
            # A loopback dashboard is only ever reached by a loopback name: another Host is a
            # page elsewhere that rebound its DNS name to 127.0.0.1 to read this one.
            return JSONResponse(
                {
                    "error": f"this dashboard answers only loopback hosts, not {_host_name(request)!r}"
                },
                403,
            )
        cross = _cross_site(request) or foreign_subrequest(request.headers)
        if cross is not None:
            return JSONResponse(
                {"error": cross, "hint": "use the dashboard's own pages, or a program (no Origin)"},
                403,
            )
        visitor = request.client.host if request.client else ""
        if is_loopback(visitor):
            response: Response = await call_next(request)
        else:
            # A page may wait seconds for strangers (providers that trickle), in a thread: a
            # visitor from elsewhere asking many at once would hold them all.
            held = busy.get(visitor, 0)
            if held >= MAX_BUSY_PER_VISITOR:
                return JSONResponse(
                    {
                        "error": f"you have {held} requests under way, as many as one visitor may",
                        "hint": "wait for them to be answered before asking more",
                    },
                    429,
                )
            busy[visitor] = held + 1
            try:
                response = await call_next(request)
            finally:
                left = busy[visitor] - 1
                if left:
                    busy[visitor] = left
                else:
                    del busy[visitor]
        return response

    log_streams = _LogStreams(dash.settings.max_log_streams)

    # The pages' chain reads and provider asks run on threads of the dashboard's own: asyncio's
    # default pool has os.cpu_count() + 4 of them (six on two cores), shared with the serving
    # floor's /metrics, and a few slow pages held all of them. Idle threads cost nothing.
    pool = ThreadPoolExecutor(PAGE_THREADS, thread_name_prefix="dashboard-page")
    busy: dict[str, int] = {}
    """Requests under way by visitor address (only visitors not on loopback are counted)."""

    async def off_thread(fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(pool, partial(fn, *args))

    def nav() -> list[tuple[str, str]]:
        info = dash.network()
        return _rows_of_services(info.services) if info else []

    def render(title: str, body: str, active: str, **kw: Any) -> HTMLResponse:
        data = {"manage": dash.manage_enabled, **kw.pop("data", {})}
        return HTMLResponse(page(title, body, active=active, extra_nav=nav(), data=data, **kw))

    async def guarded(fn: Callable[[], Awaitable[str]]) -> str:
        try:
            return await fn()
        except ReefError as exc:
            return _error_box(exc)

    # ------------------------------------------------------------------ pages

    async def my_jobs() -> tuple[Session, MarketClient, list[Job]]:
        """The dashboard's session, its market client and its open jobs (:func:`_data.open_jobs`)."""
        session = await off_thread(dash.session)
        client = session.market()
        return session, client, await off_thread(_data.open_jobs, session, client)

    async def overview(_request: Request) -> Response:
        async def body() -> str:
            session, client, jobs = await my_jobs()
            summary = await off_thread(_data.chain_summary, session)
            provs = await off_thread(_data.providers, session, client)
            now = await off_thread(session.now)
            from reef.node import jobs_totals

            balance, spend_per_hour = jobs_totals(jobs, now)
            chain = dl(
                {
                    "JSON-RPC": summary["rpc_url"],
                    "chain id": summary["chain_id"],
                    "block": summary["block"],
                    "market": short(summary["market"], 12),
                    "token": short(summary["token"], 12),
                    "jobs ever opened": summary["job_count"],
                    "rate lock": f"{summary['rate_lock_s']} s",
                },
                raw=("market", "token"),
            )
            account = dl(
                {
                    "address": summary["account"] or "none (read-only)",
                    "rUSD": amount(summary["token_balance"]),
                    "ETH (wei)": summary["eth_balance"] or 0,
                    "open jobs": len(jobs),
                    "in jobs": amount(balance),
                    "spend per hour": amount(spend_per_hour),
                }
            )
            info = dash.network()
            services: dict[str, object] = {}
            if info is not None:
                services = {
                    "control plane": info.control_plane,
                    "image store": info.image_store,
                    "verifier": info.verifier or "",
                    **{f"KMS {k}": v for k, v in info.kms.items()},
                    **{
                        f"{name}": ", ".join(f"{k}={v}" for k, v in entry.items())
                        for name, entry in public_services(info.services).items()
                    },
                }
            prov_rows = [
                {
                    "provider": short(p.address, 10),
                    "control plane": p.control_plane,
                    "status": badge("up", "ok") if p.reachable else badge("down", "bad"),
                }
                for p in provs
            ]
            return (
                '<div class="grid">'
                f'<section id="chain"><h2>Chain</h2>{chain}</section>'
                f'<section id="account"><h2>My account</h2>{account}</section>'
                f'<section id="services"><h2>Services</h2>'
                f"{dl(services) if services else '<p class=muted>no network.json</p>'}</section>"
                "</div>"
                f"<section><h2>Providers</h2>{table(prov_rows, ['provider', 'control plane', 'status'], raw=('provider', 'status'), empty='no provider registered')}</section>"
                f"<section><h2>My jobs</h2>{table([_job_row(row) for row in await off_thread(_data.describe_jobs, session, client, jobs)], _JOB_COLUMNS, raw=('job', 'state', 'enclave', 'endpoint', 'image'), empty='no open jobs')}</section>"
            )

        return render("Overview", await guarded(body), "/")

    async def jobs_page(_request: Request) -> Response:
        async def body() -> str:
            session, client, jobs = await my_jobs()
            described = await off_thread(_data.describe_jobs, session, client, jobs)
            rows = [_job_row(row) for row in described]
            deploy = (
                '<section id="deploy"><h2>Deploy</h2>'
                '<form class="inline manage" data-action="/api/deploy">'
                '<input name="image" placeholder="image directory or file" required size="28">'
                '<input name="duration" value="1h" size="5" aria-label="duration">'
                '<label><input type="checkbox" name="debug"> debug</label>'
                "<button>Deploy</button></form>"
                '<p class="result muted"></p></section>'
            )
            whose = f"of {session.address}" if session.account is not None else "(all owners)"
            return (
                f"<section><h2>Open jobs {esc(whose)}</h2>"
                f"{table(rows, [*_JOB_COLUMNS, 'debug', 'last error'], raw=('job', 'state', 'enclave', 'endpoint', 'image', 'last error'), empty='no open jobs')}"
                f"</section>{deploy}"
            )

        return render("Jobs", await guarded(body), "/jobs")

    async def open_job(text: str) -> tuple[Session, MarketClient, _data.JobRow]:
        """The session, its market client and the row of the open job ``text`` names.

        Raises:
            InputError: ``text`` names no job.
            MarketError: the job is not open (:func:`reef.node.find_open_job`).
        """
        from reef.chain import parse_job_id
        from reef.node import find_open_job

        job_id = parse_job_id(text, name="job")
        session = await off_thread(dash.session)
        client = session.market()
        found = await off_thread(find_open_job, session, client, job_id)
        row = await off_thread(_data.describe_job, session, client, found)
        return session, client, row

    async def job_page(request: Request) -> Response:
        text = request.path_params["job"]

        async def body() -> str:
            session, client, row = await open_job(text)
            history, hidden = _latest(
                await off_thread(_data.job_history, session, client, row.job_id)
            )
            details = dl(
                {
                    "job": row.number,
                    "job id": row.job_id,
                    "owner": row.owner,
                    "provider": row.provider,
                    "state": _state_badge(row.state),
                    "rate per hour": amount(row.rate_per_hour),
                    "balance": amount(row.balance),
                    "paid until": when(row.paid_until),
                    "enclave stops by": when(row.stops_at),
                    "time left": "—" if row.time_left_s is None else f"{row.time_left_s} s",
                    "enclave": row.enclave_id,
                    "endpoint": row.endpoint,
                    "image": row.metadata.get("url", ""),
                    "image id": '<span id="image-id" class="mono muted">…</span>',
                    "instance": row.metadata.get("instance", ""),
                    "debug": "yes" if row.debug else "no",
                    "restarts": row.restarts,
                    "provider's last error": row.last_error or "none",
                },
                raw=("state", "image id"),
            )
            events = table(
                [
                    {
                        "event": e["event"],
                        "block": e["block"],
                        "fields": ", ".join(f"{k}={v}" for k, v in e["fields"].items()),
                    }
                    for e in history
                ],
                ["event", "block", "fields"],
                empty="no events",
            )
            if hidden:
                events += (
                    f'<p class="muted">{hidden} earlier events are not shown (anyone may deposit '
                    "to a job, so its history may be long); the chain has them all</p>"
                )
            manage = (
                '<section id="manage"><h2>Manage</h2>'
                f'<form class="inline manage" data-action="/api/jobs/{row.number}/deposit">'
                '<input name="amount" placeholder="rUSD" size="8" required>'
                "<button>Deposit</button></form>"
                f'<form class="inline manage" data-action="/api/jobs/{row.number}/withdraw">'
                '<input name="amount" placeholder="rUSD (empty: max)" size="14">'
                "<button>Withdraw</button></form>"
                f'<form class="inline manage" data-action="/api/jobs/{row.number}/update">'
                '<input name="url" placeholder="new image URL" size="28">'
                '<select name="debug"><option value="">debug unchanged</option>'
                '<option value="true">debug on</option><option value="false">debug off</option>'
                "</select><button>Update</button></form>"
                f'<form class="inline manage" data-action="/api/jobs/{row.number}/stop">'
                '<button class="danger" id="stop">Stop enclave</button></form>'
                '<p class="result muted"></p></section>'
            )
            logs = (
                f'<section><h2>Logs</h2><pre class="logs" id="logs" '
                f'data-src="/api/jobs/{row.number}/logs"></pre></section>'
                if row.debug and row.logs_url
                else '<section><h2>Logs</h2><p class="muted">only debug enclaves have a readable '
                "console</p></section>"
            )
            # What the job's enclave attests as user data when a reef provider runs it: the page
            # compares, so another enclave of the same image is not shown as this job's.
            from reef.market import job_user_data

            chain_id = await off_thread(lambda: int(client.w3.eth.chain_id))
            bound = job_user_data(chain_id, client.address, row.job_id)
            attest = (
                f'<span id="attestation-source" data-endpoint="{esc(row.attestation_url)}" '
                f'data-bound="{bound.hex()}"></span>'
            )
            return (
                f'<section id="job" data-job="{row.number}" data-state="{esc(row.state)}">'
                f"{details}{attest}</section>{manage}{logs}"
                f"<section><h2>History</h2>{events}</section>"
            )

        return render(f"Job {text}", await guarded(body), "/jobs")

    async def enclaves_page(_request: Request) -> Response:
        async def body() -> str:
            session, client, jobs = await my_jobs()
            # Local enclaves' cgroups are named after the enclave id (reef-<id>).
            usage = {u.name: u for u in await off_thread(enclave_usage)}
            rows = []
            for row in await off_thread(_data.describe_jobs, session, client, jobs):
                used = usage.get(row.enclave_id)
                rows.append(
                    {
                        "enclave": short(row.enclave_id, 8) if row.enclave_id else "—",
                        "job": f'<a href="/jobs/{row.number}">{row.number}</a>',
                        "state": _state_badge(row.state),
                        "memory": (
                            f"{used.memory_bytes / 2**20:.1f} MiB"
                            if used and used.memory_bytes is not None
                            else ""
                        ),
                        "CPU": (
                            f"{used.cpu_seconds:.1f} s"
                            if used and used.cpu_seconds is not None
                            else ""
                        ),
                        "restarts": row.restarts,
                        "endpoint": esc(row.endpoint),
                        "logs": f'<a href="/jobs/{row.number}#logs">live logs</a>'
                        if row.debug
                        else "private",
                        "actions": (
                            f'<form class="inline manage" data-action="/api/jobs/{row.number}/stop">'
                            '<button class="danger">Stop</button></form>'
                        ),
                    }
                )
            return (
                "<section>"
                + table(
                    rows,
                    [
                        "enclave",
                        "job",
                        "state",
                        "memory",
                        "CPU",
                        "restarts",
                        "endpoint",
                        "logs",
                        "actions",
                    ],
                    raw=("enclave", "job", "state", "endpoint", "logs", "actions"),
                    empty="no enclaves",
                )
                + '<p class="result muted"></p><p class="muted">Memory and CPU time from each '
                "local enclave's cgroup, now; over time: <a href='/metrics'>/metrics</a> "
                "(<code>reef_enclave_*</code>) and the Grafana dashboard.</p></section>"
            )

        return render("Enclaves", await guarded(body), "/enclaves")

    async def providers_page(_request: Request) -> Response:
        async def body() -> str:
            session = await off_thread(dash.session)
            provs = await off_thread(_data.providers, session, session.market())
            parts = []
            for p in provs:
                cards = table(
                    [
                        {**i, "min_rate_per_hour": amount(int(i["min_rate_per_hour"]))}
                        for i in p.instances
                    ],
                    ["region", "instance", "vcpu", "memory", "min_rate_per_hour"],
                    empty=p.error or "no instances offered",
                )
                status = badge("up", "ok") if p.reachable else badge("unreachable", "bad")
                parts.append(
                    f"<section><h2>{short(p.address, 10)} {status}</h2>"
                    f"{dl({'control plane': p.control_plane})}{cards}</section>"
                )
            return "".join(parts) or '<p class="muted">no provider registered</p>'

        return render("Providers", await guarded(body), "/providers")

    async def verifier_page(_request: Request) -> Response:
        info = dash.network()
        url = info.verifier if info else None
        facts: dict[str, object] = {"verifier": url or "none in network.json"}
        if url:
            facts.update(await _verifier_counts(url))
        body = (
            f'<section id="verifier">{dl(facts, raw=("status",))}'
            "<p>The verifier signs an EIP-712 statement for each document it accepts "
            "(<code>POST /verify/raw</code>, <code>/verify/hex</code>); the counts come from its "
            "<code>/metrics</code>. Paste a document on the "
            "<a href='/attestation'>attestation page</a> to see both verdicts.</p></section>"
        )
        return render("Verifier", body, "/verifier")

    async def kms_page(request: Request) -> Response:
        async def body() -> str:
            info = dash.network()
            public = (info.kms.get("public") if info else None) or ""
            if not public:
                return '<p class="muted">no KMS root in network.json</p>'
            from reef.attestation import TrustedRoot
            from reef.kms import KEY_TYPES, KmsPublicClient, fetch_identity

            kind = request.query_params.get("type", "secp256k1")
            if kind not in KEY_TYPES:
                # Pasted into the KMS's URL path, where it could name another of its routes.
                raise InputError(
                    f"no key type {kind[:40]!r}",
                    hint=f"choose one of {', '.join(KEY_TYPES)}",
                )
            root = dash.dev_root() or TrustedRoot.aws()
            identity = await fetch_identity(public, root=root)
            out = dl(
                {
                    **dict(info.kms if info else {}),
                    "current version": identity.current_version,
                    "versions": ", ".join(str(i.version) for i in identity.identities),
                    "root image id": identity.attestation.image_id.hex(),
                    "rotation admin": identity.rotation_admin,
                }
            )
            image = request.query_params.get("image_id", "")
            path = request.query_params.get("path", "")
            derived = ""
            if image and path:
                from reef.encoding import parse_hex

                client = KmsPublicClient(public, signing_key=identity.signing_keys)
                key = await client.public_key(
                    kind,
                    path,
                    image_id=parse_hex(image, name="image id", length=32),
                )
                derived = f'<p>public key: <code id="kms-key">{esc(key.hex())}</code></p>'
            form = (
                '<form class="inline" method="get">'
                f'<input name="image_id" placeholder="image id (hex)" size="30" value="{esc(image)}">'
                f'<input name="path" placeholder="path" size="10" value="{esc(path)}">'
                '<select name="type"><option>secp256k1</option><option>ed25519</option>'
                "<option>x25519</option></select><button>Public key</button></form>"
            )
            return f"<section>{out}</section><section><h2>Keys of an image</h2>{form}{derived}</section>"

        return render("KMS", await guarded(body), "/kms")

    async def attestation_page(_request: Request) -> Response:
        roots = known_roots(dash.dev_root())
        pinned = [
            {"name": r.name, "publicKey": r.public_key.hex(), "insecure": r.insecure}
            for name, r in roots.items()
            if name != "aws"
        ]
        body = (
            "<section><p>Paste an attestation document (hex or base64), drop a file, or give an "
            "enclave's attestation endpoint. The server verifies it with "
            "<code>reef.attestation.verify</code>; this page verifies it again in your browser "
            "(WebCrypto, pinned AWS root) so you need not trust the server.</p>"
            '<div class="drop" id="drop">drop a document file here</div>'
            '<textarea id="document" placeholder="hex or base64"></textarea>'
            "<details><summary>TDX/SGX quote: collateral and instant</summary>"
            '<textarea id="collateral" placeholder="QuoteCollateralV3 JSON"></textarea>'
            '<input id="at" placeholder="verify at (unix seconds; default now)" size="34">'
            "</details>"
            '<form class="inline" id="verify-form">'
            '<input id="endpoint" placeholder="or http://host:port/attestation/raw" size="34">'
            '<select id="mode"><option value="replay">replay (at its own time)</option>'
            '<option value="live">live (now)</option></select>'
            '<button id="verify">Verify</button></form></section>'
            '<div class="grid"><section id="server-verdict"><h2>Server</h2>'
            '<p class="muted">—</p></section>'
            '<section id="browser-verdict"><h2>Browser</h2><p class="muted">—</p></section></div>'
            '<section id="details"></section>'
        )
        return render(
            "Attestation",
            body,
            "/attestation",
            scripts=["/static/nitro.js"],
            data={"roots": pinned},
        )

    async def service_page(request: Request) -> Response:
        name = request.path_params["name"]
        info = dash.network()
        entry = public_services(info.services if info else {}).get(name) or {}
        if not entry:
            body = f'<p class="muted">no service {esc(name)} in network.json</p>'
        else:
            body = (
                f'<section id="service"><p class="muted">What <code>reef up</code>\'s '
                f"{esc(name)} extension reported in network.json.</p>"
                f"{dl({k: _value_html(v) for k, v in entry.items()}, raw=entry.keys())}</section>"
            )
        return render(name.capitalize(), body, f"/services/{name}")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC_FILES:
            return JSONResponse({"error": f"no static file {name}"}, 404)
        return FileResponse(STATIC / name, media_type=_STATIC_FILES[name])

    # ------------------------------------------------------------------ read-only API

    async def api_overview(_request: Request) -> Response:
        try:
            session = await off_thread(dash.session)
            summary = await off_thread(_data.chain_summary, session)
        except ReefError as exc:
            return JSONResponse({"error": exc.message}, 503)
        info = dash.network()
        services = public_services(info.services) if info else {}
        return JSONResponse({**summary, "services": services})

    async def api_jobs(_request: Request) -> Response:
        try:
            session, client, jobs = await my_jobs()
            described = await off_thread(_data.describe_jobs, session, client, jobs)
            rows = [row.to_json() for row in described]
        except ReefError as exc:
            return JSONResponse({"error": exc.message}, 503)
        return JSONResponse({"jobs": rows})

    async def api_verify(request: Request) -> Response:
        try:
            payload = await form(request)
            mode = payload.get("mode", "replay")
            if mode not in ("live", "replay"):
                raise InputError("mode must be live or replay")
            endpoint = str(payload.get("endpoint") or "")
            why_not = _no_fetch_for(request) if endpoint else None
            if why_not is not None:
                # Fetching a URL for a visitor from elsewhere would make the dashboard a proxy
                # into its host's network (services on loopback, a cloud's metadata address).
                return JSONResponse(
                    {
                        "error": why_not,
                        "hint": "fetch the document yourself and paste it (hex or base64)",
                    },
                    403,
                )
            if endpoint:
                from reef.attestation import AttestationClient

                evidence = await AttestationClient(timeout=5.0).afetch(endpoint)
            else:
                evidence = parse_evidence(str(payload.get("document") or ""))
        except ReefError as exc:  # before ValueError: an InputError is one, with its own message
            return JSONResponse({"error": exc.message, "hint": exc.hint or ""}, 400)
        except httpx.InvalidURL as exc:  # the attestation client lets httpx's own through
            return JSONResponse({"error": f"endpoint is not a URL: {exc}"}, 400)
        except ValueError:
            return JSONResponse({"error": "send JSON {document | endpoint, mode}"}, 400)
        roots = known_roots(dash.dev_root())
        collateral = str(payload.get("collateral") or "") or None
        if collateral is not None and await off_thread(_collateral_too_deep, collateral):
            return JSONResponse(
                {
                    "error": f"the collateral is nested more than {MAX_JSON_DEPTH} levels deep",
                    "hint": "paste dcap-qvl's QuoteCollateralV3 JSON as it is",
                },
                400,
            )
        at_text = str(payload.get("at_s") or "").strip()
        if at_text and _unix_seconds(at_text) is None:
            return JSONResponse(
                {
                    "error": f"at_s must be unix seconds (ASCII digits, at most {MAX_AT_S})",
                    "hint": "give the instant to verify at as e.g. 1720000000, or leave it empty",
                },
                400,
            )
        verdict = await off_thread(
            lambda: server_verdict(
                evidence,
                roots=roots,
                mode=mode,
                now_ms=dash.clock_ms(),
                collateral=collateral,
                at_s=_unix_seconds(at_text),
            )
        )
        verdict["document_hex"] = evidence.hex()
        return JSONResponse(verdict)

    async def api_logs(request: Request) -> Response:
        text = request.path_params["job"]
        if RELAYED_HEADER in request.headers:
            # A provider named a dashboard's own log stream as its enclave's console: relaying
            # it would open another relay to itself, and so on without end.
            return JSONResponse(
                {
                    "error": "this console relays this dashboard (or another one): a loop",
                    "hint": "the job's provider names a dashboard as its enclave's console",
                },
                508,
            )
        visitor = request.client.host if request.client else ""
        # The slot is taken before the chain is read: a refused stream costs nothing, and
        # streams opened at once cannot all pass the count before any of them is counted.
        refusal = log_streams.refusal(visitor)
        if refusal is not None:
            return refusal
        release = log_streams.take(visitor)
        try:
            _, _, row = await open_job(text)
        except ReefError as exc:
            release()
            return JSONResponse({"error": exc.message}, 400)
        except BaseException:
            release()
            raise
        if not row.logs_url:
            release()
            return JSONResponse({"error": f"job {text} has no readable console (not debug)"}, 404)
        return _CountedStream(
            _relay_logs(row.logs_url, dash.closing),
            release=release,
            media_type="text/event-stream",
        )

    # ------------------------------------------------------------------ management

    def refused(request: Request) -> Response | None:
        """401/403 unless management is on, the caller is local, and the token is right."""
        why = dash.management_refusal()
        if why is not None:
            return JSONResponse({"error": why}, 403)
        client = request.client.host if request.client else ""
        if not is_loopback(client):
            return JSONResponse({"error": "management requests must come from loopback"}, 403)
        if not dash.token_ok(request.headers.get(TOKEN_HEADER)):
            return JSONResponse(
                {"error": "a valid token is required", "hint": "open the URL printed at start"},
                401,
            )
        return None

    async def form(request: Request) -> dict[str, Any]:
        """The request's JSON object body (``{}`` when empty).

        Raises:
            InputError: the body is not a JSON object.
        """
        body = await request.body() or b"{}"
        # A body of ~70 000 "[" would crash the whole process in json.loads (SIGSEGV: py_ecc
        # raised the recursion limit), and with it everything `reef up` serves. Measuring a
        # large body takes up to a second: off the event loop.
        if await off_thread(_too_deep, body):
            raise InputError(
                f"the request body is nested more than {MAX_JSON_DEPTH} levels deep",
                hint="send a flat JSON object",
            )
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise InputError("send a JSON object") from exc
        if not isinstance(payload, dict):
            raise InputError("send a JSON object")
        return payload

    def action(
        run: Callable[[Any, Mapping[str, Any], dict[str, Any]], dict[str, Any]],
    ) -> Callable[[Request], Awaitable[Response]]:
        """A management button: token checked, ``run(session, path params, form)`` in a thread."""

        async def handler(request: Request) -> Response:
            denied = refused(request)
            if denied is not None:
                return denied
            try:
                payload = await form(request)
                session = await off_thread(dash.session)
                if session.account is None:
                    raise InputError("this dashboard has no account", hint="pass --key FILE")
                result = await off_thread(run, session, request.path_params, payload)
            except ReefError as exc:
                return JSONResponse({"error": exc.message, "hint": exc.hint or ""}, 400)
            return JSONResponse(result)

        return handler

    def job_action(
        run: Callable[[Any, JobId, dict[str, Any]], dict[str, Any]],
    ) -> Callable[[Request], Awaitable[Response]]:
        """An :func:`action` on the job its path names (any spelling ``parse_job_id`` takes)."""
        from reef.chain import parse_job_id

        return action(lambda s, path, p: run(s, parse_job_id(str(path["job"]), name="job"), p))

    def _debug_of(value: Any) -> bool | None:
        if value in (None, ""):
            return None
        return str(value).lower() in ("true", "1", "on", "yes")

    async def token_check(request: Request) -> Response:
        denied = refused(request)
        return denied if denied is not None else JSONResponse({"ok": True})

    routes: list[tuple[str, Callable[[Request], Awaitable[Response]], str]] = [
        ("/", overview, "GET"),
        ("/jobs", jobs_page, "GET"),
        ("/jobs/{job}", job_page, "GET"),
        ("/enclaves", enclaves_page, "GET"),
        ("/providers", providers_page, "GET"),
        ("/verifier", verifier_page, "GET"),
        ("/kms", kms_page, "GET"),
        ("/attestation", attestation_page, "GET"),
        ("/services/{name}", service_page, "GET"),
        ("/static/{name}", static, "GET"),
        ("/api/overview", api_overview, "GET"),
        ("/api/jobs", api_jobs, "GET"),
        ("/api/jobs/{job}/logs", api_logs, "GET"),
        ("/api/attestation/verify", api_verify, "POST"),
        ("/api/token", token_check, "POST"),
        (
            "/api/jobs/{job}/deposit",
            job_action(lambda s, j, p: _manage.deposit(s, j, str(p.get("amount") or ""))),
            "POST",
        ),
        (
            "/api/jobs/{job}/withdraw",
            job_action(lambda s, j, p: _manage.withdraw(s, j, str(p.get("amount") or "") or None)),
            "POST",
        ),
        ("/api/jobs/{job}/stop", job_action(lambda s, j, p: _manage.stop_job(s, j)), "POST"),
        (
            "/api/jobs/{job}/update",
            job_action(
                lambda s, j, p: _manage.update_job(
                    s, j, debug=_debug_of(p.get("debug")), url=str(p.get("url") or "") or None
                )
            ),
            "POST",
        ),
        (
            "/api/deploy",
            action(
                lambda s, _path, p: _manage.deploy_job(
                    s,
                    str(p.get("image") or ""),
                    str(p.get("duration") or "1h"),
                    debug=bool(_debug_of(p.get("debug"))),
                )
            ),
            "POST",
        ),
    ]
    for path, handler, method in routes:
        # API routes (not Starlette's plain ones): they name their template in the scope, which
        # the serving floor's metrics label requests with.
        app.add_api_route(
            path,
            handler,
            methods=[method],
            include_in_schema=path.startswith("/api"),
            **{"response_class": Response, **_API_DOCS.get((path, method), {})},
        )
    return app


# ---------------------------------------------------------------------- the API's description


class ApiError(BaseModel):
    """A refusal: what is wrong, and (often) what to do."""

    error: str
    hint: str = ""


class Overview(BaseModel):
    """``GET /api/overview``: the chain, the market, the account and the network's services."""

    rpc_url: str
    chain_id: int
    block: int
    market: str
    token: str
    job_count: int
    rate_lock_s: int
    account: str | None = Field(description="null when the dashboard is read-only")
    token_balance: int | None = Field(description="the account's rUSD, in base units")
    eth_balance: int | None = Field(description="the account's ETH, in wei")
    services: dict[str, dict[str, Any]] = Field(
        description="network.json's services, without the dashboard and without tokens"
    )


class JobSummary(BaseModel):
    """One open job of the dashboard's account: its money and its enclave."""

    job: int
    job_id: str
    owner: str
    provider: str
    metadata: dict[str, Any]
    rate: int = Field(description="rUSD base units per second")
    rate_per_hour: int
    balance: int = Field(description="what is left after settling up to now")
    paid_until: int | None
    stops_at: int | None
    time_left_s: int | None
    phase: str
    state: str
    enclave_id: str
    endpoint: str
    endpoints: dict[str, Any]
    last_error: str
    restarts: int
    reason: str


class Jobs(BaseModel):
    """``GET /api/jobs``."""

    jobs: list[JobSummary]


class VerifyRequest(BaseModel):
    """``POST /api/attestation/verify``: evidence (or where to fetch it) and how to check it.
    Other fields are ignored; an empty body is ``{}``."""

    document: str = Field("", description="the evidence, hex or base64")
    endpoint: str = Field("", description="an attestation URL to fetch the evidence from instead")
    mode: Literal["live", "replay"] = "replay"
    collateral: str = Field("", description="TDX/SGX collateral (JSON), optional")
    at_s: int | str = Field(
        "", description="verify as of these unix seconds (digits; default: now)"
    )


class Verdict(BaseModel):
    """The verifier's verdict on the evidence (``ok`` false says why in ``reason``/``message``)."""

    model_config = ConfigDict(extra="allow")

    ok: bool
    reason: str
    message: str
    hint: str
    mode: str
    kind: str
    root: dict[str, Any] | None
    document: dict[str, Any] | None
    certificates: list[Any]
    verified: dict[str, Any] | None
    document_hex: str


class TokenOk(BaseModel):
    """``POST /api/token``: the token is right (and management is on)."""

    ok: bool


class AmountRequest(BaseModel):
    """A deposit or withdrawal: rUSD as decimal text (a withdrawal without one takes all the
    notice reserve allows)."""

    amount: str = ""


class UpdateRequest(BaseModel):
    """What to change on a job: its debug flag and/or its image URL."""

    debug: bool | str | None = None
    url: str = ""


class DeployRequest(BaseModel):
    """A job to open for an image (a path or URL the dashboard's host can read)."""

    image: str
    duration: str = Field("1h", description="how long to pay for: 90s, 30m, 1h, 2d")
    debug: bool | str | None = None


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"model": model, "description": description}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    # The handlers read the body themselves (after the token check); this only describes it.
    return {
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


_JOB_PARAM = path_param("job", "the job: its number or its 32-byte id (hex)")
_GUARD: dict[int | str, dict[str, Any]] = {
    400: _json(ApiError, "the request is malformed, or the action failed (the reason says)"),
    401: _json(ApiError, f"no valid token in {TOKEN_HEADER}"),
    403: _json(
        ApiError,
        "management is off, the request is not from loopback, or a loopback dashboard was "
        "asked by a host name that is not loopback",
    ),
}
_TOKEN = {"name": TOKEN_HEADER, "in": "header", "required": False, "schema": {"type": "string"}}
_ACTION_OK = {
    "description": "what was done (transaction hashes, the new state)",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


def _action(summary: str, body: type[BaseModel] | None, *, job: bool = True) -> dict[str, Any]:
    extra: dict[str, Any] = {"parameters": [_JOB_PARAM, _TOKEN] if job else [_TOKEN]}
    if body is not None:
        extra.update(_body(body))
    return {
        "summary": summary,
        "responses": {200: _ACTION_OK, **_GUARD},
        "openapi_extra": extra,
    }


_UNAVAILABLE = {
    403: _json(ApiError, "a loopback dashboard asked by a host name that is not loopback"),
    503: _json(ApiError, "the chain or the market cannot be read"),
}
_REBOUND = {403: _UNAVAILABLE[403]}
_API_DOCS: dict[tuple[str, str], dict[str, Any]] = {
    ("/api/overview", "GET"): {
        "summary": "The chain, the market, the account and the network's services",
        "response_class": JSONResponse,
        "response_model": Overview,
        "responses": _UNAVAILABLE,
    },
    ("/api/jobs", "GET"): {
        "summary": "The open jobs of the dashboard's account",
        "response_class": JSONResponse,
        "response_model": Jobs,
        "responses": _UNAVAILABLE,
    },
    ("/api/jobs/{job}/logs", "GET"): {
        "summary": "A debug job's enclave console, relayed live (server-sent events)",
        "responses": {
            200: {
                "description": "`data:` lines as the enclave writes them",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            400: _json(ApiError, "the path names no open job, or the chain cannot be read"),
            **_REBOUND,
            404: _json(ApiError, "the job has no readable console (not debug)"),
            508: _json(ApiError, "asked by a dashboard relaying a console (a loop)"),
            429: _json(ApiError, "this visitor (not on loopback) holds its share of the streams"),
            503: _json(ApiError, "as many log streams are open as the dashboard relays at once"),
        },
        "openapi_extra": {"parameters": [_JOB_PARAM]},
    },
    ("/api/attestation/verify", "POST"): {
        "summary": "Verify attestation evidence (changes nothing; no token)",
        "response_class": JSONResponse,
        "response_model": Verdict,
        "responses": {
            400: _json(ApiError, "the request or the evidence is malformed"),
            **_REBOUND,
        },
        "openapi_extra": _body(VerifyRequest),
    },
    ("/api/token", "POST"): {
        "summary": "Check the management token",
        "response_class": JSONResponse,
        "response_model": TokenOk,
        "responses": {k: v for k, v in _GUARD.items() if k != 400},
        "openapi_extra": {"parameters": [_TOKEN]},
    },
    ("/api/jobs/{job}/deposit", "POST"): _action("Add rUSD to a job", AmountRequest),
    ("/api/jobs/{job}/withdraw", "POST"): _action("Take rUSD back from a job", AmountRequest),
    ("/api/jobs/{job}/stop", "POST"): _action("Stop a job (its rate to 0)", None),
    ("/api/jobs/{job}/update", "POST"): _action(
        "Change a job's debug flag or image", UpdateRequest
    ),
    ("/api/deploy", "POST"): _action("Open a job for an image", DeployRequest, job=False),
}
"""How each API route is described (the pages are not)."""


async def _verifier_counts(url: str) -> dict[str, object]:
    """Whether the verifier answers, and its verifications so far (from its ``/metrics``)."""
    from reef.web._alerts import MAX_METRICS_BYTES, parse_samples

    # Read as a stranger's answer (reef._fetch): a verifier that trickles or answers a gigabyte
    # must not hold the page, nor fill the dashboard's memory.
    try:
        async with httpx.AsyncClient(timeout=5.0) as http:
            answer = await read_bounded(
                http,
                http.build_request("GET", f"{url.rstrip('/')}/metrics"),
                max_bytes=MAX_METRICS_BYTES,
                deadline_s=5.0,
                what="the verifier",
            )
        if answer.status != 200:
            raise ServiceError(f"the verifier's /metrics answered HTTP {answer.status}")
        samples = parse_samples(answer.body.decode("utf-8", "replace"))
    except (httpx.InvalidURL, ReefError) as exc:
        return {"status": badge(f"unreachable: {exc}", "bad")}
    counts = {"accepted": 0, "rejected": 0}
    for sample in samples:
        route = sample.labels.get("route", "")
        if sample.name == "reef_http_requests_total" and route.startswith("/verify/"):
            ok = sample.labels.get("status") == "200"
            counts["accepted" if ok else "rejected"] += int(sample.value)
    return {
        "status": badge("up", "ok"),
        "documents accepted": counts["accepted"],
        "documents refused": counts["rejected"],
    }


def _too_deep(text: str | bytes) -> bool:
    """Whether ``text`` nests deeper than :data:`reef.encoding.MAX_JSON_DEPTH` (a stranger's
    JSON nested ~70 000 deep crashes json.loads, and the process, where web3 is imported)."""
    return json_depth(text, beyond=MAX_JSON_DEPTH) > MAX_JSON_DEPTH


def _collateral_too_deep(collateral: str) -> bool:
    """Whether TDX/SGX collateral nests too deeply to parse, itself or in the JSON documents its
    fields carry as strings (TCB info, QE identity): reef.attestation parses those too, with
    json.loads, when it explains a verdict."""
    if _too_deep(collateral):
        return True
    try:
        fields = json.loads(collateral)
    except (ValueError, RecursionError):
        return False  # not JSON: the verifier refuses it for that
    if not isinstance(fields, dict):
        return False
    return any(isinstance(v, str) and _too_deep(v) for v in fields.values())


PAGE_THREADS = 64
"""Threads the dashboard's pages read the chain and ask providers in (a page may wait up to
:data:`reef.web._data.PAGE_DEADLINE_S` for providers)."""

MAX_BUSY_PER_VISITOR = 8
"""Requests one visitor not on loopback may have under way at once (429 past that), so that no
single address holds every page thread."""

MAX_HISTORY_SHOWN = 100
"""The most market events a job's page lists: its opening and the latest ones. Anyone may
deposit to any job, nothing included, so a stranger can add events to it for the gas alone."""


def _latest(history: list[_T]) -> tuple[list[_T], int]:
    """The events a job's page lists (the first, then the latest) and how many it leaves out."""
    if len(history) <= MAX_HISTORY_SHOWN:
        return history, 0
    return [history[0], *history[-(MAX_HISTORY_SHOWN - 1) :]], len(history) - MAX_HISTORY_SHOWN


class _LogStreams:
    """The live log streams relayed now, in all and by visitor address.

    Each stream holds a connection to a stranger's console for as long as the visitor keeps it
    open, so their number is bounded (:attr:`DashboardSettings.max_log_streams`): past it, a new
    one is answered 503. A visitor not on loopback may hold an eighth of them, so one address
    cannot take every slot (429 past that); the machine's own users share the whole budget.
    The event loop is the only one to count, so no lock is needed.
    """

    def __init__(self, most: int) -> None:
        self.most = max(1, most)
        self.per_visitor = max(1, self.most // 8)
        self.open = 0
        self.by_visitor: dict[str, int] = {}

    def refusal(self, visitor: str) -> Response | None:
        """The answer refusing one more stream to ``visitor``, or ``None`` when there is room."""
        if self.open >= self.most:
            return JSONResponse(
                {
                    "error": f"{self.open} live log streams are open, as many as this dashboard "
                    "relays at once",
                    "hint": "close a page that streams an enclave's logs, or try again later",
                },
                503,
            )
        held = self.by_visitor.get(visitor, 0)
        if not is_loopback(visitor) and held >= self.per_visitor:
            return JSONResponse(
                {
                    "error": f"you have {held} live log streams open, as many as one visitor may",
                    "hint": "close one of them (another tab or program) first",
                },
                429,
            )
        return None

    def take(self, visitor: str) -> Callable[[], None]:
        """Count one more stream of ``visitor``; the function returned gives it back (once)."""
        self.open += 1
        self.by_visitor[visitor] = self.by_visitor.get(visitor, 0) + 1
        given_back = False

        def release() -> None:
            nonlocal given_back
            if given_back:
                return
            given_back = True
            self.open -= 1
            left = self.by_visitor[visitor] - 1
            if left:
                self.by_visitor[visitor] = left
            else:
                del self.by_visitor[visitor]

        return release


class _CountedStream(StreamingResponse):
    """A streaming response that gives its :class:`_LogStreams` slot back when it ends, however
    it ends (the stream's end, the visitor leaving, the server stopping, an error sending)."""

    def __init__(self, content: AsyncIterator[bytes], *, release: Callable[[], None], **kw: Any):
        super().__init__(content, **kw)
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


RELAYED_HEADER = "x-reef-relayed"
"""Sent by the dashboard when it relays a console: a dashboard asked for a log stream with it is
being asked by a dashboard, and refuses (508) rather than relay itself round and round."""

_CONSOLE = "the enclave's console"
_CONSOLE_HEAD_S = 5.0
MAX_LOG_LINE = 16 * 1024
"""The longest console line relayed whole (bytes); the rest of a longer one is dropped."""


async def _capped_lines(chunks: AsyncIterator[bytes], cap: int) -> AsyncIterator[str]:
    """The lines of ``chunks``, each at most ``cap`` bytes: a longer line is relayed cut, with a
    note, as soon as it is that long, and the rest of it is skipped. Never buffers more than
    ``cap`` bytes and a chunk (httpx's ``aiter_lines`` keeps a whole line, however long it
    grows, and a line that never ends would hold the relay, and the dashboard's memory, forever).
    """
    pending = bytearray()
    skipping = False
    async for chunk in chunks:
        pending += chunk
        while (end := pending.find(b"\n")) >= 0:
            line = bytes(pending[:end]).rstrip(b"\r")
            del pending[: end + 1]
            if skipping:
                skipping = False  # the end of the line that was cut
                continue
            yield line.decode("utf-8", "replace")
        if skipping:
            pending.clear()
        elif len(pending) > cap:
            head = bytes(pending[:cap]).decode("utf-8", "ignore")
            yield f"{head} [line cut: longer than {cap} bytes]"
            pending.clear()
            skipping = True
    if pending and not skipping:
        yield bytes(pending).decode("utf-8", "replace")


async def _relay_logs(url: str, closing: asyncio.Event) -> AsyncIterator[bytes]:
    """The enclave's console (server-sent events) relayed line by line, as it comes, until the
    enclave's stream ends or the dashboard closes (``closing``: a stream never ends by itself,
    and the server would otherwise wait for it when stopping)."""
    timeout = httpx.Timeout(_CONSOLE_HEAD_S, read=None)
    stop = asyncio.ensure_future(closing.wait())
    following: asyncio.Future[str] | None = None
    try:
        request = request_to("GET", url, what=_CONSOLE, params={"start_from": "0"})
        # Marked, so that a dashboard named as the console refuses it rather than relay itself.
        request.headers[RELAYED_HEADER] = "1"
        async with (
            httpx.AsyncClient(timeout=timeout) as http,
            stream_bounded(
                http,
                request,
                # A stream lasts as long as the console: its head is bounded, and what the
                # relay keeps of each line (_capped_lines); identity only, never inflated.
                max_bytes=None,
                head_s=_CONSOLE_HEAD_S,
                deadline_s=None,
                what=_CONSOLE,
            ) as stream,
        ):
            if stream.status != 200:
                # Not a console (a dashboard refusing a relayed request among them): said once,
                # and the stream ends.
                body = (await anext(stream.aiter_bytes(), b""))[:300]
                why = terminal_text(body.decode("utf-8", "replace"))
                yield (
                    f"event: error\ndata: the enclave's console answered HTTP "
                    f"{stream.status}: {why}\n\n"
                ).encode()
                return
            lines = _capped_lines(stream.aiter_bytes(), MAX_LOG_LINE)
            while True:
                following = asyncio.ensure_future(anext(lines))
                await asyncio.wait({following, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not following.done():
                    following.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await following
                    return
                try:
                    line = following.result()
                except StopAsyncIteration:
                    return
                if line.startswith("data:"):
                    # A lone CR ends a line for the browser's EventSource: inside the data it
                    # would let the enclave add fields (event:, id:) to the relayed stream.
                    data = line[5:].removeprefix(" ").replace("\r", "")
                    yield f"data: {data}\n\n".encode()
    except (httpx.HTTPError, FetchError) as exc:
        why = terminal_text(str(exc))
        yield f"event: error\ndata: the enclave's log stream ended: {why}\n\n".encode()
    finally:
        stop.cancel()
        if following is not None:
            # The visitor left while the next line was awaited: that read ends here too (it
            # fails once the console's connection closes, and its error is never collected).
            if following.done():
                if not following.cancelled():
                    following.exception()
            else:
                following.cancel()
