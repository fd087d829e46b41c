"""Enclave images and the backends that run them.

- Images (:func:`build_image`, :func:`load_image`): a deterministic archive of an app directory
  and its ``reef.toml``, measured into PCR0/1/2 and an Oyster image id; what an enclave of one
  attests with given init params and debug flag (:func:`attested_measurements`).
- Init params (:class:`InitParams`): Oyster's JSON format and digest; PCR16.
- One interface for every backend (:class:`EnclaveBackend`, :func:`open_backend`), with typed
  :class:`EnclaveSpec` / :class:`EnclaveInfo`; a fake one and a conformance suite live in
  :mod:`reef.testing`.
- The local dev TEE (:class:`LocalBackend`, package ``reef.enclave.local``): each enclave a sandboxed process with its own trusted
  base (attestation servers, sealing, logs, KMS derive hook), in its own network namespace, its
  app unprivileged in its own user namespace under seccomp, kept off the host's addresses.
- Host requirements (:func:`check_host`): what isolation needs, and the command installing it.

See docs/enclave.md for the formats and the exact measurement recipe. Every name loads on first
use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reef._lazy import lazy_attributes

if TYPE_CHECKING:
    from reef.enclave._backend import (
        DEFAULT_STATE_MIB,
        DEFAULT_TMP_MIB,
        LIVE_STATES,
        EnclaveBackend,
        EnclaveEndpoints,
        EnclaveInfo,
        EnclaveSpec,
        EnclaveState,
        open_backend,
    )
    from reef.enclave._image import (
        DEFAULT_EXCLUDES,
        Image,
        ImageEntry,
        attested_measurements,
        build_image,
        load_image,
    )
    from reef.enclave._init_params import (
        INIT_PARAMS_KMS_PATH,
        InitParam,
        InitParams,
        init_params_digest,
        validate_param_path,
    )
    from reef.enclave._manifest import MANIFEST_NAME, RESERVED_PORTS, Manifest
    from reef.enclave._measure import (
        RUNTIME_MODULES,
        Measurements,
        extend_pcr,
        runtime_measurement,
    )
    from reef.enclave.local._backend import LocalBackend
    from reef.enclave.local._requirements import Requirement, check_host, missing_summary
    from reef.enclave.local._trusted_base import SEALING_PORT, DevTeeSealer, dev_seal, dev_unseal

__all__ = [
    "DEFAULT_EXCLUDES",
    "DEFAULT_STATE_MIB",
    "DEFAULT_TMP_MIB",
    "DevTeeSealer",
    "EnclaveBackend",
    "EnclaveEndpoints",
    "EnclaveInfo",
    "EnclaveSpec",
    "EnclaveState",
    "INIT_PARAMS_KMS_PATH",
    "Image",
    "ImageEntry",
    "InitParam",
    "InitParams",
    "LIVE_STATES",
    "LocalBackend",
    "MANIFEST_NAME",
    "Manifest",
    "Measurements",
    "RESERVED_PORTS",
    "RUNTIME_MODULES",
    "Requirement",
    "SEALING_PORT",
    "attested_measurements",
    "build_image",
    "check_host",
    "dev_seal",
    "dev_unseal",
    "extend_pcr",
    "init_params_digest",
    "load_image",
    "missing_summary",
    "open_backend",
    "runtime_measurement",
    "validate_param_path",
]

# Every name loads on first use (reef._lazy): an enclave's supervisor imports this package on
# its way to its own modules, and must not pay for images, measurement (and through it the
# attestation verifier), the host backend or the requirement probes, which it never uses.
__getattr__ = lazy_attributes(
    __name__,
    {
        "DEFAULT_STATE_MIB": "_backend",
        "DEFAULT_TMP_MIB": "_backend",
        "LIVE_STATES": "_backend",
        "EnclaveBackend": "_backend",
        "EnclaveEndpoints": "_backend",
        "EnclaveInfo": "_backend",
        "EnclaveSpec": "_backend",
        "EnclaveState": "_backend",
        "open_backend": "_backend",
        "DEFAULT_EXCLUDES": "_image",
        "Image": "_image",
        "ImageEntry": "_image",
        "attested_measurements": "_image",
        "build_image": "_image",
        "load_image": "_image",
        "INIT_PARAMS_KMS_PATH": "_init_params",
        "InitParam": "_init_params",
        "InitParams": "_init_params",
        "init_params_digest": "_init_params",
        "validate_param_path": "_init_params",
        "MANIFEST_NAME": "_manifest",
        "RESERVED_PORTS": "_manifest",
        "Manifest": "_manifest",
        "RUNTIME_MODULES": "_measure",
        "Measurements": "_measure",
        "extend_pcr": "_measure",
        "runtime_measurement": "_measure",
        "LocalBackend": "local._backend",
        "Requirement": "local._requirements",
        "check_host": "local._requirements",
        "missing_summary": "local._requirements",
        "SEALING_PORT": "local._trusted_base",
        "DevTeeSealer": "local._trusted_base",
        "dev_seal": "local._trusted_base",
        "dev_unseal": "local._trusted_base",
    },
)
