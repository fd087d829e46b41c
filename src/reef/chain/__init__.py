"""reef.chain (see DESIGN.md, package layout).

The embedded chain lives in :mod:`reef.chain.devnet`, the home of its names; ``reef.chain``
offers them too (``from reef.chain import Devnet``), those that need py-evm imported on first
use (PEP 562 ``__getattr__``): py-evm's import takes about a second, and a client of a chain
(every market command) never needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from reef.chain._artifacts import Artifact, load_artifact
from reef.chain._block_source import BlockRef, BlockSource, RawLog, Web3BlockSource
from reef.chain._clients import (
    ContractClient,
    KmsRegistryClient,
    TokenClient,
    Topic,
    check_uint,
    deploy_contract,
)
from reef.chain._deploy import DEFAULT_FUND_AMOUNT, Deployment, deploy_contracts
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
from reef.chain._http import BoundedHTTPProvider, http_web3
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
from reef.chain._tx import (
    ProgressCallback,
    Sender,
    Transactor,
    TxProgress,
    TxResult,
    translate_errors,
)
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
    amount_per_hour,
    format_amount,
    job_index,
    parse_address,
    parse_amount,
    parse_job_id,
    rate_per_hour,
)
from reef.chain.devnet import DEV_MNEMONIC as DEV_MNEMONIC
from reef.chain.devnet import DEVNET_CHAIN_ID as DEVNET_CHAIN_ID
from reef.chain.devnet import DevAccount as DevAccount
from reef.chain.devnet import DevnetInfo as DevnetInfo
from reef.chain.devnet import dev_accounts as dev_accounts
from reef.chain.devnet import read_devnet_info as read_devnet_info

if TYPE_CHECKING:
    from reef.chain.devnet import Devnet as Devnet
    from reef.chain.devnet import DevnetProvider as DevnetProvider
    from reef.chain.devnet import DevnetServer as DevnetServer
    from reef.chain.devnet import DevnetThread as DevnetThread
    from reef.chain.devnet import TxRequest as TxRequest
    from reef.chain.devnet import devnet_app as devnet_app
    from reef.chain.devnet import serve_devnet as serve_devnet
    from reef.chain.devnet import serve_devnet_in_thread as serve_devnet_in_thread

_DEVNET_NAMES: Final = frozenset(
    {
        "Devnet",
        "DevnetProvider",
        "DevnetServer",
        "DevnetThread",
        "TxRequest",
        "devnet_app",
        "serve_devnet",
        "serve_devnet_in_thread",
    }
)


def __getattr__(name: str) -> Any:
    """The devnet's names, imported when first asked for (see the module docstring)."""
    if name not in _DEVNET_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module("reef.chain.devnet"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_DEVNET_NAMES})


# The devnet's names are exported by their home, reef.chain.devnet (one home per name).
__all__ = [
    "Address",
    "Amount",
    "Artifact",
    "BlockRef",
    "BlockSource",
    "BoundedHTTPProvider",
    "ChainEvent",
    "ContractClient",
    "DEFAULT_FUND_AMOUNT",
    "Deployment",
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
    "Topic",
    "Transactor",
    "TxProgress",
    "TxResult",
    "Web3BlockSource",
    "amount_per_hour",
    "check_uint",
    "decode_market_log",
    "deploy_contract",
    "deploy_contracts",
    "format_amount",
    "http_web3",
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
    "translate_errors",
]
