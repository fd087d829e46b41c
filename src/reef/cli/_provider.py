"""`reef provider ...`: run a provider's control plane, register it, or run its indexer alone."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reef.cli._output import JsonOption, fail, print_json, print_mapping
from reef.errors import ConfigError, ReefError

if TYPE_CHECKING:
    from reef.home import ReefHome
    from reef.node import ProviderService

__all__ = ["register"]

app = typer.Typer(
    help="Run a provider: its control plane launches enclaves for the market's paying jobs.",
    no_args_is_help=True,
)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="provider")


def _say(text: str = "") -> None:
    typer.echo(text)


RpcOption = typer.Option("--rpc", help="JSON-RPC URL (default: the local network's).")
MarketOption = typer.Option("--market", help="Market address (default: the local network's).")
KeyOption = typer.Option("--key", help="File with the provider's private key (hex).")
DbOption = typer.Option(
    "--db", help="SQLAlchemy URL of the indexer database (default: SQLite in $REEF_HOME/provider)."
)


def _chain_defaults(home: ReefHome, rpc: str | None, market: str | None) -> tuple[str, str, int]:
    """RPC URL, market address and the market's deployment block, flags first."""
    from reef.chain import read_devnet_info
    from reef.node import NetworkInfo

    network = None
    with contextlib.suppress(ConfigError):
        network = NetworkInfo.load(home)
    devnet = None
    with contextlib.suppress(ConfigError):
        devnet = read_devnet_info(home)
    deployment = network.deployment if network else (devnet.deployment if devnet else None)
    rpc_url = rpc or (network.rpc_url if network else None) or (devnet.rpc_url if devnet else None)
    if not rpc_url:
        raise ConfigError("no chain endpoint known", hint="pass --rpc URL")
    address = market or (deployment.market if deployment else None)
    if not address:
        raise ConfigError("no market address known", hint="pass --market ADDR")
    start = deployment.block if deployment and deployment.market.lower() == address.lower() else 0
    return rpc_url, address, start


