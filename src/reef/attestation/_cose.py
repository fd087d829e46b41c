"""COSE_Sign1 (RFC 9052 §4.2) and the AWS Nitro attestation document inside it: decode and encode.

A Nitro document is a COSE_Sign1 array ``[protected, unprotected, payload, signature]``, untagged
as AWS emits it or behind tag 18 as some SDKs wrap it, signed ES384 (P-384 ECDSA over SHA-384,
signature ``r || s``) over the ``Sig_structure`` ``["Signature1", protected, h'', payload]``. The
payload is a CBOR map with the keys ``module_id, digest, timestamp, pcrs, certificate, cabundle,
public_key, user_data, nonce`` (reference oyster_cvm.md §1.1, §1.5; AWS's Nitro Enclaves
attestation process, "Attestation document specification").

This module is sans-IO and does no trust decisions: it turns bytes into typed values (raising
:class:`reef.errors.DecodeError` for anything malformed) and back. Verification is in
``_nitro.py``. cbor2 is the CBOR codec because it is maintained, C-accelerated and fuzzed; pycose
is not used (1.1.0 breaks on cbor2 6). Decoded containers are checked with ``collections.abc``
because cbor2 may hand back tuples and frozen mappings inside tags.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from reef.attestation._image_id import PCR_LENGTH, image_id
from reef.encoding import describe_value, parse_b64, parse_hex
from reef.errors import DecodeError, InputError, SignatureError

__all__ = [
    "COSE_SIGN1_TAG",
    "ES384",
    "MAX_DOCUMENT_SIZE",
    "CoseSign1",
    "Encoding",
    "NitroDocument",
    "decode_nitro",
    "looks_like_cose",
    "looks_like_quote",
    "read_evidence",
]

COSE_SIGN1_TAG = 18
ES384 = -35
# The protected header every Nitro document carries: the map {1 (alg): -35 (ES384)}.
_PROTECTED_ES384 = b"\xa1\x01\x38\x22"
_P384_SCALAR = 48
_SIGNATURE_LENGTH = 2 * _P384_SCALAR
_SIG_CONTEXT = b"\x84\x6aSignature1"  # array(4), text(10) "Signature1"
# The verification parameters, built once: an ECDSA object is immutable and cost a microsecond
# or so for every document.
_ECDSA_SHA384 = ec.ECDSA(hashes.SHA384())

# Real documents are ~4.5 KB and the NSM caps each user field at 1 KiB; anything this large is
# not a document, and refusing it early bounds the work an attacker can cause.
MAX_DOCUMENT_SIZE = 1 << 20
_MAX_CABUNDLE = 16
_MAX_PCR_INDEX = 31

Encoding = Literal["auto", "raw", "hex", "base64"]

_HEX_TEXT = re.compile(rb"\A\s*(0[xX])?[0-9a-fA-F\s]+\Z")


def _decode_error(message: str, *, hint: str | None = None) -> DecodeError:
    return DecodeError(message, hint=hint, reason="decode")


_SHARING_TAGS = (28, 29)
# Bignums (2, 3) pass: a field read as an integer then fails its range check by name (a
# timestamp of 2**64), and the map limit bounds what colliding bignum keys can cost.
_BIGNUM_TAGS = (2, 3)
# Nitro's largest map is pcrs, with at most 32 entries (PCR0-31).
_MAX_MAP_ENTRIES = 32
# How many argument bytes follow each initial byte (RFC 8949 §3): 0 when the argument is in the
# byte itself, 1/2/4/8, or -1 for additional information 28-31 (reserved, or indefinite/break).
_ARGUMENT_BYTES = tuple(
    0 if byte & 0x1F < 24 else (1 << ((byte & 0x1F) - 24)) if byte & 0x1F < 28 else -1
    for byte in range(256)
)


def _check_heads(data: bytes, *, what: str, cose_tag: bool) -> None:
    """Refuse, before cbor2 builds anything, what no attestation document holds and what makes
    decoding cost more than linear time:

    - tags, but COSE_Sign1's 18 heading a message (``cose_tag``) and bignums: value sharing
      (28, 29) decodes a few hundred bytes to a value with 2**60 paths, which hashing a map key
      or a message's repr walks; decimal fractions and bigfloats (4, 5) raise the decimal
      module's errors; the others are never in a document;
    - maps of more than 32 entries, and indefinite-length maps: a map's keys are hashed into a
      dict, and keys crafted to share one hash (arrays of integers, whose tuple hash inverts)
      cost time quadratic in their number (84 KB of them took 3 s);

    A linear walk over the heads: every item starts with one, and only the payload of a byte or
    text string is not a head, so skipping those visits them all without building anything.
    Malformed input ends the walk silently: cbor2 refuses it next.

    Raises:
        DecodeError: naming what was found.
    """
    position, end = 0, len(data)
    sizes = _ARGUMENT_BYTES
    while position < end:
        start = position
        head = data[position]
        size = sizes[head]
        if size == 0:
            argument = head & 0x1F
            position += 1
        elif size > 0:
            argument = int.from_bytes(data[position + 1 : position + 1 + size], "big")
            position += 1 + size
        elif head == 0xBF:
            raise _decode_error(
                f"{what} holds an indefinite-length map; attestation documents use definite lengths"
            )
        elif head & 0x1F == 31:
            position += 1  # an indefinite-length string or array, or a break
            continue
        else:
            return  # reserved additional information: malformed, and cbor2 says so
        major = head >> 5
        if major == 2 or major == 3:
            position += argument
        elif major == 5 and argument > _MAX_MAP_ENTRIES:
            raise _decode_error(
                f"{what} holds a map of {argument} entries; attestation documents have at most "
                f"{_MAX_MAP_ENTRIES}"
            )
        elif major == 6:
            if argument in _BIGNUM_TAGS or (cose_tag and start == 0 and argument == COSE_SIGN1_TAG):
                continue
            if argument in _SHARING_TAGS:
                raise _decode_error(
                    f"{what} uses CBOR value sharing (tag 28 or 29), which no attestation "
                    "document uses"
                )
            raise _decode_error(
                f"{what} holds CBOR tag {argument}, which no attestation document uses",
                hint="Nitro documents carry no tags (but COSE_Sign1's 18 heading the message)",
            )


def _shown(value: object) -> str:
    """``value`` (decoded from a stranger's CBOR) as a short text for a message."""
    return describe_value(value)


def _loads_exact(data: bytes, *, what: str, cose_tag: bool = False) -> Any:
    """Decode exactly one CBOR item that spans all of ``data``, after :func:`_check_heads`
    (``cose_tag``: the item may be tagged 18).

    cbor2.loads silently ignores trailing bytes; a document with bytes after it is not the
    document that was signed, so it is refused.
    """
    _check_heads(data, what=what, cose_tag=cose_tag)
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(stream).decode()
    # cbor2's errors for malformed input (CBORError; in 5.9 its nesting-depth error is no
    # ValueError), and the other builtin errors its semantic-tag decoders (dates, bignums,
    # regexes, ...) can raise on crafted input: ArithmeticError covers OverflowError and the
    # decimal module's Overflow and InvalidOperation (a decimal fraction or bigfloat, tags 4 and
    # 5, with a huge exponent).
    except (
        cbor2.CBORError,
        ValueError,
        TypeError,
        LookupError,
        ArithmeticError,
        RecursionError,
        EOFError,
    ) as exc:
        raise _decode_error(f"{what} is not well-formed CBOR: {str(exc)[:200]}") from exc
    if stream.tell() != len(data):
        raise _decode_error(f"{what} has {len(data) - stream.tell()} bytes after its CBOR item")
    return value


def _bstr_head(length: int) -> bytes:
    """The minimal CBOR head of a byte string of ``length`` bytes (major type 2)."""
    if length < 24:
        return bytes([0x40 | length])
    if length < 0x100:
        return bytes([0x58, length])
    if length < 0x10000:
        return b"\x59" + length.to_bytes(2, "big")
    if length < 0x100000000:
        return b"\x5a" + length.to_bytes(4, "big")
    return b"\x5b" + length.to_bytes(8, "big")


# Tuples of types, not unions, and lists before the Sequence ABC: these run a few dozen times per
# document on the verifier's path, where the union and ABC checks cost several times more.
_BYTES_TYPES = (bytes, bytearray)
_NOT_ARRAYS = (str, bytes, bytearray)


def _is_bytes(value: object) -> bool:
    return isinstance(value, _BYTES_TYPES)


def _is_array(value: object) -> bool:
    if isinstance(value, list):  # what cbor2 decodes an array to
        return True
    return isinstance(value, Sequence) and not isinstance(value, _NOT_ARRAYS)


@dataclass(frozen=True)
class CoseSign1:
    """A COSE_Sign1 message (RFC 9052 §4.2) with an attached payload.

    Attributes:
        protected: the serialized protected header (a CBOR map, as bytes).
        unprotected: the unprotected header map (not covered by the signature).
        payload: the payload bytes.
        signature: the signature; for ES384 ``r || s``, 48 bytes each.
        tagged: whether the message carried COSE tag 18.
    """

    protected: bytes
    unprotected: Mapping[Any, Any] = field(repr=False)
    payload: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    tagged: bool = False

    @classmethod
    def decode(cls, data: bytes) -> CoseSign1:
        """Parse a tagged (18) or untagged COSE_Sign1 message.

        Raises:
            DecodeError: when ``data`` is not exactly one well-formed COSE_Sign1 message.
        """
        if len(data) > MAX_DOCUMENT_SIZE:
            raise _decode_error(
                f"evidence is {len(data)} bytes, more than the {MAX_DOCUMENT_SIZE} allowed"
            )
        item = _loads_exact(bytes(data), what="the COSE_Sign1 message", cose_tag=True)
        tagged = False
        if isinstance(item, cbor2.CBORTag):
            if item.tag != COSE_SIGN1_TAG:
                raise _decode_error(f"CBOR tag {item.tag} is not COSE_Sign1 (tag 18)")
            item, tagged = item.value, True
        if not _is_array(item) or len(item) != 4:
            raise _decode_error(
                "not a COSE_Sign1 message: expected a CBOR array of 4 elements",
                hint="give the attestation document itself (raw bytes, hex or base64)",
            )
        protected, unprotected, payload, signature = item
        if not _is_bytes(protected):
            raise _decode_error("COSE_Sign1 protected header is not a byte string")
        if not isinstance(unprotected, Mapping):
            raise _decode_error("COSE_Sign1 unprotected header is not a map")
        if not _is_bytes(payload):
            raise _decode_error("COSE_Sign1 payload is not an attached byte string")
        if not _is_bytes(signature):
            raise _decode_error("COSE_Sign1 signature is not a byte string")
        return cls(bytes(protected), unprotected, bytes(payload), bytes(signature), tagged)

    def encode(self) -> bytes:
        """The CBOR encoding, with minimal lengths (untagged unless ``tagged``)."""
        body = cbor2.dumps([self.protected, dict(self.unprotected), self.payload, self.signature])
        return b"\xd2" + body if self.tagged else body

    def sig_structure(self) -> bytes:
        """The bytes that are signed: CBOR ``["Signature1", protected, h'', payload]``."""
        return b"".join(
            (
                _SIG_CONTEXT,
                _bstr_head(len(self.protected)),
                self.protected,
                b"\x40",
                _bstr_head(len(self.payload)),
                self.payload,
            )
        )

    def protected_header(self) -> Mapping[Any, Any]:
        """The decoded protected header map (empty when the header is empty).

        Raises:
            DecodeError: when the protected header is not a CBOR map.
        """
        if not self.protected:
            return MappingProxyType({})
        header = _loads_exact(self.protected, what="the COSE protected header")
        if not isinstance(header, Mapping):
            raise _decode_error("the COSE protected header is not a map")
        return header

    def algorithm(self) -> object:
        """The ``alg`` (label 1) of the protected header, or ``None``.

        Raises:
            DecodeError: when the protected header is not a CBOR map.
        """
        return self.protected_header().get(1)

    def verify_es384(self, key: ec.EllipticCurvePublicKey) -> None:
        """Check the ES384 signature with ``key`` (the leaf certificate's P-384 key).

        Raises:
            SignatureError: ``reason="algorithm"`` when the message is not ES384 (or marks any
                header critical), ``reason="signature"`` when the signature does not verify.
        """
        if self.protected != _PROTECTED_ES384:
            header = self.protected_header()
            alg = header.get(1)
            if alg != ES384 or isinstance(alg, bool):
                raise SignatureError(
                    f"COSE algorithm is {_shown(alg)}, expected ES384 (-35)", reason="algorithm"
                )
            if 2 in header:
                # RFC 9052 §3.1: a critical header we do not understand makes the message invalid.
                raise SignatureError(
                    "COSE protected header lists critical parameters reef does not understand",
                    reason="algorithm",
                )
        if not isinstance(key.curve, ec.SECP384R1):
            raise SignatureError(
                f"the signing certificate holds a {key.curve.name} key; ES384 needs P-384",
                reason="algorithm",
            )
        if len(self.signature) != _SIGNATURE_LENGTH:
            raise SignatureError(
                f"ES384 signature is {len(self.signature)} bytes, expected {_SIGNATURE_LENGTH}",
                reason="signature",
            )
        r = int.from_bytes(self.signature[:_P384_SCALAR], "big")
        s = int.from_bytes(self.signature[_P384_SCALAR:], "big")
        try:
            key.verify(encode_dss_signature(r, s), self.sig_structure(), _ECDSA_SHA384)
        except InvalidSignature as exc:
            raise SignatureError(
                "the COSE signature does not verify under the document's leaf certificate",
                reason="signature",
            ) from exc

    @classmethod
    def sign_es384(
        cls, payload: bytes, key: ec.EllipticCurvePrivateKey, *, tagged: bool = False
    ) -> CoseSign1:
        """Sign ``payload`` with a P-384 key, as the Nitro Secure Module does.

        Raises:
            InputError: when ``key`` is not a P-384 key.
        """
        if not isinstance(key.curve, ec.SECP384R1):
            raise InputError(f"ES384 needs a P-384 key, got {key.curve.name}")
        unsigned = cls(_PROTECTED_ES384, {}, payload, b"", tagged)
        der = key.sign(unsigned.sig_structure(), ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(_P384_SCALAR, "big") + s.to_bytes(_P384_SCALAR, "big")
        return cls(_PROTECTED_ES384, {}, payload, signature, tagged)


def _optional_field(payload: Mapping[Any, Any], name: str) -> bytes:
    value = payload.get(name)
    if value is None:
        return b""
    if not _is_bytes(value):
        raise _decode_error(f"document field {name} is {type(value).__name__}, expected bytes")
    return bytes(value)


@dataclass(frozen=True, kw_only=True)
class NitroDocument:
    """The payload of a Nitro attestation document.

    Empty ``public_key``, ``user_data`` and ``nonce`` are ``b""`` whether the document carried a
    null or an empty byte string (the two are the same thing to every consumer).

    Attributes:
        module_id: the enclave's module id (instance id + enclave id on AWS).
        digest: the PCR digest algorithm, always ``"SHA384"``.
        timestamp_ms: when the NSM signed it, in milliseconds since the Unix epoch.
        pcrs: PCR index → 48-byte value.
        certificate: the DER leaf certificate whose key signed the document.
        cabundle: DER certificates, root first; the last one issued the leaf.
        public_key: the key the requester asked to be attested.
        user_data: the requester's user data.
        nonce: the requester's nonce.
    """

    module_id: str
    digest: str = "SHA384"
    timestamp_ms: int
    pcrs: Mapping[int, bytes]
    certificate: bytes = field(repr=False)
    cabundle: tuple[bytes, ...] = field(repr=False)
    public_key: bytes = b""
    user_data: bytes = b""
    nonce: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "pcrs", MappingProxyType(dict(sorted(self.pcrs.items()))))
        object.__setattr__(self, "cabundle", tuple(self.cabundle))

    @property
    def image_id(self) -> bytes:
        """The 32-byte image id (reference §1.2)."""
        return image_id(self.pcrs)

    @classmethod
    def decode(cls, payload: bytes) -> NitroDocument:
        """Parse and type-check the CBOR payload of a Nitro document.

        Raises:
            DecodeError: naming the first field that is missing or malformed.
        """
        item = _loads_exact(payload, what="the attestation document payload")
        if not isinstance(item, Mapping):
            raise _decode_error("the attestation document payload is not a CBOR map")
        for key in item:
            if not isinstance(key, str):
                raise _decode_error(f"attestation document key {_shown(key)} is not text")
        for name in ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle"):
            if name not in item:
                raise _decode_error(f"attestation document has no {name}")

        module_id = item["module_id"]
        if not isinstance(module_id, str) or not module_id:
            raise _decode_error("document field module_id is not a non-empty text string")
        digest = item["digest"]
        if digest != "SHA384":
            raise _decode_error(
                f"document digest is {_shown(digest)}; Nitro documents use 'SHA384'"
            )
        timestamp = item["timestamp"]
        if isinstance(timestamp, bool) or not isinstance(timestamp, int):
            raise _decode_error("document field timestamp is not an integer")
        if not 0 < timestamp < 1 << 64:
            raise _decode_error(
                f"document timestamp {_shown(timestamp)} is not a positive 64-bit integer"
            )

        raw_pcrs = item["pcrs"]
        if not isinstance(raw_pcrs, Mapping) or not raw_pcrs:
            raise _decode_error("document field pcrs is not a non-empty map")
        pcrs: dict[int, bytes] = {}
        for index, value in raw_pcrs.items():
            # Checked inline (16 PCRs a document): cbor2 decodes integers to exactly int, so the
            # type test also refuses bools (and nothing else CBOR can carry).
            if type(index) is not int:
                raise _decode_error(f"PCR index {_shown(index)} is not an integer")
            if not 0 <= index <= _MAX_PCR_INDEX:
                raise _decode_error(f"PCR index {_shown(index)} is outside 0..{_MAX_PCR_INDEX}")
            if not isinstance(value, _BYTES_TYPES) or len(value) != PCR_LENGTH:
                raise _decode_error(f"PCR{index} is not a {PCR_LENGTH}-byte string")
            pcrs[index] = bytes(value)
        for index in (0, 1, 2):
            if index not in pcrs:
                raise _decode_error(f"document has no PCR{index}, which the image id needs")

        certificate = item["certificate"]
        if not _is_bytes(certificate) or not certificate:
            raise _decode_error("document field certificate is not a non-empty byte string")
        cabundle = item["cabundle"]
        if not _is_array(cabundle) or not cabundle:
            raise _decode_error("document field cabundle is not a non-empty array")
        if len(cabundle) > _MAX_CABUNDLE:
            raise _decode_error(f"cabundle has {len(cabundle)} certificates, at most 16 allowed")
        for position, cert in enumerate(cabundle):
            if not _is_bytes(cert) or not cert:
                raise _decode_error(f"cabundle[{position}] is not a non-empty byte string")

        return cls(
            module_id=module_id,
            digest=digest,
            timestamp_ms=timestamp,
            pcrs=pcrs,
            certificate=bytes(certificate),
            cabundle=tuple(bytes(cert) for cert in cabundle),
            public_key=_optional_field(item, "public_key"),
            user_data=_optional_field(item, "user_data"),
            nonce=_optional_field(item, "nonce"),
        )

    def encode(self) -> bytes:
        """The payload exactly as AWS and Oyster's mock lay it out.

        Keys in the order ``module_id, digest, timestamp, pcrs, certificate, cabundle, public_key,
        user_data, nonce``; minimal lengths; the timestamp as an 8-byte unsigned integer (AWS's
        ``uint .size 8``); empty ``public_key``/``user_data``/``nonce`` as null.

        Raises:
            InputError: when a field cannot be represented (timestamp out of range).
        """
        if not 0 <= self.timestamp_ms < 1 << 64:
            raise InputError(f"timestamp {self.timestamp_ms} does not fit in 64 bits")
        dumps = cbor2.dumps
        parts = [
            b"\xa9",
            dumps("module_id"),
            dumps(self.module_id),
            dumps("digest"),
            dumps(self.digest),
            dumps("timestamp"),
            b"\x1b" + self.timestamp_ms.to_bytes(8, "big"),
            dumps("pcrs"),
            dumps(dict(self.pcrs)),
            dumps("certificate"),
            dumps(self.certificate),
            dumps("cabundle"),
            dumps(list(self.cabundle)),
        ]
        for name in ("public_key", "user_data", "nonce"):
            value: bytes = getattr(self, name)
            parts += [dumps(name), dumps(value or None)]
        return b"".join(parts)


def decode_nitro(data: bytes) -> tuple[CoseSign1, NitroDocument]:
    """Decode a raw Nitro document (tagged or untagged COSE_Sign1) into its envelope and payload.

    Raises:
        DecodeError: when the bytes are not a well-formed Nitro attestation document.
    """
    cose = CoseSign1.decode(data)
    return cose, NitroDocument.decode(cose.payload)


def looks_like_cose(data: bytes) -> bool:
    """Whether raw bytes start like a COSE_Sign1 message (array(4), or tag 18 then array(4))."""
    return data[:1] == b"\x84" or data[:2] == b"\xd2\x84"


def looks_like_quote(data: bytes) -> bool:
    """Whether raw bytes start like an Intel DCAP quote header (version 3–5, ECDSA key type)."""
    if len(data) < 48:
        return False
    version = int.from_bytes(data[0:2], "little")
    key_type = int.from_bytes(data[2:4], "little")
    tee_type = int.from_bytes(data[4:8], "little")
    return version in (3, 4, 5) and key_type in (2, 3) and tee_type in (0x00, 0x81)


def read_evidence(data: bytes | str, *, encoding: Encoding = "auto") -> bytes:
    """Raw evidence bytes from what a user has: raw bytes, hex text or base64 text.

    ``auto`` keeps bytes that already look like a COSE document or a DCAP quote, then tries hex,
    then base64.

    Raises:
        DecodeError: when the input is empty or not in the requested (or any) encoding.
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if not raw.strip():
        raise _decode_error("the evidence is empty")
    try:
        if encoding == "raw":
            return raw
        if encoding == "hex":
            return parse_hex(raw.decode("ascii"), name="evidence")
        if encoding == "base64":
            return parse_b64(raw, name="evidence")
    except (InputError, UnicodeDecodeError) as exc:
        raise _decode_error(f"the evidence is not valid {encoding}") from exc
    if looks_like_cose(raw) or looks_like_quote(raw):
        return raw
    if _HEX_TEXT.match(raw):
        try:
            return parse_hex("".join(raw.decode("ascii").split()), name="evidence")
        except InputError:
            pass
    try:
        decoded = parse_b64(raw, name="evidence")
    except InputError:
        decoded = b""
    if looks_like_cose(decoded) or looks_like_quote(decoded):
        return decoded
    raise _decode_error(
        "the evidence is neither a Nitro document nor a DCAP quote, in raw, hex or base64 form",
        hint="check the file; use --hex or --base64 to force an encoding",
    )
