"""`reef kms root serve` and `reef kms derive-server`: the KMS's servers, as an enclave runs them.

Each parses its flags, assembles the server through the library (:func:`reef.node.prepare_kms_root`,
:class:`reef.kms.DeriveServer`), and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Protocol, TypeVar

import typer

from reef.cli._common import kms_wiring, read_file, serve_until_stopped
from reef.cli._options import AttestationMaxAge, KmsEndpoint, KmsPubkey, TrustOption
from reef.cli._output import fail, failing, tell
from reef.encoding import parse_hex
from reef.errors import InputError, ReefError
from reef.home import ReefHome

__all__ = ["derive_server_cmd", "root_app"]

root_app = typer.Typer(help="The KMS root server (runs as an enclave).", no_args_is_help=True)

_LogLevel = Annotated[
    str, typer.Option("--log-level", help="Logging level: debug, info, warning or error.")
]

# --- servers -------------------------------------------------------------------------------------


@root_app.command("serve")
def root_serve_cmd(
    trust: Annotated[list[str], TrustOption],
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="Where the sealed seed lives (default $REEF_STATE_DIR, else $REEF_HOME/kms).",
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address both listeners bind.")] = "127.0.0.1",
    scallop_port: Annotated[int, typer.Option("--scallop-port")] = 1100,
    public_port: Annotated[int, typer.Option("--public-port")] = 1101,
    sealer: Annotated[
        str,
        typer.Option(
            "--sealer",
            help="tee: the enclave's dev-TEE sealing service ($REEF_SEALING_URL or "
            "127.0.0.1:1210); dev-home: seal with the dev TEE key for --image-id read from "
            "$REEF_HOME (outside an enclave, INSECURE).",
        ),
    ] = "tee",
    image_id: Annotated[
        str | None, typer.Option("--image-id", help="The image id to seal for (--sealer dev-home).")
    ] = None,
    rpc_url: Annotated[
        str | None, typer.Option("--rpc-url", help="JSON-RPC for contract approvals.")
    ] = None,
    chain_id: Annotated[
        int | None, typer.Option("--chain-id", help="Chain of --rpc-url (checked at start).")
    ] = None,
    admin: Annotated[
        str | None, typer.Option("--admin", help="Ethereum address allowed to rotate.")
    ] = None,
    attestation_url: Annotated[
        str | None,
        typer.Option(
            "--attestation-url",
            help="Custom attestation endpoint to attest the KMS identity (/info), e.g. "
            "http://127.0.0.1:1350/attestation/raw (default: from $REEF_CUSTOM_ATTESTATION_URL "
            "inside a local enclave).",
        ),
    ] = None,
    inherit_from: Annotated[
        str | None,
        typer.Option(
            "--inherit-from",
            help="HOST:PORT of an old root's Scallop listener: with an empty state dir, take its "
            "seeds (every version) if its admin authorised this image (reef kms handover).",
        ),
    ] = None,
    inherit_image: Annotated[
        str | None,
        typer.Option("--inherit-image", help="The old root's image id (hex): it must attest it."),
    ] = None,
    inherit_key: Annotated[
        str | None,
        typer.Option(
            "--inherit-key",
            help="A Scallop key of the old root (hex, any version): names one root of its image.",
        ),
    ] = None,
    max_age_ms: AttestationMaxAge = 300_000,
    log_level: _LogLevel = "info",
) -> None:
    """Run the KMS root: Scallop /derive and the public signed endpoints."""
    import asyncio

    from reef.kms import HandoverSource, RootServer
    from reef.node import KmsRootOptions, prepare_kms_root

    _configure_logging(log_level)
    with failing(code=2):
        inherit = None
        if inherit_from is not None:
            inherit = HandoverSource.parse(
                inherit_from, image_id=inherit_image, scallop_key=inherit_key
            )
        elif inherit_image or inherit_key:
            raise InputError("--inherit-image and --inherit-key go with --inherit-from HOST:PORT")
    options = KmsRootOptions(
        trust=trust,
        home=ReefHome.from_env(),
        state_dir=state_dir,
        sealer=sealer,
        image_id=parse_hex(image_id, name="--image-id", length=32) if image_id else None,
        rpc_url=rpc_url,
        chain_id=chain_id,
        admin=admin,
        attestation_url=attestation_url,
        environ=dict(os.environ),
        inherit=inherit,
    )
    with failing():
        prepared = asyncio.run(prepare_kms_root(options))
    for warning in prepared.warnings:
        tell(f"warning: {warning}")
    for note in prepared.notes:
        tell(note)
    kms_root = prepared.root

    def ready(server: RootServer) -> None:
        identity = kms_root.keyring.identity()
        # One machine-readable line for supervisors (reef up): where and who this root is.
        print(
            json.dumps(
                {
                    "event": "kms-root-ready",
                    "scallop": f"{host}:{server.scallop_port}",
                    "public_url": server.public_url,
                    "version": identity.version,
                    "scallop_key": identity.scallop_key.hex(),
                    "signing_key": identity.signing_key.hex(),
                }
            ),
            flush=True,
        )

    _serve_until_stopped(
        lambda: RootServer(
            kms_root,
            peer_roots=prepared.peer_roots,
            host=host,
            scallop_port=scallop_port,
            public_port=public_port,
            max_age_ms=max_age_ms,
            log_level=log_level.lower(),
        ),
        ready,
    )


def derive_server_cmd(
    kms_endpoint: KmsEndpoint = None,
    kms_pubkey: KmsPubkey = None,
    root_server_config: Annotated[
        Path | None,
        typer.Option("--root-server-config", help='JSON {"kms_endpoint", "kms_pubkey"}.'),
    ] = None,
    listen_addr: Annotated[str, typer.Option("--listen-addr")] = "127.0.0.1:1100",
    attestation_endpoint: Annotated[
        str, typer.Option("--attestation-endpoint", help="Attests the key of --secret-path.")
    ] = "http://127.0.0.1:1300/attestation/raw",
    secret_path: Annotated[
        Path, typer.Option("--secret-path", help="The enclave's X25519 identity secret (32 B).")
    ] = Path("/app/id.sec"),
    contract_address_file: Annotated[
        Path | None,
        typer.Option("--contract-address-file", help="Ask for this contract's seed instead."),
    ] = None,
    log_level: _LogLevel = "info",
) -> None:
    """Run an enclave's derive server (Oyster's flags): fetch the seed, serve it on loopback."""
    from reef.kms import DeriveServer, KmsWiring
    from reef.scallop import auther_from_url

    _configure_logging(log_level)
    try:
        if root_server_config is not None:
            data = json.loads(read_file(root_server_config))
            wiring = KmsWiring.from_json(data)
        elif kms_endpoint and kms_pubkey:
            wiring = kms_wiring(kms_endpoint, kms_pubkey)
        else:
            raise InputError("give --kms-endpoint and --kms-pubkey, or --root-server-config")
        if contract_address_file is not None:
            address = read_file(contract_address_file).decode().strip()
            wiring = dataclasses.replace(wiring, contract_address=address)
        secret = read_file(secret_path)
        if len(secret) != 32:
            raise InputError(f"{secret_path} holds {len(secret)} bytes, not a 32-byte secret")
        host, _, port = listen_addr.rpartition(":")
        if not port.isdigit():
            raise InputError(f"--listen-addr must be host:port, got {listen_addr!r}")
    except (ValueError, ReefError) as exc:
        error = exc if isinstance(exc, ReefError) else InputError(f"bad configuration: {exc}")
        raise fail(error, code=2) from exc

    _serve_until_stopped(
        lambda: DeriveServer.for_enclave(
            wiring,
            static_key=secret,
            auther=auther_from_url(attestation_endpoint),
            host=host,
            port=int(port),
            log_level=log_level.lower(),
        )
    )


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(name)s %(message)s")


class _Server(Protocol):
    async def start(self) -> object: ...

    async def wait(self) -> None: ...

    async def aclose(self) -> None: ...


_ServerT = TypeVar("_ServerT", bound=_Server)


def _serve_until_stopped(
    make: Callable[[], _ServerT], ready: Callable[[_ServerT], None] | None = None
) -> None:
    """Build the server with ``make`` and start it (inside the event loop), run ``ready``, serve
    until SIGINT/SIGTERM, then close its listeners (:func:`reef.cli._common.serve_until_stopped`,
    as every command's server)."""

    async def start() -> _ServerT:
        server = make()
        await server.start()
        return server

    serve_until_stopped(start, ready, stopping="stopping")
