"""Who and where a user command acts: the chain endpoint, the market, the sending account.

Resolution order, for every command that talks to the market (flags win):

1. ``--rpc`` / ``--market`` / ``--key``;
2. ``$REEF_HOME/network.json`` (written by ``reef up``);
3. ``$REEF_HOME/chain/devnet.json`` (written by ``reef chain`` and ``reef up``).

Without ``--key``, on reef's own devnet, commands send from dev account 0 (its key is public and
printed by ``reef up``; fine on a laptop chain, never anywhere else). On any other chain a key
file is required.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from reef.chain import (
    Address,
    DevnetInfo,
    MarketClient,
    ProgressCallback,
    TokenClient,
    parse_address,
    read_devnet_info,
)
from reef.encoding import read_key_file
from reef.errors import ConfigError, InputError, RPCError
from reef.home import ReefHome
from reef.node._network import NetworkInfo
from reef.node._provider import connect

__all__ = ["MarketLocation", "Session", "load_key_file", "locate_market", "open_session"]

DEFAULT_DEV_ACCOUNT = 0


def load_key_file(path: Path) -> LocalAccount:
    """An Ethereum account from a key file: 32 raw bytes, or 64 hex digits (``0x`` optional).

    Raises:
        InputError: when the file cannot be read or does not hold a secp256k1 private key.
    """
    raw = read_key_file(path, kind="private key")
    try:
        account: LocalAccount = Account.from_key(raw)
    except (ValueError, TypeError) as exc:
        raise InputError(f"the key in {path} is not a valid secp256k1 private key") from exc
    return account


@dataclass(frozen=True, kw_only=True)
class MarketLocation:
    """Where the chain and the market are, resolved from flags and ``$REEF_HOME`` (no connection)."""

    rpc_url: str
    market_address: Address
    network: NetworkInfo | None
    """``network.json``, when ``reef up`` wrote one."""
    devnet: DevnetInfo | None
    """``chain/devnet.json``, when reef's devnet ran in this home."""

    @property
    def start_block(self) -> int:
        """The first block that can hold the market's events: the deployment's block when the
        market is the one this home deployed, else 0 (another market's history is unknown)."""
        deployment = self.network.deployment if self.network else None
        if deployment is None and self.devnet is not None:
            deployment = self.devnet.deployment
        if deployment is not None and deployment.market == self.market_address:
            return deployment.block
        return 0

    @property
    def safety_margin_s(self) -> int | None:
        """How long before the money runs out the local provider stops enclaves, if known."""
        return self.network.safety_margin_s if self.network else None

    def default_provider(self) -> Address | None:
        return self.network.provider if self.network else None

    def image_store(self, url: str | None = None) -> str:
        """``url``, else the local network's image store.

        Raises:
            ConfigError: when neither is known.
        """
        store = url or (self.network.image_store if self.network else None)
        if store is None:
            raise ConfigError("no image store to upload to", hint="pass --store URL")
        return store


@dataclass(frozen=True, kw_only=True)
class Session(MarketLocation):
    """A connection to the market for one command, and the account it sends from."""

    home: ReefHome
    w3: Web3
    account: LocalAccount | None
    account_note: str

    def market(self, progress: ProgressCallback | None = None) -> MarketClient:
        return MarketClient(self.w3, self.market_address, account=self.account, progress=progress)

    def token(self, progress: ProgressCallback | None = None) -> TokenClient:
        return self.market(progress).token

    def now(self) -> int:
        """Unix seconds, never before the chain's latest block: the instant the market would
        settle at next.

        A devnet's clock runs ahead of the wall clock after a burst of transactions, and the
        market refuses to settle a job before its last settlement, so money arithmetic on the
        wall clock alone can fail or understate what was spent.

        Raises:
            RPCError: the endpoint does not answer.
        """
        try:
            chain = int(self.w3.eth.get_block("latest")["timestamp"])
        except Exception as exc:  # any failure here means the endpoint cannot be used
            raise RPCError(f"cannot read the latest block from {self.rpc_url}: {exc}") from exc
        return max(int(time.time()), chain)

    @property
    def address(self) -> Address:
        """The sending account's address.

        Raises:
            ConfigError: when no account was resolved (commands that only read).
        """
        if self.account is None:
            raise ConfigError("no account to send from", hint="pass --key FILE")
        return Address(self.account.address)  # eth_account gives it checksummed


def _try_network(home: ReefHome) -> NetworkInfo | None:
    try:
        return NetworkInfo.load(home)
    except ConfigError:
        return None


def _try_devnet(home: ReefHome) -> DevnetInfo | None:
    try:
        return read_devnet_info(home)
    except ConfigError:
        return None


def locate_market(
    home: ReefHome, *, rpc: str | None = None, market: str | None = None
) -> MarketLocation:
    """Resolve the chain endpoint and market address (see the module docstring for the order).

    Raises:
        ConfigError: nothing says where the chain or market is.
        InputError: the market address is not an address.
    """
    network = _try_network(home)
    devnet = _try_devnet(home)
    rpc_url = rpc or (network.rpc_url if network else None) or (devnet.rpc_url if devnet else None)
    if not rpc_url:
        raise ConfigError(
            f"no chain endpoint: nothing in {home.root} says where the network is",
            hint="start the local network with `reef up`, or pass --rpc URL and --market ADDR",
        )
    market_address = market
    if market_address is None and network is not None:
        market_address = network.deployment.market
    if market_address is None and devnet is not None and devnet.deployment is not None:
        market_address = devnet.deployment.market
    if market_address is None:
        raise ConfigError("no market address known", hint="pass --market ADDR")
    return MarketLocation(
        rpc_url=rpc_url,
        market_address=parse_address(market_address, name="market address"),
        network=network,
        devnet=devnet,
    )


def open_session(
    home: ReefHome,
    *,
    rpc: str | None = None,
    market: str | None = None,
    key: Path | None = None,
    need_account: bool = True,
) -> Session:
    """Resolve and connect (see the module docstring for the order).

    Raises:
        ConfigError: nothing says where the chain or market is, or no account is available.
        RPCError: the endpoint does not answer.
    """
    where = locate_market(home, rpc=rpc, market=market)
    w3 = connect(where.rpc_url)
    account: LocalAccount | None = None
    note = ""
    if key is not None:
        account = load_key_file(key)
        note = f"{account.address} (key file {key})"
    elif need_account:
        devnet = where.devnet
        dev_chain = devnet is not None and int(w3.eth.chain_id) == devnet.chain_id
        if not dev_chain or devnet is None or not devnet.accounts:
            raise ConfigError(
                "no account to send transactions from",
                hint="pass --key FILE (a file holding the private key as hex)",
            )
        dev = devnet.accounts[DEFAULT_DEV_ACCOUNT]
        account = dev.local_account
        note = f"{account.address} (dev account {DEFAULT_DEV_ACCOUNT}; its key is public)"
    return Session(
        rpc_url=where.rpc_url,
        market_address=where.market_address,
        network=where.network,
        devnet=where.devnet,
        home=home,
        w3=w3,
        account=account,
        account_note=note,
    )
