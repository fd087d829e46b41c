"""What the tests state about Nitro documents and the verifier's statement over one, written once
for every test that states it.

Each list is written out by hand from the reference notes and the public vectors, never read from
reef, so the tests that use it stay independent checks of the code.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AWS_PAYLOAD_KEYS", "NITRO_VECTORS", "RESULT_KEYS", "statement_typed_data"]

AWS_PAYLOAD_KEYS = (
    "module_id",
    "digest",
    "timestamp",
    "pcrs",
    "certificate",
    "cabundle",
    "public_key",
    "user_data",
    "nonce",
)
"""The keys of a document's payload map, in the order AWS's NSM writes them (reference
oyster_cvm.md §1.1)."""

NITRO_VECTORS = (
    "aws.bin",
    "aws_debug.bin",
    "aws_debug_nonce.bin",
    "aws_nonce.bin",
    "aws_pcr16.bin",
    "aws_verifier_test.bin",
    "aws_verifier_test_2.bin",
    "mock_custom.bin",
    "mock_custom_pcr16.bin",
)
"""Every document under ``vectors/nitro`` (test_nitro_vectors checks that no file is missing)."""

RESULT_KEYS = (
    "image_id",
    "pcrs",
    "timestamp_ms",
    "module_id",
    "public_key",
    "user_data",
    "nonce",
    "root",
    "mode",
)
"""The keys of a verified attestation's JSON (``reef verify --json``), in their order."""


def statement_typed_data(
    image_id: bytes, timestamp_ms: int, public_key: bytes, user_data: bytes
) -> dict[str, Any]:
    """The attestation verifier's signed statement as EIP-712 JSON typed data (reference
    oyster_cvm.md §1.6), for eth-account's independent encoder (``encode_typed_data``)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
            ],
            "Attestation": [
                {"name": "imageId", "type": "bytes32"},
                {"name": "timestampMs", "type": "uint64"},
                {"name": "publicKey", "type": "bytes"},
                {"name": "userData", "type": "bytes"},
            ],
        },
        "primaryType": "Attestation",
        "domain": {"name": "marlin.oyster.AttestationVerifier", "version": "1"},
        "message": {
            "imageId": image_id,
            "timestampMs": timestamp_ms,
            "publicKey": public_key,
            "userData": user_data,
        },
    }
