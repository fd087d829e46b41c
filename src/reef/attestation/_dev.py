"""The dev TEE authority: the "hardware" of reef's local enclaves. INSECURE, for development only.

A laptop has no Nitro Secure Module, so the local backend needs something that signs attestation
documents the way one does. This authority keeps a P-384 root and one intermediate CA under
``$REEF_HOME/dev-tee`` (owner-only files), issues a short-lived leaf (3 hours, like AWS's; a new
one when the current one does not cover a document's time with 30 minutes to spare; one per
module id, as each AWS enclave has its own), and mints documents in exactly AWS's layout: the
same key order and CBOR shapes, all 16 PCRs, null for empty fields, an untagged ES384 COSE_Sign1
whose ``cabundle`` is ``[root, intermediate]``.

Nothing protects the root key but file permissions: anyone who can read it can mint documents
for any PCRs. Verifiers therefore trust the dev root only when told to (``--root dev``), results
under it are marked ``insecure``, and every certificate's subject says "INSECURE".

The authority also derives per-image sealing keys (what a real TEE's sealing keys or reef's KMS
would provide): HKDF-SHA256 from the root private key with the image id in ``info``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

from reef.attestation._chain import verify_issuing_chain
from reef.attestation._cose import CoseSign1, NitroDocument
from reef.attestation._image_id import PCR_LENGTH
from reef.attestation._roots import DEV_ROOT_CERT_FILE, TrustedRoot, raw_public_key
from reef.errors import AttestationError, ConfigError, InputError
from reef.home import ReefHome

if TYPE_CHECKING:
    from reef.attestation._server import Attester

__all__ = ["LEAF_LIFETIME_MS", "MAX_USER_FIELD", "DevAuthority"]

LEAF_LIFETIME_MS = 3 * 3600 * 1000
# A leaf is re-issued when it would expire within this margin of a document's time, so a document
# stays verifiable in live mode for longer than the default max_age (5 minutes).
_LEAF_MARGIN_MS = 30 * 60 * 1000
_CA_LIFETIME = dt.timedelta(days=30 * 365)
_BACKDATE = dt.timedelta(days=1)
# A leaf starts a minute before the document that asked for it, so a verifier whose clock runs a
# little behind the authority's still finds the leaf valid in live mode.
_LEAF_BACKDATE_S = 60
# The NSM accepts at most 1024 bytes for each of public_key, user_data and nonce.
MAX_USER_FIELD = 1024
_NITRO_PCRS = 16
_MAX_LEAVES = 256

_ROOT_KEY_FILE = "root.key"
_INTERMEDIATE_KEY_FILE = "intermediate.key"
_INTERMEDIATE_CERT_FILE = "intermediate.crt"
_README = """\
reef dev TEE authority: INSECURE, for local development only.

