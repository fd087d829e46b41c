"""`reef chain ...` commands: run the embedded devnet, list its dev accounts, describe it, and
put reef's contracts on a chain of the user's choosing (``reef chain deploy``).

``reef chain deploy`` records what it deployed where every command already looks for a chain:
``$REEF_HOME/chain/devnet.json`` (:class:`reef.chain.DevnetInfo`, with no dev accounts: reef
holds no key of that chain), as ``reef up --chain anvil`` records the anvil it starts. So
``REEF_HOME=DIR`` is the one thing that points ``reef provider run``, ``reef deploy``, ``reef
jobs`` and ``reef wallet`` at the deployment (the chain, the market and the block its history
starts at); ``--rpc`` and ``--market`` still override it per command. The deployment itself is
also written as :class:`reef.chain.Deployment` JSON (``--out``) for other tools.

Everything that would fail or spend real money is refused before the first transaction: an
endpoint that is not an Ethereum node, a chain other than ``--chain-id``, a mainnet without
``--yes-mainnet``, a record of another chain in the way, a sender who cannot pay for the gas.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reef.cli._options import FreshChain, Json, ListenHost, ListenPort
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
from reef.errors import ConfigError, InputError, ReefError, RPCError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import Web3

    from reef.chain import Address, Deployment, Devnet, DevnetInfo
    from reef.home import ReefHome

__all__ = ["register"]

app = typer.Typer(
    help=(
        "The local devnet: an Ethereum JSON-RPC chain (py-evm) with reef's contracts. "
        "`reef chain` runs it in the foreground; `reef chain deploy` puts reef's contracts "
        "on a chain of your own."
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
        if not fresh:
            _refuse_over_a_deployment(home)
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


def _refuse_over_a_deployment(home: ReefHome) -> None:
    """Refuse to start a devnet over the record of ``reef chain deploy`` (no journal, no dev
    accounts): the devnet would write its own ``devnet.json`` over it.

    Raises:
        ConfigError: naming the deployment's chain.
    """
    if (home.chain / "journal.jsonl").exists():
        return
    info = _stored(home)
    if info is not None and not info.accounts:
        raise ConfigError(
            f"{home.root} records reef's contracts on chain {info.chain_id} at {info.rpc_url} "
            "(reef chain deploy); a devnet here would replace that record",
            hint="run the devnet in another home (REEF_HOME=DIR reef chain), or pass --fresh "
            "to replace the record",
        )


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
    # A chain `reef chain deploy` recorded lists no dev accounts (reef holds none of its keys).
    deployed_here = info is not None and not info.accounts
    title = "reef contracts on a chain (reef chain deploy)" if deployed_here else "reef devnet"
    print_result(data, as_json, title=title, shown=shown)


# ---------------------------------------------------------------------------- reef chain deploy

_NODE_HINT = "check the URL, and that the node runs (anvil, `npx hardhat node`, your RPC provider)"
_PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True, kw_only=True)
class _Chain:
    """What the endpoint said before anything is sent."""

    url: str
    chain_id: int
    head: int


def _probe(url: str) -> _Chain:
    """Ask ``url`` its chain id and head block, with reef's words for every way it can fail.

    Raises:
        InputError: ``url`` is not an http(s) URL.
        RPCError: nothing answers there, or what answers is not an Ethereum JSON-RPC node.
    """
    import httpx

    if not url.startswith(("http://", "https://")):
        raise InputError(
            f"--rpc-url must be an http(s) URL, not {url!r}", hint="e.g. http://127.0.0.1:8545"
        )
    answers: list[int] = []
    for method in ("eth_chainId", "eth_blockNumber"):
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": []}
        try:
            response = httpx.post(url, json=body, timeout=_PROBE_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise RPCError(f"nothing answers at {url} ({exc})", hint=_NODE_HINT) from exc
        try:
            result = response.json()["result"]
            answers.append(int(result, 16))
        except (ValueError, KeyError, TypeError) as exc:
            raise RPCError(
                f"{url} answered {method} with HTTP {response.status_code}, but not as an "
                f"Ethereum JSON-RPC node does: {response.text[:120]!r}",
                hint=_NODE_HINT,
            ) from exc
    return _Chain(url=url, chain_id=answers[0], head=answers[1])


def _check_chain(chain: _Chain, *, expected: int | None, yes_mainnet: bool) -> None:
    """Refuse a chain other than ``expected``, and a mainnet without consent.

    Raises:
        ConfigError: saying which.
    """
    from reef.chain import MAINNET_CHAIN_IDS

    if expected is not None and chain.chain_id != expected:
        raise ConfigError(
            f"{chain.url} is chain {chain.chain_id}, not --chain-id {expected}",
            hint="check the RPC URL (or drop --chain-id to deploy on whatever chain it is)",
        )
    name = MAINNET_CHAIN_IDS.get(chain.chain_id)
    if name is not None and not yes_mainnet:
        raise ConfigError(
            f"{chain.url} is {name} (chain id {chain.chain_id}), where gas costs real money; "
            "and the token deployed is a test token its owner mints at will, worth nothing",
            hint="deploy on a testnet or a local node; if you really mean it, add --yes-mainnet",
        )


def _devnet_state(home: ReefHome) -> str | None:
    """What in ``home`` says a devnet (or ``reef up``'s network) lives there, if anything."""
    from reef.chain.devnet._anvil import STATE_NAME
    from reef.chain.devnet._store import JOURNAL_NAME
    from reef.node import NETWORK_FILE

    for path in (home.root / NETWORK_FILE, home.chain / JOURNAL_NAME, home.chain / STATE_NAME):
        if path.exists():
            return str(path)
    return None


def _home_record(home: ReefHome, chain: _Chain, *, force: bool) -> DevnetInfo | None:
    """The deployment ``home`` records now (a record of an earlier ``reef chain deploy`` on this
    chain, or none); refuse one of another chain.

    Raises:
        ConfigError: ``home`` holds a devnet, or a record of another chain (without ``force``).
    """
    from reef.chain import read_devnet_info

    if (home.chain / "devnet.json").exists():
        info = read_devnet_info(home)
        if info.accounts:  # a devnet's or anvil's record: it lists the dev accounts
            raise _home_taken(home, str(home.chain / "devnet.json"))
        if info.chain_id != chain.chain_id and not force:
            raise ConfigError(
                f"{home.root} already records a deployment on chain {info.chain_id} "
                f"(market {info.deployment.market if info.deployment else '?'} at "
                f"{info.rpc_url}); this is chain {chain.chain_id}",
                hint="use another home (REEF_HOME=DIR) for this chain, or --force to replace "
                "the record (the contracts stay on their chain)",
            )
        return info
    return None


def _home_taken(home: ReefHome, what: str) -> ConfigError:
    return ConfigError(
        f"{home.root} runs reef's own devnet or network ({what}): it cannot also record a "
        "deployment on another chain",
        hint="give the deployment a home of its own: REEF_HOME=~/.reef-NAME reef chain deploy "
        "...; or pass --out FILE to keep only the deployment file",
    )


def _check_out(path: Path, chain: _Chain, *, force: bool) -> Deployment | None:
    """The deployment ``path`` holds now (on this chain, so it may be replaced), if any.

    Raises:
        ConfigError: ``path`` holds a deployment on another chain, or something else, and
            ``force`` is not given.
    """
    from reef.chain import Deployment

    if not path.exists():
        _check_writable(path)
        return None
    if path.is_dir():
        raise ConfigError(f"--out {path} is a directory", hint="name a file")
    try:
        held = Deployment.load(path)
    except ConfigError as exc:
        if force:
            return None
        raise ConfigError(
            f"{path} exists and does not hold a deployment ({exc.message})",
            hint="name another --out file, or --force to overwrite it",
        ) from exc
    if held.chain_id != chain.chain_id and not force:
        raise ConfigError(
            f"{path} holds a deployment on chain {held.chain_id} (market {held.market}); "
            f"{chain.url} is chain {chain.chain_id}",
            hint="name another --out file, or --force to overwrite it (the contracts stay on "
            "their chain)",
        )
    return held


def _check_writable(path: Path) -> None:
    """Refuse an ``--out`` whose directory cannot be made or written (before anything is sent).

    Raises:
        ConfigError: naming the directory.
    """
    import os

    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write the deployment file {path}: {folder} is not a writable directory",
            hint="name another --out file",
        )


