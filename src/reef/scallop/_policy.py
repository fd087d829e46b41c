"""Who a Scallop peer must be: attestation policies, auth stores and authers.

Scallop's handshake tells each side the other's Noise static key. Whether that key is trusted is
decided by an *auth store* with Oyster's contract (reference §6.4):

* ``contains(key)`` → :class:`Approved` (with the state kept for the connection),
  :class:`NotFound` (ask the peer for an attestation) or :class:`Rejected` (abort);
* ``verify(attestation, key)`` → the state, or ``None`` (abort). reef's stores may raise an
  :class:`~reef.errors.AttestationError` instead of returning ``None``, so the refusal says why.

:class:`PeerPolicy` says what an acceptable attestation is: the roots it must chain to, the image
ids or PCRs allowed, how fresh it must be, and, always, that its ``public_key`` equals the peer's
Noise static key (the binding that makes the attestation speak for *this* channel).
:class:`PolicyStore` verifies against a policy and caches verified peers by static key until
their attestation would be too old; :class:`PinnedKeys` approves fixed keys and rejects the rest
(how a KMS derive server trusts its root server).

An *auther* is the other half: an async callable returning a document that attests our own
static key. :func:`auther_from_url` fetches one from an attestation server, as Oyster does.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

from reef._clock import wall_clock_ms
from reef.errors import (
    AttestationError,
    CertificateChainError,
    CertificateExpiredError,
    ExpectationError,
    InputError,
)

if TYPE_CHECKING:
    import httpx

    from reef.attestation import Mode, TrustedRoot, VerifiedAttestation

__all__ = [
    "Approved",
    "AuthStore",
    "Auther",
    "ContainsResponse",
    "NotFound",
    "PeerPolicy",
    "PinnedKeys",
    "PolicyStore",
    "Rejected",
    "auther_from_url",
]

Auther = Callable[[], Awaitable[bytes]]
"""Returns an attestation document whose ``public_key`` is our Noise static public key."""

DEFAULT_MAX_AGE_MS: Final = 300_000  # Oyster's Scallop peers accept documents up to 5 minutes old


@dataclass(frozen=True)
class Approved:
    """The key is known and approved; ``peer`` is what was verified for it (``None`` if pinned)."""

    peer: VerifiedAttestation | None = None


@dataclass(frozen=True)
class NotFound:
    """The key is unknown: ask the peer for an attestation."""


@dataclass(frozen=True)
class Rejected:
    """The key is refused: abort the handshake."""


ContainsResponse = Approved | NotFound | Rejected


@runtime_checkable
class AuthStore(Protocol):
    """Oyster's ``ScallopAuthStore``: decides whether a peer's static key is trusted."""

    def contains(self, key: bytes) -> ContainsResponse:
        """Whether ``key`` (32-byte X25519 public key) is already approved, unknown or rejected."""
        ...

    def verify(self, attestation: bytes, key: bytes) -> VerifiedAttestation | None:
        """Verify ``attestation`` for ``key``; return the verified peer, or None (or raise)."""
        ...


Verifier = Callable[..., "VerifiedAttestation"]
"""``verify_nitro``'s signature: ``(document, *, root, mode, now_ms, max_age_ms, expect)``."""


def _not_bound(attested: bytes, key: bytes) -> ExpectationError:
    """The refusal of a document that attests another key than the peer's Noise key."""
    return ExpectationError(
        f"the attestation's public_key ({attested.hex() or 'empty'}) is not "
        f"the peer's Noise static key ({key.hex()})",
        hint="the peer is relaying someone else's attestation (a man in the middle?)",
        reason="public_key",
    )


