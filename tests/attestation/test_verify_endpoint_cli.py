"""`reef verify ENDPOINT` against a dev TEE attestation server on loopback (no enclave needed):
it fetches through the attestation client and verifies live, with the exit codes of DESIGN §5."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import AbstractContextManager

from starlette.applications import Starlette
from typer.testing import CliRunner

from reef.attestation import DevAuthority, attestation_app, image_id
from reef.cli import app
from reef.testing import wall_ms

Serve = Callable[[Starlette], AbstractContextManager[str]]
PCRS = {0: b"\x20" * 48, 1: b"\x21" * 48, 2: b"\x22" * 48}


def _server(authority: DevAuthority, *, behind_ms: int = 0) -> Starlette:
    attester = authority.attester(PCRS, clock_ms=lambda: wall_ms() - behind_ms)
    return attestation_app(attester, public_key=b"\x07" * 32)


def test_verify_endpoint_with_the_dev_root(serve: Serve, authority: DevAuthority) -> None:
    wanted = image_id(PCRS).hex()
    with serve(_server(authority)) as url:
        host_port = url.removeprefix("http://")
        ok = CliRunner().invoke(
            app, ["verify", host_port, "--root", "dev", "--image-id", wanted, "--json"]
        )
        assert ok.exit_code == 0, ok.output
        result = json.loads(ok.stdout)
        assert result["verified"] is True
        assert result["endpoint"] == f"{url}/attestation/raw"
        assert result["image_id"] == wanted
        assert result["public_key"] == "07" * 32
        assert result["insecure"] is True
        hexed = CliRunner().invoke(app, ["verify", f"{url}/attestation/hex", "--root", "dev"])
        assert hexed.exit_code == 0, hexed.output
        assert "image id not checked" in hexed.output
        # People read when the enclave attested, not only its unix milliseconds.
        assert re.search(r"\d{13} \(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\)", hexed.stdout)
        assert json.loads(ok.stdout)["timestamp_ms"] > 0  # scripts keep the number
        wrong = CliRunner().invoke(
            app, ["verify", host_port, "--root", "dev", "--image-id", "00" * 32, "--json"]
        )
        assert wrong.exit_code == 1
        assert json.loads(wrong.stdout)["reason"] == "image_id"
        untrusted = CliRunner().invoke(app, ["verify", host_port])  # AWS root by default
        assert untrusted.exit_code == 1
        assert "rejected" in untrusted.output


def test_verify_endpoint_refuses_stale_and_reports_unreachable(
    serve: Serve, authority: DevAuthority
) -> None:
    with serve(_server(authority, behind_ms=400_000)) as url:
        stale = CliRunner().invoke(app, ["verify", url, "--root", "dev", "--json"])
        assert stale.exit_code == 1
        assert json.loads(stale.stdout)["reason"] == "stale"
        older = CliRunner().invoke(app, ["verify", url, "--root", "dev", "--max-age-ms", "900000"])
        assert older.exit_code == 0, older.output
    gone = CliRunner().invoke(app, ["verify", url, "--root", "dev", "--timeout", "2"])
    assert gone.exit_code == 1
    assert "cannot fetch the attestation" in gone.output
    usage = CliRunner().invoke(app, ["verify", "ftp://x", "--root", "dev"])
    assert usage.exit_code == 2
