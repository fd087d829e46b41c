"""A local enclave's launch plan: everything its supervisor needs, decided before it starts.

:class:`reef.enclave.LocalBackend` validates a spec and plans the enclave (limits, network,
sandbox, ports, measurements), stages it, and writes the plan to ``spec.json`` in the enclave's
run directory; the supervisor (another process) and any later reader (``status``, ``list``,
``update`` after a restart) read it back into the same type. The JSON keys are the ones reef
has always written, so run directories of earlier versions stay readable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reef.enclave._backend import EnclaveEndpoints
from reef.enclave.local._network import NetworkMode
from reef.errors import EnclaveError

__all__ = ["LaunchPlan", "SandboxKind"]

SandboxKind = Literal["bwrap", "none"]


@dataclass(frozen=True, kw_only=True)
class LaunchPlan:
    """One enclave's plan (see the module docstring).

    ``ports`` and ``attestation_ports`` map enclave ports to host ports; ``kms`` is the
    :class:`reef.kms.KmsWiring` JSON the derive server is built from; ``state_key`` names the
    image's ``/state`` (the image id, marked for debug enclaves). The staged fields (``image_dir``,
    ``init_params``, ``created_ms``) are set by :meth:`staged` once the image is extracted.
    """

    id: str
    name: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    debug: bool
    cpus: int
    memory_mib: int
    network: NetworkMode
    sandbox: SandboxKind
    firewall: bool
    allow_host_ports: tuple[int, ...]
    tmp_bytes: int
    state_volume: bool
    state_mib: int
    state_key: str
    pcrs: Mapping[int, bytes]
    image_id: bytes
    init_params_digest: bytes | None
    warnings: tuple[str, ...]
    ports: Mapping[int, int]
    attestation_ports: Mapping[int, int]
    logs_port: int
    home: Path
    kms: Mapping[str, Any] | None
    labels: Mapping[str, str]
    source_image: Path
    source_init_params: Path | None
    user_data: bytes = b""
    image_dir: Path | None = None
    init_params: Path | None = None
    created_ms: int = 0

    def staged(self, *, image_dir: Path, init_params: Path | None, created_ms: int) -> LaunchPlan:
        return dataclasses.replace(
            self, image_dir=image_dir, init_params=init_params, created_ms=created_ms
        )

    @property
    def endpoints(self) -> EnclaveEndpoints:
        """Where the enclave is reached from the host."""
        base = "http://127.0.0.1"
        return EnclaveEndpoints(
            attestation=f"{base}:{self.attestation_ports[1300]}/attestation/raw",
            attestation_secp256k1=f"{base}:{self.attestation_ports[1301]}/attestation/raw",
            ports={inner: f"{base}:{host}" for inner, host in sorted(self.ports.items())},
            logs=f"{base}:{self.logs_port}/logs/stream" if self.debug else None,
        )

    def to_json(self) -> dict[str, Any]:
        endpoints = self.endpoints
        return {
            "id": self.id,
            "name": self.name,
            "command": list(self.command),
            "env": dict(self.env),
            "debug": self.debug,
            "cpus": self.cpus,
            "memory_mib": self.memory_mib,
            "network": self.network,
            "sandbox": self.sandbox,
            "firewall": self.firewall,
            "allow_host_ports": list(self.allow_host_ports),
            "tmp_bytes": self.tmp_bytes,
            "state_volume": self.state_volume,
            "state_mib": self.state_mib,
            "state_key": self.state_key,
            "pcrs": {str(i): v.hex() for i, v in sorted(self.pcrs.items())},
            "image_id": self.image_id.hex(),
            "init_params_digest": self.init_params_digest.hex() if self.init_params_digest else "",
            "warnings": list(self.warnings),
            "ports": {str(k): v for k, v in sorted(self.ports.items())},
            "attestation_ports": {str(k): v for k, v in sorted(self.attestation_ports.items())},
            "logs_port": self.logs_port,
            "home": str(self.home),
            "kms": dict(self.kms) if self.kms is not None else None,
            "labels": dict(sorted(self.labels.items())),
            "user_data": self.user_data.hex(),
            "source": {
                "image": str(self.source_image),
                "init_params": str(self.source_init_params) if self.source_init_params else "",
            },
            "image_dir": str(self.image_dir) if self.image_dir else "",
            "init_params": str(self.init_params) if self.init_params else "",
            "created_ms": self.created_ms,
            "endpoints": {
                "attestation": endpoints["attestation"],
                "attestation_secp256k1": endpoints["attestation_secp256k1"],
                "ports": {str(k): v for k, v in endpoints["ports"].items()},
                "logs": endpoints["logs"],
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LaunchPlan:
        """Read :meth:`to_json` output (``spec.json``).

        Raises:
            EnclaveError: when a field is missing or malformed.
        """
        try:
            source = data.get("source") or {}
            digest = str(data.get("init_params_digest") or "")
            return cls(
                id=str(data["id"]),
                name=str(data["name"]),
                command=tuple(str(c) for c in data["command"]),
                env={str(k): str(v) for k, v in dict(data["env"]).items()},
                debug=bool(data["debug"]),
                cpus=int(data["cpus"]),
                memory_mib=int(data["memory_mib"]),
                network=data["network"],
                sandbox=data["sandbox"],
                firewall=bool(data.get("firewall", False)),
                allow_host_ports=tuple(int(p) for p in data.get("allow_host_ports", ())),
                tmp_bytes=int(data.get("tmp_bytes", 0)),
                state_volume=bool(data.get("state_volume", False)),
                state_mib=int(data.get("state_mib", 0)),
                state_key=str(data.get("state_key") or data["image_id"]),
                pcrs={int(k): bytes.fromhex(v) for k, v in dict(data["pcrs"]).items()},
                image_id=bytes.fromhex(str(data["image_id"])),
                init_params_digest=bytes.fromhex(digest) if digest else None,
                warnings=tuple(str(w) for w in data.get("warnings", ())),
                ports={int(k): int(v) for k, v in dict(data["ports"]).items()},
                attestation_ports={
                    int(k): int(v) for k, v in dict(data["attestation_ports"]).items()
                },
                logs_port=int(data["logs_port"]),
                home=Path(str(data["home"])),
                kms=dict(data["kms"]) if data.get("kms") else None,
                labels={str(k): str(v) for k, v in dict(data.get("labels") or {}).items()},
                user_data=bytes.fromhex(str(data.get("user_data") or "")),
                source_image=Path(str(source.get("image") or "")),
                source_init_params=Path(str(source["init_params"]))
                if source.get("init_params")
                else None,
                image_dir=Path(str(data["image_dir"])) if data.get("image_dir") else None,
                init_params=Path(str(data["init_params"])) if data.get("init_params") else None,
                created_ms=int(data.get("created_ms", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EnclaveError(f"the enclave's plan (spec.json) is malformed: {exc}") from exc
