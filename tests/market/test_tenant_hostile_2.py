"""A provider's control plane against its tenants, round 2: what strangers' image URLs, jobs and
job churn cost the provider (threads, CPU, enclave launches, disk left behind).

Each attack is replayed on a real devnet market followed by a real control plane (its indexer,
its image fetcher) with :class:`reef.testing.FakeRunner` enclaves, or by a real
``reef provider run`` process where the attack needs one; hostile hosts are real HTTP servers
on loopback. Each test failed before its fix.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from market.provider_support import (
    CARD,
    provider_job,
    serve_image_store,
    tenant_provider,
)
from reef.chain import JobId
from reef.market import ImageFetcher, ImageStore
from reef.testing import dev_job_metadata

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello"


# -- host names whose DNS server never answers --------------------------------------------------


@dataclass
class StalledDns:
    """The DNS server of a stranger's zone (``*.stalled.test``) that never answers: glibc's
    ``getaddrinfo`` holds its calling thread for the resolver's whole timeout (here until the
    test ends). Other names resolve as usual."""

    release: threading.Event = field(default_factory=threading.Event)
    held: int = 0
    most: int = 0
    asked: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else str(host)
            if not name.endswith(".stalled.test"):
                return real(host, *args, **kwargs)
            with self.lock:
                self.asked += 1
                self.held += 1
                self.most = max(self.most, self.held)
            try:
                self.release.wait(120)
            finally:
                with self.lock:
                    self.held -= 1
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.slow
async def test_names_whose_dns_never_answers_do_not_stop_the_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Image downloads looked their host names up in asyncio's default thread pool (6 threads
    on 2 cores), which the provider's indexer reads the chain in: three strangers (4 downloads
    each, the most one owner may) naming hosts whose DNS server never answers held every
    thread, and the provider stopped following the chain; another tenant's job, opened after,
    was never even seen. Lookups now run in threads of their own (as many as downloads may run
    at once), one lookup per name however many downloads ask, each given up on after a while
    (the job retries, saying why); a URL naming an address needs none."""
    dns = StalledDns()
    dns.install(monkeypatch)
    try:
        async with tenant_provider(tmp_path) as p:
            stalled = [
                p.open(f"http://image-{tenant}-{n}.stalled.test/eif", tenant=tenant)
                for tenant in (1, 2, 3)
                for n in range(4)
            ]
            await p.until("lookups held", lambda: dns.most >= 4)
            # Named, as most image URLs are (an object store's): its lookup is not starved.
            named = p.image(b"another tenant's image").replace("127.0.0.1", "localhost")
            honest = p.open(named, tenant=4)
            await p.until("the other tenant's enclave", lambda: p.cp.enclave(honest) is not None)
            by_address = p.open(p.image(b"a third tenant's image"), tenant=5)
            await p.until("the third enclave", lambda: p.cp.enclave(by_address) is not None)
            # The provider's own threads are free: the chain is still followed.
            await asyncio.wait_for(asyncio.to_thread(lambda: None), 5)
            await p.until(
                "the stalled jobs to say why they wait",
                lambda: any(
                    "stalled.test" in p.status(job).get("last_error", "") for job in stalled
                ),
                seconds=60,
            )
            assert all(p.status(job)["phase"] == "running" for job in stalled)
            # One thread per name, however often its jobs retry.
            assert dns.most <= len(stalled)
    finally:
        dns.release.set()


