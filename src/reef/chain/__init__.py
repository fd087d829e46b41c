"""reef.chain (see DESIGN.md, package layout).

The names load on first use (:mod:`reef._lazy`, PEP 562): a command that parses a job number or
formats an amount (:mod:`reef.chain._types`) does not import web3.py, eth-account and py_ecc
(about a second and a half of every chain command's start-up), the indexer's SQLAlchemy or the
embedded chain's py-evm; nor does one that only reads the market (:class:`MarketReader`, over
reef's own JSON-RPC transport). The embedded chain lives in :mod:`reef.chain.devnet`, the home of its
names; ``reef.chain`` offers them too (``from reef.chain import Devnet``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reef._lazy import lazy_attributes

if TYPE_CHECKING:
    from reef.chain._artifacts import Artifact, load_artifact
    from reef.chain._block_source import BlockRef, BlockSource, RawLog, Web3BlockSource
    from reef.chain._clients import (
        ContractClient,
        KmsRegistryClient,
        TokenClient,
        Topic,
        deploy_contract,
    )
    from reef.chain._deploy import (
        DEPLOYED_CONTRACTS,
        MAINNET_CHAIN_IDS,
        Deployed,
        DeployEstimate,
        check_image_ids,
        deploy_contracts,
        estimate_deployment,
    )
    from reef.chain._deployment import DEFAULT_FUND_AMOUNT, DEFAULT_RATE_LOCK_S, Deployment
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
    from reef.chain._reader import MarketReader
    from reef.chain._reasons import Revert
    from reef.chain._rpc import quantity
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
        check_uint,
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
    from reef.chain.devnet import Devnet as Devnet
    from reef.chain.devnet import DevnetInfo as DevnetInfo
    from reef.chain.devnet import DevnetProvider as DevnetProvider
    from reef.chain.devnet import DevnetServer as DevnetServer
    from reef.chain.devnet import DevnetThread as DevnetThread
    from reef.chain.devnet import TxRequest as TxRequest
    from reef.chain.devnet import dev_accounts as dev_accounts
    from reef.chain.devnet import devnet_app as devnet_app
    from reef.chain.devnet import read_devnet_info as read_devnet_info
    from reef.chain.devnet import serve_devnet as serve_devnet
    from reef.chain.devnet import serve_devnet_in_thread as serve_devnet_in_thread

__getattr__ = lazy_attributes(
    __name__,
    {
        "Address": "_types",
        "Amount": "_types",
        "Artifact": "_artifacts",
        "BlockRef": "_block_source",
        "BlockSource": "_block_source",
        "BoundedHTTPProvider": "_http",
        "ChainEvent": "_events",
        "ContractClient": "_clients",
        "DEFAULT_FUND_AMOUNT": "_deployment",
        "DEFAULT_RATE_LOCK_S": "_deployment",
        "DEPLOYED_CONTRACTS": "_deploy",
        "DeployEstimate": "_deploy",
        "Deployed": "_deploy",
        "MAINNET_CHAIN_IDS": "_deploy",
        "check_image_ids": "_deploy",
        "estimate_deployment": "_deploy",
        "DEVNET_CHAIN_ID": "devnet",
        "DEV_MNEMONIC": "devnet",
        "Deployment": "_deployment",
        "DevAccount": "devnet",
        "Devnet": "devnet",
        "DevnetInfo": "devnet",
        "DevnetProvider": "devnet",
        "DevnetServer": "devnet",
        "DevnetThread": "devnet",
        "EXTRA_DECIMALS": "_types",
        "EventDecoder": "_events",
        "EventRecord": "_events",
        "ImageApproved": "_events",
        "ImageRevoked": "_events",
        "IndexedContract": "_indexer",
        "IndexedEvent": "_indexer",
        "Indexer": "_indexer",
        "IndexerCheckpoint": "_indexer",
        "Job": "_types",
        "JobClosed": "_events",
        "JobDeposited": "_events",
        "JobEvent": "_events",
        "JobId": "_types",
        "JobMetadataUpdated": "_events",
        "JobOpened": "_events",
        "JobReviseRateCancelled": "_events",
        "JobReviseRateFinalized": "_events",
        "JobReviseRateInitiated": "_events",
        "JobSettled": "_events",
        "JobWithdrew": "_events",
        "KmsRegistryClient": "_clients",
        "KmsRegistryEvent": "_events",
        "LockCreated": "_events",
        "LockDeleted": "_events",
        "LockWaitTimeUpdated": "_events",
        "MAX_CP_BYTES": "_market",
        "MAX_METADATA_BYTES": "_market",
        "MAX_RATE": "_types",
        "MarketClient": "_market",
        "MarketEvent": "_events",
        "MarketReader": "_reader",
        "ProgressCallback": "_tx",
        "ProviderAdded": "_events",
        "ProviderRemoved": "_events",
        "ProviderUpdatedWithCp": "_events",
        "RATE_LOCK_SELECTOR": "_market",
        "RATE_SCALE": "_types",
        "Rate": "_types",
        "RateLock": "_types",
        "RawLog": "_block_source",
        "Revert": "_reasons",
        "Sender": "_tx",
        "TOKEN_DECIMALS": "_types",
        "TokenClient": "_clients",
        "TokenUpdated": "_events",
        "Topic": "_clients",
        "Transactor": "_tx",
        "TxProgress": "_tx",
        "TxRequest": "devnet",
        "TxResult": "_tx",
        "Web3BlockSource": "_block_source",
        "amount_per_hour": "_types",
        "check_uint": "_types",
        "decode_market_log": "_events",
        "deploy_contract": "_clients",
        "deploy_contracts": "_deploy",
        "dev_accounts": "devnet",
        "devnet_app": "devnet",
        "format_amount": "_types",
        "http_web3": "_http",
        "job_index": "_types",
        "kms_registry_decoder": "_events",
        "load_artifact": "_artifacts",
        "market_decoder": "_events",
        "open_database": "_indexer",
        "oyster_event_name": "_events",
        "parse_address": "_types",
        "parse_amount": "_types",
        "parse_job_id": "_types",
        "quantity": "_rpc",
        "rate_per_hour": "_types",
        "read_devnet_info": "devnet",
        "serve_devnet": "devnet",
        "serve_devnet_in_thread": "devnet",
        "translate_errors": "_tx",
    },
)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "DEV_MNEMONIC", "DEVNET_CHAIN_ID", "DevAccount"})


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
    "DEFAULT_RATE_LOCK_S",
    "DEPLOYED_CONTRACTS",
    "DeployEstimate",
    "Deployed",
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
    "MAINNET_CHAIN_IDS",
    "MAX_CP_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_RATE",
    "MarketClient",
    "MarketEvent",
    "MarketReader",
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
    "check_image_ids",
    "check_uint",
    "decode_market_log",
    "deploy_contract",
    "deploy_contracts",
    "estimate_deployment",
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
    "quantity",
    "rate_per_hour",
    "translate_errors",
]
