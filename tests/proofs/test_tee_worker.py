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
