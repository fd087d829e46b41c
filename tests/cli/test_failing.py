"""``failing()``: the one way a command turns reef errors into an exit code and a message,
never a traceback; Ctrl-C in a command that runs until interrupted (``reef up``, ``reef provider
run``, ``reef logs -f``) ends it with 130 and no message."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from reef.cli._output import failing
from reef.errors import AttestationError, MarketError


def _app(error: BaseException, *, code: int = 1, attestation: str | None = None) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def run() -> None:
        with failing(code=code, attestation=attestation):
            raise error

    return app


def test_a_reef_error_is_its_message_and_hint_and_exit_1() -> None:
    error = MarketError("the amount must be more than 0", hint="give more")
    done = CliRunner().invoke(_app(error), [])
    assert done.exit_code == 1
    assert done.stderr.splitlines() == ["error: the amount must be more than 0", "hint: give more"]


def test_ctrl_c_ends_the_command_with_130_and_no_message() -> None:
    done = CliRunner().invoke(_app(KeyboardInterrupt()), [])
    assert (done.exit_code, done.output) == (130, "")


@pytest.mark.parametrize("error", [ValueError("a bug"), OSError("disk")])
def test_anything_else_passes_through(error: BaseException) -> None:
    done = CliRunner().invoke(_app(error), [])
    assert done.exception is error


def test_refused_evidence_names_the_check_that_refused_it() -> None:
    error = AttestationError("the document is 400 s old", reason="stale", hint="fetch a new one")
    done = CliRunner().invoke(_app(error, attestation="attestation rejected"), [])
    assert done.exit_code == 1
    assert done.stderr.splitlines() == [
        "attestation rejected: stale: the document is 400 s old",
        "hint: fetch a new one",
    ]


def test_without_a_prefix_refused_evidence_is_an_error_like_any_other() -> None:
    done = CliRunner().invoke(_app(AttestationError("bad", reason="chain"), code=2), [])
    assert (done.exit_code, done.stderr) == (2, "error: bad\n")


def test_the_prefix_applies_to_refused_evidence_only() -> None:
    done = CliRunner().invoke(_app(MarketError("no market"), attestation="KMS attestation"), [])
    assert (done.exit_code, done.stderr) == (1, "error: no market\n")
