"""The certificate chain of a Nitro document: from the leaf, through ``cabundle``, to a pinned root.

cryptography's X.509 verifier applies the web-PKI profile, which the Nitro leaf fails (it has no
Authority Key Identifier), so the chain is walked explicitly here, following RFC 5280 §6.1 for
what matters to a fixed, pinned hierarchy:

- ``cabundle`` is root first; its first certificate must carry the pinned root's public key, and
  the pinned certificate (not the copy in the document) anchors the walk;
- every certificate is signed by the next one up (ECDSA with SHA-256/384/512), and its issuer name
  equals that certificate's subject name (DER-equal);
- every issuing certificate is a CA (basicConstraints cA=true), may sign certificates (keyUsage
  keyCertSign), and its pathLenConstraint allows the CA certificates below it;
- no certificate carries a critical extension reef does not process;
- the leaf holds a P-384 key and, when it has keyUsage, may sign (digitalSignature);
- every certificate, the pinned root included, is valid at the instant the caller chooses.

The instant-independent part (everything but the last point and the leaf) is an
:class:`IssuingChain`; the verifier caches it by the bundle's DER bytes so that further documents
from the same host cost one signature check for the leaf (and one for the COSE signature).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, SignatureAlgorithmOID

from reef.attestation._roots import TrustedRoot, raw_public_key
from reef.errors import CertificateChainError, CertificateExpiredError

__all__ = [
    "IssuingChain",
    "ValidityWindow",
    "check_validity",
    "describe_name",
    "leaf_key",
    "parse_certificate",
    "public_key",
    "subject_text",
    "verify_issuing_chain",
    "verify_leaf",
]

# The critical extensions this walk processes; any other critical extension fails the chain, as
# RFC 5280 §4.2 requires of a verifier that does not recognise it.
_KNOWN_CRITICAL = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
    }
)

_ECDSA_HASHES: dict[x509.ObjectIdentifier, type[hashes.HashAlgorithm]] = {
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: hashes.SHA256,
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: hashes.SHA384,
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: hashes.SHA512,
}


def _chain_error(
    message: str, *, reason: str = "chain", hint: str | None = None
) -> CertificateChainError:
    return CertificateChainError(message, reason=reason, hint=hint)


def describe_name(name: x509.Name) -> str:
    """A readable RFC 4514 form of a distinguished name (empty names print as ``(empty)``)."""
    try:
        text = name.rfc4514_string()
    except (ValueError, UserWarning):
        return "(unprintable name)"
    return text or "(empty)"


def subject_text(cert: x509.Certificate) -> str:
    """A certificate's subject, readable, or a placeholder when it cannot be decoded."""
    try:
        return describe_name(cert.subject)
    except (ValueError, TypeError, UserWarning):
        return "(unprintable name)"


def parse_certificate(der: bytes, *, label: str) -> x509.Certificate:
    """Parse a DER certificate, and every part of it the walk reads, so that malformed input
    fails here, by name, rather than later inside cryptography's lazy accessors.

    Raises:
        CertificateChainError: ``reason="certificate"`` when it is not a well-formed certificate.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
        # The subject is left lazy: of a leaf, only messages read it (describe_name copes).
        _ = (cert.extensions, cert.issuer, cert.signature_algorithm_oid)
        _ = (cert.not_valid_before_utc, cert.not_valid_after_utc)
    # UserWarning: cryptography warns about malformed name attributes; where warnings are
    # turned into errors, that is a malformed certificate like any other. DuplicateExtension (an
    # extension listed twice) is no ValueError.
    except (
        ValueError,
        TypeError,
        UnsupportedAlgorithm,
        x509.InvalidVersion,
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
        UserWarning,
    ) as exc:
        raise _chain_error(
            f"{label} is not a well-formed X.509 certificate: {exc}", reason="certificate"
        ) from exc
    return cert


def _subject_bytes(cert: x509.Certificate, *, label: str) -> bytes:
    try:
        return cert.subject.public_bytes()
    except (ValueError, TypeError, UserWarning) as exc:
        raise _chain_error(f"{label} has a malformed subject: {exc}", reason="certificate") from exc


def public_key(cert: x509.Certificate, *, label: str) -> ec.EllipticCurvePublicKey:
    """The certificate's EC public key.

    Raises:
        CertificateChainError: ``reason="certificate"`` when the key is malformed or not EC.
    """
    try:
        key = cert.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise _chain_error(
            f"{label} has an unusable public key: {exc}", reason="certificate"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise _chain_error(f"{label} does not hold an EC key", reason="certificate")
    return key


@dataclass(frozen=True)
class ValidityWindow:
    """When one certificate of a chain is valid, in milliseconds since the Unix epoch, inclusive.

    ``certificate`` is kept so that its subject is rendered only when a message needs it.
    """

    label: str
    not_before_ms: int
    not_after_ms: int
    certificate: x509.Certificate

    @property
    def subject(self) -> str:
        """The certificate's subject, readable."""
        return subject_text(self.certificate)


