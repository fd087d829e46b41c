"""`reef store serve` attacked as a hostile stranger would: the one reef server a tenant stranger
reaches over the network when reef does not run the chain.

Each test replays one attack against the real store: a real `reef store serve` process (or the
store's app on the serving floor) on loopback, real EIP-191 signatures, and a real devnet chain
served over HTTP whose funded accounts may upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from market.store_support import stop_store, store_process
from reef.chain.devnet import Devnet, DevnetThread, dev_accounts, serve_devnet_in_thread
from reef.errors import ServiceError
from reef.market import upload_authorization, upload_image
from reef.market._upload_auth import UploadPolicy

REEF = Path(sys.executable).with_name("reef")
FUNDED = dev_accounts(1)[0].local_account
MIB = 1 << 20


@pytest.fixture(scope="module")
def chain() -> Iterator[DevnetThread]:
    with serve_devnet_in_thread(Devnet(accounts=1)) as served:
        yield served


@contextmanager
def _store(home: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`reef store serve --port 0 ARGS` in a child process, once ready: the process and its URL."""
    with store_process(home, "--port", "0", *args) as (process, said):
        yield process, said["image store"]


def _image(tmp_path: Path, content: bytes) -> tuple[Path, str]:
    digest = hashlib.sha256(content).hexdigest()
    path = tmp_path / f"{digest[:8]}.img"
    path.write_bytes(content)
    return path, digest


# -- two stores on one images directory ----------------------------------------------------------


@pytest.mark.slow
def test_two_stores_on_one_directory_count_one_quota(
    chain: DevnetThread, reef_home: Path, tmp_path: Path
) -> None:
    """`reef up`'s store and a `reef store serve` on the same images directory (or two of the
    latter) share its upload ledger. Each read the ledger once, at start, and rewrote it whole
    from its own memory: an account's uploads through one were lost from the count by the
    other's next write, and each store admitted a full quota of its own. Both now count every
    upload in the one ledger, and an account's quota holds across them."""
    images = tmp_path / "images"
    args = ("--rpc", chain.url, "--dir", str(images), "--quota", "1")
    who = FUNDED.address.lower()
    with _store(reef_home, *args) as (first, url_a), _store(reef_home, *args) as (second, url_b):
        a, _ = _image(tmp_path, b"a" * (300 << 10))
        b, _ = _image(tmp_path, b"b" * (300 << 10))
        upload_image(url_a, a, signer=FUNDED)
        upload_image(url_b, b, signer=FUNDED)
        ledger = json.loads((images / ".uploaders.json").read_text())
        assert ledger == {who: 600 << 10}  # neither store's write lost the other's count
        # 600 KiB are used of 1 MiB: 600 more pass the quota through either store.
        c, _ = _image(tmp_path, b"c" * (600 << 10))
        for url in (url_a, url_b):
            with pytest.raises(ServiceError, match=r"\(413\).*has uploaded 614400 bytes"):
                upload_image(url, c, signer=FUNDED)
        stop_store(first)
        stop_store(second)
    assert json.loads((images / ".uploaders.json").read_text()) == {who: 600 << 10}


# -- refusals the serving floor makes itself ------------------------------------------------------


@pytest.mark.slow
def test_refusals_the_serving_floor_makes_are_in_the_stores_log(
    chain: DevnetThread, reef_home: Path, tmp_path: Path
) -> None:
    """A body over the store's limit is refused by the serving floor before the store sees the
    request (413 on its declared length), and so are oversized headers (431). The store's log
    told the operator of every refusal it made itself, one line each, and of none of these:
    the operator saw the tenant's refused upload nowhere in the store's own lines. They are
    there now, in the same form (who, what, status, why)."""
    digest = hashlib.sha256(b"never sent").hexdigest()
    with _store(reef_home, "--rpc", chain.url, "--dir", str(tmp_path / "images")) as (store, url):
        auth = upload_authorization(FUNDED, digest)
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), 10) as raw:
            raw.sendall(
                f"PUT /images/{digest} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {auth}\r\n"
                f"content-length: {3 << 30}\r\n\r\n".encode()
            )
            answer = raw.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413"), answer
        big_header = httpx.put(
            f"{url}/images/{digest}",
            content=b"x",
            headers={"authorization": auth, "x-junk": "j" * (20 << 10)},
            timeout=10,
        )
        assert big_header.status_code == 431
        # Still serving.
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        err = stop_store(store)
    assert f"refused PUT /images/{digest} from 127.0.0.1 (413): request body over " in err, err
    assert f"refused PUT /images/{digest} from 127.0.0.1 (431): request headers over " in err, err


