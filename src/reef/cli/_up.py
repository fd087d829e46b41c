"""`reef up`: start the whole local network in the foreground; Ctrl-C stops it all."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated

import typer

from reef.cli._common import stop_signals
from reef.cli._options import FreshChain, Insecure, Json, RateLockOption
from reef.cli._output import failing, print_json, say
from reef.errors import ConfigError, ReefError

if TYPE_CHECKING:
    from reef.home import ReefHome
    from reef.node import LocalNetwork, NetworkInfo

__all__ = ["name_the_port_flag", "refuse_a_second_network", "register"]


def register(root: typer.Typer) -> None:
    root.command("up")(up)


def _quiet(_text: str) -> None:
    return None


def _check_chain(value: str) -> str:
    if value not in ("devnet", "anvil"):
        raise typer.BadParameter(f"{value!r} is not one of 'devnet', 'anvil'")
    return value


def up(
    host: Annotated[str, typer.Option("--host", help="Address every service listens on.")] = (
        "127.0.0.1"
    ),
    rpc_port: Annotated[int, typer.Option("--rpc-port", help="Devnet JSON-RPC port.")] = 8545,
    cp_port: Annotated[int, typer.Option("--cp-port", help="Control plane port.")] = 8080,
    store_port: Annotated[int, typer.Option("--store-port", help="Image store port.")] = 8090,
    verifier_port: Annotated[
        int, typer.Option("--verifier-port", help="Attestation verifier port.")
    ] = 1400,
    kms_port: Annotated[int, typer.Option("--kms-port", help="KMS root Scallop port.")] = 1100,
    kms_public_port: Annotated[
        int, typer.Option("--kms-public-port", help="KMS root public HTTP port.")
    ] = 1101,
    rate_lock: Annotated[int, RateLockOption] = 300,
    safety_margin: Annotated[
        int | None,
        typer.Option(
            "--safety-margin",
            min=0,
            help="Stop enclaves this many seconds before their deposit runs out "
            "(default: the rate lock).",
        ),
    ] = None,
    fresh: FreshChain = False,
    no_kms: Annotated[
        bool, typer.Option("--no-kms", help="Do not start the KMS root enclave.")
    ] = False,
    insecure: Insecure = False,
    chain: Annotated[
        str,
        typer.Option(
            "--chain",
            callback=_check_chain,
            help="The chain: the embedded devnet, or anvil (npm @foundry-rs/anvil).",
        ),
    ] = "devnet",
    no_serverless: Annotated[
        bool, typer.Option("--no-serverless", help="Do not start serverless executors.")
    ] = False,
    no_proofs: Annotated[
        bool, typer.Option("--no-proofs", help="Do not start the proof market.")
    ] = False,
    no_dashboard: Annotated[
        bool, typer.Option("--no-dashboard", help="Do not serve the dashboard.")
    ] = False,
    dashboard_port: Annotated[int, typer.Option("--dashboard-port", help="Dashboard port.")] = 8888,
    json_output: Json = False,
) -> None:
    """Run the local network: chain, provider, KMS, serverless, proof market, dashboard.

    The devnet (or anvil) with reef's contracts, the image store, the verifier, the KMS root
    enclave and a provider, then serverless executors, the proof market and the dashboard.

    Ports of 0 pick free ones. Prints the endpoints and funded dev accounts, then `ready`.
    Ctrl-C stops every enclave and service; chain state persists under $REEF_HOME.
    """
    import asyncio

    from reef.home import ReefHome
    from reef.node import LocalNetwork, UpSettings, standard_extensions

    settings = UpSettings(
        host=host,
        rpc_port=rpc_port,
        cp_port=cp_port,
        store_port=store_port,
        verifier_port=verifier_port,
        kms_scallop_port=kms_port,
        kms_public_port=kms_public_port,
        rate_lock_s=rate_lock,
        safety_margin_s=safety_margin,
        fresh=fresh,
        kms=not no_kms,
        insecure=insecure,
        chain="anvil" if chain == "anvil" else "devnet",
    )
    extensions = standard_extensions(
        serverless=not no_serverless,
        proofs=not no_proofs,
        dashboard=not no_dashboard,
        dashboard_port=dashboard_port,
    )
    home = ReefHome.from_env()
    with failing():
        refuse_a_second_network(home)
    network = LocalNetwork(home, settings, extensions)
    port_flags = {
        "--rpc-port": rpc_port,
        "--cp-port": cp_port,
        "--store-port": store_port,
        "--verifier-port": verifier_port,
        "--kms-port": kms_port,
        "--kms-public-port": kms_public_port,
        "--dashboard-port": dashboard_port,
    }
    with failing():  # a second Ctrl-C while stopping: Typer exits 130
        try:
            network.check_ports({} if no_dashboard else {"dashboard": dashboard_port})
            asyncio.run(_run(network, json_output=json_output))
        except ReefError as exc:
            name_the_port_flag(exc, port_flags)
            raise


def refuse_a_second_network(home: ReefHome) -> None:
    """Refuse at once to start a network in a home whose chain is running.

    The devnet's lock refuses it too, but only after a few seconds of starting, and stopping
    that failed start removed the running network's ``network.json``, so every other command
    then lost it ("which provider? none is configured"). A newcomer runs `make up` a second time
    in the other terminal easily.

    Raises:
        ConfigError: the chain that ``$REEF_HOME/chain/devnet.json`` names answers.
    """
    from reef.chain import read_devnet_info

    try:
        info = read_devnet_info(home)
    except ReefError:
        return  # no chain was started here (or its file is unreadable: starting says so)
    if info.probe() is None:
        return
    raise ConfigError(
        f"a reef network already runs in {home.root}: its chain answers at {info.rpc_url}",
        hint="use it: every reef command finds it there (a second terminal needs only the same "
        "REEF_HOME); stop it with Ctrl-C where it runs, or give another network its own "
        "REEF_HOME",
    )


# A service reef serves itself, and an enclave's published port (the KMS root's): the local
# backend's hint names `reef enclave run`'s --port, which `reef up` does not have.
_BUSY_PORT = re.compile(
    r"cannot listen on \S+:(\d+) .*: the port is in use|host port (\d+) is already in use"
)


def name_the_port_flag(error: ReefError, port_flags: Mapping[str, int]) -> None:
    """Point the hint of ``error``, a service that found its port in use, at the one flag of
    ``reef up`` that moves that service (the serving floor's hint can only say "the matching
    --…-port flag", which is no flag a newcomer can type). Other errors are left as they are.
    """
    busy = _BUSY_PORT.search(error.message)
    if busy is None:
        return
    port = int(busy.group(1) or busy.group(2))
    flags = [flag for flag, value in port_flags.items() if value == port]
    if len(flags) != 1:
        return
    error.hint = (
        f"another process uses port {port} (a `reef up` under another $REEF_HOME?): stop it, "
        f"or start this network with {flags[0]} PORT (0 picks a free one)"
    )


async def _run(network: LocalNetwork, *, json_output: bool) -> None:
    import asyncio

    with stop_signals() as stop:
        starting = asyncio.create_task(network.start(progress=_quiet if json_output else say))
        waiter = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({starting, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                say("interrupted while starting; stopping ...")
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError, ReefError):
                    await starting
                return
            info = starting.result()
            _announce(network, info, json_output=json_output)
            await waiter
        finally:
            waiter.cancel()
            await network.aclose(progress=_quiet if json_output else say)
    say("stopped; chain state is kept in $REEF_HOME/chain (`reef up --fresh` starts over)")


def _service_rows(info: NetworkInfo) -> list[tuple[str, str]]:
    """One line per extension that started: where to reach it."""
    rows: list[tuple[str, str]] = []
    serverless = info.services.get("serverless")
    if serverless:
        gateways = ", ".join(str(g) for g in serverless.get("gateways") or ()) or "-"
        rows.append(("serverless", f"jobs {serverless.get('jobs_contract')}  gateways {gateways}"))
    proofs = info.services.get("proofs")
    if proofs:
        rows.append(
            (
                "proof market",
                f"{proofs.get('market')}  example market {proofs.get('example_market')}, "
                f"prover {proofs.get('prover')}",
            )
        )
    dashboard = info.services.get("dashboard")
    if dashboard:
        rows.append(("dashboard", str(dashboard.get("manage_url") or dashboard.get("url"))))
    return rows


def _account_roles(info: NetworkInfo) -> dict[str, str]:
    """Which dev accounts the extensions act with, so a user does not spend from them."""
    roles: dict[str, str] = {}
    proofs = info.services.get("proofs") or {}
    for key, role in (("engine", "proof matching engine"), ("prover", "prover")):
        if isinstance(proofs.get(key), str):
            roles[str(proofs[key]).lower()] = role
    for executor in (info.services.get("serverless") or {}).get("executors") or ():
        owner = executor.get("owner") if isinstance(executor, dict) else None
        if isinstance(owner, str):
            roles[owner.lower()] = "serverless executor operator"
    return roles


DEV_KEYS_WARNING = "dev only: these keys come from a public mnemonic; never use them elsewhere"


def _announce(network: LocalNetwork, info: NetworkInfo, *, json_output: bool) -> None:
    from reef.node import PROVIDER_ACCOUNT

    accounts = network.accounts
    if json_output:
        print_json(
            {
                **info.to_json(),
                "accounts": [a.to_json() for a in accounts],
                "accounts_warning": DEV_KEYS_WARNING,
            }
        )
        say("ready")
        return
    rows = [
        ("chain (JSON-RPC)", f"{info.rpc_url}  chain id {info.chain_id}"),
        ("market", info.deployment.market),
        ("token (rUSD)", info.deployment.token),
        ("KMS registry", info.deployment.kms_registry),
        ("control plane", f"{info.control_plane}  provider {info.provider}"),
        ("image store", info.image_store),
        ("verifier", info.verifier or "-"),
        ("KMS root", f"{info.kms['public']} (Scallop {info.kms['scallop']})" if info.kms else "-"),
        ("rate lock", f"{info.rate_lock_s} s; enclaves stop {info.safety_margin_s} s early"),
        *_service_rows(info),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        say(f"{name:<{width}}  {value}")
    say()
    say(f"dev accounts ({DEV_KEYS_WARNING}):")
    roles = _account_roles(info)
    for account in accounts:
        role = roles.get(account.address.lower(), "")
        role = "provider" if account.index == PROVIDER_ACCOUNT else role
        role = "default for reef deploy/jobs" if account.index == 0 else role
        suffix = f" ({role})" if role else ""
        say(f"  {account.index}  {account.address}  0x{account.private_key.hex()}{suffix}")
    say()
    say("try: reef examples hello ./hello && reef deploy ./hello --duration 1h")
    say("ready")
