"""Remembering verified attestations until they would no longer pass: one cache for the
attestation client (by URL, root and expectations) and Scallop's policy store (by the peer's
Noise key).

A verified attestation stays good until its document would fail the freshness check (its
timestamp plus the allowed age) or until a time-to-live after it was verified, whichever comes
first. The cache keeps it that long and no longer, and keeps at most ``max_entries``, the least
recently stored dropped first. The callers pass the instant (milliseconds, from their injected
clock), so the cache never reads a clock. A lock makes it safe to share between threads (the
client's blocking calls) and tasks.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from reef.attestation._model import VerifiedAttestation
from reef.errors import MisuseError

__all__ = ["AttestationCache"]


class AttestationCache:
    """Verified attestations by key, each until its own expiry, at most ``max_entries``."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[VerifiedAttestation, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AttestationCache({len(self)}/{self.max_entries})"

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, now_ms: int) -> VerifiedAttestation | None:
        """The attestation stored under ``key``, unless it expired by ``now_ms`` (then dropped)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            verified, expires_ms = entry
            if now_ms >= expires_ms:
                del self._entries[key]
                return None
            return verified

    def put(
        self,
        key: Hashable,
        verified: VerifiedAttestation,
        *,
        now_ms: int,
        max_age_ms: int | None,
        ttl_ms: int | None = None,
    ) -> None:
        """Store ``verified`` until its document is ``max_age_ms`` old or ``ttl_ms`` have passed
        since ``now_ms``, whichever comes first.

        Raises:
            MisuseError: neither bound is given (the entry would never expire).
        """
        bounds = [] if max_age_ms is None else [verified.timestamp_ms + max_age_ms]
        if ttl_ms is not None:
            bounds.append(now_ms + ttl_ms)
        if not bounds:
            raise MisuseError("a cached attestation needs max_age_ms or ttl_ms to expire")
        with self._lock:
            self._entries[key] = (verified, min(bounds))
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, key: Hashable | None = None) -> None:
        """Drop the entry under ``key``, or every entry."""
        with self._lock:
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)
