"""The derive server inside each enclave: it keeps asking a busy KMS root for its seed (a burst
of boots from one host shares the root's per-address handshake slots) for a bounded time, then
fails with the root's reason; it reads paths as strict UTF-8."""

from __future__ import annotations

import pytest

from reef.errors import KMSError
from reef.kms import EnclaveSeeds

SEED = bytes(range(64))


async def test_a_refused_fetch_is_retried_until_the_root_answers() -> None:
    answers: list[object] = [KMSError("busy"), KMSError("busy"), (SEED, 3)]
    retries: list[tuple[str, float]] = []

    async def fetch(version: int | None) -> tuple[bytes, int]:
        answer = answers.pop(0)
        if isinstance(answer, KMSError):
            raise answer
        assert isinstance(answer, tuple)
        return answer

    seeds = EnclaveSeeds(fetch)
    version = await seeds.start(
        retry_for_s=5.0, on_retry=lambda exc, delay: retries.append((exc.message, delay))
    )
    assert version == 3
    assert await seeds.get(None) == (SEED, 3)
    assert [message for message, _ in retries] == ["busy", "busy"]
    assert all(0 < delay <= 2.0 for _, delay in retries)


async def test_retries_stop_at_their_deadline_with_the_last_error() -> None:
    calls = 0

    async def fetch(version: int | None) -> tuple[bytes, int]:
        nonlocal calls
        calls += 1
        raise KMSError(f"refused #{calls}")

    now = [0.0]

    def clock() -> float:
        now[0] += 0.1  # every look at the clock is a tenth of a second later
        return now[0]

    with pytest.raises(KMSError, match=r"refused #\d+"):
        await EnclaveSeeds(fetch).start(retry_for_s=0.5, clock=clock)
    assert 1 < calls < 10


async def test_without_a_retry_window_the_first_refusal_is_final() -> None:
    async def fetch(version: int | None) -> tuple[bytes, int]:
        raise KMSError("the root refuses this image")

    with pytest.raises(KMSError, match="refuses this image"):
        await EnclaveSeeds(fetch).start()


async def test_the_derive_server_refuses_paths_that_are_not_utf8() -> None:
    """Issue 11 for the derive server too: ``%ff`` and ``%fe`` once both became U+FFFD, so two
    different paths named one key."""
    import httpx

    from reef.kms import derive_server_app

    app = derive_server_app(EnclaveSeeds.fixed(SEED))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://enclave") as client:
        keys = set()
        for raw in ("%ff", "%fe", "%EF%BF%BD"):
            answer = await client.get(httpx.URL(f"http://enclave/derive/x25519?path={raw}"))
            if answer.status_code == 200:
                keys.add(answer.content)
            else:
                assert answer.status_code == 400, raw
                assert "UTF-8" in answer.text, raw
        assert len(keys) <= 1  # only the real U+FFFD (%EF%BF%BD) may derive, once
        other = await client.get("/derive", params={"path": "a", "version": "9"})
        assert other.status_code == 400
        assert "only the seed of version 0" in other.text


async def test_an_error_retry_if_calls_final_is_not_retried() -> None:
    calls = 0

    async def fetch(version: int | None) -> tuple[bytes, int]:
        nonlocal calls
        calls += 1
        raise KMSError("the root refuses this image" if calls > 1 else "unreachable")

    with pytest.raises(KMSError, match="refuses this image"):
        await EnclaveSeeds(fetch).start(
            retry_for_s=5.0, retry_if=lambda exc: exc.message == "unreachable"
        )
    assert calls == 2
