"""Moved to :mod:`reef.chain.devnet._types`: the names code outside reef.chain still imports from
here, until those imports point at the devnet package."""

from __future__ import annotations

from reef.chain.devnet._types import DevnetFault as DevnetFault
from reef.chain.devnet._types import ExecutionReverted as ExecutionReverted
