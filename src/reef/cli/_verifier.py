"""`reef verifier ...`: run the attestation verifier service, sign and check its statements.

Thin over :mod:`reef.attestation` (``verifier_app``, ``verify_and_sign``, ``verify_statement``).
Exit codes: 0 ok, 1 rejected or refused (``attestation rejected: <reason>: ...`` or
``statement rejected: ...`` on stderr), 2 usage error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reef._clock import wall_clock_ms
from reef.cli._attestation import Base64Input, HexInput, evidence_encoding
from reef.cli._common import read_input, trusted_root
from reef.cli._options import AttestationRoot, CheckAt, Json, ListenHost, ListenPort
from reef.cli._output import (
    fail,
    failing,
    print_result,
    tell,
    warn_insecure_root,
)
from reef.cli._root import command_group
from reef.encoding import loads_bounded, parse_hex
from reef.errors import AttestationError, ConfigError, InputError, ReefError

if TYPE_CHECKING:
    from reef.attestation import TrustedRoot, VerifierStatement

__all__ = ["register"]

app, register = command_group("verifier")

_KeyOption = typer.Option(
    "--key", help="The verifier's secp256k1 secret key file (32 raw bytes or 64 hex digits)."
)


def _warn_insecure(root: TrustedRoot) -> None:
    warn_insecure_root(
        root,
        "documents are verified",
        advice="Statements about them must never be trusted for production; use a separate "
        "verifier key for each root",
    )


def _statement_rows(statement: VerifierStatement) -> dict[str, Any]:
    from reef.crypto import Secp256k1PublicKey

    data = statement.to_json()
    signer = Secp256k1PublicKey(statement.verifier_public_key)
    return {
        "image_id": data["image_id"],
        "timestamp_ms": data["timestamp_ms"],
        "public_key": data["public_key"] or "(empty)",
        "user_data": data["user_data"] or "(empty)",
        "signature": data["signature"],
        "verifier_public_key": data["verifier_public_key"],
        "verifier_address": signer.checksum_address,
    }


@app.command("serve")
def serve_cmd(
    key: Annotated[Path, _KeyOption],
    root: AttestationRoot = "aws",
    host: ListenHost = "127.0.0.1",
    port: ListenPort = 1400,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Processes accepting on the one socket (P-384 verification holds Python's "
            "lock, so cores need processes). Default: one per CPU.",
        ),
    ] = None,
) -> None:
    """Serve POST /verify/raw and /verify/hex (Oyster's verifier API) until interrupted."""
    from reef._listen import bind
    from reef._serve import run_on
    from reef.attestation import load_verifier_key, verifier_app

    with failing():
        signing_key = load_verifier_key(key)
        trusted = trusted_root(root)
    _warn_insecure(trusted)
    with failing():
        # Bound here, before serving, so a busy port is a clear error and the address printed
        # below is the one really listened on (also with --port 0).
        listener = bind(
            host,
            port,
            what="verifier",
            error=InputError,
            hint="choose another --port or --host (is another verifier running?)",
        )
    bound_host, bound_port = listener.getsockname()[:2]
    public = signing_key.public_key
    tell(
        f"verifier {public.checksum_address} (public key {public.raw.hex()}), root "
        f"{trusted.name} ({trusted.sha256[:16]}…), listening on http://{bound_host}:{bound_port}"
    )
    run_on(
        # Its own processes, one per core: each verifies inline (see verifier_app's offload).
        verifier_app(signing_key, root=trusted, offload=False),
        listener,
        what="verifier",
        log_level="info",
        workers=workers or len(os.sched_getaffinity(0)),
    )


@app.command("sign")
def sign_cmd(
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="The attestation document; - reads stdin.")
    ],
    key: Annotated[Path, _KeyOption],
    hex_input: HexInput = False,
    b64_input: Base64Input = False,
    root: AttestationRoot = "aws",
    as_json: Json = False,
) -> None:
    """Verify a document as the service does and print the statement it would answer."""
    from reef.attestation import load_verifier_key, read_evidence, verify_and_sign

    encoding = evidence_encoding(hex_input, b64_input)
    with failing(attestation="attestation rejected"):
        signing_key = load_verifier_key(key)
        trusted = trusted_root(root)
        document = read_evidence(read_input(file), encoding=encoding)
        statement = verify_and_sign(document, signing_key, root=trusted)
    _warn_insecure(trusted)
    print_result(statement.to_json(), as_json, shown=_statement_rows(statement))


@app.command("check")
def check_cmd(
    file: Annotated[str, typer.Argument(metavar="FILE", help="The statement JSON; - reads stdin.")],
    verifier_key: Annotated[
        str,
        typer.Option(
            "--verifier-key",
            help="The trusted verifier's public key (hex: 64-byte x||y, 04.., or compressed).",
        ),
    ],
    max_age: Annotated[
        int | None,
        typer.Option("--max-age", min=0, help="Refuse statements older than this (seconds)."),
    ] = None,
    at: CheckAt = None,
    as_json: Json = False,
) -> None:
    """Check a statement's signature against a trusted verifier key (and, optionally, its age)."""
    from reef.attestation import verify_statement

    try:
        trusted = parse_hex(verifier_key, name="--verifier-key")
        try:
            data = loads_bounded(read_input(file), what="the statement")
        except InputError as exc:
            raise InputError(f"{file} is not a JSON statement: {exc.message}") from exc
        statement = verify_statement(
            data,
            trusted,
            max_age_ms=None if max_age is None else max_age * 1000,
            clock_ms=wall_clock_ms if at is None else lambda: at * 1000,
        )
    except AttestationError as exc:
        raise fail(exc, prefix="statement rejected") from exc
    except ReefError as exc:
        raise fail(exc) from exc
    print_result(
        {"valid": True, **statement.to_json()},
        as_json,
        shown={"valid": "yes", **_statement_rows(statement)},
    )


@app.command("keygen")
def keygen_cmd(
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Where to write the secret key (32 raw bytes).")
    ],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    as_json: Json = False,
) -> None:
    """Create a verifier signing key (owner-only file) and print its public key and address."""
    from reef.crypto import Secp256k1PrivateKey

    key = Secp256k1PrivateKey.generate()
    with failing():
        _write_secret(output, key.secret, force=force)
    data = {
        "key_file": str(output),
        "public_key": key.public_key.raw.hex(),
        "address": key.public_key.checksum_address,
    }
    print_result(data, as_json)


def _write_secret(path: Path, secret: bytes, *, force: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        descriptor = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise ConfigError(
            f"{path} already exists", hint="pass --force to replace it (the old key is lost)"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(secret)
