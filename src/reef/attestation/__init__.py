"""Attestation evidence: decode, encode and verify AWS Nitro documents and Intel TDX/SGX quotes,
compute image ids, run the dev TEE authority, attestation servers and the verifier service, and
fetch and verify a running enclave's attestation (:class:`AttestationClient`)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from reef.attestation._cose import CoseSign1, NitroDocument, decode_nitro, read_evidence
from reef.attestation._dev import DevAuthority
from reef.attestation._image_id import IMAGE_ID_PCRS, PCR_LENGTH, image_id
from reef.attestation._model import EvidenceKind, Expectations, Mode, VerifiedAttestation
from reef.attestation._nitro import NitroVerifier, verify_nitro
from reef.attestation._quote import (
    TCB_STATUSES,
    ParsedQuote,
    intel_root,
    parse_quote,
    verify_quote,
)
from reef.attestation._roots import TrustedRoot
from reef.attestation._verify import detect_kind, verify

if TYPE_CHECKING:
    from reef.attestation._client import AttestationClient, attestation_url
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

# Loaded on first use: servers (FastAPI), the HTTP client (httpx) and EIP-712 statements
# (eth-abi) cost a one-shot command such as `reef attestation verify` most of its start-up.
_LAZY = {
    "AttestationClient": "reef.attestation._client",
    "attestation_url": "reef.attestation._client",
    "MAX_ATTESTATION_FIELD": "reef.attestation._server",
    "Attester": "reef.attestation._server",
    "attestation_app": "reef.attestation._server",
    "custom_attestation_app": "reef.attestation._server",
    "VerifierStatement": "reef.attestation._statement",
    "sign_statement": "reef.attestation._statement",
    "statement_digest": "reef.attestation._statement",
    "verify_statement": "reef.attestation._statement",
    "load_verifier_key": "reef.attestation._verifier_service",
    "verifier_app": "reef.attestation._verifier_service",
    "verify_and_sign": "reef.attestation._verifier_service",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'reef.attestation' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
