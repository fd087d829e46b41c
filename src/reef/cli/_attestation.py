"""`reef attestation ...`: verify, inspect and (dev TEE) mint attestation evidence.

Thin over :mod:`reef.attestation`. Exit codes: 0 verified, 1 rejected (``attestation rejected:
<reason>: <message>`` on stderr) or refused, 2 usage error. Anything that relies on the mock or
dev root says so on stderr, so JSON on stdout stays machine-readable.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reef._clock import wall_clock_ms
from reef.cli._common import read_file, read_input, trusted_root
from reef.cli._options import CheckAt, ExpectedImageId, Json
from reef.cli._output import (
    attested_time,
    failing,
    iso_ms,
    print_json,
    print_mapping,
    print_result,
    tell,
    warn_insecure_root,
)
from reef.cli._root import command_group
from reef.encoding import parse_hex, to_hex
from reef.errors import AttestationError, InputError

if TYPE_CHECKING:
    from cryptography import x509

    from reef.attestation import TrustedRoot, VerifiedAttestation
    from reef.attestation._cose import Encoding

__all__ = ["Base64Input", "HexInput", "evidence_encoding", "register"]

app, register = command_group("attestation")

# The measurement registers of quotes, by the index reef.attestation gives them.
_MEASUREMENT_NAMES = {
    "tdx": {0: "MRTD", 1: "RTMR0", 2: "RTMR1", 3: "RTMR2", 4: "RTMR3"},
    "sgx": {0: "MRENCLAVE", 1: "MRSIGNER"},
}


# How commands that read evidence take it: a file or stdin, raw, hex or base64.
EvidenceFile = Annotated[
    str, typer.Argument(metavar="FILE", help="The document or quote; - reads stdin.")
]
HexInput = Annotated[bool, typer.Option("--hex", help="The input is hex text.")]
Base64Input = Annotated[bool, typer.Option("--base64", help="The input is base64 text.")]


def evidence_encoding(hex_input: bool, b64_input: bool) -> Encoding:
    """The encoding ``--hex`` / ``--base64`` name (``auto`` for neither)."""
    if hex_input and b64_input:
        raise typer.BadParameter("give at most one of --hex and --base64")
    return "hex" if hex_input else "base64" if b64_input else "auto"


def _pcr_option(values: list[str] | None) -> dict[int, bytes]:
    pcrs: dict[int, bytes] = {}
    for item in values or ():
        index_text, sep, value = item.partition("=")
        if not sep or not index_text.strip().isdigit():
            raise typer.BadParameter(f"expected N=HEX, got {item!r}", param_hint="--pcr")
        index = int(index_text)
        if not 0 <= index <= 31:
            raise typer.BadParameter(f"PCR index {index} is not in 0..31", param_hint="--pcr")
        if index in pcrs:
            raise typer.BadParameter(f"PCR{index} is given twice", param_hint="--pcr")
        try:
            pcrs[index] = parse_hex(value, name=f"PCR{index}", length=48)
        except InputError as exc:
            raise typer.BadParameter(exc.message, param_hint="--pcr") from exc
    return pcrs


def _hex_option(value: str | None, flag: str, *, length: int | None = None) -> bytes | None:
    if value is None:
        return None
    try:
        return parse_hex(value, name=flag, length=length)
    except InputError as exc:
        raise typer.BadParameter(exc.message, param_hint=flag) from exc


def _root_line(name: str, public_key: str) -> str:
    """The ``root`` row people read: the root's name, and its public key labelled as one (a bare
    hex string after the name read as part of it, or as some other value)."""
    return f"{name} (public key {public_key})"


def _print_result(result: VerifiedAttestation) -> None:
    data = result.to_json()
    rows: dict[str, Any] = {
        "verified": f"{result.kind}, {result.mode} mode, root {result.root.name}",
        "image_id": data["image_id"],
        "timestamp": attested_time(result.timestamp_ms),
        "module_id": result.module_id,
        "public_key": data["public_key"] or "(empty)",
        "user_data": data["user_data"] or "(empty)",
        "nonce": data["nonce"] or "(empty)",
    }
    if result.tcb_status is not None:
        rows["tcb_status"] = result.tcb_status
        rows["advisories"] = ", ".join(result.advisory_ids) or "(none)"
    names = _MEASUREMENT_NAMES.get(result.kind)
    for index, value in data["pcrs"].items():
        if names is not None:
            rows[names.get(int(index), f"MR{index}")] = value
        # Zero PCRs measured nothing; the image id's PCRs are always shown, the rest when set.
        elif int(index) in (0, 1, 2, 16) or value.strip("0"):
            rows[f"PCR{index}"] = value
    rows["root"] = _root_line(result.root.name, data["root"]["public_key"])
    print_mapping(rows)


@app.command("verify")
def verify_cmd(
    file: EvidenceFile,
    hex_input: HexInput = False,
    b64_input: Base64Input = False,
    root: Annotated[
        str | None,
        typer.Option(
            "--root",
            "--trust",
            help="Trusted root: aws (default), mock, dev, or a DER/PEM certificate file.",
        ),
    ] = None,
    replay: Annotated[
        bool,
        typer.Option(
            "--replay",
            help="Check the chain at the document's own time; freshness only with --max-age.",
        ),
    ] = False,
    max_age: Annotated[
        int | None,
        typer.Option("--max-age", min=0, help="Maximum document age in seconds (live: 300)."),
    ] = None,
    at: CheckAt = None,
    image_id: ExpectedImageId = None,
    pcr: Annotated[
        list[str] | None, typer.Option("--pcr", help="Expected PCR, N=HEX (repeatable).")
    ] = None,
    public_key: Annotated[
        str | None, typer.Option("--public-key", help="Expected public key (hex).")
    ] = None,
    user_data: Annotated[
        str | None, typer.Option("--user-data", help="Expected user data (hex; '' = empty).")
    ] = None,
    nonce: Annotated[str | None, typer.Option("--nonce", help="Expected nonce (hex).")] = None,
    collateral: Annotated[
        Path | None,
        typer.Option("--collateral", help="TDX/SGX quotes: QuoteCollateralV3 JSON file."),
    ] = None,
    accept: Annotated[
        list[str] | None,
        typer.Option("--accept", help="TDX/SGX quotes: accepted TCB status (repeatable)."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Verify a Nitro attestation document (or a TDX/SGX quote) and print what it attests to."""
    from reef.attestation import Expectations, detect_kind, read_evidence, verify

    encoding = evidence_encoding(hex_input, b64_input)
    expect = Expectations(
        image_id=_hex_option(image_id, "--image-id", length=32),
        pcrs=_pcr_option(pcr),
        public_key=_hex_option(public_key, "--public-key"),
        user_data=_hex_option(user_data, "--user-data"),
        nonce=_hex_option(nonce, "--nonce"),
    )
    now_ms = at * 1000 if at is not None else wall_clock_ms()
    # Live mode checks freshness (--max-age, 300 s by default); replay only when given --max-age,
    # against --at or the clock.
    max_age_ms = max_age * 1000 if max_age is not None else None if replay else 300_000
    with failing(attestation="attestation rejected"):
        evidence = read_evidence(read_input(file), encoding=encoding)
        trusted: TrustedRoot | None = None
        collateral_bytes: bytes | None = None
        if detect_kind(evidence) == "nitro":
            trusted = trusted_root(root or "aws")
        else:
            if root is not None:
                raise InputError(
                    "--root does not apply to a TDX/SGX quote",
                    hint="quotes always chain to the pinned Intel SGX Root CA; drop --root",
                )
            if collateral is None:
                raise InputError(
                    "this is a TDX/SGX quote: it needs its collateral",
                    hint="pass --collateral FILE (QuoteCollateralV3 JSON) and --at UNIX_S",
                )
            collateral_bytes = read_file(collateral)
        result = verify(
            evidence,
            root=trusted,
            mode="replay" if replay else "live",
            now_ms=now_ms if max_age_ms is not None else None,
            max_age_ms=max_age_ms,
            expect=expect,
            collateral=collateral_bytes,
            at_s=now_ms // 1000,
            accept=tuple(accept) if accept else ("UpToDate",),
        )
    warn_insecure_root(result.root, "verified")
    if as_json:
        print_json(result.to_json())
    else:
        _print_result(result)