def _window(cert: x509.Certificate, label: str) -> ValidityWindow:
    return ValidityWindow(
        label,
        int(cert.not_valid_before_utc.timestamp()) * 1000,
        int(cert.not_valid_after_utc.timestamp()) * 1000,
        cert,
    )


@dataclass(frozen=True)
class IssuingChain:
    """A verified chain from the pinned root down to the certificate that issues leaves.

    Attributes:
        root: the pinned root the chain ends at.
        issuer_key: the public key of the last ``cabundle`` certificate (the leaf's issuer).
        issuer_subject: that certificate's subject, DER-encoded.
        windows: the validity of each certificate, the pinned root first.
    """

    root: TrustedRoot
    issuer_key: ec.EllipticCurvePublicKey
    issuer_subject: bytes
    windows: tuple[ValidityWindow, ...]


def _check_critical(cert: x509.Certificate, label: str) -> None:
    for extension in cert.extensions:
        if extension.critical and extension.oid not in _KNOWN_CRITICAL:
            raise _chain_error(
                f"{label} has a critical extension reef does not process ({extension.oid.dotted_string})"
            )


def _check_ca(cert: x509.Certificate, label: str, intermediates_below: int) -> None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound as exc:
        raise _chain_error(f"{label} issues certificates but has no basicConstraints") from exc
    if not constraints.ca:
        raise _chain_error(f"{label} issues certificates but is not a CA (cA=false)")
    if constraints.path_length is not None and intermediates_below > constraints.path_length:
        raise _chain_error(
            f"{label} allows {constraints.path_length} CA certificates below it, the chain has "
            f"{intermediates_below}"
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return  # RFC 5280: without keyUsage the key may be used for any purpose.
    if not usage.key_cert_sign:
        raise _chain_error(f"{label} issues certificates but its keyUsage lacks keyCertSign")


def _check_signed_by(
    child: x509.Certificate,
    child_label: str,
    issuer_subject: bytes,
    issuer_key: ec.EllipticCurvePublicKey,
    issuer_label: str,
) -> None:
    if child.issuer.public_bytes() != issuer_subject:
        raise _chain_error(
            f"{child_label} names issuer {describe_name(child.issuer)}, which is not the subject of "
            f"{issuer_label}"
        )
    hash_type = _ECDSA_HASHES.get(child.signature_algorithm_oid)
    if hash_type is None:
        raise _chain_error(
            f"{child_label} is signed with {child.signature_algorithm_oid.dotted_string}; "
            "Nitro chains use ECDSA"
        )
    try:
        issuer_key.verify(child.signature, child.tbs_certificate_bytes, ec.ECDSA(hash_type()))
    except (InvalidSignature, UnsupportedAlgorithm) as exc:
        raise _chain_error(f"{child_label} is not signed by {issuer_label}") from exc


def _key_id(raw_key: bytes) -> str:
    """A short name for a public key: the first 8 bytes of its SHA-256, in hex."""
    return hashlib.sha256(raw_key).hexdigest()[:16]


def verify_issuing_chain(cabundle: Sequence[bytes], root: TrustedRoot) -> IssuingChain:
    """Verify everything about ``cabundle`` that does not depend on the time or the leaf.

    Args:
        cabundle: DER certificates, root first, as in the document.
        root: the pinned root; ``cabundle[0]`` must carry its public key.

    Raises:
        CertificateChainError: ``reason="root"`` when the bundle does not start at ``root``,
            ``"certificate"`` for an unparsable certificate, ``"chain"`` for a broken link.
    """
    if not cabundle:
        raise _chain_error("the document's cabundle is empty")
    first = parse_certificate(cabundle[0], label="cabundle[0] (root)")
    presented = raw_public_key(public_key(first, label="cabundle[0] (root)"))
    if presented != root.public_key:
        theirs, ours = subject_text(first), subject_text(root.x509)
        if theirs == ours:  # two dev roots (each home makes its own) bear one name: tell them apart
            theirs += f", key {_key_id(presented)}"
            ours += f", key {_key_id(root.public_key)}"
        raise _chain_error(
            f"the document's chain ends at {theirs}, not at the pinned root {root.name!r} ({ours})",
            reason="root",
            hint="verify with the root that issued it (--root aws|mock|dev|PATH), if you trust it"
            + (
                "; a dev TEE root is the enclave host's own ($REEF_HOME/dev-tee/root.crt of the "
                "provider's home): --root dev names this home's, and `reef deploy --root "
                "provider` takes a provider's on its word (INSECURE)"
                if root.name == "dev"
                else ""
            ),
        )
    anchor = root.x509
    _check_critical(anchor, f"root {root.name!r}")
    depth = len(cabundle) - 1  # CA certificates under the root (the leaf's issuer included)
    _check_ca(anchor, f"root {root.name!r}", depth)

    windows = [_window(anchor, f"root {root.name!r}")]
    issuer_key = public_key(anchor, label=f"root {root.name!r}")
    issuer_subject = _subject_bytes(anchor, label=f"root {root.name!r}")
    issuer_label = f"root {root.name!r}"
    for position in range(1, len(cabundle)):
        label = f"cabundle[{position}]"
        cert = parse_certificate(cabundle[position], label=label)
        _check_signed_by(cert, label, issuer_subject, issuer_key, issuer_label)
        _check_critical(cert, label)
        _check_ca(cert, label, depth - position)
        windows.append(_window(cert, label))
        issuer_key, issuer_subject, issuer_label = (
            public_key(cert, label=label),
            _subject_bytes(cert, label=label),
            label,
        )
    return IssuingChain(root, issuer_key, issuer_subject, tuple(windows))


def leaf_key(leaf: x509.Certificate) -> ec.EllipticCurvePublicKey:
    """The P-384 key of a leaf certificate fit to sign documents.

    Raises:
        CertificateChainError: ``reason="certificate"`` for a key that cannot sign ES384,
            ``"chain"`` for a critical extension reef does not process or a keyUsage without
            digitalSignature.
    """
    key = public_key(leaf, label="the leaf certificate")
    if not isinstance(key.curve, ec.SECP384R1):
        raise _chain_error(
            "the leaf certificate does not hold a P-384 key, which ES384 documents need",
            reason="certificate",
        )
    _check_critical(leaf, "the leaf certificate")
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.digital_signature:
        raise _chain_error("the leaf certificate's keyUsage does not allow digitalSignature")
    return key


def verify_leaf(leaf: x509.Certificate, chain: IssuingChain) -> ValidityWindow:
    """Check that a verified issuing chain issued ``leaf``; return the leaf's validity.

    Raises:
        CertificateChainError: when the leaf's issuer name or signature does not match.
    """
    _check_signed_by(
        leaf,
        "the leaf certificate",
        chain.issuer_subject,
        chain.issuer_key,
        f"cabundle[{len(chain.windows) - 1}]",
    )
    return _window(leaf, "the leaf certificate")


def _utc(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        # Beyond year 9999 (a crafted timestamp): still say which instant was used.
        return f"{ms} ms after the epoch"


def check_validity(windows: Sequence[ValidityWindow], at_ms: int, *, instant: str) -> None:
    """Every certificate must be valid at ``at_ms`` (bounds inclusive, as RFC 5280 says).

    Args:
        instant: what ``at_ms`` is, for the message ("now", "the document time").

    Raises:
        CertificateExpiredError: naming the first certificate outside its validity.
    """
    for window in windows:
        if at_ms < window.not_before_ms:
            raise CertificateExpiredError(
                f"{window.label} ({window.subject}) is not valid before "
                f"{_utc(window.not_before_ms)}; {instant} is {_utc(at_ms)}",
                reason="expired",
            )
        if at_ms > window.not_after_ms:
            raise CertificateExpiredError(
                f"{window.label} ({window.subject}) expired at {_utc(window.not_after_ms)}; "
                f"{instant} is {_utc(at_ms)}",
                reason="expired",
                hint="old documents can be re-verified as of their own time with --replay",
            )
