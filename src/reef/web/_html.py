"""HTML for the dashboard's pages: one layout, tables, definition lists, all escaped.

Pages are rendered on the server from plain Python (f-strings through :func:`esc`): a handful of
small pages do not need a template engine, and every value that reaches the page goes through
one escaping function. The stylesheet is ``static/dashboard.css`` (a file, not inline, so the
Content-Security-Policy allows no inline style either) and responsive (tables scroll sideways on
a phone; the navigation wraps), so pages work at 1280 px and at 390 px without a build step.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reef._clock import format_time

__all__ = [
    "NAV",
    "amount",
    "badge",
    "dl",
    "esc",
    "page",
    "short",
    "table",
    "when",
]

NAV: tuple[tuple[str, str], ...] = (
    ("/", "Overview"),
    ("/jobs", "Jobs"),
    ("/enclaves", "Enclaves"),
    ("/providers", "Providers"),
    ("/verifier", "Verifier"),
    ("/kms", "KMS"),
    ("/attestation", "Attestation"),
)


def esc(value: object) -> str:
    """``value`` as text safe inside HTML (``None`` is empty)."""
    return "" if value is None else html.escape(str(value), quote=True)


def short(value: str, keep: int = 10) -> str:
    """A long hex string shortened for a table cell (the whole value in its title)."""
    text = str(value)
    if len(text) <= 2 * keep + 1:
        return f'<span class="mono">{esc(text)}</span>'
    return f'<span class="mono" title="{esc(text)}">{esc(text[:keep])}…{esc(text[-4:])}</span>'


def amount(base_units: int | None, decimals: int = 6, symbol: str = "rUSD") -> str:
    """Base units of the token as a decimal string (integer arithmetic, never floats)."""
    if base_units is None:
        return ""
    sign = "-" if base_units < 0 else ""
    whole, frac = divmod(abs(base_units), 10**decimals)
    digits = f"{frac:0{decimals}d}".rstrip("0")
    return f"{sign}{whole}{'.' + digits if digits else ''} {symbol}".strip()


def when(unix_s: int | None) -> str:
    """A Unix time in UTC, or ``never``."""
    return "never" if unix_s is None else format_time(unix_s, utc=True)


def badge(text: str, kind: str = "") -> str:
    return f'<span class="badge {esc(kind)}">{esc(text)}</span>'


def dl(items: Mapping[str, object], *, raw: Iterable[str] = ()) -> str:
    """A definition list; values are escaped unless their key is in ``raw`` (already HTML)."""
    trusted = set(raw)
    rows = "".join(
        f"<dt>{esc(k)}</dt><dd>{v if k in trusted else esc(v)}</dd>" for k, v in items.items()
    )
    return f"<dl>{rows}</dl>"


def table(
    rows: Sequence[Mapping[str, object]],
    columns: Sequence[str],
    *,
    raw: Iterable[str] = (),
    empty: str = "nothing yet",
    row_id: str | None = None,
) -> str:
    """A table of ``rows`` in ``columns``; cells are escaped unless their column is in ``raw``."""
    if not rows:
        return f'<p class="muted">{esc(empty)}</p>'
    trusted = set(raw)
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        ident = f' id="{esc(row[row_id])}"' if row_id and row_id in row else ""
        cells = "".join(
            f"<td>{row.get(c, '') if c in trusted else esc(row.get(c, ''))}</td>" for c in columns
        )
        body.append(f"<tr{ident}>{cells}</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def page(
    title: str,
    body: str,
    *,
    active: str = "",
    extra_nav: Sequence[tuple[str, str]] = (),
    scripts: Sequence[str] = (),
    data: Mapping[str, Any] | None = None,
) -> str:
    """A whole page: header with navigation, ``body`` (HTML), then ``scripts`` (static paths).

    ``data`` is handed to the page's scripts as JSON in ``<script id="page-data">``.
    """
    links = []
    for href, label in (*NAV, *extra_nav):
        cls = ' class="active"' if href == active else ""
        links.append(f'<a href="{esc(href)}"{cls}>{esc(label)}</a>')
    # Every "<" escaped, not only "</": "<!--<script" in a value would otherwise put the rest of
    # the page inside this element (the HTML parser's "double escaped" script state).
    blob = json.dumps(dict(data or {})).replace("<", "\\u003c")
    tags = "".join(
        f'<script src="{esc(src)}"></script>' for src in ("/static/dashboard.js", *scripts)
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)} · reef</title>"
        '<link rel="stylesheet" href="/static/dashboard.css"></head><body>'
        f'<header><span class="brand">reef</span>{"".join(links)}'
        '<span id="token-state" class="badge">read-only</span></header>'
        f"<main><h1>{esc(title)}</h1>{body}</main>"
        f'<script id="page-data" type="application/json">{blob}</script>{tags}</body></html>'
    )
