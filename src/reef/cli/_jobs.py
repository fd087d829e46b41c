"""`reef jobs ...` (list, show, deposit, withdraw, update, stop, close) and `reef logs JOB`.

Every command reads the chain for the truth about money (the market contract), and the job's
provider (its control plane) for what runs; amounts are rUSD decimals typed by the user and
base units inside (never floats).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reef.cli._common import MarketOption, RpcOption, market_session
from reef.cli._output import (
    JsonOption,
    fail,
    note,
    print_json,
    print_result,
    print_table,
    tx_printer,
)
from reef.errors import MarketError, ReefError, ServiceError

if TYPE_CHECKING:
    from reef.chain import Job, MarketClient
    from reef.node import Session

__all__ = ["register"]

app = typer.Typer(
    help="Your jobs in the market: inspect, fund, update, stop.", no_args_is_help=True
)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="jobs")
    root.command("logs")(logs_cmd)


KeyOption = typer.Option("--key", help="File with your private key (default: dev account 0).")
JobArgument = typer.Argument(help="The job id (0x…64 hex digits, or its index).")


# The provider's default safety margin, for a network this home did not start.
_DEFAULT_MARGIN_S = 300


def _open(
    job: str, rpc: str | None, market: str | None, key: Path | None, *, need_account: bool = True
) -> tuple[Session, MarketClient, Job]:
    """The session the flags name, its market client (printing transactions) and the job.

    Raises:
        ReefError: the network or the job cannot be found, or no account is available.
    """
    session = market_session(rpc, market, key, need_account=need_account)
    client = session.market(tx_printer)
    return session, client, client.job(job)


def _when(timestamp: int | None) -> str:
    if timestamp is None:
        return "never (rate 0)"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _margin(session: Session) -> int:
    """The provider's safety margin: the local network's, else the provider's default."""
    margin = session.safety_margin_s
    return _DEFAULT_MARGIN_S if margin is None else margin


def _stop_time(session: Session, job: Job) -> int | None:
    """When the provider stops the job's enclave: its safety margin before the money runs out."""
    from reef.market import paid_until

    until = paid_until(job)
    return None if until is None else until - _margin(session)


def _provider_view(client: MarketClient, job: Job) -> dict[str, Any] | None:
    from reef.market import ControlPlaneClient

    cp = client.provider(job.provider)
    if cp is None:
        return None
    try:
        return ControlPlaneClient(cp, timeout=3.0).job(job.id)
    except ServiceError:
        return None


