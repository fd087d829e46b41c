"""reef.chain (see DESIGN.md, package layout)."""

from __future__ import annotations

from reef.chain._indexer import (
    AbiEventDecoder,
    BlockSource,
    DecodedEvent,
    IndexedEvent,
    Indexer,
    IndexerCheckpoint,
    RawLog,
    Web3BlockSource,
    open_database,
    oyster_event_name,
)

__all__ = [
    "AbiEventDecoder",
    "BlockSource",
    "DecodedEvent",
    "IndexedEvent",
    "Indexer",
    "IndexerCheckpoint",
    "RawLog",
    "Web3BlockSource",
    "open_database",
    "oyster_event_name",
]
