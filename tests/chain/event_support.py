"""Typed market events for tests, written the short way: Oyster's stored names and fields.

``market_event("Deposited", JOB, {"amount": "0x10"})`` is the :class:`reef.chain.JobDeposited` an
indexer would read back from that ``job_events`` row, through the market's own
:meth:`~reef.chain.EventDecoder.from_json`; address fields a test does not care about (``from``,
``to``) default to the zero address, and the job id to ``job_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reef.chain import ChainEvent, market_decoder

MARKET = "0x" + "5a" * 20
ZERO = "0x" + "00" * 20
_DECODER = market_decoder()


def market_event(
    name: str, job_id: str | None, data: Mapping[str, Any] | None = None, *, block: int = 0
) -> ChainEvent:
    """The typed event of a stored market event ``name`` with ``data`` (see the module)."""
    fields: dict[str, Any] = {"from": ZERO, "to": ZERO}
    if job_id is not None:
        fields["job_id"] = job_id
    fields.update(data or {})
    return _DECODER.from_json(
        name, fields, address=MARKET, block_number=block, log_index=0, tx_hash="0x" + "00" * 32
    )
