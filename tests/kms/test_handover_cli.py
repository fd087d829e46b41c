"""The upgrade procedure of docs/kms.md as an operator runs it: `reef kms root serve` processes for
the old and the new root (dev TEE sealing, attestations from a custom attestation server of each
image), `reef kms handover` by the admin, `reef kms info` listing it, and the new root started
with --inherit-from answering exactly as the old one. Also the serve flags' usage errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kms.test_cli import _ready, _reef, _stop
from reef.attestation import DevAuthority, custom_attestation_app, image_id
from reef.cli import app
from reef.crypto import Secp256k1PrivateKey
from reef.testing import wall_ms

OLD_PCRS = {0: b"\xa0" * 48, 1: b"\xa1" * 48, 2: b"\xa2" * 48}
NEW_PCRS = {0: b"\xa0" * 48, 1: b"\xb1" * 48, 2: b"\xa2" * 48}
OLD, NEW = image_id(OLD_PCRS).hex(), image_id(NEW_PCRS).hex()
APP = "5a6693267fd7a7cc38d551d5a27dbf771f0fba0018094ae8f12db21b2e8a4647"
ADMIN = Secp256k1PrivateKey(hashlib.sha256(b"reef kms handover admin").digest())

runner = CliRunner()


def _kms(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["kms", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def _serve_args(image: str, state: Path, attestation_url: str, *extra: str) -> list[str]:
    return [
        "kms", "root", "serve", "--trust", "dev", "--sealer", "dev-home", "--image-id", image,
        "--state-dir", str(state), "--attestation-url", attestation_url + "/attestation/raw",
        "--admin", ADMIN.public_key.address, "--scallop-port", "0", "--public-port", "0", *extra,
    ]  # fmt: skip


def _pubkey(ready: dict[str, Any], *, version: str | None = None) -> str:
    args = [
        "pubkey", "--kms", str(ready["public_url"]), "--image-id", APP, "--path", "wallet",
        "--type", "secp256k1", "--trust", "dev", "--json",
    ]  # fmt: skip
    code, out, err = _kms(*args, *(["--version", version] if version else []))
    assert code == 0, err
    key: str = json.loads(out)["public_key"]
    return key


@pytest.mark.slow
def test_the_upgrade_procedure_keeps_every_key(
    reef_home: Path, tmp_path: Path, authority: DevAuthority, serve_thread: Any
) -> None:
    old_attester = authority.attester(OLD_PCRS, clock_ms=wall_ms)
    new_attester = authority.attester(NEW_PCRS, clock_ms=wall_ms)
    with (
        serve_thread(custom_attestation_app(old_attester)) as old_url,
        serve_thread(custom_attestation_app(new_attester)) as new_url,
    ):
        old = _reef(*_serve_args(OLD, tmp_path / "old", old_url), home=reef_home)
        new_process = None
        try:
            old_ready = _ready(old)
            code, _, err = _kms(
                "rotate", "--kms", str(old_ready["public_url"]), "--admin-key", "-",
                stdin=ADMIN.secret.hex(),
            )  # fmt: skip
            assert code == 0, err
            inherit = ["--inherit-from", str(old_ready["scallop"]), "--inherit-image", OLD]

            # Not authorised yet: the new root refuses to start, and writes nothing.
            refused = _reef(*_serve_args(NEW, tmp_path / "new", new_url, *inherit), home=reef_home)
            _, err = refused.communicate(timeout=60)
            assert refused.returncode == 1, err
            assert f"image {NEW} is not authorised" in err
            assert "reef kms handover" in err
            assert not (tmp_path / "new" / "root-seeds.sealed").exists()

            handover = [
                "handover", "--kms", str(old_ready["public_url"]), "--to", NEW,
                "--admin-key", "-", "--expires", "30m", "--json", "--trust", "dev",
            ]  # fmt: skip
            # The admin checks whom it signs for: another image id is not this root.
            code, _, err = _kms(*handover, "--kms-image-id", NEW, stdin=ADMIN.secret.hex())
            assert code == 1
            assert "KMS attestation rejected" in err
            code, out, err = _kms(*handover, "--kms-image-id", OLD, stdin=ADMIN.secret.hex())
            assert code == 0, err
            assert json.loads(out)["image_id"] == NEW
            assert f"attested by KMS image {OLD}" in err
            assert "--inherit-from" in err
            code, out, err = _kms("info", "--kms", str(old_ready["public_url"]), "--trust", "dev")
            assert code == 0, err
            assert "handovers" in out
            assert f"image{NEW}until" in "".join(out.split())  # the table may wrap it
            # Withdrawn and given again (the admin's second thoughts): the root lists it again.
            code, out, err = _kms(*handover, "--revoke", stdin=ADMIN.secret.hex())
            assert code == 0, err
            assert json.loads(out)["revoked"] is True
            assert "may no longer inherit" in err
            code, out, err = _kms("info", "--kms", str(old_ready["public_url"]), "--trust", "dev")
            assert "handovers" not in out
            code, out, err = _kms(*handover, stdin=ADMIN.secret.hex())
            assert code == 0, err

            new_process = _reef(
                *_serve_args(NEW, tmp_path / "new", new_url, *inherit), home=reef_home
            )
            new_ready = _ready(new_process)
            assert new_ready["version"] == 1  # the old root's current version, after its rotation
            for version in (None, "0"):
                assert _pubkey(new_ready, version=version) == _pubkey(old_ready, version=version)
            infos = []
            for ready, image in ((old_ready, OLD), (new_ready, NEW)):
                code, out, err = _kms(
                    "info", "--kms", str(ready["public_url"]), "--trust", "dev",
                    "--kms-image-id", image, "--json",
                )  # fmt: skip
                assert code == 0, err
                infos.append(json.loads(out))
            assert infos[1]["versions"] == infos[0]["versions"]  # every version's keys
            assert len(infos[1]["versions"]) == 2
            current = infos[0]["versions"][1]
            assert new_ready["signing_key"] == current["signing_key"]
            assert new_ready["scallop_key"] == current["scallop_key"]
        finally:
            logs = _stop(old)
            if new_process is not None:
                _, new_err = _stop(new_process)
                assert "inherited root seed versions 0, 1 (current 1)" in new_err
        assert "handing this root's seeds (versions 0, 1)" in logs[1]

        # Restarted with the old root gone, the new root starts from its own sealed copy.
        again = _reef(*_serve_args(NEW, tmp_path / "new", new_url, *inherit), home=reef_home)
        assert _ready(again)["signing_key"] == current["signing_key"]
        _, err = _stop(again)
        assert "not asking again" in err


def test_serve_flags_for_inheriting(reef_home: Path, tmp_path: Path) -> None:
    base = ["root", "serve", "--trust", "dev", "--sealer", "dev-home", "--image-id", NEW]
    base += ["--state-dir", str(tmp_path / "new")]
    code, _, err = _kms(*base, "--inherit-image", OLD)
    assert code == 2
    assert "go with --inherit-from" in err
    code, _, err = _kms(*base, "--inherit-from", "no-port", "--inherit-image", OLD)
    assert code == 2
    assert "--inherit-from must be HOST:PORT" in err
    code, _, err = _kms(*base, "--inherit-from", "127.0.0.1:1")
    assert code == 2
    assert "--inherit-image" in err
    code, _, err = _kms(*base, "--inherit-from", "127.0.0.1:1", "--inherit-image", "ab")
    assert code == 2
    assert "--inherit-image" in err
    code, _, err = _kms(*base, "--inherit-from", "127.0.0.1:1", "--inherit-image", OLD)
    assert code == 1
    assert "needs this root's own attestation" in err
    assert not (tmp_path / "new" / "root-seeds.sealed").exists()


def test_handover_command_usage_errors(reef_home: Path) -> None:
    code, _, err = _kms("handover", "--kms", "http://127.0.0.1:1", "--to", "ab", "--admin-key", "-")
    assert code == 2
    assert "--to" in err
    code, _, err = _kms(
        "handover", "--kms", "http://127.0.0.1:1", "--to", NEW, "--admin-key", "-",
        "--expires", "soon", stdin=ADMIN.secret.hex(),
    )  # fmt: skip
    assert code == 2
    assert "not a duration" in err
