"""``reef up``: the whole network on one machine, in one process (plus one per enclave).

Started in dependency order, stopped in reverse:

1. the devnet (:class:`reef.chain.Devnet`, persisted under ``$REEF_HOME/chain``) with reef's
   contracts, served over JSON-RPC (8545); or, with ``chain="anvil"``, an anvil node
   (:class:`reef.chain.devnet.AnvilChain`) on that port with the same contracts;
2. the dev TEE authority (the local enclaves' "hardware" root);
3. the content-addressed image store (8090) that ``reef deploy`` uploads to;
4. the attestation verifier service (1400), trusting the dev root;
5. the KMS root, itself an enclave (``examples/kms-root``; Scallop 1100, public 1101), whose
   attested identity is checked before any enclave is wired to it. It needs no chain, so its
   enclave boots (seconds, in processes of its own) beside steps 1-4, once this process holds
   the chain's lock (a second network in the home is refused before it touches the KMS root);
6. the local provider: its account registered in the market with its control plane's URL,
   indexer + control plane (8080) launching enclaves on the local dev TEE, each wired to the KMS;
7. the extensions (:class:`UpExtension`: serverless executors, the proof market, the dashboard),
   each given the running core (:class:`UpContext`) and each reporting what it started under its
   name in ``network.json``'s ``services``.

``network.json`` then tells every other command where everything is. Stopping (Ctrl-C) stops
every enclave the provider runs and the KMS root, and closes the devnet cleanly; jobs stay open
on the chain, and the next ``reef up`` relaunches the ones still paid for.

One module (about 600 lines): starting is one ordered story (the steps above) and stopping is
its reverse, over the network's shared state; the extensions live in modules of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from reef._listen import bind
from reef.attestation import DevAuthority, TrustedRoot
from reef.chain import DevAccount, parse_address
from reef.chain.devnet._store import DevnetLock
from reef.crypto import Secp256k1PrivateKey
from reef.enclave import (
    EnclaveBackend,
    EnclaveInfo,
    EnclaveSpec,
    build_image,
    check_host,
    missing_summary,
    open_backend,
)
from reef.errors import EnclaveError, ReefError, ServiceError
from reef.home import ReefHome, replace_json
from reef.market import RateCard
from reef.node._examples import example_dir
from reef.node._network import NetworkInfo
from reef.node._serve import Served, serve_app, until_up

if TYPE_CHECKING:
    import httpx

    from reef.chain import Devnet
    from reef.chain.devnet import AnvilChain
    from reef.node._provider import ProviderService

__all__ = [
    "PROVIDER_ACCOUNT",
    "LocalNetwork",
    "UpContext",
    "UpExtension",
    "UpSettings",
    "standard_extensions",
]

log = logging.getLogger("reef.node")

PROVIDER_ACCOUNT = 9
"""The dev account the local provider uses (the last one, out of users' way)."""


@dataclass(frozen=True, kw_only=True)
class UpSettings:
    """Ports (0 picks a free one), the market's rate lock and what to start."""

    host: str = "127.0.0.1"
    rpc_port: int = 8545
    cp_port: int = 8080
    store_port: int = 8090
    verifier_port: int = 1400
    kms_scallop_port: int = 1100
    kms_public_port: int = 1101
    rate_lock_s: int = 300
    safety_margin_s: int | None = None
    """Stop enclaves this long before their deposit runs out; the rate lock by default."""
    fresh: bool = False
    kms: bool = True
    insecure: bool = False
    """Run enclaves even where this host cannot isolate them (every output says so)."""
    kms_app: Path = field(default_factory=lambda: example_dir("kms-root"))
    rates: RateCard = field(default_factory=RateCard.dev)
    chain: Literal["devnet", "anvil"] = "devnet"
    """The chain: the embedded devnet, or an anvil node (npm ``@foundry-rs/anvil``)."""


Progress = Callable[[str], None]
# How reef up finds its KMS root enclave again after being killed.
_ROLE_LABEL = "reef.role"
_KMS_ROLE = "kms"


def _quiet(_message: str) -> None:
    return None


@dataclass(frozen=True, kw_only=True)
class UpContext:
    """The running core network, as an :class:`UpExtension` sees it when it starts."""

    home: ReefHome
    settings: UpSettings
    devnet: Devnet | AnvilChain
    info: NetworkInfo
    """The core's endpoints and addresses (chain, market, verifier, KMS, provider)."""
    authority: DevAuthority
    root: TrustedRoot
    backend: EnclaveBackend
    """A backend for the extension's own enclaves (executors, a matching engine), wired to the
    KMS root. Label them ``{"reef.role": <extension name>}``: ``reef up`` stops those when it
    stops (after :meth:`UpExtension.aclose`), even the ones a failed start left behind."""
    progress: Progress

    @property
    def rpc_port(self) -> int:
        """The host port of the chain's JSON-RPC endpoint (the one port extensions' enclaves
        may be allowed to reach)."""
        return _url_port(self.info.rpc_url)


def _url_port(url: str) -> int:
    """The port of ``http://host:port[/path]``."""
    return int(url.rsplit(":", 1)[1].split("/")[0])


async def _discard(backend: EnclaveBackend, enclave_id: str) -> None:
    """Stop and remove one enclave; one that is gone already (or will not stop) is no error."""
    with contextlib.suppress(ReefError):
        await backend.stop(enclave_id)
        await backend.remove(enclave_id)


async def _discard_roles(
    backend: EnclaveBackend, roles: Collection[str], *, keep: Collection[str] = ()
) -> None:
    """Stop and remove the enclaves labelled ``{"reef.role": r}`` for any ``r`` in ``roles``,
    except those whose ids are in ``keep``."""
    for info in await backend.list():
        if info.labels.get(_ROLE_LABEL) in roles and info.id not in keep:
            await _discard(backend, info.id)


async def _abandon(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (a start running beside one that failed) and wait for it to end; its own
    outcome is dropped: the first failure is the one to report."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


def _open_devnet(home: ReefHome, *, fresh: bool, rate_lock_s: int, lock: DevnetLock) -> Devnet:
    """:meth:`Devnet.open`, importing the devnet in the calling (worker) thread: it loads
    py-evm (seconds of CPU), which the other commands importing reef.node (reef jobs, reef
    deploy) need not pay for, and which on the event loop's thread would stall the KMS root's
    start beside it."""
    from reef.chain import Devnet

    return Devnet.open(home, fresh=fresh, rate_lock_s=rate_lock_s, lock=lock)


def _import_services() -> None:
    """Import the modules the image store, the verifier and the provider run on."""
    from reef.attestation import load_verifier_key, verifier_app  # noqa: F401
    from reef.chain import MarketClient  # noqa: F401
    from reef.market import BackendRunner, image_store_app  # noqa: F401
    from reef.node._provider import ProviderService  # noqa: F401


@contextlib.asynccontextmanager
async def _kept_transport(
    inner: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[httpx.AsyncBaseTransport]:
    """One HTTP transport (``inner``, a new ``AsyncHTTPTransport`` by default) for many
    short-lived clients, closed once when this context ends: each ``async with
    AsyncClient(transport=...)`` closes its transport on the way out, and the one yielded here
    ignores that (the base class's ``aclose`` does nothing)."""
    import httpx

    shared = inner if inner is not None else httpx.AsyncHTTPTransport()

    class Kept(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return await shared.handle_async_request(request)

    try:
        yield Kept()
    finally:
        await shared.aclose()


class _EnclaveExtension:
    """The enclave bookkeeping of an :class:`UpExtension` that runs its own enclaves.

    Its enclaves are labelled ``{"reef.role": ROLE}`` (:meth:`_start_enclave`); :meth:`aclose`
    stops those it started, :meth:`_stop_leftovers` those a killed ``reef up`` left running.
    """

    ROLE: ClassVar[str]

    def __init__(self) -> None:
        self._ctx: UpContext | None = None
        self._enclaves: list[EnclaveInfo] = []

    @property
    def name(self) -> str:
        return self.ROLE

    async def _start_enclave(self, ctx: UpContext, spec: EnclaveSpec) -> EnclaveInfo:
        """Start ``spec`` labelled with this extension's role; :meth:`aclose` stops it."""
        info = await ctx.backend.start(
            replace(spec, labels={**spec.labels, _ROLE_LABEL: self.ROLE})
        )
        self._enclaves.append(info)
        return info

    async def _stop_leftovers(self, ctx: UpContext) -> None:
        """This role's enclaves a killed ``reef up`` left running: stopped (new ones replace
        them; their keys died with them)."""
        await _discard_roles(ctx.backend, {self.ROLE}, keep={e.id for e in self._enclaves})

    async def aclose(self) -> None:
        ctx = self._ctx
        if ctx is not None:
            for info in self._enclaves:
                await _discard(ctx.backend, info.id)
        self._enclaves.clear()

    def _load_state(self, home: ReefHome) -> dict[str, Any]:
        """What this extension recorded in ``$REEF_HOME/<role>/deployment.json`` (its contracts,
        for the next ``reef up`` to reuse); empty when nothing usable is there."""
        try:
            data = json.loads((home.root / self.ROLE / "deployment.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _reusable_state(
        self, ctx: UpContext, contracts: Sequence[str], **expect: object
    ) -> dict[str, Any] | None:
        """What :meth:`_load_state` reads, when it was saved on this devnet (its chain id, and
        ``expect``'s other values) and every address under ``contracts`` still holds code;
        ``None`` when the extension must deploy anew (a fresh chain, another token, ...)."""
        state = self._load_state(ctx.home)
        expect = {"chain_id": ctx.devnet.chain_id, **expect}
        if any(state.get(key) != value for key, value in expect.items()):
            return None
        w3 = ctx.devnet.web3()
        # A missing or malformed address (KeyError, web3's ValueError) is as good as no code.
        with contextlib.suppress(KeyError, ValueError):
            if all(w3.eth.get_code(state[name]) for name in contracts):
                return state
        return None

    def _save_state(self, home: ReefHome, state: Mapping[str, Any]) -> None:
        """Replace what :meth:`_load_state` reads, atomically."""
        path = home.path(self.ROLE, "deployment.json")
        replace_json(path, state)


class UpExtension(Protocol):
    """A service ``reef up`` starts after the core network, and stops before it."""

    @property
    def name(self) -> str:
        """The key of this service in ``network.json``'s ``services``."""
        ...

    async def start(self, ctx: UpContext) -> Mapping[str, Any]:
        """Start; return the endpoints and addresses other commands need (JSON values)."""
        ...

    async def aclose(self) -> None:
        """Stop everything :meth:`start` started. Called once, even after a failed start."""
        ...


def standard_extensions(
    *,
    serverless: bool = True,
    proofs: bool = True,
    dashboard: bool = True,
    dashboard_port: int = 8888,
) -> list[UpExtension]:
    """What ``reef up`` starts after the core network, in order: serverless executors, the
    proof market, and the dashboard last (it shows what the others report)."""
    extensions: list[UpExtension] = []
    if serverless:
        from reef.node._serverless import ServerlessExtension

        extensions.append(ServerlessExtension())
    if proofs:
        from reef.node._proofs import ProofsExtension

        extensions.append(ProofsExtension())
    if dashboard:
        from reef.node._dashboard import DashboardExtension

        extensions.append(DashboardExtension(port=dashboard_port))
    return extensions


class LocalNetwork:
    """The running network. :meth:`start`, then :meth:`aclose`."""

    def __init__(
        self,
        home: ReefHome,
        settings: UpSettings | None = None,
        extensions: Sequence[UpExtension] = (),
    ) -> None:
        self.home = home
        self.settings = settings or UpSettings()
        self.extensions = tuple(extensions)
        self._started: list[UpExtension] = []
        self._extension_backend: EnclaveBackend | None = None
        self.devnet: Devnet | AnvilChain | None = None
        self.info: NetworkInfo | None = None
        self.provider: ProviderService | None = None
        self.kms_enclave: EnclaveInfo | None = None
        self._rpc: Served | None = None
        self._served: list[Served] = []
        self._kms_backend: EnclaveBackend | None = None
        # Every backend opened, closed last by aclose (the provider's keeps a spare supervisor).
        self._backends: list[EnclaveBackend] = []

    @property
    def accounts(self) -> tuple[DevAccount, ...]:
        return self.devnet.accounts if self.devnet else ()

    def check_ports(self, more: Mapping[str, int] | None = None) -> None:
        """Refuse at once a fixed port (not 0) that another process holds: the services this
        process serves, and ``more`` (a service's name to its port, e.g. the dashboard's).
        Starting finds it too, but only when it reaches that service, minutes in for the
        dashboard; a port taken between this check and then is still refused there. The KMS
        root's ports are left out: they are an enclave's, and the KMS root a killed `reef up`
        left running holds them until this one adopts it.

        Raises:
            ServiceError: naming the service and the port in use (as the serving floor does).
        """
        s = self.settings
        ports = {
            "devnet JSON-RPC endpoint": s.rpc_port,
            "control plane": s.cp_port,
            "image store": s.store_port,
            "attestation verifier": s.verifier_port,
            **(more or {}),
        }
        for what, port in ports.items():
            if port:
                bind(s.host, port, what=what, hint=f"start {what} on another port").close()

    async def start(self, progress: Progress = _quiet) -> NetworkInfo:
        """Start everything; on any failure, stop what already started and re-raise."""
        try:
            return await self._start(progress)
        except BaseException:
            await self.aclose()
            raise

    async def _start(self, progress: Progress) -> NetworkInfo:
        s = self.settings
        if not s.insecure:
            # Before anything starts: a host that cannot isolate enclaves fails in a second with
            # the install command, not after the devnet and services came up.
            missing = missing_summary(check_host())
            if missing is not None:
                raise EnclaveError(
                    f"this host cannot isolate local enclaves: missing {missing[0]}",
                    hint=f"install it: {missing[1]}; `reef doctor` checks everything; "
                    "or pass --insecure to run without that isolation",
                )
        home = self.home.ensure()
        margin = s.rate_lock_s if s.safety_margin_s is None else s.safety_margin_s
        if s.kms and not (s.kms_app / "reef.toml").is_file():
            raise ServiceError(
                f"the KMS root app is not at {s.kms_app}",
                hint="reinstall reef (its wheel ships the app), or pass --no-kms",
            )
        # The chain's lock before anything else: a second network in this home is refused here,
        # before its KMS root could adopt (and, failing, stop) the running network's.
        lock = DevnetLock(home)
        await asyncio.to_thread(lock.acquire)
        authority = await asyncio.to_thread(DevAuthority.load_or_create, home)
        root = TrustedRoot.dev(home)

        # The KMS root needs no chain: its enclave boots (seconds, in a process of its own)
        # while this process starts the chain and loads what the services need.
        kms: asyncio.Task[tuple[Any, dict[str, str]]] | None = None
        progress("starting anvil" if s.chain == "anvil" else "starting the devnet")
        try:
            if s.kms:
                kms = asyncio.create_task(self._start_kms(authority, root), name="KMS root")
                progress("starting the KMS root enclave")
            chain = await self._start_chain(home, lock)
        except BaseException:
            if self.devnet is None:  # a chain that opened owns the lock (closed by aclose)
                lock.release()
            await _abandon(kms)
            raise
        try:
            return await self._start_rest(home, chain, authority, root, kms, margin, progress)
        except BaseException:
            await _abandon(kms)
            raise

    async def _start_chain(
        self, home: ReefHome, lock: DevnetLock
    ) -> tuple[Devnet | AnvilChain, str]:
        """Open the chain (taking over ``lock``); its JSON-RPC URL."""
        s = self.settings
        devnet: Devnet | AnvilChain
        if s.chain == "anvil":
            from reef.chain.devnet import AnvilChain

            self.devnet = devnet = await asyncio.to_thread(
                AnvilChain.open,
                home,
                fresh=s.fresh,
                rate_lock_s=s.rate_lock_s,
                host=s.host,
                port=s.rpc_port,
                lock=lock,
            )
            return devnet, devnet.url
        self.devnet = devnet = await asyncio.to_thread(
            _open_devnet, home, fresh=s.fresh, rate_lock_s=s.rate_lock_s, lock=lock
        )
        from reef.chain import devnet_app

        # Served by our own uvicorn wrapper (not serve_devnet) so that Ctrl-C reaches reef
        # up rather than stopping the JSON-RPC server alone.
        self._rpc = await serve_app(
            devnet_app(devnet), host=s.host, port=s.rpc_port, what="devnet JSON-RPC endpoint"
        )
        devnet.record_endpoint(self._rpc.url)
        return devnet, self._rpc.url

    async def _start_rest(
        self,
        home: ReefHome,
        chain: tuple[Devnet | AnvilChain, str],
        authority: DevAuthority,
        root: TrustedRoot,
        kms: asyncio.Task[tuple[Any, dict[str, str]]] | None,
        margin: int,
        progress: Progress,
    ) -> NetworkInfo:
        s = self.settings
        devnet, rpc_url = chain
        deployment = devnet.deployment
        if deployment is None:  # pragma: no cover - Devnet.open deploys
            raise ServiceError("the devnet has no contracts deployed")
        # FastAPI, web3.py and the control plane: seconds of imports, in a worker thread so
        # that the event loop (the devnet's JSON-RPC, the KMS root's start) keeps going.
        await asyncio.to_thread(_import_services)
        from reef.attestation import verifier_app
        from reef.chain._reader import ProviderRpc
        from reef.market import BackendRunner
        from reef.node._image_store import funded_uploads, serve_image_store
        from reef.node._provider import ProviderDirs, ProviderService, ProviderSettings

        progress("starting the image store")  # as `reef store serve`'s, on this chain
        store_socket_url = f"http://{s.host}:{s.store_port}"
        served = await serve_image_store(
            home.images,
            uploads=funded_uploads(ProviderRpc(devnet.web3()), chain_id=devnet.chain_id),
            host=s.host,
            port=s.store_port,
            port_hint="another process uses that port; pick another with --store-port",
        )
        self._served.append(served)
        store_url = served.url if s.store_port == 0 else store_socket_url

        progress("starting the attestation verifier")
        verifier = await serve_app(
            verifier_app(self._verifier_key(), root=root),
            host=s.host,
            port=s.verifier_port,
            what="attestation verifier",
        )
        self._served.append(verifier)

        kms_wiring: Any = None
        kms_urls: dict[str, str] = {}
        if kms is not None:
            if not kms.done():
                progress("waiting for the KMS root enclave")
            kms_wiring, kms_urls = await kms

        progress("starting the provider's control plane")
        provider_account = devnet.accounts[PROVIDER_ACCOUNT]
        provider = parse_address(provider_account.address, name="provider")
        # A spare supervisor loaded ahead: a job's enclave answers its attestation sooner.
        backend = open_backend(
            home, authority=authority, kms=kms_wiring, insecure=s.insecure, spare=True
        )
        self._backends.append(backend)
        dirs = ProviderDirs(home)
        runner = BackendRunner(backend, dirs.launch_dir, provider=provider_account.address)
        self.provider = await ProviderService(
            ProviderSettings(
                rpc_url=rpc_url,
                market=deployment.market,
                provider=provider,
                db_url=dirs.db_url,
                cache_dir=dirs.cache_dir,
                rates=s.rates,
                safety_margin_s=margin,
                start_block=deployment.block,
                host=s.host,
                port=s.cp_port,
                # A job opened on the local chain starts its enclave within a quarter second
                # (a burst's first launch waited up to a whole poll here).
                poll_interval=0.25,
                heartbeat_interval=3.0,
                # Its only tenant is the developer who started it, for whom deploying and
                # stopping again and again is the work, not an attack on the provider.
                launch_burst=None,
            ),
            runner,
        ).start()
        await asyncio.to_thread(self._register, provider_account, self.provider.url)

        self.info = NetworkInfo(
            rpc_url=rpc_url,
            chain_id=devnet.chain_id,
            deployment=deployment,
            rate_lock_s=devnet.rate_lock_s or s.rate_lock_s,
            provider=provider,
            control_plane=self.provider.url,
            image_store=store_url,
            verifier=verifier.url,
            kms=kms_urls,
            safety_margin_s=margin,
            pid=os.getpid(),
            starting=tuple(extension.name for extension in self.extensions),
        )
        self.info.dump(home)
        if self.extensions:
            self._extension_backend = open_backend(
                home, authority=authority, kms=kms_wiring, insecure=s.insecure
            )
            self._backends.append(self._extension_backend)
            services: dict[str, Mapping[str, Any]] = {}
            for extension in self.extensions:
                ctx = UpContext(
                    home=home,
                    settings=s,
                    devnet=devnet,
                    info=self.info,
                    authority=authority,
                    root=root,
                    backend=self._extension_backend,
                    progress=progress,
                )
                self._started.append(extension)
                try:
                    services[extension.name] = dict(await extension.start(ctx))
                except ReefError as exc:
                    # The core network works without it: say how to start without it.
                    hint = f"{exc.hint}; " if exc.hint else ""
                    raise ServiceError(
                        f"reef up's {extension.name} could not start: {exc.message}",
                        hint=f"{hint}or run `reef up --no-{extension.name}`",
                    ) from exc
                self.info = replace(
                    self.info,
                    services=dict(services),
                    starting=tuple(e.name for e in self.extensions if e.name not in services),
                )
                self.info.dump(home)
        return self.info

    def _verifier_key(self) -> Secp256k1PrivateKey:
        """The verifier's signing key, created once per home (owner-only file)."""
        from reef.attestation import load_verifier_key

        path = self.home.path("verifier", "secp256k1.sec")
        if not path.exists():
            key = Secp256k1PrivateKey.generate()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(key.secret.hex() + "\n")
        return load_verifier_key(path)

    def _register(self, account: DevAccount, cp_url: str) -> None:
        """Make the market point at this control plane (register, or update the URL)."""
        from reef.chain import MarketClient
        from reef.node._provider import register_provider

        devnet = self.devnet
        if devnet is None or devnet.deployment is None:
            raise ServiceError("the devnet is not running")
        register_provider(
            MarketClient(devnet.web3(), devnet.deployment.market, account=account.local_account),
            cp_url,
        )

    async def _start_kms(
        self, authority: DevAuthority, root: TrustedRoot
    ) -> tuple[Any, dict[str, str]]:
        """Run the KMS root enclave and learn its attested identity (the hook for F's KMS)."""
        from reef.kms import KmsWiring, fetch_identity

        s = self.settings
        image_path = self.home.path("builds", "kms-root.img")
        image = await asyncio.to_thread(build_image, s.kms_app, image_path)
        self._kms_backend = backend = open_backend(
            self.home, authority=authority, insecure=s.insecure
        )
        self._backends.append(backend)
        wanted = {1110: s.kms_scallop_port, 1111: s.kms_public_port}
        info = await self._adopt_kms(backend, image.image_id, wanted)
        if info is None:
            info = await backend.start(
                EnclaveSpec(image=image_path, ports=wanted, labels={_ROLE_LABEL: _KMS_ROLE})
            )
        self.kms_enclave = info
        public_url = info.endpoints["ports"][1111]
        scallop_url = info.endpoints["ports"][1110]
        # One transport for every attempt: a new client's TLS context alone (the CA bundle,
        # for a plain-HTTP URL) cost 50 ms of CPU per attempt, five times a second, taken from
        # the enclave booting beside it.
        async with _kept_transport() as transport:
            identity = await until_up(
                lambda: fetch_identity(
                    public_url, root=root, image_id=image.image_id, transport=transport
                ),
                what="the KMS root enclave",
            )
        host_port = scallop_url.rsplit(":", 1)
        wiring = KmsWiring.from_identity(
            identity, scallop_host=host_port[0].split("//")[-1], scallop_port=int(host_port[1])
        )
        return wiring, {
            "scallop": wiring.endpoint,
            "public": public_url,
            "image_id": image.image_id.hex(),
        }

    @staticmethod
    async def _adopt_kms(
        backend: EnclaveBackend, image_id: bytes, wanted: dict[int, int]
    ) -> EnclaveInfo | None:
        """The KMS root enclave a killed ``reef up`` left running, if it is the one asked for.

        A survivor of another image or on other host ports is stopped instead: its ports must
        not block the new one, and one home has one KMS root.
        """
        adopted: EnclaveInfo | None = None
        for info in await backend.list():
            role = info.labels.get(_ROLE_LABEL) or ("kms" if info.name == "kms-root" else "")
            if role != _KMS_ROLE or info.state not in ("starting", "running"):
                continue
            ports = {p: int(url.rsplit(":", 1)[1]) for p, url in info.endpoints["ports"].items()}
            same_ports = all(host in (0, ports.get(inner)) for inner, host in wanted.items())
            if adopted is None and info.image_id == image_id and same_ports:
                adopted = info
                continue
            await _discard(backend, info.id)
        return adopted

    async def aclose(self, *, progress: Progress | None = None) -> None:
        """Stop every enclave and service; close the backends and the devnet. Safe to call more
        than once. ``progress`` is told of each part as it is stopped (stopping a full network
        takes seconds per part: a line for each, not one line for a minute)."""
        say = progress or (lambda _line: None)
        while self._started:
            extension = self._started.pop()
            say(f"stopping the {extension.name} service")
            try:
                await extension.aclose()
            except ReefError as exc:
                log.warning("stopping %s: %s", extension.name, exc)
        if self._extension_backend is not None:
            roles = {extension.name for extension in self.extensions}
            await _discard_roles(self._extension_backend, roles)
            self._extension_backend = None
        if self.provider is not None:
            say("stopping the provider and its enclaves")
            with contextlib.suppress(ReefError):
                await self.provider.aclose(stop_enclaves=True)
            self.provider = None
        if self.kms_enclave is not None and self._kms_backend is not None:
            say("stopping the KMS root enclave")
            await _discard(self._kms_backend, self.kms_enclave.id)
            self.kms_enclave = None
        elif self._kms_backend is not None:
            # A start stopped before the KMS root was recorded (the chain failed beside it):
            # whatever it launched. This process holds the chain's lock, so no other network
            # of this home runs one.
            await _discard_roles(self._kms_backend, {_KMS_ROLE})
        while self._backends:
            await self._backends.pop().aclose()
        for served in reversed(self._served):
            await served.aclose()
        self._served.clear()
        if self._rpc is not None:
            await self._rpc.aclose()
            self._rpc = None
            if self.devnet is not None:
                with contextlib.suppress(ReefError, OSError):
                    self.devnet.record_endpoint(None)
        if self.devnet is not None:
            say("stopping the chain")
            await asyncio.to_thread(self.devnet.close)
            self.devnet = None
        if self.info is not None:
            # Only the record this network wrote: a second `reef up` that failed to start (the
            # chain's lock held, a port busy) must not take the running network's away.
            NetworkInfo.clear(self.home)
