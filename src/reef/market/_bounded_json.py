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
from typing import Any

from reef.errors import InputError

__all__ = ["MAX_JSON_DEPTH", "json_depth_exceeds", "loads_bounded"]

MAX_JSON_DEPTH = 64
"""How deeply arrays and objects may nest: reef's own documents nest three or four levels."""

# A string (to its closing quote, or to the end when it never closes: matching from each later
# quote again would make the scan quadratic), or one bracket.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\Z)|[\[\]{}]', re.DOTALL)


def json_depth_exceeds(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``text``, read as JSON, opens more than ``limit`` arrays or objects at once.

    Brackets inside strings do not count, as the parser would not count them; the answer for a
    malformed document is an upper bound of what the parser would reach before it fails.
    """
    chars = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    if chars.count("[") + chars.count("{") <= limit:
        return False  # cannot nest deeper than it has brackets (the common, C-speed case)
    depth = 0
    for match in _TOKEN.finditer(chars):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > limit:
                return True
        elif token in ("]", "}"):
            depth -= 1
    return False


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
