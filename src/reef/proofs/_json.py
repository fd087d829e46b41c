"""How deeply a JSON text nests, measured before it is parsed.

Strangers write the JSON the proof market parses (an ask's private inputs, a market's
metadata). CPython's ``json`` recurses once per ``[`` or ``{``: a text nested deeper than the
interpreter's recursion limit raises :class:`RecursionError`, and where a library has raised that
limit, the C stack overflows and the process dies of a segmentation fault. Deflate packs a
hundred thousand brackets into a few hundred bytes, so the depth is measured first, in one linear
pass that never recurses, and parsing refuses what nests deeper than its format can.
"""

from __future__ import annotations

import itertools
import re

__all__: list[str] = []  # the package's own helper (private inputs, market metadata)

# A JSON string (its escapes included), whose brackets are text, not structure.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (0 for a scalar); an unbalanced
    text counts its opening brackets, which is all that matters here: its depth as parsed."""
    brackets = re.sub(r"[^\[\]{}]", "", _STRING.sub("", text))
    return max(itertools.accumulate(_STEP[ord(c)] for c in brackets), default=0)
