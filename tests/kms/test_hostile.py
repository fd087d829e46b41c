"""A KMS that answers as a hostile stranger would, and a hostile client of a KMS root.

The URL of a KMS root (or of an enclave's derive server) is given to a user or an enclave; the
server behind it may answer a gigabyte, or trickle its response head a byte at a time. Every
client call of :mod:`reef.kms` must end within its timeout and hold at most a small bound of
the answer, failing with a :class:`~reef.errors.ServiceError` that names the KMS. The servers
here are real ones on loopback: only a socket can send a head one byte at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Literal

import base58
import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from kms.kms_support import dev_root_server, dev_root_store
from net_support import SENT_AT_MOST, Sent, drip, gigabyte, raw_server, raw_server_in_thread
from reef.attestation import DevAuthority
from reef.crypto import Secp256k1PrivateKey, eip191_digest
from reef.errors import AttestationError, KMSError, RPCError, ServiceError
from reef.home import ReefHome
from reef.kms import (
    SIGNATURE_HEADER,
    KmsPublicClient,
    KmsRoot,
    RootKeyring,
    RpcApproval,
    derive_key,
    fetch_identity,
    init_params_public_key,
    public_app,
    rotate_root,
    rotation_message,
)
from reef.kms._http import VERSION_HEADER, raw_uri
from reef.kms._signing import verify_response

IMAGE = bytes(range(32))
SIGNING_KEY = b"\x04" * 64
ADMIN = Secp256k1PrivateKey(hashlib.sha256(b"reef kms hostile admin").digest())


def _sign(message: bytes) -> bytes:
    return ADMIN.sign_digest(eip191_digest(message))


async def _call(kind: str, url: str, authority: DevAuthority) -> Any:
    """One KMS client call of ``kind`` against ``url``, with a 1 s timeout."""
    if kind == "public_key":
        client = KmsPublicClient(url, signing_key=SIGNING_KEY, timeout=1.0)
        return await client.public_key("x25519", "k", image_id=IMAGE)
    if kind == "address":
        client = KmsPublicClient(url, signing_key=SIGNING_KEY, timeout=1.0)
        return await client.address("secp256k1", "k", image_id=IMAGE)
    if kind == "fetch_identity":
        return await fetch_identity(url, root=authority.root, http_timeout=1.0)
    assert kind == "rotate_root"
    return await rotate_root(url, sign=_sign, http_timeout=1.0)


ASYNC_CALLS = ["public_key", "address", "fetch_identity", "rotate_root"]


@pytest.fixture
def authority(tmp_path: Path) -> DevAuthority:
    return DevAuthority.load_or_create(ReefHome(tmp_path / "dev-home"))


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
@pytest.mark.parametrize("kind", ASYNC_CALLS)
async def test_a_kms_answering_a_gigabyte_is_not_read(
    kind: str, declared: bool, authority: DevAuthority
) -> None:
    sent = Sent()
    async with raw_server(gigabyte(sent, declared=declared)) as url:
        with pytest.raises(ServiceError, match="larger than any honest answer") as caught:
            async with asyncio.timeout(30):
                await _call(kind, url, authority)
    assert caught.value.message.startswith("the KMS at http://127.0.0.1:")
    assert caught.value.hint
    assert sent.bytes < SENT_AT_MOST


@pytest.mark.parametrize("kind", ASYNC_CALLS)
async def test_a_kms_trickling_its_head_is_given_up_on(kind: str, authority: DevAuthority) -> None:
    async with raw_server(drip()) as url:
        with pytest.raises(ServiceError, match=r"did not answer within 1 s"):
            # Far longer than the client's 1 s: it is the client, not this, that must stop.
            async with asyncio.timeout(20):
                await _call(kind, url, authority)


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
def test_init_params_key_from_a_kms_answering_a_gigabyte(declared: bool) -> None:
    sent = Sent()
    with (
        raw_server_in_thread(gigabyte(sent, declared=declared)) as url,
        pytest.raises(ServiceError, match="larger than any honest answer"),
    ):
        init_params_public_key(url, IMAGE, signing_key=SIGNING_KEY, timeout=1.0)
    assert sent.bytes < SENT_AT_MOST


def test_init_params_key_from_a_kms_trickling_its_head() -> None:
    with (
        raw_server_in_thread(drip()) as url,
        pytest.raises(ServiceError, match=r"did not answer within 1 s"),
    ):
        init_params_public_key(url, IMAGE, signing_key=SIGNING_KEY, timeout=1.0)


# ---- a relay that passes one signed answer off as another ----
#
# An answer's signature covers ``sha256(uri || body)`` with nothing between the two (Oyster's
# format, kept for its clients), so the root's signed answer for the URI ``U + s`` is also a valid
# signature of the answer ``s + body`` for the URI ``U``. For keys of a fixed length that answer
# is refused by its length; an address is text of a varying length, so a relay on the way (the
# public listener is plain HTTP) could make a client accept, as the address of path ``wallet``,
# ``s`` followed by the address of path ``wallet`` + ``s``: an address whose key nobody holds.

BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _relay(root_url: str, suffix: str) -> ASGIApp:
    """Forward each request to ``root_url``; an address request with ``suffix`` appended to its
    URI, answered ``suffix`` followed by the root's body, under the root's signature and
    version."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        uri = raw_uri(scope).decode()
        suffix_here = suffix if "/address/" in uri else ""
        uri += suffix_here
        async with httpx.AsyncClient() as http:
            answer = await http.get(root_url + uri)
        headers = [
            (name.encode(), answer.headers[name].encode())
            for name in (SIGNATURE_HEADER, VERSION_HEADER)
            if name in answer.headers
        ]
        body = suffix_here.encode() + answer.content
        await send(
            {"type": "http.response.start", "status": answer.status_code, "headers": headers}
        )
        await send({"type": "http.response.body", "body": body})

    return app