# -- a captured authorization, replayed ------------------------------------------------------------


def _chain_policy(chain: DevnetThread, quota: int) -> UploadPolicy:
    """`reef store serve`'s policy: accounts funded on the devnet, read over its JSON-RPC."""
    from reef.chain._rpc import HttpRpc
    from reef.node import funded_uploads

    return funded_uploads(HttpRpc(chain.url, {}, 10.0), chain_id=31337, quota_bytes=quota)


async def _captured(tmp_path: Path, image: bytes) -> str:
    """The Authorization header `reef deploy`'s client sends to upload ``image`` (as a store it
    was sent to, or anyone on the path, sees it)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from reef._serve import serve

    seen: list[str] = []

    async def keep(request: Request) -> JSONResponse:
        seen.append(request.headers.get("authorization", ""))
        async for _ in request.stream():
            pass
        return JSONResponse({"url": "http://x/images/y"}, status_code=201)

    evil = Starlette(routes=[Route("/images/{sha}", keep, methods=["PUT"])])
    path, _ = _image(tmp_path, image)
    async with await serve(evil, host="127.0.0.1", port=0, what="evil store") as served:
        await asyncio.to_thread(upload_image, served.url, path, signer=FUNDED)
    assert len(seen) == 1
    return seen[0]


async def test_a_replayed_authorization_cannot_stream_another_body_under_the_quota(
    chain: DevnetThread, tmp_path: Path
) -> None:
    """A tenant's upload authorization seen by a stranger (a store it uploaded to, or anyone on
    the path) was good, until it expired, for any body sent under that image's name: the
    stranger streamed junk up to the tenant's whole quota at the tenant's store and held it
    there, so the tenant's own next upload was refused as over its quota (the junk was dropped
    only at the end, when its hash did not match). reef's client now signs the image's size
    too: the store refuses a body of another length, before and while it arrives."""
    from reef._serve import serve
    from reef.market import ImageStore, image_store_app

    image = b"the tenant's image " * 5000  # ~93 KiB
    header = await _captured(tmp_path, image)
    digest = hashlib.sha256(image).hexdigest()
    quota = MIB
    store = ImageStore(tmp_path / "store")
    app = image_store_app(store, uploads=_chain_policy(chain, quota))
    async with (
        await serve(app, host="127.0.0.1", port=0, what="image store") as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
    ):
        # The replay: the captured header, 900 KiB of junk declared and sent, then held open.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            f"PUT /images/{digest} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {header}\r\n"
            f"content-length: {(900 << 10) + 1}\r\n\r\n".encode()
        )
        writer.write(b"j" * (900 << 10))
        await writer.drain()
        await asyncio.sleep(0.5)  # the store reads what was sent
        own, own_digest = _image(tmp_path, b"the tenant's next image" * 9000)  # ~200 KiB
        try:
            sha, _ = await asyncio.to_thread(upload_image, server.url, own, signer=FUNDED)
            # The replay is refused: 900 KiB and one are not the size the tenant signed.
            async with asyncio.timeout(10):
                answer = await reader.read(4096)
        finally:
            writer.close()
        assert sha == own_digest
        assert answer.startswith(b"HTTP/1.1 400"), answer
        assert b"signed for 95000 bytes" in answer
        # The exact body, under the captured header, is still the tenant's image.
        same = await client.put(
            f"/images/{digest}", content=image, headers={"authorization": header}
        )
        assert same.status_code == 201, same.text
    assert store.has(digest)
    assert store.has(own_digest)
    assert not [p for p in store.root.iterdir() if p.name.startswith(".upload-")]


async def test_a_body_of_another_length_than_signed_is_refused_before_it_is_read(
    chain: DevnetThread, tmp_path: Path
) -> None:
    from reef._serve import serve
    from reef.market import ImageStore, image_store_app

    image = b"signed image"
    digest = hashlib.sha256(image).hexdigest()
    header = upload_authorization(FUNDED, digest, size=len(image))
    app = image_store_app(ImageStore(tmp_path / "store"), uploads=_chain_policy(chain, MIB))
    async with (
        await serve(app, host="127.0.0.1", port=0, what="image store") as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
    ):
        longer = await client.put(
            f"/images/{digest}", content=image + b"x" * 1000, headers={"authorization": header}
        )
        assert longer.status_code == 400
        assert f"signed for {len(image)} bytes" in longer.json()["error"]

        async def chunks() -> object:  # no declared length: cut where it passes the size
            yield image
            yield b"x" * 1000

        streamed = await client.put(
            f"/images/{digest}", content=chunks(), headers={"authorization": header}
        )
        assert streamed.status_code == 400
        assert f"signed for {len(image)} bytes" in streamed.json()["error"]
        # The signed size is part of what is signed: another size in the header is forged.
        address, expires, _size, signature = header.split(" ", 1)[1].split(":")
        forged = f"ReefUpload {address}:{expires}:{len(image) + 1000}:{signature}"
        refused = await client.put(
            f"/images/{digest}", content=image + b"x" * 1000, headers={"authorization": forged}
        )
        assert refused.status_code == 403
        ok = await client.put(f"/images/{digest}", content=image, headers={"authorization": header})
        assert ok.status_code == 201


async def test_one_image_uploaded_twice_at_once_is_charged_once(
    chain: DevnetThread, tmp_path: Path
) -> None:
    """Two uploads of one new image under way together (a replayed authorization, or a retry
    while the first still runs) were both charged to the account when both completed: the
    image is stored once, and is now counted once."""
    from reef._serve import serve
    from reef.market import ImageStore, image_store_app

    image = b"one image" * 10000
    digest = hashlib.sha256(image).hexdigest()
    header = upload_authorization(FUNDED, digest, size=len(image))
    store = ImageStore(tmp_path / "store")
    app = image_store_app(store, uploads=_chain_policy(chain, MIB))
    both = asyncio.Barrier(2)

    async def body() -> object:
        yield image[:100]
        await both.wait()  # both uploads are admitted and under way before either ends
        await asyncio.sleep(0.3)
        yield image[100:]

    async with (
        await serve(app, host="127.0.0.1", port=0, what="image store") as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
    ):
        answers = await asyncio.gather(
            *(
                client.put(f"/images/{digest}", content=body(), headers={"authorization": header})
                for _ in range(2)
            )
        )
    assert [a.status_code for a in answers] == [201, 201]
    assert json.loads(store.ledger_path.read_text()) == {FUNDED.address.lower(): len(image)}


# -- a body that trickles ------------------------------------------------------------------------


async def test_a_trickling_upload_is_cut_off_and_others_are_served_meanwhile(
    chain: DevnetThread, tmp_path: Path
) -> None:
    """The serving floor closes a body that stops arriving (no chunk in 15 s), but a body that
    trickles a byte every few seconds held its upload, its temporary file and its share of the
    account's quota for as long as the client wished (a 512 MiB upload at a byte per 14 s: ever).
    An upload must now keep up a slowest average rate after a grace period (64 KiB/s after 60 s
    by default; 1 s here), else it is refused with 408 and its file removed; other clients are
    served all the while."""
    from reef._serve import serve
    from reef.market import ImageStore, image_store_app

    image = b"a trickled image " * 1000
    digest = hashlib.sha256(image).hexdigest()
    header = upload_authorization(FUNDED, digest, size=len(image))
    store = ImageStore(tmp_path / "store")
    app = image_store_app(store, uploads=_chain_policy(chain, MIB), upload_grace_s=1.0)
    async with (
        await serve(app, host="127.0.0.1", port=0, what="image store") as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            f"PUT /images/{digest} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {header}\r\n"
            f"content-length: {len(image)}\r\n\r\n".encode()
        )
        answer = b""
        for sent in range(40):  # a byte every 0.25 s, up to 10 s: far more than the grace
            writer.write(image[sent : sent + 1])
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.25):
                    answer = await reader.read(4096)
            if answer:
                break
            # Meanwhile the store serves everybody else.
            assert (await client.get("/health")).status_code == 200
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"slower than" in answer
        other = b"an honest image"
        other_sha = hashlib.sha256(other).hexdigest()
        sent_whole = await client.put(
            f"/images/{other_sha}",
            content=other,
            headers={"authorization": upload_authorization(FUNDED, other_sha, size=len(other))},
        )
        assert sent_whole.status_code == 201
    assert not store.has(digest)
    assert not [p for p in store.root.iterdir() if p.name.startswith(".upload-")]
    assert json.loads(store.ledger_path.read_text()) == {FUNDED.address.lower(): len(other)}


# -- names, and reading what is being written ---------------------------------------------------


async def _raw(port: int, request: bytes) -> bytes:
    """Send ``request`` as it is (no client normalises its path) and read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read(1 << 16)
    finally:
        writer.close()