def _sender(w3: Web3, url: str, key: Path | None, unlocked: bool, sender: str | None) -> Any:
    """Who deploys: the key file's account, or an account the node signs for.

    Raises:
        InputError: neither or both are given, or the key file holds no key.
        ConfigError: the node signs for no account (or not for ``sender``).
    """
    from reef.chain import parse_address

    if key is not None and (unlocked or sender):
        raise InputError("pass --key FILE or --unlocked, not both")
    if key is not None:
        from reef.node import load_key_file

        account: LocalAccount = load_key_file(key)
        return account
    if not unlocked and sender is None:
        raise InputError(
            "who deploys? pass --key FILE (a file holding the private key as hex), or "
            "--unlocked to send from the node's first unlocked account (anvil, hardhat)"
        )
    from reef.chain._tx import translate_errors

    with translate_errors(f"eth_accounts at {url}"):
        accounts = [str(a) for a in w3.eth.accounts]
    if not accounts:
        raise ConfigError(
            f"the node at {url} signs for no account (eth_accounts is empty)",
            hint="pass --key FILE; only dev nodes (anvil, hardhat) hold unlocked accounts",
        )
    if sender is None:
        return parse_address(accounts[0], name="unlocked account")
    chosen = parse_address(sender, name="--from")
    if chosen.lower() not in (a.lower() for a in accounts):
        raise ConfigError(
            f"the node at {url} does not sign for {chosen}",
            hint=f"its unlocked accounts: {', '.join(accounts[:5])}",
        )
    return chosen


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
    rate_lock: Annotated[
        int,
        typer.Option("--rate-lock", min=0, help="Seconds a market rate revision stays locked."),
    ] = 300,
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
        typer.Option("--force", help="Replace a record or --out file of another chain."),
    ] = False,
    yes_mainnet: Annotated[
        bool,
        typer.Option(
            "--yes-mainnet", help="Deploy even on a chain whose gas is real money (mainnets)."
        ),
    ] = False,
    as_json: Json = False,
) -> None:
    """Deploy reef's contracts (test token, market, KMS registry) on the chain at --rpc-url.

    The deployment is recorded in $REEF_HOME, so every command run with that REEF_HOME
    (reef provider run, reef deploy, reef jobs, reef wallet, reef chain info) uses this chain
    and market. Nothing is sent unless the sender can pay for every transaction.
    """
    from reef.chain import (
        DEPLOYED_CONTRACTS,
        check_image_ids,
        deploy_contracts,
        estimate_deployment,
        http_web3,
        parse_address,
        parse_amount,
    )
    from reef.home import ReefHome

    home = ReefHome.from_env()
    with failing():
        recipients = [parse_address(a, name="--fund") for a in fund or ()]
        amount = parse_amount(fund_amount, name="--fund-amount")
        images = [bytes(i) for i in check_image_ids(approve_image or ())]
        extras = _extras(with_ or (), serverless_verifier, matching_engine)
        taken = _devnet_state(home)
        if taken is not None and out is None:
            raise _home_taken(home, taken)
        chain = _probe(rpc_url)
        _check_chain(chain, expected=chain_id, yes_mainnet=yes_mainnet)
        previous = None if taken is not None else _home_record(home, chain, force=force)
        out_path = out if out is not None else home.chain / "deployment.json"
        replaced = _check_out(out_path, chain, force=force)
        w3 = http_web3(rpc_url, timeout=60)
        deployer = _sender(w3, rpc_url, key, unlocked, sender)
        who = parse_address(deployer if isinstance(deployer, str) else deployer.address)
        estimate = estimate_deployment(
            w3,
            who,
            rate_lock_s=rate_lock,
            fund_count=len(recipients) if amount else 0,
            approved_images=images,
            extra=[(name, args) for name, args in extras.creations(placeholder=who, deployer=who)],
        )
        balance = _balance(w3, who, rpc_url)
        if balance < estimate.wei:
            raise ConfigError(
                f"{who} has {ether(balance)} ETH on chain {chain.chain_id}; deploying needs up "
                f"to {ether(estimate.wei)} ETH ({estimate.transactions} transactions, "
                f"{estimate.gas} gas at {_gwei(estimate.fee_per_gas)} gwei)",
                hint=f"send at least {ether(estimate.wei - balance)} ETH to {who} (a testnet's "
                "faucet), then run this again; nothing was sent",
            )
    note(
        f"deploying on chain {chain.chain_id} at {rpc_url} from {who} "
        f"({estimate.transactions} transactions, up to {ether(estimate.wei)} ETH)"
    )
    done: dict[str, tuple[Address, int | None]] = {}

    def deployed(name: str, address: Address, block: int | None) -> None:
        done[name] = (address, block)
        where = f" (block {block})" if block is not None else ""
        note(f"{name.replace('_', ' ')} at {address}{where}")

    try:
        deployment = deploy_contracts(
            w3,
            deployer,
            rate_lock_s=rate_lock,
            fund=recipients,
            fund_amount=amount,
            approved_images=images,
            progress=tx_printer,
            deployed=deployed,
        )
        services = extras.deploy(w3, deployer, deployment.token, who, deployed)
    except ReefError as exc:
        raise _half_way(exc, done, chain, planned=[*DEPLOYED_CONTRACTS, *extras.names()]) from exc
    except KeyboardInterrupt:
        # Ctrl-C between transactions: what is deployed is said once more, as for a failure.
        interrupted = ReefError("interrupted", hint="a transaction sent may still be mined")
        raise _half_way(
            interrupted, done, chain, planned=[*DEPLOYED_CONTRACTS, *extras.names()], code=130
        ) from None
    try:
        deployment.dump(out_path)
        recorded = None
        if taken is None:
            _record(home, w3, chain, deployment, rate_lock)
            recorded = str(home.root)
    except (OSError, ReefError) as exc:
        # Deployed but not written down: the addresses must not be lost with the error.
        tell(f"deployed, but not recorded: {exc}")
        tell(json.dumps(deployment.to_json()))
        raise typer.Exit(1) from exc
    if taken is not None:
        tell(f"note: {home.root} runs reef's own devnet: the deployment is not recorded there")
    data: dict[str, Any] = {
        "chain_id": deployment.chain_id,
        "rpc_url": rpc_url,
        "deployer": who,
        "token": deployment.token,
        "market": deployment.market,
        "kms_registry": deployment.kms_registry,
        "start_block": deployment.block,
        "rate_lock_s": rate_lock,
        "funded": [str(r) for r in recipients] if amount else [],
        "fund_amount": amount if recipients else 0,
        "approved_images": ["0x" + i.hex() for i in images],
        "deployment_file": str(out_path),
        "recorded_in": recorded,
        "services": services,
    }
    shown = dict(data)
    shown["fund_amount"] = rusd(amount, base_units=True) if recipients else "(none funded)"
    del shown["services"]
    for service, contracts in services.items():
        for field, address in contracts.items():
            shown[f"{service} {field.replace('_', ' ')}"] = address
    print_result(data, as_json, title="reef contracts deployed", shown=shown)
    if as_json:
        return
    earlier = None if previous is None else previous.deployment
    for was, what in ((replaced, str(out_path)), (earlier, f"{home.root}'s record")):
        if was is not None and was.market != deployment.market:
            tell(f"note: replaced in {what}: market {was.market} (chain {was.chain_id})")
    env = f"REEF_HOME={home.root} " if recorded else ""
    if recorded:
        tell(
            f"use it: commands run with REEF_HOME={home.root} use this chain and market, e.g. "
            f"`{env}reef wallet --key FILE`, `{env}reef provider run --key FILE`"
        )
    else:
        tell(
            f"use it: pass --rpc {rpc_url} --market {deployment.market} to each command "
            f"(reef provider run also --start-block {deployment.block})"
        )
    if "serverless" in services:
        jobs = services["serverless"]
        tell(f"serverless: pass --jobs {jobs['jobs_contract']} --code {jobs['code_contract']}")
    if "proofs" in services:
        tell(f"proofs: pass --proof-market {services['proofs']['market']}")


