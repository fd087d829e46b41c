"""`reef prover run --tee`'s worker: a program gets the inputs as JSON on stdin and prints the
output; anything else it does is a task failure with a message, never a crash."""

from __future__ import annotations

import sys

import pytest
from eth_account import Account

from reef.errors import InputError, ProofError
from reef.proofs import command_worker

KEY = Account.from_key(b"\x44" * 32)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_the_program_computes_the_output_from_stdin() -> None:
    worker = command_worker(
        KEY,
        _python("import json,sys; print(json.dumps([2 * int(v) for v in json.load(sys.stdin)]))"),
    )
    assert list(worker.compute([21, 2**200])) == [42, 2**201]
    assert worker.account is KEY


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("import sys; sys.exit(3)", "exited 3"),
        ("print('hello')", "not a JSON list"),
        ("print('{\"a\": 1}')", "not a JSON list"),
        ("print('[\"x\"]')", "not a JSON list"),
        ("print('[-1]')", "outside uint256"),
    ],
)
def test_a_misbehaving_program_is_a_clear_failure(code: str, message: str) -> None:
    with pytest.raises(ProofError, match=message):
        command_worker(KEY, _python(code)).compute([1])


def test_a_missing_program_or_empty_command_is_refused() -> None:
    with pytest.raises(ProofError, match="did not run"):
        command_worker(KEY, ["/nonexistent/worker"]).compute([1])
    with pytest.raises(InputError, match="empty"):
        command_worker(KEY, [])


def test_the_engine_register_command_needs_a_market_and_says_so() -> None:
    from typer.testing import CliRunner

    from reef.cli import app

    missing = CliRunner().invoke(app, ["proofs", "engine", "register", "--image-id", "00"])
    assert missing.exit_code == 2  # --evidence is required
    nowhere = CliRunner().invoke(
        app, ["proofs", "engine", "register", "--evidence", "x.att", "--image-id", "00"]
    )
    assert nowhere.exit_code == 1
    assert "no proof market known" in nowhere.output
