"""``tell``: the one way a command prints a line for people on stderr. The line is printed as it
is: brackets in paths, IPv6 URLs and messages are not Rich markup, and stdout stays empty."""

from __future__ import annotations

import pytest

from reef.cli._output import fail, note, print_mapping, print_table, say, tell
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


# What strangers write (a market's name, a provider's status, a server's refusal, a tenant's
# console) reaches these functions. A terminal must show it, not obey it.
HOSTILE = "name\x1b]0;owned\x07\x1b[2J[link=https://evil.example]x[/link] :warning: \u202eexe"
SHOWN = "name\\x1b]0;owned\\x07\\x1b[2J[link=https://evil.example]x[/link] :warning: \\u202eexe"


def test_a_strangers_text_is_shown_not_obeyed_on_every_path(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fail(InputError(f"the server said {HOSTILE}", hint=HOSTILE))
    say(f"line {HOSTILE}\nsecond line")
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"error: the server said {SHOWN}", f"hint: {SHOWN}"]
    assert out.splitlines() == [f"line {SHOWN}", "second line"]


def test_tables_and_mappings_show_cells_as_text(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # no cell is cut short
    print_mapping({"state": HOSTILE, "nested": {"reason": f"a\nb{HOSTILE}"}})
    print_table([{"name": HOSTILE, "kind": ["tee", HOSTILE]}], ["name", "kind"])
    out, _ = capsys.readouterr()
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert "\x07" not in out
    assert f"state   {SHOWN}" in out
    assert f"reason: a\\x0ab{SHOWN}" in out  # one value stays on one line
    assert f"{SHOWN} " in out
    assert f"tee, {SHOWN}" in out
    assert "⚠" not in out  # an emoji code stays its letters
