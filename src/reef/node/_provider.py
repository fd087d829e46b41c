"""A provider, assembled: indexer + control plane + its HTTP API, against any JSON-RPC chain.

``reef provider run`` runs one on its own; ``reef up`` runs one next to the devnet. The pieces
live in :mod:`reef.chain` (indexer) and :mod:`reef.market` (control plane); this module only
wires them to a chain endpoint, a database, an enclave backend and a listening socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from web3 import Web3

from reef.attestation import DevAuthority, TrustedRoot
from reef.chain import Address, Indexer, MarketClient, TxResult, Web3BlockSource
from reef.enclave import LocalBackend
from reef.errors import ChainError, ConfigError
from reef.home import ReefHome
from reef.market import (
    LAUNCH_BURST,
    BackendRunner,
    ControlPlane,
    EnclaveRunner,
    ImageFetcher,
    ImagePolicy,
    ImageStore,
    JobPolicy,
    RateCard,
    control_plane_app,
)
from reef.node._serve import Served, serve_app
from reef.node._session import connect

__all__ = ["ProviderDirs", "ProviderService", "ProviderSettings", "register_provider"]


@dataclass(frozen=True)
class ProviderDirs:
    """Where a provider keeps its state in a home (``$REEF_HOME/provider``).

    ``reef up`` and ``reef provider run`` must agree on these: a provider recognises its own
    enclaves by the launch directory they were staged in (:class:`reef.market.BackendRunner`).
    """

    home: ReefHome

    @property
    def db_url(self) -> str:
        """The indexer's SQLite database."""
        return f"sqlite:///{self.home.path('provider', 'index.db')}"

    @property
    def cache_dir(self) -> Path:
        """Downloaded images, by hash."""
        return self.home.path("provider", "cache", ".keep").parent

    @property
    def launch_dir(self) -> Path:
        """Where launches are staged."""
        return self.home.path("provider", "launch", ".keep").parent


@dataclass(frozen=True, kw_only=True)
class ProviderSettings:
    """Everything a provider needs besides its enclave backend."""

    rpc_url: str
    market: Address
    provider: Address
    db_url: str
    cache_dir: Path
    rates: RateCard = field(default_factory=RateCard.dev)
    image_policy: ImagePolicy = field(default_factory=ImagePolicy)
    allow_owners: frozenset[Address] | None = None
    deny_owners: frozenset[Address] = frozenset()
    safety_margin_s: int = 300
    confirmations: int = 0
    start_block: int = 0
    host: str = "127.0.0.1"
    port: int = 8080
    public_host: str = "127.0.0.1"
    poll_interval: float = 1.0
    heartbeat_interval: float = 5.0
    memory_budget_mib: int | None = None
    """The memory all enclaves may ask for together (None: this host's physical memory)."""
    launch_burst: int | None = LAUNCH_BURST
    """Enclave starts and stops a churning owner has at once (None: no bound), as
    :class:`reef.market.ControlPlane` takes it."""


def register_provider(market: MarketClient, cp_url: str) -> tuple[str, TxResult[Any] | None]:
    """Make the market point at ``cp_url`` for the client's sending account.

    Returns the action taken (``registered``, ``updated`` or ``unchanged``) and its transaction.

    Raises:
        ChainError: the transaction failed.
    """
    current = market.provider(market.sender)
    if current is None:
        return "registered", market.add_provider(cp_url)
    if current != cp_url:
        return "updated", market.update_provider(cp_url)
    return "unchanged", None


