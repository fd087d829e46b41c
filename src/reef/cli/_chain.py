"""`reef chain ...` commands: run the embedded devnet, list its dev accounts, describe it, and
put reef's contracts on a chain of the user's choosing (``reef chain deploy``).

``reef chain deploy`` parses its flags into a :class:`reef.node.ChainDeployRequest`, which
:func:`reef.node.preflight` checks and prices (nothing is sent until the chain, the home's
records, the ``--out`` file and the sender's balance allow it) and
:func:`reef.node.deploy_on_chain` sends and records in ``$REEF_HOME``; this module prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reef.cli._options import FreshChain, Json, ListenHost, ListenPort, RateLockOption
from reef.cli._output import (
    err_console,
    ether,
    failing,
    note,
    print_json,
    print_result,
    rusd,
    say,
    tell,
    tx_printer,
)
from reef.cli._root import command_group

if TYPE_CHECKING:
    from reef.chain import Devnet, DevnetInfo, TxProgress
    from reef.home import ReefHome
    from reef.node import ChainDeployIncomplete, ChainDeployPlan, ChainDeployResult, Resume

__all__ = ["register"]

app, register = command_group("chain", runs_alone=True)


@app.callback()
def chain(
    ctx: typer.Context,
    host: ListenHost = "127.0.0.1",
    port: ListenPort = 8545,
    fresh: FreshChain = False,
    rate_lock: Annotated[int | None, RateLockOption] = None,
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
        if not fresh:
            from reef.node import check_devnet_home

            check_devnet_home(home)
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

    from reef._listen import is_loopback

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
    if info is not None and not info.accounts:
        tell(
            f"this home records reef's contracts on the chain at {info.rpc_url} (reef chain "
            "deploy): reef holds none of its keys, and commands that send take --key FILE"
        )
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
        deployment = info.deployment
        if head is not None and deployment is not None and head < deployment.block:
            # The node answers with fewer blocks than the one the contracts were deployed in: it
            # was reset (an anvil restarted without its state), and every command would fail on
            # contracts that are not there.
            tell(
                f"warning: the chain at {info.rpc_url} is at block {head}, before block "
                f"{deployment.block} that reef's contracts were deployed in: the node was reset "
                "and holds none of them; deploy again (reef chain deploy --force, or reef up "
                "--fresh on a devnet)"
            )
    # A chain `reef chain deploy` recorded lists no dev accounts (reef holds none of its keys).
    deployed_here = info is not None and not info.accounts
    title = "reef contracts on a chain (reef chain deploy)" if deployed_here else "reef devnet"
    print_result(data, as_json, title=title, shown=shown)


# ---------------------------------------------------------------------------- reef chain deploy

_Key = Annotated[
    Path | None, typer.Option("--key", help="File with the deployer's private key (hex).")
]


@app.command("deploy")
def deploy_cmd(
    rpc_url: Annotated[
        str,
        typer.Option("--rpc-url", "--rpc", help="The chain's JSON-RPC URL.", show_default=False),
    ],
    key: _Key = None,
    unlocked: Annotated[
        bool,
        typer.Option(
            "--unlocked", help="Send from the node's first unlocked account (anvil, hardhat)."
        ),
    ] = False,
    sender: Annotated[
        str | None,
        typer.Option("--from", metavar="ADDR", help="Send from this unlocked account of the node."),
    ] = None,
    chain_id: Annotated[
        int | None,
        typer.Option("--chain-id", min=0, help="Refuse unless the endpoint is this chain."),
    ] = None,
    fund: Annotated[
        list[str] | None,
        typer.Option("--fund", metavar="ADDR", help="Mint test tokens to ADDR (repeatable)."),
    ] = None,
    fund_amount: Annotated[
        str, typer.Option("--fund-amount", metavar="RUSD", help="rUSD minted to each --fund.")
    ] = "1000000",
    rate_lock: Annotated[int, RateLockOption] = 300,
    approve_image: Annotated[
        list[str] | None,
        typer.Option(
            "--approve-image",
            metavar="ID",
            help="An image id the KMS registry approves from the start (repeatable).",
        ),
    ] = None,
    with_: Annotated[
        list[str] | None,
        typer.Option(
            "--with",
            metavar="serverless,proofs",
            help="Also deploy the serverless contracts (Jobs, Code) and/or the proof market.",
        ),
    ] = None,
    serverless_verifier: Annotated[
        str | None,
        typer.Option(
            "--serverless-verifier",
            metavar="ADDR",
            help="With serverless: the signer of the attestation statements the Jobs contract "
            "trusts (the `reef verifier` key's address).",
        ),
    ] = None,
    matching_engine: Annotated[
        str | None,
        typer.Option(
            "--matching-engine",
            metavar="ADDR",
            help="With proofs: who assigns asks to provers (default: the deployer).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write the deployment (JSON) here (default: $REEF_HOME/chain/deployment.json).",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace this home's record (a live market of this chain, or any of another "
            "chain) or an --out file of another chain.",
        ),
    ] = False,
    yes_mainnet: Annotated[
        bool,
        typer.Option(
            "--yes-real-money",
            "--yes-mainnet",
            help="Deploy on a chain reef does not know as a test or dev chain (a mainnet, a new "
            "L2, a private network): its gas may be real money.",
        ),
    ] = False,
    start_over: Annotated[
        bool,
        typer.Option(
            "--start-over",
            help="Leave a deployment stopped half way on this chain (it is resumed by default) "
            "and deploy a new set.",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Check and price the deployment, print the plan, send nothing."
        ),
    ] = False,
    as_json: Json = False,
) -> None:
    """Deploy reef's contracts (test token, market, KMS registry) on the chain at --rpc-url.

    The deployment is recorded in $REEF_HOME, so every command run with that REEF_HOME
    (reef provider run, reef deploy, reef jobs, reef wallet, reef chain info) uses this chain
    and market. Nothing is sent unless the sender can pay for every transaction. Each step is
    recorded as it lands: run after a stop half way, the same command checks what is on the
    chain and sends only what is missing.
    """
    from reef.chain import check_image_ids, parse_address, parse_amount
    from reef.home import ReefHome
    from reef.node import ChainDeployRequest, chain_extras, preflight

    home = ReefHome.from_env()
    with failing():
        request = ChainDeployRequest(
            rpc_url=rpc_url,
            key=key,
            unlocked=unlocked,
            sender=None if sender is None else parse_address(sender, name="--from"),
            chain_id=chain_id,
            fund=tuple(parse_address(a, name="--fund") for a in fund or ()),
            fund_amount=parse_amount(fund_amount, name="--fund-amount"),
            rate_lock_s=rate_lock,
            approved_images=tuple(bytes(i) for i in check_image_ids(approve_image or ())),
            extras=chain_extras(with_ or (), serverless_verifier, matching_engine),
            out=out,
            force=force,
            yes_mainnet=yes_mainnet,
            start_over=start_over,
        )
        plan = preflight(request, home)
    if dry_run:
        _print_plan(plan, as_json)
        return
    result = _send(plan)
    _print_deployed(plan, result, as_json)


def _print_plan(plan: ChainDeployPlan, as_json: bool) -> None:
    """What a deployment would do, checked and priced (``--dry-run``)."""
    where = str(plan.out_path) + (f" and {plan.home.root}'s record" if plan.records else "")
    print_result(
        {
            "chain_id": plan.chain.chain_id,
            "rpc_url": plan.chain.url,
            "sender": plan.who,
            "contracts": list(plan.planned),
            "transactions": plan.estimate.transactions,
            "max_cost_wei": plan.estimate.wei,
            "balance_wei": plan.balance,
            "records_in": where,
            "resumes": None if plan.resume is None else plan.resume.to_json(),
            "to_send": list(plan.to_send),
            "sent": False,
        },
        as_json,
        shown={
            "chain": f"{plan.chain.chain_id} at {plan.chain.url}",
            "sender": f"{plan.who} (holds {ether(plan.balance)} ETH)",
            "contracts": ", ".join(name.replace("_", " ") for name in plan.planned),
            "resumes": "no (nothing under way)"
            if plan.resume is None
            else "; ".join(_resume_lines(plan.resume)),
            "transactions": plan.estimate.transactions,
            "cost": f"up to {ether(plan.estimate.wei)} ETH",
            "records in": where,
            "sent": "nothing (--dry-run)",
        },
    )


def _resume_lines(resume: Resume) -> list[str]:
    """What a resume found on the chain, in words."""
    if resume.started_over:
        return [
            f"the deployment recorded under way in {resume.record} is not on this chain (the "
            "node was reset, or its transactions were dropped): starting over"
        ]
    lines = [f"resuming the deployment recorded in {resume.record}"]
    if resume.done:
        found = ", ".join(
            f"{step.name} {step.address}" if step.address else step.name for step in resume.done
        )
        lines.append(f"on the chain already (receipts and code checked): {found}")
    if resume.mined_since:
        lines.append(
            f"mined since the last run stopped (found by their receipts, not sent again): "
            f"{', '.join(resume.mined_since)}"
        )
    if resume.pending is not None:
        lines.append(
            f"{resume.pending.name}: sent in {resume.pending.tx_hash}, not yet mined: waiting "
            "for it (not sent again)"
        )
    if resume.lost:
        lines.append(f"recorded but not on the chain, sent again: {', '.join(resume.lost)}")
    return lines


def _send(plan: ChainDeployPlan) -> ChainDeployResult:
    """Send ``plan``, saying each transaction and contract; on a failure, what is on the chain."""
    from reef.node import ChainDeployIncomplete, ChainDeployNotRecorded, deploy_on_chain

    if plan.resume is not None:
        for line in _resume_lines(plan.resume):
            note(line)
    left = len(plan.to_send)
    note(
        f"deploying on chain {plan.chain.chain_id} at {plan.chain.url} from {plan.who} "
        f"({left} transactions, up to {ether(plan.estimate.wei)} ETH)"
    )

    def deployed(name: str, address: str, block: int | None) -> None:
        where = f" (block {block})" if block is not None else ""
        note(f"{name.replace('_', ' ')} at {address}{where}")

    def progress(stage: TxProgress) -> None:
        tx_printer(stage)
        if stage.stage == "sent":  # the hash an explorer finds it by, if the run stops now
            note(f"sent {stage.description} in {stage.tx_hash}")

    try:
        return deploy_on_chain(plan, progress=progress, deployed=deployed)
    except ChainDeployIncomplete as exc:
        raise _half_way(exc) from exc
    except ChainDeployNotRecorded as exc:
        # Deployed but not written down: the addresses must not be lost with the error.
        tell(f"deployed, but not recorded: {exc.message}")
        tell(json.dumps(exc.deployment.to_json()))
        raise typer.Exit(1) from exc


def _half_way(error: ChainDeployIncomplete) -> typer.Exit:
    """Report a deployment that stopped after it began: what is on the chain, what was sent and
    may still be mined (so nothing is lost), and how to go on; the Exit to raise (130 after
    Ctrl-C)."""
    from reef.cli._output import fail

    code = 130 if error.interrupted else 1
    if not error.deployed and error.pending is None:
        return fail(error, code=code)
    tell(f"error: {error.message}")
    if error.hint:
        tell(f"hint: {error.hint}")
    where = f"recorded in {error.record}" if error.record is not None else "nothing records them"
    if error.deployed:
        tell(f"deployed on chain {error.chain_id} before the stop ({where}):")
    for name, address, block in error.deployed:
        tell(f"  {name:<13}{address}" + (f"  block {block}" if block is not None else ""))
    if error.pending is not None:
        tell(
            f"{error.pending.name}: sent in {error.pending.tx_hash}, not yet mined; `reef chain "
            "deploy` again resumes and checks it (it is not sent twice)"
        )
    if error.missing:
        tell(
            f"not deployed: {', '.join(error.missing)}. Fix the cause and run the same command "
            "again: it resumes from the first step missing, after checking each recorded step "
            "on the chain (--start-over deploys a new set instead)"
        )
    elif error.pending is None:
        tell(
            "every contract is deployed but funding stopped: run the same command again to mint "
            "the rest (the deployer owns the token and can also mint(address,uint256) itself)"
        )
    return typer.Exit(code)


def _print_deployed(plan: ChainDeployPlan, result: ChainDeployResult, as_json: bool) -> None:
    home, deployment, services = plan.home, result.deployment, result.services
    if not plan.records:
        tell(f"note: {home.root} runs reef's own devnet: the deployment is not recorded there")
    data = result.to_json()
    shown = dict(data)
    funded = plan.request.fund
    shown["fund_amount"] = rusd(result.fund_amount, base_units=True) if funded else "(none funded)"
    del shown["services"]
    if result.resumed is not None:
        shown["resumed"] = "; ".join(_resume_lines(result.resumed))
        shown["sent"] = ", ".join(result.sent) or "nothing: every step was on the chain already"
    for service, contracts in services.items():
        for field, address in contracts.items():
            shown[f"{service} {field.replace('_', ' ')}"] = address
    print_result(data, as_json, title="reef contracts deployed", shown=shown)
    if as_json:
        return
    earlier = None if plan.previous is None else plan.previous.deployment
    for was, what in (
        (plan.replaced, str(result.deployment_file)),
        (earlier, f"{home.root}'s record"),
    ):
        if was is not None and was.market != deployment.market:
            tell(f"note: replaced in {what}: market {was.market} (chain {was.chain_id})")
    if result.recorded_in is not None:
        env = f"REEF_HOME={home.root} "
        tell(
            f"use it: commands run with REEF_HOME={home.root} use this chain and market, e.g. "
            f"`{env}reef wallet --key FILE`, `{env}reef provider run --key FILE`, "
            f"`{env}reef store serve` (the image store tenants upload to)"
        )
    else:
        tell(
            f"use it: pass --rpc {result.rpc_url} --market {deployment.market} to each command "
            f"(reef provider run also --start-block {deployment.block})"
        )
    if "serverless" in services:
        jobs = services["serverless"]
        tell(f"serverless: pass --jobs {jobs['jobs_contract']} --code {jobs['code_contract']}")
    if "proofs" in services:
        tell(f"proofs: pass --proof-market {services['proofs']['market']}")