root.key signs every local enclave's attestation documents. Anyone who can read it can forge
documents for any image. Verifiers trust it only with --root dev. Delete this folder to start
over with a new dev root (documents signed under the old one will no longer verify).
"""
_SEALING_SALT = b"reef dev-tee sealing v1"
_SEALING_INFO = b"reef/dev-tee/sealing-key/"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "ZZ"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "reef"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "dev-tee INSECURE"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, sign: bool, cert_sign: bool, non_repudiation: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=non_repudiation,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _ca_certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
    path_length: int | None,
) -> bytes:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(sign=True, cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer_key is not key:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    cert = builder.sign(issuer_key, hashes.SHA384())
    return cert.public_bytes(serialization.Encoding.DER)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"cannot read the dev TEE key {path}: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not a PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP384R1):
        raise ConfigError(f"{path} is not a P-384 private key")
    return key


@dataclass(frozen=True)
class _Leaf:
    key: ec.EllipticCurvePrivateKey
    der: bytes
    not_before_ms: int
    not_after_ms: int


class DevAuthority:
    """The dev TEE's signing authority (INSECURE: its root key is a file on this machine).

    Build it with :meth:`load_or_create`. Thread-safe.

    Attributes:
        root: the dev root, named ``"dev"``, to verify its documents with.
    """

    def __init__(
        self,
        *,
        root_key: ec.EllipticCurvePrivateKey,
        root_certificate: bytes,
        intermediate_key: ec.EllipticCurvePrivateKey,
        intermediate_certificate: bytes,
    ) -> None:
        self.root = TrustedRoot.from_der(root_certificate, name="dev")
        try:
            chain = verify_issuing_chain((root_certificate, intermediate_certificate), self.root)
        except AttestationError as exc:
            raise ConfigError(
                f"the dev TEE intermediate is not issued by the dev root: {exc.message}",
                hint="remove $REEF_HOME/dev-tee to create a new dev TEE authority",
            ) from exc
        if raw_public_key(root_key.public_key()) != self.root.public_key:
            raise ConfigError("the dev TEE root key does not match its certificate")
        self._root_key = root_key
        self._intermediate_key = intermediate_key
        self._intermediate = x509.load_der_x509_certificate(intermediate_certificate)
        self._cabundle = (root_certificate, intermediate_certificate)
        self._ca_window = (
            max(w.not_before_ms for w in chain.windows),
            min(w.not_after_ms for w in chain.windows),
        )
        digest = hashlib.sha256(b"reef dev-tee module id" + self.root.public_key).hexdigest()
        self._default_module_id = f"i-{digest[:17]}-enc{digest[17:33]}"
        # One leaf per module id, as each AWS enclave has its own; bounded, oldest dropped.
        self._leaves: dict[str, _Leaf] = {}
        self._lock = threading.Lock()

    @classmethod
    def load_or_create(cls, home: ReefHome, *, now: dt.datetime | None = None) -> DevAuthority:
        """Load the dev TEE authority from ``$REEF_HOME/dev-tee``, creating it on first use.

        Creation is atomic: concurrent processes end up sharing one root.

        Args:
            home: the reef home.
            now: the creation time of a new root (defaults to the wall clock).

        Raises:
            ConfigError: when the folder exists but holds no valid authority.
        """
        folder = home.dev_tee
        if not (folder / _ROOT_KEY_FILE).exists():
            try:
                cls._create(home, now or dt.datetime.now(dt.UTC))
            except OSError as exc:
                raise ConfigError(
                    f"cannot create the dev TEE authority under {home.root}: {exc.strerror}",
                    hint="make $REEF_HOME writable, or point REEF_HOME elsewhere",
                ) from exc
        return cls(
            root_key=_load_key(folder / _ROOT_KEY_FILE),
            root_certificate=_read(folder / DEV_ROOT_CERT_FILE),
            intermediate_key=_load_key(folder / _INTERMEDIATE_KEY_FILE),
            intermediate_certificate=_read(folder / _INTERMEDIATE_CERT_FILE),
        )

    @staticmethod
    def _create(home: ReefHome, now: dt.datetime) -> None:
        home.ensure()
        staging = home.root / f".dev-tee.{os.getpid()}.{secrets.token_hex(4)}"
        staging.mkdir(mode=0o700)
        try:
            root_key = ec.generate_private_key(ec.SECP384R1())
            intermediate_key = ec.generate_private_key(ec.SECP384R1())
            root_name = _name("reef dev TEE root (INSECURE dev only)")
            not_before, not_after = now - _BACKDATE, now + _CA_LIFETIME
            root_der = _ca_certificate(
                root_name,
                root_key,
                issuer=root_name,
                issuer_key=root_key,
                not_before=not_before,
                not_after=not_after,
                path_length=None,
            )
            intermediate_der = _ca_certificate(
                _name("reef dev TEE intermediate (INSECURE dev only)"),
                intermediate_key,
                issuer=root_name,
                issuer_key=root_key,
                not_before=not_before,
                not_after=not_after,
                path_length=0,
            )
            _write_private(staging / _ROOT_KEY_FILE, _pem(root_key))
            _write_private(staging / _INTERMEDIATE_KEY_FILE, _pem(intermediate_key))
            (staging / DEV_ROOT_CERT_FILE).write_bytes(root_der)
            (staging / _INTERMEDIATE_CERT_FILE).write_bytes(intermediate_der)
            (staging / "README").write_text(_README)
            try:
                # rename() onto an absent or empty directory is atomic; if another process got
                # there first, its authority wins and ours is discarded.
                os.rename(staging, home.dev_tee)
            except OSError:
                if not (home.dev_tee / _ROOT_KEY_FILE).exists():
                    raise ConfigError(
                        f"{home.dev_tee} exists but holds no dev TEE root key",
                        hint="move that folder away so reef can create the dev TEE authority",
                    ) from None
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    @property
    def cabundle(self) -> tuple[bytes, bytes]:
        """The DER certificates documents carry: root, then intermediate."""
        return self._cabundle

    @property
    def default_module_id(self) -> str:
        """The module id used when :meth:`mint` is given none (stable for this authority)."""
        return self._default_module_id

    def _leaf_for(self, module_id: str, timestamp_ms: int) -> _Leaf:
        with self._lock:
            leaf = self._leaves.get(module_id)
            if (
                leaf is not None
                and leaf.not_before_ms <= timestamp_ms
                and timestamp_ms + _LEAF_MARGIN_MS <= leaf.not_after_ms
            ):
                return leaf
            leaf = self._issue_leaf(module_id, timestamp_ms)
            self._leaves.pop(module_id, None)
            while len(self._leaves) >= _MAX_LEAVES:
                del self._leaves[next(iter(self._leaves))]
            self._leaves[module_id] = leaf
            return leaf

    def _issue_leaf(self, module_id: str, timestamp_ms: int) -> _Leaf:
        key = ec.generate_private_key(ec.SECP384R1())
        not_before_s = max(timestamp_ms // 1000 - _LEAF_BACKDATE_S, self._ca_window[0] // 1000)
        not_after_s = min(not_before_s + LEAF_LIFETIME_MS // 1000, self._ca_window[1] // 1000)
        cert = (
            x509.CertificateBuilder()
            # X.509 limits a common name to 64 characters, which cryptography counts in UTF-8
            # bytes: at most 40 of them from the module id (cut at a character's boundary).
            .subject_name(_name(f"{_utf8_prefix(module_id, 40)}.dev-tee (INSECURE)"))
            .issuer_name(self._intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime.fromtimestamp(not_before_s, dt.UTC))
            .not_valid_after(dt.datetime.fromtimestamp(not_after_s, dt.UTC))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                _key_usage(sign=True, cert_sign=False, non_repudiation=True), critical=False
            )
            .sign(self._intermediate_key, hashes.SHA384())
        )
        return _Leaf(
            key,
            cert.public_bytes(serialization.Encoding.DER),
            not_before_s * 1000,
            not_after_s * 1000,
        )

    def mint(
        self,
        pcrs: Mapping[int, bytes],
        *,
        timestamp_ms: int,
        public_key: bytes = b"",
        user_data: bytes = b"",
        nonce: bytes = b"",
        module_id: str | None = None,
    ) -> bytes:
        """Sign a Nitro-format attestation document, as an NSM would. INSECURE (dev root).

        PCRs 0–15 that are not given are reported as 48 zero bytes, as the NSM reports all of
        them; give 16 (and up) to include locked user PCRs.

        Args:
            pcrs: PCR index (0–31) → 48-byte value.
            timestamp_ms: the document time, in milliseconds since the Unix epoch.
            public_key: the key to attest to (at most 1024 bytes).
            user_data: user data (at most 1024 bytes).
            nonce: a nonce (at most 1024 bytes).
            module_id: the module id to report; defaults to :attr:`default_module_id`.

        Returns:
            The untagged COSE_Sign1 document bytes.

        Raises:
            InputError: for a malformed PCR, an oversized field, or a timestamp outside the dev
                root's validity.
        """
        full: dict[int, bytes] = dict.fromkeys(range(_NITRO_PCRS), bytes(PCR_LENGTH))
        for index, value in pcrs.items():
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 31:
                raise InputError(f"PCR index {index!r} is not an integer in 0..31")
            if not isinstance(value, bytes | bytearray) or len(value) != PCR_LENGTH:
                raise InputError(f"PCR{index} must be {PCR_LENGTH} bytes")
            full[index] = bytes(value)
        for name, field_value in (
            ("public_key", public_key),
            ("user_data", user_data),
            ("nonce", nonce),
        ):
            if not isinstance(field_value, bytes | bytearray):
                raise InputError(f"{name} must be bytes, got {type(field_value).__name__}")
            if len(field_value) > MAX_USER_FIELD:
                raise InputError(
                    f"{name} is {len(field_value)} bytes; the NSM accepts at most {MAX_USER_FIELD}"
                )
        if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int):
            raise InputError(f"timestamp_ms must be an integer, got {timestamp_ms!r}")
        start, end = self._ca_window
        if not start <= timestamp_ms <= end - _LEAF_MARGIN_MS:
            raise InputError(
                f"timestamp {timestamp_ms} ms is outside the dev TEE root's validity "
                f"({start}..{end} ms)",
                hint="mint documents at the current time",
            )
        if module_id is not None and (not isinstance(module_id, str) or not module_id):
            raise InputError("module_id must be a non-empty string")
        if module_id is not None:
            try:
                module_id.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate (from argv's bytes, say)
                raise InputError(
                    "module_id is not UTF-8 text (it holds a lone surrogate)",
                    hint="give the module id as text, e.g. i-0123456789abcdef0-enc0123456789abcdef",
                ) from exc
        module = module_id or self._default_module_id
        leaf = self._leaf_for(module, timestamp_ms)
        document = NitroDocument(
            module_id=module,
            timestamp_ms=timestamp_ms,
            pcrs=full,
            certificate=leaf.der,
            cabundle=self._cabundle,
            public_key=bytes(public_key),
            user_data=bytes(user_data),
            nonce=bytes(nonce),
        )
        return CoseSign1.sign_es384(document.encode(), leaf.key).encode()

    def attester(
        self,
        pcrs: Mapping[int, bytes],
        *,
        clock_ms: Callable[[], int],
        module_id: str | None = None,
    ) -> Attester:
        """An NSM stand-in for one enclave: ``f(*, public_key, user_data, nonce) -> document``,
        the :class:`Attester` the attestation servers take.

        Args:
            pcrs: the enclave's measurements.
            clock_ms: returns the current time in milliseconds (each document's timestamp).
            module_id: the enclave's module id.
        """
        frozen = dict(pcrs)

        def attest(*, public_key: bytes, user_data: bytes, nonce: bytes) -> bytes:
            return self.mint(
                frozen,
                timestamp_ms=clock_ms(),
                public_key=public_key,
                user_data=user_data,
                nonce=nonce,
                module_id=module_id,
            )

        return attest

    def sealing_key(self, image_id: bytes) -> bytes:
        """A 32-byte key only this authority can derive for this image id (INSECURE, dev only).

        HKDF-SHA256 over the root private scalar, salt ``"reef dev-tee sealing v1"``, info
        ``"reef/dev-tee/sealing-key/" || image_id``.

        Raises:
            InputError: when ``image_id`` is not 32 bytes.
        """
        if not isinstance(image_id, bytes | bytearray) or len(image_id) != 32:
            raise InputError("image_id must be 32 bytes")
        secret = self._root_key.private_numbers().private_value.to_bytes(48, "big")
        hkdf = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=_SEALING_SALT,
            info=_SEALING_INFO + bytes(image_id),
        )
        return hkdf.derive(secret)


def _utf8_prefix(text: str, size: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 takes at most ``size`` bytes (lone surrogates
    dropped: they have no UTF-8)."""
    return text.encode("utf-8", "ignore")[:size].decode("utf-8", "ignore")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror}",
            hint="remove $REEF_HOME/dev-tee to create a new dev TEE authority",
        ) from exc
