"""A provider that restarts cleanly: what a crash or a stop leaves behind is cleared on restart.

Each test replays the leftover the last hostile round found:

* an image store (the provider's download cache is one too) killed with SIGKILL mid-upload left
  its ``.upload-*`` temporary file for good, counted by no quota: crash after crash filled the
  disk;
* the images of jobs that ended while the provider was down stayed in its download cache for
  good (it removed an image only when it saw its job end);
* ``/jobs`` listed every job the provider ever saw, and anyone can open job after job for it at
  the cost of gas (a refused job's deposit comes back).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from eth_account import Account
from event_support import market_event

from market.provider_support import local_control_plane, serve_image_store
from net_support import serve_in_thread
from reef.chain import (
    IndexedEvent,
    parse_address,
)
from reef.market import (
    ControlPlane,
    ImageFetcher,
    ImageStore,
    JobPolicy,
    RateCard,
    UploadPolicy,
    control_plane_app,
    image_store_app,
    upload_authorization,
)
from reef.market._control_plane import LISTED_ENDED_JOBS
from reef.testing import FakeRunner, dev_job_metadata, dev_market

CARD = RateCard.dev().lookup("local", "dev.small")

# -- uploads cut short by a crash ----------------------------------------------------------------

_STORE = """
import asyncio, sys
from pathlib import Path

import uvicorn

from reef.market import ImageStore, UploadPolicy, image_store_app


async def funded(address: str) -> bool:
    return True


async def main() -> None:
    policy = UploadPolicy(is_funded=funded, quota_bytes=int(sys.argv[2]))
    app = image_store_app(ImageStore(Path(sys.argv[1])), uploads=policy)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    print(server.servers[0].sockets[0].getsockname()[1], flush=True)
    await serving