def _certificate_info(der: bytes) -> dict[str, Any]:
    from cryptography.hazmat.primitives import hashes

    from reef.attestation._chain import describe_name, parse_certificate, public_key, subject_text
    from reef.attestation._roots import raw_public_key

    try:
        cert = parse_certificate(der, label="certificate")
    except AttestationError as exc:
        return {"error": exc.message, "size": len(der)}
    try:
        key_text = to_hex(raw_public_key(public_key(cert, label="certificate")))
    except AttestationError as exc:
        key_text = f"({exc.message})"
    info: dict[str, Any] = {
        "subject": subject_text(cert),
        "issuer": describe_name(cert.issuer),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "public_key": key_text,
    }
    info.update(_ca_info(cert))
    return info


def _ca_info(cert: x509.Certificate) -> dict[str, Any]:
    from cryptography import x509

    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return {"ca": False}
    except ValueError:
        return {"ca": None}
    return {"ca": constraints.ca, "path_length": constraints.path_length}


@app.command("inspect")
def inspect_cmd(
    file: EvidenceFile,
    hex_input: HexInput = False,
    b64_input: Base64Input = False,
    as_json: Json = False,
) -> None:
    """Decode a document WITHOUT verifying it: every field, and each certificate's validity."""
    from reef.attestation import decode_nitro, detect_kind, read_evidence

    encoding = evidence_encoding(hex_input, b64_input)
    with failing(attestation="cannot decode"):
        evidence = read_evidence(read_input(file), encoding=encoding)
        if detect_kind(evidence) == "quote":
            data = _inspect_quote(evidence)
        else:
            cose, doc = decode_nitro(evidence)
            try:
                algorithm: object = cose.algorithm()
            except AttestationError:
                algorithm = None
            data = {
                "kind": "nitro",
                "verified": False,
                "tagged": cose.tagged,
                "algorithm": "ES384" if algorithm == -35 else repr(algorithm),
                "module_id": doc.module_id,
                "digest": doc.digest,
                "timestamp_ms": doc.timestamp_ms,
                "timestamp": iso_ms(doc.timestamp_ms),
                "image_id": to_hex(doc.image_id),
                "pcrs": {str(i): to_hex(v) for i, v in doc.pcrs.items()},
                "public_key": to_hex(doc.public_key),
                "user_data": to_hex(doc.user_data),
                "nonce": to_hex(doc.nonce),
                "signature": to_hex(cose.signature),
                "certificate": _certificate_info(doc.certificate),
                "cabundle": [_certificate_info(der) for der in doc.cabundle],
            }
    if as_json:
        print_json(data)
        return
    tell("note: decoded only, NOT verified.")
    rows = {k: v for k, v in data.items() if k not in ("pcrs", "certificate", "cabundle")}
    for index, value in data.get("pcrs", {}).items():
        rows[f"PCR{index}"] = value
    if "certificate" in data:
        chain = [("leaf", data["certificate"])]
        chain += [(f"cabundle[{i}]", c) for i, c in enumerate(data["cabundle"])]
        for label, cert in chain:
            rows[label] = (
                f"{cert.get('subject', cert.get('error'))}\n"
                f"valid {cert.get('not_before', '?')} .. {cert.get('not_after', '?')}"
            )
    print_mapping({k: "" if v is None else v for k, v in rows.items()})


