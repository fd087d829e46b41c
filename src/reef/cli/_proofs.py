"""`reef proofs ...` (markets and asks: create, signer, retire, request, wait, list, show,
cancel; the matching engine: engine run, register; the input verification service: ivs run) and
`reef prover ...` (register, join, leave, run, status): the proof market from the command line.

Commands find the chain and the proof market in ``$REEF_HOME/network.json`` (``reef up`` writes
the proof market's address under ``services.proofs``) or take ``--rpc`` and
``--proof-market``; they send from ``--key`` or, on reef's devnet, dev account 0. Amounts are
rUSD decimals typed by the user (``1.5``), base units inside.

Each command parses its flags and files, calls one use case of :mod:`reef.proofs` and prints
its typed result: ``request_checked`` and ``wait_for_ending`` (with ``ask_ending``: why an ask
ended and where its money went), ``describe_market`` / ``describe_ask`` / ``describe_prover``
(whose ``record()`` is the ``--json`` output), ``register_prover``, ``add_prover_stake``,
``join_as_prover`` (with ``stake_advice``), ``leave_market_step``, ``retire_market``, and
``start_matching_engine`` / ``enroll_from_settings`` / ``start_ivs`` for the three services. No
decision is made here: what a warning says and when is reef.proofs's (``_advice``, by the
matching engine's own rules). A command that sends one transaction and prints its result is
declared once, by :func:`_market_command`; the services' ``--network`` file is a
:class:`reef.proofs.ServiceSettings`. ``reef proofs engine run``, ``reef prover run`` and
``reef proofs ivs run`` run the three services as processes of their own (what an enclave runs).

Over 600 lines (about 1050), on purpose: about 300 are the 20 commands' options and their help
(the user's reference), about 200 the plumbing the groups share (finding the market, the
transaction-command decorator, amounts and durations parsed with their hints) and about 100 how
results read for people (times as dates, amounts in rUSD). Split by command group (``reef
prover``; the three services' ``run``), with the plumbing in a module they share, each part
would be under 600; that needs the lazy command table of ``reef/cli/__init__.py`` to name the
new modules.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from reef._clock import wall_clock_ms
from reef.cli._options import (
    AttestationRoot,
    Flags,
    ListenHost,
    ListenPort,
    PollInterval,
    with_flags,
)
from reef.cli._output import (
    fail,
    failing,
    note,
    print_result,
    print_rows,
    rusd,
    tell,
)
from reef.errors import InputError, ProofError

if TYPE_CHECKING:
    from reef.node import ServiceSession
    from reef.proofs import AskListing, ProofMarketClient, ServiceSettings, SnarkjsRuntime

__all__ = ["register"]

T = TypeVar("T")

proofs_app = typer.Typer(help="The proof market: markets and proof requests.", no_args_is_help=True)
market_app = typer.Typer(help="Proof markets: create, list, show, retire.", no_args_is_help=True)
prover_app = typer.Typer(
    help="Proving for the proof market: stake, join, run.", no_args_is_help=True
)
engine_app = typer.Typer(help="The matching engine: run one.", no_args_is_help=True)
ivs_app_cli = typer.Typer(help="The input verification service: run one.", no_args_is_help=True)
proofs_app.add_typer(market_app, name="market")
proofs_app.add_typer(engine_app, name="engine")
proofs_app.add_typer(ivs_app_cli, name="ivs")


def register(root: typer.Typer) -> None:
    root.add_typer(proofs_app, name="proofs")
    root.add_typer(prover_app, name="prover")


@dataclass
class _Ctx:
    """The proof market a command acts on (:func:`_ctx`)."""

    session: ServiceSession
    address: str
    service: dict[str, Any]
    """What ``network.json`` says of the proofs service (a copy: a command may add to it)."""

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


def _ctx(flags: Flags, *, account: bool = True) -> _Ctx:
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
    return _Ctx(session, str(session.contracts["market"]), dict(session.contracts.entry))


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


def _network_file(path: Path | None) -> ServiceSettings:
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


def _network_ctx(
    given: ServiceSettings, flags: Flags, key: Path | None, *, account: bool = True
) -> _Ctx:
    """The proof market a service command's flags and its network file (read by
    :func:`_network_file`) name, sending from ``key``: the flags win; the file's ``from_block``
    stands in for a start block reef up did not record.

    Raises:
        ConfigError: nothing says where the proof market is.
    """
    ctx = _ctx(
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


def _run(fn: Any) -> Any:
    with failing():
        return fn()


def _on_market(flags: Flags, do: Callable[[_Ctx], T], *, account: bool = True) -> T:
    """What ``do`` returns on the proof market the flags name (sending from ``--key`` when
    ``account``); a reef error on the way ends the command (exit 1, the message on stderr)."""
    result: T = _run(lambda: do(_ctx(flags, account=account)))
    return result


_Command = Callable[..., dict[str, Any]]


def _market_command(
    group: typer.Typer,
    name: str,
    *,
    title: str,
    shown: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Callable[[_Command], _Command]:
    """Make ``do(ctx, ...)`` the command ``name`` of ``group``: a transaction on the proof market
    (``--rpc``, ``--proof-market``, sent from ``--key``) whose result is printed (a table titled
    ``title``, or ``--json``; ``shown`` makes the table's rows from the result, when people read
    them otherwise); a reef error ends it (exit 1). Typer sees ``do``'s parameters
    after ``ctx``, then the shared flags; ``do`` itself is returned as it is::

        @_market_command(prover_app, "leave", title="leave")
        def prover_leave(ctx: _Ctx, market_id: MarketId) -> dict[str, Any]: ...
    """

    def decorate(do: _Command) -> _Command:
        own = inspect.signature(do, eval_str=True)
        flags = inspect.Parameter(
            "flags", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Flags
        )

        def command(flags: Flags, **kwargs: Any) -> None:
            result = _on_market(flags, lambda ctx: do(ctx, **kwargs))
            rows = None if shown is None else shown(result)
            print_result(result, flags.as_json, title=title, shown=rows)

        command.__doc__, command.__name__ = do.__doc__, do.__name__
        command.__signature__ = own.replace(  # type: ignore[attr-defined]
            parameters=[flags, *list(own.parameters.values())[1:]], return_annotation=None
        )
        group.command(name)(with_flags("rpc", "proof_market", "key", "as_json")(command))
        return do

    return decorate


def _run_until_stopped(service: Any, interval: float, doing: str) -> None:
    """Run a polling service (the matching engine, a prover) until Ctrl-C or SIGTERM."""
    import asyncio

    from reef.cli._common import stop_signals

    async def main() -> None:
        with stop_signals() as stop:
            await service.run(interval_s=interval, stop=stop)

    note(f"{doing}; Ctrl-C stops")
    _run(lambda: asyncio.run(main()))


_AMOUNT_HINT = "amounts are in rUSD, the network's token, as a decimal number: e.g. 0.5"


def _amount(text: str, name: str) -> int:
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
        raise InputError(exc.message, hint=_AMOUNT_HINT) from exc


def _positive_amount(text: str, name: str) -> int:
    """:func:`_amount`, refusing 0 (the contract would, after seconds on the chain)."""
    amount = _amount(text, name)
    if amount == 0:
        raise InputError(f"{name} must be more than 0", hint=_AMOUNT_HINT)
    return amount


def _duration(text: str, name: str = "the duration") -> int:
    """Seconds from ``90s``, ``2m``, ``1h30m``; a refusal names ``name`` (the flag)."""
    from reef.node import parse_duration

    try:
        return parse_duration(text)
    except InputError as exc:
        raise InputError(f"{name}: {exc.message}", hint=exc.hint or "e.g. 90s or 2m") from exc


def _fmt(amount: int) -> str:
    from reef.chain import format_amount

    return format_amount(amount)


def _market_row(ctx: _Ctx, market_id: int) -> dict[str, Any]:
    from reef.proofs import describe_market

    return describe_market(ctx.client(), market_id).record()


AskId = Annotated[int, typer.Argument(help="The ask's id.", metavar="ASK")]
MarketId = Annotated[int, typer.Argument(help="The market's id.", metavar="MARKET")]

# ---- markets ----


@market_app.command("create")
@with_flags("rpc", "proof_market", "key", "as_json")
def market_create(
    flags: Flags,
    groth16: Annotated[bool, typer.Option("--groth16", help="A circom Groth16 market.")] = False,
    tee: Annotated[bool, typer.Option("--tee", help="A TEE attestation market.")] = False,
    wasm: Annotated[Path | None, typer.Option("--wasm", help="The circuit's .wasm.")] = None,
    zkey: Annotated[Path | None, typer.Option("--zkey", help="The proving key .zkey.")] = None,
    vkey: Annotated[Path | None, typer.Option("--vkey", help="verification_key.json.")] = None,
    public_input: Annotated[
        list[str] | None,
        typer.Option(
            "--public-input", help="A public input signal name, in circuit order (repeat)."
        ),
    ] = None,
    private_input: Annotated[
        list[str] | None,
        typer.Option(
            "--private-input",
            help="A private input signal name (repeat): asks give it encrypted, never on chain.",
        ),
    ] = None,
    image_id: Annotated[
        str | None, typer.Option("--image-id", help="TEE: the prover image id (hex).")
    ] = None,
    inputs: Annotated[int, typer.Option("--inputs", help="TEE: number of public inputs.")] = 1,
    name: Annotated[str, typer.Option("--name", help="The market's name.")] = "",
    penalty: Annotated[
        str, typer.Option("--penalty", help="Stake slashed per missed deadline (rUSD).")
    ] = "1",
    ivs: Annotated[
        str | None, typer.Option("--ivs", help="Address of the input verification service.")
    ] = None,
) -> None:
    """Create a market: --groth16 with --wasm/--zkey/--vkey, or --tee with --image-id."""
    from reef.encoding import parse_hex
    from reef.proofs import (
        ArtifactStore,
        CircuitArtifacts,
        create_groth16_market,
        create_tee_market,
    )

    if groth16 == tee:
        raise fail(InputError("choose one of --groth16 and --tee"), code=2)
    # The flags and files first: a mistake is refused before seconds on the chain.
    stake = _run(lambda: _amount(penalty, "--penalty"))
    files = _run(lambda: CircuitArtifacts.given(wasm, zkey, vkey)) if groth16 else None
    if groth16 and not public_input:
        raise fail(InputError(
            "name the circuit's public inputs with --public-input (in declaration order)",
            hint="e.g. --public-input x for `signal input x` in `{public [x]}`",
        ))  # fmt: skip
    if tee and image_id is None:
        raise fail(InputError("--tee needs --image-id HEX"))

    def go(ctx: _Ctx) -> int:
        private = private_input or ()
        if files is None:
            image = parse_hex(image_id or "", name="--image-id")
            return create_tee_market(
                ctx.client(), image_id=image, penalty=stake, n_inputs=inputs, name=name,
                ivs=ivs, private_inputs=private,
            )  # fmt: skip
        return create_groth16_market(
            ctx.client(), files, public_inputs=public_input or (), penalty=stake, name=name,
            store=ArtifactStore(ctx.store_root()), ivs=ivs, private_inputs=private,
        )  # fmt: skip

    market_id = _on_market(flags, go)
    print_result({"market_id": market_id}, flags.as_json, title="market created")


@market_app.command("list")
@with_flags("rpc", "proof_market", "as_json")
def market_list(flags: Flags) -> None:
    """Every market of the proof market (a retired one, which takes no new asks, says so)."""

    def go(ctx: _Ctx) -> list[dict[str, Any]]:
        count = ctx.client().market_count()
        return [_market_row(ctx, m) for m in range(1, count + 1)]

    rows = _on_market(flags, go, account=False)
    # A market nobody proves in lets its asks expire: how many provers serve it is a column, and
    # so is whether it takes asks at all (a retired market refuses them).
    shown = [
        {**row, "provers": len(row["provers"]), "state": "retired" if row["retired"] else "open"}
        for row in rows
    ]
    columns = ["market_id", "kind", "name", "state", "provers", "penalty", "verifier"]
    print_rows(rows, columns, flags.as_json, title="proof markets", shown=shown)


@market_app.command("show")
@with_flags("rpc", "proof_market", "as_json")
def market_show(
    flags: Flags,
    market_id: Annotated[int, typer.Argument(help="The market's id.")],
) -> None:
    """One market: its kind, verifier, artifacts and penalty."""
    row = _on_market(flags, lambda ctx: _market_row(ctx, market_id), account=False)
    print_result(row, flags.as_json, title=f"market {market_id}")


@_market_command(market_app, "retire", title="market retired")
def market_retire(ctx: _Ctx, market_id: MarketId) -> dict[str, Any]:
    """Retire a market you created: it takes no new asks; those it has end as before."""
    from reef.proofs import retire_market

    return {"market_id": market_id, "retired": True, "tx": retire_market(ctx.client(), market_id)}


ReplayOpt = Annotated[
    bool, typer.Option("--replay", help="Check the document at its own time (not fresh).")
]


def _evidence_check(
    evidence: Path, root: str, replay: bool, ctx: _Ctx
) -> tuple[bytes, dict[str, Any]]:
    """An attestation document the user named, and how to check it (``--root``, ``--replay``):
    the keyword arguments the registering functions take."""
    from reef.attestation import TrustedRoot, read_evidence
    from reef.cli._common import read_file

    check = {
        "root": TrustedRoot.resolve(root, ctx.session.home),
        "mode": "replay" if replay else "live",
        "now_ms": None if replay else wall_clock_ms(),
    }
    return read_evidence(read_file(evidence)), check


@market_app.command("signer")
@with_flags("rpc", "proof_market", "key", "as_json")
def market_signer(
    flags: Flags,
    market_id: Annotated[int, typer.Argument(help="The TEE market's id.", metavar="MARKET")],
    evidence: Annotated[
        Path | None,
        typer.Option(
            "--evidence",
            help="The enclave's attestation document (raw, hex or base64): its image id must "
            "be the market's; its public key becomes a signer.",
        ),
    ] = None,
    root: AttestationRoot = "aws",
    replay: ReplayOpt = False,
    revoke: Annotated[
        str | None, typer.Option("--revoke", help="Remove this signer address instead.")
    ] = None,
) -> None:
    """Register an attested enclave key as a signer of a TEE market (creator only)."""
    if (evidence is None) == (revoke is None):
        raise fail(InputError("give one of --evidence FILE and --revoke ADDRESS"), code=2)

    def go(ctx: _Ctx) -> dict[str, Any]:
        client = ctx.client()
        if revoke is not None:
            result = client.set_tee_signer(market_id, revoke, False)
            return {"market_id": market_id, "signer": revoke, "allowed": False,
                    "tx": result.tx_hash}  # fmt: skip
        from reef.proofs import register_tee_signer

        assert evidence is not None
        document, check = _evidence_check(evidence, root, replay, ctx)
        signer = register_tee_signer(client, market_id, document, **check)
        return {"market_id": market_id, "signer": signer, "allowed": True}

    print_result(_on_market(flags, go), flags.as_json, title="TEE signer")


# ---- asks ----


@proofs_app.command("request")
@with_flags("rpc", "proof_market", "key", "as_json")
def request_cmd(
    flags: Flags,
    market_id: MarketId,
    input_file: Annotated[
        Path, typer.Option("--input", help="JSON object of public input signals.")
    ],
    reward: Annotated[
        str | None, typer.Option("--reward", help="The most you pay for the proof (rUSD).")
    ] = None,
    auction: Annotated[
        str | None,
        typer.Option(
            "--auction",
            help="MIN:MAX (rUSD): a reverse Dutch auction instead of --reward: the price rises "
            "from MIN to MAX over --ramp; the first prover to lock it is paid the price then.",
        ),
    ] = None,
    ramp: Annotated[
        str, typer.Option("--ramp", help="With --auction: how long the price takes to reach MAX.")
    ] = "1m",
    private: Annotated[
        Path | None,
        typer.Option(
            "--private",
            help="JSON object of private input signals: encrypted to the matching engine, "
            "re-encrypted to the assigned prover, never on chain in the clear.",
        ),
    ] = None,
    expiry: Annotated[
        str, typer.Option("--expiry", help="How long a prover may take to pick it up.")
    ] = "2m",
    deadline: Annotated[str, typer.Option("--deadline", help="Proving time once assigned.")] = "5m",
) -> None:
    """Ask for a proof: escrow the reward; a prover is assigned, proves, and is paid."""
    if (reward is None) == (auction is None):
        raise fail(InputError("give one of --reward AMOUNT and --auction MIN:MAX"), code=2)
    # The flags and files first: a mistake is refused at once, before seconds on the chain.
    paying: int | None = (
        None if reward is None else _run(lambda: _positive_amount(reward, "--reward"))
    )
    prices = None if auction is None else _run(lambda: _auction_prices(auction))
    ramp_s, expiry_s, deadline_s = _run(
        lambda: (_duration(ramp, "--ramp"), _duration(expiry, "--expiry"),
                 _duration(deadline, "--deadline"))
    )  # fmt: skip
    from reef.proofs import read_input_file

    public_data = _run(lambda: read_input_file(input_file))
    private_data = None if private is None else _run(lambda: read_input_file(private))

    def go(ctx: _Ctx) -> int:
        from reef.proofs import AuctionRamp, request_checked

        ramped = None
        if prices is not None:
            ramped = AuctionRamp(min_price=prices[0], max_price=prices[1], ramp_time=ramp_s)
        return request_checked(
            ctx.client(), market_id, public_data, input_file, private=private_data,
            private_path=private, reward=paying, auction=ramped, proving_time=deadline_s,
            expiry=ctx.session.now() + expiry_s,
            warn=lambda advice: tell(f"warning: {advice.message(expiry)}"),
        )  # fmt: skip

    ask_id = _on_market(flags, go)
    escrowed = int(prices[1]) if prices is not None else int(paying or 0)
    print_result(
        {"ask_id": ask_id},
        flags.as_json,
        title="proof requested",
        shown={
            "ask_id": ask_id,
            "escrowed": rusd(escrowed) + " (the prover is paid its price; the rest comes back)",
            "next": f"`reef proofs wait {ask_id}` waits for the proof (exit 0 once it is "
            "verified on chain and paid)",
        },
    )


def _auction_prices(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(":")
    if not sep:
        raise InputError(f"--auction {text!r}: expected MIN:MAX, e.g. 0.1:0.5")
    prices = _amount(low, "--auction MIN"), _amount(high, "--auction MAX")
    if prices[0] > prices[1]:
        raise InputError(f"--auction {text}: the minimum is above the maximum")
    return prices


def _ask_row(ctx: _Ctx, ask_id: int) -> dict[str, Any]:
    from reef.proofs import describe_ask

    return describe_ask(ctx.client(), ask_id).record()


def _print_ask(row: dict[str, Any], as_json: bool) -> None:
    """An ask's row: all of it with ``--json``; for people, without the proof's numbers and
    with its times as `reef jobs` shows times (JSON keeps unix seconds)."""
    from reef.node import format_time

    shown = {k: v for k, v in row.items() if k != "proof"}
    for key in ("expiry", "deadline"):
        if shown.get(key):
            shown[key] = format_time(shown[key])
    for key in ("reward", "price"):
        if shown.get(key) is not None:
            shown[key] = f"{shown[key]} rUSD"
    if "auction" in shown:
        terms = shown["auction"]
        shown["auction"] = {
            "min_price": f"{terms['min_price']} rUSD",
            "max_price": f"{terms['max_price']} rUSD",
            "ramp_end": format_time(terms["ramp_end"]),
        }
    print_result(row, as_json, title=f"ask {row['ask_id']}", shown=shown)


@proofs_app.command("wait")
@with_flags("rpc", "proof_market", "as_json")
def wait_cmd(
    flags: Flags,
    ask_id: AskId,
    timeout: Annotated[str, typer.Option("--timeout", help="Give up after this long.")] = "10m",
) -> None:
    """Wait until the ask ends (complete, expired, slashed, invalid, cancelled); print the proof."""

    timeout_s = _run(lambda: _duration(timeout, "--timeout"))

    from reef.proofs import AskState, ask_ending, wait_for_ending

    def go(ctx: _Ctx) -> AskListing:
        return wait_for_ending(ctx.client(), ask_id, timeout_s=timeout_s, waited=timeout)

    listing = _on_market(flags, go, account=False)
    _print_ask(listing.record(), flags.as_json)
    if listing.ask.state != AskState.COMPLETE:
        ending = ask_ending(listing)
        if ending:
            tell(ending.message)
        raise typer.Exit(1)


@proofs_app.command("show")
@with_flags("rpc", "proof_market", "as_json")
def show_cmd(flags: Flags, ask_id: AskId) -> None:
    """One ask: its state, prover, and the proof once there is one."""
    _print_ask(_on_market(flags, lambda ctx: _ask_row(ctx, ask_id), account=False), flags.as_json)


@proofs_app.command("list")
@with_flags("rpc", "proof_market", "as_json")
def list_cmd(flags: Flags) -> None:
    """Every ask, newest last."""

    from reef.proofs import ask_record, describe_asks

    def go(ctx: _Ctx) -> list[dict[str, Any]]:
        return [ask_record(ask) for ask in describe_asks(ctx.client())]

    columns = ["ask_id", "market_id", "state", "reward", "prover"]
    print_rows(_on_market(flags, go, account=False), columns, flags.as_json, title="asks")


@_market_command(proofs_app, "cancel", title="ask closed")
def cancel_cmd(ctx: _Ctx, ask_id: AskId) -> dict[str, Any]:
    """Cancel an ask nobody was assigned yet (refunds it); an expired one is refunded instead."""
    from reef.proofs import close_ask

    client = ctx.client()
    tx = close_ask(client, ask_id)
    return {"ask_id": ask_id, "state": client.ask_state(ask_id).label, "tx": tx}


# ---- the matching engine ----


@engine_app.command("run")
@with_flags("rpc", "proof_market", "as_json")
def engine_run(
    flags: Flags,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            "--key",
            help="The engine's key (it signs assignments and opens private inputs); must be "
            "the market's matchingEngine. Inside an enclave: its attested key.",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="SQLAlchemy URL of the order book's database (default: "
            "SQLite under $REEF_HOME/proofs/).",
        ),
    ] = None,
    from_block: Annotated[
        int | None,
        typer.Option(
            "--from-block",
            help="First block to index: at or before the block that deployed the market "
            "(default: reef up's).",
        ),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", help="Most assignments per transaction.")] = 64,
    interval: PollInterval = 0.5,
    once: Annotated[bool, typer.Option("--once", help="Run one step, print it, exit.")] = False,
    network: NetworkFile = None,
) -> None:
    """Index the proof market, keep its order book and assign asks, until Ctrl-C."""

    def build() -> Any:
        from reef.proofs import start_matching_engine

        given = _network_file(network)
        ctx = _network_ctx(given, flags, key_file)
        client = ctx.client()
        url = db or "sqlite:///" + str(
            ctx.session.home.path("proofs", f"engine-{client.address.lower()}.db")
        )
        start = int(ctx.service.get("start_block", 0)) if from_block is None else from_block
        return start_matching_engine(client, given, db_url=url, start_block=start, batch_size=batch)

    engine = _run(build)
    if once:
        step = _run(engine.step)
        print_result(
            {"engine": engine.client.sender, "events": step.events, "assigned": step.assigned,
             "resent": step.resent, "engine_key": "0x" + (engine.public_key or b"").hex()},
            flags.as_json, title="matching engine step",
        )  # fmt: skip
        return
    _run_until_stopped(engine, interval, f"matching as {engine.client.sender}")


@_market_command(engine_app, "register", title="matching engine registered")
def engine_register(
    ctx: _Ctx,
    evidence: Annotated[
        Path,
        typer.Option("--evidence", help="The engine enclave's attestation document."),
    ],
    image_id: Annotated[
        str, typer.Option("--image-id", help="The engine image id the document must attest.")
    ],
    root: AttestationRoot = "aws",
    replay: ReplayOpt = False,
) -> dict[str, Any]:
    """Make an attested enclave's key the market's matching engine (the market's admin only)."""
    from reef.encoding import parse_hex
    from reef.proofs import register_matching_engine

    document, check = _evidence_check(evidence, root, replay, ctx)
    engine = register_matching_engine(
        ctx.client(), document, image_id=parse_hex(image_id, name="--image-id"), **check
    )
    return {"engine": engine, "image_id": image_id}


# ---- provers ----


@_market_command(
    prover_app,
    "register",
    title="prover registered",
    shown=lambda r: {**r, "stake": f"{r['stake']} rUSD", "compute": _units(r["compute"])},
)
def prover_register(
    ctx: _Ctx,
    stake: Annotated[str, typer.Option("--stake", help="Stake to lock (rUSD).")],
    compute: Annotated[int, typer.Option("--compute", help="Declared compute units.")] = 4,
) -> dict[str, Any]:
    """Register as a prover with a stake and declared compute."""
    from reef.proofs import register_prover

    amount = _amount(stake, "--stake")
    tx = register_prover(ctx.client(), stake=amount, compute=compute)
    return {"prover": ctx.session.address, "stake": _fmt(amount), "compute": compute, "tx": tx}


@_market_command(
    prover_app,
    "stake",
    title="stake added",
    shown=lambda r: {**r, "added": f"{r['added']} rUSD", "stake": f"{r['stake']} rUSD"},
)
def prover_stake(
    ctx: _Ctx,
    amount: Annotated[str, typer.Argument(help="How much stake to add (rUSD).", metavar="AMOUNT")],
) -> dict[str, Any]:
    """Add stake: each ask assigned to you locks its market's penalty of it until it ends."""
    from reef.proofs import add_prover_stake

    added = _positive_amount(amount, "AMOUNT")
    tx, me = add_prover_stake(ctx.client(), added)
    return {"prover": ctx.session.address, "added": _fmt(added), "stake": _fmt(me.stake), "tx": tx}


@_market_command(prover_app, "join", title="joined")
def prover_join(
    ctx: _Ctx,
    market_id: MarketId,
    price: Annotated[str, typer.Option("--price", help="Your price per proof (rUSD).")],
    max_time: Annotated[str, typer.Option("--max-time", help="Longest you take per proof.")] = "1m",
    compute: Annotated[int, typer.Option("--compute", help="Compute units one request uses.")] = 1,
) -> dict[str, Any]:
    """Join a market with a price, a proving-time bound and compute per request."""
    from reef.proofs import MarketJoin, join_as_prover, stake_advice

    terms = MarketJoin(
        market_id=market_id,
        price=_amount(price, "--price"),
        max_time=_duration(max_time, "--max-time"),
        compute=compute,
    )
    client = ctx.client()
    # In a market with private inputs, they are re-encrypted to this account's key, which
    # `reef prover run` decrypts with.
    tx, key = join_as_prover(client, terms, private_key=ctx.private_key())
    short = stake_advice(client, ctx.session.address, market_id)
    if short is not None:
        tell(f"warning: {short.message}")
    out = {"market_id": market_id, "prover": ctx.session.address, "tx": tx}
    if key is not None:
        out["encryption_key"] = "0x" + key.hex()
    return out


def _leave_rows(result: dict[str, Any]) -> dict[str, Any]:
    """A first ``leave``'s answer as people read it: when, and what to run then."""
    from reef.node import format_time

    if "leave_at" not in result:
        return result
    return {
        **result,
        "leave_at": format_time(result["leave_at"]),
        "next": f"run `reef prover leave {result['market_id']}` again from then to leave",
    }


@_market_command(prover_app, "leave", title="leave", shown=_leave_rows)
def prover_leave(ctx: _Ctx, market_id: MarketId) -> dict[str, Any]:
    """Leave a market: the first call stops new assignments; run it again after the delay."""
    from reef.node import format_time, format_wait
    from reef.proofs import leave_market_step

    step = leave_market_step(ctx.client(), market_id)
    if step.early is not None:
        raise ProofError(
            f"{step.early.message}: you may leave market {market_id} from "
            f"{format_time(step.leave_at)} (in about {format_wait(step.wait_s)}); "
            "it assigns you no new asks meanwhile",
            hint=f"run `reef prover leave {market_id}` again then",
        ) from step.early
    if step.left:
        return {"market_id": market_id, "state": "left"}
    if step.warning:
        tell(f"warning: {step.warning}")
    return {"market_id": market_id, "state": "leaving", "leave_at": step.leave_at}


def _units(n: int) -> str:
    return f"{n} unit" if n == 1 else f"{n} units"


def _status_rows(result: dict[str, Any]) -> dict[str, Any]:
    """``reef prover status`` for people: amounts in rUSD, times in seconds, a line a market."""
    if not result["registered"]:
        return {
            "prover": result["prover"],
            "registered": False,
            "next": "`reef prover register --stake AMOUNT` (rUSD), then `reef prover join MARKET`",
        }
    lines = []
    for m in result["markets"]:
        line = (
            f"market {m['market_id']}: {m['price']} rUSD per proof, proves within "
            f"{m['max_time']} s, {_units(m['compute'])} of compute per ask, "
            f"{m['active']} ask{'' if m['active'] == 1 else 's'} assigned now"
        )
        if m["leaving"]:
            line += ", leaving (no new asks)"
        lines.append(line)
    return {
        "prover": result["prover"],
        "registered": True,
        "stake": f"{result['stake']} rUSD",
        "stake_locked": f"{result['stake_locked']} rUSD (each assigned ask locks its market's "
        "penalty until it ends)",
        "compute": _units(result["compute"]),
        "compute_used": _units(result["compute_used"]),
        "markets": "\n".join(lines) or "none yet: `reef prover join MARKET --price AMOUNT`",
    }


@_market_command(prover_app, "status", title="prover", shown=_status_rows)
def prover_status(ctx: _Ctx) -> dict[str, Any]:
    """Your stake, compute and markets (amounts in rUSD, times in seconds)."""
    from reef.proofs import describe_prover

    return describe_prover(ctx.client(), ctx.session.address).record()


@prover_app.command("run")
@with_flags("rpc", "proof_market", "key")
def prover_run(
    flags: Flags,
    market: Annotated[
        list[int] | None, typer.Option("--market", help="Markets to prove for (default: all).")
    ] = None,
    tee: Annotated[
        list[str] | None,
        typer.Option(
            "--tee",
            help="MARKET=COMMAND: prove a TEE market's asks by running COMMAND (inputs as a JSON "
            "list on stdin, output as a JSON list on stdout) and signing with --tee-key (repeat).",
        ),
    ] = None,
    tee_key: Annotated[
        Path | None,
        typer.Option(
            "--tee-key",
            help="The enclave key that signs TEE proofs (default: --key's; inside an enclave, "
            "its attested key, e.g. --key /app/ecdsa.sec for both).",
        ),
    ] = None,
    interval: PollInterval = 0.5,
    once: Annotated[
        bool, typer.Option("--once", help="Work through current tasks, then exit.")
    ] = False,
    network: NetworkFile = None,
    artifacts: ArtifactsDir = None,
    snarkjs: SnarkjsDir = None,
) -> None:
    """Prove the tasks assigned to you (snarkjs for Groth16 markets, --tee workers for TEE
    markets) and lock auction asks at your price, until Ctrl-C.

    A --network file may also say how to join (``"prover": {"stake", "compute", "markets":
    [{"market_id", "price", "max_time", "compute"}]}``, amounts in base units): the prover
    then waits for its gas and stake, registers and joins before proving (what `reef up`'s
    prover enclave does with its attested key), and may name each market's input
    verification service (``"ivs": {"MARKET": URL}``)."""

    def build() -> Any:
        from reef.node import load_key_file
        from reef.proofs import ArtifactStore, ProverService, enroll_from_settings, tee_workers

        given = _network_file(network)
        ctx = _network_ctx(given, flags, flags.key)
        signer = ctx.session.account if tee_key is None or not tee else load_key_file(tee_key)
        if tee and signer is None:  # pragma: no cover - _ctx(account=True) always opens one
            raise InputError("--tee needs a key to sign with (--tee-key FILE)")
        workers = tee_workers(signer, tee) if tee and signer is not None else None
        client = ctx.client()
        return ProverService(
            client,
            ArtifactStore(artifacts or ctx.store_root()),
            ctx.snarkjs(snarkjs),
            verifiers=enroll_from_settings(client, given, private_key=ctx.private_key()),
            from_block=int(ctx.service.get("start_block", 0)),
            markets=market or None,
            on_outcome=lambda outcome: note(_outcome_line(outcome)),
            tee=workers,
        )

    service = _run(build)
    if once:
        _run(service.step)
        return
    _run_until_stopped(service, interval, f"proving as {service.client.sender}")


def _outcome_line(outcome: Any) -> str:
    """What ``reef prover run`` did with a task (a :class:`reef.proofs.TaskOutcome`), as an
    operator reads it: a proof's transaction and an auction's price named as such."""
    ask, what, detail = outcome.ask_id, outcome.outcome, outcome.detail
    if what == "proved":
        return f"ask {ask}: proved; the proof is verified on chain and you are paid (tx {detail})"
    if what == "locked":
        return f"ask {ask}: locked at {rusd(int(detail))}; proving it"
    if what == "invalid":
        return (
            f"ask {ask}: its inputs {detail} admit no proof: the IVS signed so, the ask "
            "closed invalid and you are paid your price"
        )
    if what == "skipped":
        return f"ask {ask}: nothing to do ({detail})"
    return f"ask {ask}: {what}: {detail}".rstrip(": ")


# ---- the input verification service ----


@ivs_app_cli.command("run")
@with_flags("rpc", "proof_market")
def ivs_run(
    flags: Flags,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            "--key",
            help="The IVS's signing key (with --kms-path: only when no KMS derive server is "
            "wired, e.g. /app/ecdsa.sec in an enclave of a network without a KMS).",
        ),
    ] = None,
    kms_path: Annotated[
        str | None,
        typer.Option(
            "--kms-path",
            help="Sign with the secp256k1 key at this KMS derivation path, from the enclave's "
            # (reef.proofs.IVS_KMS_PATH, spelled out: importing reef.proofs would slow --help)
            "derive server ($REEF_KMS_DERIVE_URL) when it has one (reef up: reef.proofs.ivs).",
        ),
    ] = None,
    host: ListenHost = "127.0.0.1",
    port: ListenPort = 8701,
    network: NetworkFile = None,
    artifacts: ArtifactsDir = None,
    snarkjs: SnarkjsDir = None,
) -> None:
    """Serve a market's input verification service (``POST /invalid``) until Ctrl-C: it signs
    that an ask's inputs admit no proof, after checking that itself. Inside ``reef up``'s IVS
    enclave the key comes from the KMS (the same for every enclave of the image), so the
    address the markets record survives restarts."""

    def build() -> Any:
        import os

        from reef.node import load_key_file
        from reef.proofs import ArtifactStore, ivs_signer, start_ivs

        given = _network_file(network)
        account = ivs_signer(
            kms_path=kms_path,
            derive_url=os.environ.get("REEF_KMS_DERIVE_URL"),
            key_file=None if key_file is None else lambda: load_key_file(key_file),
        )
        ctx = _network_ctx(given, flags, None, account=False)
        # The file's first block wins here: the IVS reads markets created since the deployment.
        start = given.from_block
        if start is None:
            start = int(ctx.service.get("start_block", 0))
        store = ArtifactStore(artifacts or ctx.store_root())
        return start_ivs(account, ctx.client(), store, ctx.snarkjs(snarkjs), from_block=start)

    verifier, served_app = _run(build)
    from reef.cli._common import serve_until_stopped
    from reef.node._serve import serve_app

    serve_until_stopped(
        lambda: serve_app(served_app, host=host, port=port, what="the input verification service"),
        lambda server: note(
            f"input verification service {verifier.address} on {server.url}; Ctrl-C stops"
        ),
    )