async def test_the_ledger_and_uploads_under_way_are_not_reachable_by_any_name(
    chain: DevnetThread, tmp_path: Path
) -> None:
    """Already held (kept for its coverage): the store's own files beside the images (the
    upload ledger, its lock, the temporary file of an upload under way) are reachable under no
    spelling of a path, and an image being uploaded is not served until it is whole."""
    from reef._serve import serve
    from reef.market import ImageStore, image_store_app

    image = b"an image read while it is written " * 3000
    digest = hashlib.sha256(image).hexdigest()
    store = ImageStore(tmp_path / "store")
    store.put(b"already here")
    (store.root / ".uploaders.json").write_text('{"0xsecret": 1}\n')
    app = image_store_app(store, uploads=_chain_policy(chain, MIB))
    async with await serve(app, host="127.0.0.1", port=0, what="image store") as server:
        # An upload under way: half its body sent.
        header = upload_authorization(FUNDED, digest, size=len(image))
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            f"PUT /images/{digest} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {header}\r\n"
            f"content-length: {len(image)}\r\n\r\n".encode()
            + image[: len(image) // 2]
        )
        await writer.drain()
        for _ in range(100):
            temporary = [p.name for p in store.root.iterdir() if p.name.startswith(".upload-")]
            if temporary:
                break
            await asyncio.sleep(0.05)
        assert temporary
        names = [
            ".uploaders.json",
            ".uploaders.json.lock",
            temporary[0],
            "..%2F.uploaders.json",
            "%2e%2e%2f.uploaders.json",
            f"..%2f{store.root.name}%2f.uploaders.json",
            "%2E%2E/%2E%2E/etc/passwd",
            digest.upper(),
            f"{digest}%00",
            digest,  # not whole yet
        ]
        for name in names:
            for method in ("GET", "HEAD"):
                answer = await _raw(
                    server.port,
                    f"{method} /images/{name} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode(),
                )
                status = answer.split(b" ", 2)[1]
                assert status in (b"400", b"404", b"405"), (method, name, answer[:200])
                assert b"0xsecret" not in answer
            put = await _raw(
                server.port,
                f"PUT /images/{name} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {header}\r\n"
                "content-length: 1\r\n\r\nx".encode(),
            )
            assert not put.startswith(b"HTTP/1.1 201"), (name, put[:200])
        writer.write(image[len(image) // 2 :])
        await writer.drain()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            for _ in range(100):
                fetched = await client.get(f"/images/{digest}")
                if fetched.status_code == 200:
                    break
                await asyncio.sleep(0.05)
        writer.close()
        assert fetched.content == image
    ledger = json.loads(store.ledger_path.read_text())
    assert ledger == {"0xsecret": 1, FUNDED.address.lower(): len(image)}
    assert sorted(store) == sorted([digest, hashlib.sha256(b"already here").hexdigest()])


@pytest.mark.slow
def test_a_log_nobody_reads_fails_no_request(reef_home: Path, tmp_path: Path) -> None:
    """The store tells its refusals to stderr. When nobody reads it any more (the pipe's reader
    is gone), a refusal's line cannot be written: the refusal is still answered, and the store
    goes on serving."""
    process = subprocess.Popen(
        [str(REEF), "store", "serve", "--port", "0", "--open", "--dir", str(tmp_path / "i")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "REEF_HOME": str(reef_home), "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        url = ""
        for line in process.stdout:
            if line.startswith("image store"):
                url = line.split()[-1]
            if line.strip() == "ready":
                break
        process.stderr.close()  # nobody reads the store's log from now on
        port = int(url.rsplit(":", 1)[1])
        for _ in range(3):  # more than a pipe's buffer would hold is not needed: it is closed
            with socket.create_connection(("127.0.0.1", port), 10) as raw:
                raw.sendall(
                    f"PUT /images/{'a' * 64} HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                    f"content-length: {3 << 30}\r\n\r\n".encode()
                )
                answer = raw.recv(4096)
            assert answer.startswith(b"HTTP/1.1 413"), answer
            bad_name = httpx.put(f"{url}/images/not-a-hash", content=b"x", timeout=10)
            assert bad_name.status_code == 400
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


# -- a download nobody reads ---------------------------------------------------------------------


async def test_a_download_nobody_reads_is_dropped_and_others_are_served(tmp_path: Path) -> None:
    """A client that asks for an image and reads nothing of it held the connection, and an open
    file, for ever: the serving floor timed out reads from clients, never writes to them, so 128
    such requests per address (the floor's per-peer cap) from a few addresses would use up the
    store's file descriptors. A connection whose answer stays unread (its send buffer full, no
    byte taken) for the floor's read timeout is now dropped; others are served meanwhile."""
    from reef._serve import Limits, serve
    from reef.market import ImageStore, UploadPolicy, image_store_app

    store = ImageStore(tmp_path / "store")
    size = 32 * MIB
    digest = store.put(b"x" * size)
    app = image_store_app(store, uploads=UploadPolicy.anyone())
    limits = Limits(max_body=MIB, read_timeout=1.0)
    async with await serve(app, host="127.0.0.1", port=0, what="image store", limits=limits) as s:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", s.port))
        stalled.sendall(f"GET /images/{digest} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode())
        async with httpx.AsyncClient(base_url=s.url, timeout=30) as client:
            for _ in range(10):  # 5 s of not reading, five times the read timeout
                assert (await client.get("/health")).status_code == 200
                await asyncio.sleep(0.5)
            whole = await client.get(f"/images/{digest}")
            assert len(whole.content) == size  # a reader is served in full
        received = 0

        def read_all() -> None:
            nonlocal received
            stalled.settimeout(10)
            with contextlib.suppress(ConnectionResetError, TimeoutError):
                while chunk := stalled.recv(1 << 20):
                    received += len(chunk)

        await asyncio.to_thread(read_all)
        stalled.close()
    assert received < size


# -- many strangers at once ----------------------------------------------------------------------


async def test_a_flood_of_fresh_unfunded_signers_leaves_a_funded_upload_served(
    chain: DevnetThread, tmp_path: Path
) -> None:
    """Already held (kept for its coverage): keys cost nothing, so a stranger signs uploads with
    a fresh key each, many at once, and each costs the store a balance read on the chain. They
    are refused (403, nothing written, nothing counted) while a funded tenant's upload among
    them is stored."""
    from eth_account import Account

    from reef._serve import serve
    from reef.market import ImageStore, image_store_app

    store = ImageStore(tmp_path / "store")
    app = image_store_app(store, uploads=_chain_policy(chain, MIB))
    junk = b"junk from a stranger"
    junk_sha = hashlib.sha256(junk).hexdigest()
    headers = [upload_authorization(Account.create(), junk_sha, size=len(junk)) for _ in range(150)]
    own, own_digest = _image(tmp_path, b"the funded tenant's image" * 100)
    async with (
        await serve(app, host="127.0.0.1", port=0, what="image store") as server,
        httpx.AsyncClient(
            base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=100)
        ) as client,
    ):

        async def stranger(header: str) -> int:
            answer = await client.put(
                f"/images/{junk_sha}", content=junk, headers={"authorization": header}
            )
            return answer.status_code

        flood = [asyncio.create_task(stranger(header)) for header in headers]
        sha, _ = await asyncio.to_thread(upload_image, server.url, own, signer=FUNDED)
        statuses = await asyncio.gather(*flood)
    assert sha == own_digest
    assert set(statuses) == {403}
    assert sorted(store) == [own_digest]
    assert json.loads(store.ledger_path.read_text()) == {FUNDED.address.lower(): own.stat().st_size}
