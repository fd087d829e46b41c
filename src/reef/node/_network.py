"""Where the local network is: ``$REEF_HOME/network.json``, written by ``reef up``.

Every user command (``reef deploy``, ``reef jobs``, ``reef logs``, ``reef provider register``)
finds the chain, the market, the provider, its control plane and the image store here, and any of
them can be overridden by a flag, so the same commands work against a network ``reef up`` did not
start (any JSON-RPC chain with the market deployed). The dev accounts' keys stay in the devnet's
own ``chain/devnet.json``; this file holds no secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reef.errors import ConfigError
from reef.home import ReefHome, read_json, replace_json

if TYPE_CHECKING:
    from reef.chain import Address, Deployment

__all__ = ["NETWORK_FILE", "NetworkInfo"]

NETWORK_FILE = "network.json"


@dataclass(frozen=True, kw_only=True)
class NetworkInfo:
    """The endpoints and addresses of a running reef network."""

    rpc_url: str
    chain_id: int
    deployment: Deployment
    rate_lock_s: int
    provider: Address
    """The local provider's address."""
    control_plane: str
    image_store: str
    verifier: str | None = None
    kms: Mapping[str, str] = field(default_factory=dict)
    """KMS root endpoints (``scallop``, ``public``) once the KMS root enclave runs."""
    safety_margin_s: int = 300
    pid: int | None = None
    """The ``reef up`` process, while it runs."""
    services: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """What each extension of ``reef up`` started (serverless, proofs, dashboard), by its name:
    its endpoints and contract addresses, as the extension reported them."""
    starting: tuple[str, ...] = ()
    """The extensions ``reef up`` has yet to start, while it starts: a command looking for one
    says to wait rather than to start the network."""

    def to_json(self) -> dict[str, Any]:
        return {
            "rpc_url": self.rpc_url,
            "chain_id": self.chain_id,
            "deployment": self.deployment.to_json(),
            "rate_lock_s": self.rate_lock_s,
            "provider": self.provider,
            "control_plane": self.control_plane,
            "image_store": self.image_store,
            "verifier": self.verifier,
            "kms": dict(self.kms),
            "safety_margin_s": self.safety_margin_s,
            "pid": self.pid,
            "services": {name: dict(entry) for name, entry in self.services.items()},
            "starting": list(self.starting),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NetworkInfo:
        """Parse what :meth:`to_json` wrote.

        Raises:
            ConfigError: naming the missing or invalid field.
        """
        # Here, not at the top: the deployment's module loads web3.py (about 1.5 s), which a
        # command that finds no network.json, and says so, does not need.
        from reef.chain import Deployment, parse_address

        try:
            return cls(
                rpc_url=str(data["rpc_url"]),
                chain_id=int(data["chain_id"]),
                deployment=Deployment.from_json(data["deployment"]),
                rate_lock_s=int(data["rate_lock_s"]),
                provider=parse_address(str(data["provider"]), name="provider"),
                control_plane=str(data["control_plane"]),
                image_store=str(data["image_store"]),
                verifier=data.get("verifier") or None,
                kms={str(k): str(v) for k, v in dict(data.get("kms") or {}).items()},
                safety_margin_s=int(data.get("safety_margin_s", 300)),
                pid=data.get("pid"),
                services={
                    str(name): dict(entry)
                    for name, entry in dict(data.get("services") or {}).items()
                },
                starting=tuple(str(name) for name in data.get("starting") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{NETWORK_FILE} is not a valid network description ({type(exc).__name__}: {exc})",
                hint="restart the network with `reef up`",
            ) from exc

    def dump(self, home: ReefHome) -> None:
        """Write atomically to ``$REEF_HOME/network.json``."""
        path = home.ensure().path(NETWORK_FILE)
        replace_json(path, self.to_json())

    @classmethod
    def load(cls, home: ReefHome) -> NetworkInfo:
        """Read ``$REEF_HOME/network.json``.

        Raises:
            ConfigError: when no network was started in this home, or the file is invalid.
        """
        path = home.root / NETWORK_FILE
        missing = ConfigError(
            f"no reef network found in {home.root} ({path} does not exist)",
            hint="start one with `reef up` (or `make up`), or pass --rpc and --market",
        )
        data = read_json(path, missing=missing, unreadable=f"cannot read {path}")
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path} does not hold a JSON object")
        return cls.from_json(data)

    @classmethod
    def clear(cls, home: ReefHome) -> None:
        """Remove the file (``reef up`` on exit: the endpoints are gone)."""
        (home.root / NETWORK_FILE).unlink(missing_ok=True)
