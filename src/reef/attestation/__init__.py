"""Attestation evidence: decode, encode and verify AWS Nitro documents and Intel TDX/SGX quotes,
compute image ids, run the dev TEE authority, attestation servers and the verifier service, and
fetch and verify a running enclave's attestation (:class:`AttestationClient`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reef._lazy import lazy_attributes
from reef.attestation._cose import CoseSign1, NitroDocument, decode_nitro, read_evidence
from reef.attestation._image_id import IMAGE_ID_PCRS, PCR_LENGTH, image_id
from reef.attestation._model import EvidenceKind, Expectations, Mode, VerifiedAttestation
from reef.attestation._nitro import NitroVerifier, verify_nitro
from reef.attestation._roots import TrustedRoot
from reef.attestation._verify import detect_kind, verify

if TYPE_CHECKING:
    from reef.attestation._cache import AttestationCache
    from reef.attestation._client import AttestationClient, attestation_url
    from reef.attestation._dev import DevAuthority
    from reef.attestation._quote import (
        TCB_STATUSES,
        ParsedQuote,
        intel_root,
        parse_quote,
        verify_quote,
    )
    from reef.attestation._server import (
        MAX_ATTESTATION_FIELD,
        Attester,
        attestation_app,
        custom_attestation_app,
    )
    from reef.attestation._statement import (
        VerifierStatement,
        sign_statement,
        statement_digest,
        verify_statement,
    )
    from reef.attestation._verifier_service import (
        load_verifier_key,
        verifier_app,
        verify_and_sign,
    )

__all__ = [
    "AttestationCache",
    "AttestationClient",
    "Attester",
    "CoseSign1",
    "DevAuthority",
    "EvidenceKind",
    "Expectations",
    "IMAGE_ID_PCRS",
    "MAX_ATTESTATION_FIELD",
    "Mode",
    "NitroDocument",
    "NitroVerifier",
    "PCR_LENGTH",
    "ParsedQuote",
    "TCB_STATUSES",
    "TrustedRoot",
    "VerifiedAttestation",
    "VerifierStatement",
    "attestation_app",
    "attestation_url",
    "custom_attestation_app",
    "decode_nitro",
    "detect_kind",
    "image_id",
    "intel_root",
    "load_verifier_key",
    "parse_quote",
    "read_evidence",
    "sign_statement",
    "statement_digest",
    "verifier_app",
    "verify",
    "verify_and_sign",
    "verify_nitro",
    "verify_quote",
    "verify_statement",
]

# Loaded on first use (reef._lazy): what one-shot commands need not import (verifying a Nitro
# document needs neither the dev TEE authority nor the DCAP quote verifier).
__getattr__ = lazy_attributes(
    __name__,
    {
        "AttestationCache": "_cache",
        "AttestationClient": "_client",
        "attestation_url": "_client",
        "DevAuthority": "_dev",
        "TCB_STATUSES": "_quote",
        "ParsedQuote": "_quote",
        "intel_root": "_quote",
        "parse_quote": "_quote",
        "verify_quote": "_quote",
        "MAX_ATTESTATION_FIELD": "_server",
        "Attester": "_server",
        "attestation_app": "_server",
        "custom_attestation_app": "_server",
        "VerifierStatement": "_statement",
        "sign_statement": "_statement",
        "statement_digest": "_statement",
        "verify_statement": "_statement",
        "load_verifier_key": "_verifier_service",
        "verifier_app": "_verifier_service",
        "verify_and_sign": "_verifier_service",
    },
)