def _per_hour(rate: int) -> str:
    """A market rate (token base units × 10¹² per second) as rUSD per hour."""
    from reef.chain import format_amount

    return format_amount(rate * 3600 // 10**12)


def _describe(session: Session, client: MarketClient, job: Job) -> dict[str, Any]:
    from reef.chain import format_amount
    from reef.market import JobMetadata, paid_until, settle

    lock = client.rate_lock(job.id)
    settled = settle(job, session.now())
    try:
        meta = JobMetadata.parse(job.metadata)
        metadata: dict[str, Any] = {
            "instance": meta.instance,
            "image": meta.url,
            "debug": meta.debug,
        }
    except ReefError:
        metadata = {"metadata": job.metadata[:80]}
    view = _provider_view(client, job) or {}
    enclave = view.get("enclave") or {}
    return {
        "job_id": job.id,
        "job": int(job.id, 16),
        "owner": job.owner,
        "provider": job.provider,
        **metadata,
        "rate_per_hour": _per_hour(job.rate),
        "balance": format_amount(settled.job.balance),
        "balance_on_chain": format_amount(job.balance),
        "paid_until": _when(paid_until(job)),
        "enclave_stops_by": _when(_stop_time(session, job)),
        "pending_rate": (
            f"{_per_hour(lock.new_rate)}/h from {_when(lock.unlock_time)}" if lock else ""
        ),
        "provider_status": view.get("phase", "unknown (provider unreachable)"),
        "provider_reason": view.get("reason", ""),
        "enclave": enclave.get("state", ""),
        "endpoints": enclave.get("endpoints", {}),
    }


@app.command("list")
def list_cmd(
    owner: Annotated[
        str | None, typer.Option("--owner", help="Whose jobs (default: your account).")
    ] = None,
    rpc: Annotated[str | None, RpcOption] = None,
    market: Annotated[str | None, MarketOption] = None,
    key: Annotated[Path | None, KeyOption] = None,
    json_output: bool = JsonOption,
) -> None:
    """Your open jobs."""
    from reef.chain import JobOpened, parse_address

    try:
        session = market_session(rpc, market, key, need_account=owner is None)
        who = parse_address(owner, name="owner") if owner else session.address
        client = session.market()
        ids = [
            e.job
            for e in client.events(from_block=session.start_block)
            if isinstance(e, JobOpened) and e.owner.lower() == who.lower()
        ]
        rows = []
        for job_id in ids:
            job = client.find_job(job_id)
            if job is not None:
                rows.append(_describe(session, client, job))
    except ReefError as exc:
        raise fail(exc) from exc
    if json_output:
        print_json(rows)
        return
    if not rows:
        typer.echo(f"no open jobs for {who}")
        return
    print_table(
        rows,
        ["job", "instance", "rate_per_hour", "balance", "enclave_stops_by", "enclave"],
        title=f"open jobs of {who} (rUSD; `job` is the index commands accept)",
    )


@app.command("show")
def show_cmd(
    job: Annotated[str, JobArgument],
    rpc: Annotated[str | None, RpcOption] = None,
    market: Annotated[str | None, MarketOption] = None,
    json_output: bool = JsonOption,
) -> None:
    """One job: its money (from the chain) and its enclave (from its provider)."""
    try:
        session, client, found = _open(job, rpc, market, None, need_account=False)
        out = _describe(session, client, found)
    except ReefError as exc:
        raise fail(exc) from exc
    print_result(out, json_output)


@app.command("deposit")
def deposit_cmd(
    job: Annotated[str, JobArgument],
    amount: Annotated[str, typer.Argument(help="rUSD to add, e.g. 1.5")],
    rpc: Annotated[str | None, RpcOption] = None,
    market: Annotated[str | None, MarketOption] = None,
    key: Annotated[Path | None, KeyOption] = None,
    json_output: bool = JsonOption,
) -> None:
    """Add money to a job (anyone may); its enclave then runs longer."""
    from reef.chain import format_amount, parse_amount

    try:
        value = parse_amount(amount)
        if value == 0:
            raise MarketError("the amount must be more than 0")
        session, client, _found = _open(job, rpc, market, key)
        have = client.token.balance(session.address)
        if have < value:
            raise MarketError(
                f"insufficient balance: {session.address} has {format_amount(have)} rUSD"
            )
        result = client.deposit(job, value)
        after = client.job(job)
    except ReefError as exc:
        raise fail(exc) from exc
    out = {"job_id": after.id, "deposited": format_amount(value), "tx_hash": result.tx_hash}
    print_result(out, json_output)


@app.command("withdraw")
def withdraw_cmd(
    job: Annotated[str, JobArgument],
    amount: Annotated[str | None, typer.Argument(help="rUSD to take back")] = None,
    all_: Annotated[
        bool, typer.Option("--max", help="Take back all that the notice reserve allows.")
    ] = False,
    rpc: Annotated[str | None, RpcOption] = None,
    market: Annotated[str | None, MarketOption] = None,
    key: Annotated[Path | None, KeyOption] = None,
    json_output: bool = JsonOption,
) -> None:
    """Take unused money back from a job (owner only; a notice reserve stays)."""
    from reef.chain import format_amount, parse_amount
    from reef.market import withdrawable

    try:
        if (amount is None) == (not all_):
            raise MarketError("give an AMOUNT or --max")
        session, client, found = _open(job, rpc, market, key)
        # A few seconds pass before the transaction is mined: leave them out of --max.
        limit = withdrawable(found, session.now() + 5, client.lock_wait_time())
        value = limit if all_ else parse_amount(amount or "0")
        if value == 0:
            raise MarketError(
                "nothing can be withdrawn now: the rest is the notice reserve or already spent"
            )
        if value > limit:
            raise MarketError(
                f"at most {format_amount(limit)} rUSD can be withdrawn now (the notice reserve "
                f"of {client.lock_wait_time()} s at the job's rate stays in the job)",
                hint="withdraw less, or stop the job to get everything back",
            )
        result = client.withdraw(job, value)
        stops = _stop_time(session, client.job(job))
        stopping_now = stops is not None and stops <= session.now()
    except ReefError as exc:
        raise fail(exc) from exc
    if stopping_now:
        note(
            f"what is left pays for less than the provider's {_margin(session)} s safety margin: "
            "it stops the enclave now (deposit to keep it, or `reef jobs stop` to get the rest back)"
        )
    out = {
        "job_id": found.id,
        "withdrawn": format_amount(value),
        "enclave_stops_by": _when(stops),
        "tx_hash": result.tx_hash,
    }
    print_result(out, json_output)


@app.command("update")
def update_cmd(
    job: Annotated[str, JobArgument],
    image: Annotated[
        Path | None, typer.Option("--image", help="A new app directory or image file.")
    ] = None,
    init_params: Annotated[
        Path | None, typer.Option("--init-params", help="New init params file.")
    ] = None,
    debug: Annotated[
        bool | None, typer.Option("--debug/--no-debug", help="Change debug mode.")
    ] = None,
    store: Annotated[str | None, typer.Option("--store", help="Image store URL.")] = None,
    rpc: Annotated[str | None, RpcOption] = None,
    market: Annotated[str | None, MarketOption] = None,
    key: Annotated[Path | None, KeyOption] = None,
    json_output: bool = JsonOption,
) -> None:
    """Change a job's image, init params or debug flag; the provider replaces the enclave."""
    import dataclasses

    from reef.enclave import InitParams
    from reef.market import JobMetadata, upload_image
    from reef.node import expected_image_id, prepare_image, read_init_params

    try:
        if image is None and init_params is None and debug is None:
            raise MarketError("nothing to update", hint="give --image, --init-params or --debug")
        session, client, found = _open(job, rpc, market, key)
        meta = JobMetadata.parse(found.metadata)
        changes: dict[str, Any] = {}
        if debug is not None:
            changes["debug"] = debug
        if init_params is not None:
            changes["init_params"] = read_init_params(init_params).to_base64()
        if image is not None:
            built = prepare_image(image, session.home.path("builds", ".keep").parent)
            _, changes["url"] = upload_image(session.image_store(store), built)
        updated = dataclasses.replace(meta, **changes)
        image_id = ""
        if image is not None:
            # The new enclave gets the job's init params, new or kept, and its debug flag.
            params = (
                InitParams.from_json(updated.init_params, source="the job's init params")
                if updated.init_params
                else None
            )
            image_id = expected_image_id(built, params, updated.debug).hex()
            note(f"uploaded; the new enclave must attest image id {image_id}")
        result = client.update_metadata(job, updated.to_json())
    except ReefError as exc:
        raise fail(exc) from exc
    except OSError as exc:
        raise fail(MarketError(f"cannot read a file: {exc}")) from exc
    out = {
        "job_id": found.id,
        "updated": sorted(changes),
        "image_id": image_id,
        "tx_hash": result.tx_hash,
    }
    print_result(out, json_output)


def _close(client: MarketClient, job_id: str, owner: str) -> int:
    """Close and return the refund (the owner's token balance change)."""
    before = client.token.balance(owner)
    client.close(job_id)
    return int(client.token.balance(owner)) - int(before)


def _print_closed(job_id: str, refund: int, json_output: bool) -> None:
    from reef.chain import format_amount

    print_result(
        {"job_id": job_id, "state": "closed", "refund": format_amount(refund)}, json_output
    )


@app.command("stop")
def stop_cmd(
    job: Annotated[str, JobArgument],
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Wait for the rate lock, then close and refund."),
    ] = True,
    rpc: Annotated[str | None, RpcOption] = None,
    market: Annotated[str | None, MarketOption] = None,
    key: Annotated[Path | None, KeyOption] = None,
    json_output: bool = JsonOption,
) -> None:
    """Stop a job: revise its rate to 0 (the provider stops the enclave at once), then close it
    when the market's rate lock allows, refunding what is left."""
    try:
        session, client, found = _open(job, rpc, market, key)
        if found.owner.lower() != session.address.lower():
            raise MarketError(
                f"only the job's owner {found.owner} can stop it", hint="pass --key FILE"
            )
        lock = client.rate_lock(found.id)
        if found.rate != 0 and (lock is None or lock.new_rate != 0):
            if lock is not None:
                client.revise_rate_cancel(found.id)
            client.revise_rate_initiate(found.id, 0)
            lock = client.rate_lock(found.id)
        unlock = lock.unlock_time if lock is not None else 0
        if not wait and found.rate != 0:
            out = {
                "job_id": found.id,
                "state": "stopping",
                "close_after": _when(unlock),
                "then_run": f"reef jobs close {found.id}",
            }
            print_result(out, json_output)
            return
        while (left := unlock - int(time.time())) >= 0:
            note(f"the rate lock ends in {left + 1} s; closing then")
            time.sleep(min(left + 1, 5))
        for _attempt in range(10):
            try:
                refund = _close(client, found.id, session.address)
                break
            except ReefError as exc:
                if "lock" not in str(exc).lower():
                    raise
                time.sleep(1)  # the next block's timestamp has not reached the unlock time
        else:
            raise MarketError(f"the market still refuses to close {found.id}")
    except ReefError as exc:
        raise fail(exc) from exc
    _print_closed(found.id, refund, json_output)


