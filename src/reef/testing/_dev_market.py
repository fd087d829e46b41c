"""reef's market on a devnet, with a provider registered, in one call.

Tests of the provider, the job commands and the dashboard all begin the same way: a
:class:`reef.chain.Devnet`, reef's contracts deployed by dev account 0, dev accounts funded, and
dev account 9 registered as the provider whose control plane the test serves (or leaves away).
:func:`dev_market` does those steps, so each test writes only what it is about; a library user
testing a tool against reef's market starts from the same place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reef.chain import Deployment, DevAccount, Devnet, JobId, MarketClient, deploy_contracts
from reef.market import JobMetadata

__all__ = ["DevMarket", "dev_job_metadata", "dev_market"]

OWNER = 0
"""The dev account that deploys the contracts and opens jobs."""
PROVIDER = 9
"""The dev account registered as the provider."""


@dataclass(frozen=True)
class DevMarket:
    """reef's contracts on ``devnet``: dev account 0 deployed them and owns jobs, dev account 9
    is the provider (registered when :func:`dev_market` was given a control plane)."""

    devnet: Devnet
    deployment: Deployment

    @property
    def provider(self) -> DevAccount:
        """Dev account 9, the provider."""
        return self.devnet.accounts[PROVIDER]

    @property
    def owner(self) -> MarketClient:
        """The market as dev account 0, the job owner, signs it."""
        return self.client(OWNER)

    def client(self, account: int) -> MarketClient:
        """The market as dev account ``account`` signs it."""
        signer = self.devnet.accounts[account].local_account
        return MarketClient(self.devnet.web3(), self.deployment.market, account=signer)

    def register_provider(self, control_plane: str) -> None:
        """Register dev account 9 as a provider whose control plane serves at ``control_plane``."""
        self.client(PROVIDER).add_provider(control_plane)

    def open_job(
        self, rate: int, amount: int, *, url: str = "http://store/x", memory: int = 1024
    ) -> JobId:
        """The owner opens a ``dev.small`` job in region ``local`` for the provider, at ``rate``
        token units a second with ``amount`` deposited. Nothing fetches the image at ``url``
        unless a control plane runs the job."""
        metadata = dev_job_metadata(url, memory=memory).to_json()
        return self.owner.open_job(metadata, self.provider.address, rate, amount)

    def write_key(self, path: Path, account: int = OWNER) -> Path:
        """Write dev account ``account``'s private key (hex) to ``path``, as the CLI's ``--key``
        reads it; returns ``path``."""
        path.write_text(self.devnet.accounts[account].private_key.hex())
        return path


def dev_job_metadata(
    url: str, *, memory: int = 256, name: str = "", debug: bool = False
) -> JobMetadata:
    """The metadata of a job on the local dev TEE (instance ``dev.small`` of
    :meth:`reef.market.RateCard.dev`, region ``local``, 1 vCPU) running the image at ``url``."""
    return JobMetadata(
        instance="dev.small", region="local", memory=memory, vcpu=1, url=url, name=name, debug=debug
    )


def dev_market(
    devnet: Devnet | None = None,
    *,
    control_plane: str | None = None,
    rate_lock_s: int = 5,
    fund: Iterable[int] | None = None,
) -> DevMarket:
    """Deploy reef's contracts on ``devnet`` (a new :class:`~reef.chain.Devnet` by default).

    Args:
        control_plane: when given, dev account 9 is registered as a provider serving there.
        rate_lock_s: seconds a rate revision stays locked (short, so tests can wait it out).
        fund: the dev accounts (by index) given test tokens; every one by default.
    """
    chain = Devnet() if devnet is None else devnet
    accounts = chain.accounts
    funded = range(len(accounts)) if fund is None else fund
    deployment = deploy_contracts(
        chain.web3(),
        accounts[OWNER].address,
        rate_lock_s=rate_lock_s,
        fund=[accounts[i].address for i in funded],
    )
    market = DevMarket(chain, deployment)
    if control_plane is not None:
        market.register_provider(control_plane)
    return market
