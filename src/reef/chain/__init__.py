"""reef.chain (see DESIGN.md, package layout).

The devnet's names (:class:`Devnet`, its provider, server and :class:`TxRequest`) are imported on
first use (PEP 562 ``__getattr__``): the devnet runs on py-evm, whose import takes about a second,
and a client of a chain (every market command) never needs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from reef.chain._artifacts import Artifact, load_artifact
from reef.chain._block_source import BlockRef, BlockSource, RawLog, Web3BlockSource
from reef.chain._clients import KmsRegistryClient, TokenClient
from reef.chain._deploy import DEFAULT_FUND_AMOUNT, Deployment, deploy_contracts
from reef.chain._devnet_accounts import DEV_MNEMONIC, DEVNET_CHAIN_ID, DevAccount, dev_accounts
from reef.chain._devnet_state import DevnetInfo, read_devnet_info
from reef.chain._events import (
    ChainEvent,
    EventDecoder,
    EventRecord,
    ImageApproved,
    ImageRevoked,
    JobClosed,
    JobDeposited,
    JobEvent,
    JobMetadataUpdated,
    JobOpened,
    JobReviseRateCancelled,
    JobReviseRateFinalized,
    JobReviseRateInitiated,
    JobSettled,
    JobWithdrew,
    KmsRegistryEvent,
    LockCreated,
    LockDeleted,
    LockWaitTimeUpdated,
    MarketEvent,
    ProviderAdded,
    ProviderRemoved,
    ProviderUpdatedWithCp,
    TokenUpdated,
    decode_market_log,
    kms_registry_decoder,
    market_decoder,
    oyster_event_name,
)
from reef.chain._indexer import (
    IndexedContract,
    IndexedEvent,
    Indexer,
    IndexerCheckpoint,
    open_database,
)
from reef.chain._market import (
    MAX_CP_BYTES,
    MAX_METADATA_BYTES,
    RATE_LOCK_SELECTOR,
    MarketClient,
)
from reef.chain._reasons import Revert
from reef.chain._tx import ProgressCallback, Sender, TxProgress, TxResult
from reef.chain._types import (
    EXTRA_DECIMALS,
    MAX_RATE,
    RATE_SCALE,
    TOKEN_DECIMALS,
    Address,
    Amount,
    Job,
    JobId,
    Rate,
    RateLock,
    format_amount,
    job_index,
    parse_address,
    parse_amount,
    parse_job_id,
    rate_per_hour,
)

if TYPE_CHECKING:
    from reef.chain._devnet import Devnet, TxRequest
    from reef.chain._devnet_provider import DevnetProvider
    from reef.chain._devnet_server import (
        DevnetServer,
        DevnetThread,
        devnet_app,
        serve_devnet,
        serve_devnet_in_thread,
    )

_DEVNET_NAMES: Final[Mapping[str, str]] = {
    "Devnet": "reef.chain._devnet",
    "DevnetProvider": "reef.chain._devnet_provider",
    "DevnetServer": "reef.chain._devnet_server",
    "DevnetThread": "reef.chain._devnet_server",
    "TxRequest": "reef.chain._devnet",
    "devnet_app": "reef.chain._devnet_server",
    "serve_devnet": "reef.chain._devnet_server",
    "serve_devnet_in_thread": "reef.chain._devnet_server",
}


def __getattr__(name: str) -> Any:
    """The devnet's names, imported when first asked for (see the module docstring)."""
    module = _DEVNET_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_DEVNET_NAMES})


__all__ = [
    "Address",
    "Amount",
    "Artifact",
    "BlockRef",
    "BlockSource",
    "ChainEvent",
    "DEFAULT_FUND_AMOUNT",
    "DEVNET_CHAIN_ID",
    "DEV_MNEMONIC",
    "Deployment",
    "DevAccount",
    "Devnet",
    "DevnetInfo",
    "DevnetProvider",
    "DevnetServer",
    "DevnetThread",
    "EXTRA_DECIMALS",
    "EventDecoder",
    "EventRecord",
    "ImageApproved",
    "ImageRevoked",
    "IndexedContract",
    "IndexedEvent",
    "Indexer",
    "IndexerCheckpoint",
    "Job",
    "JobClosed",
    "JobDeposited",
    "JobEvent",
    "JobId",
    "JobMetadataUpdated",
    "JobOpened",
    "JobReviseRateCancelled",
    "JobReviseRateFinalized",
    "JobReviseRateInitiated",
    "JobSettled",
    "JobWithdrew",
    "KmsRegistryClient",
    "KmsRegistryEvent",
    "LockCreated",
    "LockDeleted",
    "LockWaitTimeUpdated",
    "MAX_CP_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_RATE",
    "MarketClient",
    "MarketEvent",
    "ProgressCallback",
    "ProviderAdded",
    "ProviderRemoved",
    "ProviderUpdatedWithCp",
    "RATE_LOCK_SELECTOR",
    "RATE_SCALE",
    "Rate",
    "RateLock",
    "RawLog",
    "Revert",
    "Sender",
    "TOKEN_DECIMALS",
    "TokenClient",
    "TokenUpdated",
    "TxProgress",
    "TxRequest",
    "TxResult",
    "Web3BlockSource",
    "decode_market_log",
    "deploy_contracts",
    "dev_accounts",
    "devnet_app",
    "format_amount",
    "job_index",
    "kms_registry_decoder",
    "load_artifact",
    "market_decoder",
    "open_database",
    "oyster_event_name",
    "parse_address",
    "parse_amount",
    "parse_job_id",
    "rate_per_hour",
    "read_devnet_info",
    "serve_devnet",
    "serve_devnet_in_thread",
]
