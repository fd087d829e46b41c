"""Where reef's contracts live on one chain (:class:`Deployment`), as plain data.

A :class:`Deployment` round-trips through JSON, so it can be written under ``$REEF_HOME`` and read
back by every other command; reading one (a devnet's ``devnet.json``, ``reef up``'s
``network.json``) loads no web3.py. Deploying is :func:`reef.chain.deploy_contracts`
(:mod:`reef.chain._deploy`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reef.chain._types import TOKEN_DECIMALS, Address, parse_address
from reef.errors import ConfigError
from reef.home import read_json, replace_file

__all__ = ["DEFAULT_FUND_AMOUNT", "DEFAULT_RATE_LOCK_S", "Deployment"]

DEFAULT_FUND_AMOUNT: int = 1_000_000 * 10**TOKEN_DECIMALS
"""Tokens minted to each funded account: one million rUSD."""
DEFAULT_RATE_LOCK_S: int = 300
"""Seconds a rate revision stays locked unless told otherwise (MarketV1 deploys with 300)."""


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """Where reef's contracts live on one chain (checksummed addresses)."""

    chain_id: int
    token: Address
    market: Address
    kms_registry: Address
    block: int
    """The block the market was deployed in: indexers start there."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Deployment:
        """Read a deployment written by :meth:`to_json`.

        Raises:
            ConfigError: naming the missing or invalid field.
        """
        if not isinstance(data, Mapping):
            raise ConfigError("a deployment must be a JSON object")
        try:
            chain_id, block = data["chain_id"], data["block"]
            token, market, kms = data["token"], data["market"], data["kms_registry"]
        except KeyError as exc:
            raise ConfigError(f"the deployment lacks the field {exc.args[0]!r}") from exc
        for name, value in (("chain_id", chain_id), ("block", block)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"the deployment's {name} must be a non-negative integer")
        try:
            return cls(
                chain_id=chain_id,
                token=parse_address(token, name="token"),
                market=parse_address(market, name="market"),
                kms_registry=parse_address(kms, name="kms_registry"),
                block=block,
            )
        except ValueError as exc:  # InputError from parse_address
            raise ConfigError(f"invalid deployment: {exc}") from exc

    def dump(self, path: Path | str) -> None:
        """Write as JSON to ``path`` (creating its directory), atomically: a reader sees the old
        file or the new one, never half of one (a deployment file is what other commands and
        tools are pointed at)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Readable by others, as before: it holds addresses, no secret.
        text = json.dumps(self.to_json(), indent=2) + "\n"
        replace_file(path, text.encode(), mode=0o644, durable=True)

    @classmethod
    def load(cls, path: Path | str) -> Deployment:
        """Read from a JSON file written by :meth:`dump`.

        Raises:
            ConfigError: when the file is missing or invalid.
        """
        path = Path(path)
        missing = ConfigError(
            f"no deployment at {path}",
            hint="start the devnet (reef chain), or deploy first (reef chain deploy)",
        )
        data = read_json(path, missing=missing, unreadable=f"cannot read the deployment at {path}")
        return cls.from_json(data)
