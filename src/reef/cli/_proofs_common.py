"""What ``reef proofs`` and ``reef prover`` share: the proof market a command acts on
(:func:`proofs_ctx`, from ``network.json`` or ``--rpc``/``--proof-market``, sending from
``--key``), a service's ``--network`` file, the one-transaction command (:func:`market_command`),
running a polling service until stopped, and rUSD amounts and durations as users type them, with
the hints that say the unit.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from reef.cli._options import Flags, with_flags
from reef.cli._output import failing, note, print_result
from reef.errors import InputError

if TYPE_CHECKING:
    from reef.node import ServiceSession
    from reef.proofs import ProofMarketClient, ServiceSettings, SnarkjsRuntime

__all__ = [
    "AMOUNT_HINT",
    "ArtifactsDir",
    "AskId",
    "MarketCommand",
    "MarketId",
    "NetworkFile",
    "ProofsCtx",
    "SnarkjsDir",
    "failing_call",
    "fmt_rusd",
    "market_command",
    "market_row",
    "network_ctx",
    "network_file",
    "on_market",
    "parse_positive_rusd",
    "parse_rusd",
    "parse_seconds",
    "proofs_ctx",
    "run_until_stopped",
]

T = TypeVar("T")


@dataclass
class ProofsCtx:
    """The proof market a command acts on (:func:`proofs_ctx`)."""

    session: ServiceSession
    address: str
    service: dict[str, Any]
    """What ``network.json`` says of the proofs service (a copy: a command may add to it)."""
    again: str = ""
    """The chain, market and account flags the command was given (:meth:`Flags.again`), for a
    next step it prints: run as printed, it must act as the same account on the same market."""

    def client(self) -> ProofMarketClient:
        from reef.proofs import ProofMarketClient

        return ProofMarketClient(self.session.w3, self.address, account=self.session.account)

    def store_root(self) -> Path:
        root = self.service.get("artifacts")
        return Path(root) if root else self.session.home.root / "proofs" / "artifacts"

    def private_key(self) -> bytes | None:
        """The sending account's secret (None for a command that only reads)."""
        account = self.session.account
        return None if account is None else bytes(account.key)

    def snarkjs(self, project: Path | None) -> SnarkjsRuntime:
        """The snarkjs in ``project`` (``--snarkjs``), else reef's own (installed on first use)."""
        from reef.proofs import ensure_snarkjs, snarkjs_in

        return ensure_snarkjs(self.session.home) if project is None else snarkjs_in(project)


def proofs_ctx(flags: Flags, *, account: bool = True) -> ProofsCtx:
    """The proof market ``--proof-market`` names (else ``reef up``'s), on the chain ``--rpc``
    names, sending from ``--key`` when ``account``: :func:`reef.node.open_service`.

    Raises:
        ConfigError: nothing says where the proof market is, or no account is available.
        RPCError: the endpoint does not answer.
    """
    from reef.home import ReefHome
    from reef.node import open_service

    session = open_service(
        ReefHome.from_env(),
        "proofs",
        {"market": flags.proof_market},
        rpc=flags.rpc,
        key=flags.key,
        need_account=account,
        missing="no proof market known",
        hint="start the network with `reef up` (it deploys one), or pass --proof-market ADDR",
        chain_hint="start the network with `reef up`, or pass --rpc URL and --proof-market ADDR",
    )
    return ProofsCtx(
        session,
        str(session.contracts["market"]),
        dict(session.contracts.entry),
        again=flags.again("rpc", "proof_market", "key"),
    )


SnarkjsDir = Annotated[
    Path | None,
    typer.Option(
        "--snarkjs",
        help="A directory whose node_modules has the pinned snarkjs "
        "(default: reef's own, installed on first use).",
    ),
]

ArtifactsDir = Annotated[
    Path | None,
    typer.Option(
        "--artifacts",
        help="The markets' circuit files by SHA-256 (default: "
        "reef up's store; in an enclave, the copy in its image).",
    ),
]

NetworkFile = Annotated[
    Path | None,
    typer.Option(
        "--network",
        help="A JSON file naming the chain (rpc, proof_market, from_block): what `reef up` hands "
        "its enclaves as an init param. URLs on 127.0.0.1 are reached through "
        "$REEF_HOST_ADDR inside an enclave.",
    ),
]


def network_file(path: Path | None) -> ServiceSettings:
    """The settings a network file gives (none without one), as seen from here: inside an
    enclave (``$REEF_HOST_ADDR`` set) its loopback URLs go through the host's address.

    Raises:
        InputError: the file is unreadable, not a JSON object, or a field has the wrong type.
    """
    import os

    from reef.proofs import ServiceSettings

    if path is None:
        return ServiceSettings()
    return ServiceSettings.read(path).via_host(os.environ.get("REEF_HOST_ADDR"))


