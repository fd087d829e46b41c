"""Who and where a user command acts: the chain endpoint, the contracts, the sending account.

One resolution for every command that talks to a chain (flags win):

1. ``--rpc`` / ``--key`` and the contract flags (``--market``; ``--jobs`` / ``--code`` for the
   serverless contracts; ``--proof-market``);
2. ``$REEF_HOME/network.json`` (written by ``reef up``): the chain, the compute market, and each
   service's contracts under ``services.<name>``;
3. ``$REEF_HOME/chain/devnet.json`` (written by ``reef chain`` and ``reef up``): the chain and
   the compute market.

:func:`open_chain` connects to the chain and picks the account (a :class:`ChainSession`, no
contract needed); :func:`open_session` adds the compute market (a :class:`Session`);
:func:`locate_service` finds a service's contract addresses, and :func:`open_service` connects to
them with the account (a :class:`ServiceSession`; ``reef fn``, ``reef executor``, ``reef proofs``).

Without ``--key``, on a development chain, commands send from dev account 0 (its key is public
and printed by ``reef up``; fine on a laptop chain, never anywhere else): this home's devnet
(the account ``devnet.json`` records, on the chain id it records), or any chain with hardhat's and
anvil's id 31337 (the public mnemonic's account 0, which those chains fund). On any other chain
a command that sends needs a key file.

Imports are kept to what a command reaches: web3.py, eth-account and eth-utils (about 1.5 s of a
command's start-up) load when a chain is found and connected to, not before, so a command run
where no network is known says so at once; nor is the provider's service (its control plane and
indexer) imported to connect, as :func:`reef.node.connect` would.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reef.encoding import read_key_file
from reef.errors import ConfigError, InputError, RPCError
from reef.home import ReefHome
from reef.node._network import NetworkInfo

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import Web3

    from reef.chain import Address, DevnetInfo, MarketClient, ProgressCallback, TokenClient

__all__ = [
    "ChainLocation",
    "ChainSession",
    "MarketLocation",
    "ServiceContracts",
    "ServiceSession",
    "Session",
    "connect",
    "default_dev_account",
    "load_key_file",
    "locate_chain",
    "locate_market",
    "locate_service",
    "open_chain",
    "open_service",
    "open_session",
]

DEFAULT_DEV_ACCOUNT = 0

_CHAIN_HINT = "start the local network with `reef up`, or pass --rpc URL and --market ADDR"


def load_key_file(path: Path) -> LocalAccount:
    """An Ethereum account from a key file: 32 raw bytes, or 64 hex digits (``0x`` optional).

    Raises:
        InputError: when the file cannot be read or does not hold a secp256k1 private key.
    """
    from eth_account import Account

    raw = read_key_file(path, kind="private key")
    try:
        account: LocalAccount = Account.from_key(raw)
    except (ValueError, TypeError) as exc:
        raise InputError(f"the key in {path} is not a valid secp256k1 private key") from exc
    return account


@dataclass(frozen=True, kw_only=True)
class ChainLocation:
    """Where the chain is, resolved from flags and ``$REEF_HOME`` (no connection)."""

    rpc_url: str
    network: NetworkInfo | None
    """``network.json``, when ``reef up`` wrote one."""
    devnet: DevnetInfo | None
    """``chain/devnet.json``, when reef's devnet ran in this home."""


@dataclass(frozen=True, kw_only=True)
class MarketLocation(ChainLocation):
    """Where the chain and the market are, resolved from flags and ``$REEF_HOME`` (no connection)."""

    market_address: Address

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
class ChainSession(ChainLocation):
    """A connection to a chain for one command, and the account it sends from."""

    home: ReefHome
    w3: Web3
    account: LocalAccount | None
    account_note: str
    """Who sends, for the user: the address and where its key came from (empty without one)."""

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
        from reef.chain import Address

        return Address(self.account.address)  # eth_account gives it checksummed


@dataclass(frozen=True, kw_only=True)
class Session(ChainSession, MarketLocation):
    """A connection to the compute market for one command, and the account it sends from."""

    def market(self, progress: ProgressCallback | None = None) -> MarketClient:
        from reef.chain import MarketClient

        return MarketClient(self.w3, self.market_address, account=self.account, progress=progress)

    def token(self, progress: ProgressCallback | None = None) -> TokenClient:
        return self.market(progress).token


