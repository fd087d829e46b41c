"""Intel TDX and SGX quotes (DCAP), verified through dcap-qvl into the common result shape.

A DCAP quote is a report (TDX: MRTD, RTMR0–3, report data; SGX: MRENCLAVE, MRSIGNER, report data)
signed by a quoting enclave whose key is certified by a PCK certificate chain ending at the Intel
SGX Root CA. Whether the *platform* is trustworthy depends on collateral Intel publishes (TCB info,
QE identity, CRLs) and on the instant it is checked at. :func:`verify_quote` checks all of it at
an explicit instant and returns a :class:`VerifiedAttestation` like a Nitro document does.

dcap-qvl (Phala Network, MIT; Rust behind an abi3 wheel) is the best maintained DCAP verifier
usable from Python: it implements Intel's QVL algorithm (quote and QE report signatures, PCK chain
with CRLs, TCB info and QE identity signatures and validity, TCB level matching, TDX module
identity, debug and reserved attribute bits). reef adds the pinned root, the instant as a
parameter, a TCB status policy, and the translation of every dcap-qvl error into reef's tree.

Identity of a quote (reef's definition, documented in docs/verifier.md):

- TDX: ``pcrs`` are the UEFI CC measurement-register indices — 0 = MRTD, 1 = RTMR0, 2 = RTMR1,
  3 = RTMR2, 4 = RTMR3 — and ``image_id = SHA-256(MRTD || RTMR0 || RTMR1 || RTMR2)``: the firmware,
  boot configuration, kernel and command line, i.e. the image; RTMR3 is left to the application's
  runtime events. The 192-byte preimage differs in length from a Nitro image id's 196 bytes, so a
  TDX image id can only equal a Nitro one through a SHA-256 collision.
- SGX: ``pcrs`` are 0 = MRENCLAVE, 1 = MRSIGNER, and ``image_id = MRENCLAVE`` (SGX's own
  identity of the enclave code).
- ``user_data`` is the 64-byte report data; ``public_key`` and ``nonce`` are empty (bind them in the
  report data); ``timestamp_ms`` is 0 because a quote carries no time (``report["verified_at_s"]``
  holds the instant used). Callers needing freshness put a challenge in the report data.

One module (about 600 lines): the quote's byte layout, its parsing and the checks on it are one
specification (Intel's), kept together so a reader can follow each field from offset to check.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding

from reef.attestation._chain import parse_certificate, subject_text
from reef.attestation._model import (
    Expectations,
    VerifiedAttestation,
    check_expectations,
)
from reef.attestation._roots import TrustedRoot
from reef.encoding import loads_bounded
from reef.errors import (
    AttestationError,
    CertificateChainError,
    CertificateExpiredError,
    ConfigError,
    DecodeError,
    InputError,
    SignatureError,
    TcbStatusError,
)

__all__ = [
    "INTEL_ROOT_SHA256",
    "TCB_STATUSES",
    "ParsedQuote",
    "intel_root",
    "parse_quote",
    "verify_quote",
]

QuoteKind = Literal["tdx", "sgx"]

# Intel SGX Root CA (CN=Intel SGX Root CA, O=Intel Corporation, P-256, valid 2018-05-21 ..
# 2049-12-31; https://certificates.trustedservices.intel.com/Intel_SGX_Provisioning_Certification_RootCA.pem).
# It anchors every PCK chain and the TCB-signing chain, for SGX and TDX alike.
INTEL_ROOT_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
_INTEL_ROOT_B64 = (
    "MIICjzCCAjSgAwIBAgIUImUM1lqdNInzg7SVUr9QGzknBqwwCgYIKoZIzj0EAwIwaDEaMBgGA1UE"
    "AwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENvcnBvcmF0aW9uMRQwEgYDVQQH"
    "DAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJBgNVBAYTAlVTMB4XDTE4MDUyMTEwNDUxMFoX"
    "DTQ5MTIzMTIzNTk1OVowaDEaMBgGA1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUlu"
    "dGVsIENvcnBvcmF0aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJBgNV"
    "BAYTAlVTMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEC6nEwMDIYZOj/iPWsCzaEKi71OiOSLRF"
    "hWGjbnBVJfVnkY4u3IjkDYYL0MxO4mqsyYjlBalTVYxFP2sJBK5zlKOBuzCBuDAfBgNVHSMEGDAW"
    "gBQiZQzWWp00ifODtJVSv1AbOScGrDBSBgNVHR8ESzBJMEegRaBDhkFodHRwczovL2NlcnRpZmlj"
    "YXRlcy50cnVzdGVkc2VydmljZXMuaW50ZWwuY29tL0ludGVsU0dYUm9vdENBLmRlcjAdBgNVHQ4E"
    "FgQUImUM1lqdNInzg7SVUr9QGzknBqwwDgYDVR0PAQH/BAQDAgEGMBIGA1UdEwEB/wQIMAYBAf8C"
    "AQEwCgYIKoZIzj0EAwIDSQAwRgIhAOW/5QkR+S9CiSDcNoowLuPRLsWGf/Yi7GSX94BgwTwgAiEA"
    "4J0lrHoMs+Xo5o/sX6O9QWxHRAvZUGOdRQ7cvqRXaqI="
)

# Every status Intel's TCB info can assign, least to most severe. dcap-qvl itself refuses
# Revoked; the others are returned and reef's ``accept`` policy decides.
TCB_STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)

_TEE_TDX = 0x81
_TEE_SGX = 0x00
# A quote with its certification data is a few KiB (go-tdx-guest pads one to 8000 bytes); the
# bound keeps a hostile input from reaching the parser at any size.
_MAX_QUOTE = 1 << 20
_LAST_INSTANT_S: Final = 253_402_300_799
"""9999-12-31T23:59:59Z, the last instant :mod:`datetime` (and X.509's GeneralizedTime) names."""


def _dcap() -> Any:
    # Imported on first use: loading dcap-qvl costs ~50 ms that Nitro-only callers never need.
    import dcap_qvl

    return dcap_qvl


def intel_root() -> TrustedRoot:
    """The Intel SGX Root CA, the only root DCAP quotes chain to (pinned by SHA-256).

    Raises:
        ConfigError: when the embedded certificate does not match its pinned fingerprint.
    """
    der = base64.b64decode(_INTEL_ROOT_B64)
    if hashlib.sha256(der).hexdigest() != INTEL_ROOT_SHA256:
        raise ConfigError(
            "the embedded Intel SGX Root CA does not match its pinned SHA-256",
            hint="the reef installation is corrupted; reinstall it",
        )
    return TrustedRoot.from_der(der, name="intel")


@dataclass(frozen=True, kw_only=True)
class ParsedQuote:
    """A quote decoded without verifying anything: what it *claims*, not what is proven.

    Attributes:
        kind: ``"tdx"`` or ``"sgx"``.
        version: the quote format version (SGX 3; TDX 4 or 5).
        image_id: the 32-byte identity reef derives from the measurements (see module docs).
        pcrs: the measurements by index (TDX: 0 MRTD, 1–4 RTMR0–3; SGX: 0 MRENCLAVE, 1 MRSIGNER).
        report_data: the 64 bytes the enclave put in its report.
        report: every report and header field, by dcap-qvl's names (``mr_td``, ``rt_mr0``, ...).
        fmspc: the platform's FMSPC (12 lowercase hex digits), or ``""`` when the PCK chain is
            unreadable.
        pck_chain: the embedded PCK certificate chain as DER, leaf first (empty when absent).
    """

    kind: QuoteKind
    version: int
    image_id: bytes
    pcrs: Mapping[int, bytes]
    report_data: bytes
    report: Mapping[str, bytes | int | str]
    fmspc: str
    pck_chain: tuple[bytes, ...] = field(repr=False)

    def verify_pck_chain(self, *, at_s: int | None = None) -> None:
        """Check, offline, that the embedded PCK chain is signed link by link up to the pinned
        Intel SGX Root CA (and, given ``at_s``, that each certificate is valid then).

        This proves the quoting key belongs to a genuine Intel platform of this FMSPC, but says
        nothing about its TCB level or revocation: that needs collateral (:func:`verify_quote`).

        Raises:
            CertificateChainError: when the chain is absent, broken, or ends elsewhere.
            CertificateExpiredError: when a certificate is outside its validity at ``at_s``.
        """
        root = intel_root()
        if not self.pck_chain:
            raise CertificateChainError("the quote carries no PCK certificate chain")
        # Parsed, and named, the way the Nitro chain walk does: a stranger's certificate may
        # hold a subject that does not parse, and a message must not fail on it.
        certs = [
            parse_certificate(der, label=f"PCK chain certificate {position}")
            for position, der in enumerate(self.pck_chain)
        ]
        if certs[-1].public_bytes(Encoding.DER) != root.certificate:
            raise CertificateChainError(
                "the PCK chain does not end at the Intel SGX Root CA",
                hint=f"expected a root with SHA-256 {INTEL_ROOT_SHA256}",
            )
        for child, parent in itertools.pairwise(certs):
            try:
                child.verify_directly_issued_by(parent)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
                raise CertificateChainError(
                    f"{subject_text(child)} is not signed by {subject_text(parent)}"
                ) from exc
        if at_s is not None:
            for cert in certs:
                start = int(cert.not_valid_before_utc.timestamp())
                end = int(cert.not_valid_after_utc.timestamp())
                if not start <= at_s <= end:
                    raise CertificateExpiredError(
                        f"{subject_text(cert)} is valid from {start} to {end}, not at {at_s}"
                    )


def parse_quote(quote: bytes) -> ParsedQuote:
    """Decode a TDX (v4/v5) or SGX (v3) quote without verifying it.

    Raises:
        DecodeError: when the bytes are not a quote dcap-qvl can decode.
    """
    raw = _check_quote_bytes(quote)
    parsed = _call(_dcap().parse_quote, raw, what="parse")
    return _parsed(parsed)


def verify_quote(
    quote: bytes,
    *,
    collateral: bytes | str | Mapping[str, Any],
    at_s: int,
    expect: Expectations | None = None,
    accept: Collection[str] = ("UpToDate",),
) -> VerifiedAttestation:
    """Verify a TDX or SGX quote against Intel collateral at the instant ``at_s``.

    Checks the quote and QE report signatures, the PCK chain up to the pinned Intel SGX Root CA
    with its CRLs, the signatures and validity of the TCB info and QE identity at ``at_s``, the
    platform's TCB level (and TDX module identity), the debug and reserved attribute bits, then
    the TCB status against ``accept`` and the caller's expectations.

    Args:
        quote: the raw quote bytes.
        collateral: dcap-qvl's ``QuoteCollateralV3`` JSON (file bytes or text) or its mapping, as
            fetched from Intel PCS or a PCCS for this quote's FMSPC.
        at_s: the instant of verification, in seconds since the Unix epoch (pass the current
            time for a live check; collateral lives about a month).
        expect: fields the result must have (image id, PCRs, report data as ``user_data``).
        accept: the TCB statuses to accept (see :data:`TCB_STATUSES`); by default only
            ``UpToDate``.

    Returns:
        The verified attestation (``kind`` ``"tdx"`` or ``"sgx"``, ``mode`` ``"replay"``:
        verified as of ``at_s``, with no notion of the quote's own age).

    Raises:
        DecodeError: the quote is malformed.
        InputError: the collateral is not valid collateral JSON, or an argument is invalid.
        SignatureError: a quote, QE report, TCB info or QE identity signature is invalid.
        CertificateChainError: the PCK chain does not lead to the Intel root, or is revoked.
        CertificateExpiredError: a certificate, CRL, TCB info or QE identity is not valid at
            ``at_s``.
        TcbStatusError: the platform's TCB status is not in ``accept`` (or is not listed at all).
        ExpectationError: a field differs from ``expect``.
        AttestationError: any other rejection, with dcap-qvl's reason in the message.
    """
    raw = _check_quote_bytes(quote)
    if isinstance(at_s, bool) or not isinstance(at_s, int) or not 0 <= at_s <= _LAST_INSTANT_S:
        raise InputError(
            f"at_s must be Unix seconds from 0 to {_LAST_INSTANT_S} (9999-12-31), got {at_s!r}"[
                :200
            ]
        )
    accepted = _check_accept(accept)
    parsed = _parsed(_call(_dcap().parse_quote, raw, what="parse"))
    collateral_obj = _load_collateral(collateral)
    root = intel_root()
    try:
        verified = _call(
            _dcap().verify_with_root_ca, raw, collateral_obj, root.certificate, at_s, what="verify"
        )
    except CertificateExpiredError as exc:
        raise _outside_window(exc, collateral, at_s) from exc
    status = str(verified.status)
    advisories = tuple(str(a) for a in verified.advisory_ids)
    if status not in accepted:
        raise _tcb_rejected(status, advisories)
    report = dict(parsed.report)
    report["ppid"] = bytes(verified.ppid)
    report["verified_at_s"] = at_s
    result = VerifiedAttestation(
        kind=parsed.kind,
        image_id=parsed.image_id,
        pcrs=parsed.pcrs,
        timestamp_ms=0,
        module_id=bytes(verified.ppid).hex(),
        public_key=b"",
        user_data=parsed.report_data,
        nonce=b"",
        root=root,
        mode="replay",
        tcb_status=status,
        advisory_ids=advisories,
        report=report,
    )
    if expect is not None:
        check_expectations(expect, result)
    return result


def _check_quote_bytes(quote: bytes) -> bytes:
    if not isinstance(quote, bytes | bytearray | memoryview):
        raise InputError(f"a quote must be bytes, got {type(quote).__name__}")
    raw = bytes(quote)
    if not raw:
        raise DecodeError("the quote is empty")
    if len(raw) > _MAX_QUOTE:
        raise DecodeError(f"the quote is {len(raw)} bytes, more than a quote can be ({_MAX_QUOTE})")
    return raw


def _check_accept(accept: Collection[str]) -> frozenset[str]:
    if isinstance(accept, str):
        accept = (accept,)
    unknown = sorted(set(accept) - set(TCB_STATUSES))
    if unknown:
        raise InputError(
            f"unknown TCB status {unknown[0]!r}",
            hint="the statuses are " + ", ".join(TCB_STATUSES),
        )
    if not accept:
        raise InputError("accept names no TCB status, so no quote could pass")
    if "Revoked" in accept:
        raise InputError(
            "a Revoked platform is never accepted",
            hint="its keys are compromised; dcap-qvl refuses it whatever the policy",
        )
    return frozenset(accept)


def _tcb_rejected(status: str, advisories: tuple[str, ...]) -> TcbStatusError:
    listed = f" (advisories {', '.join(advisories)})" if advisories else ""
    return TcbStatusError(
        f"the platform's TCB status is {status}{listed}, which is not accepted",
        hint=f"accept {status} explicitly only if these advisories do not matter to you",
    )


def _load_collateral(collateral: bytes | str | Mapping[str, Any]) -> Any:
    if not isinstance(collateral, Mapping | bytes | bytearray | memoryview | str):
        raise InputError(
            f"collateral must be JSON bytes, text or a mapping, not {type(collateral).__name__}"
        )
    try:
        if isinstance(collateral, Mapping):
            text = json.dumps(dict(collateral))
        elif isinstance(collateral, str):
            text = collateral
        else:
            text = bytes(collateral).decode("utf-8")
        return _dcap().QuoteCollateralV3.from_json(text)
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"the collateral is not valid QuoteCollateralV3 JSON: {_first_line(str(exc))}",
            hint="give the JSON dcap-qvl's get_collateral or a PCCS produces for this quote",
        ) from exc


