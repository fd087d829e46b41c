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
command's start-up) load when a command first uses the session's web3 client (``session.w3``, to
send a transaction or call a contract through web3) or its eth-account signer
(``session.account``), not before: connecting asks the chain's id through reef's own JSON-RPC
transport, a key file's address is computed with :mod:`reef.crypto`, and a command that only
reads the market (``reef jobs list``, ``show``) reads it through :meth:`Session.reader`, which
needs neither. A command run where no network is known says so at once; nor is the provider's
service (its control plane and indexer) imported to connect.

One module (about 630 lines): where a command acts is one resolution (flags, ``network.json``,
``devnet.json``), and the sessions it opens share it and its lazy clients.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from reef.encoding import read_key_file
from reef.errors import ConfigError, InputError, RPCError
from reef.home import ReefHome
from reef.node._network import NetworkInfo

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import Web3

    from reef.chain import (
        Address,
        DevnetInfo,
        MarketClient,
        MarketReader,
        ProgressCallback,
        TokenClient,
    )
    from reef.chain._reader import RpcPoster

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
    return _signer(_read_key(path))


def _read_key(path: Path) -> bytes:
    """The secp256k1 private key in a key file, checked (:func:`load_key_file`'s errors)."""
    from reef.crypto import Secp256k1PrivateKey

    raw = read_key_file(path, kind="private key")
    try:
        Secp256k1PrivateKey(raw)
    except InputError as exc:
        raise InputError(f"the key in {path} is not a valid secp256k1 private key") from exc
    return raw


def _signer(key: bytes) -> LocalAccount:
    """``key`` (checked) as an eth-account signer."""
    from eth_account import Account

    account: LocalAccount = Account.from_key(key)
    return account


def _key_address(key: bytes) -> str:
    """The checksummed address of the private key ``key``, without eth-account."""
    from reef.crypto import Secp256k1PrivateKey

    return Secp256k1PrivateKey(key).public_key.checksum_address


_T = TypeVar("_T")


@dataclass(frozen=True)
class Later(Generic[_T]):
    """A session field's value, built on first use by ``build`` (:class:`_Deferred`)."""

    build: Callable[[], _T]
    address: str | None = None
    """For an account: its address, known without building the signer."""


class _Deferred(Generic[_T]):
    """A session field given as its value or as :class:`Later` (built when first read, then
    kept): the session's web3 client and signer, whose libraries take 1.5 s to import, are
    built when a command uses them, not when it opens the session."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_deferred_{name}"

    @overload
    def __get__(self, instance: None, owner: type) -> _T: ...

    @overload
    def __get__(self, instance: object, owner: type) -> _T: ...

    def __get__(self, instance: object | None, owner: type) -> _T:
        if instance is None:
            raise AttributeError(self._slot)  # dataclasses: the field has no default
        value = instance.__dict__[self._slot]
        if isinstance(value, Later):
            value = value.build()
            instance.__dict__[self._slot] = value
        return value  # type: ignore[no-any-return]

    # Typed as the value alone (a Later is given as one through cast): mypy types a dataclass
    # subclass's inherited field by what __set__ takes.
    def __set__(self, instance: object, value: _T) -> None:
        if self._slot in instance.__dict__:
            raise AttributeError(f"the session's {self._slot[10:]} is set once")
        instance.__dict__[self._slot] = value

    def raw(self, instance: object) -> _T | Later[_T]:
        """What the field holds: its value, or the :class:`Later` not built yet."""
        return instance.__dict__[self._slot]  # type: ignore[no-any-return]

    def built(self, instance: object) -> bool:
        return not isinstance(instance.__dict__[self._slot], Later)


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
            raise ConfigError(
                "no image store to upload to", hint="pass --store URL (`reef store serve` runs one)"
            )
        return store


@dataclass(frozen=True, kw_only=True)
class ChainSession(ChainLocation):
    """A connection to a chain for one command, and the account it sends from."""

    home: ReefHome
    w3: _Deferred[Web3] = _Deferred()
    """The chain's web3 client; given, or built from ``rpc_url`` when first used."""
    account: _Deferred[LocalAccount | None] = _Deferred()
    """The signer, built when first used (its address is known before: :attr:`address`)."""
    account_note: str
    """Who sends, for the user: the address and where its key came from (empty without one)."""

    @functools.cached_property
    def rpc(self) -> RpcPoster:
        """What the session reads the chain through: reef's JSON-RPC transport to ``rpc_url``
        (:class:`reef.chain._rpc.HttpRpc`, no web3.py), or the web3 client's provider where
        that transport cannot stand in (a proxy, requests' own CA bundle) or the session was
        given its web3 client (an in-process chain)."""
        from reef.chain._reader import ProviderRpc
        from reef.chain._rpc import direct_rpc

        if not _W3.built(self):
            direct = direct_rpc(self.rpc_url, timeout=_TIMEOUT)
            if direct is not None:
                return direct
        return ProviderRpc(self.w3)

    def now(self) -> int:
        """Unix seconds, never before the chain's latest block: the instant the market would
        settle at next.

        A devnet's clock runs ahead of the wall clock after a burst of transactions, and the
        market refuses to settle a job before its last settlement, so money arithmetic on the
        wall clock alone can fail or understate what was spent.

        Raises:
            RPCError: the endpoint does not answer.
        """
        from reef.chain._reader import latest_timestamp

        try:
            chain = latest_timestamp(self.rpc)
        except Exception as exc:  # any failure here means the endpoint cannot be used
            raise RPCError(f"cannot read the latest block from {self.rpc_url}: {exc}") from exc
        return max(int(time.time()), chain)

    @property
    def address(self) -> Address:
        """The sending account's address.

        Raises:
            ConfigError: when no account was resolved (commands that only read).
        """
        from reef.chain import Address

        held = _ACCOUNT.raw(self)
        if isinstance(held, Later) and held.address is not None:
            return Address(held.address)  # known without building the signer
        if self.account is None:
            raise ConfigError("no account to send from", hint="pass --key FILE")
        return Address(self.account.address)  # eth_account gives it checksummed


