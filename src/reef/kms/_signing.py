"""The KMS response signature (``x-marlin-kms-signature``, reference oyster_cvm.md §2.3).

A root server signs every 2xx response of its public listener with the secp256k1 key at
``oyster.kms.secp256k1`` of its root seed: a raw (not EIP-191) recoverable ECDSA signature over
``SHA-256(path_and_query || body)``, sent as lowercase hex of ``r || s || v`` (v = 27/28). The
client rebuilds the request URI exactly as it sent it, recovers the signer and compares it with
the key it pinned. Binding the URI stops a server answer for one image id or path being replayed
as the answer for another.

Nothing separates the URI from the body (Oyster's format, kept for its clients), so the signature
of the answer ``b`` to the URI ``u + s`` is also that of the answer ``s + b`` to ``u``. A client
must therefore accept only answers whose form rules that out: keys of a fixed length, addresses
checked as :meth:`reef.kms.KmsPublicClient.address` does.
"""

from __future__ import annotations

import hashlib
import hmac

from reef.crypto import Secp256k1PrivateKey, recover_digest
from reef.errors import InputError, KMSError

__all__ = ["SIGNATURE_HEADER", "response_digest", "sign_response", "verify_response"]

SIGNATURE_HEADER = "x-marlin-kms-signature"


def response_digest(uri: str | bytes, body: bytes) -> bytes:
    """``SHA-256(uri || body)``, where ``uri`` is the request's path and query as sent."""
    raw = uri.encode() if isinstance(uri, str) else bytes(uri)
    return hashlib.sha256(raw + body).digest()


def sign_response(key: Secp256k1PrivateKey, uri: str | bytes, body: bytes) -> str:
    """The header value (130 lowercase hex digits) signing ``body`` as the answer to ``uri``."""
    return key.sign_digest(response_digest(uri, body)).hex()


def verify_response(uri: str | bytes, body: bytes, header: str | None, signing_key: bytes) -> None:
    """Check that ``header`` signs ``body`` for ``uri`` under the pinned 64-byte ``signing_key``.

    Raises:
        KMSError: when the header is missing or malformed, or another key signed the response.
    """
    if not header:
        raise KMSError(
            f"the KMS response carries no {SIGNATURE_HEADER} header",
            hint="the server is not a reef or Oyster KMS root, or a proxy stripped the header",
        )
    try:
        signature = bytes.fromhex(header.strip())
        signer = recover_digest(response_digest(uri, body), signature)
    except (ValueError, InputError) as exc:
        raise KMSError(f"the KMS response signature is malformed: {header[:40]!r}") from exc
    if not hmac.compare_digest(signer.raw, signing_key):
        raise KMSError(
            "the KMS response is signed by another key than the pinned KMS signing key",
            hint=f"signed by {signer.raw.hex()}; check --verification-key or the KMS URL "
            "(a rotated KMS has a new key per version)",
        )
