"""The server's side of the attestation page, without a browser: the verdict for every shared
Nitro vector (replayed, live), a tampered document, a document of an unknown root, and text that
is not a document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reef.attestation import TrustedRoot
from reef.errors import InputError
from reef.web import known_roots, parse_evidence, server_verdict

NOW_MS = 1_900_000_000_000  # 2030: every shared document's chain has expired


def test_every_vector_replays_and_fails_live(vectors: Path) -> None:
    expected = json.loads((vectors / "nitro" / "expected.json").read_text())
    roots = known_roots(None)
    for name, facts in expected.items():
        raw = (vectors / "nitro" / name).read_bytes()
        replay = server_verdict(raw, roots=roots, mode="replay", now_ms=NOW_MS)
        assert replay["ok"], (name, replay["message"])
        assert replay["verified"]["image_id"] == facts["image_id"]
        assert replay["root"]["name"] == ("mock" if name.startswith("mock") else "aws")
        assert replay["root"]["insecure"] == name.startswith("mock")
        assert (
            replay["certificates"][0]["sha256"]
            == TrustedRoot.from_der(
                (
                    vectors
                    / "nitro"
                    / ("mock_root.der" if name.startswith("mock") else "aws_root_g1.der")
                ).read_bytes(),
                name="x",
            ).sha256
        )
        live = server_verdict(raw, roots=roots, mode="live", now_ms=NOW_MS)
        assert not live["ok"]
        assert live["reason"] in ("expired", "stale"), (name, live["reason"])
        assert live["document"]["timestamp_ms"] == facts["timestamp_ms"]


def test_tampered_and_foreign_documents_are_rejected_with_their_reason(vectors: Path) -> None:
    raw = bytearray((vectors / "nitro" / "aws.bin").read_bytes())
    raw[-200] ^= 0x01  # inside the signature
    verdict = server_verdict(bytes(raw), roots=known_roots(None), mode="replay", now_ms=NOW_MS)
    assert (verdict["ok"], verdict["reason"]) == (False, "signature")
    # Only AWS known: the mock document's chain ends at a root the server does not pin.
    mock = (vectors / "nitro" / "mock_custom.bin").read_bytes()
    only_aws = {"aws": TrustedRoot.aws()}
    verdict = server_verdict(mock, roots=only_aws, mode="replay", now_ms=NOW_MS)
    assert (verdict["ok"], verdict["reason"]) == (False, "root")
    verdict = server_verdict(b"\x84garbage", roots=only_aws, mode="replay", now_ms=NOW_MS)
    assert (verdict["ok"], verdict["reason"]) == (False, "decode")


def test_pasted_text_is_hex_or_base64(vectors: Path) -> None:
    import base64

    raw = (vectors / "nitro" / "aws.bin").read_bytes()
    assert parse_evidence(raw.hex()) == raw
    assert parse_evidence(" " + raw.hex()[:100] + "\n" + raw.hex()[100:]) == raw
    assert parse_evidence(base64.b64encode(raw).decode()) == raw
    for bad in ("", "   ", "not a document!"):
        with pytest.raises(InputError):
            parse_evidence(bad)


def _window_start(collateral: bytes) -> int:
    """An instant inside the collateral's window: an hour after its later issue date."""
    import datetime as dt

    data = json.loads(collateral)
    issued = [json.loads(data[k])["issueDate"] for k in ("tcb_info", "qe_identity")]
    latest = max(dt.datetime.fromisoformat(i.replace("Z", "+00:00")) for i in issued)
    return int(latest.timestamp()) + 3600


def test_quotes_show_their_tcb_status_with_collateral(vectors: Path) -> None:
    dcap = vectors / "dcap"
    roots = known_roots(None)
    expected = json.loads((dcap / "expected.json").read_text())
    for name, ok, status in (
        ("tdx_quote", True, "UpToDate"),
        ("sgx_quote", False, "ConfigurationAndSWHardeningNeeded"),
    ):
        collateral = (dcap / f"{name}_collateral.json").read_bytes()
        quote = (dcap / name).read_bytes()
        verdict = server_verdict(
            quote,
            roots=roots,
            mode="replay",
            now_ms=NOW_MS,
            collateral=collateral.decode(),
            at_s=_window_start(collateral),
        )
        assert (verdict["ok"], verdict["tcb_status"]) == (ok, status), verdict["message"]
        if name == "tdx_quote":
            assert verdict["kind"] == "tdx"
            assert verdict["verified"]["report"]["mr_td"] == expected[name]["mr_td"]
        else:
            assert verdict["reason"] == "tcb"
            assert verdict["advisory_ids"] == ["INTEL-SA-00289", "INTEL-SA-00615"]
    outdated = (dcap / "tdx_quote_outdated_collateral.json").read_bytes()
    verdict = server_verdict(
        (dcap / "tdx_quote_outdated").read_bytes(),
        roots=roots,
        mode="replay",
        now_ms=NOW_MS,
        collateral=outdated.decode(),
        at_s=_window_start(outdated),
    )
    assert not verdict["ok"]
    assert verdict["reason"]
    # Without collateral: told what to give.
    verdict = server_verdict(
        (dcap / "tdx_quote").read_bytes(), roots=roots, mode="live", now_ms=NOW_MS
    )
    assert (verdict["ok"], verdict["reason"]) == (False, "collateral")