_W3: _Deferred[Web3] = ChainSession.__dict__["w3"]
_ACCOUNT: _Deferred[LocalAccount | None] = ChainSession.__dict__["account"]
_TIMEOUT = 30.0
"""Seconds a read of the node may wait (web3.py's default, as :func:`connect` gives it)."""


@dataclass(frozen=True, kw_only=True)
class Session(ChainSession, MarketLocation):
    """A connection to the compute market for one command, and the account it sends from."""

    def market(self, progress: ProgressCallback | None = None) -> MarketClient:
        from reef.chain import MarketClient

        return MarketClient(self.w3, self.market_address, account=self.account, progress=progress)

    @functools.cached_property
    def reader(self) -> MarketReader:
        """The market, read without web3.py (:class:`reef.chain.MarketReader`, over
        :attr:`rpc`): what a command that only reads uses (``reef jobs list``, ``show``)."""
        from reef.chain import MarketReader

        return MarketReader(self.rpc, self.market_address)

    def token(self, progress: ProgressCallback | None = None) -> TokenClient:
        return self.market(progress).token()


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


def _still_starting(network: NetworkInfo, service: str) -> bool:
    """Whether the ``reef up`` that wrote ``network`` runs and has yet to start ``service``."""
    if service not in network.starting or network.pid is None:
        return False
    try:
        os.kill(network.pid, 0)
    except ProcessLookupError:
        return False  # killed while it started: nothing will start the service
    except PermissionError:
        pass  # another user's process: it runs
    return True


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
        if not value and network is not None and _still_starting(network, service):
            raise ConfigError(
                f"reef up (pid {network.pid}) is still starting its {service}",
                hint="wait until it prints `ready`, then run this again",
            )
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
    found = _default_dev_key(chain_id, devnet)
    if found is None:
        return None
    key, note = found
    return _signer(key), note


def _default_dev_key(chain_id: int, devnet: DevnetInfo | None) -> tuple[bytes, str] | None:
    """:func:`default_dev_account`'s key and note, without building the signer."""
    from reef.chain import DEVNET_CHAIN_ID, dev_accounts

    if devnet is not None and devnet.chain_id == chain_id and devnet.accounts:
        dev = devnet.accounts[DEFAULT_DEV_ACCOUNT]
    elif chain_id == DEVNET_CHAIN_ID:
        dev = dev_accounts(DEFAULT_DEV_ACCOUNT + 1)[DEFAULT_DEV_ACCOUNT]
    else:
        return None
    address = _key_address(dev.private_key)
    return dev.private_key, f"{address} (dev account {DEFAULT_DEV_ACCOUNT}; its key is public)"


def connect(rpc_url: str, *, timeout: float = 30.0, hint: str | None = None) -> Web3:
    """A web3 client for ``rpc_url``, checked to answer: it has read the chain's id, which its
    provider keeps (:class:`reef.chain.BoundedHTTPProvider`), so asking it again costs nothing.

    Here, not with the provider's service, whose module imports the provider's server stack
    (FastAPI, SQLAlchemy, uvicorn: about a second) that no user command needs to connect.

    Raises:
        RPCError: when the endpoint does not answer JSON-RPC (with ``hint``, else one saying how
            a local chain starts).
    """
    from reef.chain import http_web3

    w3 = http_web3(rpc_url, timeout=timeout)
    try:
        w3.eth.chain_id  # noqa: B018 - a round trip proves the endpoint works
    except Exception as exc:  # any failure here means "not a usable endpoint"
        raise _unreachable(rpc_url, exc, hint) from exc
    return w3


