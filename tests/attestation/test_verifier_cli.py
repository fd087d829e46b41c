"""`reef verifier ...`: sign, check and keygen through Typer's CliRunner; serve as a real process
answering over loopback HTTP."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from reef.attestation import verify_statement
from reef.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def expected(vectors: Path) -> dict[str, Any]:
    return dict(json.loads((vectors / "verifier" / "expected.json").read_text()))


@pytest.fixture
def key_file(vectors: Path) -> Path:
    return vectors / "verifier" / "secp256k1.sec"


def _statement_for(vectors: Path, name: str) -> dict[str, Any]:
    nitro = json.loads((vectors / "nitro" / "expected.json").read_text())[name]
    return {k: nitro[k] for k in ("image_id", "timestamp_ms", "public_key", "user_data")}


def test_sign_json_matches_oyster(vectors: Path, key_file: Path, expected: dict[str, Any]) -> None:
    for relative, signature in expected["signatures"].items():
        result = runner.invoke(
            app, ["verifier", "sign", str(vectors / relative), "--key", str(key_file), "--json"]
        )
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["signature"] == signature
        assert data["verifier_public_key"] == expected["key_public"]
        assert {k: data[k] for k in ("image_id", "timestamp_ms", "public_key", "user_data")} == (
            _statement_for(vectors, Path(relative).name)
        )


def test_sign_hex_and_base64_inputs(
    vectors: Path, key_file: Path, tmp_path: Path, expected: dict[str, Any]
) -> None:
    import base64

    document = (vectors / "nitro" / "aws_verifier_test_2.bin").read_bytes()
    signature = expected["signatures"]["nitro/aws_verifier_test_2.bin"]
    (tmp_path / "doc.hex").write_text(document.hex() + "\n")
    (tmp_path / "doc.b64").write_text(base64.b64encode(document).decode())
    for name, flag in (("doc.hex", "--hex"), ("doc.b64", "--base64"), ("doc.hex", None)):
        arguments = ["verifier", "sign", str(tmp_path / name), "--key", str(key_file), "--json"]
        result = runner.invoke(app, [*arguments, flag] if flag else arguments)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["signature"] == signature
    stdin = runner.invoke(
        app, ["verifier", "sign", "-", "--key", str(key_file), "--json"], input=document
    )
    assert json.loads(stdin.stdout)["signature"] == signature


def test_sign_human_output(vectors: Path, key_file: Path) -> None:
    result = runner.invoke(
        app,
        [
            "verifier",
            "sign",
            str(vectors / "nitro" / "aws_verifier_test.bin"),
            "--key",
            str(key_file),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "0x7F88EB4b5a286fAce3343d97Ec61F09A8A0F9D44" in result.stdout
    assert "de66275048b83171dee9dc3efd599c64413fce98177ff1f662875c153b80d117" in result.stdout


def test_sign_rejections(vectors: Path, key_file: Path, tmp_path: Path) -> None:
    mock = str(vectors / "nitro" / "mock_custom.bin")
    result = runner.invoke(app, ["verifier", "sign", mock, "--key", str(key_file), "--json"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("attestation rejected: root:")

    # The same document under the mock root is signed, with a warning on stderr.
    result = runner.invoke(
        app, ["verifier", "sign", mock, "--key", str(key_file), "--root", "mock", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert "INSECURE" in result.stderr
    assert json.loads(result.stdout)["user_data"] == "abcdef"

    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01garbage")
    result = runner.invoke(app, ["verifier", "sign", str(garbage), "--key", str(key_file)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output

    bad_key = tmp_path / "bad.key"
    bad_key.write_text("not a key")
    doc = str(vectors / "nitro" / "aws.bin")
    result = runner.invoke(app, ["verifier", "sign", doc, "--key", str(bad_key)])
    assert result.exit_code == 1
    assert "neither 32 raw bytes nor 64 hex digits" in result.stderr

    result = runner.invoke(app, ["verifier", "sign", doc, "--key", str(tmp_path / "absent")])
    assert result.exit_code == 1
    assert "cannot read the key file" in result.stderr

    result = runner.invoke(
        app, ["verifier", "sign", str(tmp_path / "nope"), "--key", str(key_file)]
    )
    assert result.exit_code == 1
    assert "cannot read" in result.stderr

    result = runner.invoke(
        app, ["verifier", "sign", doc, "--key", str(key_file), "--hex", "--base64"]
    )
    assert result.exit_code == 2


def test_check(vectors: Path, key_file: Path, tmp_path: Path, expected: dict[str, Any]) -> None:
    doc = str(vectors / "nitro" / "aws_verifier_test.bin")
    signed = runner.invoke(app, ["verifier", "sign", doc, "--key", str(key_file), "--json"])
    statement = tmp_path / "statement.json"
    statement.write_text(signed.stdout)
    public = expected["key_public"]

    result = runner.invoke(
        app, ["verifier", "check", str(statement), "--verifier-key", public, "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["valid"] is True

    # The document is from 2024-08-07 06:38:09 UTC: fresh enough one minute later, not a day later.
    timestamp_s = 1723012689
    fresh = ["--max-age", "300", "--at", str(timestamp_s + 60)]
    result = runner.invoke(
        app, ["verifier", "check", str(statement), "--verifier-key", public, *fresh]
    )
    assert result.exit_code == 0, result.output
    stale = ["--max-age", "300", "--at", str(timestamp_s + 86400)]
    result = runner.invoke(
        app, ["verifier", "check", str(statement), "--verifier-key", public, *stale]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("statement rejected: the statement's document is 86399 s old")

    other = (
        "04"
        + "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
        + ("483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8")
    )
    result = runner.invoke(app, ["verifier", "check", str(statement), "--verifier-key", other])
    assert result.exit_code == 1
    assert "statement rejected: the statement was signed by" in result.stderr

    data = json.loads(signed.stdout)
    data["timestamp_ms"] += 1
    statement.write_text(json.dumps(data))
    result = runner.invoke(app, ["verifier", "check", str(statement), "--verifier-key", public])
    assert result.exit_code == 1
    assert "statement rejected" in result.stderr

    statement.write_text("{not json")
    result = runner.invoke(app, ["verifier", "check", str(statement), "--verifier-key", public])
    assert result.exit_code == 1
    assert "is not a JSON statement" in result.stderr

    # a stranger's statement nested deeper than json recurses: refused, not a traceback (or,
    # once web3 has raised the recursion limit, a segmentation fault)
    statement.write_text("[" * 100_000)
    result = runner.invoke(app, ["verifier", "check", str(statement), "--verifier-key", public])
    assert result.exit_code == 1, result.output
    assert "is not a JSON statement" in result.stderr
    assert "nested more than" in result.stderr

    result = runner.invoke(app, ["verifier", "check", str(statement), "--verifier-key", "zz"])
    assert result.exit_code == 1
    assert "--verifier-key is not valid hex" in result.stderr


def test_keygen(tmp_path: Path) -> None:
    target = tmp_path / "verifier.key"
    result = runner.invoke(app, ["verifier", "keygen", "-o", str(target), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert target.stat().st_mode & 0o777 == 0o600
    assert len(target.read_bytes()) == 32
    from reef.attestation import load_verifier_key

    key = load_verifier_key(target)
    assert key.public_key.raw.hex() == data["public_key"]
    assert key.public_key.checksum_address == data["address"]

    again = runner.invoke(app, ["verifier", "keygen", "-o", str(target)])
    assert again.exit_code == 1
    assert "already exists" in again.stderr
    assert load_verifier_key(target) == key  # not overwritten
    forced = runner.invoke(app, ["verifier", "keygen", "-o", str(target), "--force", "--json"])
    assert forced.exit_code == 0
    assert load_verifier_key(target) != key


def test_serve_as_a_process(vectors: Path, key_file: Path, expected: dict[str, Any]) -> None:
    reef = Path(sys.executable).parent / "reef"
    command = [str(reef), "verifier", "serve", "--key", str(key_file), "--port", "0"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "500"},
    )
    try:
        assert process.stderr is not None
        # The first line names the address really bound (port 0 picks a free one).
        banner = process.stderr.readline().decode()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", banner)
        assert match, banner
        url = match.group(1)
        assert "0x7F88EB4b5a286fAce3343d97Ec61F09A8A0F9D44" in banner
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stderr.read()
            try:
                httpx.get(f"{url}/verify/raw", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "reef verifier serve did not start"
                time.sleep(0.1)
        document = (vectors / "nitro" / "aws_verifier_test.bin").read_bytes()
        answer = httpx.post(f"{url}/verify/hex", content=document.hex(), timeout=10)
        assert answer.status_code == 200
        assert answer.json()["signature"] == expected["signatures"]["nitro/aws_verifier_test.bin"]
        verify_statement(answer.json(), bytes.fromhex(expected["key_public"]))
        assert httpx.post(f"{url}/verify/hex", content="nothex", timeout=10).status_code == 400
        assert httpx.post(f"{url}/verify/raw", content=document, timeout=10).status_code == 200
    finally:
        process.terminate()
        process.communicate(timeout=15)


def test_serve_on_a_busy_port(key_file: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(
            app, ["verifier", "serve", "--key", str(key_file), "--port", str(port)]
        )
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_serve_refuses_a_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"\x00" * 32)
    result = runner.invoke(app, ["verifier", "serve", "--key", str(bad), "--port", "0"])
    assert result.exit_code == 1
    assert "not a valid secp256k1 key" in result.stderr
    result = runner.invoke(
        app, ["verifier", "serve", "--key", str(bad), "--root", str(tmp_path / "no-root.der")]
    )
    assert result.exit_code == 1
