"""How commands speak: JSON for machines, Rich for people, errors on stderr.

Consoles are created per call rather than held in module state, so tests (and Typer's CliRunner)
capture output reliably.

Much of what commands print was written by strangers: a market's or job's name, a provider's
status and errors, a tenant's console, a server's refusal quoted in an error. So nothing printed
here is read as Rich markup or emoji codes (``[link=…]`` would become a link, ``:warning:`` a
sign), and every line has its terminal controls written out (:func:`reef.encoding.terminal_text`).
JSON output escapes them by itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import typer

from reef.encoding import terminal_text
from reef.errors import AttestationError, InputError, ReefError

if TYPE_CHECKING:
    from rich.console import Console

    from reef.attestation import TrustedRoot
    from reef.chain import TxProgress

__all__ = [
    "console",
    "err_console",
    "ether",
    "fail",
    "failing",
    "note",
    "print_json",
    "print_mapping",
    "print_result",
    "print_result_and_rows",
    "print_rows",
    "print_table",
    "say",
    "tell",
    "tx_printer",
    "warn_insecure_root",
]


# Rich is imported when something is printed through it, not by every command (a --json run
# never needs it): it is a fifth of a one-shot command's start-up.


def console() -> Console:
    from rich.console import Console

    return Console(soft_wrap=True, highlight=False, markup=False, emoji=False)


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False, markup=False, emoji=False)


def print_json(data: Any) -> None:
    """Write ``data`` as one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def print_mapping(data: Mapping[str, Any], *, title: str | None = None) -> None:
    """A two-column key/value list for people.

    A value too long for the line wraps at its spaces only: an id, a hash, a key or a URL is
    never cut in two, so it is copied and ``grep``-ed whole (a terminal narrower than it wraps
    it softly, which copying undoes). Rich's tables fold such a word at the console's width
    (80 columns in a pipe), which split a job id or a PCR over two lines.
    """
    from rich.text import Text

    out = console()
    rows = [(terminal_text(str(key)), _human(value)) for key, value in data.items()]
    indent = max((len(key) for key, _ in rows), default=0) + 2
    room = max(out.width - indent, 20)
    if title:
        out.print(Text(title, style="bold"))
    for key, value in rows:
        lines = _wrapped(value, room)
        out.print(Text.assemble((key, "bold"), (" " * (indent - len(key)) + lines[0]).rstrip()))
        for line in lines[1:]:
            out.print((" " * indent + line).rstrip())


def _wrapped(text: str, room: int) -> list[str]:
    """``text``'s lines, each longer than ``room`` wrapped at its spaces (never inside a word)."""
    import textwrap

    lines: list[str] = []
    for line in text.split("\n"):
        if len(line) <= room:
            lines.append(line)
            continue
        lines.extend(
            textwrap.wrap(line, room, break_long_words=False, break_on_hyphens=False) or [line]
        )
    return lines or [""]


def _longest_word(text: str) -> int:
    return max((len(word) for word in text.split()), default=0)


def iso_ms(ms: int) -> str:
    """Unix milliseconds as an ISO 8601 UTC time to the millisecond, as attestations count."""
    from datetime import UTC, datetime

    try:
        stamp = datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return "(out of range)"
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def attested_time(ms: int) -> str:
    """An attestation's timestamp for people: the milliseconds it signs, and when that is."""
    return f"{ms} ({iso_ms(ms)})" if ms else "(none)"


def print_result(
    data: Mapping[str, Any],
    as_json: bool,
    *,
    title: str | None = None,
    shown: Mapping[str, Any] | None = None,
) -> None:
    """A command's result: ``data`` as JSON with ``--json``, else a key/value table of
    ``shown`` (what people read, when it differs from ``data``) or ``data``."""
    if as_json:
        print_json(data)
    else:
        print_mapping(data if shown is None else shown, title=title)