def _call(function: Any, *args: Any, what: str) -> Any:
    try:
        return function(*args)
    except (ValueError, TypeError, OverflowError) as exc:
        raise _translate(str(exc), what=what) from exc
    except BaseException as exc:
        # A Rust panic surfaces as pyo3's PanicException, a BaseException; it means malformed
        # input reached an unchecked path, so it is a rejection, never a crash of the caller.
        if type(exc).__name__ != "PanicException":
            raise
        raise DecodeError(f"dcap-qvl could not process the quote: {exc}") from exc


# dcap-qvl reports failures as anyhow chains in one ValueError; the phrases below are its own
# (src/verify.rs, src/utils.rs, webpki errors), matched in order, first match wins.
_RULES: tuple[tuple[tuple[str, ...], type[AttestationError], str], ...] = (
    (
        (
            "issue date is in the future",
            "Identity expired",
            "TCBInfo expired",
            "CrlExpired",
            "CertExpired",
            "CertNotValidYet",
            "CrlNotValidYet",
        ),
        CertificateExpiredError,
        "expired",
    ),
    (("No matching TCB level", "TCB status is invalid", "is below minimum"), TcbStatusError, "tcb"),
    (
        (
            "Signature is invalid",
            "signature is invalid",
            "QE report hash mismatch",
            "InvalidSignatureForPublicKey",
            "BadSignature",
        ),
        SignatureError,
        "signature",
    ),
    (
        ("Fmspc mismatch", "non-TDX TCB info", "non-SGX TCB info", "Failed to decode TcbInfo"),
        AttestationError,
        "collateral",
    ),
    (
        ("Failed to decode QeIdentity", "QE Identity id/version", "Failed to load root ca"),
        AttestationError,
        "collateral",
    ),
    (("Debug mode is enabled",), AttestationError, "debug"),
    (
        ("Reserved bits in TD attributes", "SEPT_VE_DISABLE", "Invalid MR service TD"),
        AttestationError,
        "attributes",
    ),
    (
        ("UnknownIssuer", "Revoked", "CaUsedAsEndEntity", "Failed to verify certificate chain"),
        CertificateChainError,
        "chain",
    ),
    (
        (
            "Failed to decode quote",
            "Failed to parse quote",
            "Unsupported",
            "Unknown QE vendor",
            "must have version",
            "too short in quote",
            "Failed to extract PCK",
            "Failed to parse PCK",
            "Not enough data",
        ),
        DecodeError,
        "decode",
    ),
)

