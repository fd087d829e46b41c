"""`reef provider ...`: run a provider's control plane, register it, or run its indexer alone."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from reef.cli._common import market_session, serve_until_stopped
from reef.cli._options import (
    Flags,
    Insecure,
    ListenHost,
    ListenPort,
    PollInterval,
    with_flags,
)
from reef.cli._output import failing, print_result, say, tell
from reef.cli._root import command_group
from reef.errors import ConfigError, InputError

if TYPE_CHECKING:
    from reef.market import PrivateTargets
    from reef.node import ProviderService

__all__ = ["register"]

app, register = command_group("provider")


KeyOption = typer.Option("--key", help="File with the provider's private key (hex).")
DbOption = typer.Option(
    "--db", help="SQLAlchemy URL of the indexer database (default: SQLite in $REEF_HOME/provider)."
)
_Confirmations = Annotated[
    int, typer.Option("--confirmations", min=0, help="Blocks a log must be deep.")
]
_StartBlock = Annotated[
    int | None, typer.Option("--start-block", min=0, help="First block to index.")
]


@app.command("run")
@with_flags("rpc", "market")
def run(
    flags: Flags,
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
    host: ListenHost = "127.0.0.1",
    port: ListenPort = 8080,
    public_host: Annotated[
        str, typer.Option("--public-host", help="The address clients reach enclaves at.")
    ] = "127.0.0.1",
    allow_images: Annotated[
        Path | None, typer.Option("--allow-images", help="Run only these image SHA-256s.")
    ] = None,
    deny_images: Annotated[
        Path | None, typer.Option("--deny-images", help="Never run these image SHA-256s.")
    ] = None,
    private_images: Annotated[
        str,
        typer.Option(
            "--private-images",
            metavar="by-hash|never|allow",
            help="Image URLs at loopback or private addresses: only content-addressed ones "
            "(by-hash), none, or all (a tenant's URL then reaches this host's own services).",
        ),
    ] = "by-hash",
    trusted_networks: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-network",
            metavar="CIDR",
            help="A network image URLs may reach as if public (your own image store); repeatable.",
        ),
    ] = None,
    allow_owners: Annotated[
        Path | None, typer.Option("--allow-owners", help="Accept jobs only from these owners.")
    ] = None,
    deny_owners: Annotated[
        Path | None, typer.Option("--deny-owners", help="Refuse jobs from these owners.")
    ] = None,
    db: Annotated[str | None, DbOption] = None,
    confirmations: _Confirmations = 0,
    start_block: _StartBlock = None,
    safety_margin: Annotated[
        int,
        typer.Option(
            "--safety-margin", min=0, help="Stop enclaves this long before deposits run out."
        ),
    ] = 300,
    memory_budget: Annotated[
        int | None,
        typer.Option(
            "--memory-budget",
            min=1,
            metavar="MIB",
            help="Memory all enclaves may ask for together, by default this host's; "
            "a launch past it waits.",
        ),
    ] = None,
    insecure: Insecure = False,
) -> None:
    """Run the control plane in the foreground until Ctrl-C (enclaves keep running)."""
    from reef.chain import parse_address
    from reef.home import ReefHome
    from reef.node import load_key_file, locate_market

    home = ReefHome.from_env().ensure()
    with failing(code=2):
        if private_images not in ("by-hash", "never", "allow"):
            raise InputError(
                f"--private-images is by-hash, never or allow, not {private_images!r}",
                hint="by-hash (the default) reaches private addresses only for content-addressed "
                "image URLs",
            )
    with failing():
        # What the flags name is checked before the provider's stack is imported (web3, the
        # control plane, the backend: seconds on a busy host), so a missing --market or key
        # file is said at once.
        where = locate_market(home, rpc=flags.rpc, market=flags.market)
        if key is not None:
            address = parse_address(load_key_file(key).address, name="--key")
        elif provider is not None:
            address = parse_address(provider, name="provider")
        elif where.network is not None:
            address = where.network.provider
        else:
            raise ConfigError("which provider is this?", hint="pass --key FILE or --provider ADDR")

    from reef.enclave import open_backend
    from reef.market import BackendRunner, ImagePolicy, RateCard, read_owner_list
    from reef.node import ProviderDirs, ProviderService, ProviderSettings

    with failing():
        dirs = ProviderDirs(home)
        card = RateCard.from_files(rates, bandwidth) if rates else RateCard.dev()
        settings = ProviderSettings(
            rpc_url=where.rpc_url,
            market=where.market_address,
            provider=address,
            db_url=db or dirs.db_url,
            cache_dir=dirs.cache_dir,
            rates=card,
            image_policy=ImagePolicy.from_files(
                allow_images,
                deny_images,
                private=cast("PrivateTargets", private_images),
                trusted=trusted_networks or (),
            ),
            allow_owners=read_owner_list(allow_owners) if allow_owners else None,
            deny_owners=read_owner_list(deny_owners) if deny_owners else frozenset(),
            safety_margin_s=safety_margin,
            memory_budget_mib=memory_budget,
            confirmations=confirmations,
            start_block=where.start_block if start_block is None else start_block,
            host=host,
            port=port,
            public_host=public_host,
        )
        runner = BackendRunner(
            open_backend(home, insecure=insecure, spare=True), dirs.launch_dir, provider=address
        )
        service = ProviderService(settings, runner)
        registered_cp = _registered_control_plane(where.rpc_url, where.market_address, address)
    serve_until_stopped(
        functools.partial(_start, service),
        functools.partial(_ready, registered_cp=registered_cp, key=key),
        stopping="stopping (enclaves keep running; a restart reconciles them)",
    )


async def _start(service: ProviderService) -> ProviderService:
    """Start ``service``; closed (its backend too) when it cannot start."""
    try:
        return await service.start()
    except BaseException:
        await service.aclose()
        raise


def _registered_control_plane(rpc_url: str, market: str, provider: str) -> str | None:
    """The control plane URL the market sends ``provider``'s tenants to (``None``: unregistered).

    Raises:
        ChainError: the node cannot be read.
    """
    from reef.chain import MarketClient
    from reef.node import connect

    return MarketClient(connect(rpc_url), market).provider(provider)


def _ready(service: ProviderService, *, registered_cp: str | None, key: Path | None) -> None:
    s = service.settings
    say(f"control plane  {service.url}")
    say(f"provider       {s.provider}")
    say(f"market         {s.market} on {s.rpc_url}")
    say(f"regions        {', '.join(s.rates.allowed_regions)}")
    # An operator's first run is usually before registering: without it no tenant finds this
    # control plane (`reef deploy` reads the URL from the market), yet everything looked ready.
    say(f"registered     {registered_cp or 'no'}")
    if registered_cp is None:
        tell(
            "hint: the market names no control plane for this provider, so no tenant can find "
            "it; register it (with the URL tenants reach it at): reef provider register "
            f"--cp {service.url} --rpc {s.rpc_url} --market {s.market} --key {key or 'FILE'}"
        )
    elif registered_cp.rstrip("/") != service.url.rstrip("/"):
        tell(
            f"note: the market sends tenants to {registered_cp}, not {service.url}: fine behind "
            "a proxy; otherwise `reef provider register --cp URL` updates it"
        )
    say("ready")


@app.command("register")
@with_flags("rpc", "market", "key", "as_json")
def register_cmd(
    flags: Flags, cp: Annotated[str, typer.Option("--cp", help="The control plane's public URL.")]
) -> None:
    """Register this account as a provider whose control plane is at --cp (or update its URL)."""
    from reef.node import register_provider

    with failing():
        session = market_session(flags.rpc, flags.market, flags.key)
        action, result = register_provider(session.market(), cp)
    out = {
        "provider": session.address,
        "cp": cp,
        "action": action,
        "tx_hash": result.tx_hash if result else "",
    }
    print_result(out, flags.as_json)


@app.command("index")
@with_flags("rpc", "market", "as_json")
def index_cmd(
    flags: Flags,
    db: Annotated[str | None, DbOption] = None,
    confirmations: _Confirmations = 0,
    start_block: _StartBlock = None,
    block_range: Annotated[int, typer.Option("--range", min=1, help="Blocks per getLogs.")] = 500,
    follow: Annotated[
        bool, typer.Option("--follow/--once", help="Keep indexing new blocks.")
    ] = False,
    interval: PollInterval = 1.0,
) -> None:
    """Copy the market's events into the database (what `provider run` does continuously)."""
    from reef.chain import Indexer, Web3BlockSource
    from reef.home import ReefHome
    from reef.node import ProviderDirs, connect, locate_market

    home = ReefHome.from_env().ensure()
    with failing():
        where = locate_market(home, rpc=flags.rpc, market=flags.market)
        indexer = Indexer(
            Web3BlockSource(connect(where.rpc_url)),
            db or ProviderDirs(home).db_url,
            contract=where.market_address,
            start_block=where.start_block if start_block is None else start_block,
            confirmations=confirmations,
            block_range=block_range,
        )
        stored = indexer.poll()
        while follow:
            time.sleep(interval)
            stored += indexer.poll()
        checkpoint = indexer.checkpoint()
    out = {
        "stored": stored,
        "last_block": checkpoint.last_block if checkpoint else None,
        "events": checkpoint.events if checkpoint else 0,
    }
    print_result(out, flags.as_json)
