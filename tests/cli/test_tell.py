"""``tell``: the one way a command prints a line for people on stderr. The line is printed as it
is: brackets in paths, IPv6 URLs and messages are not Rich markup, and stdout stays empty."""

from __future__ import annotations

import pytest

from reef.cli._output import fail, note, tell
from reef.errors import InputError


def test_a_line_is_printed_as_it_is_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    tell("pin for http://[::1]:1101 extended; [bold]not markup[/bold]")
    out, err = capsys.readouterr()
    assert (out, err) == ("", "pin for http://[::1]:1101 extended; [bold]not markup[/bold]\n")


def test_notes_and_failures_go_the_same_way(capsys: pytest.CaptureFixture[str]) -> None:
    note("sending [tx]")
    fail(InputError("cannot read [x].json", hint="name a [real] file"))
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "… sending [tx]",
        "error: cannot read [x].json",
        "hint: name a [real] file",
    ]