class ProviderService:
    """A running provider. :meth:`start`, then :meth:`aclose` (enclaves stay unless asked);
    :meth:`wait` returns if it stops by itself (a :class:`reef._serve.Serving`, so
    ``reef provider run`` serves it as every reef server).

    A :class:`reef.market.BackendRunner`'s backend is the provider's: :meth:`aclose` closes it
    (a spare supervisor it keeps for the next launch exits; enclaves stay).
    """

    def __init__(
        self, settings: ProviderSettings, runner: EnclaveRunner, *, w3: Web3 | None = None
    ) -> None:
        self.settings = settings
        self.runner = runner
        self._w3 = w3
        self.control_plane: ControlPlane | None = None
        self.indexer: Indexer | None = None
        self._served: Served | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        if self._served is None:
            raise ConfigError("the provider is not started")
        return self._served.url

    async def start(self) -> ProviderService:
        """Check the chain and market, catch up with the market's history, reconcile, serve.

        Raises:
            RPCError / ConfigError: the chain is unreachable or has no market at the address.
            ServiceError: the HTTP port cannot be bound.
        """
        s = self.settings
        w3 = self._w3 if self._w3 is not None else await asyncio.to_thread(connect, s.rpc_url)
        market = s.market
        code = await asyncio.to_thread(lambda: w3.eth.get_code(Web3.to_checksum_address(market)))
        if not code:
            raise ConfigError(
                f"there is no contract at {market} on the chain at {s.rpc_url}",
                hint="pass the market's address with --market (reef chain info shows it)",
            )
        if isinstance(self.runner, BackendRunner):
            chain_id = await asyncio.to_thread(lambda: int(w3.eth.chain_id))
            self.runner.attest_jobs(chain_id=chain_id, market=market)
        self.indexer = Indexer(
            Web3BlockSource(w3),
            s.db_url,
            contract=market,
            start_block=s.start_block,
            confirmations=s.confirmations,
        )
        policy = JobPolicy(
            s.rates,
            provider=s.provider,
            allow_owners=s.allow_owners,
            deny_owners=s.deny_owners,
            safety_margin_s=s.safety_margin_s,
        )
        fetcher = ImageFetcher(ImageStore(s.cache_dir), s.image_policy)
        cp = ControlPlane(
            policy=policy,
            feed=self.indexer,
            runner=self.runner,
            fetcher=fetcher,
            poll_interval=s.poll_interval,
            heartbeat_interval=s.heartbeat_interval,
            host=s.public_host,
            memory_budget_mib=s.memory_budget_mib,
            launch_burst=s.launch_burst,
        )
        self.control_plane = cp
        tee_root = await asyncio.to_thread(_tee_root, self.runner)
        # Serve first so /spec answers while the history is replayed.
        self._served = await serve_app(
            control_plane_app(cp, tee_root=tee_root), host=s.host, port=s.port, what="control plane"
        )
        try:
            await cp.start()
        except BaseException:
            await self._served.aclose()
            raise
        self._task = asyncio.create_task(cp.run(), name="control plane")
        return self

    async def wait(self) -> None:
        """Return when the provider stops by itself: its HTTP server ended, or its control plane
        stopped following the chain (a failed round is retried, so only a crash ends it); at
        once before :meth:`start`. Cancelling the wait stops neither."""
        if self._served is None or self._task is None:
            return
        serving = asyncio.ensure_future(self._served.wait())
        try:
            await asyncio.wait({self._task, serving}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            serving.cancel()

    async def aclose(self, *, stop_enclaves: bool = False) -> None:
        """Stop following the chain and serving; with ``stop_enclaves`` stop every enclave.
        Closes the runner's backend either way (even when :meth:`start` failed)."""
        try:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ChainError):
                    await self._task
            if self.control_plane is not None:
                if stop_enclaves:
                    await self.control_plane.stop_all()
                else:
                    await self.control_plane.aclose()
            if self._served is not None:
                await self._served.aclose()
        finally:
            if isinstance(self.runner, BackendRunner):
                await self.runner.aclose()


def _tee_root(runner: EnclaveRunner) -> TrustedRoot | None:
    """The root this provider's enclaves chain to, served at its control plane's ``/tee-root``
    for tenants on other homes (``reef deploy --root provider``): the dev TEE root of the home a
    local backend runs enclaves from; ``None`` for any other runner, whose root is not ours to
    say (a Nitro host's is AWS's, which tenants pin themselves)."""
    if isinstance(runner, BackendRunner) and isinstance(runner.backend, LocalBackend):
        return DevAuthority.load_or_create(runner.backend.home).root
    return None
