"""Random ABI values for the word decoder's and checker's tests: each type reef's decoder reads,
with a hypothesis strategy over its whole range."""

from __future__ import annotations

from hypothesis import strategies as st

ABI_VALUES: dict[str, st.SearchStrategy[object]] = {
    "uint256": st.integers(0, 2**256 - 1),
    "uint64": st.integers(0, 2**64 - 1),
    "uint8": st.integers(0, 255),
    "int256": st.integers(-(2**255), 2**255 - 1),
    "int32": st.integers(-(2**31), 2**31 - 1),
    "address": st.binary(min_size=20, max_size=20),
    "bool": st.booleans(),
    "bytes32": st.binary(min_size=32, max_size=32),
    "bytes4": st.binary(min_size=4, max_size=4),
    "bytes": st.binary(max_size=200),
    "string": st.text(max_size=80),
}


@st.composite
def abi_values(draw: st.DrawFn) -> tuple[list[str], list[object]]:
    """One to six ABI types and a value of each."""
    types = draw(st.lists(st.sampled_from(sorted(ABI_VALUES)), min_size=1, max_size=6))
    return types, [draw(ABI_VALUES[t]) for t in types]
