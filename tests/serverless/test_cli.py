"""`reef fn new` and `reef fn dev`, on a Typer app the fn group registers itself on (the lead adds
it to `reef.cli.app`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from net_support import free_port
from reef.cli import _fn

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "serverless"


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """test root"""

    _fn.register(root)
    return root


def test_new_writes_a_template_and_refuses_to_overwrite(app: typer.Typer, tmp_path: Path) -> None:
    target = tmp_path / "myfn"
    result = CliRunner().invoke(app, ["fn", "new", str(target)])
    assert result.exit_code == 0, result.output
    assert "export default" in (target / "index.js").read_text()
    assert "reef fn dev" in (target / "README.md").read_text()
    again = CliRunner().invoke(app, ["fn", "new", str(target)])
    assert again.exit_code == 2
    assert "already exists" in again.output


@pytest.mark.node
def test_dev_runs_the_template(app: typer.Typer, tmp_path: Path, workerd: Path) -> None:
    target = tmp_path / "myfn"
    CliRunner().invoke(app, ["fn", "new", str(target)])
    result = CliRunner().invoke(app, ["fn", "dev", str(target), "--input", "reef", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["error_code"] == 0
    assert data["output"] == "hello, reef!"
    assert bytes.fromhex(data["output_hex"][2:]) == b"hello, reef!"
    assert data["status"] == 200
    assert isinstance(data["total_time_ms"], int)


@pytest.mark.node
def test_dev_json_example_with_input_file(app: typer.Typer, tmp_path: Path, workerd: Path) -> None:
    payload = tmp_path / "input.json"
    payload.write_text(json.dumps({"numbers": [1, 2, 3.5]}))
    result = CliRunner().invoke(
        app, ["fn", "dev", str(EXAMPLES / "json-input"), "--input-file", str(payload), "--json"]
    )
    assert result.exit_code == 0, result.output
    output = json.loads(json.loads(result.stdout)["output"])
    assert output == {"count": 3, "sum": 6.5, "mean": 6.5 / 3}


@pytest.mark.node
def test_dev_human_output_and_hello_example(app: typer.Typer, workerd: Path) -> None:
    result = CliRunner().invoke(app, ["fn", "dev", str(EXAMPLES / "hello" / "index.js")])
    assert result.exit_code == 0, result.output
    assert "hello, world!" in result.stdout
    assert "0 (ok)" in result.stdout


@pytest.mark.node
def test_dev_timeout_exits_1_with_code_4(app: typer.Typer, tmp_path: Path, workerd: Path) -> None:
    source = tmp_path / "loop.js"
    source.write_text("export default { async fetch() { while (true) {} } };")
    result = CliRunner().invoke(app, ["fn", "dev", str(source), "--timeout-ms", "300", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["error_code"] == 4
    assert data["total_time_ms"] == 300


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "a", "--input-file", "b"], "not both"),
        (["--timeout-ms", "0"], "timeout"),
        (["--input-file", "/nonexistent/input"], "cannot read"),
    ],
)
def test_dev_usage_errors(app: typer.Typer, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["fn", "dev", str(EXAMPLES / "hello"), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_dev_directory_without_index(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["fn", "dev", str(tmp_path)])
    assert result.exit_code == 2
    assert "index.js" in result.output


def test_an_unreachable_chain_is_named_as_every_command_names_it(app: typer.Typer) -> None:
    port = free_port()  # nothing listens on it
    zero = "0x" + "00" * 20
    result = CliRunner().invoke(
        app, ["fn", "list", "--rpc", f"http://127.0.0.1:{port}", "--jobs", zero, "--code", zero]
    )
    assert result.exit_code == 1
    assert f"cannot reach the JSON-RPC endpoint http://127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.output