_SERVICES = ("serverless", "proofs")


@dataclass(frozen=True, kw_only=True)
class _Extras:
    """The contracts of reef's services ``--with`` asks for besides the market's."""

    serverless_verifier: str | None = None
    """With serverless: the statement signer the Jobs contract trusts."""
    proofs: bool = False
    matching_engine: str | None = None

    def names(self) -> list[str]:
        """The contracts deployed, as :func:`_half_way` names them."""
        names = ["serverless_jobs", "serverless_code"] if self.serverless_verifier else []
        return names + (["proof_market"] if self.proofs else [])

    def creations(self, *, placeholder: str, deployer: str) -> list[tuple[str, list[Any]]]:
        """Each creation's artifact name and constructor arguments, ``placeholder`` standing
        for the token (for :func:`reef.chain.estimate_deployment`)."""
        from reef.serverless import JobsParams

        found: list[tuple[str, list[Any]]] = []
        if self.serverless_verifier:
            args = [placeholder, self.serverless_verifier, *JobsParams().args()]
            found += [("ServerlessJobs", args), ("ServerlessCode", [])]
        if self.proofs:
            found.append(("ProofMarket", [placeholder, self.matching_engine or deployer]))
        return found

    def deploy(
        self,
        w3: Web3,
        deployer: Any,
        token: str,
        who: str,
        deployed: Callable[[str, Address, int | None], None],
    ) -> dict[str, dict[str, str]]:
        """Deploy them, paid in ``token``; their addresses by service and ``network.json``
        field (what ``reef up`` records for them)."""
        services: dict[str, dict[str, str]] = {}
        if self.serverless_verifier:
            from reef.serverless import ServerlessCodeClient, ServerlessJobsClient

            jobs = ServerlessJobsClient.deploy(
                w3, deployer, token=token, verifier=self.serverless_verifier, progress=tx_printer
            )
            deployed("serverless_jobs", jobs.address, None)
            code = ServerlessCodeClient.deploy(w3, deployer, progress=tx_printer)
            deployed("serverless_code", code.address, None)
            services["serverless"] = {"jobs_contract": jobs.address, "code_contract": code.address}
        if self.proofs:
            from reef.proofs import ProofMarketClient

            engine = self.matching_engine or who
            market = ProofMarketClient.deploy(
                w3, deployer, token=token, matching_engine=engine, progress=tx_printer
            )
            deployed("proof_market", market.address, None)
            services["proofs"] = {"market": market.address, "matching_engine": engine}
        return services


