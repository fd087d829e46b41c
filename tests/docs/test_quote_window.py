"""A TDX quote verified outside its collateral's window says so in reef's words (issue 12, item 7).

dcap-qvl's own text ("TCBInfo issue date is in the future", Rust debug text such as
``CrlExpired { time: UnixTime(…) }``) used to reach the user; now the rejection names the
collateral's validity dates and the instant used, from the collateral itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from reef.attestation import verify_quote
from reef.cli import app
from reef.errors import CertificateExpiredError

# TCB info and QE identity of the published tdx_quote collateral are issued 2025-06-19 10:16:03Z
# and 10:32:27Z and next updated 2025-07-19; the CRLs bound it further.
INSIDE = 1750331763  # 2025-06-19T11:16:03Z, the instant docs/verifier.md uses
BEFORE = 1730000000  # 2024-10-27, the instant README.md used to show
AFTER = 1796524094  # 2026-12-06, "now" when the issue was filed


def _quote(vectors: Path) -> tuple[bytes, bytes]:
    dcap = vectors / "dcap"
    return (dcap / "tdx_quote").read_bytes(), (dcap / "tdx_quote_collateral.json").read_bytes()


@pytest.mark.parametrize(("at_s", "side"), [(BEFORE, "before"), (AFTER, "after")])
def test_outside_the_window_names_its_dates(vectors: Path, at_s: int, side: str) -> None:
    quote, collateral = _quote(vectors)
    with pytest.raises(CertificateExpiredError) as caught:
        verify_quote(quote, collateral=collateral, at_s=at_s)
    message = caught.value.message
    assert caught.value.reason == "expired"
    assert "2025-06-19T10:32:27Z" in message  # the latest issue date (QE identity)
    assert "TCB info 2025-06-19T10:16:03Z .. 2025-07-19T10:16:03Z" in message
    assert f"is {side} the collateral's window" in message
    assert "UnixTime" not in message
    assert "{" not in message
    assert caught.value.hint is not None
    assert "--at" in caught.value.hint


def test_inside_the_window_verifies(vectors: Path) -> None:
    quote, collateral = _quote(vectors)
    assert verify_quote(quote, collateral=collateral, at_s=INSIDE).kind == "tdx"


def test_the_cli_prints_the_window_not_rust_debug_text(vectors: Path) -> None:
    dcap = vectors / "dcap"
    args = ["attestation", "verify", str(dcap / "tdx_quote")]
    args += ["--collateral", str(dcap / "tdx_quote_collateral.json")]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 1
    assert "UnixTime" not in done.stderr
    assert "window: 2025-06-19T10:32:27Z to " in done.stderr
    ok = CliRunner().invoke(app, [*args, "--at", str(INSIDE)])
    assert ok.exit_code == 0, ok.stderr
