"""`reef deploy IMAGE --duration 1h`: upload, open a job, wait for the enclave, verify it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from reef.cli._common import market_session
from reef.cli._options import (
    DebugEnclave,
    Flags,
    ImageFile,
    ImageStore,
    InitParamsFile,
    with_flags,
)
from reef.cli._output import failing, note, print_json, print_mapping, rusd, tell, tx_printer
from reef.errors import InputError

if TYPE_CHECKING:
    from reef.node import DeployRequest, DeployResult

__all__ = ["print_deployed", "register"]

_NONE = Flags()

DeployRoot = Annotated[
    str,
    typer.Option(
        "--root",
        help="Root the enclave must chain to: dev (this home's dev TEE), provider (the dev TEE "
        "root the provider serves, taken on its word: INSECURE; stored as provider-0xADDRESS "
        "for later commands), aws, mock, a stored root's name or a DER/PEM certificate file.",
    ),
]
"""``reef deploy --root``: as every ``--root``, and ``provider``, which only a deployment can
resolve (it knows the provider it pays)."""


def _runs_until(job: int, stops_at: int, again: str) -> str:
    """When the enclave stops and why that is before the paid time ends."""
    from reef.node import format_time

    return (
        f"{format_time(stops_at)} (the provider stops it a safety margin before the money "
        f"runs out; `reef jobs deposit {job} AMOUNT{again}` adds time)"
    )


def register(root: typer.Typer) -> None:
    root.command("deploy")(deploy_cmd)


@with_flags("rpc", "market", "key", "as_json")
def deploy_cmd(
    flags: Flags,
    image: ImageFile,
    duration: Annotated[
        str, typer.Option("--duration", help="How long to pay for: 90s, 30m, 1h, 2d ...")
    ],
    instance: Annotated[str, typer.Option("--instance", help="Instance type.")] = "dev.small",
    provider: Annotated[
        str | None, typer.Option("--provider", help="Provider address (default: the local one).")
    ] = None,
    init_params: InitParamsFile = None,
    debug: DebugEnclave = False,
    name: Annotated[str | None, typer.Option("--name", help="A name for the job.")] = None,
    region: Annotated[str | None, typer.Option("--region", help="Region (default: local).")] = None,
    store: ImageStore = None,
    root: DeployRoot = "dev",
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the enclave.")
    ] = 120.0,
    stop_on_failure: Annotated[
        bool,
        typer.Option(
            "--stop-on-failure",
            help="If the enclave crashes, does not start or fails verification once the job "
            "is open, stop the job (rate to 0) instead of leaving it open and paying.",
        ),
    ] = False,
) -> None:
    """Deploy an enclave: build, upload, pay for --duration, wait, verify, print the endpoint.

    The enclave runs until its deposit is nearly used up (the provider stops it a safety margin
    before), or until `reef jobs stop JOB`. If the app crashes at start, deploy fails as soon as
    the provider sees it, saying that the job is still open and paying and how to stop it
    (--stop-on-failure stops it).
    """
    with failing():
        # A mistyped path is the user's to fix first: said before the network is looked for
        # (which, when it is down, was all a newcomer heard about a typo).
        if not image.exists():
            raise InputError(
                f"no such image file or app directory: {image}",
                hint="give an app directory with a reef.toml (`reef examples` lists the shipped "
                "ones: `reef deploy examples/hello`) or an image from `reef image build`",
            )
        # Said before the chain client loads (web3.py and the market's modules: 2-3 s of CPU,
        # over 10 s on a busy machine), which was a silence before the first progress line.
        note(f"deploying {image} for {duration}")
        from reef.chain import parse_address
        from reef.node import DeployRequest, deploy, parse_duration

        request = DeployRequest(
            image=image,
            duration_s=parse_duration(duration),
            instance=instance,
            region=region,
            provider=parse_address(provider, name="provider") if provider else None,
            init_params=init_params,
            debug=debug,
            name=name,
            store_url=store,
            root=root,
            timeout_s=timeout,
            stop_on_failure=stop_on_failure,
            again=flags.again,
        )
        session = market_session(flags.rpc, flags.market, flags.key)
        note(f"account {session.account_note}")
        result = deploy(session, request, progress=note, tx_progress=tx_printer)
    if flags.as_json:
        print_json(result.to_json())
        return
    print_deployed(result, request, flags=flags)


def print_deployed(result: DeployResult, request: DeployRequest, *, flags: Flags = _NONE) -> None:
    """What ``reef deploy`` tells people: the notes on what its verification proves (stderr),
    then the job, where to reach it and how to stop it (each command with the ``flags`` that
    named the market and account: :meth:`~reef.cli._options.Flags.again`)."""
    again = flags.again()
    root = result.attestation.root
    if root.name == "dev":
        tell(
            "note: verified under the dev TEE root: this proves what runs only on this machine's "
            "simulated TEE, not on real hardware"
        )
    elif root.provider is not None:
        tell(
            f"note: verified under provider {root.provider}'s own dev TEE root, taken on its "
            "word: INSECURE. This shows which image its simulated TEE runs, and proves nothing "
            f"against the provider. Later commands take --root {root.name}"
        )
    if request.debug:
        # The image id a debug enclave attests is not its image's: a newcomer read "verified:
        # the enclave attests image …" as proof of the code it runs.
        tell(
            "note: a debug enclave attests zero PCRs (as on Nitro), so its image id is that of "
            "every debug enclave with the same init params: this proves that a debug enclave "
            "answers, not which code it runs; deploy without --debug for that"
        )
    print_mapping(
        {
            "job": result.job,
            "job id": result.job_id,
            "endpoint": result.endpoint or "(the image declares no ports)",
            "image id": result.image_id.hex()
            + (" (debug: not its image's)" if request.debug else ""),
            "attestation": f"{result.endpoints.get('attestation', '')} (verified live, "
            f"root {result.attestation.root.name})",
            "paid": f"{rusd(result.cost)} for {request.duration_s} s",
            **(
                {}
                if result.stops_at is None
                else {"runs until": _runs_until(result.job, result.stops_at, again)}
            ),
            **(
                {"console": f"reef logs {result.job} --follow{flags.again('rpc', 'market')}"}
                if request.debug
                else {}
            ),
            "stop it": f"reef jobs stop {result.job}{again}",
        }
    )
