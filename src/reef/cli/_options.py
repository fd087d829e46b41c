"""The options many commands take, each spelt once: ``--json``, ``--rpc``, ``--market``, ``--key``,
the serverless and proof market contracts.

Each is an ``Annotated`` type, so a command declares ``rpc: Rpc = None`` and every command that
names the local network's RPC endpoint, market or sending account says the same thing in
``--help``. Options one command group alone takes stay in that group's module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "AccountKey",
    "CodeContract",
    "Insecure",
    "Json",
    "JobsContract",
    "JsonOption",
    "Market",
    "Owner",
    "ProofMarket",
    "Rpc",
]

_JSON_HELP = "Print machine-readable JSON."

Json = Annotated[bool, typer.Option("--json", help=_JSON_HELP)]
"""``--json``: print machine-readable JSON (``as_json: Json = False``)."""

JsonOption = typer.Option(False, "--json", help=_JSON_HELP)
"""``--json`` as a default value (``as_json: bool = JsonOption``), for commands not yet on
:data:`Json`."""

Rpc = Annotated[
    str | None, typer.Option("--rpc", help="JSON-RPC URL (default: the local network's).")
]
"""``--rpc``: the chain's JSON-RPC URL; ``None`` means the one ``reef up`` recorded."""

Market = Annotated[
    str | None, typer.Option("--market", help="Market address (default: the local network's).")
]
"""``--market``: the market contract; ``None`` means the one ``reef up`` deployed."""

AccountKey = Annotated[
    Path | None,
    typer.Option("--key", help="File with your private key (default: dev account 0)."),
]
"""``--key``: the account a command sends from; ``None`` means the devnet's account 0."""

ProofMarket = Annotated[
    str | None,
    typer.Option("--proof-market", help="ProofMarket address (default: the local network's)."),
]
"""``--proof-market``: the proof market contract; ``None`` means the one ``reef up`` deployed."""

Owner = Annotated[
    str | None, typer.Option("--owner", help="Whose account (default: yours, --key's).")
]
"""``--owner``: the account a command shows; ``None`` means the sending account's own."""

JobsContract = Annotated[
    str | None, typer.Option("--jobs", help="Jobs contract (default: the local network's).")
]
"""``--jobs``: the serverless Jobs contract; ``None`` means the one ``reef up`` deployed."""

CodeContract = Annotated[
    str | None, typer.Option("--code", help="Code contract (default: the local network's).")
]
"""``--code``: the serverless code contract; ``None`` means the one ``reef up`` deployed."""

Insecure = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Run enclaves even where this host cannot isolate them (see `reef doctor`); "
        "every output then says so.",
    ),
]
"""``--insecure``: run enclaves without isolation (development hosts); outputs say so."""
