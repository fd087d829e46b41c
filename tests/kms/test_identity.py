"""A client learns a KMS root's keys from its attested /info, and refuses what it cannot check."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
import pytest
from starlette.types import ASGIApp

from reef.attestation import DevAuthority, TrustedRoot
from reef.errors import AttestationError, KMSError
from reef.kms import (
    KmsPublicClient,
    KmsRoot,
    RootKeyring,
    RpcApproval,
    fetch_identity,
    public_app,
)
from reef.testing import wall_ms

PCRS = {0: b"\x01" * 48, 1: b"\x02" * 48, 2: b"\x03" * 48}


def _root(
    keyring: RootKeyring, authority: DevAuthority, clock: Callable[[], int] = wall_ms
) -> KmsRoot:
    return KmsRoot(
        keyring,
        attester=authority.attester(PCRS, clock_ms=clock),
        admin="0x" + "ab" * 20,
        approval=RpcApproval("http://unused", 31337),
    )


async def test_identity_is_learned_and_pins_the_client(
    keyring: RootKeyring, authority: DevAuthority
) -> None:
    transport = httpx.ASGITransport(app=public_app(_root(keyring, authority)))
    identity = await fetch_identity("http://kms", root=authority.root, transport=transport)
    assert identity.current == keyring.identity()
    assert identity.chain_id == 31337
    assert identity.rotation_admin == "0x" + "ab" * 20
    assert identity.attestation.kind == "nitro"
    assert identity.attestation.public_key == keyring.identity().scallop_key
    client = KmsPublicClient(identity.url, signing_key=identity.signing_keys, transport=transport)
    key = await client.public_key("x25519", "p", image_id=b"\x05" * 32)
    assert len(key) == 32


async def test_identity_with_the_expected_image(
    keyring: RootKeyring, authority: DevAuthority
) -> None:
    from reef.attestation import image_id

    transport = httpx.ASGITransport(app=public_app(_root(keyring, authority)))
    ok = await fetch_identity(
        "http://kms", root=authority.root, image_id=image_id(PCRS),
        transport=transport,
    )  # fmt: skip
    assert ok.attestation.image_id == image_id(PCRS)
    with pytest.raises(AttestationError):
        await fetch_identity(
            "http://kms", root=authority.root, image_id=b"\x00" * 32,
            transport=transport,
        )  # fmt: skip


async def test_identity_from_a_foreign_root_is_refused(
    keyring: RootKeyring, authority: DevAuthority
) -> None:
    transport = httpx.ASGITransport(app=public_app(_root(keyring, authority)))
    with pytest.raises(AttestationError):
        await fetch_identity("http://kms", root=TrustedRoot.mock(), transport=transport)


async def test_stale_identity_is_refused(keyring: RootKeyring, authority: DevAuthority) -> None:
    stale_clock = lambda: wall_ms() - 3_600_000  # noqa: E731
    transport = httpx.ASGITransport(app=public_app(_root(keyring, authority, stale_clock)))
    with pytest.raises(AttestationError) as info:
        await fetch_identity("http://kms", root=authority.root, transport=transport)
    assert info.value.reason == "stale"


async def test_identity_tampering_is_refused(keyring: RootKeyring, authority: DevAuthority) -> None:
    inner = httpx.ASGITransport(app=public_app(_root(keyring, authority)))

    class SwapAdmin(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await inner.handle_async_request(request)
            await response.aread()
            body = response.content.replace(b"ab" * 20, b"cd" * 20)
            return httpx.Response(200, headers=response.headers, content=body)

    with pytest.raises(AttestationError) as info:
        await fetch_identity("http://kms", root=authority.root, transport=SwapAdmin())
    assert info.value.reason in {"user_data", "expectation"}


async def test_unattested_identity_is_refused(
    keyring: RootKeyring, authority: DevAuthority
) -> None:
    transport = httpx.ASGITransport(app=public_app(KmsRoot(keyring)))
    with pytest.raises(KMSError, match="without an attestation"):
        await fetch_identity("http://kms", root=authority.root, transport=transport)


async def test_identity_over_loopback(
    keyring: RootKeyring,
    authority: DevAuthority,
    serve: Callable[[ASGIApp], AbstractAsyncContextManager[str]],
) -> None:
    async with serve(public_app(_root(keyring, authority))) as url:
        identity = await fetch_identity(url, root=authority.root)
    assert identity.signing_keys == {0: keyring.identity().signing_key}
