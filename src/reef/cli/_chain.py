"""`reef chain ...` commands: run the embedded devnet, list its dev accounts, describe it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from reef.cli._options import FreshChain, Json, ListenHost, ListenPort
from reef.cli._output import err_console, ether, failing, print_json, print_result, rusd, say

if TYPE_CHECKING:
    from reef.chain import Devnet, DevnetInfo
    from reef.home import ReefHome

__all__ = ["register"]

app = typer.Typer(
    help=(
        "The local devnet: an Ethereum JSON-RPC chain (py-evm) with reef's contracts. "
        "`reef chain` runs it in the foreground."
    ),
    invoke_without_command=True,
)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="chain")


@app.callback()
def chain(
    ctx: typer.Context,
    host: ListenHost = "127.0.0.1",
    port: ListenPort = 8545,
    fresh: FreshChain = False,
    rate_lock: Annotated[
        int | None,
        typer.Option(
            "--rate-lock",
            min=0,
            help="Seconds a market rate revision stays locked (new chains; default 300).",
        ),
    ] = None,
    accounts: Annotated[
        int,
        typer.Option(
            "--accounts", min=1, max=100, help="Dev accounts to derive and fund (new chains)."
        ),
    ] = 10,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            metavar="ORIGIN",
            help="A browser origin allowed to call the node besides loopback ones, e.g. "
            "https://my.dapp (repeatable; '*' allows every origin).",
        ),
    ] = None,
    call_timeout: Annotated[
        float,
        typer.Option(
            "--call-timeout",
            min=0.1,
            metavar="SECONDS",
            help="CPU seconds an eth_call or eth_estimateGas may run.",
        ),
    ] = 5.0,
) -> None:
    """Run the devnet in the foreground until Ctrl-C; state persists under $REEF_HOME/chain."""

    if ctx.invoked_subcommand is not None:
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from reef.chain import Devnet
    from reef.home import ReefHome

    home = ReefHome.from_env().ensure()
    replaying = (home.chain / "journal.jsonl").exists() and not fresh
    with failing():
        if replaying:
            say(f"replaying the devnet journal in {home.chain} ...")
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err_console(),
            transient=True,
        ) as bar:
            task = bar.add_task("replaying blocks", total=None, visible=False)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total, visible=total >= 200)

            devnet = Devnet.open(
                home, fresh=fresh, rate_lock_s=rate_lock, accounts=accounts, progress=progress
            )
    from reef.chain import serve_devnet
    from reef.cli._common import serve_until_stopped

    try:
        serve_until_stopped(
            lambda: serve_devnet(
                devnet,
                host=host,
                port=port,
                cors_origins=tuple(cors_origin or ()),
                call_timeout_s=call_timeout,
            ),
            lambda server: _banner(devnet, home, server.url, replaying=replaying),
        )
    finally:
        devnet.close()
    say(f"devnet stopped; its state is kept in {home.chain} (--fresh starts over)")


def _loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    from reef._serve import is_loopback

    return is_loopback(urlsplit(url).hostname or "")


def _balances(devnet: Devnet) -> list[tuple[int, int | None]]:
    from reef.chain import TokenClient

    w3 = devnet.web3()
    token = None
    if devnet.deployment is not None:
        token = TokenClient(w3, devnet.deployment.token)
    result = []
    for account in devnet.accounts:
        wei = int(w3.eth.get_balance(account.address))  # type: ignore[arg-type]
        result.append((wei, None if token is None else int(token.balance(account.address))))
    return result


def _banner(devnet: Devnet, home: ReefHome, url: str, *, replaying: bool) -> None:
    from reef.chain.devnet._accounts import DEV_KEYS_WARNING

    state = f"{home.chain} ({devnet.block_number} blocks"
    state += ", replayed from the journal)" if replaying else ")"
    say(f"reef devnet  chain id {devnet.chain_id}, one block per transaction, wall-clock time")
    say(f"endpoint     {url}")
    if not _loopback(url):
        say("warning      listening beyond this machine: anyone who reaches it can spend")
        say("             from the dev accounts (their keys are public)")
    say(f"state        {state}")
    deployment = devnet.deployment
    if deployment is not None:
        say(f"token        {deployment.token}  (rUSD, 6 decimals)")
        say(f"market       {deployment.market}  (rate lock {devnet.rate_lock_s} s)")
        say(f"kms registry {deployment.kms_registry}")
    say("accounts     (" + DEV_KEYS_WARNING + ")")
    for account, (wei, tokens) in zip(devnet.accounts, _balances(devnet), strict=True):
        funds = f"{ether(wei)} ETH"
        if tokens is not None:
            funds += f", {rusd(tokens)}"
        say(f"  #{account.index:<2} {account.address}  {funds}")
        say(f"      key 0x{account.private_key.hex()}")
    say("ready")


def _stored(home: ReefHome) -> DevnetInfo | None:
    from reef.chain import read_devnet_info

    if not (home.chain / "devnet.json").exists():
        return None
    return read_devnet_info(home)


@app.command("accounts")
def accounts_cmd(as_json: Json = False) -> None:
    """The dev accounts and their keys (public knowledge: development only)."""
    from reef.chain import dev_accounts
    from reef.chain.devnet._accounts import DEV_KEYS_WARNING
    from reef.home import ReefHome

    with failing():
        info = _stored(ReefHome.from_env())
    accounts = info.accounts if info is not None else dev_accounts()
    rows = [account.to_json() for account in accounts]
    if as_json:
        print_json({"warning": DEV_KEYS_WARNING, "accounts": rows})
        return
    # Plain lines rather than a table, so whole keys survive narrow terminals and copy-paste.
    for row in rows:
        typer.echo(f"#{row['index']:<2} {row['address']}  key {row['private_key']}")
    typer.echo(f"warning: {DEV_KEYS_WARNING}")


@app.command("info")
def info_cmd(as_json: Json = False) -> None:
    """Where the devnet is, whether it runs, and where reef's contracts are."""
    from reef.home import ReefHome

    home = ReefHome.from_env()
    with failing():
        info = _stored(home)
    if info is None:
        data: dict[str, Any] = {
            "state": str(home.chain),
            "running": False,
            "note": "no devnet has been started here; run `reef chain`",
        }
    else:
        head = info.probe()
        deployment = info.deployment
        data = {
            "chain_id": info.chain_id,
            "rpc_url": info.rpc_url,
            "running": head is not None,
            "block_number": head if head is not None else info.blocks,
            "genesis_timestamp": info.genesis_timestamp,
            "rate_lock_s": info.rate_lock_s,
            "token": None if deployment is None else deployment.token,
            "market": None if deployment is None else deployment.market,
            "kms_registry": None if deployment is None else deployment.kms_registry,
            "deployment_block": None if deployment is None else deployment.block,
            "state": str(home.chain),
        }
    shown = dict(data)
    if info is not None:
        from reef.node import format_time

        # People read when the chain began, not a count of seconds; --json keeps the number.
        stamp = info.genesis_timestamp
        shown["genesis_timestamp"] = f"{stamp} ({format_time(stamp)})"
    print_result(data, as_json, title="reef devnet", shown=shown)