_HINTS = {
    "expired": "verify at an instant inside the collateral's window (after its issue dates, "
    "before the earliest nextUpdate of TCB info, QE identity and CRLs), or fetch fresh collateral",
    "tcb": "the platform needs a TCB recovery (microcode/firmware update), or fresh collateral",
    "collateral": "fetch the collateral for this quote's FMSPC and TEE type",
    "debug": "a debug enclave's memory is readable by the host; never trust it",
}


_SUMMARIES = {
    "expired": "the collateral or a certificate is not valid at the instant used",
    "tcb": "the platform's TCB is not at an acceptable level",
    "signature": "a signature over the quote or its collateral does not verify",
    "collateral": "the collateral does not belong to this quote",
    "debug": "the enclave runs in debug mode",
    "attributes": "the TD attributes are not acceptable",
    "chain": "the PCK certificate chain does not verify to the Intel SGX Root CA",
    "decode": "not a well-formed TDX or SGX quote",
}


def _translate(message: str, *, what: str) -> AttestationError:
    # anyhow's Debug form: "Verification failed: msg\n\nCaused by:\n    cause" -> "msg: cause".
    detail = message.replace("Verification failed:", "").replace("Caused by:", ":")
    detail = " ".join(detail.split()).replace(" :", ":")
    for phrases, error_type, reason in _RULES:
        if any(p in message for p in phrases):
            if error_type is TcbStatusError and "TCB status is invalid" in message:
                status = detail.rsplit(":", 1)[-1].strip()
                return _tcb_rejected(status, ())
            return error_type(
                f"{_SUMMARIES[reason]} ({detail})", reason=reason, hint=_HINTS.get(reason)
            )
    if what == "parse":
        return DecodeError(f"{_SUMMARIES['decode']} ({detail})")
    return AttestationError(f"the quote was rejected ({detail})", reason="quote")


