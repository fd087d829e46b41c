"""reef raises its own errors: no bare ValueError/TypeError/RuntimeError/Exception in src/
(the builtin meaning is available through reef.errors.InputError and MisuseError)."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "reef"
BARE = re.compile(
    r"\braise\s+(ValueError|TypeError|RuntimeError|Exception|AssertionError|KeyError)\b"
)


def test_no_bare_builtin_raises() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{lineno}: {line.strip()}"
        for path in SRC.rglob("*.py")
        for lineno, line in enumerate(path.read_text().splitlines(), 1)
        if BARE.search(line)
    ]
    assert not offenders, "use reef.errors instead of builtin exceptions:\n" + "\n".join(offenders)
