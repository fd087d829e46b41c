"""The root's public listener: signed public keys (Oyster's format), limits, rotation; the client."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager

import coincurve
import httpx
import pytest
from starlette.types import ASGIApp

from reef.crypto import Secp256k1PrivateKey, eip191_digest
from reef.errors import InputError, KMSError, ServiceError
from reef.kms import (
    INIT_PARAMS_KEY_PATH,
    SIGNATURE_HEADER,
    KmsPublicClient,
    KmsRoot,
    RootKeyring,
    RpcApproval,
    derive_key,
    init_params_public_key,
    public_app,
    rotation_message,
)

IMAGE = bytes.fromhex("107a6d53ba665ae961bb407bccf8b8bc95fa048e1eb59e012caac30ef29d72a9")
ADMIN = Secp256k1PrivateKey(hashlib.sha256(b"reef kms admin").digest())


def _client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kms")


def _independent_signer(uri: bytes, body: bytes, header: str) -> bytes:
    """Recover the signer with coincurve directly, as Oyster's client does: SHA-256 prehash."""
    signature = bytes.fromhex(header)
    digest = hashlib.sha256(uri + body).digest()
    recoverable = signature[:64] + bytes([signature[64] - 27])
    point = coincurve.PublicKey.from_signature_and_message(recoverable, digest, hasher=None)
    return bytes(point.format(compressed=False)[1:])


@pytest.mark.parametrize(
    ("route", "key_type", "form"),
    [
        ("/derive/secp256k1/public", "secp256k1", "public"),
        ("/derive/secp256k1/address/ethereum", "secp256k1", "address"),
        ("/derive/ed25519/public", "ed25519", "public"),
        ("/derive/ed25519/address/solana", "ed25519", "address"),
        ("/derive/x25519/public", "x25519", "public"),
    ],
)
async def test_public_endpoints_answer_signed_keys(
    keyring: RootKeyring, route: str, key_type: str, form: str
) -> None:
    app = public_app(KmsRoot(keyring))
    async with _client(app) as http:
        response = await http.get(route, params={"image_id": IMAGE.hex(), "path": "wallet/0"})
    assert response.status_code == 200
    key = derive_key(keyring.enclave_seed(IMAGE), "wallet/0", key_type)  # type: ignore[arg-type]
    expected = key.public_key if form == "public" else (key.address or "").encode()
    assert response.content == expected
    uri = response.request.url.raw_path
    assert uri == f"{route}?image_id={IMAGE.hex()}&path=wallet%2F0".encode()
    signer = _independent_signer(uri, response.content, response.headers[SIGNATURE_HEADER])
    assert signer == keyring.identity().signing_key
    assert response.headers["x-reef-kms-version"] == "0"


async def test_signature_binds_the_uri(keyring: RootKeyring) -> None:
    app = public_app(KmsRoot(keyring))
    async with _client(app) as http:
        a = await http.get("/derive/x25519/public", params={"image_id": IMAGE.hex(), "path": "a"})
    # The same body presented as the answer for another path does not verify.
    other = b"/derive/x25519/public?image_id=" + IMAGE.hex().encode() + b"&path=b"
    signer = _independent_signer(other, a.content, a.headers[SIGNATURE_HEADER])
    assert signer != keyring.identity().signing_key


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("image_id=00&path=x", 400, "image_id must be 64 hex digits"),
        (f"image_id={IMAGE.hex()}", 400, "missing query parameter path"),
        ("path=x", 400, "exactly one of image_id and address"),
        (f"image_id={IMAGE.hex()}&address=0xab&path=x", 400, "exactly one"),
        ("address=0xab&path=x", 400, "no chain configured"),
        (f"image_id={IMAGE.hex()}&path=x&version=7", 400, "no root seed version 7"),
        (f"image_id={IMAGE.hex()}&path=x&version=-1", 400, "version must be a decimal"),
        # "²" passes str.isdigit but not int(): a 400, not a server error.
        (f"image_id={IMAGE.hex()}&path=x&version=%C2%B2", 400, "version must be a decimal"),
        (f"image_id={IMAGE.hex()}&path=" + "p" * 1100, 400, "path is longer"),
        (f"image_id={IMAGE.hex()}&path=" + "p" * 5000, 414, "URI too long"),
    ],
)
async def test_bad_requests_are_refused_unsigned(
    keyring: RootKeyring, query: str, status: int, message: str
) -> None:
    async with _client(public_app(KmsRoot(keyring))) as http:
        response = await http.get("/derive/secp256k1/public?" + query)
    assert response.status_code == status
    assert message in response.text
    assert SIGNATURE_HEADER not in response.headers