async def test_downloads_load_the_certificate_authorities_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each download built two TLS contexts, each loading the whole CA bundle (about 100 ms of
    the event loop's time on this 2-core host, per download a stranger asks for): the fetcher
    now loads one and every download shares it."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from reef.errors import ImageError
    from reef.node import serve_app

    async def missing(_request: Any) -> Response:
        return Response(b"no", status_code=404)

    served = await serve_app(
        Starlette(routes=[Route("/{path:path}", missing)]), host="127.0.0.1", port=0, what="404"
    )
    loads: list[object] = []
    real = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(args or kwargs)
        real(self, *args, **kwargs)

    # Counted from here: only what the fetcher's downloads load.
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    fetcher = ImageFetcher(ImageStore(tmp_path / "cache"), timeout=5)
    try:
        for n in range(5):
            with pytest.raises(ImageError, match="HTTP 404"):
                await fetcher.fetch(f"{served.url}/image-{n}")
    finally:
        monkeypatch.undo()
        await served.aclose()
        fetcher.close()
    assert len(loads) == 1


# -- jobs opened and stopped at every block -------------------------------------------------------


@pytest.mark.slow
async def test_jobs_opened_and_stopped_at_every_block_start_few_enclaves(tmp_path: Path) -> None:
    """The replacement interval bounds one job's metadata changes, not an owner opening a job
    and stopping it (or closing it, or changing its metadata by opening another) at every
    block: each cycle had the provider start an enclave and kill it, at the chain's pace. An
    owner whose enclaves were stopped lately now has 8 starts and stops at once, then one
    every 10 s (here 60 s); the job past it waits, saying why; stops are never delayed, and
    another tenant's first launch is not held up."""
    async with tenant_provider(tmp_path) as p:
        p.cp.launch_interval = 60
        url = p.image(b"the churner's image")
        churner = p.market.client(1)
        launched: list[JobId] = []
        waiting: JobId | None = None
        for _ in range(8):
            job = p.open(url)
            await p.until(
                "the job's enclave, or its wait",
                lambda job=job: (  # type: ignore[misc]
                    p.cp.enclave(job) is not None
                    or "started and stopped" in p.status(job).get("last_error", "")
                ),
            )
            if p.cp.enclave(job) is None:
                waiting = job
                break
            launched.append(job)
            churner.revise_rate_initiate(job, 0)
            await p.until("the enclave to stop", lambda: p.runner.enclaves == {})
        assert waiting is not None, "every job of the churn was launched"
        # The first launch is free, then each start and each stop takes one of the 8.
        assert len(launched) == 5
        told = p.status(waiting)["last_error"]
        assert "faster than one every 60 s (at most 8 at once); this one starts in" in told
        assert p.status(waiting)["phase"] == "running"
        honest = p.open(p.image(b"another tenant's image"), tenant=2)
        await p.until("the other tenant's enclave", lambda: p.cp.enclave(honest) is not None)
        # A job waiting for its turn ends at once when stopped, and never starts.
        churner.revise_rate_initiate(waiting, 0)
        await p.until("the waiting job's end", lambda: p.status(waiting)["phase"] == "done")
        assert len(p.runner.launches) == 6


@pytest.mark.slow
async def test_an_owner_who_opens_many_jobs_at_once_has_them_all_started(tmp_path: Path) -> None:
    """The churn allowance does not hold up a tenant's first launches: twelve jobs opened at
    once (more than the 8 starts a churning owner has) all start at once."""
    async with tenant_provider(tmp_path) as p:
        p.cp.launch_interval = 60
        url = p.image(b"a busy tenant's image")
        jobs = [p.open(url) for _ in range(12)]
        await p.until("every enclave", lambda: all(p.cp.enclave(j) is not None for j in jobs))
        assert not any(p.status(j)["last_error"] for j in jobs)


@pytest.mark.slow
async def test_without_a_launch_burst_an_owner_deploys_and_stops_as_often_as_it_likes(
    tmp_path: Path,
) -> None:
    """``launch_burst=None`` (``reef up``'s provider, whose only tenant is the developer who
    started it): ten deploy-and-stop cycles in a row each start at once, where the bound above
    holds the sixth."""
    async with tenant_provider(tmp_path) as p:
        p.cp.launch_burst = None
        p.cp.launch_interval = 60
        url = p.image(b"a developer's image")
        developer = p.market.client(1)
        for _ in range(10):
            job = p.open(url)
            await p.until("the job's enclave", lambda job=job: p.cp.enclave(job) is not None)  # type: ignore[misc]
            developer.revise_rate_initiate(job, 0)
            await p.until("the enclave to stop", lambda: p.runner.enclaves == {})
        assert len(p.runner.launches) == 10


# -- a provider killed between a job's end and the removal of its /state ----------------------------


def _state_files(home: Path) -> set[str]:
    """The ``/state`` volumes (directories and files) under ``home``."""
    root = home / "enclave-state"
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def _chattr(flag: str, path: Path) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True)


def _pin(home: Path) -> Path:
    """Make the one ``/state`` under ``home`` impossible to delete (an immutable file in it, or
    its volume file), as a removal that fails (a volume still busy) would leave it."""
    root = home / "enclave-state"
    volumes = [p for p in root.iterdir() if p.suffix == ".ext4"]
    if volumes:
        (target,) = volumes
    else:
        (directory,) = [p for p in root.iterdir() if p.is_dir()]
        target = directory / "pinned"
        target.write_text("a file the provider cannot delete yet")
    _chattr("+i", target)
    return target


