"""Deploying reef's contracts (token, market, KMS registry) and remembering where they are.

``deploy_contracts`` is what the devnet runs at start and what a user runs against any other
chain. The resulting :class:`Deployment` is plain data that round-trips through JSON, so it can
be written under ``$REEF_HOME`` and read back by every other command.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from web3 import Web3

from reef.chain._clients import KmsRegistryClient, TokenClient, check_uint, deploy_contract
from reef.chain._tx import ProgressCallback, Sender, Transactor
from reef.chain._types import TOKEN_DECIMALS, Address, parse_address
from reef.errors import ConfigError
from reef.home import read_json

__all__ = ["DEFAULT_FUND_AMOUNT", "DEFAULT_RATE_LOCK_S", "Deployment", "deploy_contracts"]

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

    def dump(self, path: Path) -> None:
        """Write as JSON to ``path`` (creating its directory)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Deployment:
        """Read from a JSON file written by :meth:`dump`.

        Raises:
            ConfigError: when the file is missing or invalid.
        """
        missing = ConfigError(
            f"no deployment at {path}", hint="start the devnet (reef chain) or deploy first"
        )
        data = read_json(path, missing=missing, unreadable=f"cannot read the deployment at {path}")
        return cls.from_json(data)


def deploy_contracts(
    w3: Web3,
    deployer: Sender,
    *,
    rate_lock_s: int = DEFAULT_RATE_LOCK_S,
    fund: Sequence[str] = (),
    fund_amount: int = DEFAULT_FUND_AMOUNT,
    approved_images: Sequence[bytes | str] = (),
    progress: ProgressCallback | None = None,
) -> Deployment:
    """Deploy the test token, the market and the KMS registry, and mint to ``fund``.

    Args:
        w3: any web3 provider.
        deployer: a ``LocalAccount``, or an address the node signs for; it owns the token
            (may mint) and the KMS registry (approves images).
        rate_lock_s: seconds a rate revision stays locked (MarketV1 deploys with 300).
        fund: addresses that each receive ``fund_amount`` token base units.
        approved_images: image ids the KMS registry approves from the start.
    """
    check_uint(rate_lock_s, "rate_lock_s", bits=64)
    check_uint(fund_amount, "fund_amount")
    recipients = [parse_address(a, name="funded account") for a in fund]
    transactor = Transactor(w3, deployer, progress=progress)
    token_address, _ = deploy_contract(transactor, "Token", "reef test USD", "rUSD")
    market_address, market_block = deploy_contract(transactor, "Market", token_address, rate_lock_s)
    registry = KmsRegistryClient.deploy(w3, deployer, approved_images, progress=progress)
    if fund_amount:
        token = TokenClient(w3, token_address, account=deployer, progress=progress)
        for recipient in recipients:
            token.mint(recipient, fund_amount)
    return Deployment(
        chain_id=transactor.chain_id(),
        token=token_address,
        market=market_address,
        kms_registry=registry.address,
        block=market_block,
    )
