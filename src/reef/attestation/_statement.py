"""The attestation verifier's signed statement (reference oyster_cvm.md §1.6).

A verifier checks an attestation document once and signs a short statement about it, so that a
contract or a client can trust the result with one ``ecrecover`` instead of a P-384 chain walk.
The statement is EIP-712 typed data, byte-compatible with Oyster's verifier:

- domain ``EIP712Domain(string name,string version)`` with name
  ``marlin.oyster.AttestationVerifier`` and version ``1`` (no chainId, no verifyingContract);
- struct ``Attestation(bytes32 imageId,uint64 timestampMs,bytes publicKey,bytes userData)``;
- secp256k1 with an RFC 6979 deterministic nonce and low s, encoded ``r || s || v`` (v = 27/28).

The JSON shape is Oyster's: ``{signature, image_id, timestamp_ms, public_key, user_data,
verifier_public_key}``, every byte field lowercase hex without ``0x``.

Signing reuses :mod:`reef.crypto` (coincurve, i.e. libsecp256k1: RFC 6979 and low-s by default);
tests check the digest against eth-account's independent EIP-712 encoder and recover signers with
eth-keys.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from reef._clock import wall_clock_ms
from reef.crypto import (
    SECP256K1_N,
    Secp256k1PrivateKey,
    Secp256k1PublicKey,
    eip712_digest,
    eip712_domain_separator,
    keccak256,
    recover_digest,
)
from reef.encoding import parse_hex, to_hex
from reef.errors import InputError, SignatureError, StaleAttestationError

__all__ = [
    "STATEMENT_DOMAIN_NAME",
    "STATEMENT_DOMAIN_VERSION",
    "STATEMENT_TYPE",
    "VerifierStatement",
    "sign_statement",
    "statement_digest",
    "verify_statement",
]

STATEMENT_DOMAIN_NAME = "marlin.oyster.AttestationVerifier"
STATEMENT_DOMAIN_VERSION = "1"
STATEMENT_TYPE = "Attestation(bytes32 imageId,uint64 timestampMs,bytes publicKey,bytes userData)"

_DOMAIN_SEPARATOR = eip712_domain_separator(STATEMENT_DOMAIN_NAME, STATEMENT_DOMAIN_VERSION)
_TYPEHASH = keccak256(STATEMENT_TYPE.encode())
_UINT64_MAX = (1 << 64) - 1
# Statement fields are carried inside attestation documents, whose fields NSM limits to 1 KiB;
# the bound only keeps a hostile JSON statement from making us hash megabytes.
_MAX_FIELD = 65_535


def statement_digest(
    *, image_id: bytes, timestamp_ms: int, public_key: bytes, user_data: bytes
) -> bytes:
    """The 32-byte EIP-712 digest a verifier signs for these fields.

    ``keccak256(0x1901 || domainSeparator || keccak256(TYPEHASH || imageId || u256(timestampMs)
    || keccak256(publicKey) || keccak256(userData)))``.

    Raises:
        InputError: when image_id is not 32 bytes or timestamp_ms does not fit in a uint64.
    """
    _check_fields(image_id, timestamp_ms, public_key, user_data)
    struct_hash = keccak256(
        _TYPEHASH
        + image_id
        + timestamp_ms.to_bytes(32, "big")
        + keccak256(public_key)
        + keccak256(user_data)
    )
    return eip712_digest(_DOMAIN_SEPARATOR, struct_hash)


@dataclass(frozen=True, kw_only=True)
class VerifierStatement:
    """A verifier's signed statement that a document with these fields verified.

    ``verifier_public_key`` is the signer's 64-byte ``x || y`` key as the signer *claims* it; only
    :func:`verify_statement` (or :meth:`signer`) establishes who actually signed.
    """

    signature: bytes
    image_id: bytes
    timestamp_ms: int
    public_key: bytes
    user_data: bytes
    verifier_public_key: bytes

    @property
    def digest(self) -> bytes:
        """The EIP-712 digest the signature covers."""
        return statement_digest(
            image_id=self.image_id,
            timestamp_ms=self.timestamp_ms,
            public_key=self.public_key,
            user_data=self.user_data,
        )

    def signer(self) -> Secp256k1PublicKey:
        """Recover the key that signed this statement (whatever ``verifier_public_key`` says).

        Only the canonical form verifiers produce is accepted: v is 27 or 28 and s is in the
        lower half of the group order, as OpenZeppelin's ``ECDSA.recover`` requires on chain, so
        a statement checked here also passes there (and nobody can re-encode one as another).

        Raises:
            SignatureError: when the signature is malformed, not canonical, or recovers no key.
        """
        signature = self.signature
        if len(signature) != 65:
            raise SignatureError(
                f"a statement signature is 65 bytes (r || s || v), got {len(signature)}",
                reason="statement_signature",
            )
        if signature[64] not in (27, 28):
            raise SignatureError(
                f"the statement signature's v is {signature[64]}, not 27 or 28",
                reason="statement_signature",
            )
        if int.from_bytes(signature[32:64], "big") > SECP256K1_N // 2:
            raise SignatureError(
                "the statement signature has a high s value (not canonical)",
                reason="statement_signature",
                hint="verifiers sign with low s; a high-s copy was re-encoded by someone else",
            )
        try:
            return recover_digest(self.digest, self.signature)
        except InputError as exc:
            raise SignatureError(
                f"the statement signature is invalid: {exc.message}", reason="statement_signature"
            ) from exc

    def to_json(self) -> dict[str, Any]:
        """Oyster's response JSON: byte fields as lowercase hex without ``0x``."""
        return {
            "signature": self.signature.hex(),
            "image_id": self.image_id.hex(),
            "timestamp_ms": self.timestamp_ms,
            "public_key": to_hex(self.public_key),
            "user_data": to_hex(self.user_data),
            "verifier_public_key": self.verifier_public_key.hex(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VerifierStatement:
        """Read a statement from its JSON form (hex with or without ``0x``).

        Raises:
            InputError: naming the field that is missing or malformed.
        """
        if not isinstance(data, Mapping):
            raise InputError("a verifier statement must be a JSON object")
        missing = [k for k in _JSON_FIELDS if k not in data]
        if missing:
            raise InputError(
                f"the verifier statement lacks {', '.join(missing)}",
                hint="a statement has signature, image_id, timestamp_ms, public_key, user_data "
                "and verifier_public_key",
            )
        timestamp = data["timestamp_ms"]
        if isinstance(timestamp, bool) or not isinstance(timestamp, int):
            raise InputError(f"timestamp_ms must be an integer, got {timestamp!r}")
        statement = cls(
            signature=_hex_field(data, "signature", 65),
            image_id=_hex_field(data, "image_id", 32),
            timestamp_ms=timestamp,
            public_key=_hex_field(data, "public_key"),
            user_data=_hex_field(data, "user_data"),
            verifier_public_key=_hex_field(data, "verifier_public_key", 64),
        )
        _check_fields(
            statement.image_id, statement.timestamp_ms, statement.public_key, statement.user_data
        )
        return statement


class _Attested(Protocol):
    """What a statement needs from a verification result (``VerifiedAttestation`` has it)."""

    @property
    def image_id(self) -> bytes: ...
    @property
    def timestamp_ms(self) -> int: ...
    @property
    def public_key(self) -> bytes: ...
    @property
    def user_data(self) -> bytes: ...


_JSON_FIELDS = (
    "signature",
    "image_id",
    "timestamp_ms",
    "public_key",
    "user_data",
    "verifier_public_key",
)


def sign_statement(
    key: Secp256k1PrivateKey,
    attestation: _Attested | None = None,
    *,
    image_id: bytes | None = None,
    timestamp_ms: int | None = None,
    public_key: bytes | None = None,
    user_data: bytes | None = None,
) -> VerifierStatement:
    """Sign the statement for a verified attestation, or for explicit fields.

    Pass either ``attestation`` (the result of a verification) or all four fields; a field given
    next to ``attestation`` overrides it (useful for tests, never for a service).

    Raises:
        InputError: when a field is missing or malformed.
    """
    if attestation is not None:
        image_id = attestation.image_id if image_id is None else image_id
        timestamp_ms = attestation.timestamp_ms if timestamp_ms is None else timestamp_ms
        public_key = attestation.public_key if public_key is None else public_key
        user_data = attestation.user_data if user_data is None else user_data
    if image_id is None or timestamp_ms is None or public_key is None or user_data is None:
        raise InputError(
            "a statement needs image_id, timestamp_ms, public_key and user_data",
            hint="pass a VerifiedAttestation or all four fields",
        )
    digest = statement_digest(
        image_id=image_id, timestamp_ms=timestamp_ms, public_key=public_key, user_data=user_data
    )
    return VerifierStatement(
        signature=key.sign_digest(digest),
        image_id=bytes(image_id),
        timestamp_ms=timestamp_ms,
        public_key=bytes(public_key),
        user_data=bytes(user_data),
        verifier_public_key=key.public_key.raw,
    )


def verify_statement(
    statement: VerifierStatement | Mapping[str, Any],
    verifier_public_key: bytes | Secp256k1PublicKey,
    *,
    max_age_ms: int | None = None,
    clock_ms: Callable[[], int] = wall_clock_ms,
) -> VerifierStatement:
    """Check that ``statement`` was signed by ``verifier_public_key`` (and, with
    ``max_age_ms``, that its document is no older than that); return it.

    The signer is recovered from the signature and compared with the key the caller trusts; the
    ``verifier_public_key`` field inside the statement is informational and must agree too.
    Without ``max_age_ms`` freshness is the caller's business, as in Oyster.

    Args:
        statement: a :class:`VerifierStatement` or its JSON form.
        verifier_public_key: the verifier key you trust (64-byte ``x || y``, 65-byte ``04 ...``
            or 33-byte compressed, or a :class:`Secp256k1PublicKey`).
        max_age_ms: refuse a statement whose ``timestamp_ms`` is older than this.
        clock_ms: now, in Unix milliseconds (the wall clock unless given).

    Raises:
        InputError: when the statement or the key is malformed.
        SignatureError: when the statement was not signed by that key (``reason`` is
            ``"statement_signature"`` or ``"statement_signer"``).
        StaleAttestationError: when the document is older than ``max_age_ms``.
    """
    parsed = (
        statement
        if isinstance(statement, VerifierStatement)
        else (VerifierStatement.from_json(statement))
    )
    trusted = (
        verifier_public_key
        if isinstance(verifier_public_key, Secp256k1PublicKey)
        else Secp256k1PublicKey.from_bytes(verifier_public_key)
    )
    recovered = parsed.signer()
    if not hmac.compare_digest(recovered.raw, trusted.raw):
        raise SignatureError(
            f"the statement was signed by {recovered.address}, not by the trusted verifier "
            f"{trusted.address}",
            reason="statement_signer",
            hint="check which verifier signed it and that its key is the one you trust",
        )
    if not hmac.compare_digest(parsed.verifier_public_key, trusted.raw):
        raise SignatureError(
            "the statement names a verifier_public_key other than the key that signed it",
            reason="statement_signer",
        )
    if max_age_ms is not None:
        age_ms = clock_ms() - parsed.timestamp_ms
        if age_ms > max_age_ms:
            raise StaleAttestationError(
                f"the statement's document is {age_ms // 1000} s old, "
                f"more than {max_age_ms // 1000} s",
                hint="ask the verifier about a fresh attestation document",
            )
    return parsed


def _check_fields(image_id: bytes, timestamp_ms: int, public_key: bytes, user_data: bytes) -> None:
    if len(image_id) != 32:
        raise InputError(f"image_id must be 32 bytes, got {len(image_id)}")
    if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int):
        raise InputError(f"timestamp_ms must be an integer, got {timestamp_ms!r}")
    if not 0 <= timestamp_ms <= _UINT64_MAX:
        raise InputError(f"timestamp_ms must fit in a uint64, got {timestamp_ms}")
    for name, value in (("public_key", public_key), ("user_data", user_data)):
        if len(value) > _MAX_FIELD:
            raise InputError(f"{name} is {len(value)} bytes, more than {_MAX_FIELD}")


def _hex_field(data: Mapping[str, Any], name: str, length: int | None = None) -> bytes:
    value = data[name]
    if not isinstance(value, str):
        raise InputError(f"{name} must be a hex string, got {type(value).__name__}")
    return parse_hex(value, name=name, length=length)
