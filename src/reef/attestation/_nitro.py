"""Verify AWS Nitro (and dev TEE) attestation documents, in live or replay mode.

Checks, in order (reference oyster_cvm.md §1.3, with the differences below):

1. the bytes are one well-formed COSE_Sign1 whose payload is a Nitro document (``decode``);
2. the COSE signature is ES384 and verifies under the leaf certificate's key (``algorithm``,
   ``signature``);
3. the ``cabundle`` chain leads to the pinned root, each certificate signed by the next, names
   linked, CA constraints honoured (``root``, ``certificate``, ``chain``; see ``_chain.py``);
4. every certificate, root included, is valid at the chosen instant (``expired``):
   **live** checks it at ``now_ms`` and at the document's time, **replay** at the document's time;
5. freshness (``stale``, ``future``): in live mode the document may be at most ``max_age_ms`` old
   and at most ``max_future_skew_ms`` in the future; in replay mode only when both ``now_ms`` and
   ``max_age_ms`` are given;
6. the caller's expectations (``image_id``, ``pcr``, ``public_key``, ``user_data``, ``nonce``,
   ``timestamp``).

Stricter than Oyster's SDK: Oyster checks certificates only at the document's timestamp and
lets any future timestamp pass its age check; a document whose timestamp lies in the future is
either from a skewed clock or crafted to outlive ``max_age``, so live mode refuses it. Oyster also
ignores extensions and the root's own validity; reef checks CA constraints, critical extensions and
every certificate's validity, the pinned root included.

Time is always a parameter: nothing here reads the clock.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric import ec

from reef.attestation._chain import (
    IssuingChain,
    ValidityWindow,
    check_validity,
    leaf_key,
    parse_certificate,
    verify_issuing_chain,
    verify_leaf,
)
from reef.attestation._cose import decode_nitro
from reef.attestation._image_id import PCR_LENGTH
from reef.attestation._model import Expectations, Mode, VerifiedAttestation, check_expectations
from reef.attestation._roots import TrustedRoot
from reef.errors import MisuseError, StaleAttestationError

__all__ = [
    "DEFAULT_MAX_AGE_MS",
    "DEFAULT_MAX_FUTURE_SKEW_MS",
    "NitroVerifier",
    "verify_nitro",
]

DEFAULT_MAX_AGE_MS = 300_000
# Clocks of an enclave host and a verifier disagree by a few seconds at most under NTP; one
# minute of tolerance keeps honest documents and still refuses documents stamped in the future.
DEFAULT_MAX_FUTURE_SKEW_MS = 60_000
_ABSENT_PCRS = {16: bytes(PCR_LENGTH)}
_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class _VerifiedLeaf:
    """A leaf certificate fit to sign documents, issued by a verified chain: its P-384 key and
    the validity windows of the whole chain, the pinned root first and the leaf last."""

    key: ec.EllipticCurvePublicKey
    windows: tuple[ValidityWindow, ...]


def _check_instant(value: int | None, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise MisuseError(f"{name} must be a non-negative integer or None, got {value!r}")


class NitroVerifier:
    """A Nitro document verifier that remembers the certificates it has verified.

    Two caches, both holding only what passed every instant-independent check and both keyed by
    exact DER bytes (so a cached answer is the answer the same bytes would get again): issuing
    chains by the pinned root and the bundle, and leaves by the root, the bundle and the leaf.
    Validity at the chosen instant is re-checked for every document. An enclave signs all its
    documents with one leaf for hours (AWS rotates it about every three hours), so a further
    document from it costs one ECDSA verification (the COSE signature) instead of five; a document
    with a new leaf from a known host costs two. Safe to share between threads.

    Args:
        cache_size: how many issuing chains, and how many leaves, to remember (oldest dropped
            first); 0 disables both.
        max_future_skew_ms: how far in the future a document's timestamp may be when freshness
            is checked.
    """

    def __init__(
        self,
        *,
        cache_size: int = 256,
        max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS,
    ) -> None:
        if cache_size < 0 or max_future_skew_ms < 0:
            raise MisuseError("cache_size and max_future_skew_ms must not be negative")
        self._cache_size = cache_size
        self._max_future_skew_ms = max_future_skew_ms
        self._chains: dict[tuple[bytes, tuple[bytes, ...]], IssuingChain] = {}
        self._leaves: dict[tuple[bytes, tuple[bytes, ...], bytes], _VerifiedLeaf] = {}
        self._lock = threading.Lock()
        self.cache_hits = 0
        """Documents whose chain came from a cache (of leaves or of issuing chains)."""
        self.cache_misses = 0
        """Documents whose issuing chain was walked."""

    def clear_cache(self) -> None:
        """Forget every cached issuing chain and leaf."""
        with self._lock:
            self._chains.clear()
            self._leaves.clear()

    def _cached(self, cache: dict[_K, _V], key: _K, *, count_miss: bool = False) -> _V | None:
        """What ``cache`` holds for ``key``, counted as a hit (and a miss if ``count_miss``)."""
        with self._lock:
            found = cache.get(key)
            if found is not None:
                self.cache_hits += 1
            elif count_miss:
                self.cache_misses += 1
            return found

    def _remember(self, cache: dict[_K, _V], key: _K, value: _V) -> None:
        """Keep ``value`` in ``cache``, dropping the oldest entries beyond the cache size."""
        if self._cache_size:
            with self._lock:
                while len(cache) >= self._cache_size:
                    del cache[next(iter(cache))]
                cache[key] = value

    def _issuing_chain(self, cabundle: Sequence[bytes], root: TrustedRoot) -> IssuingChain:
        key = (root.certificate, tuple(cabundle))
        chain = self._cached(self._chains, key, count_miss=True)
        if chain is None:
            chain = verify_issuing_chain(cabundle, root)
            self._remember(self._chains, key, chain)
        return chain

    def verify(
        self,
        document: bytes,
        *,
        root: TrustedRoot,
        mode: Mode = "live",
        now_ms: int | None = None,
        max_age_ms: int | None = DEFAULT_MAX_AGE_MS,
        expect: Expectations | None = None,
    ) -> VerifiedAttestation:
        """Verify a raw Nitro document and return what it attests to.

        Args:
            document: the raw COSE_Sign1 bytes (see :func:`read_evidence` for hex/base64).
            root: the pinned root the chain must end at.
            mode: ``"live"`` (chain valid at ``now_ms``, document fresh) or ``"replay"`` (chain
                valid at the document's own time; freshness only if ``now_ms`` and
                ``max_age_ms`` are both given).
            now_ms: the current time in milliseconds; required in live mode.
            max_age_ms: the oldest a document may be; ``None`` skips the age check.
            expect: fields the document must carry.

        Raises:
            MisuseError: live mode without ``now_ms``, an unknown mode, or bad argument types.
            DecodeError: malformed document (``reason="decode"``).
            SignatureError: ``reason`` ``"algorithm"`` or ``"signature"``.
            CertificateChainError: ``reason`` ``"root"``, ``"certificate"`` or ``"chain"``.
            CertificateExpiredError: ``reason="expired"``.
            StaleAttestationError: ``reason`` ``"stale"`` or ``"future"``.
            ExpectationError: ``reason`` naming the field that differs.
        """
        if mode not in ("live", "replay"):
            raise MisuseError(f"mode must be 'live' or 'replay', got {mode!r}")
        _check_instant(now_ms, "now_ms")
        _check_instant(max_age_ms, "max_age_ms")
        if mode == "live" and now_ms is None:
            raise MisuseError(
                "live verification needs now_ms, the current time",
                hint="pass now_ms=int(time.time() * 1000), or use mode='replay' for old documents",
            )
        if not isinstance(root, TrustedRoot):
            raise MisuseError(f"root must be a TrustedRoot, got {type(root).__name__}")
        if expect is not None and not isinstance(expect, Expectations):
            raise MisuseError(f"expect must be Expectations, got {type(expect).__name__}")
        if not isinstance(document, bytes | bytearray | memoryview):
            raise MisuseError(
                f"document must be bytes, got {type(document).__name__}",
                hint="decode hex or base64 text first with read_evidence()",
            )

        cose, doc = decode_nitro(document)
        cache_key = (root.certificate, doc.cabundle, doc.certificate)
        verified_leaf = self._cached(self._leaves, cache_key)
        if verified_leaf is not None:
            # These exact leaf and bundle bytes passed every instant-independent check under
            # this root before; only the signature and the instants are this document's own.
            cose.verify_es384(verified_leaf.key)
            windows = verified_leaf.windows
        else:
            # The COSE signature first: it covers the whole payload, so any tampering fails here
            # at the cost of one ECDSA verification, before the chain is looked at.
            leaf = parse_certificate(doc.certificate, label="the leaf certificate")
            key = leaf_key(leaf)
            cose.verify_es384(key)
            chain = self._issuing_chain(doc.cabundle, root)
            windows = (*chain.windows, verify_leaf(leaf, chain))
            self._remember(self._leaves, cache_key, _VerifiedLeaf(key, windows))

        timestamp = doc.timestamp_ms
        check_validity(windows, timestamp, instant="the document time")
        if mode == "live" and now_ms is not None:
            check_validity(windows, now_ms, instant="now")
        if now_ms is not None and (mode == "live" or max_age_ms is not None):
            self._check_freshness(timestamp, now_ms, max_age_ms)

        result = VerifiedAttestation(
            kind="nitro",
            image_id=doc.image_id,
            pcrs=doc.pcrs,
            timestamp_ms=timestamp,
            module_id=doc.module_id,
            public_key=doc.public_key,
            user_data=doc.user_data,
            nonce=doc.nonce,
            root=root,
            mode=mode,
        )
        if expect is not None:
            check_expectations(expect, result, absent_pcr=_ABSENT_PCRS)
        return result

    def _check_freshness(self, timestamp_ms: int, now_ms: int, max_age_ms: int | None) -> None:
        ahead = timestamp_ms - now_ms
        if ahead > self._max_future_skew_ms:
            raise StaleAttestationError(
                f"the document is dated {ahead} ms in the future (at most "
                f"{self._max_future_skew_ms} ms of clock skew is allowed)",
                reason="future",
                hint="check both clocks; a future timestamp would let a document outlive max_age",
            )
        age = now_ms - timestamp_ms
        if max_age_ms is not None and age > max_age_ms:
            raise StaleAttestationError(
                f"the document is {age} ms old, more than the {max_age_ms} ms allowed",
                reason="stale",
                hint="fetch a fresh attestation, or re-verify an old one with --replay",
            )


def verify_nitro(
    document: bytes,
    *,
    root: TrustedRoot,
    mode: Mode = "live",
    now_ms: int | None = None,
    max_age_ms: int | None = DEFAULT_MAX_AGE_MS,
    expect: Expectations | None = None,
) -> VerifiedAttestation:
    """Verify one raw Nitro document; a stateless :meth:`NitroVerifier.verify` (no chain cache).

    Raises:
        AttestationError: a subclass whose ``reason`` names the failed check (see
            :meth:`NitroVerifier.verify`).
        MisuseError: live mode without ``now_ms``.
    """
    return NitroVerifier(cache_size=0).verify(
        document, root=root, mode=mode, now_ms=now_ms, max_age_ms=max_age_ms, expect=expect
    )
