"""The options many commands take, each spelt once: ``--json``, ``--rpc``, ``--market``, ``--key``,
the serverless and proof market contracts.

Each is an ``Annotated`` type, so a command declares ``rpc: Rpc = None`` and every command that
names the local network's RPC endpoint, market or sending account says the same thing in
``--help``. Options one command group alone takes stay in that group's module.

Most commands that talk to a contract end with the same few of them (``--rpc``, the contract,
``--key``, ``--json``). :func:`with_flags` appends those to a command once, in one order, and
hands them to it as one :class:`Flags` value, so each command declares only its own arguments.
"""

from __future__ import annotations

import functools
import inspect
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = [
    "AccountKey",
    "AttestationMaxAge",
    "AttestationRoot",
    "CheckAt",
    "CodeContract",
    "DebugEnclave",
    "ExpectedImageId",
    "Flags",
    "Follow",
    "FreshChain",
    "ImageFile",
    "ImageStore",
    "InitParamsFile",
    "Insecure",
    "JobsContract",
    "Json",
    "KmsEndpoint",
    "KmsPubkey",
    "KmsUrl",
    "ListenHost",
    "ListenPort",
    "Market",
    "Owner",
    "PollInterval",
    "ProofMarket",
    "RateLockOption",
    "RequestTimeout",
    "Rpc",
    "TrustOption",
    "with_flags",
]

Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
"""``--json``: print machine-readable JSON (``as_json: Json = False``)."""

Rpc = Annotated[
    str | None, typer.Option("--rpc", help="JSON-RPC URL (default: the local network's).")
]
"""``--rpc``: the chain's JSON-RPC URL; ``None`` means the one ``reef up`` recorded."""

Market = Annotated[
    str | None, typer.Option("--market", help="Market address (default: the local network's).")
]
"""``--market``: the market contract; ``None`` means the one ``reef up`` deployed."""

AccountKey = Annotated[
    Path | None,
    typer.Option("--key", help="File with your private key (default: dev account 0)."),
]
"""``--key``: the account a command sends from; ``None`` means the devnet's account 0."""

ProofMarket = Annotated[
    str | None,
    typer.Option("--proof-market", help="ProofMarket address (default: the local network's)."),
]
"""``--proof-market``: the proof market contract; ``None`` means the one ``reef up`` deployed."""

Owner = Annotated[
    str | None, typer.Option("--owner", help="Whose account (default: yours, --key's).")
]
"""``--owner``: the account a command shows; ``None`` means the sending account's own."""

AttestationRoot = Annotated[
    str,
    typer.Option(
        "--root",
        help="Trusted attestation root: aws, dev, mock, a stored provider root "
        "(provider-0xADDRESS) or a DER/PEM certificate file.",
    ),
]
"""``--root``: the one TEE root an attestation document must chain to (each command says its
default: ``aws``, or ``dev`` where reef's own dev TEE runs the enclave)."""

AttestationMaxAge = Annotated[
    int,
    typer.Option("--max-age-ms", help="Reject attestation documents older than this (ms)."),
]
"""``--max-age-ms``: the oldest peer attestation a command accepts (``= 300_000``, 5 minutes)."""

ExpectedImageId = Annotated[
    str | None,
    typer.Option("--image-id", help="The image id the attested enclave must run (32 bytes hex)."),
]
"""``--image-id``: the image id an attestation must name (``reef verify``, ``reef attestation
verify``); ``None`` checks none."""

CheckAt = Annotated[
    int | None, typer.Option("--at", min=0, help="Check as at this Unix time (seconds), not now.")
]
"""``--at``: the instant a check of signed evidence (an attestation, a TDX quote's collateral, a
verifier statement) treats as now; ``None`` means the clock."""

RequestTimeout = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the server's answer.")
]
"""``--timeout``: how long a command that asks a server one thing waits (``= 10.0``)."""

TrustOption = typer.Option(
    "--trust",
    "--root",
    help="TEE root an attestation must chain to: aws, dev, mock or a certificate file "
    "(repeatable; `kms root serve` also takes self: the root of its own attestations).",
)
"""``--trust`` (alias ``--root``), repeatable: the roots the KMS commands accept
(``trust: Annotated[list[str], TrustOption]``)."""

JobsContract = Annotated[
    str | None, typer.Option("--jobs", help="Jobs contract (default: the local network's).")
]
"""``--jobs``: the serverless Jobs contract; ``None`` means the one ``reef up`` deployed."""

CodeContract = Annotated[
    str | None, typer.Option("--code", help="Code contract (default: the local network's).")
]
"""``--code``: the serverless code contract; ``None`` means the one ``reef up`` deployed."""

ImageStore = Annotated[str | None, typer.Option("--store", help="Image store URL.")]
"""``--store``: where an image is uploaded; ``None`` means the local network's store."""

FreshChain = Annotated[
    bool, typer.Option("--fresh", help="Delete the devnet's state and start a new chain.")
]
"""``--fresh``: start the devnet from genesis, forgetting its saved state."""