def _extras(asked: Sequence[str], verifier: str | None, engine: str | None) -> _Extras:
    """What ``--with`` asks for, checked with the flags each service needs.

    Raises:
        InputError: an unknown service, a missing or malformed address.
    """
    from reef.chain import parse_address

    names = {part.strip() for item in asked for part in item.split(",") if part.strip()}
    unknown = sorted(names - set(_SERVICES))
    if unknown:
        raise InputError(
            f"--with takes {' and '.join(_SERVICES)}, not {', '.join(unknown)}",
            hint="e.g. --with serverless,proofs",
        )
    if "serverless" in names and verifier is None:
        raise InputError(
            "--with serverless needs --serverless-verifier ADDR: the Jobs contract trusts "
            "attestation statements that address signs",
            hint="the address of your `reef verifier` key",
        )
    if verifier is not None and "serverless" not in names:
        raise InputError("--serverless-verifier is for --with serverless")
    if engine is not None and "proofs" not in names:
        raise InputError("--matching-engine is for --with proofs")
    return _Extras(
        serverless_verifier=(
            parse_address(verifier, name="--serverless-verifier")
            if "serverless" in names and verifier
            else None
        ),
        proofs="proofs" in names,
        matching_engine=None if engine is None else parse_address(engine, name="--matching-engine"),
    )


