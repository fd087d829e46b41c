"""reef.node: composes reef's components into a running network.

- :class:`LocalNetwork` is ``reef up``: devnet, image store, verifier, KMS root enclave and a
  local provider (indexer + control plane on the dev TEE).
- :class:`ProviderService` is ``reef provider run``: a provider against any JSON-RPC chain.
- :class:`NetworkInfo` (``$REEF_HOME/network.json``), :func:`open_chain` (any chain),
  :func:`open_session` (with the compute market) and :func:`locate_service` (a service's
  contracts) tell user commands where the network is and which account they send from.
- :func:`deploy` is ``reef deploy``: build, upload, open a job, wait, verify.
- :func:`open_jobs`, :func:`job_status`, :func:`summarize_job`, :func:`stop_job`,
  :func:`withdraw_limit`: an owner's open jobs, for ``reef jobs`` and the dashboard alike.
- :func:`update_job` is ``reef jobs update``: a new image, init params or debug flag.
- :func:`prepare_kms_root` is ``reef kms root serve``'s assembly of a KMS root.
- :func:`copy_example` is ``reef examples``: the shipped example apps, wherever reef is installed.

The names load on first use (:mod:`reef._lazy`): a command that needs one use case does not
import the others (the KMS root enclave imports only its own assembly).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reef._lazy import lazy_attributes

if TYPE_CHECKING:
    from reef.node._deploy import (
        DeployRequest,
        DeployResult,
        deploy,
        expected_image_id,
        parse_duration,
        prepare_image,
        read_init_params,
        verify_enclave,
        wait_for_app,
        wait_for_enclave,
    )
    from reef.node._doctor import doctor_checks
    from reef.node._examples import copy_example, example_dir, list_examples
    from reef.node._jobs import (
        DEFAULT_SAFETY_MARGIN_S,
        WITHDRAW_MARGIN_S,
        JobStatus,
        JobSummary,
        deposit_to_job,
        find_open_job,
        job_status,
        jobs_totals,
        open_jobs,
        owned_job,
        stop_job,
        stop_margin_s,
        stops_at,
        summarize_job,
        withdraw_from_job,
        withdraw_limit,
    )
    from reef.node._kms_root import KmsRootOptions, PreparedKmsRoot, prepare_kms_root
    from reef.node._network import NETWORK_FILE, NetworkInfo
    from reef.node._provider import (
        ProviderDirs,
        ProviderService,
        ProviderSettings,
        connect,
        register_provider,
    )
    from reef.node._serve import Served, serve_app
    from reef.node._session import (
        ChainLocation,
        ChainSession,
        MarketLocation,
        ServiceContracts,
        Session,
        default_dev_account,
        load_key_file,
        locate_chain,
        locate_market,
        locate_service,
        open_chain,
        open_session,
    )
    from reef.node._up import (
        PROVIDER_ACCOUNT,
        LocalNetwork,
        UpContext,
        UpExtension,
        UpSettings,
        standard_extensions,
    )
    from reef.node._update import JobUpdate, UpdateResult, update_job

__all__ = [
    "ChainLocation",
    "ChainSession",
    "DEFAULT_SAFETY_MARGIN_S",
    "DeployRequest",
    "DeployResult",
    "JobStatus",
    "JobSummary",
    "JobUpdate",
    "KmsRootOptions",
    "LocalNetwork",
    "MarketLocation",
    "NETWORK_FILE",
    "NetworkInfo",
    "PROVIDER_ACCOUNT",
    "PreparedKmsRoot",
    "ProviderDirs",
    "ProviderService",
    "ProviderSettings",
    "Served",
    "ServiceContracts",
    "Session",
    "UpContext",
    "UpExtension",
    "UpSettings",
    "UpdateResult",
    "WITHDRAW_MARGIN_S",
    "connect",
    "copy_example",
    "default_dev_account",
    "deploy",
    "deposit_to_job",
    "doctor_checks",
    "example_dir",
    "expected_image_id",
    "find_open_job",
    "job_status",
    "jobs_totals",
    "list_examples",
    "load_key_file",
    "locate_chain",
    "locate_market",
    "locate_service",
    "open_chain",
    "open_jobs",
    "open_session",
    "owned_job",
    "parse_duration",
    "prepare_image",
    "prepare_kms_root",
    "read_init_params",
    "register_provider",
    "serve_app",
    "standard_extensions",
    "stop_job",
    "stop_margin_s",
    "stops_at",
    "summarize_job",
    "update_job",
    "verify_enclave",
    "wait_for_app",
    "wait_for_enclave",
    "withdraw_from_job",
    "withdraw_limit",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "ChainLocation": "_session",
        "ChainSession": "_session",
        "DEFAULT_SAFETY_MARGIN_S": "_jobs",
        "DeployRequest": "_deploy",
        "DeployResult": "_deploy",
        "JobStatus": "_jobs",
        "JobSummary": "_jobs",
        "JobUpdate": "_update",
        "KmsRootOptions": "_kms_root",
        "LocalNetwork": "_up",
        "MarketLocation": "_session",
        "NETWORK_FILE": "_network",
        "NetworkInfo": "_network",
        "PROVIDER_ACCOUNT": "_up",
        "PreparedKmsRoot": "_kms_root",
        "ProviderDirs": "_provider",
        "ProviderService": "_provider",
        "ProviderSettings": "_provider",
        "Served": "_serve",
        "ServiceContracts": "_session",
        "Session": "_session",
        "UpContext": "_up",
        "UpExtension": "_up",
        "UpSettings": "_up",
        "UpdateResult": "_update",
        "WITHDRAW_MARGIN_S": "_jobs",
        "connect": "_provider",
        "copy_example": "_examples",
        "default_dev_account": "_session",
        "deploy": "_deploy",
        "deposit_to_job": "_jobs",
        "doctor_checks": "_doctor",
        "example_dir": "_examples",
        "expected_image_id": "_deploy",
        "find_open_job": "_jobs",
        "job_status": "_jobs",
        "jobs_totals": "_jobs",
        "list_examples": "_examples",
        "load_key_file": "_session",
        "locate_chain": "_session",
        "locate_market": "_session",
        "locate_service": "_session",
        "open_chain": "_session",
        "open_jobs": "_jobs",
        "open_session": "_session",
        "owned_job": "_jobs",
        "parse_duration": "_deploy",
        "prepare_image": "_deploy",
        "prepare_kms_root": "_kms_root",
        "read_init_params": "_deploy",
        "register_provider": "_provider",
        "serve_app": "_serve",
        "standard_extensions": "_up",
        "stop_job": "_jobs",
        "stop_margin_s": "_jobs",
        "stops_at": "_jobs",
        "summarize_job": "_jobs",
        "update_job": "_update",
        "verify_enclave": "_deploy",
        "wait_for_app": "_deploy",
        "wait_for_enclave": "_deploy",
        "withdraw_from_job": "_jobs",
        "withdraw_limit": "_jobs",
    },
)
