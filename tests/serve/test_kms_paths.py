"""KMS public endpoints: different invalid UTF-8 paths never map to one key (issue 11).

Starlette decodes ``%ff``, ``%fe`` and ``%EF%BF%BD`` all to U+FFFD, so the three requests used to
get the same derived key. Now bytes that are not UTF-8 are refused with 400; ``%EF%BF%BD`` is the
proper UTF-8 of U+FFFD and stays accepted, so each accepted path names exactly one key. The app
runs on the real serving floor on loopback.
"""

from __future__ import annotations

import asyncio
import hashlib

import httpx

from reef._serve import serve
from reef.kms import KmsRoot, RootKeyring, RootSeed, public_app

IMAGE = "107a6d53ba665ae961bb407bccf8b8bc95fa048e1eb59e012caac30ef29d72a9"
ROUTE = "/derive/secp256k1/public"


def _root() -> KmsRoot:
    return KmsRoot(RootKeyring([RootSeed(hashlib.sha512(b"reef serve test root").digest(), 0)]))


async def _get(client: httpx.AsyncClient, url: str, path: str) -> httpx.Response:
    # The query is written by hand so that httpx sends the escapes exactly as given.
    return await client.get(httpx.URL(f"{url}{ROUTE}?image_id={IMAGE}&path={path}"))


async def test_invalid_utf8_paths_are_refused_and_never_merged() -> None:
    app = public_app(_root())
    async with (
        await serve(app, host="127.0.0.1", port=0, what="kms") as server,
        httpx.AsyncClient() as client,
    ):
        keys: dict[str, bytes] = {}
        for path in ("%EF%BF%BD", "abc", "%C3%A9", "%25ff"):
            answer = await _get(client, server.url, path)
            assert answer.status_code == 200, (path, answer.text)
            keys[path] = answer.content
        assert len(set(keys.values())) == len(keys), "two paths named one key"
        for bad in ("%ff", "%fe", "a%80b", "%ED%A0%80", "%C3"):
            answer = await _get(client, server.url, bad)
            assert answer.status_code == 400, bad
            assert "UTF-8" in answer.text
        # The good key is still served after the refusals.
        again = await _get(client, server.url, "%EF%BF%BD")
        assert again.content == keys["%EF%BF%BD"]


async def test_raw_non_ascii_query_bytes_are_refused() -> None:
    async with await serve(public_app(_root()), host="127.0.0.1", port=0, what="kms") as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        target = f"{ROUTE}?image_id={IMAGE}&path=".encode() + "é".encode("latin-1")
        writer.write(b"GET " + target + b" HTTP/1.1\r\nhost: kms\r\nconnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 400")
        async with httpx.AsyncClient() as client:
            assert (await _get(client, server.url, "abc")).status_code == 200
