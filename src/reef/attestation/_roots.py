"""Pinned roots of trust for Nitro-format attestation documents.

A document proves something only relative to the root its chain ends at. reef knows three by
name and accepts any certificate file:

- ``aws``: AWS Nitro Enclaves Root-G1, embedded below and pinned by the SHA-256 of its DER
  (``641a0321…bb5b``, the fingerprint AWS publishes and many independent verifiers pin). Real
  enclaves chain to it.
- ``mock``: the public root of Oyster's mock attestation servers (``CN=root``). Its private key is
  public too, so anyone can mint documents under it: it proves nothing, and is for tests and
  interoperability with Oyster's local tooling only.
- ``dev``: this installation's dev TEE root, created by :class:`reef.attestation.DevAuthority`
  under ``$REEF_HOME/dev-tee``. Equally insecure outside this machine; never trusted by default.
- a path: a DER or PEM certificate file (its name is the path).

An enclave may also take the root of its *own* attestation (:meth:`TrustedRoot.from_document`),
to accept peers on the same TEE in dev and test topologies; that trusts whatever signed it.

Public keys are printed the way Oyster prints root keys: the uncompressed SEC1 point without its
``04`` prefix (96 bytes for P-384). The certificates are public data embedded as base64 so that
verification never depends on files being present.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec

from reef.attestation._cose import NitroDocument, decode_nitro
from reef.errors import ConfigError, DecodeError, InputError
from reef.home import read_file

if TYPE_CHECKING:
    from reef.home import ReefHome

__all__ = [
    "AWS_ROOT_SHA256",
    "DEV_ROOT_CERT_FILE",
    "MOCK_ROOT_SHA256",
    "TrustedRoot",
    "raw_public_key",
]

AWS_ROOT_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
MOCK_ROOT_SHA256 = "024a7c97261ad34de885537fa08b8bd35121a28d9dc2017e688e4813fda28c96"

# The dev TEE's root certificate (DER) inside $REEF_HOME/dev-tee; written by DevAuthority.
DEV_ROOT_CERT_FILE = "root.crt"

# AWS_NitroEnclaves_Root-G1: CN=aws.nitro-enclaves, OU=AWS, O=Amazon, C=US, P-384,
# valid 2019-10-28 .. 2049-10-28 (https://aws-nitro-enclaves.amazonaws.com/AWS_NitroEnclaves_Root-G1.zip).
_AWS_ROOT_B64 = (
    "MIICETCCAZagAwIBAgIRAPkxdWgbkK/hHUbMtOTn+FYwCgYIKoZIzj0EAwMwSTELMAkGA1UEBhMC"
    "VVMxDzANBgNVBAoMBkFtYXpvbjEMMAoGA1UECwwDQVdTMRswGQYDVQQDDBJhd3Mubml0cm8tZW5j"
    "bGF2ZXMwHhcNMTkxMDI4MTMyODA1WhcNNDkxMDI4MTQyODA1WjBJMQswCQYDVQQGEwJVUzEPMA0G"
    "A1UECgwGQW1hem9uMQwwCgYDVQQLDANBV1MxGzAZBgNVBAMMEmF3cy5uaXRyby1lbmNsYXZlczB2"
    "MBAGByqGSM49AgEGBSuBBAAiA2IABPwCVOumCMHzaHDimtqQvkY4MpJzbolL//Zy2YlES1BR5TSk"
    "sfbb48C8WBoyt7F2Bw7eEtaaP+ohG2bnUs990d0JX28TcPQXCEPZ3BABIeTPYwEoCWZEh8l5YoQw"
    "TcU/9KNCMEAwDwYDVR0TAQH/BAUwAwEB/zAdBgNVHQ4EFgQUkCW1DdkFR+eWw5b6cp3PmanfS5Yw"
    "DgYDVR0PAQH/BAQDAgGGMAoGCCqGSM49BAMDA2kAMGYCMQCjfy+Rocm9Xue4YnwWmNJVA44fA0P5"
    "W2OpYow9OYCVRaEevL8uO1XYru5xtMPWrfMCMQCi85sWBbJwKKXdS6BptQFuZbT73o/gBh1qUxl/"
    "nNr12UO8Yfwr6wPLb+6NIwLz3/Y="
)

# Oyster's mock root (attestation/server-mock certs): CN=root, P-384, valid 1970 .. 2054.
_MOCK_ROOT_B64 = (
    "MIIBkDCCARegAwIBAgIBATAKBggqhkjOPQQDAzAPMQ0wCwYDVQQDEwRyb290MCAXDTcwMDEwMTAw"
    "MDAwMFoYDzIwNTQxMjA2MDc1NTI2WjAPMQ0wCwYDVQQDEwRyb290MHYwEAYHKoZIzj0CAQYFK4EE"
    "ACIDYgAEbHlBHrqudImk6DVVRcA0Z4SzHfXQjLH3wAl4NqgvZyQPKnIBhiiAodCaC7MmY3GI+7r6"
    "tHoQq+NjD8+MGNNdllMhhJheWCwNzj2s6EQfN7nMkhHf+TW6rmnkhyzDSUQQo0UwQzAOBgNVHQ8B"
    "Af8EBAMCAQYwEgYDVR0TAQH/BAgwBgEB/wIBADAdBgNVHQ4EFgQUA9r4FOgqd2xVcGUVHAi3DX4X"
    "+gEwCgYIKoZIzj0EAwMDZwAwZAIwNNa6H8RWiFEPkmEr23+xsCKIcuinhIXs4kcaOQ4BhasjXCeJ"
    "LUw1qVLcs+XGQdq/AjAittTHZoALfT+cwBKfwIv2h/hoe4ihB+rLrXp7Sfa+H3P4Ad1p+Fg3Y1PW"
    "DzRD2p0="
)


def raw_public_key(key: ec.EllipticCurvePublicKey) -> bytes:
    """An EC public key as Oyster prints it: the uncompressed point without the ``04`` prefix."""
    # From the numbers, as X9.62 lays the point out (x and y, each the field's size): the same
    # bytes as public_bytes(X962, UncompressedPoint)[1:], without loading the serialization
    # module (and its SSH and PKCS#12 codecs) into every one-shot verification.
    numbers = key.public_numbers()
    size = (key.curve.key_size + 7) // 8
    return numbers.x.to_bytes(size, "big") + numbers.y.to_bytes(size, "big")


def _load_pinned(b64: str, sha256_hex: str) -> bytes:
    der = base64.b64decode(b64)
    # A corrupted embedded root must never silently become the trust anchor.
    if hashlib.sha256(der).hexdigest() != sha256_hex:
        raise ConfigError(
            "the embedded root certificate does not match its pinned SHA-256",
            hint="the reef installation is corrupted; reinstall it",
        )
    return der


@dataclass(frozen=True)
class TrustedRoot:
    """A pinned root of trust: a self-signed CA certificate and its public key.

    Attributes:
        name: ``"aws"``, ``"mock"``, ``"dev"``, or the path of the file it was read from.
        public_key: the uncompressed EC point without ``04`` (96 bytes for P-384).
        certificate: the DER certificate.

    Construct with :meth:`aws`, :meth:`mock`, :meth:`dev`, :meth:`from_file`, :meth:`resolve` or
    (an enclave's own TEE) :meth:`from_document`; the direct constructor checks that
    ``public_key`` is the certificate's key.

    Raises:
        InputError: when the certificate is not DER X.509 with an EC key, or the key differs.
    """

    name: str
    public_key: bytes
    certificate: bytes = field(repr=False)
    _x509: x509.Certificate = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cert, key = _ec_certificate(self.certificate, self.name)
        if key != self.public_key:
            raise InputError(f"root {self.name!r}: public_key does not match the certificate")
        object.__setattr__(self, "_x509", cert)

    @property
    def x509(self) -> x509.Certificate:
        """The parsed certificate."""
        return self._x509

    @property
    def sha256(self) -> str:
        """The SHA-256 fingerprint of the DER certificate, lowercase hex."""
        return hashlib.sha256(self.certificate).hexdigest()

    @property
    def insecure(self) -> bool:
        """True for roots whose private key is not protected by hardware (``mock``, ``dev``)."""
        return self.name in ("mock", "dev")

    @classmethod
    def from_der(cls, der: bytes, *, name: str) -> TrustedRoot:
        """A root from DER certificate bytes, named ``name``.

        Raises:
            InputError: when the bytes are not an EC certificate.
        """
        _, key = _ec_certificate(der, name)
        return cls(name, key, der)

    @classmethod
    def aws(cls) -> TrustedRoot:
        """AWS Nitro Enclaves Root-G1, pinned by SHA-256 ``641a0321…bb5b``."""
        return cls.from_der(_load_pinned(_AWS_ROOT_B64, AWS_ROOT_SHA256), name="aws")

    @classmethod
    def mock(cls) -> TrustedRoot:
        """Oyster's public mock root (``CN=root``). Insecure: its private key is public."""
        return cls.from_der(_load_pinned(_MOCK_ROOT_B64, MOCK_ROOT_SHA256), name="mock")

    @classmethod
    def dev(cls, home: ReefHome) -> TrustedRoot:
        """This installation's dev TEE root, read from ``$REEF_HOME/dev-tee``. Insecure.

        Raises:
            ConfigError: when no dev TEE root exists yet under ``home``.
        """
        path = home.dev_tee / DEV_ROOT_CERT_FILE
        der = read_file(
            path,
            missing=ConfigError(
                f"no dev TEE root at {path}",
                hint="the dev TEE root is that of the home the enclaves run from: on another "
                "machine's or home's enclaves (a provider's), pass --root FILE with its "
                "dev-tee/root.crt; for enclaves of this home, start one (or `reef attestation "
                "mint`) first",
            ),
            unreadable=f"cannot read the dev TEE root {path}",
        )
        try:
            return cls.from_der(der, name="dev")
        except InputError as exc:
            raise ConfigError(
                f"the dev TEE root {path} is not a valid certificate",
                hint="remove $REEF_HOME/dev-tee to create a new dev root",
            ) from exc

    @classmethod
    def from_file(cls, path: str | Path) -> TrustedRoot:
        """A root from a DER or PEM certificate file; its name is the path as given.

        Raises:
            InputError: when the file cannot be read or holds no EC certificate.
        """
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InputError(
                f"cannot read root certificate {str(path)!r}: {exc.strerror}",
                hint="give aws, mock, dev, or the path of a DER or PEM certificate",
            ) from exc
        if data.lstrip().startswith(b"-----BEGIN"):
            from cryptography.hazmat.primitives.serialization import Encoding

            try:
                data = x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
            except (ValueError, x509.InvalidVersion, UserWarning) as exc:
                raise InputError(f"{str(path)!r} is not a PEM certificate") from exc
        return cls.from_der(data, name=str(path))

    @classmethod
    def from_document(cls, document: bytes | NitroDocument) -> TrustedRoot:
        """The root that signed *this* document: the first certificate of its ``cabundle``.

        Nothing is verified: this trusts whatever signed the document. Use it only on an
        enclave's *own* attestation (fetched from its own attestation server), where it answers
        "which TEE am I running on?", so that the enclave can accept peers attested by the same
        TEE without a configured root: dev and test topologies, ``reef kms root --trust self``.
        Named ``aws`` or ``mock`` when it is that pinned root, ``dev`` otherwise (so it counts as
        insecure and every warning about insecure roots applies).

        Args:
            document: the raw COSE_Sign1 bytes, or an already decoded document.

        Raises:
            DecodeError: when the bytes are not a Nitro document, or it has no ``cabundle``.
            InputError: when its first certificate holds no EC key.
        """
        if not isinstance(document, NitroDocument):
            _, document = decode_nitro(document)
        if not document.cabundle:
            raise DecodeError("the attestation document carries no certificate bundle")
        der = document.cabundle[0]
        for pinned in (cls.aws(), cls.mock()):
            if pinned.certificate == der:
                return pinned
        return cls.from_der(der, name="dev")

    @classmethod
    def resolve(cls, spec: str, home: ReefHome) -> TrustedRoot:
        """``aws``, ``mock``, ``dev`` or a certificate path, as users type it in ``--root``.

        Raises:
            InputError: for an unreadable or invalid certificate file.
            ConfigError: for ``dev`` when no dev root exists yet.
        """
        named = spec.strip().lower()
        if named == "aws":
            return cls.aws()
        if named == "mock":
            return cls.mock()
        if named == "dev":
            return cls.dev(home)
        return cls.from_file(spec)


def _ec_certificate(der: bytes, name: str) -> tuple[x509.Certificate, bytes]:
    """A root certificate, parsed, and its EC public key as :func:`raw_public_key` prints it.

    Raises:
        InputError: when ``der`` is not a DER X.509 certificate holding an EC public key.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
        _ = (cert.extensions, cert.subject, cert.not_valid_before_utc, cert.not_valid_after_utc)
    except (
        ValueError,
        x509.InvalidVersion,
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
        UserWarning,
    ) as exc:
        raise InputError(f"root {name!r} is not a DER X.509 certificate: {exc}") from exc
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InputError(
            f"root {name!r} does not hold an EC public key",
            hint="Nitro-format chains are P-384 ECDSA; give the EC root certificate",
        )
    return cert, raw_public_key(key)