def _balance(w3: Web3, who: str, url: str) -> int:
    from reef.chain._tx import translate_errors

    with translate_errors(f"reading the balance of {who} at {url}"):
        return int(w3.eth.get_balance(who))  # type: ignore[arg-type]


def _gwei(wei: int) -> str:
    from reef.chain import format_amount

    return format_amount(wei, decimals=9)


def _half_way(
    error: ReefError,
    done: dict[str, tuple[Address, int | None]],
    chain: _Chain,
    *,
    planned: list[str],
    code: int = 1,
) -> typer.Exit:
    """Report a deployment that failed after some contracts were deployed: what is on the chain
    (so nothing is lost) and how to go on; the Exit to raise."""
    from reef.cli._output import fail

    if not done:
        return fail(error, code=code)
    missing = [name for name in planned if name not in done]
    tell(f"error: {error.message}")
    if error.hint:
        tell(f"hint: {error.hint}")
    tell(f"deployed on chain {chain.chain_id} before the failure (nothing records them):")
    for name, (address, block) in done.items():
        where = f"  block {block}" if block is not None else ""
        tell(f"  {name:<13}{address}{where}")
    if missing:
        tell(
            f"not deployed: {', '.join(missing)}. The contracts above hold no funds and nothing "
            "points at them; fix the cause and run the same command again: it deploys a new set"
        )
    else:
        tell(
            "every contract is deployed but funding stopped: the deployer owns the token and "
            "can mint(address,uint256) to the rest; or run the command again for a new set"
        )
    return typer.Exit(code)


def _record(
    home: ReefHome, w3: Web3, chain: _Chain, deployment: Deployment, rate_lock: int
) -> None:
    """Record ``deployment`` in ``home`` where every command looks for the chain
    (``chain/devnet.json``, with no dev accounts)."""
    from reef.chain import DevnetInfo
    from reef.chain._tx import translate_errors
    from reef.chain.devnet._store import write_devnet_info

    with translate_errors(f"reading the genesis block at {chain.url}"):
        genesis = int(w3.eth.get_block(0)["timestamp"])
        head = int(w3.eth.block_number)
    info = DevnetInfo(
        chain_id=deployment.chain_id,
        accounts=(),
        genesis_timestamp=genesis,
        rate_lock_s=rate_lock,
        deployment=deployment,
        rpc_url=chain.url,
        blocks=head,
    )
    home.ensure()
    write_devnet_info(home, info)
