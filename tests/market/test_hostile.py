"""Hostile tenants and providers against the provider's control plane and its client.

Every attack here runs against real servers on loopback: a devnet served over JSON-RPC, the real
``reef provider run`` process (so a crash shows as a dead process, not a dead test run), and, for
the client side, a provider's control plane that is itself the attacker (anyone may register one
in the market), served by a small hostile app on loopback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from market.provider_support import (
    ProviderChain,
    local_control_plane,
    provider_chain,
    provider_job,
    serve_image_store,
    start_provider,
)
from net_support import free_port
from proc_support import stop_process
from reef.chain import JobId, MarketClient
from reef.errors import InputError, ServiceError
from reef.market import ControlPlaneClient, JobMetadata, RateCard
from reef.testing import FakeRunner, dev_job_metadata, dev_market

CARD = RateCard.dev().lookup("local", "dev.small")

# Deep enough that a recursive JSON parser overflows the C stack once py_ecc (imported with web3)
# has raised the interpreter's recursion limit to 100 000: the process dies of SIGSEGV. The market
# stores at most 32 KiB of metadata, so on chain the deepest is about half as deep.
DEEP = "[" * 100_000
DEEP_ON_CHAIN = "[" * 32_000
# An integer literal longer than Python's int-from-text limit (4300 digits): json raises a
# ValueError that is not a JSONDecodeError.
LONG_NUMBER = (
    '{"instance":"dev.small","region":"local","memory":' + "1" * 5000 + ',"vcpu":1,"url":"x"}'
)


def valid_metadata(**overrides: Any) -> str:
    meta = dev_job_metadata("http://127.0.0.1:9/images/" + "ab" * 32)
    return dataclasses.replace(meta, **overrides).to_json()


# -- pure: the metadata parser -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (DEEP, "nested"),
        ('{"a":' * 100_000, "nested"),
        (LONG_NUMBER, "not JSON"),
    ],
)
def test_metadata_that_would_crash_the_parser_is_refused_with_a_reason(
    text: str, names: str
) -> None:
    with pytest.raises(InputError) as caught:
        JobMetadata.parse(text)
    assert names in caught.value.message


# -- the real provider process on a real chain ---------------------------------------------------


@pytest.fixture
async def chain() -> AsyncIterator[ProviderChain]:
    async with provider_chain() as served:
        yield served


async def _provider(home: Path, chain: ProviderChain, port: int) -> asyncio.subprocess.Process:
    return await start_provider(home, chain, port, "--insecure")


async def _job_reason(process: asyncio.subprocess.Process, home: Path, port: int, job: str) -> str:
    """The provider's reason for ending ``job``, waiting for it to decide."""
    body = await provider_job(process, home, port, job, lambda body: body["phase"] == "done")
    return str(body["reason"])


@pytest.mark.slow
async def test_poisoned_metadata_on_chain_neither_crashes_nor_stalls_the_provider(
    chain: ProviderChain, reef_home: Path
) -> None:
    port = free_port()
    chain.register(port)
    # Already on chain when the provider starts: it replays them before serving anyone.
    deep = chain.owner.open_job(DEEP_ON_CHAIN, chain.provider, CARD.min_rate, 10**6)
    long_number = chain.owner.open_job(LONG_NUMBER, chain.provider, CARD.min_rate, 10**6)
    process = await _provider(reef_home, chain, port)
    try:
        reason = await _job_reason(process, reef_home, port, long_number)
        assert "invalid job metadata" in reason
        assert "not JSON" in reason
        reason = await _job_reason(process, reef_home, port, deep)
        assert "invalid job metadata" in reason
        assert "nested" in reason
        # Arriving while it runs, the same poison is refused, and the jobs after it are still
        # decided on: the provider keeps following the chain.
        late = chain.owner.open_job(LONG_NUMBER, chain.provider, CARD.min_rate, 10**6)
        after = chain.owner.open_job(
            valid_metadata(instance="dev.huge"), chain.provider, CARD.min_rate, 10**6
        )
        assert "not JSON" in await _job_reason(process, reef_home, port, late)
        assert "dev.huge" in await _job_reason(process, reef_home, port, after)
        assert process.returncode is None
    finally:
        await stop_process(process)


@pytest.mark.slow
async def test_reef_provider_run_keeps_enclaves_within_its_memory_budget(
    chain: ProviderChain, reef_home: Path
) -> None:
    """``--memory-budget`` reaches the control plane: a job asking for more waits, saying why."""
    port = free_port()
    chain.register(port)
    job = chain.owner.open_job(valid_metadata(), chain.provider, CARD.min_rate, 10**6)
    process = await start_provider(reef_home, chain, port, "--insecure", "--memory-budget", "100")
    try:
        body = await provider_job(
            process,
            reef_home,
            port,
            job,
            lambda body: "at capacity" in str(body.get("last_error") or ""),
        )
        assert "of its 100 MiB, and this job asks for 256 MiB" in body["last_error"]
        assert body["phase"] != "done"  # it waits; it is not refused
    finally:
        await stop_process(process)


