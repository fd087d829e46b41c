"""Moved to :mod:`reef.chain.devnet._server`: the names code outside reef.chain still imports from
here, until those imports point at the devnet package."""

from __future__ import annotations

from reef.chain.devnet._server import MAX_BODY as MAX_BODY