def _unreachable(rpc_url: str, exc: Exception, hint: str | None = None) -> RPCError:
    return RPCError(
        f"cannot reach the JSON-RPC endpoint {rpc_url}: {exc}",
        hint=hint or "is the chain running? (`reef up` or `reef chain` starts a local one)",
    )


def _unreachable_hint(where: ChainLocation) -> str | None:
    """What to do when ``where``'s node does not answer, if not to start a local chain: a home
    that records ``reef chain deploy``'s contracts (no dev accounts) uses a node reef does not
    run, and refuses a devnet over that record."""
    devnet = where.devnet
    if devnet is None or devnet.accounts or devnet.rpc_url != where.rpc_url:
        return None
    return (
        f"this home uses reef's contracts on chain {devnet.chain_id}, deployed there by `reef "
        "chain deploy`: start that node again (reef does not run it), or pass --rpc URL where "
        "it answers now"
    )


def _connect(
    home: ReefHome, where: ChainLocation, *, key: Path | None, need_account: bool
) -> ChainSession:
    """Check that ``where``'s endpoint answers (its chain id, one request through reef's
    transport) and pick the account; web3.py and eth-account are built when first used."""
    from reef.chain._rpc import direct_rpc

    direct = direct_rpc(where.rpc_url, timeout=_TIMEOUT)
    hint = _unreachable_hint(where)
    w3: Web3 | Later[Web3]
    if direct is None:  # a proxy, requests' CA bundle: web3.py's provider reaches the node
        w3 = connect(where.rpc_url, hint=hint)
        chain_id = int(w3.eth.chain_id)  # read by connect, kept by the provider
    else:
        w3 = Later(functools.partial(_web3, where.rpc_url))
        chain_id = _chain_id(direct, where.rpc_url, hint)
    account: LocalAccount | Later[LocalAccount | None] | None = None
    note = ""
    if key is not None:
        raw = _read_key(key)
        address = _key_address(raw)
        account = Later(functools.partial(_signer, raw), address=address)
        note = f"{address} (key file {key})"
    elif need_account:
        default = _default_dev_key(chain_id, where.devnet)
        if default is None:
            raise ConfigError(
                f"no account to send transactions from (chain {chain_id} has no public dev "
                "account to default to)",
                hint="pass --key FILE (a file holding the private key as hex); to read another "
                "account's jobs and balance (reef jobs list, reef wallet), --owner ADDR",
            )
        raw, note = default
        account = Later(functools.partial(_signer, raw), address=_key_address(raw))
    session = ChainSession(
        rpc_url=where.rpc_url,
        network=where.network,
        devnet=where.devnet,
        home=home,
        # Later values, built on first use (_Deferred): given as the values they build.
        w3=cast("Web3", w3),
        account=cast("LocalAccount | None", account),
        account_note=note,
    )
    if direct is not None:
        session.__dict__["rpc"] = direct  # the connection that asked the chain id, kept
    return session


def _web3(rpc_url: str) -> Web3:
    """The web3 client a session builds when a command first uses it (no round trip)."""
    from reef.chain import http_web3

    return http_web3(rpc_url, timeout=_TIMEOUT)


def _chain_id(rpc: RpcPoster, rpc_url: str, hint: str | None = None) -> int:
    """The chain's id, asked through ``rpc``: proof that the endpoint answers JSON-RPC.

    Raises:
        RPCError: it does not (as :func:`connect` says it).
    """
    from reef.chain._reader import chain_id

    try:
        return chain_id(rpc)
    except Exception as exc:  # any failure here means "not a usable endpoint"
        raise _unreachable(rpc_url, exc, hint) from exc


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
    return _extend(chain, Session(market_address=where.market_address, **_fields(chain)))


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
    return _extend(chain, ServiceSession(contracts=contracts, **_fields(chain)))


def _fields(chain: ChainSession) -> dict[str, Any]:
    """``chain``'s fields, to build a session that adds to it (:class:`Session`,
    :class:`ServiceSession`): what it holds, a web3 client or signer not built yet included,
    and the transport it connected through."""
    deferred: dict[str, _Deferred[Any]] = {"w3": _W3, "account": _ACCOUNT}
    return {
        f.name: deferred[f.name].raw(chain) if f.name in deferred else getattr(chain, f.name)
        for f in fields(chain)
    }


def _extend(chain: ChainSession, session: _SessionT) -> _SessionT:
    """``session`` (built from ``chain``'s :func:`_fields`), keeping ``chain``'s transport."""
    if "rpc" in chain.__dict__:
        session.__dict__["rpc"] = chain.__dict__["rpc"]
    return session


_SessionT = TypeVar("_SessionT", bound=ChainSession)
