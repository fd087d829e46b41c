"""What the tests state about Nitro documents, written once for every test that states it.

Each list is written out by hand from the reference notes and the public vectors, never read from
reef, so the tests that use it stay independent checks of the code.
"""

from __future__ import annotations

__all__ = ["AWS_PAYLOAD_KEYS", "NITRO_VECTORS", "RESULT_KEYS"]

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