@pytest.mark.slow
async def test_a_state_whose_removal_waits_is_removed_after_a_kill(reef_home: Path) -> None:
    """The ``/state`` removals waiting for a retry lived in the provider's memory only, and a
    removal that failed with an OS error was dropped at once: a ``reef provider run`` killed
    (SIGKILL) after a job's end and before its enclave's ``/state`` left the disk never
    removed it (the enclave that named it was gone, so nothing did). The removals are now
    noted in the provider's database before the enclave stops, and done when it starts."""
    import signal

    from dev_tee_support import stop_all_enclaves
    from market.provider_support import provider_chain, start_provider
    from net_support import free_port
    from proc_support import stop_process
    from reef.enclave import LocalBackend, build_image
    from reef.home import ReefHome

    probe = reef_home.parent / "pin-probe"
    probe.write_text("")
    try:
        await asyncio.to_thread(_chattr, "+i", probe)
        await asyncio.to_thread(_chattr, "-i", probe)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("this host cannot make a file immutable (chattr +i), which the test needs")
    hello = reef_home.parent / "hello.img"
    build_image(HELLO, hello)
    store = ImageStore(reef_home.parent / "store")
    served = await serve_image_store(store)
    backend = LocalBackend(ReefHome(reef_home))
    pinned: Path | None = None
    process = None
    try:
        async with provider_chain() as chain:
            port = free_port()
            chain.register(port)
            url = f"{served.url}/images/{store.put(hello.read_bytes())}"
            job = chain.owner.open_job(
                dev_job_metadata(url).to_json(), chain.provider, CARD.min_rate, 10**7
            )
            process = await start_provider(reef_home, chain, port, "--insecure")
            await provider_job(process, reef_home, port, job, _running, seconds=90)
            pinned = _pin(reef_home)
            left = _state_files(reef_home)
            chain.owner.revise_rate_initiate(job, 0)
            await provider_job(
                process, reef_home, port, job, lambda b: b["phase"] == "done", seconds=90
            )
            for _ in range(300):
                if not [e for e in await backend.list() if e.state in ("starting", "running")]:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(2)  # its removal is tried, and fails
            assert _state_files(reef_home) & left, "the /state went before the provider died"
            process.send_signal(signal.SIGKILL)
            await process.wait()
            await asyncio.to_thread(_chattr, "-i", pinned)
            pinned = None
            process = await start_provider(reef_home, chain, port, "--insecure")
            for _ in range(300):
                if not _state_files(reef_home) & left:
                    break
                await asyncio.sleep(0.2)
            else:
                log = (reef_home / "provider.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"the /state stayed: {_state_files(reef_home)}\n{log}")
    finally:
        if pinned is not None:
            await asyncio.to_thread(_chattr, "-i", pinned)
        if process is not None:
            await stop_process(process)
        await stop_all_enclaves(backend)
        await served.aclose()


def _running(body: dict[str, Any]) -> bool:
    enclave = body.get("enclave") or {}
    return bool(enclave.get("state") == "running")


# -- uploads that would fill the store's disk -------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
async def test_an_upload_stops_before_the_store_disk_reserve(
    tmp_path: Path, declared: bool
) -> None:
    """The store's quota is per account (2 GiB), and an account needs only some funds (1 wei
    does) to upload: accounts enough filled the disk that the provider's database and its
    enclaves' ``/state`` live on (the image downloads kept 1 GiB free; uploads kept none). An
    upload now stops where it would eat into the free space the store keeps
    (``image_store_app(disk_reserve=…)``), with 507 and what to do; before its body when its
    length is declared. Here the reserve is the disk's free space less 8 MiB and the image
    64 MiB; the store keeps serving, and keeps nothing of the refused upload."""
    import shutil

    import httpx

    from reef.market import UploadPolicy, image_store_app
    from reef.node import serve_app

    store = ImageStore(tmp_path / "store")
    kept = store.put(b"an image already there")
    reserve = shutil.disk_usage(tmp_path).free - (8 << 20)
    served = await serve_app(
        image_store_app(store, uploads=UploadPolicy.anyone(), disk_reserve=reserve),
        host="127.0.0.1",
        port=0,
        what="store",
    )
    size = 64 << 20

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size >> 20):
            yield b"\1" * (1 << 20)

    try:
        async with httpx.AsyncClient(timeout=60) as http:
            content: Any = b"\1" * size if declared else body()
            answer = await http.post(f"{served.url}/images", content=content)
            assert answer.status_code == 507, answer.text
            error = answer.json()["error"]
            assert "bytes free" in error
            assert "the store keeps free" in error
            assert (f"an image of {size} bytes" in error) == declared
            again = await http.get(f"{served.url}/images/{kept}")
            assert again.content == b"an image already there"
    finally:
        await served.aclose()
    assert [p.name for p in store.root.iterdir() if not p.name.startswith(".uploaders")] == [kept]
