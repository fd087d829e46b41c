"""The chain walk and the COSE envelope against documents built here, with test keys, for every
way a chain or an envelope can be wrong (each must be refused with its reason), and the encoder
against real documents byte for byte."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from attestation.nitro_support import AWS_PAYLOAD_KEYS
from reef.attestation import (
    CoseSign1,
    NitroDocument,
    NitroVerifier,
    TrustedRoot,
    decode_nitro,
    verify_nitro,
)
from reef.errors import (
    AttestationError,
    CertificateChainError,
    CertificateExpiredError,
    DecodeError,
    InputError,
    SignatureError,
)

T = 1_700_000_000_000  # 2023-11-14T22:13:20Z, the documents' time
HOUR = 3_600_000
PCRS = {i: bytes([i]) * 48 for i in range(16)}


def _at(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _usage(*, sign: bool = True, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass
class Spec:
    """How to build one certificate; the defaults make a valid CA."""

    cn: str
    not_before: int
    not_after: int
    ca: bool | None = True  # None: no basicConstraints at all
    path_length: int | None = None
    usage: x509.KeyUsage | None = None
    extra: Sequence[tuple[x509.ExtensionType, bool]] = ()
    issuer_cn: str | None = None  # override the issuer name
    signer: Any = None  # override the signing key
    curve: ec.EllipticCurve | None = None


def _cert(spec: Spec, key: Any, issuer: x509.Name, issuer_key: Any) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(spec.cn))
        .issuer_name(_name(spec.issuer_cn) if spec.issuer_cn else issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_at(spec.not_before))
        .not_valid_after(_at(spec.not_after))
    )
    if spec.ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=spec.ca, path_length=spec.path_length), critical=True
        )
    usage = spec.usage or _usage(sign=True, cert_sign=bool(spec.ca))
    builder = builder.add_extension(usage, critical=True)
    for extension, critical in spec.extra:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(spec.signer or issuer_key, hashes.SHA384())


@dataclass
class Pki:
    """A root, intermediates and a leaf; ``bundle`` is root first as in documents."""

    root: TrustedRoot
    bundle: list[bytes]
    leaf: bytes
    leaf_key: Any
    root_key: Any


def build_pki(
    *,
    root: Spec | None = None,
    intermediates: Sequence[Spec] | None = None,
    leaf: Spec | None = None,
) -> Pki:
    root = root or Spec("test root", T - 3650 * 24 * HOUR, T + 3650 * 24 * HOUR)
    if intermediates is None:
        intermediates = [Spec("test intermediate", T - 365 * 24 * HOUR, T + 365 * 24 * HOUR)]
    leaf = leaf or Spec("test leaf", T - HOUR, T + 2 * HOUR, ca=False)
    root_key = ec.generate_private_key(root.curve or ec.SECP384R1())
    root_cert = _cert(root, root_key, _name(root.cn), root_key)
    bundle = [root_cert.public_bytes(Encoding.DER)]
    issuer, issuer_key = root_cert.subject, root_key
    for spec in intermediates:
        key = ec.generate_private_key(spec.curve or ec.SECP384R1())
        cert = _cert(spec, key, issuer, issuer_key)
        bundle.append(cert.public_bytes(Encoding.DER))
        issuer, issuer_key = cert.subject, key
    leaf_key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if leaf.curve == "rsa"
        else ec.generate_private_key(leaf.curve or ec.SECP384R1())
    )
    leaf_cert = _cert(leaf, leaf_key, issuer, issuer_key)
    return Pki(
        TrustedRoot.from_der(bundle[0], name="test"),
        bundle,
        leaf_cert.public_bytes(Encoding.DER),
        leaf_key,
        root_key,
    )


def make_doc(pki: Pki, *, timestamp_ms: int = T, **fields: Any) -> bytes:
    doc = NitroDocument(
        module_id=fields.pop("module_id", "i-0123456789abcdef0-enc0123456789abcdef"),
        timestamp_ms=timestamp_ms,
        pcrs=fields.pop("pcrs", PCRS),
        certificate=fields.pop("certificate", pki.leaf),
        cabundle=fields.pop("cabundle", pki.bundle),
        **fields,
    )
    return CoseSign1.sign_es384(doc.encode(), pki.leaf_key).encode()


def _rejected(doc: bytes, root: TrustedRoot, **kwargs: Any) -> AttestationError:
    kwargs.setdefault("mode", "replay")
    with pytest.raises(AttestationError) as caught:
        verify_nitro(doc, root=root, **kwargs)
    return caught.value


@pytest.fixture(scope="module")
def good() -> Pki:
    return build_pki()


def test_a_well_formed_chain_verifies_in_both_modes(good: Pki) -> None:
    doc = make_doc(good, public_key=b"pk", user_data=b"ud", nonce=b"n")
    result = verify_nitro(doc, root=good.root, mode="replay")
    assert (result.public_key, result.user_data, result.nonce) == (b"pk", b"ud", b"n")
    assert result.root.name == "test"
    verify_nitro(doc, root=good.root, now_ms=T + 1000)


def test_a_chain_straight_from_the_root_verifies() -> None:
    pki = build_pki(intermediates=[])
    verify_nitro(make_doc(pki), root=pki.root, mode="replay")


def test_a_leaf_that_expired_before_the_document_time_is_rejected() -> None:
    # The chain is valid today and at T; only the leaf had already expired at T.
    pki = build_pki(leaf=Spec("leaf", T - 4 * HOUR, T - HOUR, ca=False))
    error = _rejected(make_doc(pki), pki.root)
    assert isinstance(error, CertificateExpiredError)
    assert error.reason == "expired"
    assert "the leaf certificate" in error.message
    assert "expired at" in error.message


def test_a_leaf_not_yet_valid_at_the_document_time_is_rejected() -> None:
    pki = build_pki(leaf=Spec("leaf", T + 1000, T + 3 * HOUR, ca=False))
    error = _rejected(make_doc(pki), pki.root)
    assert isinstance(error, CertificateExpiredError)
    assert "not valid before" in error.message


def test_validity_bounds_are_inclusive_to_the_second() -> None:
    pki = build_pki(leaf=Spec("leaf", T - HOUR, T, ca=False))
    verify_nitro(make_doc(pki), root=pki.root, mode="replay")
    with pytest.raises(CertificateExpiredError):
        verify_nitro(make_doc(pki, timestamp_ms=T + 1), root=pki.root, mode="replay")


@pytest.mark.parametrize("timestamp_ms", [1, (1 << 64) - 1, 253_402_300_800_000])
def test_absurd_document_times_are_rejected_not_crashed_on(good: Pki, timestamp_ms: int) -> None:
    error = _rejected(make_doc(good, timestamp_ms=timestamp_ms), good.root)
    assert isinstance(error, CertificateExpiredError)
    live = _rejected(make_doc(good), good.root, mode="live", now_ms=(1 << 64) - 1)
    assert isinstance(live, CertificateExpiredError)


@pytest.mark.parametrize("which", ["root", "intermediate"])
def test_an_expired_ca_is_rejected(which: str) -> None:
    expired = Spec(which, T - 48 * HOUR, T - 24 * HOUR)
    pki = build_pki(**({"root": expired} if which == "root" else {"intermediates": [expired]}))
    error = _rejected(make_doc(pki), pki.root)
    assert isinstance(error, CertificateExpiredError)


def test_live_mode_rejects_a_leaf_that_expired_since_the_document(good: Pki) -> None:
    doc = make_doc(good)
    verify_nitro(doc, root=good.root, now_ms=T + HOUR, max_age_ms=None)
    error = _rejected(doc, good.root, mode="live", now_ms=T + 3 * HOUR, max_age_ms=None)
    assert isinstance(error, CertificateExpiredError)
    assert "now is" in error.message


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (Spec("i", T - HOUR, T + HOUR, ca=False), "not a CA"),
        (Spec("i", T - HOUR, T + HOUR, ca=None), "no basicConstraints"),
        (
            Spec("i", T - HOUR, T + HOUR, usage=_usage(sign=True, cert_sign=False)),
            "keyCertSign",
        ),
        (
            Spec(
                "i",
                T - HOUR,
                T + HOUR,
                extra=[
                    (
                        x509.UnrecognizedExtension(
                            x509.ObjectIdentifier("1.3.6.1.4.1.99"), b"\x05\x00"
                        ),
                        True,
                    )
                ],
            ),
            "critical extension",
        ),
        (Spec("i", T - HOUR, T + HOUR, issuer_cn="someone else"), "names issuer"),
        (
            Spec("i", T - HOUR, T + HOUR, signer=ec.generate_private_key(ec.SECP384R1())),
            "is not signed by",
        ),
    ],
)
def test_a_broken_intermediate_is_rejected(spec: Spec, message: str) -> None:
    pki = build_pki(intermediates=[spec])
    error = _rejected(make_doc(pki), pki.root)
    assert type(error) is CertificateChainError
    assert error.reason == "chain"
    assert message in error.message


def test_path_length_constraints_are_enforced() -> None:
    deep = [Spec(f"i{n}", T - HOUR, T + HOUR) for n in range(2)]
    root = Spec("root", T - HOUR, T + HOUR, path_length=0)
    pki = build_pki(root=root, intermediates=deep)
    assert "allows 0 CA certificates below it" in _rejected(make_doc(pki), pki.root).message
    one = build_pki(root=replace(root, path_length=1), intermediates=deep)
    assert "allows 1 CA certificates below it, the chain has 2" in (
        _rejected(make_doc(one), one.root).message
    )
    allowed = build_pki(root=replace(root, path_length=2), intermediates=deep)
    verify_nitro(make_doc(allowed), root=allowed.root, mode="replay")
    inner = [Spec("i0", T - HOUR, T + HOUR, path_length=0), Spec("i1", T - HOUR, T + HOUR)]
    pki = build_pki(intermediates=inner)
    assert "cabundle[1] allows 0" in _rejected(make_doc(pki), pki.root).message


@pytest.mark.parametrize(
    ("leaf", "reason", "message"),
    [
        (Spec("leaf", T - HOUR, T + HOUR, ca=False, curve=ec.SECP256R1()), "certificate", "P-384"),
        (Spec("leaf", T - HOUR, T + HOUR, ca=False, curve="rsa"), "certificate", "EC key"),
        (
            Spec("leaf", T - HOUR, T + HOUR, ca=False, usage=_usage(sign=False, cert_sign=True)),
            "chain",
            "digitalSignature",
        ),
        (Spec("leaf", T - HOUR, T + HOUR, ca=False, issuer_cn="nobody"), "chain", "names issuer"),
        (
            Spec(
                "leaf", T - HOUR, T + HOUR, ca=False, signer=ec.generate_private_key(ec.SECP384R1())
            ),
            "chain",
            "not signed by",
        ),
    ],
)
def test_an_unfit_leaf_is_rejected(leaf: Spec, reason: str, message: str) -> None:
    pki = build_pki(leaf=leaf)
    if leaf.curve is not None:
        # A leaf that cannot sign ES384: sign the document with a stand-in P-384 key.
        doc = NitroDocument(
            module_id="m", timestamp_ms=T, pcrs=PCRS, certificate=pki.leaf, cabundle=pki.bundle
        ).encode()
        raw = CoseSign1.sign_es384(doc, ec.generate_private_key(ec.SECP384R1())).encode()
    else:
        raw = make_doc(pki)
    error = _rejected(raw, pki.root)
    assert isinstance(error, CertificateChainError)
    assert error.reason == reason
    assert message in error.message


def test_a_bundle_not_starting_at_the_pinned_root_is_rejected(good: Pki) -> None:
    other = build_pki()
    error = _rejected(make_doc(good), other.root)
    assert error.reason == "root"
    # Right root key first, but an intermediate from another hierarchy.
    mixed = make_doc(good, cabundle=[good.bundle[0], other.bundle[1]])
    assert _rejected(mixed, good.root).reason == "chain"


def test_the_pinned_certificate_anchors_the_walk_not_the_bundle_copy(good: Pki) -> None:
    # A copy of the root with the same key and name but long expired, carried in the bundle:
    # the pinned certificate decides, so the document verifies (as Oyster matches the key).
    original = x509.load_der_x509_certificate(good.bundle[0])
    stale_copy = _cert(
        Spec(original.subject.rfc4514_string()[3:], T - 48 * HOUR, T - 24 * HOUR),
        good.root_key,
        original.subject,
        good.root_key,
    ).public_bytes(Encoding.DER)
    doc = make_doc(good, cabundle=[stale_copy, *good.bundle[1:]])
    verify_nitro(doc, root=good.root, mode="replay")
    # And a pinned root that has expired fails even when the bundle's copy is valid.
    expired_pin = TrustedRoot.from_der(stale_copy, name="expired")
    error = _rejected(make_doc(good), expired_pin)
    assert isinstance(error, CertificateExpiredError)
    assert "root 'expired'" in error.message


def test_a_document_signed_by_another_key_is_rejected(good: Pki) -> None:
    doc = NitroDocument(
        module_id="m", timestamp_ms=T, pcrs=PCRS, certificate=good.leaf, cabundle=good.bundle
    ).encode()
    forged = CoseSign1.sign_es384(doc, ec.generate_private_key(ec.SECP384R1())).encode()
    error = _rejected(forged, good.root)
    assert isinstance(error, SignatureError)
    assert error.reason == "signature"


@pytest.mark.parametrize(
    "protected",
    [
        cbor2.dumps({1: -7}),  # ES256
        cbor2.dumps({1: -35, 2: [99]}),  # a critical header
        cbor2.dumps({}),
        b"",
        cbor2.dumps({1: "ES384"}),
    ],
)
def test_other_algorithms_and_critical_headers_are_rejected(good: Pki, protected: bytes) -> None:
    payload = NitroDocument(
        module_id="m", timestamp_ms=T, pcrs=PCRS, certificate=good.leaf, cabundle=good.bundle
    ).encode()
    cose = CoseSign1(protected, {}, payload, bytes(96))
    signature = good.leaf_key.sign(cose.sig_structure(), ec.ECDSA(hashes.SHA384()))
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(signature)
    signed = replace(cose, signature=r.to_bytes(48, "big") + s.to_bytes(48, "big"))
    error = _rejected(signed.encode(), good.root)
    assert isinstance(error, SignatureError)
    assert error.reason == "algorithm"


def test_a_protected_header_equal_in_meaning_but_not_in_bytes_is_accepted(good: Pki) -> None:
    # {1: -35} written with a 1-byte uint key head instead of the minimal one: the signature
    # covers these exact bytes, so it verifies, and the meaning is ES384.
    protected = b"\xa1\x18\x01\x38\x22"
    payload = NitroDocument(
        module_id="m", timestamp_ms=T, pcrs=PCRS, certificate=good.leaf, cabundle=good.bundle
    ).encode()
    cose = CoseSign1(protected, {}, payload, b"")
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(good.leaf_key.sign(cose.sig_structure(), ec.ECDSA(hashes.SHA384())))
    signed = replace(cose, signature=r.to_bytes(48, "big") + s.to_bytes(48, "big"))
    verify_nitro(signed.encode(), root=good.root, mode="replay")


def _payload(good: Pki, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "module_id": "m",
        "digest": "SHA384",
        "timestamp": T,
        "pcrs": dict(PCRS),
        "certificate": good.leaf,
        "cabundle": list(good.bundle),
        "public_key": None,
        "user_data": None,
        "nonce": None,
    }
    for key, value in overrides.items():
        if value is _DELETE:
            del body[key]
        else:
            body[key] = value
    return body


_DELETE = object()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"module_id": _DELETE}, "no module_id"),
        ({"module_id": ""}, "module_id"),
        ({"module_id": 7}, "module_id"),
        ({"digest": "SHA256"}, "digest"),
        ({"timestamp": -5}, "timestamp"),
        ({"timestamp": True}, "timestamp"),
        ({"timestamp": "1700000000000"}, "timestamp"),
        ({"timestamp": 1 << 64}, "timestamp"),
        ({"pcrs": {}}, "pcrs"),
        ({"pcrs": [b"\x00" * 48]}, "pcrs"),
        ({"pcrs": {1: bytes(48), 2: bytes(48)}}, "PCR0"),
        ({"pcrs": {**PCRS, 0: bytes(32)}}, "PCR0"),
        ({"pcrs": {**PCRS, 32: bytes(48)}}, "PCR index 32"),
        ({"pcrs": {**PCRS, "3": bytes(48)}}, "PCR index"),
        ({"certificate": b""}, "certificate"),
        ({"certificate": "der"}, "certificate"),
        ({"cabundle": []}, "cabundle"),
        ({"cabundle": [b"x"] * 17}, "at most 16"),
        ({"cabundle": [1]}, "cabundle[0]"),
        ({"public_key": "pk"}, "public_key"),
        ({"user_data": 5}, "user_data"),
        ({"nonce": []}, "nonce"),
    ],
)
def test_malformed_payloads_are_decode_errors(
    good: Pki, overrides: dict[str, Any], message: str
) -> None:
    payload = cbor2.dumps(_payload(good, **overrides))
    raw = CoseSign1.sign_es384(payload, good.leaf_key).encode()
    error = _rejected(raw, good.root)
    assert isinstance(error, DecodeError)
    assert error.reason == "decode"
    assert message in error.message


def test_non_text_keys_and_a_non_map_payload_are_decode_errors(good: Pki) -> None:
    for payload in (cbor2.dumps([1, 2]), cbor2.dumps({**_payload(good), 5: 5}), b""):
        raw = CoseSign1.sign_es384(payload, good.leaf_key).encode()
        assert isinstance(_rejected(raw, good.root), DecodeError)


def test_absent_optional_fields_and_extra_fields_are_tolerated(good: Pki) -> None:
    body = _payload(good, public_key=_DELETE, user_data=_DELETE, nonce=_DELETE)
    body["future_field"] = "ignored"
    raw = CoseSign1.sign_es384(cbor2.dumps(body), good.leaf_key).encode()
    result = verify_nitro(raw, root=good.root, mode="replay")
    assert (result.public_key, result.user_data, result.nonce) == (b"", b"", b"")


@pytest.mark.parametrize(
    ("envelope", "message"),
    [
        (cbor2.dumps([b"", {}, b""]), "4 elements"),
        (cbor2.dumps({"a": 1}), "4 elements"),
        (cbor2.dumps(cbor2.CBORTag(98, [b"", {}, b"", b""])), "tag 98"),
        (cbor2.dumps(["x", {}, b"", b""]), "protected"),
        (cbor2.dumps([b"", [], b"", b""]), "unprotected"),
        (cbor2.dumps([b"", {}, None, b""]), "payload"),
        (cbor2.dumps([b"", {}, b"", "sig"]), "signature"),
        (b"\x84", "well-formed"),
        (b"\xff" * 8, "CBOR"),
    ],
)
def test_malformed_envelopes_are_decode_errors(envelope: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        CoseSign1.decode(envelope)


def test_oversized_evidence_is_refused_before_parsing() -> None:
    with pytest.raises(DecodeError, match="more than"):
        CoseSign1.decode(b"\x84" + bytes(1 << 20))


def test_signatures_of_the_wrong_length_are_rejected(good: Pki) -> None:
    raw = make_doc(good)
    cose = CoseSign1.decode(raw)
    for signature in (cose.signature[:-1], cose.signature + b"\x00", b""):
        error = _rejected(replace(cose, signature=signature).encode(), good.root)
        assert error.reason == "signature"


def test_sig_structure_matches_an_independent_cbor_encoding(vectors: Path, good: Pki) -> None:
    for raw in ((vectors / "nitro" / "aws.bin").read_bytes(), make_doc(good)):
        cose = CoseSign1.decode(raw)
        assert cose.sig_structure() == cbor2.dumps(
            ["Signature1", cose.protected, b"", cose.payload]
        )
    small = CoseSign1(b"\xa1\x01\x38\x22", {}, b"x" * 300, b"")
    assert small.sig_structure() == cbor2.dumps(["Signature1", small.protected, b"", small.payload])


@pytest.mark.parametrize(
    "name", ["aws.bin", "aws_verifier_test.bin", "mock_custom.bin", "mock_custom_pcr16.bin"]
)
def test_the_encoder_reproduces_real_payloads_byte_for_byte(vectors: Path, name: str) -> None:
    # These documents carry null for their empty fields, as the encoder writes them.
    raw = (vectors / "nitro" / name).read_bytes()
    cose, doc = decode_nitro(raw)
    assert doc.encode() == cose.payload
    assert NitroDocument.decode(doc.encode()) == doc


def test_the_encoder_keeps_aws_key_order_and_an_8_byte_timestamp(good: Pki) -> None:
    payload = NitroDocument(
        module_id="m", timestamp_ms=5, pcrs=PCRS, certificate=good.leaf, cabundle=good.bundle
    ).encode()
    decoded = cbor2.loads(payload)
    assert tuple(decoded) == AWS_PAYLOAD_KEYS
    assert b"itimestamp\x1b\x00\x00\x00\x00\x00\x00\x00\x05" in payload
    assert decoded["public_key"] is None
    assert decoded["nonce"] is None
    with pytest.raises(InputError):
        replace(NitroDocument.decode(payload), timestamp_ms=1 << 64).encode()


def test_sign_es384_refuses_other_curves() -> None:
    with pytest.raises(InputError, match="P-384"):
        CoseSign1.sign_es384(b"x", ec.generate_private_key(ec.SECP256R1()))


def test_trusted_root_checks_its_own_consistency(good: Pki) -> None:
    with pytest.raises(InputError, match="does not match"):
        TrustedRoot("x", bytes(96), good.root.certificate)
    with pytest.raises(InputError, match="not a DER"):
        TrustedRoot.from_der(b"junk", name="x")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_root = (
        x509.CertificateBuilder()
        .subject_name(_name("rsa"))
        .issuer_name(_name("rsa"))
        .public_key(rsa_key.public_key())
        .serial_number(1)
        .not_valid_before(_at(T - HOUR))
        .not_valid_after(_at(T + HOUR))
        .sign(rsa_key, hashes.SHA256())
    )
    with pytest.raises(InputError, match="EC public key"):
        TrustedRoot.from_der(rsa_root.public_bytes(Encoding.DER), name="rsa")


def test_the_cache_is_bounded_and_never_caches_failures() -> None:
    verifier = NitroVerifier(cache_size=2)
    pkis = [build_pki() for _ in range(3)]
    for pki in pkis:
        verifier.verify(make_doc(pki), root=pki.root, mode="replay")
    assert verifier.cache_misses == 3
    verifier.verify(make_doc(pkis[2]), root=pkis[2].root, mode="replay")
    assert verifier.cache_hits == 1
    verifier.verify(make_doc(pkis[0]), root=pkis[0].root, mode="replay")
    assert verifier.cache_misses == 4  # the oldest entry was dropped
    bad = build_pki(intermediates=[Spec("i", T - HOUR, T + HOUR, ca=False)])
    for _ in range(2):
        with pytest.raises(CertificateChainError):
            verifier.verify(make_doc(bad), root=bad.root, mode="replay")
    assert verifier.cache_misses == 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_id": b"\x00" * 31}, "32 bytes"),
        ({"image_id": "00" * 32}, "must be bytes"),
        ({"pcrs": {32: bytes(48)}}, "PCR index 32"),
        ({"pcrs": {True: bytes(48)}}, "PCR index"),
        ({"pcrs": {0: "00"}}, "must be bytes"),
        ({"public_key": 5}, "must be bytes"),
        ({"timestamp_ms": -1}, "timestamp_ms"),
        ({"timestamp_ms": 1.0}, "timestamp_ms"),
    ],
)
def test_expectations_refuse_malformed_values(kwargs: dict[str, Any], message: str) -> None:
    from reef.attestation import Expectations

    with pytest.raises(InputError, match=message):
        Expectations(**kwargs)


def test_expectations_are_immutable_copies() -> None:
    from reef.attestation import Expectations

    pcrs = {1: bytearray(48)}
    expect = Expectations(pcrs=pcrs, nonce=bytearray(b"n"))  # type: ignore[dict-item,arg-type]
    pcrs[2] = bytes(48)
    assert list(expect.pcrs) == [1]
    assert expect.pcrs[1] == bytes(48)
    assert expect.nonce == b"n"
    with pytest.raises(TypeError):
        expect.pcrs[3] = bytes(48)  # type: ignore[index]


@pytest.mark.parametrize("length", [0, 23, 24, 255, 256, 65535, 65536, 70000])
def test_sig_structure_lengths_match_cbor2_at_every_head_size(length: int) -> None:
    cose = CoseSign1(b"\xa1\x01\x38\x22", {}, b"p" * length, b"")
    assert cose.sig_structure() == cbor2.dumps(["Signature1", cose.protected, b"", cose.payload])


def test_root_files_that_are_not_certificates(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"
    )
    with pytest.raises(InputError, match="not a PEM certificate"):
        TrustedRoot.from_file(tmp_path / "bad.pem")
    (tmp_path / "bad.der").write_bytes(b"\x30\x03\x02\x01\x01")
    with pytest.raises(InputError, match="not a DER"):
        TrustedRoot.from_file(tmp_path / "bad.der")
    with pytest.raises(InputError, match="cannot read"):
        TrustedRoot.from_file(tmp_path)