async def test_limits_on_methods_and_bodies(keyring: RootKeyring) -> None:
    async with _client(public_app(KmsRoot(keyring))) as http:
        post = await http.post(f"/derive/x25519/public?image_id={IMAGE.hex()}&path=x")
        assert post.status_code == 405
        big = await http.post("/admin/rotate", content=b"x" * 2000)
        assert big.status_code == 413


async def test_contract_flavour(keyring: RootKeyring) -> None:
    root = KmsRoot(keyring, approval=RpcApproval("http://unused", 4660))
    address = "0x92148e8F84096d0Dfe7E66a025d14D1e2594DDc2"
    async with _client(public_app(root)) as http:
        response = await http.get(
            "/derive/secp256k1/public", params={"address": address, "path": "p"}
        )
    assert response.status_code == 200
    expected = derive_key(keyring.contract_seed(4660, address), "p", "secp256k1")
    assert response.content == expected.public_key


async def test_client_checks_signatures(keyring: RootKeyring) -> None:
    app = public_app(KmsRoot(keyring))
    transport = httpx.ASGITransport(app=app)
    signing = keyring.identity().signing_key
    client = KmsPublicClient("kms:1101", signing_key=signing, transport=transport)
    expected = derive_key(keyring.enclave_seed(IMAGE), "k", "ed25519")
    assert await client.public_key("ed25519", "k", image_id=IMAGE) == expected.public_key
    assert await client.address("ed25519", "k", image_id=IMAGE) == expected.address
    wrong = KmsPublicClient(
        "http://kms", signing_key=Secp256k1PrivateKey(b"\x01" * 32).public_key.raw,
        transport=transport,
    )  # fmt: skip
    with pytest.raises(KMSError, match="signed by another key"):
        await wrong.public_key("ed25519", "k", image_id=IMAGE)