@app.command("run")
def run(
    rpc: Annotated[str | None, RpcOption] = None,
    market: Annotated[str | None, MarketOption] = None,
    key: Annotated[Path | None, KeyOption] = None,
    provider: Annotated[
        str | None, typer.Option("--provider", help="The provider's address (instead of --key).")
    ] = None,
    rates: Annotated[
        Path | None,
        typer.Option("--rates", help="Oyster rates file (default: dev.small, dev.medium)."),
    ] = None,
    bandwidth: Annotated[
        Path | None, typer.Option("--bandwidth", help="Oyster bandwidth rates file.")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Control plane port.")] = 8080,
    public_host: Annotated[
        str, typer.Option("--public-host", help="The address clients reach enclaves at.")
    ] = "127.0.0.1",
    allow_images: Annotated[
        Path | None, typer.Option("--allow-images", help="Run only these image SHA-256s.")
    ] = None,
    deny_images: Annotated[
        Path | None, typer.Option("--deny-images", help="Never run these image SHA-256s.")
    ] = None,
    allow_owners: Annotated[
        Path | None, typer.Option("--allow-owners", help="Accept jobs only from these owners.")
    ] = None,
    deny_owners: Annotated[
        Path | None, typer.Option("--deny-owners", help="Refuse jobs from these owners.")
    ] = None,
    db: Annotated[str | None, DbOption] = None,
    confirmations: Annotated[
        int, typer.Option("--confirmations", min=0, help="Blocks a log must be deep.")
    ] = 0,
    start_block: Annotated[
        int | None, typer.Option("--start-block", min=0, help="First block to index.")
    ] = None,
    safety_margin: Annotated[
        int,
        typer.Option(
            "--safety-margin", min=0, help="Stop enclaves this long before deposits run out."
        ),
    ] = 300,
) -> None:
    """Run the control plane in the foreground until Ctrl-C (enclaves keep running)."""
    from reef.chain import parse_address
    from reef.enclave import LocalBackend
    from reef.home import ReefHome
    from reef.market import ImagePolicy, LocalRunner, RateCard, read_list_file
    from reef.node import NetworkInfo, ProviderService, ProviderSettings, load_key_file

    home = ReefHome.from_env().ensure()
    try:
        rpc_url, market_address, deployed_at = _chain_defaults(home, rpc, market)
        if key is not None:
            address = str(load_key_file(key).address)
        elif provider is not None:
            address = parse_address(provider, name="provider")
        else:
            try:
                address = NetworkInfo.load(home).provider
            except ConfigError as exc:
                raise ConfigError(
                    "which provider is this?", hint="pass --key FILE or --provider ADDR"
                ) from exc
        card = RateCard.from_files(rates, bandwidth) if rates else RateCard.dev()
        settings = ProviderSettings(
            rpc_url=rpc_url,
            market=market_address,
            provider=address,
            db_url=db or f"sqlite:///{home.path('provider', 'index.db')}",
            cache_dir=home.path("provider", "cache", ".keep").parent,
            rates=card,
            image_policy=ImagePolicy.from_files(allow_images, deny_images),
            allow_owners=read_list_file(allow_owners, kind="address") if allow_owners else None,
            deny_owners=(
                read_list_file(deny_owners, kind="address") if deny_owners else frozenset()
            ),
            safety_margin_s=safety_margin,
            confirmations=confirmations,
            start_block=deployed_at if start_block is None else start_block,
            host=host,
            port=port,
            public_host=public_host,
        )
        runner = LocalRunner(LocalBackend(home), home.path("provider", "launch", ".keep").parent)
        service = ProviderService(settings, runner)
        asyncio.run(_serve(service))
    except ReefError as exc:
        raise fail(exc) from exc
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def _serve(service: ProviderService) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.start()
        s = service.settings
        _say(f"control plane  {service.url}")
        _say(f"provider       {s.provider}")
        _say(f"market         {s.market} on {s.rpc_url}")
        _say(f"regions        {', '.join(s.rates.allowed_regions)}")
        _say("ready")
        await stop.wait()
        _say("stopping (enclaves keep running; a restart reconciles them)")
    finally:
        await service.stop(stop_enclaves=False)


@app.command("register")
def register_cmd(
    cp: Annotated[str, typer.Option("--cp", help="The control plane's public URL.")],
    rpc: Annotated[str | None, RpcOption] = None,
    market: Annotated[str | None, MarketOption] = None,
    key: Annotated[Path | None, KeyOption] = None,
    json_output: bool = JsonOption,
) -> None:
    """Register this account as a provider whose control plane is at --cp (or update its URL)."""
    from reef.home import ReefHome
    from reef.node import open_session

    try:
        session = open_session(ReefHome.from_env(), rpc=rpc, market=market, key=key)
        client = session.market()
        current = client.provider(session.address)
        if current is None:
            result = client.add_provider(cp)
            action = "registered"
        elif current != cp:
            result = client.update_provider(cp)
            action = "updated"
        else:
            result, action = None, "unchanged"
    except ReefError as exc:
        raise fail(exc) from exc
    out = {
        "provider": session.address,
        "cp": cp,
        "action": action,
        "tx_hash": result.tx_hash if result else "",
    }
    if json_output:
        print_json(out)
    else:
        print_mapping(out)


@app.command("index")
def index_cmd(
    rpc: Annotated[str | None, RpcOption] = None,
    market: Annotated[str | None, MarketOption] = None,
    db: Annotated[str | None, DbOption] = None,
    confirmations: Annotated[int, typer.Option("--confirmations", min=0)] = 0,
    start_block: Annotated[int | None, typer.Option("--start-block", min=0)] = None,
    block_range: Annotated[int, typer.Option("--range", min=1, help="Blocks per getLogs.")] = 500,
    follow: Annotated[
        bool, typer.Option("--follow/--once", help="Keep indexing new blocks.")
    ] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between polls.")] = 1.0,
    json_output: bool = JsonOption,
) -> None:
    """Copy the market's events into the database (what `provider run` does continuously)."""
    from reef.chain import Indexer, Web3BlockSource
    from reef.home import ReefHome
    from reef.node import connect

    home = ReefHome.from_env().ensure()
    try:
        rpc_url, market_address, deployed_at = _chain_defaults(home, rpc, market)
        indexer = Indexer(
            Web3BlockSource(connect(rpc_url)),
            db or f"sqlite:///{home.path('provider', 'index.db')}",
            contract=market_address,
            start_block=deployed_at if start_block is None else start_block,
            confirmations=confirmations,
            block_range=block_range,
        )
        stored = indexer.poll()
        while follow:
            time.sleep(interval)
            stored += indexer.poll()
        checkpoint = indexer.checkpoint()
    except ReefError as exc:
        raise fail(exc) from exc
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    out = {
        "stored": stored,
        "last_block": checkpoint.last_block if checkpoint else None,
        "events": checkpoint.events if checkpoint else 0,
    }
    if json_output:
        print_json(out)
    else:
        print_mapping(out)
