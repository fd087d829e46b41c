"""AttestationCache: the expiry and bound the attestation client and Scallop's policy store share."""

from __future__ import annotations

import pytest

from reef.attestation import AttestationCache, TrustedRoot, VerifiedAttestation
from reef.errors import MisuseError

MINTED_MS = 1_700_000_000_000


def attestation(timestamp_ms: int = MINTED_MS, image: int = 1) -> VerifiedAttestation:
    return VerifiedAttestation(
        kind="nitro",
        image_id=bytes([image]) * 32,
        pcrs={},
        timestamp_ms=timestamp_ms,
        module_id="i-test",
        public_key=b"",
        user_data=b"",
        nonce=b"",
        root=TrustedRoot.mock(),
        mode="live",
    )


def test_an_entry_lasts_until_its_document_is_too_old() -> None:
    cache = AttestationCache(8)
    verified = attestation()
    cache.put("k", verified, now_ms=MINTED_MS + 10, max_age_ms=1_000)
    assert cache.get("k", MINTED_MS + 999) is verified
    assert cache.get("k", MINTED_MS + 1_000) is None
    assert len(cache) == 0  # an expired entry is dropped when found


def test_the_earlier_of_max_age_and_ttl_wins() -> None:
    cache = AttestationCache(8)
    cache.put("short ttl", attestation(), now_ms=MINTED_MS, max_age_ms=10_000, ttl_ms=100)
    cache.put("short age", attestation(), now_ms=MINTED_MS, max_age_ms=100, ttl_ms=10_000)
    cache.put("ttl only", attestation(), now_ms=MINTED_MS + 500, max_age_ms=None, ttl_ms=100)
    assert cache.get("short ttl", MINTED_MS + 99) is not None
    assert cache.get("short ttl", MINTED_MS + 100) is None
    assert cache.get("short age", MINTED_MS + 100) is None
    assert cache.get("ttl only", MINTED_MS + 599) is not None
    assert cache.get("ttl only", MINTED_MS + 600) is None


def test_an_entry_that_would_never_expire_is_refused() -> None:
    with pytest.raises(MisuseError, match="max_age_ms or ttl_ms"):
        AttestationCache(8).put("k", attestation(), now_ms=MINTED_MS, max_age_ms=None)


def test_the_least_recently_stored_entry_goes_first() -> None:
    cache = AttestationCache(2)
    for key in ("a", "b", "a", "c"):  # storing "a" again makes "b" the oldest
        cache.put(key, attestation(), now_ms=MINTED_MS, max_age_ms=1_000)
    assert len(cache) == 2
    assert cache.get("b", MINTED_MS) is None
    assert cache.get("a", MINTED_MS) is not None
    assert cache.get("c", MINTED_MS) is not None


def test_forget_one_or_all() -> None:
    cache = AttestationCache(8)
    for key in ("a", "b", "c"):
        cache.put(key, attestation(), now_ms=MINTED_MS, max_age_ms=1_000)
    cache.forget("b")
    cache.forget("never stored")
    assert [cache.get(k, MINTED_MS) is not None for k in ("a", "b", "c")] == [True, False, True]
    cache.forget()
    assert len(cache) == 0
