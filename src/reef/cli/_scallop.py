"""`reef scallop …`: run Noise test vectors, and make one attested HTTP request over Scallop."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reef.cli._common import read_file, trusted_root
from reef.cli._options import AttestationMaxAge, Json, RequestTimeout
from reef.cli._output import (
    console,
    fail,
    failing,
    print_json,
    print_mapping,
    print_table,
    tell,
    warn_insecure_root,
)
from reef.cli._root import command_group
from reef.encoding import parse_hex, read_key_file, to_hex
from reef.errors import ChannelError, HandshakeError, InputError, ReefError

if TYPE_CHECKING:
    from reef.scallop import ScallopPeer

__all__ = ["register"]

app, register = command_group("scallop")


@app.command("vectors")
def vectors_cmd(
    file: Annotated[Path, typer.Argument(help="A Noise vector file in the cacophony JSON format.")],
    as_json: Json = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="List every vector, not only failures.")
    ] = False,
) -> None:
    """Run Noise test vectors against reef's Noise implementation.

    Protocols reef does not implement (PSK, fallback, ...) are skipped and listed. Exits 1 if a
    vector fails, or if the file holds no vector reef can run.
    """
    from reef.home import read_json
    from reef.scallop.lowlevel import run_noise_vectors

    with failing(input_code=2):
        missing = InputError(f"cannot read {file}: No such file or directory")
        report = run_noise_vectors(
            read_json(file, missing=missing, unreadable=f"cannot read {file}")
        )

    if as_json:
        print_json(
            {
                "passed": report.passed,
                "failed": report.failed,
                "skipped": report.skipped,
                "results": [
                    {
                        "index": r.index,
                        "protocol": r.protocol,
                        "status": r.status,
                        "detail": r.detail,
                    }
                    for r in report.results
                ],
            }
        )
    else:
        shown = [r for r in report.results if verbose or r.status == "failed"]
        if shown:
            print_table(
                [
                    {"#": r.index, "protocol": r.protocol, "status": r.status, "detail": r.detail}
                    for r in shown
                ],
                ["#", "protocol", "status", "detail"],
            )
        line = f"{report.passed} passed, {report.failed} failed"
        if report.skipped:
            line += (
                f" ({report.skipped} skipped: protocols reef does not implement"
                + ("" if verbose else "; --verbose lists them")
                + ")"
            )
        console().print(line, markup=False)
    if report.failed:
        raise typer.Exit(1)
    if not report.passed:
        tell("error: the file holds no vector for a protocol reef implements")
        raise typer.Exit(1)


def _endpoint(text: str) -> tuple[str, int]:
    value = text.strip()
    for prefix in ("http://", "scallop://"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
    value = value.rstrip("/")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(
            f"ENDPOINT must be host:port, got {text!r}", hint="for example 127.0.0.1:1100"
        )
    return host.strip("[]"), int(port)


def _peer_json(peer: ScallopPeer) -> dict[str, Any]:
    attestation = peer.attestation
    return {
        "static_key": to_hex(peer.static_key),
        "auth": peer.auth,
        "image_id": to_hex(peer.image_id) if peer.image_id else None,
        "root": attestation.root.name if attestation else None,
        "timestamp_ms": attestation.timestamp_ms if attestation else None,
        "handshake_hash": to_hex(peer.handshake_hash),
    }


def _point_at_network_kms(exc: ReefError, tried: str) -> None:
    """When ``tried`` reaches nothing, name in ``exc``'s hint the Scallop endpoint of the KMS root
    that the network in ``$REEF_HOME`` runs (``reef up`` on ports of its own has it elsewhere
    than the examples' 127.0.0.1:1100)."""
    import contextlib

    from reef.home import ReefHome
    from reef.node import NetworkInfo

    home = ReefHome.from_env()
    with contextlib.suppress(ReefError):  # no network here: the hint stays as it was
        kms = NetworkInfo.load(home).kms.get("scallop")
        if kms and kms != tried:
            exc.hint = (
                f"{exc.hint + ' ' if exc.hint else ''}The KMS root of the reef network in "
                f"{home.root} listens for Scallop on {kms}."
            )


@app.command("call")
def call_cmd(
    endpoint: Annotated[str, typer.Argument(help="The Scallop server, host:port.")],
    path: Annotated[str, typer.Argument(help="The HTTP path (and query), e.g. /derive.")] = "/",
    image_id: Annotated[
        list[str] | None,
        typer.Option("--image-id", help="An image id the server must run (repeatable)."),
    ] = None,
    root: Annotated[
        list[str] | None,
        typer.Option(
            "--root",
            "--trust",
            help="Trusted root the server's attestation must chain to: aws (default), mock, "
            "dev, or a certificate file (repeatable).",
        ),
    ] = None,
    pin: Annotated[
        str | None,
        typer.Option("--pin", help="Trust this server static key (hex) instead of attestation."),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key", help="Our X25519 static secret: 32 raw bytes or 64 hex (default: fresh)."
        ),
    ] = None,
    attestation_url: Annotated[
        str | None,
        typer.Option(
            "--attestation-url",
            help="Where to fetch our own attestation if the server asks for it "
            "(an attestation server attesting --key).",
        ),
    ] = None,
    method: Annotated[str, typer.Option("--method", "-X", help="HTTP method.")] = "GET",
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", help="Request body; @FILE reads it from a file."),
    ] = None,
    max_age_ms: AttestationMaxAge = 300_000,
    timeout: RequestTimeout = 10.0,
    as_json: Json = False,
) -> None:
    """Make one HTTP request over an attested Scallop channel and print who answered.

    The server must attest (under --root, fresh, its attestation naming its Noise key, and
    running one of the --image-id images if given) unless --pin names its key. Exits 1 when the
    server is refused or unreachable.
    """
    import asyncio

    from reef.scallop import PeerPolicy, PinnedKeys, auther_from_url, scallop_request

    with failing(input_code=2):
        try:
            host, port = _endpoint(endpoint)
            if not path.startswith("/"):
                raise InputError(f"PATH must start with /, got {path!r}")
            policy: PeerPolicy | PinnedKeys
            if pin is not None:
                if image_id or root:
                    raise InputError(
                        "--pin trusts a key without attestation: drop --image-id/--root"
                    )
                policy = PinnedKeys([parse_hex(pin, name="--pin", length=32)])
            else:
                policy = PeerPolicy(
                    roots=[trusted_root(spec) for spec in root or ["aws"]],
                    image_ids=[parse_hex(i, name="--image-id", length=32) for i in image_id or []],
                    max_age_ms=max_age_ms,
                )
            static_key = read_key_file(key, kind="X25519 secret key") if key is not None else None
            auther = auther_from_url(attestation_url) if attestation_url else None
            body = _body(data)
            answer = asyncio.run(
                scallop_request(
                    host,
                    port,
                    path,
                    policy=policy,
                    method=method.upper(),
                    body=body,
                    static_key=static_key,
                    auther=auther,
                    timeout_s=timeout,
                )
            )
        except ChannelError as exc:
            if attestation_url is None and "asks for our attestation" in exc.message:
                exc = HandshakeError(
                    f"the server at {host}:{port} asks its clients to attest, and this call has no "
                    "attestation to show",
                    hint="pass --key FILE (our X25519 secret) and --attestation-url URL (an "
                    "attestation server attesting that key, e.g. an enclave's "
                    "http://127.0.0.1:PORT/attestation/raw); a host without a TEE cannot "
                    "attest, so only enclaves get in",
                )
            if exc.message.startswith("could not connect to"):
                _point_at_network_kms(exc, f"{host}:{port}")
            raise fail(exc, prefix="refused" if "refused" in exc.message else "error") from exc

    peer, status, headers, content = answer.peer, answer.status, answer.headers, answer.body
    if as_json:
        try:
            text: str | None = content.decode()
        except UnicodeDecodeError:
            text = None
        print_json(
            {
                "peer": _peer_json(peer),
                "status": status,
                "headers": headers,
                "body": text,
                "body_hex": None if text is not None else content.hex(),
            }
        )
    else:
        info = _peer_json(peer)
        print_mapping(
            {
                "server key": info["static_key"],
                "image id": info["image_id"] or "(not attested: pinned key)",
                "trusted via": f"{info['auth']}, root {info['root']}"
                if info["root"]
                else info["auth"],
                "status": status,
            }
        )
        try:
            console().print(
                content.decode(), markup=False, end="" if content.endswith(b"\n") else "\n"
            )
        except UnicodeDecodeError:
            console().print(f"({len(content)} bytes) {content.hex()}", markup=False)
    if peer.attestation is not None:
        warn_insecure_root(peer.attestation.root, "the server attested")


def _body(data: str | None) -> bytes:
    if data is None:
        return b""
    if data.startswith("@"):
        return read_file(Path(data[1:]))
    return data.encode()
