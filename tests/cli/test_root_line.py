"""The ``root`` row of ``reef attestation mint`` and ``verify`` labels the root's public key.

It read ``root  dev b10a58…6b`` (wrapped over three lines at 80 columns): a newcomer could not
tell what the hex after the root's name was.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from reef.cli import app

PCR0 = "0=" + "11" * 48


WIDE = {"COLUMNS": "400"}  # one row per line: a key wrapped at 80 columns is cut by spaces


def _rows(text: str) -> str:
    """The table's text as one line, single-spaced."""
    return " ".join(text.split())


def test_mint_and_verify_name_the_root_and_label_its_key(tmp_path: Path) -> None:
    doc = tmp_path / "dev.doc"
    runner = CliRunner()
    minted = runner.invoke(app, ["attestation", "mint", "--pcr", PCR0, "-o", str(doc), "--json"])
    assert minted.exit_code == 0, minted.output
    key = json.loads(minted.stdout)["root"]["public_key"]
    assert len(key) == 192  # P-384: x and y, hex

    shown = runner.invoke(app, ["attestation", "mint", "--pcr", PCR0, "-o", str(doc)], env=WIDE)
    assert shown.exit_code == 0, shown.output
    assert f"root dev (public key {key})" in _rows(shown.stdout)

    verified = runner.invoke(app, ["attestation", "verify", str(doc), "--root", "dev"], env=WIDE)
    assert verified.exit_code == 0, verified.output
    assert f"root dev (public key {key})" in _rows(verified.stdout)
    assert "verified nitro, live mode, root dev" in _rows(verified.stdout)
