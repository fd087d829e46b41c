"""The attestation client: fetch an enclave's attestation document over HTTP, verify it live.

Every place that asks a running enclave what it runs (``reef verify``, ``reef deploy``, a KMS
root's custom attester, a Scallop auther, the tests) does the same three things, here once:

1. name the document: ``host:port`` or a URL (:func:`attestation_url`); a bare address means
   Oyster's ``/attestation/raw``, a path ending in ``/hex`` is read as hex text (reference
   oyster_cvm.md §1.4); Oyster's custom server also takes ``public_key``, ``user_data`` and
   ``nonce`` as hex query parameters;
2. fetch it, optionally retrying while the enclave is still starting (``wait_s``), within
   bounds a hostile server cannot stretch: at most :data:`MAX_DOCUMENT_BYTES` are read, and the
   whole answer (head and body) must arrive within the client's ``timeout``;
3. verify it in **live** mode at the client's clock: chain to the given root, fresh within
   ``max_age_ms``, and the caller's :class:`~reef.attestation.Expectations`.

Verified results may be cached (``cache=True``), keyed by the URL, the root and the expectations
(the expected image id, public key, ...), until the document would fail the freshness check or
``cache_ttl_ms`` passes, whichever comes first; expectations with a nonce are a challenge and are
never answered from the cache.

httpx is the HTTP client because the rest of reef uses it and it takes a ``transport=``:
tests inject ``httpx.MockTransport`` or an in-process ASGI app instead of patching. The client
keeps no connection open between calls (each fetch opens and closes its own), so it needs no
closing and is safe to share between threads and tasks. Both a blocking (:meth:`fetch`,
:meth:`verify`) and an asyncio form (:meth:`afetch`, :meth:`averify`) exist because both kinds of
caller exist (the CLI and thread-pool attesters; Scallop and the dev TEE's async code).

httpx's timeouts bound each socket operation, not an answer: a server that sends one byte a
second (in its headers or its body) is never late for any read. Each answer is therefore read by
:func:`reef._fetch.read_bounded`, reef's one bounded reader for strangers' answers, which bounds
the whole of it (head and body) in time and size; the blocking calls use its blocking twin.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from typing import Final, TypedDict, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from reef._clock import wall_clock_ms
from reef._fetch import FetchError, fetch_blocking, read_bounded, tls_context
from reef.attestation._cache import AttestationCache
from reef.attestation._model import Expectations, VerifiedAttestation
from reef.attestation._nitro import DEFAULT_MAX_AGE_MS, NitroVerifier
from reef.attestation._roots import TrustedRoot
from reef.encoding import terminal_text
from reef.errors import InputError, MisuseError, ServiceError

__all__ = ["AttestationClient", "attestation_url"]

DEFAULT_TIMEOUT_S: Final = 10.0
MAX_DOCUMENT_BYTES: Final = 1 << 20
"""The most bytes of an answer the client reads (1 MiB): a Nitro document is about 5 kB, a TDX
quote with its certificates about 10 kB, so a server sending more is refused, not read to its
end (a hostile one would send a gigabyte)."""
# How often a fetch is retried while an enclave starts: quick enough that a caller waiting for
# a fresh enclave is not slowed down, slow enough not to spin.
_RETRY_INTERVAL_S: Final = 0.1
_Transport = httpx.BaseTransport | httpx.AsyncBaseTransport
_T = TypeVar("_T", httpx.BaseTransport, httpx.AsyncBaseTransport)


def attestation_url(endpoint: str) -> str:
    """``host:port``, ``http://host:port`` or a full URL, to the URL of the document.

    A URL without a path gets ``/attestation/raw`` (Oyster's attestation server); one with a
    path is kept as given (``/attestation/hex`` is read as hex).

    Raises:
        InputError: when the endpoint is empty or not an HTTP URL.
    """
    text = endpoint.strip()
    if not text:
        raise InputError("the endpoint is empty", hint="give e.g. 127.0.0.1:1300 or a URL")
    if "://" not in text:
        text = "http://" + text
    hint = "give host:port or http://host:port/attestation/raw"
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # an unclosed IPv6 bracket, a bad port
        raise InputError(f"{endpoint!r} is not a URL: {exc}", hint=hint) from exc
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"{endpoint!r} is not an http(s) endpoint", hint=hint)
    path = parts.path.rstrip("/") or "/attestation/raw"
    url = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
    try:
        httpx.URL(url)  # what urlsplit lets through and httpx refuses (a non-IDNA host)
    except httpx.InvalidURL as exc:
        raise InputError(f"{endpoint!r} is not a URL: {exc}", hint=hint) from exc
    return url


def _request(
    endpoint: str,
    public_key: bytes | None,
    user_data: bytes | None,
    nonce: bytes | None,
    wait_s: float,
) -> tuple[str, dict[str, str], float]:
    """A fetch's URL, its query parameters and the monotonic instant it stops retrying.

    The parameters are the custom attestation server's (hex); absent fields are not sent.

    Raises:
        InputError: as :func:`attestation_url`.
    """
    url = attestation_url(endpoint)
    fields = {"public_key": public_key, "user_data": user_data, "nonce": nonce}
    params = {name: value.hex() for name, value in fields.items() if value is not None}
    return url, params, time.monotonic() + wait_s


_WHAT: Final = "the attestation server"
_HINT: Final = (
    "is the enclave running, and is this its attestation server (port 1300, /attestation/raw)? "
    "a larger --timeout waits longer"
)


class _Bounds(TypedDict):
    """The arguments of :func:`reef._fetch.read_bounded` that bound one answer."""

    max_bytes: int
    deadline_s: float
    what: str
    hint: str


def _document(url: str, status: int, body: bytes) -> bytes:
    """The document in an answer: raw bytes, or hex text from a ``/hex`` path.

    Raises:
        ServiceError: for any answer but 200 with a non-empty document.
    """
    if status != 200:
        text = terminal_text(body[:400].decode("utf-8", "replace").strip())[:200]
        raise ServiceError(
            f"{url} answered HTTP {status}: {text}",
            hint="is this the enclave's attestation server (port 1300, /attestation/raw)?",
        )
    if urlsplit(url).path.rstrip("/").endswith("/hex"):
        try:
            body = bytes.fromhex(body.decode("ascii").strip())
        except ValueError as exc:
            raise ServiceError(f"{url} did not answer hex") from exc
    if not body:
        raise ServiceError(f"{url} answered an empty attestation document")
    return body


def _raise_if_late(url: str, exc: ServiceError, deadline: float) -> None:
    """Raise a fetch's failure once ``deadline`` has passed (an unreachable server's as
    "cannot fetch the attestation")."""
    if time.monotonic() < deadline:
        return
    if isinstance(exc, FetchError) and exc.reason == "unreachable":
        cause = exc.__cause__
        raise ServiceError(
            f"cannot fetch the attestation from {url}: "
            f"{terminal_text(str(cause) or type(cause).__name__)[:300]}",
            hint="is the enclave running? `reef enclave ps` lists local enclaves and endpoints",
        ) from exc
    raise exc


class AttestationClient:
    """Fetches attestation documents from enclaves and verifies them live.

    Args:
        root: the root verified documents must chain to (:meth:`TrustedRoot.aws` for real
            enclaves); may be given per call instead, and is not needed to only fetch.
        max_age_ms: how old a document may be when it is verified.
        timeout: the HTTP timeout of one request, in seconds.
        transport: an httpx transport for every request (``httpx.MockTransport``,
            ``httpx.ASGITransport`` for the async calls); a new connection per request otherwise.
        clock_ms: milliseconds since the epoch, read at each verification (the wall clock).
        verifier: a :class:`NitroVerifier` to share (and its certificate-chain cache).
        cache: remember verified results (see the module docstring).
        cache_ttl_ms: the longest a cached result is used, whatever the document's age.
        cache_size: how many results are remembered, oldest dropped first.

    Raises:
        MisuseError: a negative age, timeout or cache setting.
    """

    def __init__(
        self,
        *,
        root: TrustedRoot | None = None,
        max_age_ms: int = DEFAULT_MAX_AGE_MS,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: _Transport | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
        verifier: NitroVerifier | None = None,
        cache: bool = False,
        cache_ttl_ms: int | None = None,
        cache_size: int = 1024,
    ) -> None:
        if max_age_ms <= 0 or timeout <= 0 or cache_size < 1:
            raise MisuseError("max_age_ms, timeout and cache_size must be positive")
        if cache_ttl_ms is not None and cache_ttl_ms <= 0:
            raise MisuseError(f"cache_ttl_ms must be positive, got {cache_ttl_ms}")
        self.root = root
        self.max_age_ms = max_age_ms
        self.timeout = timeout
        self._transport = transport
        self._clock_ms = clock_ms
        self._verifier = verifier if verifier is not None else NitroVerifier()
        self._cache_enabled = cache
        self._cache_ttl_ms = cache_ttl_ms
        self._cache = AttestationCache(cache_size)

    def __repr__(self) -> str:
        root = self.root.name if self.root is not None else None
        return f"AttestationClient(root={root!r}, max_age_ms={self.max_age_ms}, cache={len(self)})"

    # -- fetching ----------------------------------------------------------------------------

    def fetch(
        self,
        endpoint: str,
        *,
        public_key: bytes | None = None,
        user_data: bytes | None = None,
        nonce: bytes | None = None,
        wait_s: float = 0.0,
    ) -> bytes:
        """GET the document at ``endpoint`` (``public_key`` etc. for a custom server).

        Args:
            wait_s: keep retrying an unreachable or failing server this long (an enclave that is
                still starting); one attempt when 0.

        Raises:
            InputError: ``endpoint`` is not an HTTP endpoint.
            MisuseError: the client was given an async-only transport.
            ServiceError: the server cannot be reached or does not answer a document.
        """
        transport = self._transport_as(httpx.BaseTransport, "async", hint="use afetch, averify")
        url, params, deadline = _request(endpoint, public_key, user_data, nonce, wait_s)
        while True:
            try:
                answer = fetch_blocking(
                    httpx.Request("GET", url, params=params),
                    transport=transport,
                    timeout=self.timeout,
                    **self._bounds,
                )
                return _document(url, answer.status, answer.body)
            except ServiceError as exc:
                _raise_if_late(url, exc, deadline)
            time.sleep(_RETRY_INTERVAL_S)

    async def afetch(
        self,
        endpoint: str,
        *,
        public_key: bytes | None = None,
        user_data: bytes | None = None,
        nonce: bytes | None = None,
        wait_s: float = 0.0,
    ) -> bytes:
        """:meth:`fetch`, without blocking the event loop.

        Raises:
            InputError, MisuseError, ServiceError: as :meth:`fetch`.
        """
        url, params, deadline = _request(endpoint, public_key, user_data, nonce, wait_s)
        transport = self._transport_as(
            httpx.AsyncBaseTransport, "blocking", hint="use fetch, verify"
        )
        async with httpx.AsyncClient(
            timeout=self.timeout, transport=transport, verify=tls_context()
        ) as http:
            while True:
                try:
                    request = http.build_request("GET", url, params=params)
                    answer = await read_bounded(http, request, **self._bounds)
                    return _document(url, answer.status, answer.body)
                except ServiceError as exc:
                    _raise_if_late(url, exc, deadline)
                await asyncio.sleep(_RETRY_INTERVAL_S)

    @property
    def _bounds(self) -> _Bounds:
        """What one answer may cost: :data:`MAX_DOCUMENT_BYTES`, the client's ``timeout``."""
        return {
            "max_bytes": MAX_DOCUMENT_BYTES,
            "deadline_s": self.timeout,
            "what": _WHAT,
            "hint": _HINT,
        }

    def _transport_as(self, kind: type[_T], other: str, *, hint: str) -> _T | None:
        """The client's transport, if it is of ``kind`` (blocking or async).

        Raises:
            MisuseError: the transport is ``other``-only.
        """
        transport = self._transport
        if transport is not None and not isinstance(transport, kind):
            raise MisuseError(f"the client's transport is {other}-only", hint=hint)
        return transport

    # -- verifying ---------------------------------------------------------------------------

    def verify(
        self,
        endpoint: str,
        *,
        expect: Expectations | None = None,
        root: TrustedRoot | None = None,
        wait_s: float = 0.0,
    ) -> VerifiedAttestation:
        """Fetch the document at ``endpoint`` and verify it live (or answer from the cache).

        Args:
            expect: what the document must attest (image id, PCRs, public key, ...).
            root: the root for this call (the client's otherwise).
            wait_s: as :meth:`fetch`.

        Returns:
            The verified attestation.

        Raises:
            MisuseError: no root was given, here or to the client.
            ServiceError: as :meth:`fetch`.
            AttestationError: the document does not verify, is stale, or differs from ``expect``.
        """
        url, trusted, key, cached = self._lookup(endpoint, root, expect)
        if cached is not None:
            return cached
        return self._check(self.fetch(url, wait_s=wait_s), trusted, expect, key)

    async def averify(
        self,
        endpoint: str,
        *,
        expect: Expectations | None = None,
        root: TrustedRoot | None = None,
        wait_s: float = 0.0,
    ) -> VerifiedAttestation:
        """:meth:`verify`, without blocking the event loop while fetching.

        Raises:
            MisuseError, ServiceError, AttestationError: as :meth:`verify`.
        """
        url, trusted, key, cached = self._lookup(endpoint, root, expect)
        if cached is not None:
            return cached
        return self._check(await self.afetch(url, wait_s=wait_s), trusted, expect, key)

    def check(
        self,
        document: bytes,
        *,
        expect: Expectations | None = None,
        root: TrustedRoot | None = None,
    ) -> VerifiedAttestation:
        """Verify a document already fetched, live at the client's clock, as :meth:`verify` does.

        Raises:
            MisuseError, AttestationError: as :meth:`verify`.
        """
        return self._check(document, self._root(root), expect, None)

    # -- the cache ---------------------------------------------------------------------------

    def forget(self) -> None:
        """Drop every cached result."""
        self._cache.forget()

    def __len__(self) -> int:
        return len(self._cache)

    def _lookup(
        self, endpoint: str, root: TrustedRoot | None, expect: Expectations | None
    ) -> tuple[str, TrustedRoot, Hashable | None, VerifiedAttestation | None]:
        """The URL, root and cache key of a verification, and its cached result if any."""
        url = attestation_url(endpoint)
        trusted = self._root(root)
        key = self._key(url, trusted, expect)
        return url, trusted, key, self._cached(key)

    def _root(self, root: TrustedRoot | None) -> TrustedRoot:
        chosen = root if root is not None else self.root
        if chosen is None:
            raise MisuseError(
                "verifying an attestation needs a trusted root",
                hint="pass root=TrustedRoot.aws() (or dev/mock for local work) to the client",
            )
        return chosen

    def _key(self, url: str, root: TrustedRoot, expect: Expectations | None) -> Hashable | None:
        """What a cached result answers for; ``None`` when it must not be cached."""
        if not self._cache_enabled or (expect is not None and expect.nonce is not None):
            return None
        wanted: tuple[object, ...] = ()
        if expect is not None:
            wanted = (
                expect.image_id,
                tuple(expect.pcrs.items()),
                expect.public_key,
                expect.user_data,
                expect.timestamp_ms,
            )
        return (url, root.certificate, wanted)

    def _cached(self, key: Hashable | None) -> VerifiedAttestation | None:
        return None if key is None else self._cache.get(key, self._clock_ms())

    def _check(
        self,
        document: bytes,
        root: TrustedRoot,
        expect: Expectations | None,
        key: Hashable | None,
    ) -> VerifiedAttestation:
        now = self._clock_ms()
        verified = self._verifier.verify(
            document,
            root=root,
            mode="live",
            now_ms=now,
            max_age_ms=self.max_age_ms,
            expect=expect,
        )
        if key is not None:
            self._cache.put(
                key, verified, now_ms=now, max_age_ms=self.max_age_ms, ttl_ms=self._cache_ttl_ms
            )
        return verified
