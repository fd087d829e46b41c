"""`reef jobs ...` (list, show, deposit, withdraw, update, stop, close) and `reef logs JOB`.

Every command reads the chain for the truth about money (the market contract), and the job's
provider (its control plane) for what runs; amounts are rUSD decimals typed by the user and
base units inside (never floats).

A job is named as Oyster's CLI names it: by its decimal number (``17``), which is what every
command prints; ``0x…`` is its full id. :func:`reef.chain.parse_job_id` is the one parser, wired
into every ``JOB`` argument by :data:`JobArgument`; outputs carry ``job`` (the number) and, in
JSON, ``job_id`` (the full id).

Each command parses its arguments, calls one use case of :mod:`reef.node` (stopping, closing,
the money a job holds, where its console streams) and prints what it returns; only the
progress bar of ``reef jobs stop --wait`` and the console stream itself are I/O of their own.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reef.cli._common import market_session, owner_jobs
from reef.cli._options import Flags, Follow, ImageStore, InitParamsFile, Owner, with_flags
from reef.cli._output import (
    err_console,
    failing,
    note,
    print_json,
    print_result,
    print_table,
    tell,
    tx_printer,
)
from reef.cli._root import command_group
from reef.errors import InputError, MarketError, ReefError

if TYPE_CHECKING:
    from reef.chain import Job, MarketClient, Rate
    from reef.node import Deposit, JobStatus, JobSummary, Session, Withdrawal

__all__ = ["JobArgument", "job_label", "register"]

app, _register_jobs = command_group("jobs")


def register(root: typer.Typer) -> None:
    _register_jobs(root)
    root.command("logs")(logs_cmd)


def _parse_job(text: str) -> str:
    """Typer's parser for ``JOB``: the :data:`reef.chain.JobId` a number or ``0x`` id names.

    (Annotated as ``str`` for Typer, which reads annotations at run time and must not import
    web3 for ``--help``; the value is a ``JobId``, a ``str``.)
    """
    from reef.chain import parse_job_id

    try:
        return parse_job_id(text, name="JOB")
    except InputError as exc:
        raise typer.BadParameter(
            f"{exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else "")
        ) from exc


JobArgument = typer.Argument(
    help="The job's number as `reef jobs list` and `reef deploy` print it (e.g. 17), "
    "or its full id 0x….",
    parser=_parse_job,
    metavar="JOB",
    show_default=False,
)


JobArg = Annotated[str, JobArgument]
"""A command's ``JOB`` argument (``job: JobArg``), parsed by :data:`JobArgument`."""


def job_label(job_id: str) -> str:
    """How a job is shown to people and in the commands we suggest: its decimal number."""
    return str(int(job_id, 16))


def _ids(job_id: str) -> dict[str, Any]:
    """The two forms of a job for outputs: ``job`` (its number) and ``job_id`` (its full id)."""
    return {"job": int(job_id, 16), "job_id": job_id}


def _open(
    job: str, flags: Flags, *, need_account: bool = True, owned: bool = False
) -> tuple[Session, MarketClient, Job]:
    """The session the flags name, its market client (printing transactions) and the job
    (which, when ``owned``, the sending account must own: :func:`reef.node.owned_job`).

    Raises:
        ReefError: the network or the job cannot be found, or no account is available.
    """
    from reef.chain import JobId
    from reef.node import find_open_job, owned_job

    session = market_session(flags.rpc, flags.market, flags.key, need_account=need_account)
    client = session.market(tx_printer)
    lookup = owned_job if owned else find_open_job
    return session, client, lookup(session, client, JobId(job))


def _when(timestamp: int | None) -> str:
    from reef.node import format_time

    return "never (rate 0)" if timestamp is None else format_time(timestamp)


def _stops_by(summary: JobSummary, again: str = "") -> str:
    """When the job's enclave stops, as ``reef jobs list`` and ``show`` print it.

    A stopped job (its rate revised to 0, the revision pending until the rate lock ends) still
    holds money at its old rate, so the time the money would last is not when its enclave stops:
    its provider stops the enclave at once. The market charges that old rate until the job is
    closed, which a newcomer who read "rate to zero" did not expect.
    """
    lock = summary.pending_rate
    if lock is not None and lock.new_rate == 0:
        close = (
            f"`reef jobs close {job_label(summary.job.id)}{again}` from {_when(lock.unlock_time)}"
        )
        return f"now (stopped; it pays at its old rate until closed: {close})"
    return _when(summary.stops_at)