def _inspect_quote(evidence: bytes) -> dict[str, Any]:
    from reef.attestation import parse_quote

    parsed = parse_quote(evidence)
    return {
        "kind": parsed.kind,
        "verified": False,
        "version": parsed.version,
        "image_id": to_hex(parsed.image_id),
        "pcrs": {str(i): to_hex(v) for i, v in parsed.pcrs.items()},
        "report_data": to_hex(parsed.report_data),
        "fmspc": parsed.fmspc,
        "report": {k: to_hex(v) if isinstance(v, bytes) else v for k, v in parsed.report.items()},
        "pck_chain": [_certificate_info(der) for der in parsed.pck_chain],
    }


@app.command("mint")
def mint_cmd(
    output: Annotated[str, typer.Option("-o", "--output", help="Where to write it; - = stdout.")],
    pcr: Annotated[
        list[str] | None,
        typer.Option("--pcr", help="PCR value, N=HEX (repeatable); unset PCRs 0-15 are zero."),
    ] = None,
    public_key: Annotated[
        str | None, typer.Option("--public-key", help="Public key to attest (hex).")
    ] = None,
    user_data: Annotated[str | None, typer.Option("--user-data", help="User data (hex).")] = None,
    nonce: Annotated[str | None, typer.Option("--nonce", help="Nonce (hex).")] = None,
    module_id: Annotated[
        str | None, typer.Option("--module-id", help="Module id to report.")
    ] = None,
    hex_output: Annotated[bool, typer.Option("--hex", help="Write hex text.")] = False,
    as_json: Json = False,
) -> None:
    """Mint a Nitro-format document signed by this machine's dev TEE root (INSECURE, dev only)."""
    from reef.attestation import DevAuthority, image_id
    from reef.home import ReefHome

    pcrs = _pcr_option(pcr)
    fields = {
        "public_key": _hex_option(public_key, "--public-key") or b"",
        "user_data": _hex_option(user_data, "--user-data") or b"",
        "nonce": _hex_option(nonce, "--nonce") or b"",
    }
    with failing():
        authority = DevAuthority.load_or_create(ReefHome.from_env())
        timestamp_ms = wall_clock_ms()
        document = authority.mint(pcrs, timestamp_ms=timestamp_ms, module_id=module_id, **fields)
        data = document.hex().encode() if hex_output else document
        if output == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            try:
                Path(output).write_bytes(data)
            except OSError as exc:
                raise InputError(f"cannot write {output!r}: {exc.strerror}") from exc
    tell(
        "warning: minted by the dev TEE authority: INSECURE, dev only. It verifies only with "
        "--root dev on this machine."
    )
    if output == "-":
        return
    full = dict.fromkeys(range(16), bytes(48)) | pcrs
    root_key = to_hex(authority.root.public_key)
    summary: dict[str, Any] = {
        "path": output,
        "image_id": to_hex(image_id(full)),
        "timestamp_ms": timestamp_ms,
        "size": len(document),
        "root": {"name": "dev", "public_key": root_key},
        "insecure": True,
    }
    print_result(summary, as_json, shown={**summary, "root": _root_line("dev", root_key)})


@app.command("root")
def root_cmd(
    spec: Annotated[
        str,
        typer.Argument(
            help="aws, mock, dev, a stored provider root (provider-0xADDRESS) or a DER/PEM "
            "certificate file."
        ),
    ] = "aws",
    as_json: Json = False,
) -> None:
    """Show a trusted root: its name, fingerprint, subject, validity and public key."""
    with failing():
        trusted = trusted_root(spec)
    data: dict[str, Any] = {"name": trusted.name, "insecure": trusted.insecure}
    if trusted.provider is not None:  # a provider's word, stored by `reef deploy --root provider`
        data["provider"] = trusted.provider
        data["key_id"] = trusted.key_id
    data.update(_certificate_info(trusted.certificate))
    print_result(data, as_json)