def _solana_suffix(keyring: RootKeyring) -> tuple[str, str]:
    """A base58 digit ``s`` whose path ``wallet`` + ``s`` has a 43-digit address: ``s`` + that
    address is 44 digits that decode to 32 bytes, as a real Solana address does."""
    seed = keyring.enclave_seed(IMAGE)
    for digit in BASE58[1:]:
        address = derive_key(seed, "wallet" + digit, "ed25519").address
        assert address is not None
        if len(address) == 43:
            forged = digit + address
            assert len(base58.b58decode(forged)) == 32
            return digit, forged
    raise AssertionError("no base58 digit gives a 43-digit address")


@pytest.mark.parametrize("key_type", ["secp256k1", "ed25519"])
async def test_a_relay_cannot_pass_another_paths_address_off_as_this_ones(
    key_type: Literal["secp256k1", "ed25519"],
    keyring: RootKeyring,
    serve: Callable[[ASGIApp], AbstractAsyncContextManager[str]],
) -> None:
    if key_type == "ed25519":
        suffix, forged = _solana_suffix(keyring)
    else:
        suffix = "0"
        other = derive_key(keyring.enclave_seed(IMAGE), "wallet0", "secp256k1").address
        forged = "0" + str(other)
    signing = keyring.identity().signing_key
    async with serve(public_app(KmsRoot(keyring))) as root_url:
        # The root's answer for path wallet + s signs the forged answer for path wallet: the
        # forgery is the client's to catch.
        async with httpx.AsyncClient() as http:
            route = (
                f"/derive/{key_type}/address/{'solana' if key_type == 'ed25519' else 'ethereum'}"
            )
            signed = await http.get(f"{root_url}{route}?image_id={IMAGE.hex()}&path=wallet{suffix}")
        verify_response(
            f"{route}?image_id={IMAGE.hex()}&path=wallet".encode(),
            forged.encode(),
            signed.headers[SIGNATURE_HEADER],
            signing,
        )
        async with serve(_relay(root_url, suffix)) as relay_url:
            client = KmsPublicClient(relay_url, signing_key=signing)
            with pytest.raises(KMSError, match="address") as caught:
                # Today's client returned ``forged`` here.
                await client.address(key_type, "wallet", image_id=IMAGE)
            assert caught.value.hint
        # Through the root itself the same call answers the right address.
        honest = KmsPublicClient(root_url, signing_key=signing)
        expected = derive_key(keyring.enclave_seed(IMAGE), "wallet", key_type).address
        assert await honest.address(key_type, "wallet", image_id=IMAGE) == expected


# ---- a rotation signature replayed while the rotation it authorized is under way ----

ROOT_PCRS = {0: b"\x51" * 48, 1: b"\x52" * 48, 2: b"\x53" * 48}


async def test_one_admin_signature_rotates_once_even_when_replayed_concurrently(
    authority: DevAuthority, tmp_path: Path
) -> None:
    """The admin signs the rotation to version 1. Sent ten times at once, it was checked by
    each request before any rotation ended (the sealed seed is written in a worker thread, and
    the server re-keys its Scallop listener), so every copy rotated: version 10, nine rotations
    nobody signed, and the current keys of every enclave changed with them."""
    store = dev_root_store(ReefHome(tmp_path / "root-home"), authority, ROOT_PCRS)
    root = KmsRoot.open(store, admin=ADMIN.public_key.address)
    message = rotation_message(root.keyring.identity().signing_address, 1)
    body = {"version": 1, "signature": _sign(message).hex()}
    async with dev_root_server(root, authority) as server, httpx.AsyncClient() as http:
        answers = await asyncio.gather(
            *(http.post(f"{server.public_url}/admin/rotate", json=body) for _ in range(10))
        )
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200] + [409] * 9, [answer.text for answer in answers]
        assert root.keyring.current_version == 1
        refused = next(answer for answer in answers if answer.status_code == 409)
        assert "the next version of this KMS is 2, not 1" in refused.text
        # The sealed store holds the one signed rotation too: a restart keeps version 1.
        assert store.load_or_create().current_version == 1


