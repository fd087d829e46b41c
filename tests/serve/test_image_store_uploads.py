"""Issue 11: the image store accepted unauthenticated uploads of any size, with no quota.

Replayed against the real store on loopback with reef up's policy (a signature by an account
funded on a chain, over the image's hash, within a quota). The chain's funds are a stand-in
callable here; tests/node and the docs test run the same store against the devnet.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from reef._serve import serve
from reef.errors import ServiceError
from reef.market import (
    ImageStore,
    UploadPolicy,
    image_store_app,
    upload_authorization,
    upload_image,
)

FUNDED = Account.from_key(hashlib.sha256(b"funded uploader").digest())
UNFUNDED = Account.from_key(hashlib.sha256(b"unfunded uploader").digest())


async def _funded(address: str) -> bool:
    return address == FUNDED.address.lower()


def _policy(quota: int = 1 << 20) -> UploadPolicy:
    return UploadPolicy(is_funded=_funded, quota_bytes=quota, chain="chain 31337")


async def _signed_put(
    client: httpx.AsyncClient, signer: LocalAccount, image: bytes
) -> httpx.Response:
    """Upload ``image`` under its own hash, authorized by ``signer``."""
    digest = hashlib.sha256(image).hexdigest()
    authorization = upload_authorization(signer, digest)
    return await client.put(
        f"/images/{digest}", content=image, headers={"authorization": authorization}
    )


async def test_uploads_need_a_funded_signer_and_stay_within_a_quota(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    app = image_store_app(store, uploads=_policy(quota=100))
    image = b"i" * 60
    digest = hashlib.sha256(image).hexdigest()
    async with (
        await serve(app, host="127.0.0.1", port=0, what="image store") as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        # The attack: an anonymous upload. Refused before a byte is stored.
        anonymous = await client.put(f"/images/{digest}", content=image)
        assert anonymous.status_code == 401
        assert "authorization" in anonymous.json()["error"]
        assert (await client.post("/images", content=image)).status_code == 401
        # Anyone can make a key: an account with no funds on the chain is refused.
        unfunded = await _signed_put(client, UNFUNDED, image)
        assert unfunded.status_code == 403
        assert "holds no funds on chain 31337" in unfunded.json()["error"]
        # A funded signer's header for one image uploads nothing else.
        header = {"authorization": upload_authorization(FUNDED, digest)}
        other = b"o" * 10
        swapped = await client.put(
            f"/images/{hashlib.sha256(other).hexdigest()}", content=other, headers=header
        )
        assert swapped.status_code == 403
        # A header for the right image, but with its body swapped, is refused by the hash check.
        lying = await client.put(f"/images/{digest}", content=other, headers=header)
        assert lying.status_code == 400
        assert list(store) == []
        # The legitimate upload.
        ok = await client.put(f"/images/{digest}", content=image, headers=header)
        assert ok.status_code == 201, ok.text
        # Uploading the same image again costs no quota; a second image past it is refused.
        assert (
            await client.put(f"/images/{digest}", content=image, headers=header)
        ).status_code == 201
        over = await _signed_put(client, FUNDED, b"b" * 50)
        assert over.status_code == 413
        assert "quota of 100 bytes" in over.json()["error"]
        assert list(store) == [digest]
        # Downloads stay open: images are public bytes named by their hash.
        assert (await client.get(f"/images/{digest}")).content == image


async def test_expired_far_future_and_forged_authorizations_are_refused(tmp_path: Path) -> None:
    app = image_store_app(ImageStore(tmp_path / "store"), uploads=_policy())
    image = b"image"
    digest = hashlib.sha256(image).hexdigest()

    def signed(expires: int, signer: object = FUNDED, claim: str | None = None) -> str:
        message = f"reef image upload\nsha256: {digest}\nexpires: {expires}".encode()
        signature = (
            FUNDED.sign_message(encode_defunct(message)).signature
            if signer is FUNDED
            else (UNFUNDED.sign_message(encode_defunct(message)).signature)
        )
        address = claim or FUNDED.address.lower()
        return f"ReefUpload {address}:{expires}:0x{bytes(signature).hex()}"

    now = int(time.time())
    cases = {
        "expired": (signed(now - 5), 403, "expired"),
        "far future": (signed(now + 86_400), 403, "more than 600 s ahead"),
        "someone else's signature": (signed(now + 60, signer=UNFUNDED), 403, "not signed by"),
        "garbage": ("ReefUpload nonsense", 401, "not a ReefUpload authorization"),
        "other scheme": ("Bearer abc", 401, "not a ReefUpload authorization"),
        "bad hex": (f"ReefUpload {FUNDED.address}:{now + 60}:0xzz", 401, "malformed"),
        "huge expiry": (f"ReefUpload {FUNDED.address}:{'9' * 5000}:0x00", 401, "unix seconds"),
    }
    async with (
        await serve(app, host="127.0.0.1", port=0, what="image store") as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        for name, (header, status, words) in cases.items():
            answer = await client.put(
                f"/images/{digest}", content=image, headers={"authorization": header}
            )
            assert answer.status_code == status, name
            assert words in answer.json()["error"], name
        good = await client.put(
            f"/images/{digest}", content=image, headers={"authorization": signed(now + 60)}
        )
        assert good.status_code == 201


async def test_the_client_signs_its_uploads(tmp_path: Path) -> None:
    app = image_store_app(ImageStore(tmp_path / "store"), uploads=_policy())
    image = tmp_path / "app.img"
    image.write_bytes(b"an enclave image")
    async with await serve(app, host="127.0.0.1", port=0, what="image store") as server:
        import asyncio

        with pytest.raises(ServiceError, match="401"):
            await asyncio.to_thread(upload_image, server.url, image, signer=None)
        with pytest.raises(ServiceError, match="holds no funds"):
            await asyncio.to_thread(upload_image, server.url, image, signer=UNFUNDED)
        digest, url = await asyncio.to_thread(upload_image, server.url, image, signer=FUNDED)
        assert digest == hashlib.sha256(b"an enclave image").hexdigest()
        assert url.endswith(f"/images/{digest}")
