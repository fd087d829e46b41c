"""`reef prover ...` (register, stake, join, leave, status, run): proving for the proof market.

Each command parses its flags, calls one use case of :mod:`reef.proofs` (``register_prover``,
``add_prover_stake``, ``join_as_prover`` with ``stake_advice``, ``leave_market_step``,
``describe_prover``, ``enroll_from_settings``) and prints its typed result; the plumbing it shares
with ``reef proofs`` is :mod:`reef.cli._proofs_common`. ``reef prover run`` runs a prover as a
process of its own (what an enclave runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from reef.cli._options import Flags, PollInterval, with_flags
from reef.cli._output import note, rusd, tell
from reef.cli._proofs_common import (
    ArtifactsDir,
    MarketId,
    NetworkFile,
    ProofsCtx,
    SnarkjsDir,
    failing_call,
    fmt_rusd,
    market_command,
    network_ctx,
    network_file,
    parse_positive_rusd,
    parse_rusd,
    parse_seconds,
    run_until_stopped,
)
from reef.cli._root import command_group
from reef.errors import InputError, ProofError

__all__ = ["register"]

prover_app, register = command_group("prover")


# ---- provers ----


@market_command(
    prover_app,
    "register",
    title="prover registered",
    shown=lambda r: {**r, "stake": f"{r['stake']} rUSD", "compute": _units(r["compute"])},
)
def prover_register(
    ctx: ProofsCtx,
    stake: Annotated[str, typer.Option("--stake", help="Stake to lock (rUSD).")],
    compute: Annotated[int, typer.Option("--compute", help="Declared compute units.")] = 4,
) -> dict[str, Any]:
    """Register as a prover with a stake and declared compute."""
    from reef.proofs import register_prover

    amount = parse_rusd(stake, "--stake")
    tx = register_prover(ctx.client(), stake=amount, compute=compute)
    return {"prover": ctx.session.address, "stake": fmt_rusd(amount), "compute": compute, "tx": tx}


@market_command(
    prover_app,
    "stake",
    title="stake added",
    shown=lambda r: {**r, "added": f"{r['added']} rUSD", "stake": f"{r['stake']} rUSD"},
)
def prover_stake(
    ctx: ProofsCtx,
    amount: Annotated[str, typer.Argument(help="How much stake to add (rUSD).", metavar="AMOUNT")],
) -> dict[str, Any]:
    """Add stake: each ask assigned to you locks its market's penalty of it until it ends."""
    from reef.proofs import add_prover_stake

    added = parse_positive_rusd(amount, "AMOUNT")
    tx, me = add_prover_stake(ctx.client(), added)
    return {
        "prover": ctx.session.address,
        "added": fmt_rusd(added),
        "stake": fmt_rusd(me.stake),
        "tx": tx,
    }


@market_command(prover_app, "join", title="joined")
def prover_join(
    ctx: ProofsCtx,
    market_id: MarketId,
    price: Annotated[str, typer.Option("--price", help="Your price per proof (rUSD).")],
    max_time: Annotated[str, typer.Option("--max-time", help="Longest you take per proof.")] = "1m",
    compute: Annotated[int, typer.Option("--compute", help="Compute units one request uses.")] = 1,
) -> dict[str, Any]:
    """Join a market with a price, a proving-time bound and compute per request."""
    from reef.proofs import MarketJoin, join_as_prover, stake_advice

    terms = MarketJoin(
        market_id=market_id,
        price=parse_rusd(price, "--price"),
        max_time=parse_seconds(max_time, "--max-time"),
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
    return {**result, "leave_at": format_time(result["leave_at"])}


@market_command(prover_app, "leave", title="leave", shown=_leave_rows)
def prover_leave(ctx: ProofsCtx, market_id: MarketId) -> dict[str, Any]:
    """Leave a market: the first call stops new assignments; run it again after the delay."""
    from reef.node import format_time, format_wait
    from reef.proofs import leave_market_step

    step = leave_market_step(ctx.client(), market_id)
    if step.early is not None:
        raise ProofError(
            f"{step.early.message}: you may leave market {market_id} from "
            f"{format_time(step.leave_at)} (in about {format_wait(step.wait_s)}); "
            "it assigns you no new asks meanwhile",
            hint=f"run `reef prover leave {market_id}{ctx.again}` again then",
        ) from step.early
    if step.left:
        return {"market_id": market_id, "state": "left"}
    if step.warning:
        tell(f"warning: {step.warning}")
    return {
        "market_id": market_id,
        "state": "leaving",
        "leave_at": step.leave_at,
        # As given: without this account's --key, `reef prover leave` is dev account 0's.
        "next": f"run `reef prover leave {market_id}{ctx.again}` again from then to leave",
    }


def _units(n: int) -> str:
    return f"{n} unit" if n == 1 else f"{n} units"


def _status_rows(result: dict[str, Any]) -> dict[str, Any]:
    """``reef prover status`` for people: amounts in rUSD, times in seconds, a line a market."""
    if not result["registered"]:
        return {"prover": result["prover"], "registered": False, "next": result["next"]}
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


@market_command(prover_app, "status", title="prover", shown=_status_rows)
def prover_status(ctx: ProofsCtx) -> dict[str, Any]:
    """Your stake, compute and markets (amounts in rUSD, times in seconds)."""
    from reef.proofs import describe_prover

    record = describe_prover(ctx.client(), ctx.session.address).record()
    if not record["registered"]:
        record["next"] = (
            f"`reef prover register --stake AMOUNT{ctx.again}` (rUSD), then `reef prover join "
            f"MARKET{ctx.again}`"
        )
    return record


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

        given = network_file(network)
        ctx = network_ctx(given, flags, flags.key)
        signer = ctx.session.account if tee_key is None or not tee else load_key_file(tee_key)
        if tee and signer is None:  # pragma: no cover - proofs_ctx(account=True) always opens one
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

    service = failing_call(build)
    _warn_when_idle(service.client, flags.again("rpc", "proof_market", "key"))
    if once:
        failing_call(service.step)
        return
    run_until_stopped(service, interval, f"proving as {service.client.sender}")


def _warn_when_idle(client: Any, again: str) -> None:
    """Say so when no ask can come to this prover: a run that is not registered, or in no
    market, polled in silence for ever."""
    from reef.proofs import describe_prover

    listing = failing_call(lambda: describe_prover(client, client.sender))
    idle = listing.idle()
    if idle is None:
        return
    steps = [f"`reef prover join MARKET --price AMOUNT{again}`"]
    if not listing.info.registered:
        steps.insert(0, f"`reef prover register --stake AMOUNT{again}`")
    tell(f"warning: {idle}: no ask will come to it; {' and '.join(steps)} first")


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