def _per_hour(rate: Rate) -> str:
    """A market rate as the rUSD it charges per hour."""
    from reef.chain import amount_per_hour, format_amount

    return format_amount(amount_per_hour(rate))


def _provider_fields(status: JobStatus) -> dict[str, Any]:
    """What the job's provider says of it (:func:`reef.node.job_status`), flattened for people."""
    if not status.answered:
        return {"provider_state": status.state}
    return {
        "provider_state": status.state,
        "last_error": status.last_error,
        "enclave_id": status.enclave_id,
        "endpoint": status.endpoint,
        "restarts": status.restarts,
        "last_restart": status.last_restart,
        "endpoints": dict(status.endpoints),
    }


def _describe(summary: JobSummary, again: str) -> dict[str, Any]:
    """A job as ``reef jobs show`` and ``list`` print it (:func:`reef.node.summarize_job`);
    ``again`` ends the commands it names (:meth:`Flags.again`)."""
    from reef.chain import format_amount

    job = summary.job
    lock = summary.pending_rate
    meta = summary.metadata
    metadata: dict[str, Any] = (
        {"metadata": job.metadata[:80]}
        if meta is None
        else {"instance": meta.instance, "image": meta.url, "debug": meta.debug}
    )
    return {
        **_ids(job.id),
        "owner": job.owner,
        "provider": job.provider,
        **metadata,
        "rate_per_hour": _per_hour(job.rate),
        "balance": format_amount(summary.balance),
        "balance_on_chain": format_amount(job.balance),
        "paid_until": _when(summary.paid_until),
        "enclave_stops_by": _stops_by(summary, again),
        "pending_rate": (
            f"{_per_hour(lock.new_rate)}/h from {_when(lock.unlock_time)}" if lock else ""
        ),
        **_provider_fields(summary.status),
    }


@app.command("list")
@with_flags("rpc", "market", "key", "as_json")
def list_cmd(flags: Flags, owner: Owner = None) -> None:
    """Your open jobs, and what they hold and spend in total."""
    with failing():
        # Read through the session's reader (no web3.py: the command sends nothing).
        mine = owner_jobs(flags, owner)
        from reef.node import summarize_jobs  # after the session: no network, no chain modules

        who = mine.owner
        # One instant for every row and the totals: the chain's time is read once.
        summaries = summarize_jobs(mine.session, mine.reader, mine.jobs)
        again = flags.again()
        rows = [_describe(summary, again) for summary in summaries]
        totals = mine.totals(summaries[0].now) if summaries else {}
    if flags.as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo(f"no open jobs for {who}")
        return
    print_table(
        rows,
        ["job", "instance", "rate_per_hour", "balance", "enclave_stops_by", "provider_state"],
        title=f"open jobs of {who} (rUSD; JOB in other commands is the `job` number)",
    )
    count = totals["open_jobs"]
    typer.echo(
        f"{count} open job{'s' if count != 1 else ''} hold{'s' if count == 1 else ''} "
        f"{totals['jobs_balance']} rUSD and spend{'s' if count == 1 else ''} "
        f"{totals['spend_per_hour']} rUSD per hour"
    )


@app.command("show")
@with_flags("rpc", "market", "as_json")
def show_cmd(flags: Flags, job: JobArg) -> None:
    """One job: its money (from the chain) and its enclave (from its provider)."""
    with failing():
        from reef.chain import JobId
        from reef.node import find_open_job, summarize_job

        # Read through the session's reader (no web3.py: the command sends nothing).
        session = market_session(flags.rpc, flags.market, None, need_account=False)
        found = find_open_job(session, session.reader, JobId(job))
        out = _describe(summarize_job(session, session.reader, found), flags.again())
    print_result(out, flags.as_json, shown=_with_units(out))


def _with_units(job: dict[str, Any]) -> dict[str, Any]:
    """A job's money for people (``reef jobs show``): each amount with its unit, and which of
    the two balances is which (``--json`` keeps the plain decimals)."""
    return {
        **job,
        "rate_per_hour": f"{job['rate_per_hour']} rUSD",
        "balance": f"{job['balance']} rUSD (left now)",
        "balance_on_chain": f"{job['balance_on_chain']} rUSD (as last settled on chain)",
    }


