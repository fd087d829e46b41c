"""A newcomer's first hour, followed to the letter: what tripped it up stays fixed.

- At 80 columns (any pipe, many terminals) a key/value result folded a 66-character job id, a
  PCR or a signature over two lines: copied or ``grep``-ed, it came out cut. Tables cut an
  address or a header short with ``…`` (``0x9A9f2CCfd…``, ``enclave_stops_…``).
- ``reef proofs request 1 --input input.json`` (as the README wrote it) spent five seconds on
  the chain before saying the file was missing, with Python's ``[Errno 2]`` and no hint.
- The README's commands read files a newcomer does not have (``input.json``, ``admin.key``).
"""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from reef.cli import app
from reef.cli._output import print_mapping, print_table

REPO = Path(__file__).resolve().parents[2]
NARROW = {"COLUMNS": "80"}
JOB_ID = "0x" + "00" * 31 + "2a"
ADDRESS = "0x9A9f2CCfdE556A7E9Ff0848998Aa4a0CFD8863AE"


def test_a_long_value_stays_whole_on_one_line_at_80_columns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    sentence = (
        "2026-12-07 14:10:33 UTC (the provider stops it a safety margin before the money "
        "runs out; `reef jobs deposit 0 AMOUNT` adds time)"
    )
    print_mapping(
        {"job": 0, "job_id": JOB_ID, "runs until": sentence, "pending_rate": None},
        title="job",
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "job"
    assert f"job_id        {JOB_ID}" in lines  # one line, whole, after its key
    assert "pending_rate" in lines  # an empty value: the key alone, no trailing spaces
    assert all(line == line.rstrip() for line in lines)
    # The sentence wraps at its spaces, under its column, within the 80 columns.
    start = lines.index(next(line for line in lines if line.startswith("runs until")))
    wrapped = lines[start : start + 2]
    assert all(len(line) <= 80 for line in wrapped)
    assert wrapped[1].startswith(" " * 14)
    assert not wrapped[1].startswith(" " * 15)
    assert " ".join(" ".join(wrapped).split()[2:]) == sentence


def test_the_pcrs_of_a_verified_document_are_one_line_each(tmp_path: Path) -> None:
    """Through the command: `reef attestation verify` of a dev document, piped (80 columns)."""
    doc = tmp_path / "dev.doc"
    runner = CliRunner()
    minted = runner.invoke(app, ["attestation", "mint", "--pcr", "0=" + "11" * 48, "-o", str(doc)])
    assert minted.exit_code == 0, minted.output
    verified = runner.invoke(app, ["attestation", "verify", str(doc), "--root", "dev"], env=NARROW)
    assert verified.exit_code == 0, verified.output
    assert re.search(r"^PCR0 +(11){48}$", verified.stdout, re.MULTILINE), verified.stdout
    assert re.search(r"^PCR1 +(00){48}$", verified.stdout, re.MULTILINE), verified.stdout


def test_a_table_cuts_no_address_or_header_short(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    jobs = ["job", "instance", "rate_per_hour", "balance", "enclave_stops_by", "provider_state"]
    print_table(
        [
            {
                "job": 0,
                "instance": "dev.small",
                "rate_per_hour": "0.36",
                "balance": "0.3584",
                "enclave_stops_by": "2026-12-07 14:10:33 UTC",
                "provider_state": "running",
            }
        ],
        jobs,
    )
    enclaves = ["id", "name", "state", "image_id", "ports"]
    print_table(
        [
            {
                "id": "e74ad52c84d7",
                "name": "serverless-executor",
                "state": "running",
                "image_id": "cd1f4cbdc364",
                "ports": ["45309->1300", "39371->8080"],
            }
        ],
        enclaves,
    )
    out = capsys.readouterr().out
    assert "…" not in out
    # The jobs' headers need 81 columns: one folds, but every value's words stay whole.
    for word in ("dev.small", "0.3584", "2026-12-07", "14:10:33", "running"):
        assert f" {word} " in out
    for header in enclaves:  # these fit, headers and all
        assert f" {header} " in out
    assert " serverless-executor " in out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_a_table_too_wide_folds_an_address_rather_than_hide_its_end(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    columns = ["market_id", "kind", "name", "state", "provers", "penalty", "verifier"]
    row = {"market_id": 1, "kind": "groth16", "name": "poseidon (example)", "state": "open"}
    print_table([{**row, "provers": 1, "penalty": 1, "verifier": ADDRESS}], columns)
    out = capsys.readouterr().out
    assert "…" not in out
    # The last column's pieces, top to bottom, spell the whole address.
    pieces = [line.split("│")[-2].strip() for line in out.splitlines() if line.count("│") > 2]
    assert "".join(pieces) == ADDRESS


def test_a_missing_input_file_is_refused_at_once_with_what_to_give(tmp_path: Path) -> None:
    """No network runs here: the file is checked before anything is asked of a chain."""
    missing = tmp_path / "input.json"
    done = CliRunner().invoke(
        app, ["proofs", "request", "1", "--input", str(missing), "--reward", "0.5"]
    )
    assert done.exit_code == 1
    assert f"error: cannot read the input file {missing}: No such file or directory" in done.stderr
    assert "Errno" not in done.stderr
    assert "hint: a JSON object of the market's input signals" in done.stderr
    assert "examples/proofs/poseidon/input.json" in done.stderr
    assert "Traceback" not in done.output


def test_an_input_file_that_is_no_json_says_so(tmp_path: Path) -> None:
    bad = tmp_path / "input.json"
    bad.write_text("x = 5")
    done = CliRunner().invoke(app, ["proofs", "request", "1", "--input", str(bad), "--reward", "1"])
    assert done.exit_code == 1
    assert "is not JSON" in done.stderr
    assert "hint:" in done.stderr


# ---- the README, typed as written ----

_READS = {"--input", "--private", "--collateral", "--image", "<"}
_FILES = (".json", ".key", ".doc", ".img")


def _readme_lines() -> list[str]:
    lines: list[str] = []
    inside = False
    for line in (REPO / "README.md").read_text().splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
            continue
        if inside:
            text = line.strip().removeprefix("$ ")
            lines.append(text.split("  #", 1)[0].strip())
    return lines


def test_every_file_a_readme_command_reads_exists_or_an_earlier_line_makes_it() -> None:
    made: set[str] = set()
    missing: list[str] = []
    for line in _readme_lines():
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        for flag, value in itertools.pairwise(words):
            if flag in {"-o", ">"}:
                made.add(value)
            elif flag in _READS and ("/" in value or value.endswith(_FILES)):
                if value.startswith("../shared/") or value in made or (REPO / value).exists():
                    continue
                missing.append(f"{line!r} reads {value}")
    assert not missing, "\n".join(missing)


def test_the_readme_makes_the_kms_admin_key_before_rotating() -> None:
    lines = _readme_lines()
    rotate = next(i for i, line in enumerate(lines) if line.startswith("reef kms rotate"))
    assert any("> admin.key" in line for line in lines[:rotate])


def test_yes_and_no_not_pythons_true_and_false(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reef jobs show` said `debug  False`, `reef chain info` `running  True`, while `reef
    image build` said `debug  no`: one way now, in mappings and tables alike."""
    monkeypatch.setenv("COLUMNS", "80")
    print_mapping({"debug": False, "running": True, "restarts": 0})
    print_table([{"path": "a.txt", "should_attest": True, "size": 0}], ["path", "should_attest"])
    out = capsys.readouterr().out
    assert "debug     no" in out
    assert "running   yes" in out
    assert "restarts  0" in out  # a number stays a number
    assert "│ yes " in out
    assert "True" not in out
    assert "False" not in out


def test_verify_of_an_app_port_suggests_the_checks_that_were_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`reef verify APP_PORT --image hello --root dev` (the deploy's `endpoint`) pointed at the
    attestation URL with `reef verify URL --root dev`: pasted, that checked no image at all."""
    import reef.node

    attestation = "http://127.0.0.1:34103/attestation/raw"

    async def app_port(home: object, endpoint: str) -> object:
        enclave = SimpleNamespace(
            id="d4e16da73118", name="hello", endpoints={"attestation": attestation}
        )
        return SimpleNamespace(port=8080, enclave=enclave)

    monkeypatch.setattr(reef.node, "find_app_port", app_port)
    image_id = "ab" * 32
    done = CliRunner().invoke(
        app, ["verify", "127.0.0.1:1", "--image-id", image_id, "--root", "mock"]
    )
    assert done.exit_code == 1, done.output
    hint = " ".join(done.stderr.split())
    assert "app's port 8080 of the local enclave d4e16da73118 (hello)" in hint
    assert f"reef verify {attestation} --image-id {image_id} --root dev" in hint


def test_deploy_of_a_mistyped_path_names_the_path_before_the_network(tmp_path: Path) -> None:
    """No network runs here: `reef deploy helo --duration 1h` said only that nothing says where
    the network is, hiding the typo behind a second problem."""
    done = CliRunner().invoke(app, ["deploy", str(tmp_path / "helo"), "--duration", "1h"])
    assert done.exit_code == 1
    assert f"error: no such image file or app directory: {tmp_path / 'helo'}" in done.stderr
    assert "reef deploy examples/hello" in done.stderr
    assert "network" not in done.stderr
