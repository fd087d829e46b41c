"""`reef` builds only the command it runs (issue 14): the root's table of commands (name, module,
the help `reef --help` lists) says exactly what the command modules register, `reef --help` made
from the table reads as it does with every command built, and running a command imports and
builds that one command."""

from __future__ import annotations

import inspect
import pkgutil
from importlib import import_module
from typing import Any

import pytest
import typer
from typer._click import Context
from typer.main import get_command_name
from typer.testing import CliRunner

import reef.cli
from reef.cli import app
from reef.cli._root import LazyCommand, ReefTyper
from reef.errors import MisuseError


def _root() -> tuple[Any, Any]:
    """A freshly built ``reef`` group (nothing under it built yet) and a context for it."""
    group = typer.main.get_command(app)
    return group, Context(group, info_name="reef")


def _registered_by(module: str) -> list[str]:
    """The top-level command names ``module``'s ``register(root)`` adds, in its order."""
    collector = typer.Typer()
    import_module(module).register(collector)
    names = [info.name for info in collector.registered_groups]
    for info in collector.registered_commands:
        names.append(info.name or get_command_name(info.callback.__name__))  # type: ignore[union-attr]
    return [name for name in names if name]


def _first_paragraph(text: str | None) -> str:
    return inspect.cleandoc(text or "").split("\n\n")[0].strip()


def test_the_table_names_every_command_the_modules_register() -> None:
    group, _ = _root()
    table: dict[str, LazyCommand] = dict(group.table)
    modules = [
        f"reef.cli.{info.name}"
        for info in pkgutil.iter_modules(reef.cli.__path__)
        if info.name != "__main__"  # runs the command line when imported
        and hasattr(import_module(f"reef.cli.{info.name}"), "register")
    ]
    assert len(modules) >= 20  # every command module was found
    registered = {name: module for module in modules for name in _registered_by(module)}
    assert registered == {name: entry.module for name, entry in table.items()}


def test_each_listed_help_is_the_built_commands_own() -> None:
    group, ctx = _root()
    for name, entry in group.table.items():
        built = group.get_command(ctx, name)
        assert built.name == name
        assert entry.help == _first_paragraph(built.short_help or built.help), name
        assert entry.panel == (getattr(built, "rich_help_panel", None) or None), name
        assert not built.hidden
        assert not built.deprecated


def _help_of(group: Any) -> str:
    runner = CliRunner()
    with runner.isolation() as (out, _err, _output):
        with pytest.raises(SystemExit) as exited:
            group.main(args=["--help"], prog_name="reef")
        text = out.getvalue().decode()
    assert exited.value.code == 0
    return text


def test_help_from_the_table_reads_as_with_every_command_built() -> None:
    lazy, _ = _root()
    built, ctx = _root()
    for name in built.list_commands(ctx):
        built.get_command(ctx, name)
    assert set(built.commands) == set(built.table)  # every command was built
    listed = _help_of(lazy)
    assert not lazy.commands  # listing built none of them
    assert "compute-image-id" in listed
    assert listed == _help_of(built)


def test_running_a_command_builds_that_command_alone() -> None:
    group, ctx = _root()
    name, command, _ = group.resolve_command(ctx, ["kms", "derive", "--help"])
    assert name == "kms"
    assert "derive" in command.commands
    assert list(group.commands) == ["kms"]


def test_a_row_its_module_does_not_register_is_refused() -> None:
    misnamed = ReefTyper(commands=[LazyCommand("checkup", "reef.cli._doctor", "Check this host.")])

    @misnamed.callback()
    def _root_callback() -> None:
        """A root with one command."""

    listed = CliRunner().invoke(misnamed, ["--help"])
    assert listed.exit_code == 0
    assert "checkup" in listed.output
    done = CliRunner().invoke(misnamed, ["checkup"])
    assert isinstance(done.exception, MisuseError)
    assert "registers no command 'checkup'" in done.exception.message
