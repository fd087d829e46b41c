"""`reef executor ...`: run a serverless executor, register it, drain it, deregister it.

- ``reef executor run`` is what an executor enclave runs (its image's command): the enclave key
  from ``--key-file`` (``/app/ecdsa.sec`` in an enclave), workerd from ``--workerd`` (part of the
  image, so measured), a control port (configuration, registration signature) and a gateway port
  (the web2 path). Given ``--rpc/--jobs/--code/--owner`` it starts watching the chain at once;
  otherwise the operator configures it with ``POST /config`` (``reef executor register`` does).
- ``reef executor register`` configures an executor, has its attestation checked by the
  verifier, and registers it on the Jobs contract with a stake, from your account.
- ``reef executor drain ADDRESS`` stops new jobs going to it; ``deregister`` then returns its
  stake once its jobs are done.
- ``reef executor whitelist IMAGE_ID`` (the Jobs contract's admin) accepts executors of an
  image, or with ``--revoke`` no longer does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from reef.cli._common import open_target, serve_until_stopped
from reef.cli._options import Flags, ListenHost, with_flags
from reef.cli._output import fail, failing, note, print_result, rusd, tell
from reef.cli._root import command_group
from reef.errors import InputError

__all__ = ["register"]

app, register = command_group("executor")


@app.command("run")
def run_cmd(
    key_file: Annotated[
        Path, typer.Option("--key-file", help="The enclave's secp256k1 key (/app/ecdsa.sec).")
    ],
    workerd: Annotated[
        Path | None,
        typer.Option("--workerd", help="The workerd binary (default: reef's pinned one)."),
    ] = None,
    host: ListenHost = "127.0.0.1",
    control_port: Annotated[int, typer.Option("--control-port")] = 8081,
    gateway_port: Annotated[int, typer.Option("--gateway-port")] = 8080,
    capacity: Annotated[int, typer.Option("--capacity", help="Jobs at once.")] = 4,
    memory_mib: Annotated[int, typer.Option("--memory-mib", help="Memory cap per call.")] = 256,
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Code cache and runtime files.")
    ] = Path("/tmp/reef-executor"),  # noqa: S108 - an enclave's private tmpfs
    rpc: Annotated[
        str | None, typer.Option("--rpc", help="Configure at once: the RPC URL.")
    ] = None,
    jobs: Annotated[str | None, typer.Option("--jobs", help="... the Jobs contract.")] = None,
    code: Annotated[str | None, typer.Option("--code", help="... the code contract.")] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="... the owner address.")] = None,
) -> None:
    """Run an executor (in an enclave, or here for development)."""
    from reef.serverless import (
        ExecutorServer,
        ExecutorSettings,
        Limits,
        ensure_workerd,
        load_key,
    )

    given = {"rpc": rpc, "jobs": jobs, "code": code, "owner": owner}
    missing = [f"--{k}" for k, v in given.items() if not v]
    if any(given.values()) and missing:
        raise fail(InputError(f"to configure at once also give {', '.join(missing)}"), code=2)
    if capacity < 1:
        raise fail(InputError("--capacity must be at least 1"), code=2)
    with failing():
        try:
            (workdir / "run").mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise InputError(f"cannot create {workdir}: {exc.strerror or exc}") from exc
        limits = Limits(memory_bytes=memory_mib * 1024 * 1024)
        server = ExecutorServer(
            load_key(key_file),
            workerd if workerd is not None else ensure_workerd(),
            workdir,
            host=host,
            control_port=control_port,
            gateway_port=gateway_port,
            capacity=capacity,
            limits=limits,
            configure=ExecutorSettings(
                rpc_url=rpc, jobs_contract=jobs, code_contract=code, limits=limits
            )
            if rpc and jobs and code
            else None,
            owner=owner or "",
        )
    configured = rpc is not None

    def ready(started: ExecutorServer) -> None:
        note(
            f"executor {started.address}: control {started.control_url}, "
            f"gateway {started.gateway_url}"
        )
        if not configured:
            # Unconfigured, it watches no chain and no job selects it: say what comes next.
            tell(
                "hint: not configured yet, so it runs no jobs: `reef executor register "
                f"--control {started.control_url} --attestation URL --key FILE` configures it "
                "and registers it on chain (URL: its enclave's secp256k1 attestation endpoint, "
                "`reef enclave status ID` shows it); or start it with --rpc, --jobs, --code "
                "and --owner"
            )

    serve_until_stopped(server.start, ready)


@app.command("register")
@with_flags("rpc", "jobs", "code", "key", "as_json")
def register_cmd(
    flags: Flags,
    control: Annotated[str, typer.Option("--control", help="The executor's control URL.")],
    attestation: Annotated[
        str, typer.Option("--attestation", help="The executor enclave's secp256k1 attestation URL.")
    ],
    verifier: Annotated[
        str | None, typer.Option("--verifier", help="Verifier URL (default: the local network's).")
    ] = None,
    stake: Annotated[
        int, typer.Option("--stake", help="Stake in token base units (10000000 = 10 rUSD).")
    ] = 10_000_000,
) -> None:
    """Configure an executor, have it attested, register it with a stake (you own it)."""
    import asyncio

    from reef.serverless import register_enclave_executor

    with failing():
        where = open_target(flags, send=True)
        network = where.session.network  # network.json, as the session read it
        if verifier is None and network is not None:
            verifier = network.verifier
        if verifier is None:
            raise InputError("no verifier to attest the executor", hint="pass --verifier URL")
        client = where.jobs(send=True)
        assert where.session.account is not None  # where.jobs(send=True) checked it
        record = asyncio.run(
            register_enclave_executor(
                jobs=client,
                owner=where.session.account,
                control_url=control.rstrip("/"),
                attestation_url=attestation.rstrip("/"),
                verifier_url=verifier.rstrip("/"),
                rpc_url=where.session.rpc_url,
                code_contract=where.code_address,
                stake=stake,
            )
        )
    data = record.to_json()
    print_result(data, flags.as_json, shown=_readable(data))


def _readable(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as people read it: a stake in rUSD (with its base units, which ``--stake`` and
    ``--json`` use) and a registration time as a date, not a unix second."""
    from reef.node import format_time

    shown = dict(data)
    if isinstance(shown.get("stake"), int):
        shown["stake"] = rusd(shown["stake"], base_units=True)
    if isinstance(shown.get("registered_at"), int):
        shown["registered_at"] = format_time(shown["registered_at"])
    return shown


