"""reef.node: composes reef's components into a running network.

- :class:`LocalNetwork` is ``reef up``: devnet, image store, verifier, KMS root enclave and a
  local provider (indexer + control plane on the dev TEE).
- :class:`ProviderService` is ``reef provider run``: a provider against any JSON-RPC chain.
- :class:`NetworkInfo` (``$REEF_HOME/network.json``), :func:`locate_market` and
  :func:`open_session` tell user commands where the network is and which account they send from.
- :func:`deploy` is ``reef deploy``: build, upload, open a job, wait, verify.
- :func:`update_job` is ``reef jobs update``: a new image, init params or debug flag.
- :func:`copy_example` is ``reef examples``: the shipped example apps, wherever reef is installed.
"""

from __future__ import annotations

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
    "LocalNetwork",
    "MarketLocation",
    "NETWORK_FILE",
    "NetworkInfo",
    "PROVIDER_ACCOUNT",
    "ProviderDirs",
    "ProviderService",
    "ProviderSettings",
    "Served",
    "Session",
    "UpContext",
    "UpdateResult",
    "UpExtension",
    "UpSettings",
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
    "read_init_params",
    "register_provider",
    "serve_app",
    "update_job",
    "verify_enclave",
    "wait_for_app",
    "wait_for_enclave",
]
