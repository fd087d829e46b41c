"""Nitro attestation documents fuzzed at the CBOR level, behind a valid COSE signature.

Under the mock root (whose private key is public) and the dev root, anyone can sign any payload:
the payload's CBOR is a stranger's, all the way through decoding, the chain walk and the result.
These tests sign mutated payloads with a test PKI, so each mutation reaches every check after
the signature, and require that ``verify`` returns a result or raises an ``AttestationError``.

Mutations are CBOR-aware: a field's value replaced by another type, by hostile items (value
sharing, bignums, decimal fractions and bigfloats with huge exponents, indefinite lengths, huge
length heads, tags, nesting past cbor2's limit), duplicate and missing keys, an indefinite-length
map. ``tests/attestation/test_nitro_fuzz.py`` fuzzes bytes and certificates; this file adds the
CBOR structure.
"""

from __future__ import annotations

import base64
import contextlib
import time
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.cbor_support import (
    EXTENSION_OIDS,
    Pki,
    T,
    bstr,
    certificate_with_extensions,
    colliding_pairs,
    document_with,
    head,
    shared_dag,
)
from fuzz.fuzz_support import FUZZ, examples, mutated, mutations
from reef.attestation import (
    CoseSign1,
    DevAuthority,
    NitroDocument,
    NitroVerifier,
    TrustedRoot,
    VerifiedAttestation,
    decode_nitro,
    image_id,
)
from reef.errors import AttestationError, CertificateChainError, DecodeError, InputError
from reef.home import ReefHome

_MAX_U64 = b"\x1b\x7f\xff\xff\xff\xff\xff\xff\xff"
_HOSTILE = (
    shared_dag(60),
    b"\xa1" + shared_dag(60) + b"\x00",  # a map whose key is the DAG (hashed while decoding)
    head(6, 28) + b"\x81" + head(6, 29) + b"\x00",  # an array that holds itself
    b"\xc5\x82" + _MAX_U64 + b"\x01",  # a bigfloat 2**(2**63): decimal.Overflow
    b"\xc4\x82" + _MAX_U64 + b"\x01",  # a decimal fraction 10**(2**63): InvalidOperation
    b"\xd8\x1e\x82\x01\x00",  # the rational 1/0
    b"\xc2" + bstr(b"\xff" * 3000),  # a 24 000-bit bignum (repr refuses over 4 300 digits)
    b"\xc3" + bstr(b"\xff" * 3000),
    b"\x5f\x41a\x41b\xff",  # indefinite-length byte string
    b"\x7f\x61a\x61b\xff",  # indefinite-length text
    b"\x9f\x01\x02\xff",
    b"\xbf\x61a\x01\xff",
    b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # a byte string of 2**64 - 1 bytes
    b"\x9b\x00\x00\x00\x01\x00\x00\x00\x00",  # an array of 2**32 items
    b"\x81" * 450 + b"\x00",  # nested past cbor2's 400 levels
    b"\xc1" + _MAX_U64,  # an epoch time past year 9999
    b"\xc0\x63abc",  # a date that is no date
    b"\xd8\x23\x61(",  # a regex that does not compile
    b"\xd9\x01\x02\x82\x80\x80",  # a set of unhashable items
    b"\xf7",  # undefined
    b"\xf8\x20",  # simple value 32
    b"\xf9\x7e\x00",  # half-precision NaN
    b"\xfb\x7f\xf0\x00\x00\x00\x00\x00\x00",  # infinity
    b"\x1c",  # reserved additional information
    b"\xff",  # a break outside any indefinite item
    b"",  # nothing at all
)

_plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.binary(max_size=60)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(st.text(max_size=6), st.integers(-2, 40)), inner, max_size=4)
    ),
    max_leaves=10,
)


def _encodable(value: Any) -> bytes:
    try:
        return cbor2.dumps(value)
    except (ValueError, TypeError, OverflowError):
        return b"\xf6"


