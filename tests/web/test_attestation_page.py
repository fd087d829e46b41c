"""The attestation page: the server's verdict and the browser's own (WebCrypto) agree on every
shared Nitro vector, replayed at its own time, live (all rejected), and on tampered documents.

The expected outcomes come from ``vectors/nitro/expected.json`` and from
:func:`reef.attestation.verify` called here directly, not from the page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from attestation.nitro_support import NITRO_VECTORS
from reef.attestation import TrustedRoot, verify
from reef.errors import AttestationError
from reef.home import ReefHome
from reef.web import Dashboard, DashboardSettings, dashboard_app


def _python_verdict(raw: bytes, name: str, mode: str) -> tuple[bool, str]:
    root = TrustedRoot.mock() if name.startswith("mock") else TrustedRoot.aws()
    try:
        verify(raw, root=root, mode=mode, now_ms=None if mode == "replay" else 1_900_000_000_000)  # type: ignore[arg-type]
    except AttestationError as exc:
        return False, exc.reason
    return True, ""


@pytest.fixture(scope="module")
def page_url(serve_in_thread: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = ReefHome(tmp_path_factory.mktemp("home"))
    dash = Dashboard(DashboardSettings(home=home))
    with serve_in_thread(dashboard_app(dash)) as url:
        yield url


def _verify_in_page(page: Any, document: str, mode: str) -> dict[str, Any]:
    page.fill("#document", document)
    page.fill("#endpoint", "")
    page.select_option("#mode", mode)
    page.click("#verify")
    page.wait_for_selector("#browser-verdict[data-done='1']", timeout=20_000)
    out = {}
    for side in ("server", "browser"):
        badge = page.locator(f"#{side}-verdict [data-verdict]").first
        out[side] = (badge.get_attribute("data-verdict"), badge.get_attribute("data-reason") or "")
    out["agree"] = page.locator("#agree").count() == 1
    return out


def test_both_verdicts_agree_on_every_nitro_vector(
    browser: Any, page_url: str, vectors: Path, screenshots: Path
) -> None:
    expected = json.loads((vectors / "nitro" / "expected.json").read_text())
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{page_url}/attestation")
    for name in NITRO_VECTORS:
        raw = (vectors / "nitro" / name).read_bytes()
        # replay, at the document's own time: accepted by Python, the server and the browser
        assert _python_verdict(raw, name, "replay") == (True, "")
        seen = _verify_in_page(page, raw.hex(), "replay")
        assert seen["server"] == ("accepted", ""), name
        assert seen["browser"] == ("accepted", ""), name
        assert seen["agree"], name
        details = page.locator("#details").inner_text()
        assert expected[name]["image_id"] in details, name
        assert expected[name]["pcrs"]["0"] in details, name
        if name == "aws.bin":
            page.screenshot(path=str(screenshots / "attestation-1280.png"), full_page=True)
        # live: every shared document is rejected (expired chains, stale mocks), same reason
        seen = _verify_in_page(page, raw.hex(), "live")
        assert seen["server"][0] == seen["browser"][0] == "rejected", name
        assert seen["server"][1] == seen["browser"][1], name
        assert seen["server"][1] in ("expired", "stale"), name
    page.close()


def test_a_tampered_document_is_rejected_by_both_with_the_reason(
    browser: Any, page_url: str, vectors: Path, screenshots: Path
) -> None:
    raw = bytearray((vectors / "nitro" / "aws.bin").read_bytes())
    # One byte inside the signed payload (PCR0's value) flipped.
    pcr0 = bytes.fromhex(
        json.loads((vectors / "nitro" / "expected.json").read_text())["aws.bin"]["pcrs"]["0"]
    )
    at = bytes(raw).index(pcr0) + 5
    raw[at] ^= 0x01
    assert _python_verdict(bytes(raw), "aws.bin", "replay") == (False, "signature")
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{page_url}/attestation")
    import base64

    seen = _verify_in_page(page, base64.b64encode(bytes(raw)).decode(), "replay")
    assert seen["server"] == ("rejected", "signature")
    assert seen["browser"] == ("rejected", "signature")
    assert seen["agree"]
    page.screenshot(path=str(screenshots / "attestation-tampered-390.png"), full_page=True)
    # A document from another root: the mock document checked as if AWS were the only root is
    # not possible from the page (it knows the mock root), so flip a byte of the root's key.
    page.close()


def test_a_document_dated_past_any_calendar_still_shows_its_details(
    browser: Any, page_url: str, vectors: Path
) -> None:
    # A hostile endpoint answers a document whose payload says timestamp 2**62 ms. Python
    # rejected its signature, the browser called it undecodable (a CBOR integer past 2**53), so
    # the verdicts differed; and the page threw a RangeError (toISOString of a date past year
    # 275 760) and left the document's details blank.
    import cbor2

    cose = cbor2.loads((vectors / "nitro" / "aws.bin").read_bytes())
    payload = cbor2.loads(cose[2])
    payload["timestamp"] = 2**62
    raw = cbor2.dumps([cose[0], cose[1], cbor2.dumps(payload), cose[3]])
    assert _python_verdict(raw, "aws.bin", "replay") == (False, "signature")
    page = browser.new_page()
    page.goto(f"{page_url}/attestation")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    seen = _verify_in_page(page, raw.hex(), "replay")
    assert seen["server"] == seen["browser"] == ("rejected", "signature")
    assert seen["agree"]  # the browser read the uint64 as Python does, not as "decode"
    page.wait_for_selector("#details dl")
    details = page.locator("#details").inner_text()
    assert "past any calendar date" in details
    assert "PCR0" in details
    assert errors == []
    page.close()


def test_garbage_is_an_error_not_a_verdict(browser: Any, page_url: str) -> None:
    page = browser.new_page()
    page.goto(f"{page_url}/attestation")
    page.fill("#document", "not a document!")
    page.click("#verify")
    page.wait_for_selector("#browser-verdict[data-done='1']")
    assert page.locator("#server-verdict [data-verdict='error']").count() == 1
    page.close()


def test_the_browsers_cbor_and_x509_parsers_match_python(
    browser: Any, page_url: str, vectors: Path
) -> None:
    """nitro.js's own CBOR decoder and DER walker against cbor2 and cryptography (independent
    implementations), on values of every kind Nitro documents use and on the shared roots."""
    import cbor2
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    page = browser.new_page()
    page.goto(f"{page_url}/attestation")
    values: list[Any] = [
        0,
        23,
        24,
        255,
        256,
        65535,
        65536,
        2**32,
        2**53 - 1,
        -1,
        -25,
        -(2**31),
        "",
        "module_id ✓",
        b"",
        bytes(range(200)),
        [],
        [1, [2, [3]]],
        {"pcrs": {0: b"\x00" * 48, 16: b"\x01" * 48}, "nonce": None, "ok": True, "no": False},
    ]

    def plain(value: Any) -> Any:  # what the JS side reports back, as JSON
        if isinstance(value, bytes):
            return {"bytes": value.hex()}
        if isinstance(value, dict):
            return {"map": [[plain(k), plain(v)] for k, v in value.items()]}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    script = """hex => {
      const plain = v => v instanceof Uint8Array ? {bytes: reefNitro.hex(v)}
        : v instanceof Map ? {map: [...v].map(([k, x]) => [plain(k), plain(x)])}
        : Array.isArray(v) ? v.map(plain) : v;
      return plain(reefNitro.cborDecode(reefNitro.fromHex(hex)));
    }"""
    for value in values:
        assert page.evaluate(script, cbor2.dumps(value).hex()) == plain(value), value
    # Malformed input is a decode rejection, never a crash or a wrong value.
    for bad in ("", "18", "5f", "a1", "820102ff", "f97e00", "9b" + "ff" * 8):
        reason = page.evaluate(
            "hex => { try { reefNitro.cborDecode(reefNitro.fromHex(hex)); return 'ok' }"
            " catch (e) { return e.reason } }",
            bad,
        )
        assert reason == "decode", bad

    for name in ("aws_root_g1.der", "mock_root.der"):
        der = (vectors / "nitro" / name).read_bytes()
        cert = x509.load_der_x509_certificate(der)
        parsed = page.evaluate(
            "hex => { const c = reefNitro.parseCertificate(reefNitro.fromHex(hex), 'root');"
            " return {nb: c.notBefore, na: c.notAfter, curve: c.curve.name, hash: c.hash,"
            " point: reefNitro.hex(c.point), subject: reefNitro.hex(c.subject)} }",
            der.hex(),
        )
        assert parsed["nb"] == int(cert.not_valid_before_utc.timestamp()) * 1000, name
        assert parsed["na"] == int(cert.not_valid_after_utc.timestamp()) * 1000, name
        assert parsed["curve"] == "P-384"
        assert parsed["hash"] == "SHA-384"
        point = cert.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        assert parsed["point"] == point.hex(), name
        assert parsed["subject"] == cert.subject.public_bytes().hex(), name
    page.close()


def test_a_tdx_quote_shows_its_tcb_status_from_the_server(
    browser: Any, page_url: str, vectors: Path, screenshots: Path
) -> None:
    import datetime as dt

    dcap = vectors / "dcap"
    collateral = (dcap / "tdx_quote_collateral.json").read_text()
    data = json.loads(collateral)
    issued = [json.loads(data[k])["issueDate"] for k in ("tcb_info", "qe_identity")]
    at = int(max(dt.datetime.fromisoformat(i.replace("Z", "+00:00")) for i in issued).timestamp())
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{page_url}/attestation")
    page.click("details summary")
    page.fill("#collateral", collateral)
    page.fill("#at", str(at + 3600))
    page.fill("#document", (dcap / "tdx_quote").read_bytes().hex())
    page.click("#verify")
    page.wait_for_selector("#browser-verdict[data-done='1']", timeout=20_000)
    assert (
        page.locator("#server-verdict [data-verdict]").first.get_attribute("data-verdict")
        == "accepted"
    )
    assert page.locator("#tcb-status").inner_text() == "UpToDate"
    assert page.locator("#browser-verdict [data-verdict='n/a']").count() == 1
    page.screenshot(path=str(screenshots / "attestation-tdx-1280.png"), full_page=True)
    page.close()


@pytest.mark.parametrize("body", [b"[1, 2]", b"{not json", b'"text"'])
def test_a_body_that_is_not_a_json_object_is_refused_as_every_api_route_refuses_it(
    page_url: str, body: bytes
) -> None:
    import httpx

    answer = httpx.post(f"{page_url}/api/attestation/verify", content=body, timeout=30)
    assert answer.status_code == 400
    assert answer.json()["error"] == "send a JSON object"


def test_a_refused_request_says_what_is_wrong_and_what_to_do(page_url: str) -> None:
    import httpx

    url = f"{page_url}/api/attestation/verify"
    empty = httpx.post(url, json={"document": ""}, timeout=30)
    assert empty.status_code == 400
    assert empty.json() == {
        "error": "no document given",
        "hint": "paste hex or base64, or drop a file",
    }
    mode = httpx.post(url, json={"document": "00", "mode": "sometime"}, timeout=30)
    assert mode.status_code == 400
    assert mode.json()["error"] == "mode must be live or replay"
