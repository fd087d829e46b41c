"""`reef doctor`: check that this host can run reef, and print the command that fixes what is not."""

from __future__ import annotations

from typing import Annotated

import typer

from reef.cli._options import Json
from reef.cli._output import console, print_json, print_table

__all__ = ["register"]

# `reef up`'s default ports, its dashboard's included (tests/cli/test_core_hour.py holds them to
# the defaults of reef up's port options).
UP_PORTS = (8545, 8080, 8090, 1400, 1100, 1101, 8888)


def register(root: typer.Typer) -> None:
    root.command("doctor")(doctor)


def doctor(
    ports: Annotated[
        bool,
        typer.Option("--ports", help=f"Also check that reef up's ports {UP_PORTS} are free."),
    ] = False,
    as_json: Json = False,
) -> None:
    """Check this host: sandbox, network, firewall, user namespaces, seccomp, disk, Node.js.

    Exit 0 when reef can run isolated enclaves here, 1 otherwise (with the install command).
    """
    from reef.enclave import missing_summary
    from reef.home import ReefHome
    from reef.node import doctor_checks

    checks = doctor_checks(ReefHome.from_env(), ports=UP_PORTS if ports else ())
    missing = missing_summary(checks)
    if as_json:
        print_json(
            {
                "ok": missing is None,
                "checks": [c.to_json() for c in checks],
                "fix": missing[1] if missing else "",
            }
        )
    else:
        rows = [
            {
                "check": c.name,
                "status": "ok" if c.ok else ("missing (optional)" if c.optional else "MISSING"),
                "for": c.purpose,
                "detail": c.detail if c.ok else f"{c.detail}; fix: {c.fix}".lstrip("; "),
            }
            for c in checks
        ]
        print_table(rows, ["check", "status", "for", "detail"])
        if missing is None:
            console().print("reef can run isolated enclaves on this host", markup=False)
        else:
            console().print(f"missing: {missing[0]}", markup=False, style="bold red")
            console().print(f"fix: {missing[1]}", markup=False)
    if missing is not None:
        raise typer.Exit(1)