async def test_client_rejects_a_tampered_answer(keyring: RootKeyring) -> None:
    app = public_app(KmsRoot(keyring))
    inner = httpx.ASGITransport(app=app)

    class Tamper(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await inner.handle_async_request(request)
            await response.aread()
            body = bytearray(response.content)
            body[0] ^= 1
            return httpx.Response(200, headers=response.headers, content=bytes(body))

    client = KmsPublicClient(
        "http://kms", signing_key=keyring.identity().signing_key, transport=Tamper()
    )
    with pytest.raises(KMSError, match="signed by another key"):
        await client.public_key("x25519", "k", image_id=IMAGE)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"\xb2", "malformed x-reef-kms-version"),  # "²" in Latin-1: str.isdigit, not int()
        (b"v1", "malformed x-reef-kms-version"),
        (b"1", "asked the KMS for version 0, it answered 1"),
    ],
)
async def test_client_refuses_a_bad_or_other_answered_version(
    keyring: RootKeyring, header: bytes, message: str
) -> None:
    inner = httpx.ASGITransport(app=public_app(KmsRoot(keyring)))

    class Relabel(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await inner.handle_async_request(request)
            await response.aread()
            headers = [(k, v) for k, v in response.headers.raw if k != b"x-reef-kms-version"]
            headers.append((b"x-reef-kms-version", header))
            return httpx.Response(200, headers=headers, content=response.content)

    client = KmsPublicClient(
        "http://kms", signing_key=keyring.identity().signing_key, transport=Relabel()
    )
    with pytest.raises(KMSError, match=message):
        await client.public_key("x25519", "k", image_id=IMAGE, version=0)


async def test_client_reports_refusals_and_unreachable(keyring: RootKeyring) -> None:
    transport = httpx.ASGITransport(app=public_app(KmsRoot(keyring)))
    client = KmsPublicClient(
        "http://kms", signing_key=keyring.identity().signing_key, transport=transport
    )
    with pytest.raises(ServiceError, match=r"answered 400.*no root seed version 3"):
        await client.public_key("x25519", "k", image_id=IMAGE, version=3)
    down = KmsPublicClient("http://127.0.0.1:1", signing_key=keyring.identity().signing_key)
    with pytest.raises(ServiceError, match="cannot reach the KMS"):
        await down.public_key("x25519", "k", image_id=IMAGE)
    with pytest.raises(InputError, match="64 bytes"):
        KmsPublicClient("http://kms", signing_key=b"\x00" * 10)


async def test_rotation_needs_the_admin(
    keyring: RootKeyring, make_random: Callable[[str], Callable[[int], bytes]]
) -> None:
    root = KmsRoot(keyring, admin=ADMIN.public_key.address, random=make_random("rot"))
    first = keyring.identity()
    message = rotation_message(first.signing_address, 1)
    good = ADMIN.sign_digest(eip191_digest(message)).hex()
    mallory = Secp256k1PrivateKey(b"\x07" * 32).sign_digest(eip191_digest(message)).hex()
    async with _client(public_app(root)) as http:
        refused = await http.post("/admin/rotate", json={"version": 1, "signature": mallory})
        assert refused.status_code == 401
        skipped = await http.post("/admin/rotate", json={"version": 2, "signature": good})
        assert skipped.status_code == 409
        junk = await http.post("/admin/rotate", content=b"{")
        assert junk.status_code == 400
        assert root.keyring.current_version == 0
        rotated = await http.post("/admin/rotate", json={"version": 1, "signature": good})
        assert rotated.status_code == 200, rotated.text
        new = root.keyring.identity()
        assert json.loads(rotated.content)["signing_key"] == new.signing_key.hex()
        # The answer is signed by the key clients pinned before the rotation.
        signer = _independent_signer(
            rotated.request.url.raw_path, rotated.content, rotated.headers[SIGNATURE_HEADER]
        )
        assert signer == first.signing_key
        replay = await http.post("/admin/rotate", json={"version": 1, "signature": good})
        assert replay.status_code == 409

    # After rotation: new keys by default, old ones still served for migration, each signed by
    # its own version's key; a client pinning only version 0 refuses current answers.
    transport = httpx.ASGITransport(app=public_app(root))
    both = KmsPublicClient(
        "http://kms", signing_key={0: first.signing_key, 1: new.signing_key}, transport=transport
    )
    current = await both.public_key("secp256k1", "w", image_id=IMAGE)
    old = await both.public_key("secp256k1", "w", image_id=IMAGE, version=0)
    assert old == derive_key(keyring.enclave_seed(IMAGE), "w", "secp256k1").public_key
    assert current == derive_key(root.keyring.enclave_seed(IMAGE, 1), "w", "secp256k1").public_key
    assert current != old
    only_v0 = KmsPublicClient("http://kms", signing_key={0: first.signing_key}, transport=transport)
    with pytest.raises(KMSError, match="version 1, for which no signing key is pinned"):
        await only_v0.public_key("secp256k1", "w", image_id=IMAGE)
    assert await only_v0.public_key("secp256k1", "w", image_id=IMAGE, version=0) == old


async def test_rotation_disabled_without_admin(keyring: RootKeyring) -> None:
    async with _client(public_app(KmsRoot(keyring))) as http:
        response = await http.post("/admin/rotate", json={"version": 1, "signature": "00" * 65})
    assert response.status_code == 403
    assert "disabled" in response.text


def test_init_params_key_over_loopback(
    keyring: RootKeyring, serve_thread: Callable[[ASGIApp], AbstractContextManager[str]]
) -> None:
    with serve_thread(public_app(KmsRoot(keyring))) as url:
        key = init_params_public_key(url, IMAGE, signing_key=keyring.identity().signing_key)
    expected = derive_key(keyring.enclave_seed(IMAGE), INIT_PARAMS_KEY_PATH, "x25519")
    assert key == expected.public_key


async def test_public_listener_over_loopback(
    keyring: RootKeyring, serve: Callable[[ASGIApp], AbstractAsyncContextManager[str]]
) -> None:
    async with serve(public_app(KmsRoot(keyring))) as url:
        client = KmsPublicClient(url, signing_key=keyring.identity().signing_key)
        address = await client.address("secp256k1", "eth", image_id=IMAGE)
    assert address == derive_key(keyring.enclave_seed(IMAGE), "eth", "secp256k1").address


async def test_a_deeply_nested_rotation_request_is_a_400(keyring: RootKeyring) -> None:
    """A stranger's rotation body of nested arrays (within the size limit) is refused as
    malformed, not a server error: json recurses per bracket."""
    async with _client(public_app(KmsRoot(keyring))) as http:
        nested = await http.post("/admin/rotate", content=b"[" * 1020)
        assert nested.status_code == 400
        assert "nested more than" in nested.text
        still = await http.post("/admin/rotate", json={"version": 2, "signature": "00"})
        assert still.status_code == 400
