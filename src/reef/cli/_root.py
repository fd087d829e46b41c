"""The root ``reef`` command group: ``--version``, plain flags in ``--help``, safe suggestions,
and start-up without pydantic.

Two things Typer does by default do not suit a command that spends money:

- a mistyped command gets "Did you mean …?" from ``difflib``; ``reef deposit`` (before it existed)
  got **``deploy``**, the command that opens a paid job. :class:`ReefGroup` suggests only
  commands that spend nothing; a typo near one that spends gets pointed at ``reef --help``.
- Typer's Rich help prints a type after every option, so every flag reads ``--debug <bool>`` as
  if it took a value. Flags take none: :class:`ReefGroup` gives every flag of the whole command
  tree (``--help`` included) an empty metavar once, when Typer builds the tree.

And one costs every command time: Typer 0.29 coerces each parameter's value through a pydantic
``TypeAdapter`` built on first use, so the first command run imports pydantic and builds an
adapter per parameter (a quarter of ``reef attestation verify``'s start-up), although almost
every value needs no conversion: a ``str`` option's value is the string given. :class:`ReefGroup`
gives such parameters (``str``, ``list[str]``, ``int``) a coercion that returns the values that
need none as they are (exactly what the adapter returns for them) and hands every other value to
Typer's own coercion, built then. With a Typer without these internals, nothing is changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from functools import cache
from typing import Any

import typer
from typer.core import TyperGroup

try:  # Typer 0.29 vendors Click: its usage errors live in typer._click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older Typer raises Click's own
    from click.exceptions import UsageError  # type: ignore[assignment]

__all__ = ["SPENDING_COMMANDS", "ReefGroup", "ReefTyper", "version_callback"]

SPENDING_COMMANDS = frozenset({"deploy", "deposit"})
"""Commands that move money at once: never offered as a guess for a typo."""


class ReefGroup(TyperGroup):
    """The ``reef`` group (``typer.Typer(cls=ReefGroup, suggest_commands=False)``).

    Command groups (``reef kms``, ``reef jobs``, ...) are built when they are run, not when
    ``reef`` starts: Typer turns every command of a group into a Click command by reading its
    signature and annotations, which for the whole tree took longer than the rest of start-up.
    ``lazy`` maps a group's name to its Typer app (:class:`ReefTyper` fills it); listing the
    commands (``reef --help``) needs only their help, read from the app without building it.
    """

    lazy: Mapping[str, typer.Typer] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _plain_flags(self)
        _light_coercion(self)

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in self.lazy if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self.lazy:
            # What help listings read: the group's name and help, nothing built.
            info = self.lazy[cmd_name].info
            return TyperGroup(name=cmd_name, help=_text(info.help), no_args_is_help=True)
        return command

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] in self.lazy and args[0] not in self.commands:
            built = typer.main.get_command(self.lazy[args[0]])
            built.name = args[0]
            # Built alone, a Typer app offers shell completion; as a group of reef it does not.
            built.params = [p for p in built.params if p.name not in _COMPLETION_PARAMS]
            _plain_flags(built)
            _light_coercion(built)
            self.commands[args[0]] = built
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            if args and not args[0].startswith("-"):
                exc.message = _no_such_command(args[0], {**self.commands, **self.lazy})
            raise


_COMPLETION_PARAMS = frozenset({"install_completion", "show_completion"})


class ReefTyper(typer.Typer):
    """The ``reef`` app: its command groups are kept aside and built on use (:class:`ReefGroup`)."""

    def __init__(self, **kwargs: Any) -> None:
        self.lazy_groups: dict[str, typer.Typer] = {}
        # A group class of this app's own, so its table is this app's and nothing global.
        group = type("ReefRootGroup", (ReefGroup,), {"lazy": self.lazy_groups})
        super().__init__(cls=group, **kwargs)

    def add_typer(self, typer_instance: typer.Typer, *, name: Any = None, **kwargs: Any) -> None:
        if not isinstance(name, str) or kwargs:
            super().add_typer(typer_instance, name=name, **kwargs)
            return
        self.lazy_groups[name] = typer_instance


def _text(value: Any) -> str | None:
    """A Typer help value (text, or Typer's placeholder for "not given") as text or None."""
    return value if isinstance(value, str) else None


def _no_such_command(name: str, commands: Mapping[str, Any]) -> str:
    safe = [c for c in commands if c not in SPENDING_COMMANDS]
    guesses = get_close_matches(name, safe)
    message = f"No such command {name!r}."
    if guesses:
        return message + " Did you mean " + ", ".join(repr(g) for g in guesses) + "?"
    return message + " `reef --help` lists the commands."


def _plain_flags(command: Any) -> None:
    """Give every flag under ``command`` an empty metavar, so help shows no ``<bool>``."""
    for param in getattr(command, "params", ()):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    original: Callable[[Any], Any] = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = original(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option
    for sub in (getattr(command, "commands", None) or {}).values():
        _plain_flags(sub)


def _light_coercion(command: Any) -> None:
    """Give the parameters under ``command`` a coercion that does not load pydantic for values
    that need no conversion (see the module docstring)."""
    if _light_param_class() is None:
        return
    for param in getattr(command, "params", ()):
        _make_light(param)
    original: Callable[[Any], Any] = command.get_help_option

    def get_help_option(ctx: Any) -> Any:  # made anew for every context
        option = original(ctx)
        if option is not None:
            _make_light(option)
        return option

    command.get_help_option = get_help_option
    for sub in (getattr(command, "commands", None) or {}).values():
        _light_coercion(sub)


def _make_light(param: Any) -> None:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and getattr(param, "_runtime_param", 0) is None:
        param._runtime_param = _light_param_class()(
            parameter_info=descriptor.parameter_info,
            annotation=descriptor.annotation,
            descriptor=descriptor,
        )


@cache
def _light_param_class() -> Any:
    """Typer's ``RuntimeParam`` for values that need no conversion (``None`` when this Typer
    has no such internals)."""
    try:
        from typer._coercion import RuntimeParam, build_runtime_param
    except ImportError:  # pragma: no cover - a Typer that coerces without pydantic
        return None

    @dataclass(frozen=True)
    class LightRuntimeParam(RuntimeParam):
        descriptor: Any = None

        # Typer's RuntimeParam.coerce answers None (and no values) itself; what reaches here
        # is a value. Parameters of any type get this class, so that a parameter left unset
        # (None) never builds an adapter; values other than these three kinds go to Typer's own.
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            descriptor = self.descriptor
            plain = descriptor.file_annotation is None and self.parameter_info.parser is None
            annotation = self.annotation
            if plain and annotation is str and type(value) is str:
                return value
            if plain and annotation == list[str] and all(type(item) is str for item in value):
                return list(value)
            if plain and annotation is int and type(value) is int and self._in_range(value):
                return value  # a default: the adapter returns it unchanged
            # Anything else (text for a number, a path, a choice, bytes): Typer's own.
            full = build_runtime_param(descriptor)
            return full._coerce_value(value, param=param, ctx=ctx)

        def _in_range(self, value: int) -> bool:
            info = self.parameter_info
            if getattr(info, "clamp", False):
                return False
            low, high = info.min, info.max
            return (low is None or value >= low) and (high is None or value <= high)

    return LightRuntimeParam


def version_callback(value: bool) -> None:
    """``reef --version``: print the installed version and exit."""
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("reef")
    except PackageNotFoundError:  # running from a source tree that was never installed
        installed = "unknown (not installed)"
    typer.echo(f"reef {installed}")
    raise typer.Exit(0)
