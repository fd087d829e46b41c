"""Running the KMS services: the root server (two listeners) and the derive server of an enclave.

:class:`RootServer` runs a :class:`KmsRoot` on a Scallop listener (``/derive``, served with
:func:`reef.scallop.serve_asgi`) and a public HTTP listener (uvicorn). After a rotation the Scallop
listener answers new handshakes with the new version's key; it keeps its socket (listening again
would leave the port free for a moment, for any local process to take).

:class:`DeriveServer` runs inside an enclave's trusted base: it waits for the root's port, fetches
the enclave seed over Scallop, then serves :func:`derive_server_app` on loopback.

Per client address (an IPv6 /64) the root spends a budget of attestation verifications, chain
calls and public answers a second, then answers 429 with a ``Retry-After``
(:mod:`reef._peers`; the rates are :class:`RootServer` arguments).

Both HTTP listeners run on reef's serving floor (:mod:`reef._serve`): TCP_NODELAY, request limits
(the KMS takes no request bodies beyond a rotation, so 64 KiB), per-peer connection caps, and no
signal handling of their own: the program that runs them (``reef kms root serve``, an enclave's
supervisor) stops them with :meth:`aclose`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reef._listen import is_loopback
from reef._peers import PeerBudget, PeerRate
from reef._serve import Limits, Server, serve
from reef.errors import InputError, KMSBusyError, KMSError
from reef.kms._derive import DerivedKey, KeyType, derive_key
from reef.kms._derive_server import EnclaveSeeds, derive_server_app
from reef.kms._keyring import RootKeyring, identity_digest
from reef.kms._public import PUBLIC_RATE, public_app
from reef.kms._root import KmsRoot
from reef.kms._scallop import (
    ATTESTATION_RATE,
    CHAIN_RATE,
    DEFAULT_MAX_AGE_MS,
    BudgetedStore,
    KmsWiring,
    client_policy,
    scallop_app,
)

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from reef.attestation import Attester, TrustedRoot
    from reef.scallop import Auther, ScallopServer

__all__ = ["DeriveServer", "RootServer", "http_attester", "own_tee_root"]

_log = logging.getLogger("reef.kms.server")


_LIMITS = Limits(max_body=64 * 1024)


def _started(port: int | None, server: str) -> int:
    """The port ``server`` listens on.

    Raises:
        KMSError: the server is not started.
    """
    if port is None:
        raise KMSError(f"{server} is not started")
    return port


@dataclass(eq=False)
class _Listener:
    """One HTTP app on the serving floor, bound when started."""

    app: ASGIApp
    host: str
    port: int
    log_level: str
    what: str
    server: Server | None = field(default=None, init=False)

    async def start(self) -> int:
        """Bind and serve; return the port.

        Raises:
            KMSError: when the port cannot be listened on.
        """
        self.server = await serve(
            self.app,
            host=self.host,
            port=self.port,
            what=self.what,
            limits=_LIMITS,
            error=KMSError,
            hint="is the port already in use? (0 picks a free one)",
            log_level=self.log_level,
        )
        return self.server.port

    async def wait(self) -> None:
        if self.server is not None:
            await self.server.wait()

    async def aclose(self) -> None:
        if self.server is not None:
            await self.server.aclose()


class RootServer:
    """A KMS root's Scallop and public listeners. An async context manager.

    Args:
        root: the root's keys and policy.
        peer_roots: TEE roots a client enclave's attestation may chain to.
        host: the address both listeners bind.
        scallop_port, public_port: 0 picks free ports.
        max_age_ms: how old a client's attestation may be.
        clock: milliseconds since the epoch for attestation freshness (wall clock when None).
        log_level: the HTTP server's log level.
        attestation_rate: attestations verified per client group (an IPv4 address, an IPv6
            /64) on the Scallop listener; past it a handshake is let through unattested and
            its requests answered 429 (:class:`reef.kms._scallop.BudgetedStore`).
        chain_rate: contract approvals asked of the chain per client group; past it 429.
        public_rate: what each client group may ask of the public listener; past it 429.
    """

    def __init__(
        self,
        root: KmsRoot,
        *,
        peer_roots: Sequence[TrustedRoot],
        host: str = "127.0.0.1",
        scallop_port: int = 1100,
        public_port: int = 1101,
        max_age_ms: int = DEFAULT_MAX_AGE_MS,
        clock: Callable[[], int] | None = None,
        log_level: str = "warning",
        attestation_rate: PeerRate = ATTESTATION_RATE,
        chain_rate: PeerRate = CHAIN_RATE,
        public_rate: PeerRate = PUBLIC_RATE,
    ) -> None:
        if not peer_roots:
            raise InputError(
                "the KMS root needs at least one TEE root to check client attestations against",
                hint="--trust aws for Nitro enclaves, --trust dev for local ones",
            )
        self.root = root
        self.host = host
        self._peer_roots = tuple(peer_roots)
        self._max_age_ms = max_age_ms
        self._clock = clock
        self._requested_scallop_port = scallop_port
        self._verifications = PeerBudget(attestation_rate)
        self._chain_calls = PeerBudget(chain_rate)
        self._public = _Listener(
            public_app(root, budget=PeerBudget(public_rate)),
            host,
            public_port,
            log_level,
            "KMS root's public listener",
        )
        self._scallop: ScallopServer | None = None
        self._scallop_port: int | None = None
        self._public_port: int | None = None

    def __repr__(self) -> str:
        return f"RootServer({self.host}, scallop={self._scallop_port}, public={self._public_port})"

    def _auther(self, keyring: RootKeyring) -> Auther | None:
        if self.root.attester is None:
            return None
        # A client that asks for the root's attestation gets one naming the Scallop key and
        # committing to the whole identity (as /info); derive servers pin instead of asking.
        return _SharedAttestation(self.root, keyring)

    async def _serve_scallop(self, keyring: RootKeyring, port: int) -> ScallopServer:
        from reef.scallop import connection_peer, serve_asgi

        policy = client_policy(self._peer_roots, max_age_ms=self._max_age_ms, clock=self._clock)
        return await serve_asgi(
            scallop_app(
                self.root, verifications=self._verifications, chain_calls=self._chain_calls
            ),
            self.host,
            port,
            static_key=keyring.scallop_secret(),
            policy=BudgetedStore(policy, self._verifications, connection_peer),
            auther=self._auther(keyring),
            handshake_timeout=5.0,
            # Slots shared per peer address (reef.scallop._slots): a crowd of stalled handshakes
            # cannot keep enclaves from their seeds (issue 11). Enclaves of one provider host
            # share its address, and may have 16 handshakes (milliseconds each) under way at once.
            max_handshakes=256,
            per_peer_handshakes=16,
            busy_handshake_timeout=1.0,
            lifespan="off",
            max_body=1024,
            keepalive_timeout=5.0,
        )

    async def start(self) -> None:
        """Bind both listeners.

        Raises:
            ChannelError, KMSError: when a port cannot be listened on.
        """
        self._scallop = await self._serve_scallop(self.root.keyring, self._requested_scallop_port)
        self._scallop_port = self._scallop.port
        try:
            self._public_port = await self._public.start()
        except BaseException:
            await self._scallop.aclose()
            raise
        self.root.on_rotate(self._rekey)
        _log.info(
            "KMS root v%d: scallop %s:%d (key %s), public http://%s:%d",
            self.root.keyring.current_version,
            self.host,
            self._scallop_port,
            self.root.keyring.identity().scallop_key.hex(),
            self.host,
            self._public_port,
        )

    async def _rekey(self, keyring: RootKeyring) -> None:
        if self._scallop is None:
            return
        self._scallop.rekey(keyring.scallop_secret(), auther=self._auther(keyring))
        _log.info(
            "KMS root rotated to v%d: Scallop key %s",
            keyring.current_version,
            keyring.identity().scallop_key.hex(),
        )

    @property
    def scallop_port(self) -> int:
        return _started(self._scallop_port, "the root server")

    @property
    def public_port(self) -> int:
        return _started(self._public_port, "the root server")

    @property
    def public_url(self) -> str:
        return f"http://{self.host}:{self.public_port}"

    def wiring(self, *, contract_address: str | None = None) -> KmsWiring:
        """What an enclave's derive server needs to reach this root (current version)."""
        keyring = self.root.keyring
        return KmsWiring(
            scallop_host=self.host,
            scallop_port=self.scallop_port,
            scallop_key=keyring.identity().scallop_key,
            public_url=self.public_url,
            signing_keys={i.version: i.signing_key for i in keyring.identities()},
            contract_address=contract_address,
        )

    def identity_digest(self) -> bytes:
        keyring = self.root.keyring
        return identity_digest(
            keyring.identities(), chain_id=self.root.chain_id, admin=self.root.admin or ""
        )

    async def wait(self) -> None:
        """Wait until the public listener stops (after :meth:`aclose`, or if it fails)."""
        await self._public.wait()

    async def aclose(self) -> None:
        """Close both listeners."""
        await self._public.aclose()
        if self._scallop is not None:
            await self._scallop.aclose()
            self._scallop = None

    async def __aenter__(self) -> RootServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class DeriveServer:
    """The derive server of one enclave. An async context manager.

    Args:
        seeds: where the enclave seed comes from (:meth:`for_enclave` builds the usual one).
        host: must be a loopback address unless ``allow_non_loopback`` (anyone reaching this
            listener gets the enclave's secrets).
        port: 0 picks a free port (inside an enclave: 1100, as Oyster).
        startup_timeout: seconds to wait for the root's port to accept connections.
    """

    def __init__(
        self,
        seeds: EnclaveSeeds,
        *,
        wiring: KmsWiring | None = None,
        host: str = "127.0.0.1",
        port: int = 1100,
        allow_non_loopback: bool = False,
        startup_timeout: float = 30.0,
        log_level: str = "warning",
    ) -> None:
        if not allow_non_loopback and not is_loopback(host):
            raise InputError(
                f"the derive server must listen on loopback, not {host}",
                hint="it hands out the enclave's secrets to whoever reaches it",
            )
        self.seeds = seeds
        self.wiring = wiring
        self.host = host
        self._startup_timeout = startup_timeout
        self._http = _Listener(derive_server_app(seeds), host, port, log_level, "derive server")
        self._port: int | None = None

    @classmethod
    def for_enclave(
        cls,
        wiring: KmsWiring,
        *,
        static_key: bytes,
        auther: Auther,
        host: str = "127.0.0.1",
        port: int = 1100,
        **options: Any,
    ) -> DeriveServer:
        """A derive server that fetches its seeds from the root in ``wiring``.

        Args:
            static_key: the enclave's X25519 identity secret (32 bytes).
            auther: returns the enclave's attestation of that key (e.g.
                ``reef.scallop.auther_from_url("http://127.0.0.1:1300/attestation/raw")``).
        """
        seeds = EnclaveSeeds.from_root(wiring, static_key=static_key, auther=auther)
        return cls(seeds, wiring=wiring, host=host, port=port, **options)

    def __repr__(self) -> str:
        return f"DeriveServer({self.host}:{self._port}, {self.seeds!r})"

    async def start(self) -> None:
        """Fetch the enclave seed from the root, then listen.

        Raises:
            KMSError: when the root is unreachable within ``startup_timeout`` or refuses.
        """
        try:
            # The root may still be starting (reef up starts it first, but not necessarily
            # before us): retry while its port refuses connections, never once it refused us.
            version = await self.seeds.start(
                retry_for_s=self._startup_timeout, retry_if=_worth_retrying
            )
        except KMSError as exc:
            if _unreachable(exc):
                raise KMSError(
                    f"the KMS root is not reachable: {exc.message}",
                    hint="start the KMS root first (reef up does), or check the wiring",
                ) from exc
            raise
        self._port = await self._http.start()
        _log.info("derive server on %s:%d (root seed v%d)", self.host, self._port, version)

    @property
    def port(self) -> int:
        return _started(self._port, "the derive server")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def wait(self) -> None:
        """Wait until the listener stops (after :meth:`aclose`, or if it fails)."""
        await self._http.wait()

    async def key(self, path: str, key_type: KeyType, *, version: int | None = None) -> DerivedKey:
        """A key of this enclave (e.g. the init-params key at ``oyster.init-params``)."""
        seed, _ = await self.seeds.get(version)
        return derive_key(seed, path, key_type)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> DeriveServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