def print_result_and_rows(
    data: Mapping[str, Any], as_json: bool, *, rows: str, columns: Sequence[str]
) -> None:
    """A result with one list of records, ``data[rows]``: ``data`` as JSON with ``--json``; for
    people, its other fields as a key/value table, then that list as a table of ``columns``."""
    if as_json:
        print_json(data)
        return
    print_mapping({k: v for k, v in data.items() if k != rows})
    print_table(data[rows], columns)


def print_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, title: str | None = None
) -> None:
    """A table with one row per mapping, for people.

    Nothing is cut short with ``…``: a column is never narrower than its longest word (its
    header's too, when the console has room for all of them), so an address, an id or a date
    stays whole; a table too wide even so folds its longest words rather than hide their ends.
    """
    from rich.table import Table

    cells = [[_human(row.get(column, "")) for column in columns] for row in rows]
    out = console()
    # A box border on each side of each column and a space of padding on each side of its text.
    widths = _column_widths(columns, cells, out.width - 3 * len(columns) - 1)
    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, width=None if widths is None else widths[i], overflow="fold")
    for row in cells:
        table.add_row(*row)
    out.print(table)


def _column_widths(
    columns: Sequence[str], cells: Sequence[Sequence[str]], room: int
) -> list[int] | None:
    """Each column's width when the table must be narrowed to ``room``; ``None`` when it fits
    as it is, or cannot keep its words whole at all (Rich then folds them).

    Rich narrows a table too wide by a ratio over every column, which cut short ids and names
    that would have fitted. Here each column keeps its longest word, then as many headers as
    fit stay whole (the shortest first), a header that does not is cut in as few pieces as the
    room left allows, and the rest goes to the columns furthest from their natural width.
    """
    texts = [[column, *(row[i] for row in cells)] for i, column in enumerate(columns)]
    natural = [max(len(line) for text in column for line in text.split("\n")) for column in texts]
    if sum(natural) <= room:
        return None
    words = [max(_longest_word(text) for text in column[1:]) if cells else 0 for column in texts]
    headed = [
        max(width, _longest_word(column)) for width, column in zip(words, columns, strict=True)
    ]
    if sum(words) > room:
        return None
    widths = [max(width, 1) for width in words]
    for i in sorted(range(len(widths)), key=lambda i: headed[i] - widths[i]):  # cheapest first
        if sum(widths) + headed[i] - widths[i] <= room:
            widths[i] = max(widths[i], headed[i])
    for i in range(len(widths)):  # what is left goes to a cut header first: fewer pieces
        widths[i] = max(widths[i], min(headed[i], widths[i] + room - sum(widths)))
    for _ in range(room - sum(widths)):
        i = max(range(len(widths)), key=lambda i: natural[i] - widths[i])
        if natural[i] <= widths[i]:
            break
        widths[i] += 1
    return widths