RateLockOption = typer.Option(
    "--rate-lock",
    min=0,
    help="Seconds a rate revision stays locked in a market this deploys (default 300).",
    show_default=False,
)
"""``--rate-lock``: the rate lock of the market a command deploys (``reef chain deploy``, and
``reef up`` / ``reef chain`` starting a new chain): ``Annotated[int, RateLockOption] = 300``, or
``int | None`` where ``None`` leaves a kept chain's market as it is."""

ListenHost = Annotated[str, typer.Option("--host", help="Address to listen on.")]
"""``--host``: the address a server binds (``host: ListenHost = "127.0.0.1"``)."""

ListenPort = Annotated[
    int,
    typer.Option("--port", min=0, max=65535, help="Port to listen on (0 picks a free one)."),
]
"""``--port``: the port a server binds (``port: ListenPort = 8080``); with 0 the system picks
one, and the command prints the address it really listens on."""

PollInterval = Annotated[float, typer.Option("--interval", help="Seconds between polls.")]
"""``--interval``: how long a polling service sleeps between rounds."""

Follow = Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")]
"""``--follow``/``-f``: keep a log stream open and print lines as they come."""

Insecure = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Run enclaves even where this host cannot isolate them (see `reef doctor`); "
        "every output then says so.",
    ),
]
"""``--insecure``: run enclaves without isolation (development hosts); outputs say so."""

ImageFile = Annotated[
    Path,
    typer.Argument(help="An image built by `reef image build`, or an app directory (built first)."),
]
"""``IMAGE``: the enclave image a command runs, deploys or measures (``image: ImageFile``)."""

InitParamsFile = Annotated[
    Path | None,
    typer.Option(
        "--init-params", help="Init params file (JSON, `reef init-params build`) for the enclave."
    ),
]
"""``--init-params``: the init params an enclave is (or will be) given at boot; they are
measured into PCR16, so they change its image id (``reef deploy``, ``reef enclave run``, ``reef
image measure``, ``reef jobs update``)."""

DebugEnclave = Annotated[
    bool,
    typer.Option("--debug", help="A debug enclave: PCR0-2 zero, console readable (as on Nitro)."),
]
"""``--debug``: a debug enclave, run or measured as Nitro does (PCR0-2 zero, readable console)."""

KmsEndpoint = Annotated[
    str | None,
    typer.Option(
        "--kms-endpoint",
        help="The KMS root's Scallop HOST:PORT (the enclave's derive server gets its seed there).",
    ),
]
"""``--kms-endpoint``: where an enclave's derive server fetches its seed (with :data:`KmsPubkey`)."""

KmsPubkey = Annotated[
    str | None, typer.Option("--kms-pubkey", help="The KMS root's Scallop key (32 bytes hex).")
]
"""``--kms-pubkey``: the static key the KMS root at ``--kms-endpoint`` must hold."""

KmsUrl = Annotated[
    str | None,
    typer.Option(
        "--kms",
        help="The KMS public URL, e.g. http://h:1101 (default: the KMS root of the network "
        "`reef up` runs in $REEF_HOME, on whichever port it was given).",
        show_default=False,
    ),
]
"""``--kms``: a KMS root's public listener; :func:`reef.cli._common.kms_url` fills it in."""


@dataclass(frozen=True)
class Flags:
    """The shared options a :func:`with_flags` command was given (``None``/``False`` for those
    it does not take)."""

    rpc: str | None = None
    market: str | None = None
    proof_market: str | None = None
    jobs: str | None = None
    code: str | None = None
    key: Path | None = None
    as_json: bool = False

    def again(self, *names: str) -> str:
        """The contract and account flags this command was given (of ``names``, fields of this
        class, when the next command takes only those), as the tail of a command line
        (`` --rpc URL --market ADDR --key FILE``; empty when none): a next step the command
        prints must reach the same market from the same account, not the home's."""
        given = [
            (field, str(value))
            for field in ("rpc", "market", "proof_market", "jobs", "code", "key")
            if (value := getattr(self, field)) is not None and (not names or field in names)
        ]
        return "".join(
            f" --{field.replace('_', '-')} {shlex.quote(value)}" for field, value in given
        )


_FLAGS: dict[str, tuple[Any, Any]] = {
    "rpc": (Rpc, None),
    "market": (Market, None),
    "proof_market": (ProofMarket, None),
    "jobs": (JobsContract, None),
    "code": (CodeContract, None),
    "key": (AccountKey, None),
    "as_json": (Json, False),
}


def with_flags(*names: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the shared options ``names`` (fields of :class:`Flags`), after its own.

    The command takes them as one parameter ``flags: Flags`` (its first); Typer sees (through
    the wrapper's signature) the command's other parameters followed by one option per name, in
    that order::

        @app.command("show")
        @with_flags("rpc", "market", "as_json")
        def show_cmd(flags: Flags, job: JobArg) -> None: ...
    """
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
        for name in names
        for kind, default in [_FLAGS[name]]
    ]

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(command, eval_str=True)
        params = [p for name, p in own.parameters.items() if name != "flags"]

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> None:
            flags = Flags(**{name: kwargs.pop(name) for name in names})
            command(*args, flags=flags, **kwargs)

        run.__signature__ = own.replace(parameters=[*params, *shared])  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in [*params, *shared]}
        return run

    return decorate