_fragment = st.recursive(
    st.sampled_from(_HOSTILE) | _plain_values.map(_encodable),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: head(4, len(items)) + b"".join(items)),
        st.lists(st.tuples(inner, inner), max_size=2).map(
            lambda pairs: head(5, len(pairs)) + b"".join(k + v for k, v in pairs)
        ),
        st.tuples(st.integers(0, 2**64 - 1), inner).map(lambda t: head(6, t[0]) + t[1]),
    ),
    max_leaves=4,
)
"""A raw CBOR item (or a malformed one): hostile items, plain values, and arrays, maps and tags
of them."""


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def _verify(pki: Pki, document: bytes) -> VerifiedAttestation | None:
    """Verify as a replay (and, once that passes, live); None when refused, which only an
    AttestationError may do."""
    verifier = pki.verifier
    try:
        verified = verifier.verify(document, root=pki.root, mode="replay")
        verifier.verify(document, root=pki.root, mode="live", now_ms=T)
    except AttestationError:
        return None
    return verified


def test_the_unmutated_payload_verifies(pki: Pki) -> None:
    payload = head(5, 9) + b"".join(k + v for k, v in pki.fields())
    verified = _verify(pki, pki.sign(payload))
    assert verified is not None
    assert verified.timestamp_ms == T
    assert verified.pcrs[15] == b"\x0f" * 48


@settings(FUZZ, max_examples=examples(1.5))
@given(st.integers(0, 8), _fragment)
def test_any_cbor_item_as_a_signed_field_value(pki: Pki, field: int, value: bytes) -> None:
    pairs = pki.fields()
    pairs[field] = (pairs[field][0], value)
    _verify(pki, pki.sign(head(5, 9) + b"".join(k + v for k, v in pairs)))


@FUZZ
@given(
    st.lists(st.integers(0, 8), max_size=12),
    st.sampled_from(["definite", "indefinite", "tagged"]),
    st.lists(st.tuples(_fragment, _fragment), max_size=2),
)
def test_signed_payload_maps_with_duplicate_missing_and_extra_keys(
    pki: Pki, order: list[int], form: str, extra: list[tuple[bytes, bytes]]
) -> None:
    pairs = pki.fields()
    chosen = [pairs[i] for i in order] + extra  # repeats, drops and reorders fields
    body = b"".join(k + v for k, v in chosen)
    if form == "definite":
        payload = head(5, len(chosen)) + body
    elif form == "indefinite":
        payload = b"\xbf" + body + b"\xff"
    else:
        payload = head(6, 24) + head(5, len(chosen)) + body
    verified = _verify(pki, pki.sign(payload))
    if verified is not None:
        # Whatever it accepted, it accepted values of the declared types.
        assert isinstance(verified.module_id, str)
        assert all(len(value) == 48 for value in verified.pcrs.values())


@FUZZ
@given(st.integers(0, 3), _fragment, st.booleans())
def test_any_cbor_item_in_the_envelope(pki: Pki, slot: int, value: bytes, tagged: bool) -> None:
    payload = head(5, 9) + b"".join(k + v for k, v in pki.fields())
    genuine = CoseSign1.sign_es384(payload, pki.leaf_key)
    parts = [
        bstr(genuine.protected),
        b"\xa0",
        bstr(genuine.payload),
        bstr(genuine.signature),
    ]
    parts[slot] = value
    document = (b"\xd2" if tagged else b"") + b"\x84" + b"".join(parts)
    _verify(pki, document)
    # The protected header is CBOR inside a byte string: hostile items there too.
    header = CoseSign1(value, {}, payload, genuine.signature)
    _verify(pki, header.encode())


@FUZZ
@given(mutations)
def test_byte_edits_of_a_signed_document(pki: Pki, edits: list[tuple[str, int, bytes]]) -> None:
    payload = head(5, 9) + b"".join(k + v for k, v in pki.fields())
    document = pki.sign(payload)
    changed = mutated(document, edits)
    verified = _verify(pki, changed)
    if changed != document:
        assert verified is None, "an edited document verified"


