"""TDX and SGX quotes: the public dcap-qvl and go-tdx-guest samples, checked against the statuses
the vectors README states and against an independent byte-offset parse of the reports."""

from __future__ import annotations

import calendar
import contextlib
import dataclasses
import hashlib
import json
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reef.attestation._model import Expectations
from reef.attestation._quote import (
    INTEL_ROOT_SHA256,
    TCB_STATUSES,
    intel_root,
    parse_quote,
    verify_quote,
)
from reef.errors import (
    AttestationError,
    CertificateChainError,
    CertificateExpiredError,
    DecodeError,
    ExpectationError,
    InputError,
    ReefError,
    SignatureError,
    TcbStatusError,
)

GOTDX = (
    "gotdx_cos-113-tdx-quote.dat",
    "gotdx_quote_v5_sample.dat",
    "gotdx_tdx_prod_quote_SPR_E4.dat",
)
HEADER = 48
TD10_BODY = 584


def _utc(text: str) -> int:
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


class Sample:
    """A quote, its collateral and the collateral's validity window (from its TCB info)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.quote = (folder / name).read_bytes()
        self.collateral_bytes = (folder / f"{name}_collateral.json").read_bytes()
        collateral = json.loads(self.collateral_bytes)
        tcb_info = json.loads(collateral["tcb_info"])
        qe_identity = json.loads(collateral["qe_identity"])
        # Inside the window every piece of collateral is valid: after the later issue date,
        # before the earliest next update (TCB info, QE identity and both CRLs).
        crls = [
            x509.load_der_x509_crl(bytes.fromhex(collateral[name]))
            for name in ("root_ca_crl", "pck_crl")
        ]
        self.not_before = max(_utc(tcb_info["issueDate"]), _utc(qe_identity["issueDate"]))
        self.not_after = min(
            _utc(tcb_info["nextUpdate"]),
            _utc(qe_identity["nextUpdate"]),
            *(int(crl.next_update_utc.timestamp()) for crl in crls if crl.next_update_utc),
        )
        self.at = self.not_before + 3600

    @property
    def collateral(self) -> dict[str, Any]:
        return dict(json.loads(self.collateral_bytes))


@pytest.fixture(scope="module")
def dcap(vectors: Path) -> Path:
    return vectors / "dcap"


@pytest.fixture(scope="module")
def tdx(dcap: Path) -> Sample:
    return Sample(dcap, "tdx_quote")


@pytest.fixture(scope="module")
def sgx(dcap: Path) -> Sample:
    return Sample(dcap, "sgx_quote")


@pytest.fixture(scope="module")
def outdated(dcap: Path) -> Sample:
    return Sample(dcap, "tdx_quote_outdated")


def _td_body(quote: bytes) -> bytes:
    """The TD report, located by hand from the quote layout (independent of dcap-qvl)."""
    version = struct.unpack_from("<H", quote, 0)[0]
    if version == 4:
        return quote[HEADER : HEADER + TD10_BODY]
    assert version == 5
    body_type, body_size = struct.unpack_from("<HI", quote, HEADER)
    assert body_type in (2, 3)  # TD report 1.0 or 1.5
    return quote[HEADER + 6 : HEADER + 6 + body_size]


def _td_fields(quote: bytes) -> dict[str, bytes]:
    body = _td_body(quote)
    # TDREPORT: tee_tcb_svn 16, mr_seam 48, mr_signer_seam 48, seam_attributes 8,
    # td_attributes 8, xfam 8, then mr_td, mr_config_id, mr_owner, mr_owner_config,
    # rtmr0..3 (48 each), report_data 64.
    offset = 16 + 48 + 48 + 8 + 8 + 8
    names = ["mr_td", "mr_config_id", "mr_owner", "mr_owner_config", "rt_mr0", "rt_mr1"]
    names += ["rt_mr2", "rt_mr3"]
    fields = {}
    for name in names:
        fields[name] = body[offset : offset + 48]
        offset += 48
    fields["report_data"] = body[offset : offset + 64]
    return fields


# --- verification with collateral ---------------------------------------------------------------


def test_tdx_quote_is_up_to_date(tdx: Sample, dcap: Path) -> None:
    result = verify_quote(tdx.quote, collateral=tdx.collateral_bytes, at_s=tdx.at)
    expected = json.loads((dcap / "expected.json").read_text())["tdx_quote"]
    independent = _td_fields(tdx.quote)

    assert result.kind == "tdx"
    assert result.tcb_status == "UpToDate"
    assert result.advisory_ids == ()
    assert result.report["mr_td"].hex() == expected["mr_td"]  # type: ignore[union-attr]
    assert result.user_data.hex() == expected["report_data"]
    assert result.user_data == independent["report_data"]
    assert result.pcrs == {
        0: independent["mr_td"],
        1: independent["rt_mr0"],
        2: independent["rt_mr1"],
        3: independent["rt_mr2"],
        4: independent["rt_mr3"],
    }
    assert (
        result.image_id
        == hashlib.sha256(
            independent["mr_td"]
            + independent["rt_mr0"]
            + independent["rt_mr1"]
            + independent["rt_mr2"]
        ).digest()
    )
    assert result.public_key == b""
    assert result.nonce == b""
    assert result.timestamp_ms == 0  # a quote carries no time of its own
    assert result.report["verified_at_s"] == tdx.at
    assert result.report["fmspc"] == "b0c06f000000"
    assert result.root.name == "intel"
    assert result.root.sha256 == INTEL_ROOT_SHA256
    assert result.mode == "replay"
    assert not result.insecure
    as_json = result.to_json()
    assert as_json["kind"] == "tdx"
    assert as_json["tcb_status"] == "UpToDate"
    assert as_json["pcrs"]["0"] == expected["mr_td"]
    json.dumps(as_json)  # the CLI shape is plain JSON


def test_collateral_as_text_or_mapping(tdx: Sample) -> None:
    by_bytes = verify_quote(tdx.quote, collateral=tdx.collateral_bytes, at_s=tdx.at)
    by_text = verify_quote(tdx.quote, collateral=tdx.collateral_bytes.decode(), at_s=tdx.at)
    by_map = verify_quote(tdx.quote, collateral=tdx.collateral, at_s=tdx.at)
    assert by_bytes == by_text == by_map


def test_sgx_quote_needs_configuration_and_hardening(sgx: Sample) -> None:
    with pytest.raises(TcbStatusError) as caught:
        verify_quote(sgx.quote, collateral=sgx.collateral_bytes, at_s=sgx.at)
    message = str(caught.value)
    assert "ConfigurationAndSWHardeningNeeded" in message
    assert "INTEL-SA-00289" in message
    assert "INTEL-SA-00615" in message
    assert caught.value.reason == "tcb"

    result = verify_quote(
        sgx.quote,
        collateral=sgx.collateral_bytes,
        at_s=sgx.at,
        accept=("UpToDate", "ConfigurationAndSWHardeningNeeded"),
    )
    assert result.kind == "sgx"
    assert result.tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert result.advisory_ids == ("INTEL-SA-00289", "INTEL-SA-00615")
    # SGX report: MRENCLAVE at 64, MRSIGNER at 128, report data at 320 (after the 48-byte header).
    body = sgx.quote[HEADER : HEADER + 384]
    assert result.image_id == body[64:96] == result.pcrs[0]
    assert result.pcrs[1] == body[128:160]
    assert result.user_data == body[320:384]


def test_outdated_tdx_quote_is_rejected_inside_its_window(outdated: Sample, dcap: Path) -> None:
    for at in (outdated.at, outdated.not_after - 60):
        with pytest.raises(TcbStatusError, match="No matching TCB level"):
            verify_quote(
                outdated.quote,
                collateral=outdated.collateral_bytes,
                at_s=at,
                accept=TCB_STATUSES[:-1],  # every status but Revoked
            )
    parsed = parse_quote(outdated.quote)
    expected = json.loads((dcap / "expected.json").read_text())["tdx_quote_outdated"]
    assert parsed.version == 5
    assert parsed.pcrs[0].hex() == expected["mr_td"]
    assert parsed.report_data.hex() == expected["report_data"]


def test_another_v5_quote_of_the_same_fmspc_is_up_to_date(outdated: Sample, dcap: Path) -> None:
    # go-tdx-guest's v5 sample has the FMSPC of the outdated sample, and a newer TCB: the same
    # collateral rates it UpToDate. Both quotes together show TCB matching, not just plumbing.
    quote = (dcap / "gotdx_quote_v5_sample.dat").read_bytes()
    result = verify_quote(quote, collateral=outdated.collateral_bytes, at_s=outdated.at)
    assert result.tcb_status == "UpToDate"
    assert result.pcrs[0] == _td_fields(quote)["mr_td"]


@pytest.mark.parametrize("shift", [-3 * 86400, -1])
def test_before_the_collateral_window_is_rejected(tdx: Sample, shift: int) -> None:
    with pytest.raises(CertificateExpiredError, match="issue date is in the future") as caught:
        verify_quote(tdx.quote, collateral=tdx.collateral_bytes, at_s=tdx.not_before + shift)
    assert caught.value.reason == "expired"


@pytest.mark.parametrize("shift", [1, 40 * 86400])
def test_after_the_collateral_window_is_rejected(tdx: Sample, shift: int) -> None:
    with pytest.raises(CertificateExpiredError, match="not valid at the instant used"):
        verify_quote(tdx.quote, collateral=tdx.collateral_bytes, at_s=tdx.not_after + shift)


def test_long_after_the_window_the_crls_have_expired(tdx: Sample) -> None:
    with pytest.raises(CertificateExpiredError):
        verify_quote(tdx.quote, collateral=tdx.collateral_bytes, at_s=_utc("2026-11-25T00:00:00Z"))


def test_every_signed_byte_of_the_tdx_quote_is_protected(tdx: Sample) -> None:
    signed = HEADER + TD10_BODY  # the header and the TD report are what the QE signature covers
    for position in range(signed):
        tampered = bytearray(tdx.quote)
        tampered[position] ^= 0x01
        with pytest.raises(AttestationError) as caught:
            verify_quote(bytes(tampered), collateral=tdx.collateral_bytes, at_s=tdx.at)
        assert caught.value.reason in ("signature", "decode", "chain", "collateral"), position


def test_tampered_report_data_and_signature(tdx: Sample, sgx: Sample) -> None:
    report_data = HEADER + TD10_BODY - 64
    tampered = bytearray(tdx.quote)
    tampered[report_data] ^= 0xFF
    with pytest.raises(SignatureError, match="ISV enclave report signature is invalid"):
        verify_quote(bytes(tampered), collateral=tdx.collateral_bytes, at_s=tdx.at)
    # Byte 0 of the quote signature (after the 4-byte signature length).
    tampered = bytearray(sgx.quote)
    tampered[HEADER + 384 + 4] ^= 0x01
    with pytest.raises(SignatureError):
        verify_quote(bytes(tampered), collateral=sgx.collateral_bytes, at_s=sgx.at)


def test_truncated_quotes_are_decode_errors(tdx: Sample) -> None:
    for length in (0, 1, 47, 48, 300, HEADER + TD10_BODY, 2000, len(tdx.quote) // 2):
        with pytest.raises((DecodeError, CertificateChainError)):
            verify_quote(tdx.quote[:length], collateral=tdx.collateral_bytes, at_s=tdx.at)


def test_collateral_of_another_platform_is_refused(
    tdx: Sample, sgx: Sample, outdated: Sample
) -> None:
    with pytest.raises(AttestationError) as caught:
        verify_quote(tdx.quote, collateral=outdated.collateral_bytes, at_s=outdated.at)
    assert caught.value.reason == "collateral"
    assert "Fmspc mismatch" in str(caught.value)
    with pytest.raises(AttestationError) as caught:
        verify_quote(tdx.quote, collateral=sgx.collateral_bytes, at_s=sgx.at)
    assert caught.value.reason == "collateral"


@pytest.mark.parametrize(
    "collateral",
    [b"not json", b"{}", "[1, 2]", {"tcb_info": "x"}, b"\xff\xfe", 42],
)
def test_malformed_collateral_is_an_input_error(tdx: Sample, collateral: Any) -> None:
    with pytest.raises(InputError, match="collateral"):
        verify_quote(tdx.quote, collateral=collateral, at_s=tdx.at)


def test_expectations(tdx: Sample) -> None:
    fields = _td_fields(tdx.quote)
    result = verify_quote(
        tdx.quote,
        collateral=tdx.collateral_bytes,
        at_s=tdx.at,
        expect=Expectations(
            pcrs={0: fields["mr_td"], 4: fields["rt_mr3"]}, user_data=fields["report_data"]
        ),
    )
    verify_quote(
        tdx.quote,
        collateral=tdx.collateral_bytes,
        at_s=tdx.at,
        expect=Expectations(image_id=result.image_id, public_key=b"", nonce=b""),
    )
    wrong: list[tuple[Expectations, str]] = [
        (Expectations(image_id=bytes(32)), "image_id"),
        (Expectations(pcrs={1: bytes(48)}), "pcr"),
        (Expectations(pcrs={5: bytes(48)}), "pcr"),  # TDX has no measurement register 5
        (Expectations(user_data=fields["report_data"][:32]), "user_data"),
        (Expectations(public_key=b"\x01"), "public_key"),
        (Expectations(nonce=b"\x01"), "nonce"),
    ]
    for expect, reason in wrong:
        with pytest.raises(ExpectationError) as caught:
            verify_quote(tdx.quote, collateral=tdx.collateral_bytes, at_s=tdx.at, expect=expect)
        assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"at_s": -1}, "at_s"),
        ({"at_s": True}, "at_s"),
        ({"at_s": 99_999_999_999_999}, "at_s"),  # year 3 million: a traceback from datetime
        ({"accept": ("UpToDate", "Fine")}, "unknown TCB status 'Fine'"),
        ({"accept": ()}, "no TCB status"),
        ({"accept": ("UpToDate", "Revoked")}, "never accepted"),
    ],
)
def test_bad_arguments(tdx: Sample, kwargs: dict[str, Any], needle: str) -> None:
    arguments: dict[str, Any] = {"collateral": tdx.collateral_bytes, "at_s": tdx.at, **kwargs}
    with pytest.raises(InputError, match=needle):
        verify_quote(tdx.quote, **arguments)


def test_accept_may_be_a_single_status(tdx: Sample) -> None:
    result = verify_quote(
        tdx.quote, collateral=tdx.collateral_bytes, at_s=tdx.at, accept="UpToDate"
    )
    assert result.tcb_status == "UpToDate"


def test_a_nitro_document_is_not_a_quote(vectors: Path, tdx: Sample) -> None:
    document = (vectors / "nitro" / "aws.bin").read_bytes()
    with pytest.raises(DecodeError):
        parse_quote(document)
    with pytest.raises(DecodeError):
        verify_quote(document, collateral=tdx.collateral_bytes, at_s=tdx.at)


# --- parse-only path ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOTDX)
def test_gotdx_quotes_parse_and_chain_to_the_intel_root(dcap: Path, name: str) -> None:
    quote = (dcap / name).read_bytes()
    parsed = parse_quote(quote)
    assert parsed.kind == "tdx"
    assert parsed.pcrs[0] == _td_fields(quote)["mr_td"]
    assert parsed.report_data == _td_fields(quote)["report_data"]
    assert len(parsed.pck_chain) == 3
    assert parsed.pck_chain[-1] == (dcap / "TrustedRootCA.der").read_bytes()
    parsed.verify_pck_chain()
    parsed.verify_pck_chain(at_s=_utc("2026-11-25T00:00:00Z"))
    expected = json.loads((dcap / "expected.json").read_text()).get(name)
    if expected:
        assert parsed.pcrs[0].hex() == expected["mr_td"]
        assert parsed.report_data.hex() == expected["report_data"]


def test_gotdx_fmspcs(dcap: Path) -> None:
    fmspcs = {name: parse_quote((dcap / name).read_bytes()).fmspc for name in GOTDX}
    assert fmspcs == {
        "gotdx_cos-113-tdx-quote.dat": "00806f050000",
        "gotdx_quote_v5_sample.dat": "90c06f000000",
        "gotdx_tdx_prod_quote_SPR_E4.dat": "50806f000000",
    }


def test_pck_chain_validity_instant(dcap: Path) -> None:
    parsed = parse_quote((dcap / "gotdx_tdx_prod_quote_SPR_E4.dat").read_bytes())
    with pytest.raises(CertificateExpiredError):
        parsed.verify_pck_chain(at_s=_utc("2017-01-01T00:00:00Z"))  # before the root existed


def test_pck_chain_with_a_foreign_root_is_refused(tdx: Sample) -> None:
    parsed = parse_quote(tdx.quote)
    swapped = dataclasses.replace(parsed, pck_chain=(*parsed.pck_chain[:-1], parsed.pck_chain[0]))
    with pytest.raises(CertificateChainError, match="does not end at the Intel SGX Root CA"):
        swapped.verify_pck_chain()
    no_chain = dataclasses.replace(parsed, pck_chain=())
    with pytest.raises(CertificateChainError, match="no PCK certificate chain"):
        no_chain.verify_pck_chain()
    reversed_chain = dataclasses.replace(
        parsed, pck_chain=(parsed.pck_chain[1], parsed.pck_chain[0], parsed.pck_chain[2])
    )
    with pytest.raises(CertificateChainError, match="is not signed by"):
        reversed_chain.verify_pck_chain()


def test_the_pinned_intel_root(dcap: Path) -> None:
    root = intel_root()
    der = (dcap / "TrustedRootCA.der").read_bytes()
    assert root.certificate == der
    assert hashlib.sha256(der).hexdigest() == INTEL_ROOT_SHA256
    assert root.public_key.hex() == (
        "0ba9c4c0c0c86193a3fe23d6b02cda10a8bbd4e88e48b4458561a36e705525f5"
        "67918e2edc88e40d860bd0cc4ee26aacc988e505a953558c453f6b0904ae7394"
    )
    assert not root.insecure


# --- error translation and fuzzing ----------------------------------------------------------------


def test_revoked_status_is_a_tcb_error() -> None:
    from reef.attestation._quote import _translate

    error = _translate("Verification failed: TCB status is invalid: Revoked", what="verify")
    assert isinstance(error, TcbStatusError)
    assert "Revoked" in str(error)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzzed_quotes_raise_only_reef_errors(
    tdx: Sample, sgx: Sample, data: st.DataObject
) -> None:
    sample = data.draw(st.sampled_from([tdx, sgx]))
    quote = bytearray(sample.quote)
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(quote) - 1))
        choice = data.draw(st.integers(0, 2))
        if choice == 0:
            quote[position] = data.draw(st.integers(0, 255))
        elif choice == 1:
            del quote[position:]
        else:
            quote[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        if not quote:
            break
    with contextlib.suppress(ReefError):
        parse_quote(bytes(quote))
    with contextlib.suppress(ReefError):
        verify_quote(bytes(quote), collateral=sample.collateral_bytes, at_s=sample.at)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=700))
def test_random_bytes_are_decode_errors(blob: bytes) -> None:
    with pytest.raises(DecodeError):
        parse_quote(blob)
