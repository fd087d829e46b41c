"""`reef enclave ...` commands: run images as local dev-TEE enclaves, list, follow and stop them."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reef.cli._common import kms_wiring, stop_signals
from reef.cli._options import (
    DebugEnclave,
    Follow,
    ImageFile,
    InitParamsFile,
    Insecure,
    Json,
    KmsEndpoint,
    KmsPubkey,
)
from reef.cli._output import (
    console,
    err_console,
    failing,
    print_json,
    print_mapping,
    print_table,
    say,
    tell,
)
from reef.cli._root import command_group
from reef.errors import InputError, ReefError

if TYPE_CHECKING:
    from reef.enclave import EnclaveBackend, EnclaveInfo

__all__ = ["parse_port", "register"]

app, register = command_group("enclave")


EnclaveId = Annotated[str, typer.Argument(metavar="ID", help="The enclave id.")]


def parse_port(value: str) -> tuple[int, int]:
    """``HOST:ENCLAVE`` or ``ENCLAVE`` (any free host port) to ``(enclave, host)``.

    Raises:
        InputError: when the text is not one or two port numbers.
    """
    host_text, sep, inner_text = value.rpartition(":")
    if not sep:
        host_text, inner_text = "0", value
    try:
        host, inner = int(host_text), int(inner_text)
    except ValueError as exc:
        raise InputError(f"--port {value!r} is not HOST:ENCLAVE or ENCLAVE") from exc
    if not 0 <= host <= 65535 or not 1 <= inner <= 65535:
        raise InputError(f"--port {value!r}: ports are 1-65535 (host 0 = any free port)")
    return inner, host


def _backend(
    kms_endpoint: str | None = None, kms_pubkey: str | None = None, *, insecure: bool = False
) -> EnclaveBackend:
    from reef.enclave import open_backend
    from reef.home import ReefHome

    wiring = None
    if (kms_endpoint is None) != (kms_pubkey is None):
        raise InputError("give both --kms-endpoint and --kms-pubkey, or neither")
    if kms_endpoint is not None and kms_pubkey is not None:
        wiring = kms_wiring(kms_endpoint, kms_pubkey)
    return open_backend(ReefHome.from_env(), kms=wiring, insecure=insecure)


def _row(info: EnclaveInfo) -> dict[str, Any]:
    ports = ", ".join(
        f"{url.rsplit(':', 1)[-1]}->{port}" for port, url in sorted(info.endpoints["ports"].items())
    )
    state: str = info.state
    if info.exit_code is not None and state == "crashed":
        state = f"crashed ({info.exit_code})"
    attestation = info.endpoints["attestation"].rsplit(":", 1)[-1].split("/")[0]
    return {
        "id": info.id,
        "name": info.name + (" (debug)" if info.debug else ""),
        "state": state,
        "image_id": info.image_id.hex()[:12],
        "ports": ", ".join(filter(None, [f"{attestation}->1300", ports])),
    }


def _show(info: EnclaveInfo, as_json: bool) -> None:
    if as_json:
        print_json(info.to_json())
        return
    data = info.to_json()
    endpoints = data.pop("endpoints")
    shown: dict[str, Any] = {
        "id": data["id"],
        "name": data["name"],
        "state": data["state"],
    }
    if info.state in ("crashed", "stopped"):
        shown["exit_code"] = "" if info.exit_code is None else info.exit_code
        shown["reason"] = data["reason"]
    shown["image_id"] = data["image_id"]
    shown["debug"] = "yes (PCR0-2 zero, console readable)" if info.debug else "no"
    shown["attestation"] = endpoints["attestation"]
    shown["attestation_secp256k1"] = endpoints["attestation_secp256k1"]
    for port, url in endpoints["ports"].items():
        shown[f"port {port}"] = url
    if endpoints["logs"]:
        shown["logs"] = endpoints["logs"]
    shown["limits"] = f"{info.cpus} vCPU, {info.memory_mib} MiB"
    shown["network"] = info.network
    shown["sandbox"] = info.sandbox
    print_mapping(shown)
    _warn(info)


def _warn(info: EnclaveInfo) -> None:
    for warning in info.warnings:
        tell(warning, style="bold red")


@app.command("run")
def run_cmd(
    image: ImageFile,
    init_params: InitParamsFile = None,
    debug: DebugEnclave = False,
    cpus: Annotated[int | None, typer.Option("--cpus", help="vCPUs (default: reef.toml).")] = None,
    memory: Annotated[
        int | None, typer.Option("--memory", help="Memory in MiB (default: reef.toml).")
    ] = None,
    ports: Annotated[
        list[str] | None,
        typer.Option("--port", help="HOST:ENCLAVE or ENCLAVE (free host port); repeatable."),
    ] = None,
    network: Annotated[
        str, typer.Option("--network", help="auto (own namespace if possible), netns or host.")
    ] = "auto",
    kms_endpoint: KmsEndpoint = None,
    kms_pubkey: KmsPubkey = None,
    allow_host_ports: Annotated[
        list[int] | None,
        typer.Option(
            "--allow-host-port",
            help="A host port on 127.0.0.1 the app may reach ($REEF_HOST_ADDR:PORT); repeatable. "
            "Other host addresses and ports are refused.",
        ),
    ] = None,
    tmp_mib: Annotated[
        int, typer.Option("--tmp-size", help="Size of the app's private /tmp, in MiB.")
    ] = 256,
    insecure: Insecure = False,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Return once started; it keeps running.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Run an image as a local enclave (foreground until Ctrl-C, or --detach)."""
    import asyncio

    from reef.enclave import EnclaveSpec

    with failing():
        if network not in ("auto", "netns", "host"):
            raise InputError(f"--network must be auto, netns or host, not {network!r}")
        mapping: dict[int, int] = {}
        for value in ports or []:
            inner, host = parse_port(value)
            if inner in mapping:
                raise InputError(f"enclave port {inner} is mapped twice")
            mapping[inner] = host
        spec = EnclaveSpec(
            image=image,
            init_params=init_params,
            debug=debug,
            cpus=cpus,
            memory_mib=memory,
            ports=mapping,
            network=network,  # type: ignore[arg-type]
            allow_host_ports=tuple(allow_host_ports or ()),
            tmp_mib=tmp_mib,
        )
        backend = _backend(kms_endpoint, kms_pubkey, insecure=insecure)
        if as_json:
            info = asyncio.run(backend.start(spec))
        else:
            with err_console().status("starting the enclave (sandbox, network, trusted base)…"):
                info = asyncio.run(backend.start(spec))
    _show(info, as_json)
    if detach:
        return
    code = asyncio.run(_foreground(backend, info, quiet=as_json))
    raise typer.Exit(code)


