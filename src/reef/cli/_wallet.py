"""`reef wallet`: your account's money at a glance: rUSD and ETH balances, and what your open
jobs hold and spend per hour (the chain's numbers; amounts in rUSD decimals, ETH in ether)."""

from __future__ import annotations

from typing import Annotated

import typer

from reef.cli._common import owner_session
from reef.cli._jobs import job_totals
from reef.cli._options import AccountKey, Json, Market, Rpc
from reef.cli._output import fail, print_result
from reef.errors import ReefError, RPCError

__all__ = ["register"]


def register(root: typer.Typer) -> None:
    root.command("wallet")(wallet_cmd)


def _ether(wei: int) -> str:
    """Wei as an exact ether decimal string."""
    from reef.chain import format_amount

    return format_amount(wei, decimals=18)


def wallet_cmd(
    owner: Annotated[
        str | None, typer.Option("--owner", help="Whose wallet (default: your account).")
    ] = None,
    rpc: Rpc = None,
    market: Market = None,
    key: AccountKey = None,
    json_output: Json = False,
) -> None:
    """Your balances (rUSD, ETH for gas) and what your open jobs hold and spend per hour."""
    from reef.chain import format_amount
    from reef.node import open_jobs

    try:
        session, who = owner_session(rpc, market, key, owner)
        client = session.market()
        token = client.token.balance(who)
        try:
            wei = int(session.w3.eth.get_balance(session.w3.to_checksum_address(who)))
        except Exception as exc:  # any failure here means the endpoint cannot be used
            raise RPCError(f"cannot read the ETH balance from {session.rpc_url}: {exc}") from exc
        jobs = open_jobs(session, client, who)
        totals = job_totals(session, client, jobs)
    except ReefError as exc:
        raise fail(exc) from exc
    out = {
        "address": who,
        "rusd": format_amount(token),
        "eth": _ether(wei),
        **totals,
        "jobs": [int(job.id, 16) for job in jobs],
    }
    print_result(out, json_output)