# -- a hostile provider's control plane against its client (the CLI and the dashboard) ------------


Handler = Callable[[httpx.Request], Awaitable[tuple[int, Any]]]


@dataclass
class Hostile:
    """A raw HTTP server on loopback answering every request with ``answer(path)``: a status
    and a body that is bytes, or an async iterator of bytes (streamed as it comes)."""

    answer: Callable[[str], tuple[int, Any]]
    url: str = ""
    server: asyncio.Server | None = None

    async def start(self) -> Hostile:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            status, body = self.answer(path)
            if isinstance(body, bytes):
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
            else:
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    "connection: close\r\n\r\n".encode()
                )
                async for chunk in body:
                    writer.write(chunk)
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def hostile() -> AsyncIterator[
    Callable[[Callable[[str], tuple[int, Any]]], Awaitable[Hostile]]
]:
    started: list[Hostile] = []

    async def make(answer: Callable[[str], tuple[int, Any]]) -> Hostile:
        server = await Hostile(answer).start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.aclose()


JOB = JobId("0x" + "00" * 31 + "01")


async def _trickle(seconds: float) -> AsyncIterator[bytes]:
    """A JSON body that never ends within ``seconds``: one byte a second."""
    yield b'{"jobs": ['
    for _ in range(int(seconds)):
        await asyncio.sleep(1)
        yield b" "


