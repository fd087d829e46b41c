"""`reef deploy IMAGE --duration 1h`: upload, open a job, wait for the enclave, verify it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reef.cli._output import JsonOption, err_console, fail, print_json, print_mapping
from reef.errors import ReefError

if TYPE_CHECKING:
    from reef.chain import TxProgress

__all__ = ["register", "tx_printer"]


def register(root: typer.Typer) -> None:
    root.command("deploy")(deploy_cmd)


def _progress(message: str) -> None:
    err_console().print(f"… {message}", markup=False, highlight=False)


def tx_printer(progress: TxProgress) -> None:
    """Print a transaction's progress on stderr (stdout stays for results and --json)."""
    if progress.stage == "sending":
        _progress(f"sending {progress.description}")
    elif progress.stage == "mined":
        _progress(f"{progress.description}: mined in block {progress.block_number}")


def deploy_cmd(
    image: Annotated[Path, typer.Argument(help="An app directory (built first) or image file.")],
    duration: Annotated[
        str, typer.Option("--duration", help="How long to pay for: 90s, 30m, 1h, 2d ...")
    ],
    instance: Annotated[str, typer.Option("--instance", help="Instance type.")] = "dev.small",
    provider: Annotated[
        str | None, typer.Option("--provider", help="Provider address (default: the local one).")
    ] = None,
    init_params: Annotated[
        Path | None, typer.Option("--init-params", help="Init params file (reef init-params).")
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Debug enclave: PCRs zero, logs readable.")
    ] = False,
    name: Annotated[str | None, typer.Option("--name", help="A name for the job.")] = None,
    region: Annotated[str | None, typer.Option("--region", help="Region (default: local).")] = None,
    store: Annotated[str | None, typer.Option("--store", help="Image store URL.")] = None,
    rpc: Annotated[str | None, typer.Option("--rpc", help="JSON-RPC URL.")] = None,
    market: Annotated[str | None, typer.Option("--market", help="Market address.")] = None,
    key: Annotated[Path | None, typer.Option("--key", help="File with your private key.")] = None,
    root: Annotated[
        str, typer.Option("--root", help="Trusted attestation root: dev, aws, mock or a file.")
    ] = "dev",
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the enclave.")
    ] = 120.0,
    json_output: bool = JsonOption,
) -> None:
    """Deploy an enclave: build, upload, pay for --duration, wait, verify, print the endpoint.

    The enclave runs until its deposit is nearly used up (the provider stops it a safety margin
    before), or until `reef jobs stop JOB`.
    """
    from reef.home import ReefHome
    from reef.node import DeployRequest, deploy, open_session, parse_duration

    try:
        request = DeployRequest(
            image=image,
            duration_s=parse_duration(duration),
            instance=instance,
            region=region,
            provider=provider,
            init_params=init_params,
            debug=debug,
            name=name,
            store_url=store,
            root=root,
            timeout_s=timeout,
        )
        session = open_session(ReefHome.from_env(), rpc=rpc, market=market, key=key)
        _progress(f"account {session.account_note}")
        result = deploy(session, request, progress=_progress, tx_progress=tx_printer)
    except ReefError as exc:
        raise fail(exc) from exc
    if json_output:
        print_json(result.to_json())
        return
    from reef.chain import format_amount

    if result.attestation.root.name == "dev":
        err_console().print(
            "note: verified under the dev TEE root: this proves what runs only on this machine's "
            "simulated TEE, not on real hardware",
            markup=False,
        )
    print_mapping(
        {
            "job id": result.job_id,
            "endpoint": result.endpoint or "(the image declares no ports)",
            "image id": result.image_id.hex(),
            "attestation": f"{result.endpoints.get('attestation', '')} (verified live, "
            f"root {result.attestation.root.name})",
            "paid": f"{format_amount(result.cost)} rUSD for {request.duration_s} s",
            "stop it": f"reef jobs stop {int(result.job_id, 16)}",
        }
    )
