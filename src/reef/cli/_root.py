"""The root ``reef`` command group: commands built on use, ``--version``, plain flags in
``--help``, safe suggestions, and start-up without pydantic.

Most of what a one-shot command (``reef attestation verify``) waited for was the rest of the
tree: importing every command module, and Typer turning every function of every module into a
Click command (hundreds of options). :class:`ReefTyper` takes a table of :class:`LazyCommand`
instead (the name, module and listed help of each top-level command); ``reef --help`` lists the
table and ``reef <name> ...`` imports that one module and builds that one command.

Two things Typer does by default do not suit a command that spends money:

- a mistyped command gets "Did you mean …?" from ``difflib``; ``reef deposit`` (before it existed)
  got **``deploy``**, the command that opens a paid job. Every group of the tree suggests only
  commands that spend nothing; a typo near one that spends (``reef jobs depost``) gets the list
  of the group's commands instead, as does a name near none (``reef enclave list``: ``ps``).
- Typer's Rich help prints a type after every option, so every flag reads ``--debug <bool>`` as
  if it took a value. Flags take none: :class:`ReefGroup` gives every flag of the whole command
  tree (``--help`` included) an empty metavar once, when Typer builds the tree.
- Typer's Rich help keeps a docstring's line breaks, so a paragraph wrapped at the source's
  width came out ragged in an 80-column terminal (a line, then a stub of two words). Each
  paragraph of a command's help is made one line when the tree is built, for Rich to wrap to
  the terminal (a paragraph starting with Click's ``\\b`` marker keeps its lines).

And one costs every command time: Typer 0.29 coerces each parameter's value through a pydantic
``TypeAdapter`` built on first use, so the first command run imports pydantic and builds an
adapter per parameter (a quarter of ``reef attestation verify``'s start-up), although almost
every value needs no conversion: a ``str`` option's value is the string given. :class:`ReefGroup`
gives such parameters (``str``, ``list[str]``, ``int``) a coercion that returns the values that
need none as they are (exactly what the adapter returns for them) and hands every other value to
Typer's own coercion, built then. With a Typer without these internals, nothing is changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from functools import cache
from importlib import import_module
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command_name

from reef.errors import MisuseError

try:  # Typer 0.29 vendors Click: its usage errors live in typer._click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older Typer raises Click's own
    from click.exceptions import UsageError  # type: ignore[assignment]

__all__ = [
    "SPENDING_COMMANDS",
    "LazyCommand",
    "ReefGroup",
    "ReefTyper",
    "command_group",
    "version_callback",
]

SPENDING_COMMANDS = frozenset(
    {
        "deploy",
        "deposit",
        "jobs deposit",
        "fn deploy",
        "fn call",
        "proofs request",
        "executor register",
        "prover register",
    }
)
"""Commands (their path under ``reef``) that pay or stake: never offered as a guess for a typo."""


def command_group(
    name: str, *, runs_alone: bool = False
) -> tuple[typer.Typer, Callable[[typer.Typer], None]]:
    """The Typer of the command group ``reef NAME`` and the ``register(root)`` that adds it.

    Its help is the one the root's table lists for it (``reef.cli``), written once, there; a
    module declares its group as ``app, register = command_group("image")``. ``reef NAME`` alone
    prints that help, or with ``runs_alone`` runs the group's callback (``reef chain`` runs the
    devnet).
    """
    from reef.cli import _COMMANDS  # loaded: a command module is imported after its package

    (entry,) = [command for command in _COMMANDS if command.name == name]
    app = typer.Typer(
        help=entry.help, no_args_is_help=not runs_alone, invoke_without_command=runs_alone
    )

    def register(root: typer.Typer) -> None:
        root.add_typer(app, name=name)

    return app, register


@dataclass(frozen=True)
class LazyCommand:
    """A top-level command (or command group) of ``reef``, known without importing its module.

    ``module`` is imported, and its ``register(root)`` called, only when the command is run (or
    its own help shown); ``help`` and ``panel`` are what ``reef --help`` lists for it: the first
    paragraph of the command's help and its ``rich_help_panel``, the same the built command has
    (a test builds every command and compares).
    """

    name: str
    module: str
    help: str
    panel: str | None = None


class ReefGroup(TyperGroup):
    """The ``reef`` group (``ReefTyper(commands=..., suggest_commands=False)``).

    Commands are built when they are run, not when ``reef`` starts: importing a command's module
    (and what it imports) and having Typer turn its functions into Click commands by reading
    their signatures took most of the start-up when done for the whole tree. ``table`` (filled by
    :class:`ReefTyper`) names each top-level command, its module and the help ``reef --help``
    lists; running ``reef <name> ...`` imports that one module and builds that one command.
    """

    table: Mapping[str, LazyCommand] = {}
    pretty_exceptions_short: bool = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _adapt(self, ())

    def list_commands(self, ctx: Any) -> list[str]:
        own = [name for name in super().list_commands(ctx) if name not in self.table]
        return [*own, *self.table]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in self.table:
            return command
        entry = self.table[cmd_name]
        if ctx.meta.get(_LISTING):
            # What a help listing reads: the name, help and panel, nothing imported or built.
            return TyperCommand(name=cmd_name, help=entry.help, rich_help_panel=entry.panel)
        built = self._build(entry)
        self.commands[cmd_name] = built
        return built

    def format_help(self, ctx: Any, formatter: Any) -> None:
        ctx.meta[_LISTING] = True
        try:
            super().format_help(ctx, formatter)
        finally:
            ctx.meta.pop(_LISTING, None)

    def _build(self, entry: LazyCommand) -> Any:
        """Import ``entry``'s module, let it register on a Typer of its own (the modules'
        ``register(root)``), and build the one command of it named ``entry.name``."""
        collector = typer.Typer()
        import_module(entry.module).register(collector)
        for group_info in collector.registered_groups:
            if group_info.name == entry.name and group_info.typer_instance is not None:
                built = typer.main.get_command(group_info.typer_instance)
                built.name = entry.name
                # Built alone, a Typer app offers shell completion; as a group of reef it does not.
                built.params = [p for p in built.params if p.name not in _COMPLETION_PARAMS]
                break
        else:
            for command_info in collector.registered_commands:
                callback = command_info.callback
                name = command_info.name or get_command_name(getattr(callback, "__name__", ""))
                if name == entry.name:
                    built = typer.main.get_command_from_info(
                        command_info,
                        pretty_exceptions_short=self.pretty_exceptions_short,
                        rich_markup_mode=self.rich_markup_mode,
                    )
                    break
            else:
                raise MisuseError(
                    f"{entry.module} registers no command {entry.name!r}",
                    hint="the command table in reef/cli/__init__.py names a command its module "
                    "does not register: correct the table",
                )
        _adapt(built, (entry.name,))
        return built


_LISTING = "reef.cli.listing"
"""``ctx.meta`` key set while ``reef --help`` lists the commands (read by ``get_command``)."""

_COMPLETION_PARAMS = frozenset({"install_completion", "show_completion"})


class ReefTyper(typer.Typer):
    """The ``reef`` app: its commands are a table of :class:`LazyCommand`, built on use
    (:class:`ReefGroup`)."""

    def __init__(self, *, commands: Sequence[LazyCommand] = (), **kwargs: Any) -> None:
        # A group class of this app's own, so its table is this app's and nothing global.
        attributes = {
            "table": {entry.name: entry for entry in commands},
            "pretty_exceptions_short": kwargs.get("pretty_exceptions_short", True),
        }
        group = type("ReefRootGroup", (ReefGroup,), attributes)
        super().__init__(cls=group, **kwargs)


def _adapt(command: Any, path: tuple[str, ...]) -> None:
    """What reef changes in a command tree Typer built (the root's, or a command's at ``path``
    when it is built on use): see the module docstring."""
    _plain_flags(command)
    _flowing_help(command)
    _careful_suggestions(command, path)
    _light_coercion(command)


def _no_such_command(name: str, commands: Iterable[str], path: tuple[str, ...]) -> str:
    """The error for ``reef PATH NAME`` when the group at ``path`` has no command ``name``."""
    listed = list(commands)
    safe = [c for c in listed if " ".join((*path, c)) not in SPENDING_COMMANDS]
    guesses = get_close_matches(name, safe)
    message = f"No such command {name!r}."
    if guesses:
        return message + " Did you mean " + ", ".join(repr(g) for g in guesses) + "?"
    if not path:  # the root has too many to list
        return message + " `reef --help` lists the commands."
    return message + f" `reef {' '.join(path)}` has: " + ", ".join(listed) + "."


def _careful_suggestions(command: Any, path: tuple[str, ...]) -> None:
    """Give every group under ``command`` (at ``path``, the root's included) reef's answer to
    an unknown command: :func:`_no_such_command` instead of Click's "Did you mean" over every
    command."""
    commands = getattr(command, "commands", None)
    if commands is None:
        return
    original: Callable[[Any, list[str]], Any] = command.resolve_command

    def resolve_command(ctx: Any, args: list[str]) -> Any:
        try:
            return original(ctx, args)
        except UsageError as exc:
            if args and not args[0].startswith("-"):
                exc.message = _no_such_command(args[0], command.list_commands(ctx), path)
            raise

    command.resolve_command = resolve_command
    for name, sub in commands.items():
        _careful_suggestions(sub, (*path, name))


def _commands_under(command: Any) -> Iterator[Any]:
    """``command`` and every command of the tree below it."""
    yield command
    for sub in (getattr(command, "commands", None) or {}).values():
        yield from _commands_under(sub)


def _fix_params(command: Any, fix: Callable[[Any], None]) -> None:
    """Apply ``fix`` to every parameter under ``command``, the help option included: Click makes
    that one anew for every context, so each command's ``get_help_option`` applies ``fix`` to
    the one it makes."""
    for each in _commands_under(command):
        for param in getattr(each, "params", ()):
            fix(param)
        each.get_help_option = _fixing_help_option(each.get_help_option, fix)


def _fixing_help_option(
    original: Callable[[Any], Any], fix: Callable[[Any], None]
) -> Callable[[Any], Any]:
    def get_help_option(ctx: Any) -> Any:
        option = original(ctx)
        if option is not None:
            fix(option)
        return option

    return get_help_option


def _plain_flags(command: Any) -> None:
    """Give every flag under ``command`` an empty metavar, so help shows no ``<bool>``."""
    _fix_params(command, _plain_flag)


def _plain_flag(param: Any) -> None:
    if getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = ""


def _flowing(text: str) -> str:
    """``text`` with each paragraph on one line (a paragraph marked ``\\b`` kept as it is)."""
    return "\n\n".join(
        paragraph if paragraph.startswith("\b") else " ".join(paragraph.split())
        for paragraph in text.split("\n\n")
    )


def _flowing_help(command: Any) -> None:
    """Make every paragraph of the help under ``command`` one line (see the module docstring)."""
    for each in _commands_under(command):
        if isinstance(getattr(each, "help", None), str):
            each.help = _flowing(each.help)


def _light_coercion(command: Any) -> None:
    """Give the parameters under ``command`` a coercion that does not load pydantic for values
    that need no conversion (see the module docstring)."""
    if _light_param_class() is not None:
        _fix_params(command, _make_light)


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