def print_rows(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    as_json: bool,
    *,
    title: str | None = None,
    shown: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """A command's list: JSON with ``--json``, else a table of ``columns`` of ``shown`` (what
    people read, when it differs from ``rows``) or ``rows``."""
    if as_json:
        print_json(rows)
    else:
        print_table(rows if shown is None else shown, columns, title=title)


def _human(value: Any) -> str:
    if isinstance(value, bool):  # as `reef image build` says it: "debug  no", not Python's False
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return "\n".join(f"{terminal_text(str(k))}: {_human(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_human(v) for v in value)
    return "" if value is None else terminal_text(str(value))


def _lines(text: str) -> str:
    """``text`` with each of its lines made :func:`~reef.encoding.terminal_text`: reef's own
    messages may span lines, and what a stranger wrote within a line stays text."""
    return "\n".join(terminal_text(line) for line in text.split("\n"))


def ether(wei: int) -> str:
    """Wei as an exact ether decimal string (gas money as ``reef chain`` and ``reef wallet``
    show it; amounts of the market's token are :func:`reef.chain.format_amount`'s)."""
    from reef.chain import format_amount

    return format_amount(wei, decimals=18)


def rusd(amount: int, *, base_units: bool = False) -> str:
    """An amount of the market's token as people read it, ``0.5 rUSD``; with ``base_units``
    also as the integer a flag (``--stake``) and ``--json`` take: ``0.5 rUSD (500000 base
    units)``."""
    from reef.chain import format_amount

    shown = f"{format_amount(amount)} rUSD"
    return f"{shown} ({amount} base units)" if base_units else shown


def say(line: str = "") -> None:
    """A plain line on stdout, flushed at once: what a long-running command prints for people
    and scripts alike (scripts and the tests wait for its ``ready`` on a pipe)."""
    typer.echo(_lines(line))


def tell(line: str, *, style: str | None = None) -> None:
    """A line for people on stderr (stdout stays for results and ``--json``), printed as it is:
    never read as Rich markup, since paths, URLs (``[::1]``) and messages may hold brackets."""
    err_console().print(_lines(line), style=style)


def note(message: str) -> None:
    """A progress line on stderr (stdout stays for results and ``--json``)."""
    tell(f"… {message}")


def tx_printer(progress: TxProgress) -> None:
    """Print a transaction's progress with :func:`note`."""
    if progress.stage == "sending":
        note(f"sending {progress.description}")
    elif progress.stage == "mined":
        note(f"{progress.description}: mined in block {progress.block_number}")


# What trusting each insecure root (TrustedRoot.insecure) means, said the same by every command.
_INSECURE_ROOTS = {
    "dev": "the dev TEE root: INSECURE, dev only. It proves nothing outside this machine",
    "mock": "Oyster's public mock root: INSECURE. Anyone can sign under it",
}


def warn_insecure_root(root: TrustedRoot, what: str, *, advice: str = "") -> None:
    """When ``root`` is insecure, say on stderr that ``what`` (``"verified"``, ``"the KMS
    identity is attested"``) holds only under it, then ``advice`` if any."""
    if not root.insecure:
        return
    if root.provider is not None:
        risk = (
            f"provider {root.provider}'s own dev TEE root, taken on its word: INSECURE. It proves "
            "nothing against that provider"
        )
    else:
        risk = _INSECURE_ROOTS.get(root.name, f"root {root.name!r}: INSECURE")
    tell(f"warning: {what} under {risk}" + (f". {advice}." if advice else "."))


def fail(error: ReefError, *, prefix: str = "error", code: int = 1) -> typer.Exit:
    """Report ``error`` on stderr and return the Exit to raise (``raise fail(exc)``)."""
    tell(f"{prefix}: {error.message}")
    if error.hint:
        tell(f"hint: {error.hint}")
    return typer.Exit(code)


@dataclass(frozen=True, slots=True)
class _Failing:
    """The context manager :func:`failing` returns."""

    code: int
    attestation: str | None
    input_code: int | None

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Returns None, never True: no exception is swallowed (and type checkers know it).
        if not isinstance(error, ReefError):
            return
        code = self.code
        if self.input_code is not None and isinstance(error, InputError):
            code = self.input_code
        if isinstance(error, AttestationError) and self.attestation is not None:
            raise fail(error, prefix=f"{self.attestation}: {error.reason}", code=code) from error
        raise fail(error, code=code) from error


def failing(
    *, code: int = 1, attestation: str | None = None, input_code: int | None = None
) -> _Failing:
    """A block whose reef errors end the command: reported with :func:`fail`, exit ``code``
    (1 refused or failed, 2 a usage error). Anything else passes through; Ctrl-C too, which
    Typer turns into exit 130 (the shell's code for SIGINT) without a message.

    With ``attestation``, refused evidence (an :class:`~reef.errors.AttestationError`) is
    reported under that prefix and the check that refused it: ``failing(attestation="attestation
    rejected")`` prints ``attestation rejected: expired: ...``.

    With ``input_code``, an :class:`~reef.errors.InputError` exits with it instead: for a block
    where the user's input is read and used together, so a bad flag or file still says usage
    error (``failing(input_code=2)``) while a refusal or failure says 1."""
    return _Failing(code, attestation, input_code)