@dataclass(frozen=True, kw_only=True)
class PeerPolicy:
    """What an attestation must show for its peer to be accepted.

    Attributes:
        roots: the roots a document may chain to (at least one). ``TrustedRoot.aws()`` for real
            enclaves; ``dev``/``mock`` roots are insecure and only for local work.
        image_ids: the allowed image ids (32 bytes each); empty allows any image.
        pcrs: PCR index → value that must match (all of them).
        max_age_ms: how old a document may be; ``None`` turns the freshness check off (replay).
        mode: ``"live"`` (certificates valid now, document fresh) or ``"replay"``.
        clock: milliseconds since the epoch; the wall clock unless injected.
        verifier: ``verify_nitro``'s signature; by default a ``reef.attestation.NitroVerifier``
            of this policy's own, which caches verified issuing chains across handshakes.

    Raises:
        InputError: no root, or an image id that is not 32 bytes.
    """

    roots: Sequence[TrustedRoot]
    image_ids: Collection[bytes] = ()
    pcrs: Mapping[int, bytes] = field(default_factory=dict)
    max_age_ms: int | None = DEFAULT_MAX_AGE_MS
    mode: Mode = "live"
    clock: Callable[[], int] = wall_clock_ms
    verifier: Verifier | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        roots = tuple(self.roots)
        if not roots:
            raise InputError(
                "a peer policy needs at least one trusted root",
                hint="use TrustedRoot.aws() for real enclaves (or dev/mock for local work)",
            )
        object.__setattr__(self, "roots", roots)
        ids = frozenset(bytes(i) for i in self.image_ids)
        for image_id in ids:
            if len(image_id) != 32:
                raise InputError(f"an image id is 32 bytes, got {len(image_id)}: {image_id.hex()}")
        object.__setattr__(self, "image_ids", ids)
        object.__setattr__(self, "pcrs", MappingProxyType(dict(self.pcrs)))
        if self.max_age_ms is not None and self.max_age_ms <= 0:
            raise InputError(f"max_age_ms must be positive, got {self.max_age_ms}")
        if self.verifier is None:
            from reef.attestation import NitroVerifier

            object.__setattr__(self, "verifier", NitroVerifier().verify)

    def check(self, attestation: bytes, key: bytes) -> VerifiedAttestation:
        """Verify ``attestation`` as the proof for Noise static key ``key``.

        Returns:
            The verified attestation.

        Raises:
            AttestationError: the document does not verify under any accepted root, is stale,
                attests another key (``reason == "public_key"``), runs an image outside the
                policy (``"image_id"``) or has other PCRs (``"pcr"``).
        """
        from reef.attestation import Expectations, decode_nitro

        verify = self.verifier
        assert verify is not None  # set in __post_init__
        # A copied document (someone else's, with a fresh Noise key per handshake) fails the
        # binding whatever its signature: its own public_key shows that, and decoding costs a
        # tenth of checking a P-384 signature and a certificate. A document that does not
        # decode is left to the verifier, which says why.
        try:
            claimed = decode_nitro(attestation)[1].public_key
        except AttestationError:
            claimed = None
        if claimed is not None and not hmac.compare_digest(claimed, key):
            raise _not_bound(claimed, key)
        # The key binding is checked again below, on what was verified.
        expect = Expectations(pcrs=self.pcrs)
        now_ms = self.clock()
        failures: list[AttestationError] = []
        for root in self.roots:
            try:
                verified = verify(
                    attestation,
                    root=root,
                    mode=self.mode,
                    now_ms=now_ms,
                    max_age_ms=self.max_age_ms,
                    expect=expect,
                )
            except CertificateExpiredError:
                raise
            except CertificateChainError as exc:
                # Only "does not lead to this root" is worth trying the next root for.
                failures.append(exc)
                continue
            break
        else:
            if len(failures) == 1:
                raise failures[0]
            names = ", ".join(root.name for root in self.roots)
            raise CertificateChainError(
                f"the attestation chains to none of the accepted roots ({names})",
                hint="; ".join(f.message for f in failures),
            ) from failures[-1]
        # The binding is what makes the channel attested: without it, a valid document relayed
        # by anyone (a man in the middle with its own Noise key) would pass.
        if not hmac.compare_digest(verified.public_key, key):
            raise _not_bound(verified.public_key, key)
        if self.image_ids and not any(
            hmac.compare_digest(verified.image_id, allowed) for allowed in self.image_ids
        ):
            raise ExpectationError(
                f"the peer runs image {verified.image_id.hex()}, which the policy does not allow",
                hint="allowed: " + ", ".join(sorted(i.hex() for i in self.image_ids)),
                reason="image_id",
            )
        return verified

    def store(self, *, cache: bool = True, max_entries: int = 10_000) -> PolicyStore:
        """An auth store for this policy (caching verified peers unless ``cache=False``)."""
        return PolicyStore(self, cache=cache, max_entries=max_entries)


_Refusal = tuple[type[AttestationError], str, str | None, str]
"""A remembered refusal: the error's class, message, hint and reason."""
_REFUSALS_KEPT: Final = 1024
"""Refused (document, key) pairs a :class:`PolicyStore` remembers, oldest dropped first."""
_PASSING_REASONS: Final = frozenset({"future", "expired"})
"""Refusals that time may undo (a document dated ahead, a certificate not valid yet): never
remembered."""