@dataclass(frozen=True, kw_only=True)
class ServiceContracts:
    """A service's contracts on the chain, named by flags or by ``reef up``'s ``network.json``."""

    service: str
    """The service's name in ``network.json``'s ``services`` (``serverless``, ``proofs``)."""
    addresses: Mapping[str, Address]
    """Each contract asked for, by its ``network.json`` field (``jobs_contract``, ``market``)."""
    entry: Mapping[str, Any]
    """Everything ``network.json`` says of the service (empty when it names none): its
    endpoints, artifact directories, start block."""

    def __getitem__(self, name: str) -> Address:
        return self.addresses[name]


@dataclass(frozen=True, kw_only=True)
class ServiceSession(ChainSession):
    """A connection to a service's chain for one command, the service's contracts on it, and
    the account it sends from (:func:`open_service`)."""

    contracts: ServiceContracts


def _try_network(home: ReefHome) -> NetworkInfo | None:
    try:
        return NetworkInfo.load(home)
    except ConfigError:
        return None


def _try_devnet(home: ReefHome) -> DevnetInfo | None:
    if not home.chain.is_dir():
        # No devnet ever ran in this home: said without importing the devnet's records, which
        # load web3.py (a command that finds no chain says so at once).
        return None
    from reef.chain import read_devnet_info

    try:
        return read_devnet_info(home)
    except ConfigError:
        return None


def locate_service(
    home: ReefHome, service: str, given: Mapping[str, str | None], *, missing: str, hint: str
) -> ServiceContracts:
    """The addresses of a service's contracts: each of ``given``'s values (a flag) when set,
    else the field of that name in ``network.json``'s ``services[service]``.

    Raises:
        ConfigError: ``missing`` (with ``hint``) when a contract is named by neither.
        InputError: an address is not an address.
    """
    network = _try_network(home)
    entry = dict(network.services.get(service, {})) if network else {}
    from reef.chain import parse_address

    addresses: dict[str, Address] = {}
    for name, flag in given.items():
        value = flag or entry.get(name)
        if not value:
            raise ConfigError(missing, hint=hint)
        addresses[name] = parse_address(str(value), name=f"the {service} {name.replace('_', ' ')}")
    return ServiceContracts(service=service, addresses=addresses, entry=entry)


def locate_chain(
    home: ReefHome, *, rpc: str | None = None, hint: str = _CHAIN_HINT
) -> ChainLocation:
    """Resolve the chain endpoint (see the module docstring for the order).

    Raises:
        ConfigError: nothing says where the chain is (with ``hint``: the flags the command has).
    """
    network = _try_network(home)
    devnet = _try_devnet(home)
    rpc_url = rpc or (network.rpc_url if network else None) or (devnet.rpc_url if devnet else None)
    if not rpc_url:
        raise ConfigError(
            f"no chain endpoint: nothing in {home.root} says where the network is", hint=hint
        )
    return ChainLocation(rpc_url=rpc_url, network=network, devnet=devnet)


def locate_market(
    home: ReefHome, *, rpc: str | None = None, market: str | None = None
) -> MarketLocation:
    """Resolve the chain endpoint and market address (see the module docstring for the order).

    Raises:
        ConfigError: nothing says where the chain or market is.
        InputError: the market address is not an address.
    """
    where = locate_chain(home, rpc=rpc)
    from reef.chain import parse_address  # after: no chain found, no eth-utils loaded

    network, devnet = where.network, where.devnet
    market_address = market
    if market_address is None and network is not None:
        market_address = network.deployment.market
    if market_address is None and devnet is not None and devnet.deployment is not None:
        market_address = devnet.deployment.market
    if market_address is None:
        raise ConfigError("no market address known", hint="pass --market ADDR")
    return MarketLocation(
        rpc_url=where.rpc_url,
        market_address=parse_address(market_address, name="market address"),
        network=network,
        devnet=devnet,
    )


def default_dev_account(
    chain_id: int, devnet: DevnetInfo | None
) -> tuple[LocalAccount, str] | None:
    """Dev account 0 and a note saying so, when ``chain_id`` is a development chain's: this
    home's devnet (the account its ``devnet.json`` records), else hardhat's and anvil's 31337
    (the public mnemonic's account, which reef's devnet, anvil and hardhat all fund); else
    ``None``: no key may be assumed on any other chain."""
    from reef.chain import DEVNET_CHAIN_ID, dev_accounts

    if devnet is not None and devnet.chain_id == chain_id and devnet.accounts:
        account = devnet.accounts[DEFAULT_DEV_ACCOUNT].local_account
    elif chain_id == DEVNET_CHAIN_ID:
        account = dev_accounts(DEFAULT_DEV_ACCOUNT + 1)[DEFAULT_DEV_ACCOUNT].local_account
    else:
        return None
    return account, f"{account.address} (dev account {DEFAULT_DEV_ACCOUNT}; its key is public)"


