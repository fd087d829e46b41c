"""What the CLI tests share: reading the ``name  value`` rows a command prints for people."""

from __future__ import annotations


def printed_rows(text: str) -> dict[str, str]:
    """Each printed ``name  value`` row as ``{name: value}`` (the value's spacing kept)."""
    rows: dict[str, str] = {}
    for line in text.splitlines():
        name, _, value = line.strip().partition(" ")
        rows[name] = value.strip()
    return rows
