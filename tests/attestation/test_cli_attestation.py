"""`reef attestation verify|inspect|mint|root` through Typer's CliRunner (and one real process)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from attestation.nitro_support import RESULT_KEYS
from reef.cli import app


def run(*args: str, input: bytes | None = None) -> Any:
    return CliRunner().invoke(app, ["attestation", *args], input=input)


@pytest.fixture(scope="module")
def nitro(vectors: Path) -> Path:
    return vectors / "nitro"


@pytest.fixture(scope="module")
def expected(nitro: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((nitro / "expected.json").read_text())
    return data


@pytest.mark.parametrize("name", ["aws.bin", "aws_pcr16.bin", "aws_debug_nonce.bin"])
def test_verify_replay_json_prints_exactly_the_result(
    nitro: Path, expected: dict[str, Any], name: str
) -> None:
    result = run("verify", str(nitro / name), "--replay", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    want = expected[name]
    assert tuple(data) == RESULT_KEYS
    assert data["image_id"] == want["image_id"]
    assert data["pcrs"] == want["pcrs"]
    assert data["timestamp_ms"] == want["timestamp_ms"]
    assert data["module_id"] == want["module_id"]
    assert data["public_key"] == want["public_key"]
    assert data["user_data"] == want["user_data"]
    assert data["nonce"] == want["nonce"]
    assert data["root"] == {"name": "aws", "public_key": want["root_public_key"]}
    assert data["mode"] == "replay"
    assert result.stderr == ""


def test_verify_live_rejects_an_expired_document(nitro: Path) -> None:
    result = run("verify", str(nitro / "aws.bin"))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("attestation rejected: expired: ")
    assert "--replay" in result.stderr


def test_verify_live_at_a_chosen_instant(nitro: Path, expected: dict[str, Any]) -> None:
    at = expected["aws.bin"]["timestamp_ms"] // 1000 + 10
    ok = run("verify", str(nitro / "aws.bin"), "--at", str(at), "--json")
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["mode"] == "live"
    stale = run("verify", str(nitro / "aws.bin"), "--at", str(at + 600))
    assert stale.exit_code == 1
    assert stale.stderr.startswith("attestation rejected: stale: ")
    longer = run("verify", str(nitro / "aws.bin"), "--at", str(at + 600), "--max-age", "900")
    assert longer.exit_code == 0, longer.stderr


def test_replay_checks_freshness_only_with_max_age(nitro: Path, expected: dict[str, Any]) -> None:
    at = expected["aws.bin"]["timestamp_ms"] // 1000 + 600
    doc = str(nitro / "aws.bin")
    assert run("verify", doc, "--replay", "--at", str(at)).exit_code == 0
    stale = run("verify", doc, "--replay", "--at", str(at), "--max-age", "300")
    assert stale.exit_code == 1
    assert "stale" in stale.stderr


def test_verify_human_output(nitro: Path, expected: dict[str, Any]) -> None:
    result = run("verify", str(nitro / "aws_pcr16.bin"), "--replay")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    want = expected["aws_pcr16.bin"]
    assert "nitro, replay mode, root aws" in out
    assert want["image_id"] in out
    assert "PCR16" in out
    assert "PCR3 " not in out  # zero PCRs outside the image id are left to --json
    assert "(empty)" in out


@pytest.mark.parametrize(
    ("flag", "value", "reason"),
    [
        ("--image-id", "00" * 32, "image_id"),
        ("--pcr", "0=" + "00" * 48, "pcr"),
        ("--public-key", "abcd", "public_key"),
        ("--user-data", "00", "user_data"),
        ("--nonce", "01", "nonce"),
    ],
)
def test_wrong_expectations_are_rejected_with_their_reason(
    nitro: Path, flag: str, value: str, reason: str
) -> None:
    result = run("verify", str(nitro / "aws.bin"), "--replay", flag, value)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"attestation rejected: {reason}: ")


def test_matching_expectations_pass(nitro: Path, expected: dict[str, Any]) -> None:
    want = expected["aws_pcr16.bin"]
    result = run(
        "verify",
        str(nitro / "aws_pcr16.bin"),
        "--replay",
        "--image-id",
        "0x" + want["image_id"],
        "--pcr",
        f"0={want['pcrs']['0']}",
        "--pcr",
        f"16={want['pcrs']['16']}",
        "--public-key",
        want["public_key"],
        "--user-data",
        "",
        "--nonce",
        "",
        "--json",
    )
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--pcr", "0=abc"],
        ["--pcr", "x=00"],
        ["--pcr", "40=" + "00" * 48],
        ["--pcr", "1=" + "00" * 48, "--pcr", "1=" + "00" * 48],
        ["--image-id", "1234"],
        ["--nonce", "zz"],
        ["--hex", "--base64"],
        ["--max-age", "-1"],
    ],
)
def test_bad_flags_are_usage_errors(nitro: Path, args: list[str]) -> None:
    result = run("verify", str(nitro / "aws.bin"), "--replay", *args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_wrong_and_file_roots(nitro: Path, tmp_path: Path) -> None:
    doc = str(nitro / "aws.bin")
    mock = run("verify", doc, "--replay", "--root", "mock")
    assert mock.exit_code == 1
    assert mock.stderr.startswith("attestation rejected: root: ")
    path = str(nitro / "aws_root_g1.der")
    result = run("verify", doc, "--replay", "--root", path, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["root"]["name"] == path
    missing = run("verify", doc, "--replay", "--root", str(tmp_path / "nope.der"))
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: cannot read root certificate")
    no_dev = run("verify", doc, "--replay", "--root", "dev")
    assert no_dev.exit_code == 1
    assert "no dev TEE root" in no_dev.stderr


def test_mock_documents_carry_an_insecure_warning(nitro: Path) -> None:
    result = run("verify", str(nitro / "mock_custom.bin"), "--replay", "--root", "mock", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["root"]["name"] == "mock"
    assert "INSECURE" in result.stderr


def test_hex_base64_and_stdin_inputs(nitro: Path, tmp_path: Path) -> None:
    raw = (nitro / "aws_nonce.bin").read_bytes()
    (tmp_path / "doc.hex").write_text(raw.hex() + "\n")
    (tmp_path / "doc.b64").write_bytes(base64.b64encode(raw))
    outputs = [
        run("verify", str(tmp_path / "doc.hex"), "--replay", "--json"),
        run("verify", str(tmp_path / "doc.hex"), "--hex", "--replay", "--json"),
        run("verify", str(tmp_path / "doc.b64"), "--base64", "--replay", "--json"),
        run("verify", str(tmp_path / "doc.b64"), "--replay", "--json"),
        run("verify", "-", "--replay", "--json", input=raw),
        run("verify", "-", "--replay", "--json", input=raw.hex().encode()),
    ]
    for result in outputs:
        assert result.exit_code == 0, result.stderr
    assert len({r.stdout for r in outputs}) == 1
    wrong = run("verify", str(tmp_path / "doc.b64"), "--hex", "--replay")
    assert wrong.exit_code == 1
    assert wrong.stderr.startswith("attestation rejected: decode: ")


def test_garbage_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"\x00\x01 not a document")
    junk = run("verify", str(tmp_path / "junk"))
    assert junk.exit_code == 1
    assert junk.stderr.startswith("attestation rejected: decode: ")
    empty = run("verify", "-", input=b"")
    assert empty.exit_code == 1
    assert "empty" in empty.stderr
    missing = run("verify", str(tmp_path / "absent"))
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: cannot read")


def test_inspect_decodes_without_verifying(nitro: Path, expected: dict[str, Any]) -> None:
    result = run("inspect", str(nitro / "aws.bin"), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    want = expected["aws.bin"]
    assert data["kind"] == "nitro"
    assert data["verified"] is False
    assert data["algorithm"] == "ES384"
    assert data["digest"] == "SHA384"
    assert data["image_id"] == want["image_id"]
    assert data["pcrs"] == want["pcrs"]
    assert data["timestamp_ms"] == want["timestamp_ms"]
    assert data["timestamp"].startswith("2024-12-13T")
    assert data["public_key"] == want["public_key"]
    assert len(data["signature"]) == 192
    assert data["cabundle"][0]["subject"] == "CN=aws.nitro-enclaves,OU=AWS,O=Amazon,C=US"
    assert data["cabundle"][0]["sha256"] == want["root_sha256"]
    assert data["cabundle"][0]["ca"] is True
    leaf = data["certificate"]
    assert leaf["subject"].startswith("CN=i-0f1cd77d37fd8bcc9-enc018e7aa61e2040ff")
    assert leaf["not_before"] < leaf["not_after"]
    assert leaf["ca"] is False
    human = run("inspect", str(nitro / "aws.bin"))
    assert human.exit_code == 0
    assert "NOT verified" in human.stderr
    assert "cabundle[3]" in human.stdout


def test_inspect_shows_an_unverifiable_document(nitro: Path, tmp_path: Path) -> None:
    # Inspect works where verify refuses: an expired chain, or a broken signature.
    raw = bytearray((nitro / "aws.bin").read_bytes())
    raw[-1] ^= 1
    (tmp_path / "broken.bin").write_bytes(bytes(raw))
    assert run("inspect", str(tmp_path / "broken.bin"), "--json").exit_code == 0
    assert run("verify", str(tmp_path / "broken.bin"), "--replay").exit_code == 1
    (tmp_path / "junk").write_bytes(b"\x84\x01")
    bad = run("inspect", str(tmp_path / "junk"))
    assert bad.exit_code == 1
    assert bad.stderr.startswith("cannot decode: decode: ")


def test_mint_then_verify_with_dev_root(tmp_path: Path) -> None:
    out = tmp_path / "dev.bin"
    pcr0, pcr16 = "aa" * 48, "bb" * 48
    minted = run(
        "mint",
        "--pcr",
        f"0={pcr0}",
        "--pcr",
        f"16={pcr16}",
        "--public-key",
        "0102",
        "--user-data",
        "cafe",
        "--nonce",
        "beef",
        "-o",
        str(out),
        "--json",
    )
    assert minted.exit_code == 0, minted.stderr
    assert "INSECURE" in minted.stderr
    summary = json.loads(minted.stdout)
    assert summary["insecure"] is True
    assert summary["root"]["name"] == "dev"
    verified = run("verify", str(out), "--trust", "dev", "--json")  # DESIGN's spelling
    assert verified.exit_code == 0, verified.stderr
    assert "INSECURE" in verified.stderr
    data = json.loads(verified.stdout)
    assert data["pcrs"]["0"] == pcr0
    assert data["pcrs"]["16"] == pcr16
    assert data["pcrs"]["1"] == "00" * 48
    assert (data["public_key"], data["user_data"], data["nonce"]) == ("0102", "cafe", "beef")
    assert data["image_id"] == summary["image_id"]
    assert data["timestamp_ms"] == summary["timestamp_ms"]
    assert data["root"] == summary["root"]
    assert data["mode"] == "live"
    for root in ("aws", "mock"):
        refused = run("verify", str(out), "--root", root)
        assert refused.exit_code == 1
        assert refused.stderr.startswith("attestation rejected: root: ")


def test_mint_hex_to_stdout_round_trips(tmp_path: Path) -> None:
    minted = run("mint", "--pcr", "2=" + "cc" * 48, "--hex", "-o", "-")
    assert minted.exit_code == 0, minted.stderr
    text = minted.stdout.strip()
    assert all(c in "0123456789abcdef" for c in text)
    verified = run("verify", "-", "--root", "dev", "--json", input=text.encode())
    assert verified.exit_code == 0, verified.stderr
    assert json.loads(verified.stdout)["pcrs"]["2"] == "cc" * 48


def test_mint_refuses_bad_fields(tmp_path: Path) -> None:
    too_long = run("mint", "--nonce", "00" * 1025, "-o", str(tmp_path / "x"))
    assert too_long.exit_code == 1
    assert too_long.stderr.startswith("error: nonce is 1025 bytes")
    assert run("mint", "--pcr", "0=00", "-o", str(tmp_path / "x")).exit_code == 2


def test_root_command(nitro: Path) -> None:
    result = run("root", "aws", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["name"] == "aws"
    assert data["insecure"] is False
    assert data["sha256"] == "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
    mock = json.loads(run("root", "mock", "--json").stdout)
    assert mock["insecure"] is True
    assert mock["subject"] == "CN=root"
    assert run("root", "dev").exit_code == 1


def test_quotes_are_routed_to_the_quote_verifier(vectors: Path) -> None:
    dcap = vectors / "dcap"
    quote = str(dcap / "tdx_quote")
    collateral = dcap / "tdx_quote_collateral.json"
    missing = run("verify", quote)
    assert missing.exit_code == 1
    assert "--collateral" in missing.stderr
    issue = json.loads(json.loads(collateral.read_text())["tcb_info"])["issueDate"]
    from datetime import datetime

    at = int(datetime.fromisoformat(issue.replace("Z", "+00:00")).timestamp()) + 3600
    result = run("verify", quote, "--collateral", str(collateral), "--at", str(at), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["kind"] == "tdx"
    assert data["tcb_status"] == "UpToDate"
    assert (
        data["report"]["mr_td"]
        == json.loads((dcap / "expected.json").read_text())["tdx_quote"]["mr_td"]
    )
    sgx = run(
        "verify",
        str(dcap / "sgx_quote"),
        "--collateral",
        str(dcap / "sgx_quote_collateral.json"),
        "--at",
        str(at),
    )
    assert sgx.exit_code == 1
    assert sgx.stderr.startswith("attestation rejected: tcb: ")
    human = run("verify", quote, "--collateral", str(collateral), "--at", str(at))
    assert human.exit_code == 0, human.stderr
    assert "tcb_status  UpToDate" in human.stdout
    assert "MRTD" in human.stdout
    assert "RTMR3" in human.stdout
    rooted = run("verify", quote, "--root", "aws", "--collateral", str(collateral))
    assert rooted.exit_code == 1
    assert "--root does not apply" in rooted.stderr
    inspected = run("inspect", quote, "--json")
    assert inspected.exit_code == 0, inspected.stderr
    assert json.loads(inspected.stdout)["kind"] == "tdx"


def test_the_installed_command_runs(nitro: Path) -> None:
    # One real process: the console script, stdin, exit codes and streams as a shell sees them.
    result = subprocess.run(
        [sys.executable, "-m", "reef.cli", "attestation", "verify", "-", "--replay", "--json"],
        input=(nitro / "aws.bin").read_bytes(),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["root"]["name"] == "aws"
    rejected = subprocess.run(
        [sys.executable, "-m", "reef.cli", "attestation", "verify", str(nitro / "aws.bin")],
        capture_output=True,
        check=False,
    )
    assert rejected.returncode == 1
    assert rejected.stderr.startswith(b"attestation rejected: expired: ")
