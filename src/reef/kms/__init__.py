"""The KMS: persistent keys bound to enclave images, derived exactly as Oyster derives them.

Pure derivation (:func:`enclave_seed`, :func:`contract_seed`, :func:`derive_key`, versioned
:class:`RootSeed`), sealed root-seed storage, the root server (Scallop ``/derive`` and the public
signed endpoints), the derive server every enclave runs, and clients. See docs/kms.md.
"""

from __future__ import annotations

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
    enclave_seed,
    key_from_seed,
    path_seed,
)

__all__ = [  # noqa: RUF022 (plain code-point order, which tests/foundation checks)
    "DerivedKey",
    "INIT_PARAMS_KEY_PATH",
    "KEY_TYPES",
    "KeyType",
    "ROOT_SEED_LENGTH",
    "RootSeed",
    "SCALLOP_KEY_PATH",
    "SIGNING_KEY_PATH",
    "contract_seed",
    "derive_key",
    "enclave_seed",
    "key_from_seed",
    "path_seed",
]
