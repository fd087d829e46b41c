"""One-shot commands load only what they use (issue 14): `reef attestation verify` and `reef kms
derive` import neither pydantic (Typer's coercion is bypassed for values that need none) nor
the ABI codec, the dev TEE authority or the DCAP quote parser, nor the modules of the other
command groups, nor Rich when nothing is printed through it; `reef --help` lists the commands
without importing any command module; and the values that do need coercion still get Typer's
own, errors included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from reef.cli import app

_HEAVY = (
    "pydantic",
    "eth_abi",
    "eth_account",
    "web3",
    "reef.attestation._dev",
    "reef.attestation._quote",
)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``reef <argv>`` in a fresh interpreter; its stderr ends with the modules it loaded."""
    script = (
        "import sys\n"
        "from reef.cli import main\n"
        f"sys.argv = ['reef', *{argv!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


def _loaded_after(argv: list[str]) -> set[str]:
    """The modules loaded by running ``reef <argv>`` in a fresh interpreter (its exit ignored)."""
    return set(_run(argv).stderr.split())


def _command_modules() -> set[str]:
    """The modules of reef's top-level commands, as the root's table names them."""
    root: Any = typer.main.get_command(app)
    return {entry.module for entry in root.table.values()}


def test_verifying_a_nitro_document_loads_nothing_heavy(vectors: Path) -> None:
    argv = ["attestation", "verify", str(vectors / "nitro" / "aws.bin"), "--replay", "--json"]
    loaded = _loaded_after(argv)
    assert "reef.attestation._nitro" in loaded  # it did verify
    assert not {m for m in loaded if m.split(".")[0] in _HEAVY or m in _HEAVY}


def test_deriving_a_key_loads_nothing_heavy() -> None:
    argv = ["kms", "derive", "--seed", "11" * 64, "--image-id", "22" * 32, "--path", "wallet"]
    loaded = _loaded_after([*argv, "--type", "secp256k1", "--json"])
    assert "reef.kms._derive" in loaded
    assert not {m for m in loaded if m.split(".")[0] in _HEAVY or m in _HEAVY}


@pytest.mark.parametrize(
    ("value", "message"),
    [("soon", "--max-age"), ("-1", "--max-age"), ("1.5", "--max-age")],
)
def test_values_that_need_coercion_still_get_typers_errors(
    vectors: Path, value: str, message: str
) -> None:
    document = str(vectors / "nitro" / "aws.bin")
    result = CliRunner().invoke(app, ["attestation", "verify", document, "--max-age", value])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_values_that_need_coercion_are_coerced(vectors: Path) -> None:
    # A number given as text goes through Typer's own coercion: accepted, as before.
    document = str(vectors / "nitro" / "aws.bin")
    args = ["attestation", "verify", document, "--replay", "--max-age", "99999999999", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 1), result.output
    assert "Invalid value" not in result.output


def test_help_loads_no_event_loop() -> None:
    # The commands are listed from the root's table; their modules are imported when run.
    done = _run(["--help"])
    loaded = set(done.stderr.split())
    assert " enclave " in done.stdout  # it did list the commands
    assert " compute-image-id " in done.stdout
    assert "asyncio" not in loaded
    assert not {m for m in loaded if m.split(".")[0] in _HEAVY or m in _HEAVY}
    assert not loaded & _command_modules()


_DERIVE = ["kms", "derive", "--seed", "11" * 64, "--image-id", "22" * 32, "--path", "wallet"]


@pytest.mark.parametrize(
    ("argv", "module", "ran"),
    [
        (
            ["attestation", "verify", "{nitro}/aws.bin", "--replay", "--json"],
            "reef.cli._attestation",
            "reef.attestation._nitro",
        ),
        ([*_DERIVE, "--type", "secp256k1", "--json"], "reef.cli._kms", "reef.kms._derive"),
    ],
)
def test_a_command_loads_no_other_command_groups_module(
    vectors: Path, argv: list[str], module: str, ran: str
) -> None:
    done = _run([arg.format(nitro=vectors / "nitro") for arg in argv])
    loaded = set(done.stderr.split())
    assert {module, ran} <= loaded  # it did run the command
    assert done.stdout.startswith("{")  # and printed its JSON result
    others = _command_modules() - {module}
    assert {"reef.cli._proofs", "reef.cli._jobs", "reef.cli._up"} <= others
    assert not loaded & others
    # Nothing is printed through Rich: a --json result is written as it is.
    assert not {m for m in loaded if m.split(".")[0] == "rich"}
