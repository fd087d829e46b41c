"""Every single-byte modification, every truncation and any appended byte of real documents is
rejected, with a reef.errors type and a known reason (never a foreign exception)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from reef.attestation import NitroVerifier, TrustedRoot, decode_nitro
from reef.errors import AttestationError

REASONS = {
    "decode",
    "algorithm",
    "signature",
    "certificate",
    "chain",
    "root",
    "expired",
}


def _rejections(verifier: NitroVerifier, root: TrustedRoot, variants: list[bytes]) -> Counter[str]:
    reasons: Counter[str] = Counter()
    for variant in variants:
        try:
            verifier.verify(variant, root=root, mode="replay")
        except AttestationError as exc:
            reasons[exc.reason] += 1
        else:
            raise AssertionError(f"a modified document was accepted: {variant.hex()[:80]}...")
    return reasons


@pytest.mark.parametrize(
    ("name", "flip"),
    [("aws.bin", 0x01), ("aws_pcr16.bin", 0x80), ("mock_custom_pcr16.bin", 0xFF)],
)
def test_every_single_byte_modification_is_rejected(vectors: Path, name: str, flip: int) -> None:
    doc = (vectors / "nitro" / name).read_bytes()
    root = TrustedRoot.mock() if name.startswith("mock") else TrustedRoot.aws()
    verifier = NitroVerifier()
    # The genuine document verifies (and warms the chain cache, as a busy verifier would be).
    verifier.verify(doc, root=root, mode="replay")
    variants = []
    for position in range(len(doc)):
        changed = bytearray(doc)
        changed[position] ^= flip
        variants.append(bytes(changed))
    reasons = _rejections(verifier, root, variants)
    assert sum(reasons.values()) == len(doc)
    assert set(reasons) <= REASONS, reasons
    # The COSE signature covers the whole payload, so most changes are caught there; changes to
    # the envelope fail to decode or name another algorithm, and changes to the leaf certificate
    # make it unparsable or unfit before its key is used.
    assert reasons["signature"] > len(doc) * 0.7
    assert reasons["decode"] > 0
    assert reasons["certificate"] > 0


def test_every_truncation_and_any_extension_is_rejected(vectors: Path) -> None:
    doc = (vectors / "nitro" / "aws.bin").read_bytes()
    verifier = NitroVerifier()
    variants = [doc[:length] for length in range(len(doc))]
    variants += [doc + tail for tail in (b"\x00", b"\xf6", b"\x84", doc)]
    variants += [doc[:10] + doc[11:], doc[1:]]
    reasons = _rejections(verifier, TrustedRoot.aws(), variants)
    assert set(reasons) == {"decode"}


def test_the_signature_binds_the_document_not_only_its_fields(vectors: Path) -> None:
    # Another real document of the same enclave with its signature swapped in is refused.
    first = (vectors / "nitro" / "aws_verifier_test.bin").read_bytes()
    second = (vectors / "nitro" / "aws_verifier_test_2.bin").read_bytes()
    assert first[-96:] != second[-96:]
    _, a = decode_nitro(first)
    _, b = decode_nitro(second)
    assert a.certificate == b.certificate
    with pytest.raises(AttestationError) as caught:
        NitroVerifier().verify(first[:-96] + second[-96:], root=TrustedRoot.aws(), mode="replay")
    assert caught.value.reason == "signature"


def test_every_single_byte_modification_of_a_dev_document_is_rejected(reef_home: Path) -> None:
    # Runs without the public vectors too (a fresh clone).
    from reef.attestation import DevAuthority
    from reef.home import ReefHome

    now_ms = 1_795_564_800_000
    # The root is created at the document's time, so the test does not depend on today's date.
    authority = DevAuthority.load_or_create(
        ReefHome(reef_home), now=dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    )
    doc = authority.mint(
        {0: b"\x01" * 48}, timestamp_ms=now_ms, public_key=b"k" * 32, nonce=b"n" * 20
    )
    verifier = NitroVerifier()
    verifier.verify(doc, root=authority.root, now_ms=now_ms)
    variants = []
    for position in range(len(doc)):
        changed = bytearray(doc)
        changed[position] ^= 0x04
        variants.append(bytes(changed))
    reasons = _rejections(verifier, authority.root, variants)
    assert sum(reasons.values()) == len(doc)
    assert set(reasons) <= REASONS, reasons


@pytest.mark.parametrize(
    "document",
    [b"\x81" * 1000, b"\xa1\x01" * 1000],
    ids=["arrays", "maps"],
)
def test_a_document_nested_past_cbors_depth_limit_is_a_decode_error(document: bytes) -> None:
    """cbor2 5.9 refuses items nested deeper than 400 with a CBORDecodeError that is no
    ValueError: the decoder let it through untranslated, so every caller met a foreign
    exception (the verifier service answered 500, a Scallop server logged a traceback)."""
    with pytest.raises(AttestationError, match="not well-formed CBOR"):
        decode_nitro(document)
