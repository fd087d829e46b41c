"""``failing()``: the one way a command turns reef errors into an exit code and a message,
never a traceback; Ctrl-C in a command that runs until interrupted (``reef up``, ``reef provider
run``, ``reef logs -f``) ends it with 130 and no message."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from reef.cli._output import failing
from reef.errors import MarketError


def _app(error: BaseException) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def run() -> None:
        with failing():
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
