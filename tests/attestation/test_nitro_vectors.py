"""Every public Nitro document verifies in replay mode to exactly the values in expected.json, is
rejected in live mode, and every wrong root, expectation or time is rejected with its reason."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store

from attestation.nitro_support import NITRO_VECTORS, RESULT_KEYS
from reef.attestation import (
    CoseSign1,
    Expectations,
    NitroVerifier,
    TrustedRoot,
    decode_nitro,
    read_evidence,
    verify,
    verify_nitro,
)
from reef.errors import (
    AttestationError,
    CertificateChainError,
    CertificateExpiredError,
    ExpectationError,
    MisuseError,
    StaleAttestationError,
)

# 2026-11-25, the day these tests were written: every vector's chain has long expired.
TODAY_MS = 1_795_564_800_000


@pytest.fixture(scope="module")
def nitro(vectors: Path) -> Path:
    return vectors / "nitro"


@pytest.fixture(scope="module")
def expected(nitro: Path) -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads((nitro / "expected.json").read_text())
    return data


def _root_for(name: str) -> TrustedRoot:
    return TrustedRoot.mock() if name.startswith("mock") else TrustedRoot.aws()


def test_expected_json_covers_every_document(nitro: Path, expected: dict[str, Any]) -> None:
    assert sorted(expected) == sorted(NITRO_VECTORS)
    assert sorted(p.name for p in nitro.glob("*.bin")) == sorted(NITRO_VECTORS)


@pytest.mark.parametrize("name", NITRO_VECTORS)
def test_replay_gives_exactly_the_expected_values(
    nitro: Path, expected: dict[str, Any], name: str
) -> None:
    want = expected[name]
    root = _root_for(name)
    result = verify_nitro((nitro / name).read_bytes(), root=root, mode="replay")
    assert result.kind == "nitro"
    assert result.mode == "replay"
    assert result.image_id.hex() == want["image_id"]
    assert result.timestamp_ms == want["timestamp_ms"]
    assert result.module_id == want["module_id"]
    assert len(result.pcrs) == want["pcr_count"]
    assert {str(i): v.hex() for i, v in result.pcrs.items()} == want["pcrs"]
    assert result.public_key.hex() == want["public_key"]
    assert result.user_data.hex() == want["user_data"]
    assert result.nonce.hex() == want["nonce"]
    assert result.root.public_key.hex() == want["root_public_key"]
    assert result.root.sha256 == want["root_sha256"]
    assert result.root.name == ("mock" if name.startswith("mock") else "aws")
    assert result.insecure is name.startswith("mock")
    js = result.to_json()
    assert tuple(js) == RESULT_KEYS
    assert js["pcrs"] == want["pcrs"]
    assert js["root"] == {"name": root.name, "public_key": want["root_public_key"]}


@pytest.mark.parametrize("name", NITRO_VECTORS)
def test_live_mode_rejects_every_vector_today(nitro: Path, name: str) -> None:
    with pytest.raises(AttestationError) as caught:
        verify_nitro((nitro / name).read_bytes(), root=_root_for(name), now_ms=TODAY_MS)
    # Real chains expired long ago; the mock chain lives until 2054, so the age check fires.
    if name.startswith("mock"):
        assert isinstance(caught.value, StaleAttestationError)
        assert caught.value.reason == "stale"
    else:
        assert isinstance(caught.value, CertificateExpiredError)
        assert caught.value.reason == "expired"


@pytest.mark.parametrize("name", [n for n in NITRO_VECTORS if n.startswith("aws")])
def test_live_mode_accepts_a_real_document_within_its_window(
    nitro: Path, expected: dict[str, Any], name: str
) -> None:
    want = expected[name]
    now_ms = min(want["timestamp_ms"] + 60_000, want["chain_valid_until_s"] * 1000)
    result = verify_nitro((nitro / name).read_bytes(), root=TrustedRoot.aws(), now_ms=now_ms)
    assert result.mode == "live"
    assert result.image_id.hex() == want["image_id"]


def test_live_mode_rejects_a_stale_document_whose_chain_is_still_valid(
    nitro: Path, expected: dict[str, Any]
) -> None:
    want = expected["aws.bin"]
    now_ms = want["timestamp_ms"] + 300_001
    assert now_ms < want["chain_valid_until_s"] * 1000
    doc = (nitro / "aws.bin").read_bytes()
    with pytest.raises(StaleAttestationError) as caught:
        verify_nitro(doc, root=TrustedRoot.aws(), now_ms=now_ms)
    assert caught.value.reason == "stale"
    # Exactly max_age old is still fresh; no age limit at all is allowed too.
    verify_nitro(doc, root=TrustedRoot.aws(), now_ms=now_ms - 1)
    verify_nitro(doc, root=TrustedRoot.aws(), now_ms=now_ms, max_age_ms=None)
    verify_nitro(doc, root=TrustedRoot.aws(), now_ms=now_ms, max_age_ms=600_000)


def test_live_mode_rejects_a_document_from_the_future(
    nitro: Path, expected: dict[str, Any]
) -> None:
    want = expected["aws.bin"]
    doc = (nitro / "aws.bin").read_bytes()
    now_ms = want["timestamp_ms"] - 60_001
    assert now_ms > want["chain_valid_from_s"] * 1000
    with pytest.raises(StaleAttestationError) as caught:
        verify_nitro(doc, root=TrustedRoot.aws(), now_ms=now_ms)
    assert caught.value.reason == "future"
    # Within the allowed clock skew it passes; a verifier may tighten or widen the skew.
    verify_nitro(doc, root=TrustedRoot.aws(), now_ms=now_ms + 1)
    NitroVerifier(max_future_skew_ms=120_000).verify(doc, root=TrustedRoot.aws(), now_ms=now_ms)


def test_live_mode_checks_the_chain_now_not_only_at_the_document_time(
    nitro: Path, expected: dict[str, Any]
) -> None:
    want = expected["aws.bin"]
    doc = (nitro / "aws.bin").read_bytes()
    after = want["chain_valid_until_s"] * 1000 + 1000
    with pytest.raises(CertificateExpiredError, match="now is"):
        verify_nitro(doc, root=TrustedRoot.aws(), now_ms=after, max_age_ms=None)


def test_replay_checks_freshness_only_when_asked(nitro: Path, expected: dict[str, Any]) -> None:
    doc = (nitro / "aws.bin").read_bytes()
    # now_ms given but max_age_ms None: no freshness check.
    verify_nitro(doc, root=TrustedRoot.aws(), mode="replay", now_ms=TODAY_MS, max_age_ms=None)
    with pytest.raises(StaleAttestationError):
        verify_nitro(doc, root=TrustedRoot.aws(), mode="replay", now_ms=TODAY_MS)
    ts = expected["aws.bin"]["timestamp_ms"]
    verify_nitro(doc, root=TrustedRoot.aws(), mode="replay", now_ms=ts + 1000)


def test_live_mode_needs_the_current_time(nitro: Path) -> None:
    with pytest.raises(MisuseError, match="now_ms"):
        verify_nitro((nitro / "aws.bin").read_bytes(), root=TrustedRoot.aws())
    with pytest.raises(MisuseError, match="read_evidence"):
        verify_nitro(
            (nitro / "aws.bin").read_bytes().hex(),  # type: ignore[arg-type]
            root=TrustedRoot.aws(),
            mode="replay",
        )
    with pytest.raises(MisuseError, match="root"):
        verify_nitro(b"", root="aws", mode="replay")  # type: ignore[arg-type]
    with pytest.raises(MisuseError, match="now_ms"):
        verify_nitro(b"", root=TrustedRoot.aws(), now_ms=-1)
    with pytest.raises(MisuseError, match="mode"):
        verify_nitro(
            (nitro / "aws.bin").read_bytes(),
            root=TrustedRoot.aws(),
            mode="later",  # type: ignore[arg-type]
        )


@pytest.mark.parametrize("name", NITRO_VECTORS)
def test_wrong_roots_are_rejected(nitro: Path, name: str, tmp_path: Path) -> None:
    doc = (nitro / name).read_bytes()
    wrong = TrustedRoot.aws() if name.startswith("mock") else TrustedRoot.mock()
    with pytest.raises(CertificateChainError) as caught:
        verify_nitro(doc, root=wrong, mode="replay")
    assert caught.value.reason == "root"


def test_root_from_a_file_in_der_and_pem(nitro: Path, tmp_path: Path) -> None:
    der_path = nitro / "aws_root_g1.der"
    pem_path = tmp_path / "root.pem"
    cert = x509.load_der_x509_certificate(der_path.read_bytes())
    pem_path.write_bytes(cert.public_bytes(Encoding.PEM))
    for path in (der_path, pem_path):
        root = TrustedRoot.from_file(path)
        assert root.name == str(path)
        assert root.public_key == TrustedRoot.aws().public_key
        assert root.certificate == TrustedRoot.aws().certificate
        assert not root.insecure
        verify_nitro((nitro / "aws.bin").read_bytes(), root=root, mode="replay")
    mock = TrustedRoot.from_file(nitro / "mock_root.der")
    assert mock.public_key == TrustedRoot.mock().public_key


def test_pinned_roots_match_the_published_fingerprints(nitro: Path) -> None:
    aws = TrustedRoot.aws()
    assert aws.sha256 == "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
    assert aws.certificate == (nitro / "aws_root_g1.der").read_bytes()
    # The root key Oyster's SDK pins (reference §1.3).
    assert aws.public_key.hex().startswith("fc0254eba608c1f36870e29ada90be46")
    assert TrustedRoot.mock().certificate == (nitro / "mock_root.der").read_bytes()
    assert TrustedRoot.mock().public_key.hex().startswith("6c79411ebaae7489a4e8355545c03467")


def _full_expectations(want: dict[str, Any]) -> dict[str, Any]:
    return {
        "image_id": bytes.fromhex(want["image_id"]),
        "pcrs": {int(i): bytes.fromhex(v) for i, v in want["pcrs"].items()},
        "public_key": bytes.fromhex(want["public_key"]),
        "user_data": bytes.fromhex(want["user_data"]),
        "nonce": bytes.fromhex(want["nonce"]),
        "timestamp_ms": want["timestamp_ms"],
    }


@pytest.mark.parametrize("name", NITRO_VECTORS)
def test_matching_expectations_pass(nitro: Path, expected: dict[str, Any], name: str) -> None:
    expect = Expectations(**_full_expectations(expected[name]))
    verify_nitro((nitro / name).read_bytes(), root=_root_for(name), mode="replay", expect=expect)


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("image_id", "image_id"),
        ("pcrs", "pcr"),
        ("public_key", "public_key"),
        ("user_data", "user_data"),
        ("nonce", "nonce"),
        ("timestamp_ms", "timestamp"),
    ],
)
@pytest.mark.parametrize("name", ["aws.bin", "aws_debug_nonce.bin", "mock_custom_pcr16.bin"])
def test_each_wrong_expectation_is_rejected_with_its_reason(
    nitro: Path, expected: dict[str, Any], name: str, field: str, reason: str
) -> None:
    values = _full_expectations(expected[name])
    wrong: Any
    if field == "pcrs":
        wrong = {**values["pcrs"], 1: b"\x99" * 48}
    elif field == "timestamp_ms":
        wrong = values["timestamp_ms"] + 1
    elif field == "image_id":
        wrong = bytes(32)
    else:
        # Empty fields are expected non-empty, set ones are changed in their last byte.
        original: bytes = values[field]
        wrong = original[:-1] + bytes([original[-1] ^ 1]) if original else b"\x00"
    values[field] = wrong
    with pytest.raises(ExpectationError) as caught:
        verify_nitro(
            (nitro / name).read_bytes(),
            root=_root_for(name),
            mode="replay",
            expect=Expectations(**values),
        )
    assert caught.value.reason == reason


def test_null_and_empty_fields_are_both_empty(nitro: Path) -> None:
    # aws.bin carries user_data null; aws_pcr16.bin an empty byte string.
    null_doc = (nitro / "aws.bin").read_bytes()
    empty_doc = (nitro / "aws_pcr16.bin").read_bytes()
    _, null_payload = decode_nitro(null_doc)
    assert cbor2.loads(CoseSign1.decode(null_doc).payload)["user_data"] is None
    assert cbor2.loads(CoseSign1.decode(empty_doc).payload)["user_data"] == b""
    assert null_payload.user_data == b""
    for doc in (null_doc, empty_doc):
        result = verify_nitro(
            doc, root=TrustedRoot.aws(), mode="replay", expect=Expectations(user_data=b"")
        )
        assert result.user_data == b""
        assert result.to_json()["user_data"] == ""


def test_absent_pcr16_counts_as_zero_and_other_absent_pcrs_fail(nitro: Path) -> None:
    doc = (nitro / "aws.bin").read_bytes()
    verify_nitro(
        doc, root=TrustedRoot.aws(), mode="replay", expect=Expectations(pcrs={16: bytes(48)})
    )
    with pytest.raises(ExpectationError, match="PCR20 is absent"):
        verify_nitro(
            doc, root=TrustedRoot.aws(), mode="replay", expect=Expectations(pcrs={20: bytes(48)})
        )


@pytest.mark.parametrize("name", NITRO_VECTORS)
def test_hex_base64_and_tagged_forms_verify_the_same(nitro: Path, name: str) -> None:
    raw = (nitro / name).read_bytes()
    assert read_evidence(raw) == raw
    assert read_evidence(raw.hex()) == raw
    assert read_evidence(raw.hex().upper() + "\n") == raw
    assert read_evidence("0x" + raw.hex(), encoding="hex") == raw
    assert read_evidence(base64.b64encode(raw)) == raw
    assert read_evidence(base64.urlsafe_b64encode(raw).rstrip(b"=")) == raw
    assert read_evidence(base64.encodebytes(raw), encoding="base64") == raw
    tagged = b"\xd2" + raw
    cose = CoseSign1.decode(tagged)
    assert cose.tagged
    assert cose.encode() == tagged
    assert CoseSign1.decode(raw).encode() == raw
    a = verify_nitro(raw, root=_root_for(name), mode="replay")
    b = verify_nitro(tagged, root=_root_for(name), mode="replay")
    assert a == b


def test_the_chain_cache_skips_only_instant_independent_work(
    nitro: Path, expected: dict[str, Any]
) -> None:
    verifier = NitroVerifier()
    first = (nitro / "aws_verifier_test.bin").read_bytes()
    second = (nitro / "aws_verifier_test_2.bin").read_bytes()
    verifier.verify(first, root=TrustedRoot.aws(), mode="replay")
    verifier.verify(second, root=TrustedRoot.aws(), mode="replay")
    assert (verifier.cache_misses, verifier.cache_hits) == (1, 1)
    # A cached chain is still checked at the instant: live mode today fails.
    with pytest.raises(CertificateExpiredError):
        verifier.verify(second, root=TrustedRoot.aws(), now_ms=TODAY_MS)
    # A different root is a different cache entry, and still refused.
    with pytest.raises(CertificateChainError):
        verifier.verify(second, root=TrustedRoot.mock(), mode="replay")
    assert verifier.cache_hits == 2
    verifier.clear_cache()
    verifier.verify(first, root=TrustedRoot.aws(), mode="replay")
    assert verifier.cache_misses == 3


def test_verify_dispatches_nitro_documents(nitro: Path) -> None:
    doc = (nitro / "aws.bin").read_bytes()
    result = verify(doc, mode="replay")
    assert result.root.name == "aws"
    # The default root is AWS: mock documents are never trusted implicitly.
    with pytest.raises(CertificateChainError):
        verify((nitro / "mock_custom.bin").read_bytes(), mode="replay")
    assert verify((nitro / "mock_custom.bin").read_bytes(), root=TrustedRoot.mock(), mode="replay")


def test_verify_dispatches_quotes(vectors: Path) -> None:
    quote = (vectors / "dcap" / "tdx_quote").read_bytes()
    with pytest.raises(MisuseError, match="collateral"):
        verify(quote, mode="replay")
    collateral = (vectors / "dcap" / "tdx_quote_collateral.json").read_bytes()
    with pytest.raises(MisuseError, match="instant"):
        verify(quote, mode="replay", collateral=collateral)
    issue = json.loads(json.loads(collateral)["tcb_info"])["issueDate"]
    from datetime import datetime

    at_s = int(datetime.fromisoformat(issue.replace("Z", "+00:00")).timestamp()) + 3600
    result = verify(quote, mode="replay", collateral=collateral, at_s=at_s)
    assert result.kind == "tdx"
    assert result.tcb_status == "UpToDate"
    live = verify(quote, now_ms=at_s * 1000, collateral=collateral)
    assert live.image_id == result.image_id


def _chain_by_cryptography(doc: bytes) -> list[x509.Certificate]:
    """An independent chain verification: pyca's X.509 verifier with a Nitro-tolerant policy."""
    _, payload = decode_nitro(doc)
    certs = [x509.load_der_x509_certificate(der) for der in payload.cabundle]
    leaf = x509.load_der_x509_certificate(payload.certificate)
    ca_policy = ExtensionPolicy.permit_all().require_present(
        x509.BasicConstraints, Criticality.AGNOSTIC, None
    )
    from datetime import UTC, datetime

    verifier = (
        PolicyBuilder()
        .store(Store([certs[0]]))
        .time(datetime.fromtimestamp(payload.timestamp_ms // 1000, UTC))
        .extension_policies(ca_policy=ca_policy, ee_policy=ExtensionPolicy.permit_all())
        .build_client_verifier()
    )
    return list(verifier.verify(leaf, certs[1:]).chain)


@pytest.mark.parametrize("name", [n for n in NITRO_VECTORS if n.startswith("aws")])
def test_an_independent_x509_verifier_agrees_on_the_chain(nitro: Path, name: str) -> None:
    doc = (nitro / name).read_bytes()
    chain = _chain_by_cryptography(doc)
    assert chain[-1].public_bytes(Encoding.DER) == (TrustedRoot.aws().certificate)
    verify_nitro(doc, root=TrustedRoot.aws(), mode="replay")
