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
- a stored provider root, ``provider-0x<address>``: the dev TEE root a provider's control plane
  served (``GET /tee-root``), stored in ``$REEF_HOME/roots`` by ``reef deploy --root provider``.
  It is the provider's own word: a dev TEE root's key is a file on the provider's machine, so it
  proves nothing against that provider (it checks which image runs on its simulated TEE), and it
  is insecure as ``dev`` is. Stored, it is pinned: a provider that later serves another root is
  refused rather than believed again (:meth:`TrustedRoot.stored`, :meth:`TrustedRoot.store`).

An enclave may also take the root of its *own* attestation (:meth:`TrustedRoot.from_document`),
to accept peers on the same TEE in dev and test topologies; that trusts whatever signed it.

Public keys are printed the way Oyster prints root keys: the uncompressed SEC1 point without its
``04`` prefix (96 bytes for P-384). The certificates are public data embedded as base64 so that
verification never depends on files being present.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec

from reef.attestation._cose import NitroDocument, decode_nitro
from reef.errors import ConfigError, DecodeError, InputError, MisuseError
from reef.home import read_file, read_json, replace_json

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

# Roots stored by name in $REEF_HOME/roots (one JSON file each): a provider's dev TEE root, as
# its control plane served it, under the provider's address.
_ROOTS_DIR = "roots"
_STORED_NAME = re.compile(r"^provider-0x[0-9a-f]{40}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")

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
        name: ``"aws"``, ``"mock"``, ``"dev"``, ``provider-0x<address>`` (a stored provider
            root), or the path of the file it was read from.
        public_key: the uncompressed EC point without ``04`` (96 bytes for P-384).
        certificate: the DER certificate.
        provider: the provider whose control plane served this root (:meth:`served`), whose
            word it is; ``None`` for the roots this machine pins or reads from a file.

    Construct with :meth:`aws`, :meth:`mock`, :meth:`dev`, :meth:`from_file`, :meth:`resolve`,
    (an enclave's own TEE) :meth:`from_document`, or (a provider's word) :meth:`served` and
    :meth:`stored`; the direct constructor checks that ``public_key`` is the certificate's key.

    Raises:
        InputError: when the certificate is not DER X.509 with an EC key, or the key differs.
    """

    PROVIDER: ClassVar[str] = "provider"
    """What people type in ``--root`` for the root of the provider a command pays (``reef
    deploy --root provider``); elsewhere it names nothing, as no provider is meant."""

    name: str
    public_key: bytes
    certificate: bytes = field(repr=False)
    provider: str | None = None
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
    def key_id(self) -> str:
        """A short name for the root's public key (the first 8 bytes of its SHA-256, hex), as
        verification errors name the key a chain ends at: two dev roots share one subject."""
        return hashlib.sha256(self.public_key).hexdigest()[:16]

    @property
    def insecure(self) -> bool:
        """True for roots whose private key is not protected by hardware (``mock``, ``dev``, a
        provider's dev TEE root taken on its word)."""
        return self.name in ("mock", "dev") or self.provider is not None

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
                hint="the dev TEE root is that of the home the enclaves run from: for a "
                "provider's enclaves on another machine or home, `reef deploy --root provider` "
                "takes its root on its word (INSECURE) and stores it as provider-0xADDRESS; for "
                "enclaves of this home, start one (or `reef attestation mint`) first",
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
                hint="give aws, mock, dev, a stored root (provider-0xADDRESS, from `reef deploy "
                "--root provider`), or the path of a DER or PEM certificate",
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
        """``aws``, ``mock``, ``dev``, a stored root's name or a certificate path, as users type
        it in ``--root``.

        Raises:
            InputError: for an unreadable or invalid certificate file, or ``provider`` (which
                names a root only where the command knows the provider: ``reef deploy``).
            ConfigError: for ``dev`` when no dev root exists yet, or a stored root that is not
                (or no longer) a valid certificate.
        """
        named = spec.strip().lower()
        if named == "aws":
            return cls.aws()
        if named == "mock":
            return cls.mock()
        if named == "dev":
            return cls.dev(home)
        if named == cls.PROVIDER:
            raise InputError(
                "--root provider names the root of the provider `reef deploy` pays; here, name "
                "the root it stored (provider-0xADDRESS)",
                hint=f"ls {home.root / _ROOTS_DIR} lists the stored roots; `reef attestation root "
                "provider-0xADDRESS` shows one",
            )
        if _STORED_NAME.match(named):
            stored = cls.stored(home, named)
            if stored is None:
                raise InputError(
                    f"no stored root {named} in {home.root / _ROOTS_DIR}",
                    hint="`reef deploy --root provider` stores the dev TEE root of the provider "
                    "it pays under that name",
                )
            return stored
        return cls.from_file(spec)

    @staticmethod
    def provider_root_name(provider: str) -> str:
        """The name a provider's dev TEE root is stored under: ``provider-`` and its address.

        Raises:
            InputError: ``provider`` is not an address.
        """
        if not _ADDRESS.match(provider):
            raise InputError(f"not a provider address: {provider!r}")
        return f"provider-{provider.lower()}"

    @classmethod
    def served(cls, der: bytes, *, provider: str) -> TrustedRoot:
        """The root a provider's control plane served as its enclaves' (``GET /tee-root``): its
        word, named :meth:`provider_root_name`, insecure (unless it is AWS's pinned root, which
        is then returned as :meth:`aws`: a provider on real Nitro hardware).

        Only its form is checked here (a self-signed EC CA certificate): nothing can check a
        provider's word for the root its own dev TEE signs with.

        Raises:
            InputError: the bytes are not a self-signed EC CA certificate, or ``provider`` is not
                an address.
        """
        name = cls.provider_root_name(provider)
        aws = cls.aws()
        if der == aws.certificate:
            return aws
        cert, key = _ec_certificate(der, name)
        _check_self_signed_ca(cert, name)
        return cls(name, key, der, provider=provider)

    def store(self, home: ReefHome, *, origin: Mapping[str, Any]) -> Path:
        """Store this provider root in ``home`` under its name, with ``origin`` (where and when it
        was served: control plane, chain, market) beside it; returns the file.

        Raises:
            MisuseError: this root is not a provider's (:meth:`served`).
        """
        if self.provider is None or not _STORED_NAME.match(self.name):
            raise MisuseError(f"only a provider's served root is stored by name, not {self.name!r}")
        path = home.path(_ROOTS_DIR, f"{self.name}.json")
        record = {
            "name": self.name,
            "provider": self.provider,
            "certificate": base64.b64encode(self.certificate).decode(),
            "sha256": self.sha256,
            "key_id": self.key_id,
            "insecure": "a provider's own word for its dev TEE root: it proves nothing against "
            "that provider",
            **dict(origin),
        }
        replace_json(path, record)
        return path

    @classmethod
    def stored(cls, home: ReefHome, name: str) -> TrustedRoot | None:
        """The root stored in ``home`` under ``name`` (:meth:`store`), or ``None`` if none is.

        Raises:
            ConfigError: the stored file cannot be read or holds no valid root.
        """
        named = name.strip().lower()
        if not _STORED_NAME.match(named):
            return None
        path = home.root / _ROOTS_DIR / f"{named}.json"
        if not path.exists():
            return None
        broken = f"the stored root {path} is not valid"
        hint = f"remove {path}; `reef deploy --root provider` stores the provider's root again"
        record = read_json(
            path,
            missing=ConfigError(f"no stored root {path}", hint=hint),
            unreadable=f"cannot read the stored root {path}",
        )
        if not isinstance(record, Mapping) or not isinstance(record.get("certificate"), str):
            raise ConfigError(broken, hint=hint)
        provider = record.get("provider")
        try:
            der = base64.b64decode(record["certificate"], validate=True)
            if not isinstance(provider, str) or cls.provider_root_name(provider) != named:
                raise InputError(f"it names provider {provider!r}, not the one of {named}")
            root = cls.served(der, provider=provider)
        except (binascii.Error, InputError) as exc:
            raise ConfigError(f"{broken}: {exc}", hint=hint) from exc
        return root

    @staticmethod
    def stored_at(home: ReefHome, name: str) -> Path:
        """Where the root named ``name`` is (or would be) stored in ``home``."""
        return home.root / _ROOTS_DIR / f"{name.strip().lower()}.json"


def _check_self_signed_ca(cert: x509.Certificate, name: str) -> None:
    """Refuse a root that is no root: not a CA, or not signed by its own key.

    Raises:
        InputError: ``cert`` is not a self-signed CA certificate.
    """
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise InputError(f"root {name!r} is not a CA certificate (no basicConstraints CA)")
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise InputError(f"root {name!r} is not self-signed: its signature is not its own") from exc


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
