"""Builders the CBOR-level fuzz tests share: CBOR heads, a test PKI that signs any payload,
and the hostile items the fuzzer found (a value-sharing DAG, map keys sharing one hash,
certificates with swapped extension OIDs)."""

from __future__ import annotations

import datetime as dt

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from reef.attestation import CoseSign1, NitroDocument, NitroVerifier, TrustedRoot

__all__ = [
    "EXTENSION_OIDS",
    "T",
    "Pki",
    "bstr",
    "certificate_with_extensions",
    "colliding_pairs",
    "document_with",
    "head",
    "shared_dag",
]

T = 1_700_000_000_000
"""The instant every document of these tests is signed at (milliseconds)."""


def head(major: int, argument: int) -> bytes:
    """The minimal CBOR head of ``major`` with ``argument`` (RFC 8949 §3)."""
    if argument < 24:
        return bytes([major << 5 | argument])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if argument < 1 << (8 * size):
            return bytes([major << 5 | info]) + argument.to_bytes(size, "big")
    raise AssertionError(argument)


def bstr(data: bytes) -> bytes:
    """``data`` as a CBOR byte string."""
    return head(2, len(data)) + data


def shared_dag(depth: int) -> bytes:
    """An array that holds the same array twice, ``depth`` times over (tags 28/29): a hundred
    bytes that decode to a value with 2**depth paths through it."""
    item = head(6, 28) + b"\x00"  # the innermost shared value (index depth)
    for level in range(1, depth + 1):
        item = head(6, 28) + b"\x82" + item + head(6, 29) + head(0, depth - level + 1)
    return item


class Pki:
    """A P-384 root and leaf, valid around :data:`T`, and a verifier trusting that root: any
    payload signed with the leaf passes the COSE signature, so a mutation reaches every check
    after it."""

    def __init__(self) -> None:
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.leaf_key = ec.generate_private_key(ec.SECP384R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz root")])
        start = dt.datetime.fromtimestamp(T / 1000 - 3600, dt.UTC)
        end = dt.datetime.fromtimestamp(T / 1000 + 3600, dt.UTC)
        self.root_der = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.root_key.public_key())
            .serial_number(1)
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.root_key, hashes.SHA384())
            .public_bytes(Encoding.DER)
        )
        self.leaf_der = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz leaf")]))
            .issuer_name(name)
            .public_key(self.leaf_key.public_key())
            .serial_number(2)
            .not_valid_before(start)
            .not_valid_after(end)
            .sign(self.root_key, hashes.SHA384())
            .public_bytes(Encoding.DER)
        )
        self.root = TrustedRoot.from_der(self.root_der, name="fuzz")
        # One verifier for every example, as a service keeps one: its chain cache is keyed by
        # exact certificate bytes, so a mutated certificate is still walked.
        self.verifier = NitroVerifier()

    def fields(self) -> list[tuple[bytes, bytes]]:
        """The real payload's (key, value) pairs, as raw CBOR, in AWS's order."""
        document = NitroDocument(
            module_id="i-0123456789abcdef0-enc0123456789abcdef",
            timestamp_ms=T,
            pcrs={i: bytes([i]) * 48 for i in range(16)},
            certificate=self.leaf_der,
            cabundle=[self.root_der],
            public_key=b"k" * 32,
            user_data=b"u" * 8,
            nonce=b"n" * 4,
        )
        payload = document.encode()
        pairs = list(cbor2.loads(payload).items())
        raw = [(cbor2.dumps(k), cbor2.dumps(v)) for k, v in pairs]
        raw[2] = (raw[2][0], b"\x1b" + T.to_bytes(8, "big"))  # AWS's 8-byte timestamp
        assert head(5, len(raw)) + b"".join(k + v for k, v in raw) == payload
        return raw

    def sign(self, payload: bytes, *, tagged: bool = False) -> bytes:
        return CoseSign1.sign_es384(payload, self.leaf_key, tagged=tagged).encode()


def document_with(pki: Pki, field: int, value: bytes) -> bytes:
    pairs = pki.fields()
    pairs[field] = (pairs[field][0], value)
    return pki.sign(head(5, 9) + b"".join(k + v for k, v in pairs))


_P1, _P2, _P5 = 11400714785074694791, 14029467366897019727, 2870177450012600261
_U64 = (1 << 64) - 1


def colliding_pairs(count: int) -> list[tuple[int, int]]:
    """``count`` pairs of integers below 2**61 - 1 whose tuples share one hash: CPython's tuple
    hash (xxHash's round, each step invertible) is solved backwards for the second element."""

    def rotate(x: int, by: int) -> int:
        return ((x << by) | (x >> (64 - by))) & _U64

    target = rotate((0x1234567890ABCDEF * pow(_P1, -1, 1 << 64)) & _U64, 33)
    pairs: list[tuple[int, int]] = []
    first = 0
    while len(pairs) < count:
        after_first = (rotate((_P5 + first * _P2) & _U64, 31) * _P1) & _U64
        second = ((target - after_first) * pow(_P2, -1, 1 << 64)) & _U64
        if second < (1 << 61) - 1:  # an int below the modulus hashes to itself
            pairs.append((first, second))
        first += 1
    return pairs


# The OIDs (id-ce arc, 55 1d xx) a certificate's extensions can name: swapping one for another
# keeps the DER well-formed, and makes an extension appear twice, parse as another type, or
# become unknown (and critical).
EXTENSION_OIDS = [
    bytes([0x55, 0x1D, last]) for last in (0x0E, 0x0F, 0x11, 0x13, 0x1F, 0x20, 0x23, 0x25, 0x7F)
]


def certificate_with_extensions(pki: Pki, *, ca: bool) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "extensions")])
    key = pki.leaf_key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(
            name if ca else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz root")])
        )
        .public_key(key)
        .serial_number(7)
        .not_valid_before(dt.datetime.fromtimestamp(T / 1000 - 3600, dt.UTC))
        .not_valid_after(dt.datetime.fromtimestamp(T / 1000 + 3600, dt.UTC))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, ca, ca, False, False), critical=True
        )
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("a.example")]), critical=False)
    )
    return builder.sign(pki.root_key, hashes.SHA384()).public_bytes(Encoding.DER)
