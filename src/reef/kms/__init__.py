"""The KMS: persistent keys bound to enclave images, derived exactly as Oyster derives them.

Pure derivation (:func:`enclave_seed`, :func:`contract_seed`, :func:`derive_key`, versioned
:class:`RootSeed`), sealed root-seed storage (:class:`SeedStore`), the root server (Scallop
``/derive`` and the public signed endpoints), the derive server every enclave runs, and clients
(:class:`KmsPublicClient`, :func:`fetch_identity`, :func:`init_params_public_key`).
See docs/kms.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reef._lazy import lazy_attributes

if TYPE_CHECKING:
    from reef._peers import PeerBudget, PeerRate
    from reef.kms._approval import (
        OYSTER_KMS_VERIFY_SELECTOR,
        ImageApproval,
        RpcApproval,
    )
    from reef.kms._client import (
        KmsPublicClient,
        VerifiedKmsIdentity,
        authorise_handover,
        fetch_identity,
        init_params_public_key,
        normalize_kms_url,
        rotate_root,
    )
    from reef.kms._derive import (
        INIT_PARAMS_KEY_PATH,
        KEY_TYPES,
        ROOT_SEED_LENGTH,
        SCALLOP_KEY_PATH,
        SIGNING_KEY_PATH,
        DerivedKey,
        KeyType,
        RootSeed,
        contract_seed,
        derive_key,
        derive_secret,
        enclave_seed,
        key_from_seed,
        path_seed,
    )
    from reef.kms._derive_server import (
        OTHER_VERSIONS_RATE,
        EnclaveSeeds,
        SeedFetcher,
        derive_server_app,
    )
    from reef.kms._handover import HandoverSource, inherit_root_seeds
    from reef.kms._http import VERSION_HEADER
    from reef.kms._keyring import (
        KmsIdentity,
        RootKeyring,
        identity_digest,
    )
    from reef.kms._pins import (
        KmsPin,
        PinStore,
    )
    from reef.kms._public import INFO_COST, PUBLIC_RATE, public_app
    from reef.kms._root import (
        MAX_HANDOVER_S,
        HandoverGrant,
        KmsRoot,
        handover_message,
        rotation_message,
    )
    from reef.kms._scallop import (
        ATTESTATION_RATE,
        CHAIN_RATE,
        DEFAULT_MAX_AGE_MS,
        BudgetedStore,
        KmsWiring,
        client_policy,
        fetch_enclave_seed,
        scallop_app,
    )
    from reef.kms._server import (
        DeriveServer,
        RootServer,
        http_attester,
        own_tee_root,
    )
    from reef.kms._signing import (
        SIGNATURE_HEADER,
        response_digest,
        sign_response,
        verify_response,
    )
    from reef.kms._store import (
        AeadSealer,
        Sealer,
        SeedStore,
    )

__all__ = [
    "ATTESTATION_RATE",
    "AeadSealer",
    "BudgetedStore",
    "CHAIN_RATE",
    "DEFAULT_MAX_AGE_MS",
    "DeriveServer",
    "DerivedKey",
    "EnclaveSeeds",
    "HandoverGrant",
    "HandoverSource",
    "INFO_COST",
    "INIT_PARAMS_KEY_PATH",
    "ImageApproval",
    "KEY_TYPES",
    "KeyType",
    "KmsIdentity",
    "KmsPin",
    "KmsPublicClient",
    "KmsRoot",
    "KmsWiring",
    "MAX_HANDOVER_S",
    "OTHER_VERSIONS_RATE",
    "OYSTER_KMS_VERIFY_SELECTOR",
    "PUBLIC_RATE",
    "PeerBudget",
    "PeerRate",
    "PinStore",
    "ROOT_SEED_LENGTH",
    "RootKeyring",
    "RootSeed",
    "RootServer",
    "RpcApproval",
    "SCALLOP_KEY_PATH",
    "SIGNATURE_HEADER",
    "SIGNING_KEY_PATH",
    "Sealer",
    "SeedFetcher",
    "SeedStore",
    "VERSION_HEADER",
    "VerifiedKmsIdentity",
    "authorise_handover",
    "client_policy",
    "contract_seed",
    "derive_key",
    "derive_secret",
    "derive_server_app",
    "enclave_seed",
    "fetch_enclave_seed",
    "fetch_identity",
    "handover_message",
    "http_attester",
    "identity_digest",
    "inherit_root_seeds",
    "init_params_public_key",
    "key_from_seed",
    "normalize_kms_url",
    "own_tee_root",
    "path_seed",
    "public_app",
    "response_digest",
    "rotate_root",
    "rotation_message",
    "scallop_app",
    "sign_response",
    "verify_response",
]

# Loaded on first use (reef._lazy): what one-shot commands need not import.
__getattr__ = lazy_attributes(
    __name__,
    {
        "OYSTER_KMS_VERIFY_SELECTOR": "_approval",
        "ImageApproval": "_approval",
        "RpcApproval": "_approval",
        "PeerBudget": "_server",
        "PeerRate": "_server",
        "KmsPublicClient": "_client",
        "authorise_handover": "_client",
        "VerifiedKmsIdentity": "_client",
        "fetch_identity": "_client",
        "init_params_public_key": "_client",
        "normalize_kms_url": "_client",
        "rotate_root": "_client",
        "INIT_PARAMS_KEY_PATH": "_derive",
        "KEY_TYPES": "_derive",
        "ROOT_SEED_LENGTH": "_derive",
        "SCALLOP_KEY_PATH": "_derive",
        "SIGNING_KEY_PATH": "_derive",
        "DerivedKey": "_derive",
        "KeyType": "_derive",
        "RootSeed": "_derive",
        "contract_seed": "_derive",
        "derive_key": "_derive",
        "derive_secret": "_derive",
        "enclave_seed": "_derive",
        "key_from_seed": "_derive",
        "path_seed": "_derive",
        "EnclaveSeeds": "_derive_server",
        "OTHER_VERSIONS_RATE": "_derive_server",
        "SeedFetcher": "_derive_server",
        "derive_server_app": "_derive_server",
        "KmsIdentity": "_keyring",
        "RootKeyring": "_keyring",
        "identity_digest": "_keyring",
        "KmsPin": "_pins",
        "PinStore": "_pins",
        "VERSION_HEADER": "_http",
        "INFO_COST": "_public",
        "PUBLIC_RATE": "_public",
        "public_app": "_public",
        "KmsRoot": "_root",
        "HandoverGrant": "_root",
        "MAX_HANDOVER_S": "_root",
        "handover_message": "_root",
        "rotation_message": "_root",
        "ATTESTATION_RATE": "_scallop",
        "BudgetedStore": "_scallop",
        "CHAIN_RATE": "_scallop",
        "DEFAULT_MAX_AGE_MS": "_scallop",
        "KmsWiring": "_scallop",
        "HandoverSource": "_handover",
        "inherit_root_seeds": "_handover",
        "client_policy": "_scallop",
        "fetch_enclave_seed": "_scallop",
        "scallop_app": "_scallop",
        "DeriveServer": "_server",
        "RootServer": "_server",
        "http_attester": "_server",
        "own_tee_root": "_server",
        "SIGNATURE_HEADER": "_signing",
        "response_digest": "_signing",
        "sign_response": "_signing",
        "verify_response": "_signing",
        "AeadSealer": "_store",
        "Sealer": "_store",
        "SeedStore": "_store",
    },
)
