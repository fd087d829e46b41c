"""Attestation evidence: decode, encode and verify AWS Nitro documents and Intel TDX/SGX quotes,
compute image ids, and run the dev TEE authority, attestation servers and the verifier service."""

from __future__ import annotations

from reef.attestation._image_id import IMAGE_ID_PCRS, PCR_LENGTH, image_id
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

__all__ = [  # noqa: RUF022 (plain sorted order, checked by tests/foundation/test_exports.py)
    "Attester",
    "IMAGE_ID_PCRS",
    "MAX_ATTESTATION_FIELD",
    "PCR_LENGTH",
    "VerifierStatement",
    "attestation_app",
    "custom_attestation_app",
    "image_id",
    "sign_statement",
    "statement_digest",
    "verify_statement",
]