def network_ctx(
    given: ServiceSettings, flags: Flags, key: Path | None, *, account: bool = True
) -> ProofsCtx:
    """The proof market a service command's flags and its network file (read by
    :func:`network_file`) name, sending from ``key``: the flags win; the file's ``from_block``
    stands in for a start block reef up did not record.

    Raises:
        ConfigError: nothing says where the proof market is.
    """
    ctx = proofs_ctx(
        Flags(
            rpc=flags.rpc or given.rpc,
            proof_market=flags.proof_market or given.proof_market,
            key=key,
        ),
        account=account,
    )
    if given.from_block is not None and "start_block" not in ctx.service:
        ctx.service["start_block"] = given.from_block
    return ctx


def failing_call(fn: Any) -> Any:
    with failing():
        return fn()


def on_market(flags: Flags, do: Callable[[ProofsCtx], T], *, account: bool = True) -> T:
    """What ``do`` returns on the proof market the flags name (sending from ``--key`` when
    ``account``); a reef error on the way ends the command (exit 1, the message on stderr)."""
    result: T = failing_call(lambda: do(proofs_ctx(flags, account=account)))
    return result


MarketCommand = Callable[..., dict[str, Any]]


def market_command(
    group: typer.Typer,
    name: str,
    *,
    title: str,
    shown: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Callable[[MarketCommand], MarketCommand]:
    """Make ``do(ctx, ...)`` the command ``name`` of ``group``: a transaction on the proof market
    (``--rpc``, ``--proof-market``, sent from ``--key``) whose result is printed (a table titled
    ``title``, or ``--json``; ``shown`` makes the table's rows from the result, when people read
    them otherwise); a reef error ends it (exit 1). Typer sees ``do``'s parameters
    after ``ctx``, then the shared flags; ``do`` itself is returned as it is::

        @market_command(prover_app, "leave", title="leave")
        def prover_leave(ctx: ProofsCtx, market_id: MarketId) -> dict[str, Any]: ...
    """

    def decorate(do: MarketCommand) -> MarketCommand:
        own = inspect.signature(do, eval_str=True)
        flags = inspect.Parameter(
            "flags", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Flags
        )

        def command(flags: Flags, **kwargs: Any) -> None:
            result = on_market(flags, lambda ctx: do(ctx, **kwargs))
            rows = None if shown is None else shown(result)
            print_result(result, flags.as_json, title=title, shown=rows)

        command.__doc__, command.__name__ = do.__doc__, do.__name__
        command.__signature__ = own.replace(  # type: ignore[attr-defined]
            parameters=[flags, *list(own.parameters.values())[1:]], return_annotation=None
        )
        group.command(name)(with_flags("rpc", "proof_market", "key", "as_json")(command))
        return do

    return decorate


def run_until_stopped(service: Any, interval: float, doing: str) -> None:
    """Run a polling service (the matching engine, a prover) until Ctrl-C or SIGTERM."""
    import asyncio

    from reef.cli._common import stop_signals

    async def main() -> None:
        with stop_signals() as stop:
            await service.run(interval_s=interval, stop=stop)

    note(f"{doing}; Ctrl-C stops")
    failing_call(lambda: asyncio.run(main()))


AMOUNT_HINT = "amounts are in rUSD, the network's token, as a decimal number: e.g. 0.5"


def parse_rusd(text: str, name: str) -> int:
    """``text`` (rUSD, as typed) in base units.

    Raises:
        InputError: naming ``name``: not a non-negative decimal with at most the token's
            decimals (with a hint saying the unit when the parser gave none).
    """
    from reef.chain import parse_amount

    try:
        return int(parse_amount(text, name=name))
    except InputError as exc:
        if exc.hint:
            raise
        raise InputError(exc.message, hint=AMOUNT_HINT) from exc


def parse_positive_rusd(text: str, name: str) -> int:
    """:func:`parse_rusd`, refusing 0 (the contract would, after seconds on the chain)."""
    amount = parse_rusd(text, name)
    if amount == 0:
        raise InputError(f"{name} must be more than 0", hint=AMOUNT_HINT)
    return amount


def parse_seconds(text: str, name: str = "the duration") -> int:
    """Seconds from ``90s``, ``2m``, ``1h30m``; a refusal names ``name`` (the flag)."""
    from reef.node import parse_duration

    try:
        return parse_duration(text)
    except InputError as exc:
        raise InputError(f"{name}: {exc.message}", hint=exc.hint or "e.g. 90s or 2m") from exc


def fmt_rusd(amount: int) -> str:
    from reef.chain import format_amount

    return format_amount(amount)


def market_row(ctx: ProofsCtx, market_id: int) -> dict[str, Any]:
    from reef.proofs import describe_market

    return describe_market(ctx.client(), market_id).record()


AskId = Annotated[int, typer.Argument(help="The ask's id.", metavar="ASK")]
MarketId = Annotated[int, typer.Argument(help="The market's id.", metavar="MARKET")]