asyncio.run(main())
"""
"""An image store in a process of its own, for funded uploaders within a quota (argv[2])."""


def _until(what: str, check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_store_killed_mid_upload_leaves_nothing_behind_once_restarted(tmp_path: Path) -> None:
    root = tmp_path / "store"
    quota = 4 << 20
    image = b"\x07" * quota
    sha = hashlib.sha256(image).hexdigest()
    uploader = Account.from_key(hashlib.sha256(b"an uploader whose store crashed").digest())
    authorization = upload_authorization(uploader, sha)
    half = image[: quota // 2]
    store = subprocess.Popen(
        [sys.executable, "-c", _STORE, str(root), str(quota)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert store.stdout is not None
        port = int(store.stdout.readline())
        with socket.create_connection(("127.0.0.1", port)) as conn:
            head = (
                f"PUT /images/{sha} HTTP/1.1\r\nhost: store\r\ncontent-length: {quota}\r\n"
                f"authorization: {authorization}\r\n\r\n"
            )
            conn.sendall(head.encode() + half)

            def under_way() -> bool:
                return any(p.stat().st_size > 0 for p in root.glob(".upload-*"))

            _until("upload under way", under_way)
            store.send_signal(signal.SIGKILL)  # mid-upload: the store's process just ends
            store.wait(30)
    finally:
        if store.poll() is None:
            store.kill()
            store.wait(30)
        if store.stdout is not None:
            store.stdout.close()
    assert [p.name.startswith(".upload-") for p in root.iterdir()] == [True]  # what a crash left

    restarted = ImageStore(root)
    assert restarted.removed_at_open == 1
    assert list(root.iterdir()) == []
    # The account's quota is whole: the crashed upload's bytes were never counted, and the same
    # image, of the whole quota, goes in once, counted once.
    policy = UploadPolicy(is_funded=_funded, quota_bytes=quota)
    with serve_in_thread(image_store_app(restarted, uploads=policy)) as url:
        answer = httpx.put(
            f"{url}/images/{sha}", content=image, headers={"authorization": authorization}
        )
    assert answer.status_code == 201, answer.text
    assert list(restarted) == [sha]
    assert json.loads(restarted.ledger_path.read_text()) == {uploader.address.lower(): quota}


async def _funded(address: str) -> bool:
    return True


def test_a_store_that_opens_leaves_an_upload_under_way_alone(tmp_path: Path) -> None:
    """Only the temporary files of dead writers go: another store opening on the same directory
    (``reef up`` and a command, say) while an upload is under way leaves it to finish."""
    store = ImageStore(tmp_path)
    upload = store.writer()
    upload.write(b"half of an image")
    again = ImageStore(tmp_path)
    assert again.removed_at_open == 0
    upload.write(b", then the rest")
    digest = upload.commit()
    assert again.has(digest)
    assert again.path(digest).read_bytes() == b"half of an image, then the rest"
    assert [p.name for p in tmp_path.iterdir()] == [digest]


# -- jobs that ended while the provider was down --------------------------------------------------


async def _until_async(cp: ControlPlane, what: str, check: Callable[[], bool]) -> None:
    try:
        async with asyncio.timeout(30):
            while not check():
                await cp.step()
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"no {what}: {cp.jobs()}") from None


@pytest.mark.slow
async def test_images_of_jobs_that_ended_while_the_provider_was_down_leave_its_disk(
    tmp_path: Path,
) -> None:
    """Three jobs run; the provider stops; one job is stopped and closed on chain; the provider
    starts again. Once caught up, the closed job's image is gone and the open ones' stay; an
    image of a job that ran across the restart goes when that job ends later."""
    market = dev_market(control_plane="http://127.0.0.1:9")
    tenant = market.client(1)
    store = ImageStore(tmp_path / "store")
    served = await serve_image_store(store)
    enclaves = FakeRunner()
    cache = tmp_path / "cache"

    def cached() -> set[str]:
        return set(ImageStore(cache))

    def control_plane() -> ControlPlane:
        return local_control_plane(market, enclaves, tmp_path)

    def job_of(image: bytes) -> tuple[str, str]:
        sha = store.put(image)
        meta = dev_job_metadata(f"{served.url}/images/{sha}").to_json()
        return tenant.open_job(meta, market.provider.address, CARD.min_rate, 10**7), sha

    try:
        ended, ended_image = job_of(b"the image of a job closed while its provider was down")
        kept, kept_image = job_of(b"the image of a job still open")
        later, later_image = job_of(b"the image of a job that ends after the restart")
        cp = control_plane()
        await cp.start()
        await _until_async(cp, "three launches", lambda: len(enclaves.enclaves) == 3)
        assert cached() == {ended_image, kept_image, later_image}
        await cp.aclose()  # the provider stops; its enclaves keep running

        tenant.revise_rate_initiate(ended, 0)
        market.devnet.increase_time(10)  # past the rate lock
        tenant.close(ended)
        assert tenant.find_job(ended) is None

        cp = control_plane()
        await cp.start()  # catches up with the chain, then decides once
        assert cached() == {kept_image, later_image}
        assert enclaves.jobs() == {kept, later}

        tenant.revise_rate_initiate(later, 0)
        await _until_async(cp, "the later job's image to go", lambda: cached() == {kept_image})
        assert enclaves.jobs() == {kept}
        await cp.aclose()
    finally:
        await served.aclose()


# -- /jobs ----------------------------------------------------------------------------------------

PROVIDER = "0x" + "ab" * 20
OWNER = "0x" + "cd" * 20


class _NoEvents:
    """An event feed with nothing in it: the test applies events to the book itself."""

    stream = "31337:0x" + "5a" * 20

    def __init__(self, path: Path) -> None:
        self.engine = sa.create_engine(f"sqlite:///{path}")

    def poll(self) -> int:
        return 0

    def chain_time(self) -> int | None:
        return None

    def events(self, *, after: int = 0, limit: int = 1000) -> list[IndexedEvent]:
        return []


def _job_id(n: int) -> str:
    return "0x" + n.to_bytes(32, "big").hex()


async def test_jobs_lists_the_live_jobs_and_the_last_ended_ones_not_every_job_ever(
    tmp_path: Path,
) -> None:
    """A stranger opens 250 jobs below the provider's minimum (each refused at once: it costs
    gas, and the deposit comes back on close), then one that pays. ``/jobs`` lists the paying
    one and the last ended ones, however many there were; every job stays one ``/job`` away."""
    cp = ControlPlane(
        policy=JobPolicy(RateCard.dev(), provider=parse_address(PROVIDER)),
        feed=_NoEvents(tmp_path / "db.sqlite"),
        runner=FakeRunner(),
        fetcher=ImageFetcher(ImageStore(tmp_path / "cache")),
    )
    meta = dev_job_metadata("http://x/" + "ab" * 32).to_json()
    paying = 251
    for n in range(1, paying + 1):
        fields = {
            "owner": OWNER,
            "provider": PROVIDER,
            "metadata": meta,
            "rate": hex(CARD.min_rate if n == paying else 1),
            "balance": hex(10**7),
            "timestamp": hex(1000),
        }
        cp.book.apply(market_event("Opened", _job_id(n), fields, block=n))
    cp.book.decide(1000)
    transport = httpx.ASGITransport(app=control_plane_app(cp))
    async with httpx.AsyncClient(transport=transport, base_url="http://cp") as client:
        listed = (await client.get("/jobs")).json()["jobs"]
        first = await client.get("/job", params={"id": _job_id(1)})
    ended = [_job_id(n) for n in range(paying - LISTED_ENDED_JOBS, paying)]
    assert [job["job_id"] for job in listed] == [*ended, _job_id(paying)]
    assert {job["phase"] for job in listed[:-1]} == {"done"}
    assert listed[-1]["phase"] == "running"
    assert first.status_code == 200
    assert first.json()["phase"] == "done"