def connect(rpc_url: str, *, timeout: float = 30.0) -> Web3:
    """A web3 client for ``rpc_url``, checked to answer: it has read the chain's id, which its
    provider keeps (:class:`reef.chain.BoundedHTTPProvider`), so asking it again costs nothing.

    Here, not with the provider's service, whose module imports the provider's server stack
    (FastAPI, SQLAlchemy, uvicorn: about a second) that no user command needs to connect.

    Raises:
        RPCError: when the endpoint does not answer JSON-RPC.
    """
    from reef.chain import http_web3

    w3 = http_web3(rpc_url, timeout=timeout)
    try:
        w3.eth.chain_id  # noqa: B018 - a round trip proves the endpoint works
    except Exception as exc:  # any failure here means "not a usable endpoint"
        raise RPCError(
            f"cannot reach the JSON-RPC endpoint {rpc_url}: {exc}",
            hint="is the chain running? (`reef up` or `reef chain` starts a local one)",
        ) from exc
    return w3


def _connect(
    home: ReefHome, where: ChainLocation, *, key: Path | None, need_account: bool
) -> ChainSession:
    w3 = connect(where.rpc_url)
    chain_id = int(w3.eth.chain_id)  # read by connect, kept by the provider
    account: LocalAccount | None = None
    note = ""
    if key is not None:
        account = load_key_file(key)
        note = f"{account.address} (key file {key})"
    elif need_account:
        default = default_dev_account(chain_id, where.devnet)
        if default is None:
            raise ConfigError(
                "no account to send transactions from",
                hint="pass --key FILE (a file holding the private key as hex)",
            )
        account, note = default
    return ChainSession(
        rpc_url=where.rpc_url,
        network=where.network,
        devnet=where.devnet,
        home=home,
        w3=w3,
        account=account,
        account_note=note,
    )


def open_chain(
    home: ReefHome,
    *,
    rpc: str | None = None,
    key: Path | None = None,
    need_account: bool = True,
    hint: str = _CHAIN_HINT,
) -> ChainSession:
    """Resolve the chain and connect; pick the sending account: ``key``'s, else (when
    ``need_account``) dev account 0 on a development chain (see the module docstring). Without
    ``need_account`` and ``key`` the session has no account (a command that only reads).

    Raises:
        ConfigError: nothing says where the chain is (``hint`` says which flags to pass), or an
            account is needed and none is available.
        InputError: the key file is unreadable or holds no key.
        RPCError: the endpoint does not answer.
    """
    where = locate_chain(home, rpc=rpc, hint=hint)
    return _connect(home, where, key=key, need_account=need_account)


def open_session(
    home: ReefHome,
    *,
    rpc: str | None = None,
    market: str | None = None,
    key: Path | None = None,
    need_account: bool = True,
) -> Session:
    """:func:`open_chain` with the compute market (see the module docstring for the order).

    Raises:
        ConfigError: nothing says where the chain or market is, or no account is available.
        InputError: the market address or the key file is invalid.
        RPCError: the endpoint does not answer.
    """
    where = locate_market(home, rpc=rpc, market=market)
    chain = _connect(home, where, key=key, need_account=need_account)
    return Session(market_address=where.market_address, **_fields(chain))


def open_service(
    home: ReefHome,
    service: str,
    given: Mapping[str, str | None],
    *,
    rpc: str | None = None,
    key: Path | None = None,
    need_account: bool = True,
    missing: str,
    hint: str,
    chain_hint: str | None = None,
) -> ServiceSession:
    """:func:`locate_service` (``service``'s contracts: ``given``'s flags, else ``network.json``'s)
    then :func:`open_chain` (the chain ``rpc`` names, the account ``key`` holds): what a command
    of a service on the chain (serverless, proofs) acts on. ``hint`` says which flags to pass
    when a contract is unknown; ``chain_hint`` (default ``hint``) when the chain is.

    Raises:
        ConfigError: ``missing`` when a contract is named nowhere; nothing says where the chain
            is; or an account is needed and none is available.
        InputError: an address or the key file is invalid.
        RPCError: the endpoint does not answer.
    """
    contracts = locate_service(home, service, given, missing=missing, hint=hint)
    chain = open_chain(home, rpc=rpc, key=key, need_account=need_account, hint=chain_hint or hint)
    return ServiceSession(contracts=contracts, **_fields(chain))


def _fields(chain: ChainSession) -> dict[str, Any]:
    """``chain``'s fields, to build a session that adds to it (:class:`Session`,
    :class:`ServiceSession`)."""
    return {f.name: getattr(chain, f.name) for f in fields(chain)}