async def _foreground(backend: EnclaveBackend, info: EnclaveInfo, *, quiet: bool) -> int:
    """Follow the console (debug) or wait, until the enclave ends or Ctrl-C stops it."""
    import asyncio

    if not quiet:
        tell(
            f"enclave {info.id} running; Ctrl-C stops it"
            + ("" if info.debug else " (console is private: not a debug enclave)")
        )

    # With --json, stdout holds the JSON document only; the console then goes to stderr.
    out = sys.stderr if quiet else sys.stdout

    async def watch() -> None:
        if info.debug:
            async for line in backend.follow(info.id):
                out.write(line + "\n")
                out.flush()
        else:
            # The enclave runs in another process; its state file is all there is to watch.
            while (await backend.status(info.id)).state in ("starting", "running"):  # noqa: ASYNC110
                await asyncio.sleep(0.25)

    with stop_signals() as stop:
        watcher = asyncio.create_task(watch())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({watcher, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (watcher, stopper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ReefError):
                await task
        if stop.is_set():
            final = await backend.stop(info.id)
        else:
            final = await backend.status(info.id)
    if not quiet:
        tell(f"enclave {final.id} {final.state}: {final.reason or ''}".rstrip(": "))
    if final.state == "crashed":
        return 1
    return 0


@app.command("ps")
def ps_cmd(
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Also list stopped and crashed enclaves.")
    ] = False,
    as_json: Json = False,
) -> None:
    """List local enclaves."""
    import asyncio

    with failing():
        infos = asyncio.run(_backend().list())
    if not all_:
        infos = [i for i in infos if i.state in ("starting", "running")]
    if as_json:
        print_json([i.to_json() for i in infos])
        return
    if not infos:
        console().print("no enclaves" + ("" if all_ else " running (--all lists ended ones)"))
        return
    print_table(
        [_row(i) for i in infos],
        ["id", "name", "state", "image_id", "ports"],
    )


@app.command("status")
def status_cmd(
    enclave_id: EnclaveId,
    as_json: Json = False,
) -> None:
    """Show one enclave: state, exit code, measurements, endpoints."""
    import asyncio

    with failing():
        info = asyncio.run(_backend().status(enclave_id))
    _show(info, as_json)


@app.command("logs")
def logs_cmd(
    enclave_id: EnclaveId,
    follow: Follow = False,
) -> None:
    """Print a debug enclave's console (production consoles are private, as on Nitro)."""
    import asyncio

    backend = _backend()
    with failing():
        # The app's words reach the operator's terminal: say() writes out its controls.
        if not follow:
            text = asyncio.run(backend.logs(enclave_id))
            if text:
                say(text.removesuffix("\n"))
            return

        async def tail() -> None:
            async for line in backend.follow(enclave_id):
                say(line)

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(tail())


@app.command("stop")
def stop_cmd(
    enclave_id: EnclaveId,
    as_json: Json = False,
) -> None:
    """Stop an enclave: its whole process tree, network namespace and limits go with it."""
    import asyncio

    with failing():
        info = asyncio.run(_backend().stop(enclave_id))
    if as_json:
        print_json(info.to_json())
    else:
        console().print(f"enclave {info.id} {info.state}", markup=False)


@app.command("rm")
def rm_cmd(
    enclave_ids: Annotated[
        list[str], typer.Argument(metavar="ID...", help="Stopped or crashed enclaves to forget.")
    ],
) -> None:
    """Forget ended enclaves (their state directories are deleted)."""
    import asyncio

    backend = _backend()
    with failing():
        for enclave_id in enclave_ids:
            asyncio.run(backend.remove(enclave_id))
