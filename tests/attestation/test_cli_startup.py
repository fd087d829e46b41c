"""One-shot commands load only what they use (issue 14): `reef attestation verify` and `reef kms
derive` import neither pydantic (Typer's coercion is bypassed for values that need none) nor
the ABI codec, the dev TEE authority or the DCAP quote parser; and the values that do need
coercion still get Typer's own, errors included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
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


def _loaded_after(argv: list[str]) -> set[str]:
    """The modules loaded by running ``reef <argv>`` in a fresh interpreter (its exit ignored)."""
    script = (
        "import sys\n"
        "from reef.cli import main\n"
        f"sys.argv = ['reef', *{argv!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    return set(done.stderr.split())


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
    # Every command module is imported to list it; the ones that run asyncio import it when run.
    loaded = _loaded_after(["--help"])
    assert "reef.cli._enclave" in loaded  # it did list the commands
    assert "asyncio" not in loaded
    assert not {m for m in loaded if m.split(".")[0] in _HEAVY or m in _HEAVY}