# ---- the chain node a KMS root asks whether a contract approves an image ----


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
async def test_an_rpc_node_answering_a_gigabyte_is_not_read(declared: bool) -> None:
    """The root asks its RPC node on every contract-seed request; a node (a public RPC, or one
    that a man in the middle answers for) that answers a gigabyte must not fill the root's
    memory: every enclave's seeds are served from that process."""
    sent = Sent()
    async with raw_server(gigabyte(sent, declared=declared)) as url:
        approval = RpcApproval(url, 31337, timeout=1.0)
        with pytest.raises(RPCError, match="larger than any honest answer") as caught:
            async with asyncio.timeout(30):
                await approval("0x" + "ab" * 20, IMAGE)
    assert caught.value.hint
    assert sent.bytes < SENT_AT_MOST


async def test_an_rpc_node_trickling_its_head_is_given_up_on() -> None:
    async with raw_server(drip()) as url:
        approval = RpcApproval(url, 31337, timeout=1.0)
        with pytest.raises(RPCError, match=r"did not answer within 1 s"):
            async with asyncio.timeout(20):
                await approval.check_chain()


async def test_an_rpc_node_answering_nested_brackets_is_refused_as_malformed(
    serve: Callable[[ASGIApp], AbstractAsyncContextManager[str]],
) -> None:
    """An RPC answer of 60 000 ``[`` is small enough to be read whole; parsed with
    ``json.loads`` it raised a RecursionError, which is no ValueError, so it escaped the
    approval check as a foreign exception (or crashed the root, where Python's recursion
    limit is raised)."""

    async def nested(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"[" * 60_000})

    async with serve(nested) as url:
        approval = RpcApproval(url, 31337, timeout=5.0)
        with pytest.raises(RPCError, match="nested") as caught:
            await approval("0x" + "ab" * 20, IMAGE)
    assert caught.value.hint


async def test_an_identity_whose_attestation_is_not_cbor_is_refused(
    keyring: RootKeyring,
    authority: DevAuthority,
    serve: Callable[[ASGIApp], AbstractAsyncContextManager[str]],
) -> None:
    """A KMS (or whoever answers for it) whose /info attestation is CBOR nested past cbor2's
    depth limit: cbor2 5.9's error for it is no ValueError, and escaped fetch_identity as a
    foreign exception instead of a refusal."""
    identity = keyring.identity()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = json.dumps(
            {
                "current_version": identity.version,
                "versions": [identity.to_json()],
                "chain_id": None,
                "rotation_admin": "",
                "attestation": (b"\x81" * 1000).hex(),
            }
        ).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async with serve(app) as url:
        with pytest.raises(AttestationError, match="CBOR") as caught:
            await fetch_identity(url, root=authority.root)
    assert caught.value.reason == "decode"


@pytest.mark.parametrize("kind", ["fetch_identity", "rotate_root"])
async def test_an_info_answer_of_nested_brackets_is_refused_as_malformed(
    kind: str,
    authority: DevAuthority,
    serve: Callable[[ASGIApp], AbstractAsyncContextManager[str]],
) -> None:
    """Within the byte bound, 200 000 ``[`` are a RecursionError for ``json.loads`` (and, once
    web3 has raised the recursion limit, a segmentation fault): a KMS, or whoever answers for
    it, is refused as malformed instead."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"[" * 200_000})

    async with serve(app) as url:
        with pytest.raises(KMSError, match=r"not JSON|malformed"):
            await _call(kind, url, authority)


# ---- a relay that replays an answer the root gave before it was rotated ----


async def test_a_pre_rotation_answer_replayed_for_the_current_key_is_refused(
    keyring: RootKeyring,
    serve: Callable[[ASGIApp], AbstractAsyncContextManager[str]],
) -> None:
    """A root is rotated (its version-0 seed leaked, say). A client that learned both versions'
    signing keys from ``/info`` asks for the current X25519 key of a path, naming no version: the
    signed URI then names none either, and the version header is not signed. A relay that kept
    the root's version-0 answer to that URI could replay it, and the client sealed its data to
    the old key, which whoever holds the leaked seed can open."""
    root = KmsRoot(keyring)
    route = f"/derive/x25519/public?image_id={IMAGE.hex()}&path=data"
    async with serve(public_app(root)) as root_url:
        async with httpx.AsyncClient() as http:
            old = await http.get(root_url + route)
        assert old.headers[VERSION_HEADER] == "0"
        rotated = await root.rotate()
        pins = {identity.version: identity.signing_key for identity in rotated.identities()}

        async def replay(scope: Scope, receive: Receive, send: Send) -> None:
            headers = [
                (name.encode(), old.headers[name].encode())
                for name in (SIGNATURE_HEADER, VERSION_HEADER)
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": old.content})

        async with serve(replay) as relay_url:
            with pytest.raises(KMSError, match="version 0") as caught:
                # Today's client returned the version-0 key here.
                await KmsPublicClient(relay_url, signing_key=pins).public_key(
                    "x25519", "data", image_id=IMAGE
                )
            assert caught.value.hint
        # Asked for version 0 by name, the old key is still served (signed URI names it).
        client = KmsPublicClient(root_url, signing_key=pins)
        assert await client.public_key("x25519", "data", image_id=IMAGE, version=0) == old.content
        current = await client.public_key("x25519", "data", image_id=IMAGE)
        assert current != old.content