# ---- replays of what the fuzzer found ----


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (1, shared_dag(60)),  # digest: its repr in the message took 2**60 steps
        (3, b"\xa1" + shared_dag(60) + b"\x00"),  # pcrs: the key is hashed while decoding
    ],
    ids=["in-a-message", "as-a-map-key"],
)
def test_cbor_value_sharing_is_refused_before_decoding(pki: Pki, field: int, value: bytes) -> None:
    # ~400 bytes that froze the verifier: cbor2 hashes the map key (or a message repr()s the
    # value) by walking every one of its 2**60 paths, holding the GIL, in one request.
    with pytest.raises(DecodeError, match=r"uses CBOR value sharing \(tag 28 or 29\)"):
        NitroVerifier().verify(document_with(pki, field, value), root=pki.root, mode="replay")
    with pytest.raises(DecodeError, match="value sharing"):
        decode_nitro(b"\x84" + shared_dag(60) + b"\xa0\x40\x40")


def test_value_sharing_inside_a_byte_string_is_only_bytes(pki: Pki) -> None:
    # The bytes of a tag 28 head inside a certificate or a signature are not a tag: the walk
    # skips string payloads, and the document verifies.
    pairs = pki.fields()
    pairs[6] = (pairs[6][0], bstr(b"\xd8\x1c\xd8\x1d" * 8))  # public_key
    verified = _verify(pki, pki.sign(head(5, 9) + b"".join(k + v for k, v in pairs)))
    assert verified is not None
    assert verified.public_key == b"\xd8\x1c\xd8\x1d" * 8


@pytest.mark.parametrize(
    "value",
    [
        b"\xc5\x82" + _MAX_U64 + b"\x01",  # a bigfloat: decimal.Overflow came out of cbor2
        b"\xc4\x82" + _MAX_U64 + b"\x01",  # a decimal fraction: decimal.InvalidOperation
        b"\xd8\x1e\x82\x01\x02",  # a rational
        b"\xd9\x01\x02\x81\x01",  # a set
    ],
    ids=["bigfloat", "decimal-fraction", "rational", "set"],
)
def test_tags_inside_a_document_are_decode_errors(pki: Pki, value: bytes) -> None:
    for field in (1, 2, 3):  # digest, timestamp, pcrs
        with pytest.raises(DecodeError, match=r"holds CBOR tag \d+, which no attestation"):
            NitroVerifier().verify(document_with(pki, field, value), root=pki.root, mode="replay")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (2, b"\xc2" + bstr(b"\xff" * 3000), r"timestamp <a 24000-bit integer> is not"),
        (3, b"\xa1\xc2" + bstr(b"\xff" * 3000) + bstr(bytes(48)), r"index <a 24000-bit"),
    ],
    ids=["timestamp", "pcr-index"],
)
def test_a_huge_bignum_is_named_by_its_width(
    pki: Pki, field: int, value: bytes, message: str
) -> None:
    # str() of an integer over 4 300 digits raises ValueError: the message itself crashed.
    with pytest.raises(DecodeError, match=message):
        NitroVerifier().verify(document_with(pki, field, value), root=pki.root, mode="replay")


def test_map_keys_crafted_to_share_a_hash_are_refused_before_decoding(pki: Pki) -> None:
    # 6 000 two-integer arrays as map keys (84 KB, no tag at all), all with one tuple hash: cbor2
    # inserted each into a dict, comparing it with every one before: 3 s of one request, with
    # the GIL held (a minute for the 1 MB a document may be).
    pairs = colliding_pairs(6000)
    assert len({hash(pair) for pair in pairs}) == 1
    keys = b"".join(b"\x82" + cbor2.dumps(a) + cbor2.dumps(b) + b"\x00" for a, b in pairs)
    flood = b"\xb9" + len(pairs).to_bytes(2, "big") + keys
    with pytest.raises(DecodeError, match="holds a map of 6000 entries; attestation documents"):
        NitroVerifier().verify(document_with(pki, 3, flood), root=pki.root, mode="replay")
    with pytest.raises(DecodeError, match="map of 6000 entries"):
        decode_nitro(b"\x84\x40" + flood + b"\x40\x40")  # as the unprotected header
    indefinite = b"\xbf" + keys + b"\xff"
    with pytest.raises(DecodeError, match="indefinite-length map"):
        decode_nitro(b"\x84\x40" + indefinite + b"\x40\x40")


