"""One entry point for any evidence: Nitro (and dev TEE) documents, TDX and SGX quotes.

Callers that accept evidence from more than one kind of TEE call :func:`verify` and get the same
:class:`VerifiedAttestation` whichever produced it; the kind is detected from the bytes (a COSE
array starts ``84`` or ``d2 84``; a DCAP quote starts with its little-endian version 3–5 and an
ECDSA attestation key type).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Literal

from reef.attestation._cose import looks_like_cose, looks_like_quote
from reef.attestation._model import Expectations, Mode, VerifiedAttestation
from reef.attestation._nitro import DEFAULT_MAX_AGE_MS, NitroVerifier
from reef.attestation._roots import TrustedRoot
from reef.errors import DecodeError, MisuseError

__all__ = ["detect_kind", "verify"]


def detect_kind(evidence: bytes) -> Literal["nitro", "quote"]:
    """Whether raw evidence is a Nitro-format COSE document or a DCAP (TDX/SGX) quote.

    Raises:
        DecodeError: when it is neither.
    """
    if looks_like_cose(evidence):
        return "nitro"
    if looks_like_quote(evidence):
        return "quote"
    raise DecodeError(
        "the evidence is neither a Nitro attestation document nor a TDX/SGX quote",
        reason="decode",
        hint="give the raw bytes (use read_evidence for hex or base64 text)",
    )


def verify(
    evidence: bytes,
    *,
    root: TrustedRoot | None = None,
    mode: Mode = "live",
    now_ms: int | None = None,
    max_age_ms: int | None = DEFAULT_MAX_AGE_MS,
    expect: Expectations | None = None,
    collateral: bytes | str | Mapping[str, Any] | None = None,
    at_s: int | None = None,
    accept: Collection[str] = ("UpToDate",),
    verifier: NitroVerifier | None = None,
) -> VerifiedAttestation:
    """Verify Nitro documents or DCAP quotes through one call.

    Nitro documents go to :meth:`NitroVerifier.verify` with ``root`` (default: AWS Root-G1;
    ``mock`` and ``dev`` are never implied), ``mode``, ``now_ms``, ``max_age_ms`` and ``expect``.
    Quotes go to :func:`verify_quote` with ``collateral`` and the instant ``at_s`` (in live
    mode it defaults to ``now_ms // 1000``); ``root`` does not apply (quotes chain to the pinned
    Intel root).

    Args:
        verifier: a :class:`NitroVerifier` to reuse (and its chain cache); a fresh one otherwise.

    Raises:
        AttestationError: a subclass whose ``reason`` names the failed check.
        MisuseError: missing time or collateral for the kind of evidence given.
    """
    kind = detect_kind(evidence)
    if kind == "nitro":
        checker = verifier if verifier is not None else NitroVerifier(cache_size=0)
        return checker.verify(
            evidence,
            root=root if root is not None else TrustedRoot.aws(),
            mode=mode,
            now_ms=now_ms,
            max_age_ms=max_age_ms,
            expect=expect,
        )
    if collateral is None:
        raise MisuseError(
            "a TDX/SGX quote needs its collateral to be verified",
            hint="pass the QuoteCollateralV3 JSON (--collateral FILE)",
        )
    if at_s is None and mode == "live" and now_ms is not None:
        at_s = now_ms // 1000
    if at_s is None:
        raise MisuseError(
            "a TDX/SGX quote is verified at an explicit instant",
            hint="pass at_s (--at UNIX_S), or now_ms in live mode",
        )
    # Here, not at the top: a Nitro verification (every one-shot `reef attestation verify` of
    # one) never loads the DCAP quote parser.
    from reef.attestation._quote import verify_quote

    return verify_quote(evidence, collateral=collateral, at_s=at_s, expect=expect, accept=accept)
