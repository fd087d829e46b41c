"""The derive server: the KMS inside every enclave (reference oyster_cvm.md §2.4).

At start it obtains the enclave's 64-byte seed from the KMS root (over Scallop, proving the
enclave's image with an attestation: :func:`reef.kms.fetch_enclave_seed`), keeps it in memory only,
and serves the app on loopback:

=====================  ==========================================
``GET /derive``        64-byte path seed            (``?path=``)
``GET /derive/secp256k1``  32-byte secret           (``?path=``)
``GET /derive/ed25519``    32-byte Ed25519 seed     (``?path=``)
``GET /derive/x25519``     32-byte clamped secret   (``?path=``)
=====================  ==========================================

exactly as Oyster's. reef adds ``&version=N``: keys under an older root seed version (after a
rotation), fetched from the root on first use and cached, so an app can migrate data it sealed
under the old keys. Answers carry ``x-reef-kms-version``.

The listener must only be reachable from inside the enclave: whoever reaches it gets the
enclave's secrets. It binds 127.0.0.1 by default and refuses to bind anything else unless asked.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Literal

from starlette.requests import Request
from starlette.responses import Response

from reef._api import LightApi, light_api
from reef._peers import PeerBudget, PeerRate
from reef.errors import InputError, KMSBusyError, KMSError, ReefError
from reef.kms._derive import KeyType, derive_secret, path_seed
from reef.kms._http import (
    PATH_PARAM,
    VERSION_PARAM,
    add_kms_route,
    busy_response,
    error_response,
    kms_guard,
    parse_path,
    parse_version,
    query_params,
    versioned_answer,
    versioned_response,
)
from reef.kms._scallop import KmsWiring, fetch_enclave_seed

if TYPE_CHECKING:
    from reef.attestation import TrustedRoot
    from reef.scallop import Auther

__all__ = ["OTHER_VERSIONS_RATE", "EnclaveSeeds", "SeedFetcher", "derive_server_app"]

_log = logging.getLogger("reef.kms.derive")

SeedFetcher = Callable[[int | None], Awaitable[tuple[bytes, int]]]
"""Fetches the enclave seed of a root seed version (None: current); returns ``(seed, version)``."""


OTHER_VERSIONS_RATE = PeerRate(per_second=1, burst=8)
"""How often an enclave's derive server asks the root for seeds of versions it does not hold:
8 at once, one more a second. Each ask is a Scallop handshake with a fresh attestation, which
the root counts against the enclave's host address, shared with its neighbours; a version that
does not exist is asked for anew every time (it may exist after a rotation)."""


class EnclaveSeeds:
    """The enclave's seeds by root version: the current one fetched at start, others on demand.

    Args:
        fetch: asks the KMS root (over Scallop) for the seed of a version.
        fetches: how often versions not held may be fetched (None: no bound); past it
            :meth:`get` raises :class:`~reef.errors.KMSBusyError`.
    """

    def __init__(self, fetch: SeedFetcher, *, fetches: PeerBudget | None = None) -> None:
        self._fetch = fetch
        self._fetches = fetches
        self._seeds: dict[int, bytes] = {}
        self._default: int | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"EnclaveSeeds(versions={sorted(self._seeds)}, default={self._default})"

    @classmethod
    def from_root(
        cls,
        wiring: KmsWiring,
        *,
        static_key: bytes,
        auther: Auther,
        roots: Sequence[TrustedRoot] = (),
    ) -> EnclaveSeeds:
        """Seeds fetched from the KMS root in ``wiring`` (:func:`reef.kms.fetch_enclave_seed`).

        Args:
            static_key: the enclave's X25519 identity secret (32 bytes).
            auther: returns the enclave's attestation of that key.
            roots: roots under which a rotated root may attest its new key (see ``wiring``).
        """

        async def fetch(version: int | None) -> tuple[bytes, int]:
            return await fetch_enclave_seed(
                wiring, static_key=static_key, auther=auther, version=version, roots=roots
            )

        return cls(fetch, fetches=PeerBudget(OTHER_VERSIONS_RATE))

    @classmethod
    def fixed(cls, seed: bytes, version: int = 0) -> EnclaveSeeds:
        """Seeds that are already known (tests, Oyster's mock derive server with zero seed)."""
        if len(seed) != 64:
            raise InputError(f"an enclave seed is 64 bytes, got {len(seed)}")

        async def refuse(v: int | None) -> tuple[bytes, int]:
            # No root to ask: another version is not unavailable but nonexistent here.
            raise InputError(
                f"this derive server holds only the seed of version {version}, not {v}",
                hint=f"ask for version {version}, or leave version out",
            )

        seeds = cls(refuse)
        seeds._seeds[version] = bytes(seed)
        seeds._default = version
        return seeds

    @property
    def default_version(self) -> int | None:
        """The version used when a request names none (the root's current one at start)."""
        return self._default

    async def start(
        self,
        *,
        retry_for_s: float = 0.0,
        on_retry: Callable[[KMSError, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        retry_if: Callable[[KMSError], bool] = lambda _: True,
    ) -> int:
        """Fetch the current seed from the root; return its version.

        A root serving a burst of enclave boots from one host refuses the connections past its
        per-address share (reef.scallop's handshake slots, or 429 past the attestations it
        verifies for one address), and a root that is restarting refuses every one:
        ``retry_for_s`` keeps trying, with jittered backoff, for that long, calling
        ``on_retry(error, delay)`` before each wait. A 429 is waited out as its ``Retry-After``
        says (:class:`~reef.errors.KMSBusyError`), or raised at once if that is past the
        window. The last error is raised after, and at once an error ``retry_if`` says is
        final (any error is retried by default).

        Raises:
            KMSError: when the root refuses or cannot be reached (after the retries).
        """
        deadline = clock() + retry_for_s
        delay = 0.05
        while True:
            try:
                seed, version = await self._fetch(None)
                break
            except KMSError as exc:
                left = max(0.0, deadline - clock())
                pause = min(delay * (0.5 + random.random()), left)
                if isinstance(exc, KMSBusyError):
                    # Asking before the root's Retry-After would only be refused again.
                    pause = exc.retry_after_s if exc.retry_after_s <= left else 0.0
                if pause <= 0 or not retry_if(exc):
                    raise
                if on_retry is not None:
                    on_retry(exc, pause)
                await asyncio.sleep(pause)
                delay = min(delay * 2, 2.0)
        self._store(seed, version)
        self._default = version
        return version

    def _store(self, seed: bytes, version: int) -> None:
        if len(seed) != 64:
            raise KMSError(f"the KMS root sent a {len(seed)}-byte enclave seed, not 64")
        self._seeds[version] = seed

    async def get(self, version: int | None) -> tuple[bytes, int]:
        """The seed of ``version`` (None: default), fetching and caching it on first use.

        Raises:
            KMSError: before :meth:`start`, or when the root refuses or sends a bad seed.
        """
        if version is None:
            if self._default is None:
                raise KMSError("the derive server has no enclave seed yet")
            return self._seeds[self._default], self._default
        if version in self._seeds:
            return self._seeds[version], version
        async with self._lock:
            if version not in self._seeds:
                fetches = self._fetches
                wait = fetches.take("root") if fetches is not None else 0.0
                if fetches is not None and wait:
                    raise KMSBusyError(
                        f"version {version} is not held here, and this enclave asked the KMS "
                        "root for other versions' seeds more often than "
                        f"{fetches.rate.per_second:g} a second",
                        retry_after_s=wait,
                        hint="ask again later; a version the root does not have yet (before "
                        "a rotation) is refused every time",
                    )
                seed, answered = await self._fetch(version)
                if answered != version:
                    raise KMSError(f"asked the KMS root for version {version}, got {answered}")
                self._store(seed, version)
        return self._seeds[version], version


_Kind = Literal["seed", "secp256k1", "ed25519", "x25519"]


def derive_server_app(seeds: EnclaveSeeds) -> LightApi:
    """The derive server's loopback API over ``seeds`` (wrapped in the request limits)."""

    app = light_api(
        "reef KMS derive server",
        description="This enclave's keys, derived from its seed (Oyster-compatible); reachable "
        "from inside the enclave only.",
    )

    def endpoint(route: str, kind: _Kind, summary: str) -> None:
        async def handler(request: Request) -> Response:
            try:
                # Strict UTF-8 (kms._http.query_params): Starlette's own decoding maps every
                # invalid byte to U+FFFD, so different paths would name one key.
                params = query_params(request.scope)
                path = parse_path(params)
                seed, version = await seeds.get(parse_version(params))
            except InputError as exc:
                return error_response(400, exc.message)
            except KMSBusyError as exc:
                return busy_response(exc.retry_after_s, exc.message)
            except ReefError as exc:
                _log.warning("cannot get the enclave seed: %s", exc.message)
                return error_response(503, f"the KMS root is not available: {exc.message}")
            if kind == "seed":
                body = path_seed(seed, path)
            else:
                key_type: KeyType = kind
                body = derive_secret(seed, path, key_type)
            return versioned_response(body, version)

        add_kms_route(
            app,
            route,
            handler,
            name=kind,
            summary=summary,
            ok=versioned_answer("the secret bytes"),
            errors={
                400: "what is wrong with the query",
                429: "seeds of other versions were asked for too often (here or at the root); "
                "Retry-After says when to ask again",
                503: "the KMS root cannot be reached for that version's seed",
            },
            parameters=[PATH_PARAM, VERSION_PARAM],
        )

    endpoint("/derive", "seed", "The 64-byte path seed")
    endpoint("/derive/secp256k1", "secp256k1", "A secp256k1 secret key (32 bytes)")
    endpoint("/derive/ed25519", "ed25519", "An Ed25519 seed (32 bytes)")
    endpoint("/derive/x25519", "x25519", "A clamped X25519 secret (32 bytes)")
    app.add_middleware(kms_guard, what="derive server")
    return app
