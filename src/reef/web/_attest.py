"""The server's verdict on an attestation document, as the verification page shows it.

:func:`server_verdict` runs :func:`reef.attestation.verify` (the same call as ``reef attestation
verify``) and returns a JSON object the page renders next to the verdict its own JavaScript
computed (``static/nitro.js``): accepted or not, the reason name of the failed check, the
attested fields, and the certificate chain as X.509 sees it. The root is chosen by the
document's own root certificate among the roots the dashboard knows (AWS always; Oyster's mock
and this machine's dev root only marked insecure), so a document of an unknown root is rejected
under AWS's with the chain's reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any, Literal

from cryptography import x509

from reef.attestation import (
    TrustedRoot,
    decode_nitro,
    detect_kind,
    read_evidence,
    verify,
)
from reef.errors import AttestationError, InputError, ReefError

__all__ = ["known_roots", "parse_evidence", "server_verdict"]


def known_roots(dev: TrustedRoot | None) -> dict[str, TrustedRoot]:
    """The roots a document may chain to: AWS, Oyster's public mock and (if any) the dev root."""
    roots = {"aws": TrustedRoot.aws(), "mock": TrustedRoot.mock()}
    if dev is not None:
        roots["dev"] = dev
    return roots


def parse_evidence(text: str) -> bytes:
    """Raw document bytes from pasted hex or base64 text (whitespace ignored).

    Raises:
        InputError: the text is neither.
    """
    cleaned = "".join(text.split())
    if not cleaned:
        raise InputError("no document given", hint="paste hex or base64, or drop a file")
    try:
        return read_evidence(cleaned.encode())
    except ReefError as exc:
        raise InputError(f"not a document in hex or base64: {exc.message}") from exc


def _when(value: dt.datetime) -> int:
    return (
        int(value.replace(tzinfo=dt.UTC).timestamp())
        if value.tzinfo is None
        else int(value.timestamp())
    )


def _refused(out: dict[str, Any], exc: ReefError) -> dict[str, Any]:
    """``out`` saying why the document was refused: the attestation check's own reason, or
    ``invalid`` when it could not be read at all."""
    reason = exc.reason if isinstance(exc, AttestationError) else "invalid"
    out.update(reason=reason, message=exc.message, hint=exc.hint or "")
    return out


def _certificate(der: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"sha256": hashlib.sha256(der).hexdigest(), "size": len(der)}
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        out["error"] = f"not an X.509 certificate: {exc}"
        return out
    out.update(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=_when(cert.not_valid_before_utc),
        not_after=_when(cert.not_valid_after_utc),
    )
    return out


def _root_of(cabundle: tuple[bytes, ...], roots: Mapping[str, TrustedRoot]) -> TrustedRoot:
    """The known root whose certificate opens the bundle, else AWS (which then rejects it)."""
    if cabundle:
        first = hashlib.sha256(cabundle[0]).hexdigest()
        for root in roots.values():
            if root.sha256 == first:
                return root
    return roots["aws"]


def _quote_verdict(
    evidence: bytes, out: dict[str, Any], collateral: str | None, at_s: int
) -> dict[str, Any]:
    """A TDX/SGX quote, verified against its collateral at ``at_s``: accepted when its
    platform's TCB is ``UpToDate``; any other status is shown with its advisories."""
    from reef.attestation import TCB_STATUSES, verify_quote

    out["kind"] = "quote"
    if not collateral or not collateral.strip():
        out.update(
            reason="collateral",
            message="a TDX/SGX quote is verified against Intel's collateral for its platform",
            hint="paste the QuoteCollateralV3 JSON (from Intel PCS or a PCCS)",
        )
        return out
    try:
        # Every status but Revoked (never accepted): the page shows what the platform is at.
        shown = tuple(status for status in TCB_STATUSES if status != "Revoked")
        verified = verify_quote(evidence, collateral=collateral, at_s=at_s, accept=shown)
    except ReefError as exc:
        return _refused(out, exc)
    result = verified.to_json()
    out.update(
        verified=result,
        kind=verified.kind,
        tcb_status=verified.tcb_status,
        advisory_ids=list(verified.advisory_ids),
        document={"timestamp_ms": at_s * 1000, "report": result.get("report", {})},
    )
    if verified.tcb_status == "UpToDate":
        out.update(ok=True, message="accepted")
    else:
        out.update(
            reason="tcb",
            message=f"the platform's TCB status is {verified.tcb_status}"
            + (f" ({', '.join(verified.advisory_ids)})" if verified.advisory_ids else ""),
            hint="only UpToDate platforms are accepted",
        )
    return out


def server_verdict(
    evidence: bytes,
    *,
    roots: Mapping[str, TrustedRoot],
    mode: Literal["live", "replay"],
    now_ms: int,
    collateral: str | None = None,
    at_s: int | None = None,
) -> dict[str, Any]:
    """Verify ``evidence`` (a Nitro or dev TEE document, or a TDX/SGX quote with its
    ``collateral``, at ``at_s`` or now) and describe the outcome for the page.

    Returns ``{"ok": bool, "reason": str, "message": str, "root": ..., "document": fields,
    "certificates": [...], "verified": VerifiedAttestation JSON or None}``; never raises for bad
    evidence (the verdict *is* the answer).
    """
    out: dict[str, Any] = {
        "ok": False,
        "reason": "",
        "message": "",
        "hint": "",
        "mode": mode,
        "root": None,
        "document": None,
        "certificates": [],
        "verified": None,
        "kind": "nitro",
    }
    try:
        kind = detect_kind(evidence)
        if kind != "nitro":
            return _quote_verdict(evidence, out, collateral, at_s or now_ms // 1000)
        _, document = decode_nitro(evidence)
        out["document"] = {
            "module_id": document.module_id,
            "timestamp_ms": document.timestamp_ms,
            "pcrs": {str(i): v.hex() for i, v in document.pcrs.items()},
            "public_key": document.public_key.hex(),
            "user_data": document.user_data.hex(),
            "nonce": document.nonce.hex(),
        }
        out["certificates"] = [
            _certificate(der) for der in (*document.cabundle, document.certificate)
        ]
        root = _root_of(document.cabundle, roots)
        out["root"] = {"name": root.name, "sha256": root.sha256, "insecure": root.insecure}
        # Replay checks the chain at the document's own time only, with no freshness: given a
        # "now", verify would also hold the document to max_age.
        at = now_ms if mode == "live" else None
        verified = verify(evidence, root=root, mode=mode, now_ms=at)
    except ReefError as exc:
        return _refused(out, exc)
    out.update(ok=True, reason="", message="accepted", verified=verified.to_json())
    return out