def _print_moved(job_id: str, moved: str, done: Deposit | Withdrawal, as_json: bool) -> None:
    """What a deposit or a withdrawal did: the rUSD ``moved`` (``deposited``, ``withdrawn``) and
    until when the job's enclave now runs, which is what moving a job's money changes (with the
    warning, on stderr, when that is now)."""
    from reef.chain import format_amount

    if done.warning:
        note(done.warning)
    out = {
        **_ids(job_id),
        moved: format_amount(done.amount),
        "enclave_stops_by": _when(done.stops_at),
        "tx_hash": done.tx_hash,
    }
    print_result(out, as_json, shown={**out, moved: f"{out[moved]} rUSD"})


@app.command("deposit")
@with_flags("rpc", "market", "key", "as_json")
def deposit_cmd(
    flags: Flags,
    job: JobArg,
    amount: Annotated[str, typer.Argument(help="rUSD to add, e.g. 1.5")],
) -> None:
    """Add money to a job (anyone may); its enclave then runs longer (this says until when)."""
    from reef.chain import JobId, parse_amount
    from reef.node import deposit_to_job

    with failing():
        value = parse_amount(amount)
        session = market_session(flags.rpc, flags.market, flags.key)
        done = deposit_to_job(session, session.market(tx_printer), JobId(job), value)
    # How much longer it runs is what a deposit is for (withdraw says it too).
    _print_moved(job, "deposited", done, flags.as_json)


@app.command("withdraw")
@with_flags("rpc", "market", "key", "as_json")
def withdraw_cmd(
    flags: Flags,
    job: JobArg,
    amount: Annotated[str | None, typer.Argument(help="rUSD to take back")] = None,
    all_: Annotated[
        bool, typer.Option("--max", help="Take back all that the notice reserve allows.")
    ] = False,
) -> None:
    """Take unused money back from a job (owner only; a notice reserve stays)."""
    from reef.chain import parse_amount
    from reef.node import withdraw_from_job

    with failing():
        if (amount is None) == (not all_):
            raise MarketError("give an AMOUNT or --max")
        session, client, found = _open(job, flags)
        wanted = None if all_ else parse_amount(amount or "0")
        done = withdraw_from_job(session, client, found, wanted)
    _print_moved(found.id, "withdrawn", done, flags.as_json)


@app.command("update")
@with_flags("rpc", "market", "key", "as_json")
def update_cmd(
    flags: Flags,
    job: JobArg,
    image: Annotated[
        Path | None, typer.Option("--image", help="A new app directory or image file.")
    ] = None,
    init_params: InitParamsFile = None,
    debug: Annotated[
        bool | None, typer.Option("--debug/--no-debug", help="Change debug mode.")
    ] = None,
    store: ImageStore = None,
) -> None:
    """Change a job's image, init params or debug flag; the provider replaces the enclave."""
    from reef.chain import parse_job_id
    from reef.node import JobUpdate, update_job

    change = JobUpdate(image=image, init_params=init_params, debug=debug, store_url=store)
    with failing():
        try:
            session, client, found = _open(job, flags)
            result = update_job(session, client, parse_job_id(found.id), change, progress=note)
        except OSError as exc:
            raise MarketError(f"cannot read a file: {exc}") from exc
    out = {
        **_ids(found.id),
        "updated": list(result.updated),
        "image_id": result.image_id,
        "tx_hash": result.tx_hash,
    }
    # Without a new image no id is computed here, yet the enclave's changes with the debug flag
    # and the init params: a blank row read as "no image id"; say where to read the new one.
    # A debug enclave's id is every debug enclave's (zero PCRs): said, as `reef deploy` says it.
    label = job_label(found.id)
    show = f"reef jobs show {label}{flags.again('rpc', 'market')}"  # show takes no --key
    debug_now = change.debug if change.debug is not None else _is_debug(found.metadata)
    if result.image_id:
        image_text = result.image_id + (" (debug: not its image's)" if debug_now else "")
    elif debug_now:
        image_text = (
            "(a debug enclave's: its PCR0-2 are zero, so it attests no image; "
            f"`{show}` names its attestation endpoint)"
        )
    else:
        image_text = f"(same image file; `{show}` shows the replaced enclave)"
    shown = {
        **out,
        # The metadata's field is "url"; what was asked for (--image) is the image.
        "updated": ["image" if field == "url" else field for field in result.updated],
        "image_id": image_text,
    }
    print_result(out, flags.as_json, shown=shown)