def _iso(seconds: int) -> str:
    if not 0 <= seconds <= _LAST_INSTANT_S:  # a collateral's dates are strangers' numbers
        return f"{seconds} (Unix seconds)"[:60]
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _collateral_windows(collateral: bytes | str | Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """Each dated part of the collateral: (name, valid from, valid until) in Unix seconds.

    Best effort: a part that cannot be read is left out (dcap-qvl has already judged them).
    """
    try:
        if isinstance(collateral, Mapping):
            data = dict(collateral)
        else:
            text = collateral if isinstance(collateral, str) else bytes(collateral).decode()
            # A stranger's collateral: json recurses per bracket (reef.encoding).
            data = loads_bounded(text, what="the collateral")
    except (InputError, ValueError, TypeError):
        return []
    windows: list[tuple[str, int, int]] = []
    for name, key in (("TCB info", "tcb_info"), ("QE identity", "qe_identity")):
        try:
            body = loads_bounded(data[key], what=name)
            start = datetime.fromisoformat(body["issueDate"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(body["nextUpdate"].replace("Z", "+00:00"))
            # A date without a zone is local time, and year 1 then has no Unix time.
            window = (name, int(start.timestamp()), int(end.timestamp()))
        except (InputError, KeyError, TypeError, ValueError, AttributeError, OverflowError):
            continue
        windows.append(window)
    for name, key in (("PCK CRL", "pck_crl"), ("root CA CRL", "root_ca_crl")):
        try:
            crl = x509.load_der_x509_crl(bytes.fromhex(data[key]))
            until = crl.next_update_utc
        except (KeyError, TypeError, ValueError):
            continue
        if until is not None:
            windows.append((name, int(crl.last_update_utc.timestamp()), int(until.timestamp())))
    return windows


def _outside_window(
    exc: CertificateExpiredError, collateral: bytes | str | Mapping[str, Any], at_s: int
) -> CertificateExpiredError:
    """dcap-qvl's "expired" in reef's words: the collateral's validity dates and the instant."""
    windows = _collateral_windows(collateral)
    if not windows:
        return exc
    start = max(w[1] for w in windows)
    end = min(w[2] for w in windows)
    parts = ", ".join(f"{name} {_iso(a)} .. {_iso(b)}" for name, a, b in windows)
    window = f"{_iso(start)} to {_iso(end)} ({parts})"
    if at_s < start:
        where = f"before the collateral's window (an issue date is in the future): {window}"
    elif at_s > end:
        where = f"after the collateral's window: {window}"
    else:
        where = f"inside the collateral's window {window}, so a PCK certificate is not valid then"
    return CertificateExpiredError(
        f"{_SUMMARIES['expired']}, {_iso(at_s)}: it is {where}",
        reason="expired",
        hint=f"verify at an instant inside that window (--at {start + 1} or later, up to "
        f"{end}; `at_s=` in Python), or fetch fresh collateral for a live check",
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _parsed(quote: Any) -> ParsedQuote:
    header = quote.header
    body = quote.report
    tee_type = int(header.tee_type)
    report: dict[str, bytes | int | str] = {
        "version": int(header.version),
        "tee_type": tee_type,
        "attestation_key_type": int(header.attestation_key_type),
        "qe_svn": int(header.qe_svn),
        "pce_svn": int(header.pce_svn),
        "qe_vendor_id": bytes(header.qe_vendor_id),
        "header_user_data": bytes(header.user_data),
    }
    fields = _TDX_FIELDS if tee_type == _TEE_TDX else _SGX_FIELDS
    for name in fields:
        value = getattr(body, name, None)
        if value is not None:
            report[name] = bytes(value)
    for name in _TDX15_FIELDS:
        value = getattr(body, name, None)
        if tee_type == _TEE_TDX and value is not None:
            report[name] = bytes(value)
    fmspc = ""
    try:
        fmspc = str(quote.fmspc()).lower()
        report["ca"] = str(quote.ca())
    except (ValueError, TypeError):
        pass  # an unreadable PCK chain leaves fmspc empty; verification will reject it
    report["fmspc"] = fmspc
    chain = _pck_chain(quote)
    report_data = bytes(body.report_data)
    if tee_type == _TEE_TDX:
        kind: QuoteKind = "tdx"
        measurements = [bytes(getattr(body, n)) for n in ("mr_td", "rt_mr0", "rt_mr1", "rt_mr2")]
        pcrs = dict(enumerate([*measurements, bytes(body.rt_mr3)]))
        image = hashlib.sha256(b"".join(measurements)).digest()
    elif tee_type == _TEE_SGX:
        kind = "sgx"
        pcrs = {0: bytes(body.mr_enclave), 1: bytes(body.mr_signer)}
        image = bytes(body.mr_enclave)
    else:  # dcap-qvl refuses other TEE types while parsing; this guards a future version.
        raise DecodeError(f"unsupported TEE type {tee_type:#x} (TDX is 0x81, SGX 0x00)")
    return ParsedQuote(
        kind=kind,
        version=int(header.version),
        image_id=image,
        pcrs=MappingProxyType(pcrs),
        report_data=report_data,
        report=MappingProxyType(report),
        fmspc=fmspc,
        pck_chain=chain,
    )


_TDX_FIELDS = (
    "tee_tcb_svn",
    "mr_seam",
    "mr_signer_seam",
    "seam_attributes",
    "td_attributes",
    "xfam",
    "mr_td",
    "mr_config_id",
    "mr_owner",
    "mr_owner_config",
    "rt_mr0",
    "rt_mr1",
    "rt_mr2",
    "rt_mr3",
    "report_data",
)
_TDX15_FIELDS = ("tee_tcb_svn2", "mr_service_td")
_SGX_FIELDS = ("cpu_svn", "attributes", "mr_enclave", "mr_signer", "report_data")


def _pck_chain(quote: Any) -> tuple[bytes, ...]:
    try:
        pem = quote.cert_chain_pem_bytes()
    except (ValueError, TypeError):
        return ()
    if not pem:
        return ()
    try:
        certs = x509.load_pem_x509_certificates(bytes(pem))
    # InvalidVersion is no ValueError; UserWarning: cryptography warns about a certificate it
    # will refuse in a later release (a serial number that is not positive), which is an error
    # where warnings are.
    except (ValueError, x509.InvalidVersion, UserWarning):
        return ()
    return tuple(cert.public_bytes(Encoding.DER) for cert in certs)
