"""What the fuzz tests share: one hypothesis profile, and mutations of real messages.

Every fuzz test starts from a real, valid message made by reef's own builders (or a public
vector) and mutates it: byte flips, truncation and insertion on the bytes, and structure-aware
mutations (CBOR values of another type, JSON values replaced) where the format has structure.
The property is always the same: a parser of a stranger's bytes answers with a value or with
one of reef's own errors, never a foreign exception, and quickly.

``derandomize=True`` makes CI reproducible; ``REEF_FUZZ_EXAMPLES=20000`` runs a longer campaign
locally (each test scales its own count from it).
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = ["FUZZ", "examples", "json_values", "mutated", "mutations", "replace_somewhere"]

_BASE = int(os.environ.get("REEF_FUZZ_EXAMPLES", "150"))


def examples(scale: float = 1.0) -> int:
    """How many examples a test runs: ``REEF_FUZZ_EXAMPLES`` (150 by default) times ``scale``."""
    return max(10, int(_BASE * scale))


FUZZ = settings(
    max_examples=examples(),
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

Mutation = tuple[str, int, bytes]

mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "cut", "insert", "delete"]),
        st.integers(min_value=0),
        st.binary(min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=5,
)
"""Edits of a byte string: flip a bit, set a byte, cut the tail, insert or delete bytes."""


def mutated(data: bytes, edits: list[Mutation]) -> bytes:
    """``data`` with ``edits`` applied in order (positions taken modulo the current length)."""
    out = bytearray(data)
    for op, position, payload in edits:
        if not out:
            out += payload
            continue
        at = position % len(out)
        if op == "flip":
            out[at] ^= 1 << (payload[0] % 8)
        elif op == "set":
            out[at] = payload[0]
        elif op == "cut":
            del out[at:]
        elif op == "insert":
            out[at:at] = payload
        else:
            del out[at : at + len(payload)]
    return bytes(out)


def json_values() -> Any:
    """Any JSON value (a strategy), nesting a few levels."""
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=12,
    )


def replace_somewhere(doc: Any, path: list[int], value: Any) -> Any:
    """``doc`` (a JSON value) with the value ``path`` leads to replaced by ``value``: each step
    picks a key or an index modulo the container's size, and the walk stops at a scalar."""
    if not path or not isinstance(doc, dict | list) or not doc:
        return value
    if isinstance(doc, dict):
        key = list(doc)[path[0] % len(doc)]
        return {**doc, key: replace_somewhere(doc[key], path[1:], value)}
    index = path[0] % len(doc)
    return [*doc[:index], replace_somewhere(doc[index], path[1:], value), *doc[index + 1 :]]
