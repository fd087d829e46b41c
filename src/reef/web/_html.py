"""HTML for the dashboard's pages: one layout, tables, definition lists, all escaped.

Pages are rendered on the server from plain Python (f-strings through :func:`esc`): a handful of
small pages do not need a template engine, and every value that reaches the page goes through
one escaping function. The stylesheet is inline and responsive (tables scroll sideways on a
phone; the navigation wraps), so pages work at 1280 px and at 390 px without a build step.
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

_STYLE = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b2430;
background:#f4f6f8;overflow-wrap:anywhere}
header{background:#0b3d5c;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1rem;
align-items:center}
header .brand{font-weight:700;font-size:1.1rem;margin-right:.5rem}
header a{color:#d7ecf7;text-decoration:none;padding:.15rem .35rem;border-radius:4px}
header a.active,header a:hover{background:#1a5a80;color:#fff}
main{max-width:1200px;margin:0 auto;padding:1rem}
h1{font-size:1.4rem;margin:.3rem 0 1rem}
h2{font-size:1.1rem;margin:1.4rem 0 .5rem}
section{background:#fff;border:1px solid #dde3e8;border-radius:8px;padding:.8rem 1rem;
margin-bottom:1rem}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:1rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e8ecef;vertical-align:top}
th{background:#f0f3f6;font-weight:600;white-space:nowrap}
dl{display:grid;grid-template-columns:minmax(7rem,max-content) 1fr;gap:.25rem .8rem;margin:0}
dt{color:#5a6b7b}
dd{margin:0;word-break:break-all}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem;
word-break:break-all}
.badge{display:inline-block;white-space:nowrap;padding:.05rem .45rem;border-radius:999px;font-size:.8rem;
background:#e3e8ec;color:#333}
.ok{background:#d6f5df;color:#11602b}.bad{background:#fde0e0;color:#8a1616}
.warn{background:#fff1cc;color:#6b4b00}
form.inline{display:flex;flex-wrap:wrap;gap:.4rem;align-items:center;margin:.3rem 0}
input,select,textarea,button{font:inherit}
input,select{padding:.25rem .4rem;border:1px solid #b9c4cc;border-radius:4px}
textarea{width:100%;min-height:7rem;font-family:ui-monospace,monospace;font-size:.8rem}
button{padding:.3rem .8rem;border:0;border-radius:4px;background:#0b6fa4;color:#fff;cursor:pointer}
button.danger{background:#b42318}
button:disabled{background:#9aa7b1;cursor:not-allowed}
pre.logs{background:#0f1720;color:#d5e3ee;padding:.6rem;border-radius:6px;max-height:24rem;
overflow:auto;font-size:.8rem;white-space:pre-wrap;word-break:break-all}
.muted{color:#6b7885}
.drop{border:2px dashed #9fb3c2;border-radius:8px;padding:.6rem;text-align:center;margin:.4rem 0}
.drop.over{background:#e6f2fa}
#token-state{margin-left:auto;font-size:.85rem}
@media (max-width:600px){main{padding:.5rem}section{padding:.6rem}
dl{grid-template-columns:1fr}dt{font-weight:600;margin-top:.3rem}}
"""


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
    blob = json.dumps(dict(data or {})).replace("</", "<\\/")
    tags = "".join(
        f'<script src="{esc(src)}"></script>' for src in ("/static/dashboard.js", *scripts)
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)} · reef</title><style>{_STYLE}</style></head><body>"
        f'<header><span class="brand">reef</span>{"".join(links)}'
        '<span id="token-state" class="badge">read-only</span></header>'
        f"<main><h1>{esc(title)}</h1>{body}</main>"
        f'<script id="page-data" type="application/json">{blob}</script>{tags}</body></html>'
    )
