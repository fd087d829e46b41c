"""The attestation client: fetch (raw, hex, custom fields, retries), verify live, cache with
expiry; through httpx.MockTransport and against the real attestation server apps signing with a
dev TEE authority (in process over ASGI, and over loopback HTTP)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
import pytest
from starlette.applications import Starlette

from reef.attestation import (
    AttestationClient,
    DevAuthority,
    Expectations,
    TrustedRoot,
    attestation_app,
    attestation_url,
    custom_attestation_app,
    image_id,
)
from reef.errors import (
    CertificateChainError,
    ExpectationError,
    InputError,
    MisuseError,
    ServiceError,
    StaleAttestationError,
)
from reef.testing import ManualClock, wall_ms

Serve = Callable[[Starlette], AbstractContextManager[str]]

PCRS = {0: b"\x10" * 48, 1: b"\x11" * 48, 2: b"\x12" * 48}
IMAGE = image_id(PCRS)
KEY = b"\x42" * 32


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(wall_ms())


def fixed_app(authority: DevAuthority, clock: ManualClock) -> Starlette:
    return attestation_app(authority.attester(PCRS, clock_ms=clock), public_key=KEY)


class Counting(httpx.AsyncBaseTransport):
    """An ASGI transport that counts requests (to see the cache answer without fetching)."""

    def __init__(self, app: Starlette) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.requests: list[httpx.URL] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url)
        return await self.inner.handle_async_request(request)


# -- endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("127.0.0.1:1300", "http://127.0.0.1:1300/attestation/raw"),
        (" http://h:1/ ", "http://h:1/attestation/raw"),
        ("https://h/attestation/hex", "https://h/attestation/hex"),
        ("http://h:1/x?y=1#frag", "http://h:1/x?y=1"),
    ],
)
def test_attestation_url(endpoint: str, url: str) -> None:
    assert attestation_url(endpoint) == url


@pytest.mark.parametrize("endpoint", ["", "  ", "ftp://h/x", "http://"])
def test_attestation_url_refuses_non_http(endpoint: str) -> None:
    with pytest.raises(InputError):
        attestation_url(endpoint)


@pytest.mark.parametrize("endpoint", ["\u0080", "http://[::1", "http://[::1:1300/x"])
def test_attestation_url_refuses_what_is_no_url(endpoint: str) -> None:
    """Found by fuzzing the dashboard: hosts urlsplit or httpx refuse were tracebacks, not
    InputErrors (the dashboard answered 500, ``reef verify`` printed a traceback)."""
    with pytest.raises(InputError, match="is not a URL"):
        attestation_url(endpoint)


# -- fetching through a mock transport ------------------------------------------------------


def test_fetch_raw_hex_and_custom_fields() -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        if request.url.path == "/attestation/hex":
            return httpx.Response(200, text="d2c0ffee\n")
        return httpx.Response(200, content=b"\xd2raw")

    client = AttestationClient(transport=httpx.MockTransport(handler))
    assert client.fetch("h:1") == b"\xd2raw"
    assert client.fetch("http://h:1/attestation/hex") == bytes.fromhex("d2c0ffee")
    client.fetch("h:1/attestation/raw", public_key=b"\x01\x02", user_data=b"", nonce=b"\xff")
    assert dict(seen[-1].params) == {"public_key": "0102", "user_data": "", "nonce": "ff"}
    assert seen[0].params == httpx.QueryParams()  # nothing is sent that was not asked for


@pytest.mark.parametrize(
    ("response", "needle"),
    [
        (httpx.Response(503, text="attestation unavailable: busy"), "HTTP 503.*busy"),
        (httpx.Response(200, content=b""), "empty attestation"),
        (httpx.Response(200, text="not hex"), "did not answer hex"),
    ],
)
def test_bad_answers_are_service_errors(response: httpx.Response, needle: str) -> None:
    client = AttestationClient(transport=httpx.MockTransport(lambda _: response))
    with pytest.raises(ServiceError, match=needle):
        client.fetch("http://h/attestation/hex" if "hex" in needle else "http://h")


def test_unreachable_is_a_service_error_and_wait_retries() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] < 3:  # the enclave is still starting
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, content=b"doc")

    client = AttestationClient(transport=httpx.MockTransport(handler))
    with pytest.raises(ServiceError, match=r"cannot fetch the attestation from .*refused"):
        client.fetch("h:1")
    assert client.fetch("h:1", wait_s=10) == b"doc"
    assert calls["n"] == 3


async def test_async_fetch_and_transport_kinds() -> None:
    client = AttestationClient(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, content=b"d"))
    )
    assert await client.afetch("h:1") == b"d"
    asgi = AttestationClient(transport=httpx.ASGITransport(app=Starlette()))
    with pytest.raises(MisuseError, match="async-only"):
        asgi.fetch("h:1")
    with pytest.raises(ServiceError, match="HTTP 404"):
        await asgi.afetch("h:1")


def test_verify_needs_a_root() -> None:
    client = AttestationClient(transport=httpx.MockTransport(lambda _: httpx.Response(200)))
    with pytest.raises(MisuseError, match="trusted root"):
        client.verify("h:1")


# -- verifying documents of a real attestation server ---------------------------------------


async def test_averify_against_the_dev_tee_attestation_server(
    authority: DevAuthority, clock: ManualClock
) -> None:
    transport = Counting(fixed_app(authority, clock))
    client = AttestationClient(root=authority.root, transport=transport, clock_ms=clock)
    verified = await client.averify("h:1300", expect=Expectations(image_id=IMAGE, public_key=KEY))
    assert (verified.image_id, verified.public_key, verified.root.name) == (IMAGE, KEY, "dev")
    hexed = await client.averify("http://h:1300/attestation/hex")
    assert hexed.image_id == IMAGE
    assert [u.path for u in transport.requests] == ["/attestation/raw", "/attestation/hex"]
    with pytest.raises(ExpectationError) as wrong:
        await client.averify("h:1300", expect=Expectations(image_id=b"\x00" * 32))
    assert wrong.value.reason == "image_id"
    with pytest.raises(CertificateChainError):  # the dev root is never implied
        await client.averify("h:1300", root=TrustedRoot.aws())


async def test_live_mode_rejects_a_stale_document(
    authority: DevAuthority, clock: ManualClock
) -> None:
    minted = ManualClock(clock.now_ms - 10 * 60 * 1000)  # the server's clock is ten minutes behind
    app = attestation_app(authority.attester(PCRS, clock_ms=minted), public_key=KEY)
    client = AttestationClient(
        root=authority.root, transport=httpx.ASGITransport(app=app), clock_ms=clock
    )
    with pytest.raises(StaleAttestationError):
        await client.averify("h:1300")
    longer = AttestationClient(
        root=authority.root,
        transport=httpx.ASGITransport(app=app),
        clock_ms=clock,
        max_age_ms=15 * 60 * 1000,
    )
    assert (await longer.averify("h:1300")).image_id == IMAGE


async def test_cache_answers_until_the_document_would_be_stale(
    authority: DevAuthority, clock: ManualClock
) -> None:
    transport = Counting(fixed_app(authority, clock))
    client = AttestationClient(
        root=authority.root, transport=transport, clock_ms=clock, cache=True, max_age_ms=60_000
    )
    expect = Expectations(image_id=IMAGE)
    first = await client.averify("h:1300", expect=expect)
    assert await client.averify("http://h:1300/attestation/raw", expect=expect) is first
    assert len(transport.requests) == 1
    assert len(client) == 1
    # Other expectations (another public key) are another entry: fetched and checked again.
    with pytest.raises(ExpectationError):
        await client.averify("h:1300", expect=Expectations(image_id=IMAGE, public_key=b"x"))
    assert len(transport.requests) == 2
    # A nonce is a challenge: never answered from the cache.
    with pytest.raises(ExpectationError):
        await client.averify("h:1300", expect=Expectations(image_id=IMAGE, nonce=b"n"))
    assert len(transport.requests) == 3
    clock.now_ms += 60_000  # the cached document is now too old: fetched again, fresh
    again = await client.averify("h:1300", expect=expect)
    assert again is not first
    assert again.timestamp_ms == clock.now_ms
    assert len(transport.requests) == 4
    client.forget()
    assert len(client) == 0


async def test_cache_ttl_and_size(authority: DevAuthority, clock: ManualClock) -> None:
    transport = Counting(fixed_app(authority, clock))
    client = AttestationClient(
        root=authority.root,
        transport=transport,
        clock_ms=clock,
        cache=True,
        cache_ttl_ms=1_000,
        cache_size=1,
    )
    await client.averify("a:1")
    clock.now_ms += 999
    await client.averify("a:1")
    assert len(transport.requests) == 1
    clock.now_ms += 1
    await client.averify("a:1")
    assert len(transport.requests) == 2
    await client.averify("b:1")  # evicts a:1
    await client.averify("a:1")
    assert len(transport.requests) == 4
    assert len(client) == 1


def test_verify_over_loopback_with_custom_fields(
    serve: Serve, authority: DevAuthority, clock: ManualClock
) -> None:
    fixed = fixed_app(authority, clock)
    custom = custom_attestation_app(authority.attester(PCRS, clock_ms=clock))
    client = AttestationClient(root=authority.root, clock_ms=clock)
    with serve(fixed) as fixed_url, serve(custom) as custom_url:
        verified = client.verify(fixed_url, expect=Expectations(image_id=IMAGE, public_key=KEY))
        assert verified.pcrs[0] == PCRS[0]
        document = client.fetch(
            custom_url + "/attestation/raw", public_key=b"\xab" * 32, nonce=b"\xc0\xff\xee"
        )
        checked = client.check(
            document, expect=Expectations(public_key=b"\xab" * 32, nonce=b"\xc0\xff\xee")
        )
        assert (checked.user_data, checked.image_id) == (b"", IMAGE)


async def test_attempts_share_one_tls_context(
    authority: DevAuthority, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each fetch made a client of its own, and each client built httpx's TLS settings again,
    loading the CA bundle (50-160 ms of CPU) even for a plain-http endpoint: a poll of an
    enclave coming up (five attempts a second) spent most of reef up's main process there.
    Every client now verifies with one context per process (reef._fetch.tls_context)."""
    import ssl

    from reef._fetch import tls_context
    from reef.node import serve_app

    loads: list[object] = []
    load = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append(args)
        load(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    tls_context.cache_clear()
    served = await serve_app(fixed_app(authority, clock), host="127.0.0.1", port=0, what="att")
    try:
        client = AttestationClient(root=authority.root, clock_ms=clock)
        for _ in range(4):
            assert (await client.averify(served.url)).image_id == IMAGE
    finally:
        await served.aclose()
    assert len(loads) <= 1, f"the CA bundle was loaded {len(loads)} times for 4 fetches"
