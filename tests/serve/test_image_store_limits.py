"""The image store on the serving floor: one canonical name per image, a size limit per upload
(issue 11). Served for real on loopback, as `reef up` serves it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from reef._serve import serve
from reef.market import ImageStore, UploadPolicy, image_store_app

MIB = 1024 * 1024


async def test_an_image_has_one_name_only(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    data = b"an image"
    digest = hashlib.sha256(data).hexdigest()
    app = image_store_app(store, uploads=UploadPolicy.anyone())
    async with (
        await serve(app, host="127.0.0.1", port=0, what="image store") as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        for spelling in (digest.upper(), "0x" + digest, digest + "%20", "%20" + digest):
            put = await client.put(httpx.URL(f"{server.url}/images/{spelling}"), content=data)
            assert put.status_code == 400, spelling
            assert "64 lowercase hex" in put.json()["error"]
            get = await client.get(httpx.URL(f"{server.url}/images/{spelling}"))
            assert get.status_code == 400, spelling
        assert list(store) == []
        assert (await client.put(f"/images/{digest}", content=data)).status_code == 201
        assert (await client.get(f"/images/{digest}")).content == data
        assert (await client.get(f"/images/{digest.upper()}")).status_code == 400


async def test_uploads_are_limited_by_the_stores_own_limit(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    app = image_store_app(store, uploads=UploadPolicy.anyone(), max_bytes=8 * MIB)
    async with (
        await serve(app, host="127.0.0.1", port=0, what="image store") as server,
        httpx.AsyncClient(base_url=server.url, timeout=60) as client,
    ):
        # Over the floor's 5 MiB default, within the store's 8 MiB: accepted.
        six = b"\x01" * (6 * MIB)
        accepted = await client.post("/images", content=six)
        assert accepted.status_code == 201
        assert accepted.json()["sha256"] == hashlib.sha256(six).hexdigest()
        refused = await client.post("/images", content=b"\x02" * (9 * MIB))
        assert refused.status_code == 413
        assert len(list(store)) == 1
        assert (await client.get("/health")).json() == {"ok": True}
