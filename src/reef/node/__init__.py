"""reef.node: composes reef's components into a running network.

- :class:`LocalNetwork` is ``reef up``: devnet, image store, verifier, KMS root enclave and a
  local provider (indexer + control plane on the dev TEE).
- :class:`ProviderService` is ``reef provider run``: a provider against any JSON-RPC chain.
- :class:`NetworkInfo` (``$REEF_HOME/network.json``), :func:`locate_market` and
  :func:`open_session` tell user commands where the network is and which account they send from.
- :func:`deploy` is ``reef deploy``: build, upload, open a job, wait, verify.
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
        MarketLocation,
        Session,
        load_key_file,
        locate_market,
        open_session,
    )
    from reef.node._up import PROVIDER_ACCOUNT, LocalNetwork, UpContext, UpExtension, UpSettings
    from reef.node._update import JobUpdate, UpdateResult, update_job

__all__ = [
    "DeployRequest",
    "DeployResult",
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
    "Session",
    "UpContext",
    "UpExtension",
    "UpSettings",
    "UpdateResult",
    "connect",
    "copy_example",
    "deploy",
    "doctor_checks",
    "example_dir",
    "expected_image_id",
    "list_examples",
    "load_key_file",
    "locate_market",
    "open_session",
    "parse_duration",
    "prepare_image",
    "prepare_kms_root",
    "read_init_params",
    "register_provider",
    "serve_app",
    "update_job",
    "verify_enclave",
    "wait_for_app",
    "wait_for_enclave",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "DeployRequest": "_deploy",
        "DeployResult": "_deploy",
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
        "Session": "_session",
        "UpContext": "_up",
        "UpExtension": "_up",
        "UpSettings": "_up",
        "UpdateResult": "_update",
        "connect": "_provider",
        "copy_example": "_examples",
        "deploy": "_deploy",
        "doctor_checks": "_doctor",
        "example_dir": "_examples",
        "expected_image_id": "_deploy",
        "list_examples": "_examples",
        "load_key_file": "_session",
        "locate_market": "_session",
        "open_session": "_session",
        "parse_duration": "_deploy",
        "prepare_image": "_deploy",
        "prepare_kms_root": "_kms_root",
        "read_init_params": "_deploy",
        "register_provider": "_provider",
        "serve_app": "_serve",
        "update_job": "_update",
        "verify_enclave": "_deploy",
        "wait_for_app": "_deploy",
        "wait_for_enclave": "_deploy",
    },
)