@app.command("close")
def close_cmd(
    job: Annotated[str, JobArgument],
    rpc: Annotated[str | None, RpcOption] = None,
    market: Annotated[str | None, MarketOption] = None,
    key: Annotated[Path | None, KeyOption] = None,
    json_output: bool = JsonOption,
) -> None:
    """Close a stopped job now and get the rest of its deposit back (after `jobs stop`)."""
    try:
        session, client, found = _open(job, rpc, market, key)
        refund = _close(client, found.id, session.address)
    except ReefError as exc:
        raise fail(exc) from exc
    _print_closed(found.id, refund, json_output)


def logs_cmd(
    job: Annotated[str, JobArgument],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    rpc: Annotated[str | None, RpcOption] = None,
    market: Annotated[str | None, MarketOption] = None,
) -> None:
    """Print a debug job's enclave console (only debug enclaves have a readable console)."""
    import httpx

    from reef.market import ControlPlaneClient

    try:
        _session, client, found = _open(job, rpc, market, None, need_account=False)
        cp = client.provider(found.provider)
        if cp is None:
            raise MarketError(f"the job's provider {found.provider} is not registered")
        answer = ControlPlaneClient(cp).ip(found.id)
        if answer is None:
            raise ServiceError(
                f"job {found.id} has no running enclave",
                hint=f"`reef jobs show {found.id}` says why",
            )
        url = (answer.get("endpoints") or {}).get("logs")
        if not url:
            raise MarketError(
                f"job {found.id} is not a debug job: its enclave's console is private",
                hint="deploy with --debug (or `reef jobs update JOB --debug`) to read logs",
            )
        timeout = httpx.Timeout(5.0, read=None if follow else 1.0)
        try:
            with httpx.stream("GET", url, params={"start_from": 0}, timeout=timeout) as stream:
                for line in stream.iter_lines():
                    if line.startswith("data:"):
                        typer.echo(line[5:].removeprefix(" "))
        except httpx.ReadTimeout:
            pass  # no new line for a second: without --follow, that is the end
        except httpx.HTTPError as exc:
            raise ServiceError(f"cannot read the enclave's logs at {url}: {exc}") from exc
    except ReefError as exc:
        raise fail(exc) from exc
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
