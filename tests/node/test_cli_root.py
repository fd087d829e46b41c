"""The `reef` command as a whole, for someone arriving from oyster-cvm: `--version`, help without
`<bool>` after every flag, Oyster's verbs (`reef list|deposit|withdraw|stop|update`,
`reef compute-image-id`), and typo suggestions that never point at a command that spends money."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reef.cli import app

REEF = str(Path(sys.executable).with_name("reef"))


def _reef(*args: str) -> subprocess.CompletedProcess[str]:
    """The console script, as a user runs it (help is rendered at its real width)."""
    return subprocess.run(
        [REEF, *args], capture_output=True, text=True, timeout=60, check=False,
        env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def _reef_at(columns: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REEF, *args], capture_output=True, text=True, timeout=60, check=False,
        env={"COLUMNS": str(columns), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


@pytest.mark.parametrize("command", [("deploy",), ("up",), ("jobs", "stop"), ("kms", "rotate")])
def test_help_paragraphs_flow_to_the_terminal_width(command: tuple[str, ...]) -> None:
    """Typer's Rich help kept the docstrings' line breaks: at 80 columns a paragraph wrapped
    at the source's width came out as a full line, then a stub ("safety margin", "before"...).
    Each paragraph now fills every line but its last."""
    done = _reef_at(80, *command, "--help")
    assert done.returncode == 0, done.stderr
    description = done.stdout.split("Usage:", 1)[1].split("\u256d", 1)[0]  # up to the first box
    lines = [line.strip() for line in description.splitlines()[1:]]  # Rich pads blank lines
    paragraphs = [list(group) for blank, group in itertools.groupby(lines, bool) if blank]
    assert len(paragraphs) >= 2, done.stdout  # the summary and at least one more
    for text in paragraphs:
        for line, after in itertools.pairwise(text):
            # Wrapped by Rich: the next line's first word did not fit on this one.
            assert len(line) + 1 + len(after.split()[0]) > 78, (line, after)


def test_version() -> None:
    done = _reef("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"reef {version('reef')}"


@pytest.mark.parametrize(
    "command", [(), ("deploy",), ("jobs", "stop"), ("jobs", "update"), ("stop",), ("logs",)]
)
def test_help_shows_flags_without_a_bool_type(command: tuple[str, ...]) -> None:
    done = _reef(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "--help" in done.stdout
    assert "<bool>" not in done.stdout


def test_oyster_verbs_are_commands() -> None:
    listed = _reef("--help").stdout
    for verb in ("list", "deposit", "withdraw", "stop", "update", "logs", "compute-image-id"):
        assert f" {verb} " in listed, verb
        assert _reef(verb, "--help").returncode == 0, verb


@pytest.mark.parametrize("typo", ["deplyo", "depost", "deploi", "deposti"])
def test_a_typo_is_never_answered_with_a_command_that_spends_money(typo: str) -> None:
    done = CliRunner().invoke(app, [typo])
    assert done.exit_code == 2
    assert f"No such command '{typo}'" in done.output
    assert "'deploy'" not in done.output
    assert "'deposit'" not in done.output


def test_a_typo_of_a_safe_command_is_still_suggested() -> None:
    done = CliRunner().invoke(app, ["wallte"])
    assert done.exit_code == 2
    assert "Did you mean 'wallet'?" in done.output


@pytest.mark.parametrize(
    ("typo", "spends"),
    [
        (["jobs", "depost"], "deposit"),
        (["fn", "cal"], "call"),
        (["proofs", "reqest"], "request"),
        (["executor", "registr"], "register"),
    ],
)
def test_a_typo_in_a_group_never_guesses_a_command_that_pays(typo: list[str], spends: str) -> None:
    """Only the root was careful: `reef jobs depost` got "Did you mean 'deposit'?". A group
    lists its commands instead of guessing one that pays or stakes."""
    done = CliRunner().invoke(app, typo, terminal_width=200)
    assert done.exit_code == 2
    assert f"No such command '{typo[1]}'" in done.output
    guessed = done.output.split("Did you mean", 1)[1] if "Did you mean" in done.output else ""
    assert f"'{spends}'" not in guessed  # ('deregister' may be guessed for 'registr')
    if not guessed:
        assert f"`reef {typo[0]}` has: " in done.output
        assert spends in done.output.split("has: ", 1)[1]  # listed, as every command is


def test_a_group_answers_an_unknown_command_with_its_commands() -> None:
    done = CliRunner().invoke(app, ["enclave", "list"], terminal_width=200)
    assert done.exit_code == 2
    assert "`reef enclave` has: run, ps, status, logs, stop, rm." in done.output
    near = CliRunner().invoke(app, ["enclave", "stp"])
    assert "Did you mean 'stop'?" in near.output


def test_compute_image_id_matches_the_nitro_vector(vectors: Path) -> None:
    expected = json.loads((vectors / "nitro" / "expected.json").read_text())["aws.bin"]
    pcrs = expected["pcrs"]
    args = ["--pcr0", pcrs["0"], "--pcr1", "0x" + pcrs["1"], "--pcr2", pcrs["2"]]
    done = CliRunner().invoke(app, ["compute-image-id", *args])
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == expected["image_id"]
    zero16 = CliRunner().invoke(app, ["compute-image-id", *args, "--pcr16", "00" * 48, "--json"])
    assert json.loads(zero16.stdout)["image_id"] == expected["image_id"]  # absent PCR16 = zeros


def test_compute_image_id_refuses_a_short_pcr() -> None:
    args = ["--pcr0", "11" * 48, "--pcr1", "22" * 48, "--pcr2", "33" * 47]
    done = CliRunner().invoke(app, ["compute-image-id", *args])
    assert done.exit_code == 1
    assert "--pcr2" in done.stderr
    assert "Traceback" not in done.output
