"""Moved to :mod:`reef.chain.devnet._rpc`: the names code outside reef.chain still imports from
here, until those imports point at the devnet package."""

from __future__ import annotations

from reef.chain.devnet._rpc import FILTER_TIMEOUT_S as FILTER_TIMEOUT_S
from reef.chain.devnet._rpc import MAX_BATCH as MAX_BATCH
from reef.chain.devnet._rpc import MAX_DEPTH as MAX_DEPTH
from reef.chain.devnet._rpc import DevnetRpc as DevnetRpc
from reef.chain.devnet._rpc import parse_json as parse_json
