"""JSON from strangers, parsed without letting its shape crash the process.

The standard library's parser recurses once per nested array or object. Importing web3 imports
py_ecc, which raises the interpreter's recursion limit to 100 000, so a document of about 70 000
``[`` no longer ends in a RecursionError: it overflows the C stack and the whole process dies of
SIGSEGV. A job's metadata (chain data any tenant writes), a request body and a provider's answer
are all such documents. :func:`loads_bounded` measures the nesting first (a linear scan, in C for
the common case) and refuses anything deeper than a limit no honest document comes near, then
parses; any other parser failure (an integer literal over Python's 4 300-digit limit raises a
plain ``ValueError``) becomes the same :class:`~reef.errors.InputError`.
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from typing import Any

from reef.errors import InputError

__all__ = ["MAX_JSON_DEPTH", "json_depth_exceeds", "loads_bounded"]

MAX_JSON_DEPTH = 64
"""How deeply arrays and objects may nest: reef's own documents nest three or four levels."""

# A string, to its closing quote or to the end when it never closes (written "unrolled", so
# that the engine does not try an alternative per character).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEPS = bytes.maketrans(b"[]{}", b"\x01\xff\x01\xff")  # +1 and -1 as signed bytes


def json_depth_exceeds(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``text``, read as JSON, opens more than ``limit`` arrays or objects at once.

    Brackets inside strings do not count, as the parser would not count them; the answer for a
    malformed document is an upper bound of what the parser would reach before it fails. The
    work is done by C code (the regex engine, ``bytes.translate``, ``itertools.accumulate``):
    for 5 MiB, about 0.3 s of brackets and 1 s of short strings holding brackets (a loop over
    the tokens in Python took 3 s); servers run it off their event loop.
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # cannot nest deeper than it has brackets (the common case)
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    depths = accumulate(array("b", brackets.translate(_STEPS)))
    return max(depths, default=0) > limit


def loads_bounded(text: str | bytes, *, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads(text)``, refusing documents nested deeper than ``max_depth``.

    Args:
        text: the document.
        what: what it is, for the message (``"job metadata"``).
        max_depth: the deepest nesting accepted.

    Raises:
        InputError: naming ``what``, when the text is not JSON or nests too deeply.
    """
    if json_depth_exceeds(text, max_depth):
        raise InputError(
            f"{what} is nested more than {max_depth} levels deep",
            hint="send a flat JSON document",
        )
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        # JSONDecodeError is a ValueError; so is an integer literal over Python's digit limit.
        raise InputError(f"{what} is not JSON: {exc}"[:300]) from exc
