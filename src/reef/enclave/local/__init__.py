"""The local dev TEE: enclaves as sandboxed processes on this machine (``reef.enclave.LocalBackend``).

One module per part, all private; the public names are re-exported by :mod:`reef.enclave`:

- ``_backend``: :class:`~reef.enclave.LocalBackend`, the :class:`~reef.enclave.EnclaveBackend`
  over this machine (plans, stages, starts one supervisor per enclave, reads state files);
- ``_plan``: the typed launch plan written to ``spec.json``;
- ``_supervisor``: the per-enclave process that boots the enclave and runs its trusted base
  (``_trusted_base``: attestation, sealing, console, KMS derive);
- isolation: ``_sandbox`` (two-stage bubblewrap), ``_seccomp`` (the filter), ``_firewall`` (the
  host's nftables table), ``_network`` (namespace and pasta), ``_limits`` (control groups),
  ``_state_volume`` (the size-limited ``/state``), ``_lease``, ``_requirements`` (what the host
  must offer).

A Nitro backend for real hosts would be a sibling package with the same interface.
"""

from __future__ import annotations

__all__: list[str] = []
