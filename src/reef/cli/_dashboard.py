"""`reef dashboard` (the web dashboard against any chain) and `reef alerts check|run`.

Both find the network as every market command does (``--rpc`` / ``--market`` / ``--key``, the
shared flags of :func:`~reef.cli._options.with_flags`, then
``$REEF_HOME/network.json``); the library does the work (:mod:`reef.web`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reef.cli._options import Flags, ListenHost, ListenPort, with_flags
from reef.cli._output import failing, print_json, print_table, tell
from reef.cli._root import command_group
from reef.errors import ServiceError

if TYPE_CHECKING:
    from reef.web import Dashboard, Sample

__all__ = ["register"]

alerts, _register_alerts = command_group("alerts")

RulesArgument = typer.Argument(help="The alert rules file (alerts.toml).", show_default=False)
MetricsOption = typer.Option(
    "--metrics", help="Also read this /metrics URL (any reef service); repeatable."
)


def register(root: typer.Typer) -> None:
    root.command("dashboard")(dashboard_cmd)
    _register_alerts(root)


def _dashboard(flags: Flags, host: str = "127.0.0.1", **kw: Any) -> Dashboard:
    """The dashboard of the network the flags name (the account of ``--key`` manages)."""
    from reef.home import ReefHome
    from reef.web import Dashboard, DashboardSettings

    settings = DashboardSettings(
        home=ReefHome.from_env(),
        rpc=flags.rpc,
        market=flags.market,
        key=flags.key,
        host=host,
        **kw,
    )
    return Dashboard(settings)


@with_flags("rpc", "market", "key")
def dashboard_cmd(
    flags: Flags,
    host: ListenHost = "127.0.0.1",
    port: ListenPort = 8888,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="No management, even on loopback.")
    ] = False,
) -> None:
    """Serve the web dashboard until Ctrl-C (management only on loopback, with the printed token)."""
    from reef._serve import Server, serve
    from reef.cli._common import serve_until_stopped
    from reef.web import dashboard_app, is_loopback

    with failing():
        dash = _dashboard(flags, host, manage=not read_only)

    def ready(server: Server) -> None:
        typer.echo(f"dashboard  {server.url}")
        if dash.manage_enabled:
            typer.echo(f"manage     {server.url}/?token={dash.token}")
        elif not is_loopback(host):
            typer.echo("management is off: the dashboard does not listen on loopback")
        typer.echo("ready")

    serve_until_stopped(
        lambda: serve(
            dashboard_app(dash),
            host=host,
            port=port,
            what="dashboard",
            hint="another process uses that port; pick another with --port",
        ),
        ready,
        # Open live log streams end first, so stopping does not wait for them.
        before_close=dash.close,
    )


def _samples(dash: Dashboard, metrics: list[str]) -> list[Sample]:
    """The network's gauges, plus the samples of each ``--metrics`` URL.

    Raises:
        ServiceError: a URL cannot be read.
    """
    from reef.web import Sample, network_samples, read_samples

    out = [Sample(name, labels, float(v)) for name, _, labels, v in network_samples(dash)]
    for url in metrics:
        out += read_samples(url)
    return out


@alerts.command("check")
@with_flags("rpc", "market", "key", "as_json")
def check_cmd(
    flags: Flags,
    rules: Annotated[Path, RulesArgument],
    metrics: Annotated[list[str] | None, MetricsOption] = None,
) -> None:
    """Evaluate the rules once (ignoring `for`), print what fires; exit 1 if anything does."""
    from reef.web import load_rules

    with failing():
        parsed = load_rules(rules)
        samples = _samples(_dashboard(flags), metrics or [])
        rows = [
            {"rule": rule.name, "key": firing.key, "message": firing.message}
            for rule in parsed
            for firing in rule.evaluate(samples)
        ]
    if flags.as_json:
        print_json(rows)
    elif rows:
        print_table(rows, ["rule", "key", "message"], title="firing")
    else:
        typer.echo(f"nothing fires ({len(parsed)} rules)")
    if rows:
        raise typer.Exit(1)


@alerts.command("run")
@with_flags("rpc", "market", "key")
def run_cmd(
    flags: Flags,
    rules: Annotated[Path, RulesArgument],
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between evaluations.")
    ] = 15.0,
    metrics: Annotated[list[str] | None, MetricsOption] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Evaluate once, send, and exit (for cron).")
    ] = False,
) -> None:
    """Evaluate the rules every --interval seconds and send each notice (fired or resolved)."""
    from reef.web import AlertEngine, load_rules, send_notice

    with failing():
        parsed = load_rules(rules)
        by_name = {rule.name: rule for rule in parsed}
        engine = AlertEngine(parsed)
        dash = _dashboard(flags)
        tell(f"evaluating {len(parsed)} rules every {interval:g} s")
        while True:
            try:
                samples = _samples(dash, metrics or [])
            except ServiceError as exc:
                tell(f"skipped an evaluation: {exc.message}")
            else:
                for notice in engine.step(samples, time.time()):
                    try:
                        send_notice(notice, by_name[notice.rule], echo=typer.echo)
                    except ServiceError as exc:
                        tell(f"could not send: {exc.message}")
            if once:
                return
            time.sleep(interval)
