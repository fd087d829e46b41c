"""`reef wallet`: your account's money at a glance: rUSD and ETH balances, and what your open
jobs hold and spend per hour (the chain's numbers; amounts in rUSD decimals, ETH in ether)."""

from __future__ import annotations

import typer

from reef.cli._common import owner_jobs
from reef.cli._options import Flags, Owner, with_flags
from reef.cli._output import ether, failing, print_result
from reef.errors import RPCError

__all__ = ["register"]


def register(root: typer.Typer) -> None:
    root.command("wallet")(wallet_cmd)


@with_flags("rpc", "market", "key", "as_json")
def wallet_cmd(flags: Flags, owner: Owner = None) -> None:
    """Your balances (rUSD, ETH for gas) and what your open jobs hold and spend per hour."""
    with failing():
        # Read through the session's reader (no web3.py: the command sends nothing).
        mine = owner_jobs(flags, owner)
        session, who = mine.session, mine.owner
        token = mine.reader.token_balance(who)
        try:
            wei = mine.reader.eth_balance(who)
        except RPCError as exc:  # the node failed, or answered no number
            raise RPCError(f"cannot read the ETH balance from {session.rpc_url}: {exc}") from exc
        totals = mine.totals()
    from reef.chain import format_amount  # after the session: no network, no eth-utils

    out = {
        "address": who,
        "rusd": format_amount(token),
        "eth": ether(wei),
        **totals,
        "jobs": [int(job.id, 16) for job in mine.jobs],
    }
    # People read each amount with its unit (a bare 1000000 could be base units; --json keeps
    # the numbers as they were), and no open job as "(none)" rather than a blank row.
    shown = {
        **out,
        "rusd": f"{out['rusd']} rUSD",
        "eth": f"{out['eth']} ETH",
        "jobs_balance": f"{out['jobs_balance']} rUSD",
        "spend_per_hour": f"{out['spend_per_hour']} rUSD",
        "jobs": ", ".join(str(job) for job in out["jobs"]) or "(none)",
    }
    print_result(out, flags.as_json, shown=shown)
