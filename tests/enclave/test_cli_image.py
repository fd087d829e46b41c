"""`reef image` and `reef init-params` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reef.cli import app
from reef.enclave import InitParams, extend_pcr, load_image

runner = CliRunner()


def _app(root: Path) -> Path:
    root.mkdir()
    (root / "reef.toml").write_text('name = "cli"\ncommand = ["python3", "a.py"]\nports = [8000]\n')
    (root / "a.py").write_text("print('hi')\n")
    return root


def test_build_then_measure(tmp_path: Path) -> None:
    src = _app(tmp_path / "app")
    out = tmp_path / "app.img"
    built = runner.invoke(app, ["image", "build", str(src), "-o", str(out), "--json"])
    assert built.exit_code == 0, built.output
    data = json.loads(built.stdout)
    assert data["image"] == str(out)
    assert data["name"] == "cli"
    assert data["image_id"] == load_image(out).image_id.hex()
    measured = runner.invoke(app, ["image", "measure", str(out), "--json"])
    assert measured.exit_code == 0, measured.output
    m = json.loads(measured.stdout)
    assert m["image_id"] == data["image_id"]
    assert sorted(m["pcrs"]) == ["0", "1", "2"]
    debug = json.loads(
        runner.invoke(app, ["image", "measure", str(out), "--debug", "--json"]).stdout
    )
    assert set(debug["pcrs"].values()) == {"00" * 48}
    assert debug["debug"] is True
    human = runner.invoke(app, ["image", "measure", str(out)])
    assert data["image_id"] in human.stdout
    assert "PCR1" in human.stdout


def test_build_without_output_writes_where_deploy_builds(
    tmp_path: Path, reef_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reef image build DIR` refused without -o; it now writes $REEF_HOME/builds/DIR.img (as
    `reef deploy DIR` does), never inside the app, where the next build would take it in."""
    src = _app(tmp_path / "myapp")
    monkeypatch.chdir(src)
    first = runner.invoke(app, ["image", "build", ".", "--json"])
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert data["image"] == str(reef_home / "builds" / "myapp.img")
    assert load_image(Path(data["image"])).image_id.hex() == data["image_id"]
    assert sorted(p.name for p in src.iterdir()) == ["a.py", "reef.toml"]
    again = json.loads(runner.invoke(app, ["image", "build", str(src), "--json"]).stdout)
    assert again["image_id"] == data["image_id"]


def test_measure_with_init_params(tmp_path: Path) -> None:
    out = tmp_path / "app.img"
    runner.invoke(app, ["image", "build", str(_app(tmp_path / "app")), "-o", str(out)])
    (tmp_path / "cfg.json").write_text('{"greeting": "hi"}')
    params = tmp_path / "params.json"
    result = runner.invoke(
        app,
        [
            "init-params", "build",
            "--file", f"config.json={tmp_path / 'cfg.json'}",
            "--utf8", "name=world",
            "--param", "notes.txt:0:0:utf8:not attested",
            "--image", str(out),
            "-o", str(params), "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    loaded = InitParams.from_json(params.read_bytes())
    assert [p.path for p in loaded.params] == ["config.json", "name", "notes.txt"]
    assert loaded.params[2].should_attest is False
    assert summary["digest"] == loaded.digest.hex()
    assert summary["pcr16"] == extend_pcr(loaded.digest).hex()
    measured = json.loads(
        runner.invoke(
            app, ["image", "measure", str(out), "--init-params", str(params), "--json"]
        ).stdout
    )
    assert measured["pcrs"]["16"] == summary["pcr16"]
    assert measured["image_id"] == summary["image_id"]
    assert measured["image_id"] != load_image(out).image_id.hex()
    shown = json.loads(runner.invoke(app, ["init-params", "show", str(params), "--json"]).stdout)
    assert shown["digest"] == summary["digest"]
    assert len(shown["params"]) == 3


def test_secret_without_kms_says_what_is_needed(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("k")
    result = runner.invoke(
        app,
        [
            "init-params",
            "build",
            "--secret",
            f"api-key={tmp_path / 'key'}",
            "-o",
            str(tmp_path / "p.json"),
        ],
    )
    assert result.exit_code == 1
    assert "KMS" in result.stderr
    assert "--kms" in result.stderr
    assert not (tmp_path / "p.json").exists()


def test_cli_errors_are_messages_not_tracebacks(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    result = runner.invoke(app, ["image", "build", str(bad), "-o", str(tmp_path / "x.img")])
    assert result.exit_code == 1
    assert "has no reef.toml" in result.stderr
    (tmp_path / "junk.img").write_bytes(b"junk")
    result = runner.invoke(app, ["image", "measure", str(tmp_path / "junk.img")])
    assert result.exit_code == 1
    assert "not a valid reef image" in result.stderr
    assert "Traceback" not in result.output
    result = runner.invoke(
        app, ["init-params", "build", "--utf8", "/abs=x", "-o", str(tmp_path / "p")]
    )
    assert result.exit_code == 1
    assert "absolute" in result.stderr
    result = runner.invoke(
        app, ["init-params", "build", "--param", "a:2:0:utf8:x", "-o", str(tmp_path / "p")]
    )
    assert result.exit_code == 1
    assert "--param" in result.stderr


def test_inspect(tmp_path: Path) -> None:
    out = tmp_path / "app.img"
    runner.invoke(app, ["image", "build", str(_app(tmp_path / "app")), "-o", str(out)])
    data = json.loads(runner.invoke(app, ["image", "inspect", str(out), "--json"]).stdout)
    assert data["command"] == ["python3", "a.py"]
    assert data["ports"] == [8000]
    assert [e["path"] for e in data["entries"]] == ["a.py", "reef.toml"]