def _is_debug(metadata: str) -> bool:
    """Whether a job's metadata asks for a debug enclave (``False`` when it is not reef's)."""
    from reef.market import JobMetadata

    try:
        return JobMetadata.parse(metadata).debug
    except ReefError:
        return False


def _wait_for(unlock: int, label: str) -> None:
    """Wait until ``unlock`` (unix seconds) with one progress bar on stderr."""
    from rich.progress import BarColumn, Progress, TextColumn

    from reef.node import format_wait

    total = max(1, unlock - int(time.time()))
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[left]}"))
    with Progress(*columns, console=err_console(), transient=False) as bar:
        task = bar.add_task(label, total=total, left=format_wait(total))
        while (left := unlock - int(time.time())) > 0:
            bar.update(task, completed=total - left, left=f"{format_wait(left)} left")
            time.sleep(min(left, 0.5))
        bar.update(task, completed=total, left="done")


def _print_closed(job_id: str, refund: int, as_json: bool) -> None:
    from reef.chain import format_amount

    print_result({**_ids(job_id), "state": "closed", "refund": format_amount(refund)}, as_json)


@app.command("stop")
@with_flags("rpc", "market", "key", "as_json")
def stop_cmd(
    flags: Flags,
    job: JobArg,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="Wait here for the market's rate lock, then close the job and refund "
            "(default: return at once and say when `reef jobs close` works).",
        ),
    ] = False,
) -> None:
    """Stop a job: revise its rate to 0, and the provider stops the enclave at once.

    The market lets you close the job and take back the rest once its rate lock
    (300 s on Oyster) has passed: this says when, and the command to run then.
    With --wait it waits (one progress bar), then closes the job itself.
    """
    from reef.node import CloseWait, format_wait, stop_and_close

    with failing():
        session, client, found = _open(job, flags, owned=True)
        label = job_label(found.id)
        bar = f"job {label}: closing when the rate lock ends"
        waiting = CloseWait(until=lambda unlock: _wait_for(unlock, bar)) if wait else None
        stopped = stop_and_close(session, client, found, wait=waiting)
    if stopped.refund is not None:
        _print_closed(found.id, stopped.refund, flags.as_json)
        return
    unlock = stopped.close_at
    note(
        f"job {label} is stopping: its provider stops the enclave when it reads the stop (at "
        "once, while it runs); the market lets you close it and take back the rest from "
        f"{_when(unlock)} (in {format_wait(unlock - stopped.now)}); "
        "until you close it, it pays at its old rate"
    )
    out = {
        **_ids(found.id),
        "state": "stopping",
        "close_after": _when(unlock),
        "close_at": unlock,
        "then_run": f"reef jobs close {label}{flags.again()}",
    }
    # close_at is for scripts; people read the same moment in close_after.
    shown = {key: value for key, value in out.items() if key != "close_at"}
    print_result(out, flags.as_json, shown=shown)


@app.command("close")
@with_flags("rpc", "market", "key", "as_json")
def close_cmd(flags: Flags, job: JobArg) -> None:
    """Close a stopped job and get the rest of its deposit back (after `reef jobs stop`)."""
    from reef.node import close_job

    with failing():
        session, client, found = _open(job, flags)
        refund = close_job(session, client, found)
    _print_closed(found.id, refund, flags.as_json)


@with_flags("rpc", "market")
def logs_cmd(
    flags: Flags,
    job: JobArg,
    follow: Follow = False,
) -> None:
    """Print a debug job's enclave console (only debug enclaves have a readable console)."""
    from reef.node import enclave_log_lines, enclave_logs_url

    with failing():
        _session, client, found = _open(job, flags, need_account=False)
        for line in enclave_log_lines(enclave_logs_url(client, found), follow=follow):
            typer.echo(line)
    if follow:
        # The enclave closed its console: a following newcomer saw the command end, exit 0,
        # with nothing said, when `reef jobs update` had replaced the enclave.
        label, again = job_label(found.id), flags.again()  # logs takes only --rpc, --market
        tell(
            f"job {label}'s enclave console ended: the enclave stopped or was replaced "
            f"(`reef jobs show {label}{again}` says which); "
            f"`reef logs {label} --follow{again}` follows a new one"
        )