class PolicyStore:
    """An auth store that verifies attestations against a :class:`PeerPolicy`.

    With ``cache=True`` a verified peer's static key is remembered until its document would
    fail the policy's freshness check (``timestamp + max_age``), so later connections from the
    same enclave skip the attestation; without ``max_age`` entries live ``ttl_ms`` (default
    five minutes). The cache is bounded to ``max_entries`` keys, oldest dropped first.

    Refusals are remembered either way (the last 1024, by a digest of the document and the
    key): a stranger may present one document again and again, someone else's copied from
    anywhere, and verifying it costs milliseconds of P-384 each time while sending it costs a
    handshake. The same bytes for the same key are refused again, with the same reason, without
    being verified. A refusal that time may undo (``future``, ``expired``) is not remembered.
    """

    def __init__(
        self,
        policy: PeerPolicy,
        *,
        cache: bool = True,
        ttl_ms: int | None = None,
        max_entries: int = 10_000,
    ) -> None:
        from reef.attestation import AttestationCache

        self.policy = policy
        self._cache_enabled = cache
        # Without max_age an entry needs a time-to-live of its own: five minutes by default.
        if ttl_ms is None and policy.max_age_ms is None:
            ttl_ms = DEFAULT_MAX_AGE_MS
        self._ttl_ms = ttl_ms
        self._cache = AttestationCache(max_entries)
        self._refused: OrderedDict[bytes, _Refusal] = OrderedDict()

    def contains(self, key: bytes) -> ContainsResponse:
        """:class:`Approved` for a cached, unexpired key; :class:`NotFound` otherwise."""
        peer = self._cache.get(bytes(key), self.policy.clock())
        return NotFound() if peer is None else Approved(peer)

    def verify(self, attestation: bytes, key: bytes) -> VerifiedAttestation:
        """Verify under the policy and cache the result.

        Raises:
            AttestationError: as :meth:`PeerPolicy.check`.
        """
        digest = hashlib.sha256(bytes(key) + b"\x00" + bytes(attestation)).digest()
        refused = self._refused.get(digest)
        if refused is not None:
            self._refused.move_to_end(digest)
            kind, message, hint, reason = refused
            raise kind(message, hint=hint, reason=reason)
        try:
            verified = self.policy.check(attestation, key)
        except AttestationError as exc:
            if exc.reason not in _PASSING_REASONS:
                self._refused[digest] = (type(exc), exc.message, exc.hint, exc.reason)
                if len(self._refused) > _REFUSALS_KEPT:
                    self._refused.popitem(last=False)
            raise
        if self._cache_enabled:
            self._cache.put(
                bytes(key),
                verified,
                now_ms=self.policy.clock(),
                max_age_ms=self.policy.max_age_ms,
                ttl_ms=self._ttl_ms,
            )
        return verified

    def forget(self, key: bytes | None = None) -> None:
        """Drop one cached key, or all of them."""
        self._cache.forget(None if key is None else bytes(key))

    def __len__(self) -> int:
        return len(self._cache)


class PinnedKeys:
    """Approve these static keys without an attestation; reject every other key.

    With ``fallback`` the other keys go to that store instead of being rejected (for example a
    :class:`PolicyStore` that asks for an attestation).
    """

    def __init__(self, keys: Collection[bytes], *, fallback: AuthStore | None = None) -> None:
        pinned = frozenset(bytes(k) for k in keys)
        for key in pinned:
            if len(key) != 32:
                raise InputError(f"a pinned Scallop key is 32 bytes, got {len(key)}")
        if not pinned:
            raise InputError("PinnedKeys needs at least one key")
        self.keys = pinned
        self._fallback = fallback

    def contains(self, key: bytes) -> ContainsResponse:
        """:class:`Approved` for a pinned key, else the fallback's answer or :class:`Rejected`."""
        if any(hmac.compare_digest(key, pinned) for pinned in self.keys):
            return Approved(None)
        if self._fallback is not None:
            return self._fallback.contains(key)
        return Rejected()

    def verify(self, attestation: bytes, key: bytes) -> VerifiedAttestation | None:
        """Delegate to the fallback; without one no attestation is ever asked for."""
        if self._fallback is None:
            return None
        return self._fallback.verify(attestation, key)


def auther_from_url(
    url: str, *, timeout: float = 5.0, transport: httpx.AsyncBaseTransport | None = None
) -> Auther:
    """An auther that GETs a raw attestation document, e.g. ``http://127.0.0.1:1300/attestation/raw``.

    The attestation server must attest the same X25519 key the channel uses as its static key.
    It fetches through :class:`reef.attestation.AttestationClient` (``transport`` goes to it).

    Raises (when called):
        ServiceError: the server cannot be reached or does not answer 200 with a document.
    """
    from reef.attestation import AttestationClient

    client = AttestationClient(timeout=timeout, transport=transport)

    async def fetch() -> bytes:
        return await client.afetch(url)

    return fetch
