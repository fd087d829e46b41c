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
from reef.errors import AttestationError, ReefError

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
    """A two-column key/value table for people."""
    from rich.table import Table

    table = Table(show_header=False, title=title, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in data.items():
        table.add_row(str(key), _human(value))
    console().print(table)


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
    """A table with one row per mapping, for people."""
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_human(row.get(column, "")) for column in columns))
    console().print(table)


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

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Returns None, never True: no exception is swallowed (and type checkers know it).
        if isinstance(error, AttestationError) and self.attestation is not None:
            raise fail(
                error, prefix=f"{self.attestation}: {error.reason}", code=self.code
            ) from error
        if isinstance(error, ReefError):
            raise fail(error, code=self.code) from error


def failing(*, code: int = 1, attestation: str | None = None) -> _Failing:
    """A block whose reef errors end the command: reported with :func:`fail`, exit ``code``
    (1 refused or failed, 2 a usage error). Anything else passes through; Ctrl-C too, which
    Typer turns into exit 130 (the shell's code for SIGINT) without a message.

    With ``attestation``, refused evidence (an :class:`~reef.errors.AttestationError`) is
    reported under that prefix and the check that refused it: ``failing(attestation="attestation
    rejected")`` prints ``attestation rejected: expired: ...``."""
    return _Failing(code, attestation)