async def _endless(chunk: bytes, total: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield chunk
        sent += len(chunk)


async def test_a_control_plane_that_answers_deeply_nested_json_is_refused(hostile: Any) -> None:
    server = await hostile(lambda path: (200, DEEP.encode()))
    client = ControlPlaneClient(server.url, timeout=3)
    for call in (client.spec, lambda: client.job(JOB), lambda: client.ip(JOB)):
        with pytest.raises(ServiceError) as caught:
            await asyncio.to_thread(call)
        assert "nested" in caught.value.message


async def test_a_control_plane_that_trickles_its_answer_is_given_up_on(hostile: Any) -> None:
    server = await hostile(lambda path: (200, _trickle(60)))
    client = ControlPlaneClient(server.url, timeout=2)
    with pytest.raises(ServiceError) as caught:
        await asyncio.wait_for(asyncio.to_thread(client.job, JOB), 30)
    assert "took longer than" in caught.value.message


async def test_a_control_plane_that_answers_without_end_is_cut_off(hostile: Any) -> None:
    # 64 MiB of a JSON string that never closes: the client stops reading at its limit.
    server = await hostile(lambda path: (200, _endless(b'{"x":"' + b"a" * (1 << 20), 64 << 20)))
    client = ControlPlaneClient(server.url, timeout=5)
    with pytest.raises(ServiceError) as caught:
        await asyncio.wait_for(asyncio.to_thread(client.job, JOB), 60)
    assert "larger than" in caught.value.message


@pytest.mark.parametrize("url", ["http://a:b", "http://a..b", "http://[::1"])
def test_a_control_plane_registered_at_no_url_is_a_service_error(url: str) -> None:
    """A provider's URL is whatever its account wrote on chain: one httpx cannot send to (a port
    that is no number, a host no resolver can encode) is a reason, not an httpx traceback."""
    with pytest.raises(ServiceError) as caught:
        ControlPlaneClient(url, timeout=3).job(JOB)
    assert "control plane" in caught.value.message


@pytest.mark.parametrize(
    "answer",
    [
        {"job_id": JOB, "phase": "running", "restarts": "many"},
        {"job_id": JOB, "phase": "running", "restarts": int("9" * 400)},
        {"job_id": JOB, "phase": "running", "enclave": {"id": "e", "endpoints": "not a map"}},
        {"job_id": JOB, "phase": ["running"]},
    ],
)
async def test_a_job_answer_of_the_wrong_shape_is_refused_with_a_reason(
    hostile: Any, answer: dict[str, Any]
) -> None:
    server = await hostile(lambda path: (200, json.dumps(answer).encode()))
    with pytest.raises(ServiceError) as caught:
        await asyncio.to_thread(ControlPlaneClient(server.url, timeout=3).job, JOB)
    assert "unexpected" in caught.value.message


# -- the image store: one account racing its own quota -------------------------------------------


@pytest.mark.slow
async def test_uploads_racing_each_other_hold_no_more_disk_than_the_uploaders_quota(
    tmp_path: Path,
) -> None:
    """Four uploads of distinct images by one funded account at once, each under the quota but
    together twice over it: each sends all its bytes and keeps its body open until the others
    have too. The store counts the bytes still arriving against the quota, so the account never
    holds more of the store's disk than its quota, in files or in uploads under way (before, each
    upload was measured only against what was committed: with the serving floor's 128
    connections per peer, 128 uploads of 512 MiB could hold 64 GiB of a 2 GiB quota's disk)."""
    import hashlib

    from eth_account import Account

    from reef._serve import serve
    from reef.market import ImageStore, UploadPolicy, image_store_app, upload_authorization

    uploader = Account.from_key(hashlib.sha256(b"racing uploader").digest())

    async def funded(address: str) -> bool:
        return address == uploader.address.lower()

    quota = 1 << 20
    store = ImageStore(tmp_path / "store")
    policy = UploadPolicy(is_funded=funded, quota_bytes=quota, chain="chain 31337")
    images = [bytes([n]) * (quota // 2) for n in range(4)]
    sent = asyncio.Barrier(len(images))
    held: list[int] = []

    def on_disk() -> int:
        return sum(p.stat().st_size for p in store.root.iterdir() if p != store.ledger_path)

    async def body(data: bytes) -> AsyncIterator[bytes]:
        yield data
        async with asyncio.timeout(10):
            await sent.wait()  # every upload's bytes are sent before any body ends ...
        await asyncio.sleep(1)  # ... and read by the store (a second is ample on loopback)
        held.append(on_disk())

    async with await serve(
        image_store_app(store, uploads=policy), host="127.0.0.1", port=0, what="store"
    ) as server:

        async def upload(data: bytes) -> httpx.Response | None:
            sha = hashlib.sha256(data).hexdigest()
            async with httpx.AsyncClient(timeout=30) as http:
                try:
                    return await http.put(
                        f"{server.url}/images/{sha}",
                        content=body(data),
                        headers={"authorization": upload_authorization(uploader, sha)},
                    )
                except httpx.HTTPError:
                    return None  # refused mid-way: the store may close the connection

        answers = await asyncio.gather(*(upload(data) for data in images))
    assert held
    assert max(held) <= quota
    stored = sum((store.root / sha).stat().st_size for sha in store)
    assert stored <= quota
    assert sum(a is not None and a.status_code == 201 for a in answers) * (quota // 2) == stored
    for answer in answers:
        if answer is not None and answer.status_code == 413:
            assert "quota" in answer.json()["error"]


# -- one tenant opening many jobs ----------------------------------------------------------------


@dataclass
class LocalProvider:
    """A control plane (stepped by the test) on a devnet's market, with its real indexer, an
    image store on loopback and its own download cache, and :class:`FakeRunner` enclaves."""

    cp: Any
    runner: FakeRunner
    tenant: MarketClient
    provider: str
    store_url: str
    store: Any
    cache: Path

    def metadata(self, image: bytes, memory: int = 1024) -> str:
        sha = self.store.put(image)
        return dev_job_metadata(f"{self.store_url}/images/{sha}", memory=memory).to_json()

    async def until(self, what: str, check: Callable[[], bool]) -> None:
        try:
            async with asyncio.timeout(30):
                while not check():
                    await self.cp.step()
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(
                f"no {what}: {len(self.runner.enclaves)} run; {self.cp.jobs()}"
            ) from None


@pytest.fixture
async def local_provider(tmp_path: Path) -> AsyncIterator[LocalProvider]:
    from reef.market import ImageStore

    market = dev_market(control_plane="http://127.0.0.1:9")
    store = ImageStore(tmp_path / "store")
    served = await serve_image_store(store)
    runner = FakeRunner()
    cp = local_control_plane(market, runner, tmp_path, memory_budget_mib=3 * 1024)
    tenant = market.client(1)
    try:
        await cp.start()
        yield LocalProvider(
            cp, runner, tenant, market.provider.address, served.url, store, tmp_path / "cache"
        )
    finally:
        await cp.aclose()
        await served.aclose()


@pytest.mark.slow
async def test_one_tenant_opening_many_jobs_cannot_oversubscribe_the_providers_memory(
    local_provider: LocalProvider,
) -> None:
    """Six paying jobs of 1 GiB each on a provider with 3 GiB for enclaves: three run, the
    others wait and say why, and one starts when a running job ends."""
    lp, cp, runner = local_provider, local_provider.cp, local_provider.runner
    meta = lp.metadata(b"an enclave image")
    jobs = [lp.tenant.open_job(meta, lp.provider, CARD.min_rate, 10**7) for _ in range(6)]
    await lp.until("three launches", lambda: len(runner.enclaves) == 3)
    await lp.until(
        "the others to say why",
        lambda: all(
            "at capacity" in (cp.job_status(job) or {}).get("last_error", "")
            for job in jobs
            if cp.enclave(job) is None
        ),
    )
    await asyncio.sleep(0.5)
    await cp.step()
    assert runner.memory() <= 3 * 1024
    assert len(runner.enclaves) == 3
    running = [job for job in jobs if cp.enclave(job) is not None]
    lp.tenant.revise_rate_initiate(running[0], 0)  # a stop: its enclave ends at once
    await lp.until("the stopped enclave to go", lambda: cp.enclave(running[0]) is None)
    await lp.until(
        "a waiting job to start",
        lambda: len([job for job in jobs if cp.enclave(job) is not None]) == 3,
    )
    assert runner.memory() <= 3 * 1024


@pytest.mark.slow
async def test_the_images_of_ended_jobs_leave_the_providers_disk(
    local_provider: LocalProvider,
) -> None:
    """A tenant can open job after job, each with another image of up to 4 GiB, and stop each
    after a rate lock's worth of money: the provider's download cache kept every image for good.
    An image no job wants any more is removed (an image two jobs share stays while one runs)."""
    lp, cp = local_provider, local_provider.cp
    cached = lambda: sorted(p.name for p in lp.cache.iterdir() if not p.name.startswith("."))  # noqa: E731
    first = lp.metadata(b"first image")
    shared = lp.metadata(b"shared image")
    one = lp.tenant.open_job(first, lp.provider, CARD.min_rate, 10**7)
    two = lp.tenant.open_job(shared, lp.provider, CARD.min_rate, 10**7)
    three = lp.tenant.open_job(shared, lp.provider, CARD.min_rate, 10**7)
    await lp.until("three launches", lambda: len(lp.runner.enclaves) == 3)
    assert len(cached()) == 2
    for job in (one, two):
        lp.tenant.revise_rate_initiate(job, 0)
    await lp.until("two stops", lambda: len(lp.runner.enclaves) == 1)
    await lp.until("the first image to go", lambda: len(cached()) == 1)
    await asyncio.sleep(0.3)
    await cp.step()
    assert cp.enclave(three) is not None
    assert cached() == [JobMetadata.parse(shared).url.rsplit("/", 1)[1]]
    lp.tenant.revise_rate_initiate(three, 0)
    await lp.until("the last image to go", lambda: cached() == [])


@pytest.mark.slow
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999/images/" + "ab" * 32,  # a port past 65535
        "http://store\n.example/images/" + "ab" * 32,  # a control character
    ],
)
async def test_an_image_url_no_client_can_use_ends_the_job_with_the_reason(
    local_provider: LocalProvider, url: str
) -> None:
    """Such a URL made httpx raise what the fetcher did not translate (an ExceptionGroup, an
    InvalidURL): the job was retried forever, a traceback logged each time, and its owner was
    never told."""
    lp = local_provider
    meta = dev_job_metadata(url)
    job = lp.tenant.open_job(meta.to_json(), lp.provider, CARD.min_rate, 10**7)
    await lp.until("the job to end", lambda: (lp.cp.job_status(job) or {}).get("phase") == "done")
    reason = lp.cp.job_status(job)["reason"]
    assert "image URL" in reason
    assert lp.runner.enclaves == {}


@pytest.mark.slow
async def test_an_image_url_that_redirects_nowhere_ends_the_job_with_the_reason(
    local_provider: LocalProvider,
) -> None:
    """A redirect loop, or a redirect to ``file:///etc/passwd``: the job was retried forever.
    (No file is ever read: only http(s) is followed.)"""
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse
    from starlette.routing import Route

    from reef.node import serve_app

    async def loop(_request: Any) -> RedirectResponse:
        return RedirectResponse("/loop")

    async def to_file(_request: Any) -> RedirectResponse:
        return RedirectResponse("file:///etc/passwd")

    app = Starlette(routes=[Route("/loop", loop), Route("/file", to_file)])
    lp = local_provider
    served = await serve_app(app, host="127.0.0.1", port=0, what="redirects")
    try:
        jobs = {}
        for path in ("/loop", "/file"):
            meta = dev_job_metadata(served.url + path)
            jobs[path] = lp.tenant.open_job(meta.to_json(), lp.provider, CARD.min_rate, 10**7)
        await lp.until(
            "the jobs to end",
            lambda: all((lp.cp.job_status(j) or {}).get("phase") == "done" for j in jobs.values()),
        )
        for job in jobs.values():
            assert "cannot work" in lp.cp.job_status(job)["reason"]
        assert lp.runner.enclaves == {}
    finally:
        await served.aclose()