def _manage(action: str, address: str, flags: Flags) -> None:
    with failing():
        where = open_target(flags, send=True, code=False)  # the Jobs contract alone
        client = where.jobs(send=True)
        before = client.executor(address)
        result = getattr(client, action)(address)
        record = client.executor(address)
    data: dict[str, Any] = {"address": address, "tx_hash": result.tx_hash}
    if record is not None:
        data.update(draining=record.draining, active_jobs=record.active_jobs, stake=record.stake)
    else:
        data["registered"] = False
    shown = _readable(data)
    if record is None and before is not None and before.stake:
        # Deregistering pays the stake back: say how much, and to whom.
        shown["stake_returned"] = f"{rusd(before.stake)} to {before.owner}"
    print_result(data, flags.as_json, shown=shown)


_Executor = Annotated[str, typer.Argument(help="The executor's (enclave key's) address.")]


def _manage_cmd(action: str, doc: str) -> Callable[..., None]:
    """``drain`` and ``deregister``: the same arguments, one Jobs-contract transaction each."""

    @with_flags("rpc", "jobs", "key", "as_json")
    def command(flags: Flags, address: _Executor) -> None:
        _manage(action, address, flags)

    command.__doc__ = doc
    return command


app.command("drain")(
    _manage_cmd("drain", "Stop new jobs from selecting this executor (its running jobs go on).")
)
app.command("deregister")(
    _manage_cmd(
        "deregister", "Remove a drained executor with no active jobs; its stake returns to you."
    )
)


@app.command("whitelist")
@with_flags("rpc", "jobs", "key", "as_json")
def whitelist_cmd(
    flags: Flags,
    image_id: Annotated[
        str, typer.Argument(help="The executor image id (32 bytes of hex) its enclaves attest.")
    ],
    revoke: Annotated[
        bool, typer.Option("--revoke", help="Stop accepting it instead (registered ones stay).")
    ] = False,
) -> None:
    """Accept executors of an image on the Jobs contract, or stop (the contract admin's key)."""
    from reef.encoding import parse_bytes32

    with failing(code=2):  # a usage error, before the chain
        image = parse_bytes32(
            image_id, name="image id", hint="the image_id `reef enclave run` or register printed"
        )
    with failing():
        where = open_target(flags, send=True, code=False)  # the Jobs contract alone
        client = where.jobs(send=True)
        result = client.revoke_image(image) if revoke else client.whitelist_image(image)
        data = {
            "image_id": "0x" + image.hex(),
            "whitelisted": client.is_whitelisted(image),
            "tx_hash": result.tx_hash,
        }
    print_result(data, flags.as_json)