def test_a_full_pcr_map_still_decodes(pki: Pki) -> None:
    # All 32 PCRs (Nitro's most) are well inside the map limit.
    pairs = pki.fields()
    pcrs = {i: bytes([i]) * 48 for i in range(32)}
    pairs[3] = (pairs[3][0], cbor2.dumps(pcrs))
    verified = _verify(pki, pki.sign(head(5, 9) + b"".join(k + v for k, v in pairs)))
    assert verified is not None
    assert dict(verified.pcrs) == pcrs


def test_a_megabyte_of_heads_is_walked_once() -> None:
    # The walk over the heads before decoding is linear: a 1 MB array of a million small
    # integers with a tag 28 head at its end is refused in one pass.
    data = b"\x84" + head(4, 1_000_000) + b"\x01" * 999_990 + head(6, 28) + b"\x00"
    with pytest.raises(DecodeError, match="value sharing"):
        decode_nitro(data)


# ---- the dev TEE's documents ----


@pytest.fixture(scope="module")
def dev_authority(tmp_path_factory: pytest.TempPathFactory) -> DevAuthority:
    return DevAuthority.load_or_create(ReefHome(tmp_path_factory.mktemp("dev-home")))


@settings(FUZZ, max_examples=examples(0.5))
@given(
    st.text(st.characters(exclude_categories=()), min_size=1, max_size=80),
    st.binary(max_size=64),
    st.dictionaries(st.integers(-2, 40), st.binary(min_size=47, max_size=49), max_size=3),
)
def test_dev_documents_for_any_module_id_and_fields_verify_as_minted(
    dev_authority: DevAuthority, module_id: str, user_data: bytes, pcrs: dict[int, bytes]
) -> None:
    now = int(time.time() * 1000)
    try:
        document = dev_authority.mint(
            pcrs, timestamp_ms=now, module_id=module_id, user_data=user_data
        )
    except InputError:
        return
    verified = NitroVerifier().verify(document, root=dev_authority.root, mode="live", now_ms=now)
    assert verified.module_id == module_id
    assert verified.user_data == user_data


@pytest.mark.parametrize("module_id", ["\u00e9" * 100, "\U0001f600" * 30], ids=["latin", "emoji"])
def test_a_dev_module_id_in_any_script_mints(dev_authority: DevAuthority, module_id: str) -> None:
    # The leaf's common name took the first 40 characters, and cryptography counts its 64 in
    # UTF-8 bytes: "é" * 100 raised ValueError.
    now = int(time.time() * 1000)
    document = dev_authority.mint({}, timestamp_ms=now, module_id=module_id)
    verified = NitroVerifier().verify(document, root=dev_authority.root, mode="live", now_ms=now)
    assert verified.module_id == module_id


def test_a_dev_module_id_with_a_lone_surrogate_is_an_input_error(
    dev_authority: DevAuthority,
) -> None:
    # From argv bytes that are not UTF-8 (`reef attestation mint --module-id`): it raised
    # UnicodeEncodeError.
    with pytest.raises(InputError, match="module_id is not UTF-8 text"):
        dev_authority.mint({}, timestamp_ms=int(time.time() * 1000), module_id="i-\udcff")


# ---- certificates whose extensions are rearranged ----


