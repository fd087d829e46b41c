"""`reef proofs ...` (markets and asks: create, signer, retire, request, wait, list, show,
cancel; the matching engine: engine run, register; the input verification service: ivs run):
the proof market from the command line (``reef prover`` is :mod:`reef.cli._prover`; what both
share is :mod:`reef.cli._proofs_common`).

Commands find the chain and the proof market in ``$REEF_HOME/network.json`` (``reef up`` writes
the proof market's address under ``services.proofs``) or take ``--rpc`` and
``--proof-market``; they send from ``--key`` or, on reef's devnet, dev account 0. Amounts are
rUSD decimals typed by the user (``1.5``), base units inside.

Each command parses its flags and files, calls one use case of :mod:`reef.proofs` and prints
its typed result: ``request_checked`` and ``wait_for_ending`` (with ``ask_ending``: why an ask
ended and where its money went), ``describe_market`` / ``describe_ask`` (whose ``record()`` is
the ``--json`` output), ``retire_market``, and ``start_matching_engine`` / ``start_ivs`` for two
of the three services. No decision is made here: what a warning says and when is reef.proofs's
(``_advice``, by the matching engine's own rules). ``reef proofs engine run`` and ``reef proofs
ivs run`` run their services as processes of their own (what an enclave runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
    note,
    print_result,
    print_rows,
    rusd,
    tell,
)
from reef.cli._proofs_common import (
    ArtifactsDir,
    AskId,
    MarketId,
    NetworkFile,
    ProofsCtx,
    SnarkjsDir,
    failing_call,
    market_command,
    market_row,
    network_ctx,
    network_file,
    on_market,
    parse_positive_rusd,
    parse_rusd,
    parse_seconds,
    run_until_stopped,
)
from reef.cli._root import command_group
from reef.errors import InputError

if TYPE_CHECKING:
    from reef.proofs import AskListing

__all__ = ["register"]

proofs_app, register = command_group("proofs")
market_app = typer.Typer(help="Proof markets: create, list, show, retire.", no_args_is_help=True)
engine_app = typer.Typer(help="The matching engine: run one.", no_args_is_help=True)
ivs_app_cli = typer.Typer(help="The input verification service: run one.", no_args_is_help=True)
proofs_app.add_typer(market_app, name="market")
proofs_app.add_typer(engine_app, name="engine")
proofs_app.add_typer(ivs_app_cli, name="ivs")


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
    stake = failing_call(lambda: parse_rusd(penalty, "--penalty"))
    files = failing_call(lambda: CircuitArtifacts.given(wasm, zkey, vkey)) if groth16 else None
    if groth16 and not public_input:
        raise fail(InputError(
            "name the circuit's public inputs with --public-input (in declaration order)",
            hint="e.g. --public-input x for `signal input x` in `{public [x]}`",
        ))  # fmt: skip
    if tee and image_id is None:
        raise fail(InputError("--tee needs --image-id HEX"))

    def go(ctx: ProofsCtx) -> int:
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

    market_id = on_market(flags, go)
    print_result({"market_id": market_id}, flags.as_json, title="market created")


@market_app.command("list")
@with_flags("rpc", "proof_market", "as_json")
def market_list(flags: Flags) -> None:
    """Every market of the proof market (a retired one, which takes no new asks, says so)."""

    def go(ctx: ProofsCtx) -> list[dict[str, Any]]:
        count = ctx.client().market_count()
        return [market_row(ctx, m) for m in range(1, count + 1)]

    rows = on_market(flags, go, account=False)
    # A market nobody proves in lets its asks expire: how many provers serve it is a column, and
    # so is whether it takes asks at all (a retired market refuses them).
    shown = [
        {
            **row,
            "provers": len(row["provers"]),
            "state": "retired" if row["retired"] else "open",
            "penalty": f"{row['penalty']} rUSD",  # a bare 1 read as one base unit
        }
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
    row = on_market(flags, lambda ctx: market_row(ctx, market_id), account=False)
    shown = {**row, "penalty": f"{row['penalty']} rUSD"}
    print_result(row, flags.as_json, title=f"market {market_id}", shown=shown)


@market_command(market_app, "retire", title="market retired")
def market_retire(ctx: ProofsCtx, market_id: MarketId) -> dict[str, Any]:
    """Retire a market you created: it takes no new asks; those it has end as before."""
    from reef.proofs import retire_market

    return {"market_id": market_id, "retired": True, "tx": retire_market(ctx.client(), market_id)}


ReplayOpt = Annotated[
    bool, typer.Option("--replay", help="Check the document at its own time (not fresh).")
]


def _evidence_check(
    evidence: Path, root: str, replay: bool, ctx: ProofsCtx
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

    def go(ctx: ProofsCtx) -> dict[str, Any]:
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

    print_result(on_market(flags, go), flags.as_json, title="TEE signer")


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
        None if reward is None else failing_call(lambda: parse_positive_rusd(reward, "--reward"))
    )
    prices = None if auction is None else failing_call(lambda: _auction_prices(auction))
    ramp_s, expiry_s, deadline_s = failing_call(
        lambda: (parse_seconds(ramp, "--ramp"), parse_seconds(expiry, "--expiry"),
                 parse_seconds(deadline, "--deadline"))
    )  # fmt: skip
    from reef.proofs import read_input_file

    public_data = failing_call(lambda: read_input_file(input_file))
    private_data = None if private is None else failing_call(lambda: read_input_file(private))

    def go(ctx: ProofsCtx) -> int:
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

    ask_id = on_market(flags, go)
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
    prices = parse_rusd(low, "--auction MIN"), parse_rusd(high, "--auction MAX")
    if prices[0] > prices[1]:
        raise InputError(f"--auction {text}: the minimum is above the maximum")
    return prices


def _ask_row(ctx: ProofsCtx, ask_id: int) -> dict[str, Any]:
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

    timeout_s = failing_call(lambda: parse_seconds(timeout, "--timeout"))

    from reef.proofs import AskState, ask_ending, wait_for_ending

    def go(ctx: ProofsCtx) -> AskListing:
        _note_waiting(ctx.client().ask(ask_id), timeout)
        return wait_for_ending(ctx.client(), ask_id, timeout_s=timeout_s, waited=timeout)

    listing = on_market(flags, go, account=False)
    _print_ask(listing.record(), flags.as_json)
    if listing.ask.state != AskState.COMPLETE:
        ending = ask_ending(listing)
        if ending:
            tell(ending.message)
        raise typer.Exit(1)


def _note_waiting(ask: Any, timeout: str) -> None:
    """Say what a wait waits for, before it blocks (it said nothing until the ask ended, for up
    to --timeout): who must act, and by when."""
    from reef.node import format_time
    from reef.proofs import AskState

    if ask.state == AskState.OPEN:
        what = f"open until a prover takes it (by {format_time(ask.expiry)}, else it expires)"
    elif ask.state == AskState.ASSIGNED:
        what = f"prover {ask.prover} has until {format_time(ask.deadline)} to prove it"
    else:
        return  # it needs nobody: the wait ends at once
    note(f"waiting for ask {ask.ask_id}: {what}; giving up after {timeout} (--timeout)")


@proofs_app.command("show")
@with_flags("rpc", "proof_market", "as_json")
def show_cmd(flags: Flags, ask_id: AskId) -> None:
    """One ask: its state, prover, and the proof once there is one."""
    _print_ask(on_market(flags, lambda ctx: _ask_row(ctx, ask_id), account=False), flags.as_json)


@proofs_app.command("list")
@with_flags("rpc", "proof_market", "as_json")
def list_cmd(flags: Flags) -> None:
    """Every ask, newest last."""

    from reef.proofs import ask_record, describe_asks

    def go(ctx: ProofsCtx) -> list[dict[str, Any]]:
        return [ask_record(ask) for ask in describe_asks(ctx.client())]

    rows = on_market(flags, go, account=False)
    shown = [{**row, "reward": f"{row['reward']} rUSD"} for row in rows]
    columns = ["ask_id", "market_id", "state", "reward", "prover"]
    print_rows(rows, columns, flags.as_json, title="asks", shown=shown)


@market_command(proofs_app, "cancel", title="ask closed")
def cancel_cmd(ctx: ProofsCtx, ask_id: AskId) -> dict[str, Any]:
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

        given = network_file(network)
        ctx = network_ctx(given, flags, key_file)
        client = ctx.client()
        url = db or "sqlite:///" + str(
            ctx.session.home.path("proofs", f"engine-{client.address.lower()}.db")
        )
        start = int(ctx.service.get("start_block", 0)) if from_block is None else from_block
        return start_matching_engine(client, given, db_url=url, start_block=start, batch_size=batch)

    engine = failing_call(build)
    if once:
        step = failing_call(engine.step)
        print_result(
            {"engine": engine.client.sender, "events": step.events, "assigned": step.assigned,
             "resent": step.resent, "engine_key": "0x" + (engine.public_key or b"").hex()},
            flags.as_json, title="matching engine step",
        )  # fmt: skip
        return
    run_until_stopped(engine, interval, f"matching as {engine.client.sender}")


@market_command(engine_app, "register", title="matching engine registered")
def engine_register(
    ctx: ProofsCtx,
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

        given = network_file(network)
        account = ivs_signer(
            kms_path=kms_path,
            derive_url=os.environ.get("REEF_KMS_DERIVE_URL"),
            key_file=None if key_file is None else lambda: load_key_file(key_file),
        )
        ctx = network_ctx(given, flags, None, account=False)
        # The file's first block wins here: the IVS reads markets created since the deployment.
        start = given.from_block
        if start is None:
            start = int(ctx.service.get("start_block", 0))
        store = ArtifactStore(artifacts or ctx.store_root())
        return start_ivs(account, ctx.client(), store, ctx.snarkjs(snarkjs), from_block=start)

    verifier, served_app = failing_call(build)
    from reef.cli._common import serve_until_stopped
    from reef.node._serve import serve_app

    serve_until_stopped(
        lambda: serve_app(served_app, host=host, port=port, what="the input verification service"),
        lambda server: note(
            f"input verification service {verifier.address} on {server.url}; Ctrl-C stops"
        ),
    )
