"""Fuzzing: whatever bytes reach decode or verify, only reef.errors types come out.

Four layers are fuzzed: raw bytes; edits of a real document; structurally valid CBOR with
arbitrary values where the document's fields belong; and mutated certificates inside documents
whose COSE signature is valid (so the certificate parser and chain walk are reached).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attestation.nitro_support import AWS_PAYLOAD_KEYS
from reef.attestation import (
    CoseSign1,
    NitroDocument,
    NitroVerifier,
    TrustedRoot,
    decode_nitro,
    read_evidence,
    verify,
)
from reef.errors import AttestationError, DecodeError, ReefError

# REEF_FUZZ_EXAMPLES=5000 runs a longer campaign locally.
FUZZ = settings(
    max_examples=int(os.environ.get("REEF_FUZZ_EXAMPLES", "200")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
T = 1_700_000_000_000


def _verify_only_reef_errors(verifier: NitroVerifier, data: bytes, root: TrustedRoot) -> None:
    with contextlib.suppress(AttestationError):
        verifier.verify(data, root=root, mode="replay")


@pytest.fixture(scope="module")
def real(vectors: Path) -> bytes:
    return (vectors / "nitro" / "aws_pcr16.bin").read_bytes()


@FUZZ
@given(st.binary(max_size=600))
def test_arbitrary_bytes(data: bytes) -> None:
    verifier = NitroVerifier()
    _verify_only_reef_errors(verifier, data, TrustedRoot.aws())
    _verify_only_reef_errors(verifier, b"\x84" + data, TrustedRoot.aws())
    _verify_only_reef_errors(verifier, b"\xd2\x84" + data, TrustedRoot.aws())
    with contextlib.suppress(DecodeError):
        decode_nitro(data)


@settings(FUZZ, max_examples=max(50, FUZZ.max_examples // 4))  # CliRunner is slow
@given(st.binary(max_size=400))
def test_the_dispatcher_and_inspect_raise_only_reef_errors(data: bytes) -> None:
    from typer.testing import CliRunner

    from reef.cli import app

    # A quote-looking header routes the bytes to the DCAP parser.
    for evidence in (data, b"\x04\x00\x02\x00\x81\x00\x00\x00" + data):
        with contextlib.suppress(ReefError):
            verify(evidence, mode="replay", collateral=b"{}", at_s=0)
    result = CliRunner().invoke(app, ["attestation", "inspect", "-", "--json"], input=data)
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_read_evidence_raises_only_decode_errors(data: bytes | str) -> None:
    for encoding in ("auto", "raw", "hex", "base64"):
        with contextlib.suppress(DecodeError):
            read_evidence(data, encoding=encoding)  # type: ignore[arg-type]


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)),
        min_size=1,
        max_size=6,
    ),
    cut=st.one_of(st.none(), st.integers(min_value=0)),
    insert=st.one_of(st.none(), st.tuples(st.integers(min_value=0), st.binary(min_size=1))),
)
def test_edits_of_a_real_document(
    real: bytes,
    edits: list[tuple[int, int]],
    cut: int | None,
    insert: tuple[int, bytes] | None,
) -> None:
    data = bytearray(real)
    for position, value in edits:
        data[position % len(data)] = value
    if insert is not None:
        at = insert[0] % len(data)
        data[at:at] = insert[1]
    if cut is not None:
        del data[cut % len(data) :]
    if bytes(data) == real:
        return
    with pytest.raises(AttestationError):
        NitroVerifier().verify(bytes(data), root=TrustedRoot.aws(), mode="replay")


_cbor_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.binary(max_size=64),
    st.text(max_size=16),
)
_cbor_value = st.recursive(
    _cbor_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers(-3, 40)), inner, max_size=4),
        st.builds(cbor2.CBORTag, st.sampled_from([0, 1, 2, 3, 18, 24, 30, 258, 9999]), inner),
    ),
    max_leaves=12,
)


@FUZZ
@given(
    field=st.sampled_from(AWS_PAYLOAD_KEYS),
    value=_cbor_value,
    envelope=st.lists(_cbor_value, min_size=0, max_size=5),
)
def test_structured_cbor_in_every_field(
    real: bytes, field: str, value: Any, envelope: list[Any]
) -> None:
    cose, _ = decode_nitro(real)
    payload = dict(cbor2.loads(cose.payload))
    payload[field] = value
    try:
        encoded = cbor2.dumps(payload)
        wrapped = cbor2.dumps([cose.protected, {}, encoded, cose.signature])
        arbitrary = cbor2.dumps(envelope)
    except (ValueError, TypeError, OverflowError):
        return  # not encodable by cbor2; nothing to feed the decoder
    candidates = [arbitrary, cbor2.dumps(cbor2.CBORTag(18, envelope))]
    if encoded != cose.payload:  # the same value re-encoded is the genuine document
        candidates.append(wrapped)
    for data in candidates:
        with pytest.raises(AttestationError):
            NitroVerifier().verify(data, root=TrustedRoot.aws(), mode="replay")


def _signed_pki() -> tuple[ec.EllipticCurvePrivateKey, bytes, bytes, TrustedRoot]:
    root_key = ec.generate_private_key(ec.SECP384R1())
    leaf_key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz root")])
    start = dt.datetime.fromtimestamp(T / 1000 - 3600, dt.UTC)
    end = dt.datetime.fromtimestamp(T / 1000 + 3600, dt.UTC)
    root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(root_key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA384())
        .public_bytes(Encoding.DER)
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz leaf")]))
        .issuer_name(name)
        .public_key(leaf_key.public_key())
        .serial_number(2)
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(root_key, hashes.SHA384())
        .public_bytes(Encoding.DER)
    )
    return leaf_key, leaf, root, TrustedRoot.from_der(root, name="fuzz")


@pytest.fixture(scope="module")
def pki() -> tuple[ec.EllipticCurvePrivateKey, bytes, bytes, TrustedRoot]:
    return _signed_pki()


@FUZZ
@given(
    target=st.sampled_from(["leaf", "root"]),
    edits=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)),
        min_size=1,
        max_size=3,
    ),
)
def test_mutated_certificates_behind_a_valid_cose_signature(
    pki: tuple[ec.EllipticCurvePrivateKey, bytes, bytes, TrustedRoot],
    target: str,
    edits: list[tuple[int, int]],
) -> None:
    leaf_key, leaf, root_der, root = pki
    cert = bytearray(leaf if target == "leaf" else root_der)
    for position, value in edits:
        cert[position % len(cert)] = value
    document = NitroDocument(
        module_id="fuzz",
        timestamp_ms=T,
        pcrs={i: bytes(48) for i in range(3)},
        certificate=bytes(cert) if target == "leaf" else leaf,
        cabundle=[bytes(cert) if target == "root" else root_der],
    )
    signed = CoseSign1.sign_es384(document.encode(), leaf_key).encode()
    if bytes(cert) == (leaf if target == "leaf" else root_der):
        NitroVerifier().verify(signed, root=root, mode="replay")
        return
    _verify_only_reef_errors(NitroVerifier(), signed, root)


def test_every_value_of_every_envelope_byte_is_rejected(real: bytes) -> None:
    # The envelope head (array, protected header, unprotected map, payload length) and the
    # signature's head: every one of the 255 other values at each of these positions.
    verifier = NitroVerifier()
    verifier.verify(real, root=TrustedRoot.aws(), mode="replay")
    positions = [*range(10), len(real) - 98, len(real) - 97]
    for position in positions:
        for value in range(256):
            if value == real[position]:
                continue
            changed = bytearray(real)
            changed[position] = value
            with pytest.raises(AttestationError):
                verifier.verify(bytes(changed), root=TrustedRoot.aws(), mode="replay")