@settings(FUZZ, max_examples=examples(0.5))
@given(
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=3),
    st.booleans(),
)
def test_certificates_with_extensions_swapped(
    pki: Pki, ca: bool, swaps: list[tuple[int, int]], flip_critical: bool
) -> None:
    der = certificate_with_extensions(pki, ca=ca)
    for old, new in swaps:
        der = der.replace(EXTENSION_OIDS[old], EXTENSION_OIDS[new], 1)
    if flip_critical:
        der = der.replace(b"\x01\x01\xff", b"\x01\x01\x00", 1)
    with contextlib.suppress(InputError):
        TrustedRoot.from_der(der, name="swapped")
    leaf = der if not ca else pki.leaf_der
    bundle = [pki.root_der] if not ca else [pki.root_der, der]
    document = NitroDocument(
        module_id="m", timestamp_ms=T, pcrs={i: bytes(48) for i in range(3)},
        certificate=leaf, cabundle=bundle,
    )  # fmt: skip
    _verify(pki, pki.sign(document.encode()))


def test_a_certificate_with_a_duplicate_extension_is_a_certificate_error(pki: Pki) -> None:
    # cryptography raises DuplicateExtension, which is no ValueError: an unsigned document with
    # such a leaf crashed verify() before its signature was looked at.
    der = certificate_with_extensions(pki, ca=False)
    duplicate = der.replace(EXTENSION_OIDS[1], EXTENSION_OIDS[0], 1)  # keyUsage -> SKI
    document = NitroDocument(
        module_id="m", timestamp_ms=T, pcrs={i: bytes(48) for i in range(3)},
        certificate=duplicate, cabundle=[pki.root_der],
    )  # fmt: skip
    unsigned = CoseSign1(b"\xa1\x01\x38\x22", {}, document.encode(), bytes(96)).encode()
    with pytest.raises(CertificateChainError, match=r"Duplicate 2\.5\.29\.14 extension"):
        NitroVerifier().verify(unsigned, root=pki.root, mode="replay")
    with pytest.raises(InputError, match=r"is not a DER X\.509 certificate"):
        TrustedRoot.from_der(duplicate, name="uploaded root")


# ---- the image id's input ----


@FUZZ
@given(
    st.dictionaries(
        st.integers(-1, 33),
        st.binary(min_size=46, max_size=50) | st.none() | st.integers() | st.text(max_size=48),
        max_size=6,
    )
)
def test_image_id_of_any_pcr_mapping(pcrs: dict[int, Any]) -> None:
    try:
        digest = image_id(pcrs)
    except InputError:
        return
    assert len(digest) == 32
    assert all(len(pcrs[i]) == 48 for i in (0, 1, 2))


def test_a_pcr_that_is_not_bytes_is_named() -> None:
    with pytest.raises(InputError, match="PCR0 must be bytes, got int"):
        image_id({0: 5, 1: bytes(48), 2: bytes(48)})


# ---- root certificate files ----


@FUZZ
@given(mutations, st.booleans())
def test_edited_root_certificate_files(
    tmp_path_factory: pytest.TempPathFactory, edits: list[tuple[str, int, bytes]], pem: bool
) -> None:
    der = mutated(TrustedRoot.mock().certificate, edits)
    path = tmp_path_factory.mktemp("root") / "root.crt"
    if pem:
        body = base64.encodebytes(der).decode()
        path.write_text(f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
    else:
        path.write_bytes(der)
    with contextlib.suppress(InputError):
        TrustedRoot.from_file(path)


def test_a_root_file_with_a_negative_serial_number_is_an_input_error(tmp_path: Path) -> None:
    # cryptography warns about it (an error where warnings are, as under pytest): the PEM path
    # let the warning out of from_file.
    der = TrustedRoot.mock().certificate.replace(
        bytes.fromhex("a003020102020101"), bytes.fromhex("a003020102020180"), 1
    )
    body = base64.encodebytes(der).decode()
    path = tmp_path / "root.pem"
    path.write_text(f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
    with pytest.raises(InputError, match="is not a PEM certificate"):
        TrustedRoot.from_file(path)
