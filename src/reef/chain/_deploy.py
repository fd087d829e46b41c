"""Deploying reef's contracts (token, market, KMS registry).

``deploy_contracts`` is what the devnet runs at start and what a user runs against any other
chain. The resulting :class:`~reef.chain.Deployment` (:mod:`reef.chain._deployment`) is plain data
that round-trips through JSON. web3.py and the typed clients are imported when contracts are
deployed, not with this module: the devnet's records import :class:`Deployment` from here, and a
command reading them must not pay for web3.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from reef.chain._deployment import DEFAULT_FUND_AMOUNT, DEFAULT_RATE_LOCK_S, Deployment
from reef.chain._types import parse_address

if TYPE_CHECKING:
    from web3 import Web3

    from reef.chain._tx import ProgressCallback, Sender

__all__ = ["DEFAULT_FUND_AMOUNT", "DEFAULT_RATE_LOCK_S", "Deployment", "deploy_contracts"]


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
    from reef.chain._clients import KmsRegistryClient, TokenClient, check_uint, deploy_contract
    from reef.chain._tx import Transactor

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