_REUSE_ATTESTATION_S = 10.0
"""Seconds one handshake attestation of the root serves (clients accept 300 s old ones by
default; ``reef scallop call --max-age`` may ask for fresher, down to this)."""


class _SharedAttestation:
    """The root's attestation for Scallop handshakes, made once every ten seconds at most (an
    :data:`~reef.scallop.Auther`).

    It names the root's Scallop key and identity and an empty nonce, nothing of the client's,
    so every client may be given the same one. Made per handshake, any tenant's enclave could
    have the root attest (an NSM call each, in a worker thread) as fast as it could handshake.
    """

    def __init__(self, root: KmsRoot, keyring: RootKeyring) -> None:
        self._root = root
        self._keyring = keyring
        self._lock = asyncio.Lock()
        self._document = b""
        self._made_at = 0.0

    async def __call__(self) -> bytes:
        async with self._lock:  # handshakes that come while one is made wait for it
            now = asyncio.get_running_loop().time()
            if not self._document or now - self._made_at >= _REUSE_ATTESTATION_S:
                self._document = await asyncio.to_thread(
                    self._root.identity_attestation, b"", keyring=self._keyring
                )
                self._made_at = now
            return self._document


def http_attester(url: str, *, timeout: float = 5.0) -> Attester:
    """An :class:`reef.attestation.Attester` over a custom attestation server (Oyster's
    ``attestation-server-custom``, reef's ``custom_attestation_app``): ``GET url?public_key=&
    user_data=&nonce=`` (hex) answers the raw document. Only reachable from inside the enclave.

    Raises (when called):
        ServiceError: when the server cannot be reached or refuses.
    """
    from reef.attestation import AttestationClient

    client = AttestationClient(timeout=timeout)

    def attest(*, public_key: bytes, user_data: bytes, nonce: bytes) -> bytes:
        return client.fetch(url, public_key=public_key, user_data=user_data, nonce=nonce)

    return attest


def own_tee_root(attester: Attester) -> TrustedRoot:
    """The TEE root this enclave's own attestations chain to (``--trust self``).

    A KMS root that accepts enclaves of its own TEE needs no configured root: its NSM (or the dev
    TEE's attestation service) is trusted anyway, and the root of its own document is that TEE's
    (:meth:`TrustedRoot.from_document`: ``aws`` or ``mock`` when it is one of those pinned roots,
    ``dev`` otherwise, so warnings about insecure roots still apply).

    Raises:
        ServiceError: when the attester fails.
        AttestationError: when its document does not decode or carries no certificate bundle.
    """
    from reef.attestation import TrustedRoot

    return TrustedRoot.from_document(attester(public_key=b"", user_data=b"", nonce=b""))


def _worth_retrying(exc: KMSError) -> bool:
    """A root that is not up yet, or that asks us to come back later (429)."""
    return isinstance(exc, KMSBusyError) or _unreachable(exc)


def _unreachable(exc: BaseException) -> bool:
    """Whether a failure was a refused or timed-out TCP connection (somewhere in its causes)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError | ConnectionResetError | TimeoutError):
            return True
        seen = seen.__cause__
    return False
