"""The control plane's supervisor and HTTP API with a fake enclave backend and an in-memory event
feed: launches, relaunches, terminations, image checks, retries, heartbeats and restarts."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from event_support import market_event

from reef.chain import IndexedEvent, market_decoder
from reef.market import (
    ControlPlane,
    FetchedImage,
    ImageFetcher,
    ImagePolicy,
    ImageStore,
    JobPolicy,
    LaunchSpec,
    RateCard,
    RunningEnclave,
    control_plane_app,
)
from reef.testing import FakeRunner, ManualWallClock

PROVIDER = "0x" + "ab" * 20
OWNER = "0x" + "cd" * 20
MIN_RATE = RateCard.dev().lookup("local", "dev.small").min_rate
IMAGES = {name: f"image {name}".encode() for name in ("one", "two", "bad")}
SHA = {name: hashlib.sha256(data).hexdigest() for name, data in IMAGES.items()}
STORE = "http://store.test/images/"
HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello"


def job_id(n: int) -> str:
    return "0x" + n.to_bytes(32, "big").hex()


def url(name: str) -> str:
    return STORE + SHA[name]


def metadata(image: str = "one", **overrides: Any) -> str:
    meta: dict[str, Any] = {
        "instance": "dev.small",
        "region": "local",
        "memory": 512,
        "vcpu": 1,
        "url": url(image),
        "name": "t",
        "family": "tuna",
        "debug": False,
        "init_params": "",
    }
    meta.update(overrides)
    return json.dumps(meta)


class Feed:
    """An in-memory EventFeed on a real SQLite database (terminations are stored there)."""

    stream = "31337:0x" + "5a" * 20

    def __init__(self, path: Path) -> None:
        self.engine = sa.create_engine(f"sqlite:///{path}")
        self.stored: list[IndexedEvent] = []
        self.fail: str | None = None
        self.chain_clock: int | None = None
        self.explode = 0
        self._ids = itertools.count(1)

    def add(self, name: str, n: int, **data: Any) -> None:
        event_id = next(self._ids)
        event = market_event(name, job_id(n), data, block=event_id)
        self.stored.append(
            IndexedEvent(
                id=event_id,
                stream=self.stream,
                block_hash="0x" + "00" * 32,
                event=event,
                record=market_decoder().to_json(event),
            )
        )

    def open(self, n: int, *, balance: int = 10**7, rate: int = MIN_RATE, at: int = 1000,
             **meta: Any) -> None:  # fmt: skip
        self.add(
            "Opened",
            n,
            owner=OWNER,
            provider=PROVIDER,
            metadata=metadata(**meta),
            rate=hex(rate),
            balance=hex(balance),
            timestamp=hex(at),
        )

    def poll(self) -> int:
        if self.fail:
            from reef.errors import RPCError

            raise RPCError(self.fail)
        return 0

    def chain_time(self) -> int | None:
        return self.chain_clock

    def events(self, *, after: int = 0, limit: int = 1000) -> list[IndexedEvent]:
        if self.explode:
            self.explode -= 1
            raise RuntimeError("database hiccup")
        return [e for e in self.stored if e.id > after][:limit]


class Runner(FakeRunner):
    """:class:`reef.testing.FakeRunner` that checks each image it is handed holds the bytes its
    hash names, and finds a job's enclaves by the job's number."""

    async def launch(self, spec: LaunchSpec, image: FetchedImage, key: str) -> RunningEnclave:
        assert (
            image.path.read_bytes() == IMAGES[next(k for k, v in SHA.items() if v == image.sha256)]
        )
        return await super().launch(spec, image, key)

    def of(self, n: int) -> list[RunningEnclave]:  # type: ignore[override]
        return list(super().of(job_id(n)))


def image_transport(fail_first: int = 0, serve_wrong: bool = False) -> httpx.MockTransport:
    failures = {"left": fail_first}

    def handler(request: httpx.Request) -> httpx.Response:
        if failures["left"]:
            failures["left"] -= 1
            return httpx.Response(503)
        sha = request.url.path.rsplit("/", 1)[-1]
        for name, digest in SHA.items():
            if digest == sha:
                return httpx.Response(200, content=IMAGES["two" if serve_wrong else name])
        return httpx.Response(404)

    return httpx.MockTransport(handler)


@dataclass
class World:
    feed: Feed
    runner: Runner
    clock: ManualWallClock
    tmp: Path
    transport: httpx.MockTransport
    image_policy: ImagePolicy = field(default_factory=ImagePolicy)
    margin: int = 300

    def control_plane(self) -> ControlPlane:
        fetcher = ImageFetcher(
            ImageStore(self.tmp / "cache"), self.image_policy, transport=self.transport
        )
        return ControlPlane(
            policy=JobPolicy(RateCard.dev(), provider=PROVIDER, safety_margin_s=self.margin),
            feed=self.feed,
            runner=self.runner,
            fetcher=fetcher,
            clock=self.clock,
            retry_delay=0.01,
            heartbeat_interval=3600,
        )

    async def started(self) -> ControlPlane:
        """A control plane that has replayed the feed and carried out what it decided."""
        cp = self.control_plane()
        await cp.start()
        await settle(cp)
        return cp


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(
        Feed(tmp_path / "db.sqlite"), Runner(), ManualWallClock(1000.0), tmp_path, image_transport()
    )


async def settle(cp: ControlPlane, *, steps: int = 1) -> None:
    for _ in range(steps):
        await cp.step()
        async with asyncio.timeout(10):
            await cp.idle()


# -- launching --------------------------------------------------------------------------------


async def test_a_paying_job_gets_exactly_one_enclave(world: World) -> None:
    world.feed.open(1)
    cp = world.control_plane()
    await cp.start()
    await settle(cp, steps=3)
    assert [(e.job_id, e.state) for e in world.runner.enclaves.values()] == [(job_id(1), "running")]
    assert world.runner.launches == [(job_id(1), SHA["one"])]


async def test_unacceptable_jobs_get_no_enclave_and_say_why(world: World) -> None:
    world.feed.open(1, rate=MIN_RATE - 1)
    world.feed.open(2, instance="c5.metal")
    cp = await world.started()
    assert world.runner.enclaves == {}
    assert "below this provider's minimum" in cp.job_status(job_id(1))["reason"]  # type: ignore[index]
    assert "not offered" in cp.job_status(job_id(2))["reason"]  # type: ignore[index]


async def test_metadata_update_with_a_new_image_replaces_the_enclave(world: World) -> None:
    world.feed.open(1)
    cp = await world.started()
    (first,) = world.runner.of(1)
    world.feed.add("MetadataUpdated", 1, new_metadata=metadata("two"))
    await settle(cp)
    (second,) = world.runner.of(1)
    assert second.enclave_id != first.enclave_id
    assert world.runner.launches[-1] == (job_id(1), SHA["two"])


async def test_a_rate_increase_keeps_the_enclave(world: World) -> None:
    world.feed.open(1, balance=10**12)
    cp = await world.started()
    world.feed.add("ReviseRateInitiated", 1, new_rate=hex(MIN_RATE * 2))
    await settle(cp)
    assert len(world.runner.launches) == 1
    assert len(world.runner.of(1)) == 1


async def test_a_rate_revision_below_the_minimum_stops_it(world: World) -> None:
    world.feed.open(1)
    cp = await world.started()
    world.feed.add("ReviseRateInitiated", 1, new_rate="0x0")
    await settle(cp)
    assert world.runner.of(1) == []
    assert "revised to 0" in cp.job_status(job_id(1))["reason"]  # type: ignore[index]


async def test_close_stops_it(world: World) -> None:
    world.feed.open(1)
    cp = await world.started()
    world.feed.add("Closed", 1)
    await settle(cp)
    assert world.runner.enclaves == {}


async def test_insolvency_stops_the_enclave_before_the_money_runs_out(world: World) -> None:
    world.margin = 60
    # 100 base units per second; 1000 s of money from t=1000
    world.feed.open(1, balance=100 * 1000, at=1000)
    cp = await world.started()
    world.clock.now = 1000 + 1000 - 60 - 1
    await settle(cp)
    assert len(world.runner.of(1)) == 1
    world.clock.now = 1000 + 1000 - 60
    await settle(cp)
    assert world.runner.of(1) == []
    status = cp.job_status(job_id(1))
    assert status is not None
    assert "would run out" in status["reason"]
    # Told to the job's owner in rUSD and as a date (it said "balance 30400 ... at 1796650346").
    assert "rUSD would run out at 1970-01-01 00:33:20 UTC" in status["reason"]


async def test_a_chain_clock_ahead_of_the_wall_clock_counts(world: World) -> None:
    world.margin = 60
    world.feed.open(1, balance=100 * 1000, at=1000)
    cp = await world.started()
    world.clock.now = 1500  # the wall clock says there is time left ...
    world.feed.chain_clock = 1000 + 1000 - 60  # ... but blocks are already stamped later
    await settle(cp)
    assert world.runner.of(1) == []


async def test_the_run_loop_wakes_for_the_insolvency_deadline(world: World) -> None:
    world.margin = 0
    clock = world.clock
    world.feed.open(1, balance=100 * 2, at=int(clock.now))
    cp = world.control_plane()
    cp.poll_interval = 3600  # only the deadline can wake it in time
    task = asyncio.create_task(cp.run())
    try:
        async with asyncio.timeout(10):
            while not world.runner.of(1):  # noqa: ASYNC110 - polling a fake's state
                await asyncio.sleep(0.01)
            clock.now += 2
            while world.runner.of(1):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_failing_round_does_not_stop_the_run_loop(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    cp = world.control_plane()
    cp.poll_interval = 0.01
    await cp.start()
    world.feed.explode = 3
    task = asyncio.create_task(cp.run())
    try:
        async with asyncio.timeout(10):
            while world.feed.explode:  # noqa: ASYNC110 - waiting for the fake to be drained
                await asyncio.sleep(0.01)
            world.feed.open(1)
            while not world.runner.of(1):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    failures = [r for r in caplog.records if r.message == "control plane round failed"]
    assert len(failures) == 3


# -- images -------------------------------------------------------------------------------------


async def test_a_denied_image_ends_the_job(world: World) -> None:
    world.image_policy = ImagePolicy(deny=frozenset({SHA["bad"]}))
    world.feed.open(1, image="bad")
    cp = world.control_plane()
    await cp.start()
    await settle(cp, steps=2)
    assert world.runner.enclaves == {}
    status = cp.job_status(job_id(1))
    assert status is not None
    assert status["phase"] == "done"
    assert "deny list" in status["reason"]


async def test_an_image_outside_the_allow_list_ends_the_job(world: World) -> None:
    world.image_policy = ImagePolicy(allow=frozenset({SHA["two"]}))
    world.feed.open(1, image="one")
    world.feed.open(2, image="two")
    cp = world.control_plane()
    await cp.start()
    await settle(cp, steps=2)
    assert [e.job_id for e in world.runner.enclaves.values()] == [job_id(2)]
    assert "allow list" in cp.job_status(job_id(1))["reason"]  # type: ignore[index]


async def test_bytes_that_do_not_match_the_url_hash_are_refused(world: World) -> None:
    world.transport = image_transport(serve_wrong=True)
    world.feed.open(1, image="one")
    cp = world.control_plane()
    await cp.start()
    await settle(cp, steps=2)
    assert world.runner.enclaves == {}
    assert "hashes to" in cp.job_status(job_id(1))["reason"]  # type: ignore[index]
    assert not (world.tmp / "cache" / SHA["one"]).exists()


async def test_download_and_launch_failures_are_retried(world: World) -> None:
    world.transport = image_transport(fail_first=2)
    world.runner.fail_launches = 2
    world.feed.open(1)
    await world.started()
    assert len(world.runner.of(1)) == 1


# -- heartbeat and restarts ---------------------------------------------------------------------


async def test_a_crashed_enclave_is_relaunched_by_the_heartbeat(world: World) -> None:
    world.feed.open(1)
    cp = await world.started()
    (enclave,) = world.runner.of(1)
    world.runner.enclaves[enclave.enclave_id] = replace(enclave, state="crashed")
    await cp.reconcile()
    await settle(cp)
    (again,) = world.runner.of(1)
    assert again.state == "running"
    assert again.enclave_id != enclave.enclave_id


async def test_restart_keeps_one_enclave_per_paying_job_and_none_for_others(world: World) -> None:
    world.feed.open(1)
    world.feed.open(2)
    world.feed.open(3)
    cp = await world.started()
    await cp.aclose()
    # While the control plane is down: job 2 closes, and a duplicate for job 1 appears (as a
    # launch interrupted by kill -9 would leave), plus a stale enclave of job 3's old metadata.
    world.feed.add("Closed", 2)
    (one,) = world.runner.of(1)
    world.runner.enclaves["dup"] = replace(one, enclave_id="dup", state="starting")
    (three,) = world.runner.of(3)
    world.runner.enclaves["old"] = replace(three, enclave_id="old", key="stale")
    await world.started()
    assert [e.enclave_id for e in world.runner.of(1)] == [one.enclave_id]
    assert world.runner.of(2) == []
    assert [e.enclave_id for e in world.runner.of(3)] == [three.enclave_id]
    assert len(world.runner.launches) == 3  # nothing was relaunched


async def test_a_job_with_no_enclave_after_a_restart_is_launched(world: World) -> None:
    world.feed.open(1)
    cp = await world.started()
    await cp.aclose()
    world.runner.enclaves.clear()  # e.g. the machine rebooted
    await world.started()
    assert len(world.runner.of(1)) == 1


async def test_terminations_survive_a_restart(world: World) -> None:
    world.margin = 0
    world.feed.open(1, balance=100 * 100, at=1000)  # 100 s of money
    cp = await world.started()
    world.clock.now = 1100
    await settle(cp)
    assert world.runner.of(1) == []
    await cp.aclose()
    # A deposit arrives after the termination: replaying history alone would revive the job.
    world.feed.add("Deposited", 1, amount=hex(10**9))
    restarted = await world.started()
    assert world.runner.of(1) == []
    assert "would run out" in restarted.job_status(job_id(1))["reason"]  # type: ignore[index]


async def test_a_chain_outage_keeps_enclaves_and_reports_the_error(world: World) -> None:
    world.feed.open(1)
    cp = await world.started()
    world.feed.fail = "connection refused"
    await settle(cp)
    assert "connection refused" in cp.last_error
    assert len(world.runner.of(1)) == 1
    world.feed.fail = None
    await settle(cp)
    assert cp.last_error == ""


async def test_jobs_of_other_providers_are_left_alone(world: World) -> None:
    world.feed.add(
        "Opened",
        1,
        owner=OWNER,
        provider="0x" + "99" * 20,
        metadata=metadata(),
        rate=hex(MIN_RATE),
        balance=hex(10**7),
        timestamp=hex(1000),
    )
    cp = await world.started()
    assert world.runner.enclaves == {}
    assert cp.job_status(job_id(1)) is None


async def test_stop_all_leaves_no_enclave(world: World) -> None:
    world.feed.open(1)
    world.feed.open(2)
    cp = await world.started()
    await cp.stop_all()
    assert world.runner.enclaves == {}


# -- HTTP ------------------------------------------------------------------------------------------


async def test_http_api(world: World) -> None:
    world.feed.open(1)
    world.feed.open(2, rate=1)
    cp = await world.started()
    transport = httpx.ASGITransport(app=control_plane_app(cp))
    async with httpx.AsyncClient(transport=transport, base_url="http://cp") as client:
        spec = (await client.get("/spec")).json()
        assert spec["allowed_regions"] == ["local"]
        cards = spec["min_rates"][0]["rate_cards"]
        assert cards[0] == {
            "instance": "dev.small",
            "min_rate": hex(MIN_RATE),
            "cpu": 1,
            "memory": 1024,
            "arch": "amd64",
        }
        assert (await client.get("/bandwidth")).json()["rates"][0]["region_code"] == "local"

        ip = await client.get("/ip", params={"id": job_id(1), "region": "local"})
        assert ip.status_code == 200
        body = ip.json()
        assert body["ip"] == "127.0.0.1"
        assert body["endpoints"]["attestation"].startswith("http://x/")

        refused = await client.get("/ip", params={"id": job_id(2)})
        assert refused.status_code == 400
        assert "below this provider's minimum" in refused.json()["error"]
        assert (await client.get("/ip", params={"id": "0x12"})).status_code == 400
        assert (await client.get("/ip", params={"id": job_id(9)})).status_code == 400
        assert (
            await client.get("/ip", params={"id": job_id(1), "region": "mars"})
        ).status_code == 400

        job = (await client.get("/job", params={"id": job_id(1)})).json()
        assert job["phase"] == "running"
        assert job["enclave"]["state"] == "running"
        assert (await client.get("/job", params={"id": job_id(9)})).status_code == 404
        listed = (await client.get("/jobs")).json()["jobs"]
        assert {j["job_id"] for j in listed} == {job_id(1), job_id(2)}


async def test_job_status_counts_restarts_and_keeps_the_last_error(world: World) -> None:
    # `reef jobs show` prints these: a crash-looping enclave must not look merely "running".
    world.feed.open(1)
    cp = await world.started()
    status = cp.job_status(job_id(1))
    assert status is not None
    assert (status["restarts"], status["last_restart"], status["last_error"]) == (0, "", "")
    (enclave,) = world.runner.of(1)
    world.runner.enclaves[enclave.enclave_id] = replace(enclave, state="crashed")
    world.runner.fail_launches = 1_000  # every relaunch fails from now on
    await cp.reconcile()
    await asyncio.sleep(0.2)  # a few retries
    status = cp.job_status(job_id(1))
    assert status is not None
    assert status["restarts"] == 1
    assert f"enclave {enclave.enclave_id} was crashed" in status["last_restart"]
    assert status["last_error"] == "the enclave failed to start"
    transport = httpx.ASGITransport(app=control_plane_app(cp))
    async with httpx.AsyncClient(transport=transport, base_url="http://cp") as client:
        answer = (await client.get("/job", params={"id": job_id(1)})).json()
    assert (answer["restarts"], answer["last_error"]) == (1, "the enclave failed to start")
    await cp.aclose()


async def test_each_enclave_gets_the_end_of_its_paid_time_as_lease_and_deposits_move_it(
    world: World,
) -> None:
    """The lease lets the backend stop an enclave whose provider is down once its money runs
    out (issue 10); the control plane keeps it at the end of the paid time."""
    world.margin = 60
    world.feed.open(1, balance=100 * 1000, at=1000)  # 100 units/s: paid until t=2000
    cp = await world.started()
    (enclave,) = world.runner.of(1)
    assert world.runner.leases == {enclave.enclave_id: 2000}
    world.feed.add("Deposited", 1, amount=hex(100 * 500))
    await settle(cp)
    assert world.runner.leases == {enclave.enclave_id: 2500}


# -- the same control plane over a real runner and the in-memory backend -------------------------


async def test_over_the_fake_backend_a_job_runs_relaunches_after_a_crash_and_stops(
    tmp_path: Path,
) -> None:
    """The market's runner works over any EnclaveBackend: here reef.testing.FakeBackend, with a
    real image (the fake measures it for real), through launch, crash, relaunch and close."""
    from reef.enclave import build_image
    from reef.market import BackendRunner
    from reef.testing import FakeBackend

    hello = tmp_path / "hello.img"
    build_image(HELLO, hello)
    data = await asyncio.to_thread(hello.read_bytes)
    sha = hashlib.sha256(data).hexdigest()

    def serve(request: httpx.Request) -> httpx.Response:
        found = request.url.path.endswith(sha)
        return httpx.Response(200, content=data) if found else httpx.Response(404)

    clock = ManualWallClock(1000.0)
    backend = FakeBackend(clock_ms=lambda: int(clock.now * 1000))  # leases on the chain's clock
    feed = Feed(tmp_path / "db.sqlite")
    feed.add(
        "Opened", 1, owner=OWNER, provider=PROVIDER, rate=hex(MIN_RATE), balance=hex(10**7),
        timestamp=hex(1000), metadata=metadata(debug=True).replace(url("one"), STORE + sha),
    )  # fmt: skip
    cp = ControlPlane(
        policy=JobPolicy(RateCard.dev(), provider=PROVIDER, safety_margin_s=300),
        feed=feed,
        runner=BackendRunner(backend, tmp_path / "launch", provider=PROVIDER),
        fetcher=ImageFetcher(
            ImageStore(tmp_path / "cache"), ImagePolicy(), transport=httpx.MockTransport(serve)
        ),
        clock=clock,
        retry_delay=0.01,
        heartbeat_interval=0,
    )
    await cp.start()
    await settle(cp)
    running = [i for i in await backend.list() if i.state == "running"]
    assert len(running) == 1, json.dumps(cp.job_status(job_id(1)), default=str)
    (first,) = running
    assert first.labels["reef.launch-key"]
    assert first.labels["reef.job"] == job_id(1)
    backend.write_console(first.id, "boom: missing config")
    backend.crash(first.id, exit_code=3)
    await settle(cp, steps=2)
    (second,) = [i for i in await backend.list() if i.state == "running"]
    assert second.id != first.id
    # The owner learns how the first one ended, and (debug) what it printed last.
    status = cp.job_status(job_id(1))
    assert status is not None
    assert status["restarts"] == 1
    assert status["last_exit"] == {
        "state": "crashed",
        "exit_code": 3,
        "reason": "the app exited with code 3",
        "console": ["boom: missing config"],
    }
    # Nobody renews a lease past the paid time: with the provider gone, it still ends.
    await cp.aclose()
    clock.now = 10**7 / 100 + 1000 + 1
    assert [i.state for i in await backend.list() if i.id == second.id] == ["stopped"]


# -- a burst of jobs of one image ---------------------------------------------------------------


def counting(transport: httpx.MockTransport, seen: list[str]) -> httpx.MockTransport:
    """``transport``, counting its requests, and slow enough that other jobs ask meanwhile."""

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        await asyncio.sleep(0.05)
        return transport.handle_request(request)

    return httpx.MockTransport(handler)


async def test_jobs_of_one_image_share_its_download(world: World) -> None:
    seen: list[str] = []
    world.transport = counting(image_transport(), seen)
    for n in range(1, 9):
        world.feed.open(n)
    await world.started()
    assert all(len(world.runner.of(n)) == 1 for n in range(1, 9))
    assert len(seen) == 1


async def test_a_failed_shared_download_is_retried_for_every_job(world: World) -> None:
    seen: list[str] = []
    world.transport = counting(image_transport(fail_first=1), seen)
    for n in range(1, 5):
        world.feed.open(n)
    await world.started()
    assert all(len(world.runner.of(n)) == 1 for n in range(1, 5))
    assert 2 <= len(seen) < 1 + 4  # the one failure was shared, not met by each job apart


async def test_a_job_that_stops_waiting_leaves_the_download_to_the_others(world: World) -> None:
    cp = world.control_plane()
    gate = asyncio.Event()
    fetch = cp.fetcher.fetch

    async def slow(image_url: str) -> FetchedImage:
        await gate.wait()
        return await fetch(image_url)

    cp.fetcher.fetch = slow  # type: ignore[method-assign]
    image = url("one")
    first = asyncio.create_task(cp._fetch(image))
    second = asyncio.create_task(cp._fetch(image))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert (await second).url == image
    with pytest.raises(asyncio.CancelledError):
        await first
    assert cp._fetches == {}
