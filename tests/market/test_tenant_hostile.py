"""A provider's control plane against its tenants: the image URLs and metadata strangers put on
chain, which the provider reads and acts on.

Each attack is a job opened on a real devnet's market, followed by a real control plane (its
indexer, its image fetcher) with :class:`reef.testing.FakeRunner` enclaves; the hostile hosts
are real HTTP servers on loopback. An "internal" server stands for what answers on the
provider's own host or network (its control plane, the devnet's JSON-RPC, the KMS root, a
cloud's metadata service): it counts every request it gets, so a test sees whether a stranger
reached it through the provider.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from market.provider_support import CARD, TenantProvider, tenant_provider
from reef.market import ImageFetcher, ImagePolicy, ImageStore
from reef.market._fetch import address_kind
from reef.testing import dev_job_metadata

SECRET = b'{"AccessKeyId": "ASIA-the-providers-own", "SecretAccessKey": "never-leaves"}'


# -- pure: which addresses are whose -------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "never"),  # AWS, GCP, Azure: the instance's credentials
        ("fd00:ec2::254", "never"),  # AWS over IPv6 (a unique local address)
        ("100.100.100.200", "never"),  # Alibaba Cloud (shared address space)
        ("fe80::1", "never"),
        ("0.0.0.0", "never"),  # Linux connects it to the host itself
        ("0.1.2.3", "never"),
        ("224.0.0.251", "never"),
        ("255.255.255.255", "never"),
        ("::ffff:169.254.169.254", "never"),  # the same, written as IPv6
        ("64:ff9b::a9fe:a9fe", "never"),  # the same, through NAT64
        ("127.0.0.1", "private"),
        ("127.8.9.10", "private"),
        ("::1", "private"),
        ("::ffff:127.0.0.1", "private"),
        ("2002:7f00:1::", "private"),  # 6to4 of 127.0.0.1
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),  # carrier-grade NAT
        ("fd12:3456::1", "private"),
        ("8.8.8.8", "public"),
        ("2606:4700:4700::1111", "public"),
        ("::ffff:8.8.8.8", "public"),
    ],
)
def test_addresses_are_told_apart_as_a_stranger_would_use_them(address: str, kind: str) -> None:
    found = address_kind(ipaddress.ip_address(address))
    assert ("public" if found is None else "never" if found[1] else "private") == kind


def test_trusted_networks_and_the_private_setting_decide_private_addresses() -> None:
    loopback, metadata = ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("169.254.169.254")
    dev, operator = ImagePolicy(), ImagePolicy.from_files()
    assert dev.address_refusal(loopback, by_hash=False) is None
    assert operator.address_refusal(loopback, by_hash=True) is None
    assert "only by content address" in str(operator.address_refusal(loopback, by_hash=False))
    never = ImagePolicy.from_files(private="never")
    assert "never downloads" in str(never.address_refusal(loopback, by_hash=True))
    trusted = ImagePolicy.from_files(private="never", trusted=["127.0.0.0/8", "169.254.0.0/16"])
    assert trusted.address_refusal(loopback, by_hash=False) is None
    assert trusted.address_refusal(metadata, by_hash=False) is None
    for policy in (dev, operator, never):
        assert "never downloads" in str(policy.address_refusal(metadata, by_hash=True))


def test_an_image_url_longer_than_any_store_writes_is_refused() -> None:
    """The chain stores up to 32 KiB of metadata, and a job's URL is answered in ``/job`` and
    ``/jobs`` and quoted in its errors (after escaping, up to four times as long): 32 KiB of it
    per job made every listing of the provider a stranger's to inflate."""
    from reef.errors import InputError
    from reef.market import JobMetadata

    base = "http://store.example/images/"
    longest = base + "a" * (4096 - len(base))
    assert JobMetadata.parse(dev_job_metadata(longest).to_json()).url == longest
    with pytest.raises(InputError, match="'url' is 30028 characters long, more than the 4096"):
        JobMetadata.parse(dev_job_metadata(base + "a" * 30_000).to_json())


# -- a provider, its tenants and the hosts they name ---------------------------------------------


@dataclass
class Internal:
    """What answers on the provider's side: it records each request's path."""

    url: str
    port: int
    hits: list[str] = field(default_factory=list)


@dataclass
class Provider(TenantProvider):
    internal: Internal = field(default_factory=lambda: Internal("", 0))
    hostile_url: str = ""
    """A tenant's own server (``/to?url=...`` redirects there)."""


def _apps(internal: Internal) -> tuple[Any, Any]:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import RedirectResponse, Response
    from starlette.routing import Route

    async def answer(request: Request) -> Response:
        internal.hits.append(request.url.path)
        if request.url.path.startswith("/missing"):
            return Response(b"no such thing here", status_code=404)
        return Response(SECRET)

    async def redirect(request: Request) -> Response:
        return RedirectResponse(request.query_params["url"], status_code=302)

    return (
        Starlette(routes=[Route("/{path:path}", answer)]),
        Starlette(routes=[Route("/to", redirect)]),
    )


@asynccontextmanager
async def provider(
    tmp_path: Path, policy: ImagePolicy, *, hostile_host: str = "127.0.0.1", head_s: float = 5.0
) -> AsyncIterator[Provider]:
    from reef.node import serve_app

    internal = Internal("", 0)
    internal_app, redirects = _apps(internal)
    served = [
        await serve_app(internal_app, host="127.0.0.1", port=0, what="internal"),
        await serve_app(redirects, host=hostile_host, port=0, what="hostile"),
    ]
    internal.url = served[0].url
    internal.port = int(served[0].url.rsplit(":", 1)[1])
    try:
        async with tenant_provider(tmp_path, policy, head_s=head_s) as base:
            yield Provider(**vars(base), internal=internal, hostile_url=served[1].url)
    finally:
        for server in served:
            await server.aclose()


# -- server-side request forgery through the image URL -------------------------------------------


@pytest.mark.slow
async def test_image_urls_at_the_cloud_metadata_or_this_host_address_are_never_fetched(
    tmp_path: Path,
) -> None:
    """Even for ``reef up`` (which lets jobs download from loopback: its own image store is
    there), no image comes from a link-local address (169.254.169.254 answers a cloud
    instance's credentials to whoever on the host asks) or 0.0.0.0 (which Linux connects to the
    host itself, past a check for 127.0.0.1), named directly, as IPv6, or through a redirect
    from the tenant's own server. Before, the job's image was the answer: the 0.0.0.0 job ran
    an enclave made of the internal service's secret, and the metadata job was retried for
    ever, its owner never told why."""
    async with provider(tmp_path, ImagePolicy()) as p:
        port = p.internal.port
        urls = [
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "http://[::ffff:169.254.169.254]/latest/meta-data/",
            f"http://0.0.0.0:{port}/secret",
            f"{p.hostile_url}/to?url=http://169.254.169.254/latest/meta-data/",
            f"{p.hostile_url}/to?url=http://0.0.0.0:{port}/secret",
        ]
        jobs = [p.open(url) for url in urls]
        await p.until_done(jobs)
        for job in jobs:
            reason = p.status(job)["reason"]
            assert "never downloads from" in reason, reason
            assert "link-local" in reason or "unspecified" in reason
        assert p.internal.hits == []
        assert p.runner.launches == []


@pytest.mark.slow
async def test_the_operators_policy_reaches_private_addresses_only_by_content_address(
    tmp_path: Path,
) -> None:
    """``reef provider run``'s policy (:meth:`ImagePolicy.from_files`). A stranger's URL at the
    provider's loopback (by address, by a name that resolves there, or by a redirect from a
    host the provider may reach, here 127.0.0.2 standing for a public one) is refused before
    any request: before, the internal service's answer became the stranger's enclave image.
    Content-addressed URLs still download from loopback (the image store's, as ``reef up``
    and ``reef deploy`` use them), and when what answered there is not the image, the job's
    status says so without quoting what it was (its hash would let the stranger test guesses
    of a secret offline; its HTTP status, the ports and paths of the provider's services)."""
    policy = ImagePolicy.from_files(trusted=["127.0.0.2/32"])
    async with provider(tmp_path, policy, hostile_host="127.0.0.2") as p:
        port = p.internal.port
        refused = [
            p.open(f"http://127.0.0.1:{port}/secret"),
            p.open(f"http://localhost:{port}/secret"),
            p.open(f"{p.hostile_url}/to?url=http://127.0.0.1:{port}/secret"),
        ]
        guess = hashlib.sha256(b"a guess").hexdigest()
        wrong = p.open(f"http://127.0.0.1:{port}/secret/{guess}")
        missing = p.open(f"http://127.0.0.1:{port}/missing/{guess}")
        image = p.store.put(b"an honest image")
        honest = p.open(f"{p.store_url}/images/{image}")
        await p.until_done([*refused, wrong, missing])
        await p.until("the honest job's enclave", lambda: p.cp.enclave(honest) is not None)
        for job in refused:
            reason = p.status(job)["reason"]
            assert "only by content address" in reason, reason
        assert "not quoted" in p.status(wrong)["reason"]
        assert "private address" in p.status(missing)["reason"]
        for job in (wrong, missing):
            told = f"{p.status(job)['reason']} {p.status(job)['last_error']}"
            assert hashlib.sha256(SECRET).hexdigest() not in told
            assert "404" not in told
            assert "ASIA" not in told
        assert sorted(p.internal.hits) == [f"/missing/{guess}", f"/secret/{guess}"]
        assert p.runner.launches == [(honest, image)]


# -- what a tenant writes reaches the operator's terminal ----------------------------------------


@pytest.mark.slow
async def test_an_image_url_cannot_drive_the_operators_terminal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The provider logs each launch with its image URL, and each failure and termination with
    its reason: a URL carrying escape sequences (clear the screen, retitle the window, hide
    what follows) reached the operator's terminal as it was written on chain."""
    caplog.set_level(logging.INFO, logger="reef")
    escapes = "http://127.0.0.1:9/\x1b[2J\x1b]0;owned\x07\x1b[8m/images/" + "ab" * 32
    # A valid URL (httpx encodes it) whose text, printed, turns what follows around.
    bidi = "http://127.0.0.1:9/\u202egpj.egami/images/" + "cd" * 32
    async with provider(tmp_path, ImagePolicy()) as p:
        invalid, retried = p.open(escapes), p.open(bidi)
        await p.until("a failed download", lambda: bool(p.status(retried).get("last_error")))
        p.tenant.revise_rate_initiate(retried, 0)
        await p.until_done([invalid, retried])
    logged = [record.getMessage() for record in caplog.records]
    assert sum("launch" in line for line in logged) >= 2
    assert sum("terminate" in line for line in logged) >= 2
    assert any("launch failed" in line for line in logged)
    for line in logged:
        assert not {"\x1b", "\x07", "\u202e"} & set(line), repr(line)


# -- strangers naming slow servers -----------------------------------------------------------------


@dataclass
class Held:
    """A tenant's server that holds every request until released, counting them."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    open: int = 0
    most: int = 0
    paths: list[str] = field(default_factory=list)

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        async def hold(request: Request) -> Response:
            self.paths.append(request.url.path)
            self.open += 1
            self.most = max(self.most, self.open)
            try:
                await self.release.wait()
            finally:
                self.open -= 1
            return Response(b"gone", status_code=404)

        return Starlette(routes=[Route("/{path:path}", hold)])


@pytest.mark.slow
async def test_one_stranger_naming_many_slow_servers_holds_few_downloads(tmp_path: Path) -> None:
    """Each download holds a socket and a file for as long as its server makes it last (up to
    an hour and more for a large image): a stranger opening job after job, each naming another
    URL of a server that never answers, held as many as the memory budget let it, and every
    descriptor the provider has with them. One owner's jobs now download at most four images
    at once, the others waiting and saying why; another tenant's job is not held up; and the
    waiting ones get their turn."""
    from reef.node import serve_app

    held = Held()
    server = await serve_app(held.app(), host="127.0.0.1", port=0, what="held")
    try:
        async with provider(tmp_path, ImagePolicy(), head_s=120) as p:
            slow = [p.open(f"{server.url}/image-{n}") for n in range(6)]
            image = p.store.put(b"another tenant's image")
            other = p.market.client(2).open_job(
                dev_job_metadata(f"{p.store_url}/images/{image}").to_json(),
                p.address,
                CARD.min_rate,
                10**7,
            )
            await p.until("the other tenant's enclave", lambda: p.cp.enclave(other) is not None)
            await p.until("four held downloads", lambda: held.open == 4)
            await p.until(
                "the others to say why they wait",
                lambda: (
                    sum("the most one owner" in p.status(j).get("last_error", "") for j in slow)
                    == 2
                ),
            )
            assert held.most == 4
            held.release.set()
            await p.until_done(slow)
            assert held.most == 4
            assert sorted(set(held.paths)) == sorted(f"/image-{n}" for n in range(6))
            for job in slow:
                assert "HTTP 404" in p.status(job)["reason"]
    finally:
        held.release.set()
        await server.aclose()


async def test_image_downloads_run_a_bounded_number_at_once(tmp_path: Path) -> None:
    """Whoever asks (however many owners), at most ``max_downloads`` downloads hold sockets;
    the others wait their turn and then run."""
    from reef.errors import ImageError
    from reef.node import serve_app

    held = Held()
    server = await serve_app(held.app(), host="127.0.0.1", port=0, what="held")
    fetcher = ImageFetcher(ImageStore(tmp_path / "cache"), max_downloads=2, timeout=30)
    fetches = [asyncio.create_task(fetcher.fetch(f"{server.url}/image-{n}")) for n in range(5)]
    try:
        async with asyncio.timeout(30):
            for _ in range(1500):
                if held.open >= 2:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # room for a third to connect, were it let through
            assert held.open == 2
            held.release.set()
            results = await asyncio.gather(*fetches, return_exceptions=True)
    finally:
        held.release.set()
        await server.aclose()
    assert all(isinstance(result, ImageError) for result in results)
    assert held.most == 2
    assert len(held.paths) == 5


# -- metadata that changes at every block ---------------------------------------------------------


@pytest.mark.slow
async def test_metadata_changed_at_every_block_restarts_the_enclave_at_most_every_interval(
    tmp_path: Path,
) -> None:
    """Each metadata update naming another image had the provider download it and restart the
    job's enclave at once: an owner updating at every block (a transaction each) kept the
    provider downloading and booting. A running enclave is now replaced at most once every
    :attr:`ControlPlane.replace_interval` (10 s): the first update at once, those arriving
    within the interval skipped for the latest, which then runs."""
    async with provider(tmp_path, ImagePolicy()) as p:
        images = [p.store.put(f"image {n}".encode()) for n in range(4)]
        urls = [f"{p.store_url}/images/{sha}" for sha in images]
        job = p.open(urls[0])
        await p.until("the first enclave", lambda: p.cp.enclave(job) is not None)
        update = p.tenant.update_metadata
        # Each update lands after the previous one ran, as at every block of a slower chain.
        update(job, dev_job_metadata(urls[1]).to_json())
        await p.until("the first replacement", lambda: len(p.runner.launches) == 2)
        update(job, dev_job_metadata(urls[2]).to_json())
        await p.until(
            "the wait to be said",
            lambda: "replaced less than 10 s ago" in p.status(job).get("last_error", ""),
        )
        update(job, dev_job_metadata(urls[3]).to_json())
        await p.until("the last update to be seen", lambda: p.status(job)["url"] == urls[3])
        await p.until("the last image to run", lambda: len(p.runner.launches) == 3)
        await asyncio.sleep(0.3)
        await p.cp.step()
        assert p.runner.launches == [(job, images[0]), (job, images[1]), (job, images[3])]
        assert p.status(job)["last_error"] == ""


@pytest.mark.slow
async def test_a_job_that_ends_while_its_update_waits_stops_at_once(tmp_path: Path) -> None:
    """The wait for the replacement interval must not keep an enclave past its job's end (a
    stop, or money running out: an owner could otherwise buy an interval of free time by
    updating just before). Here the interval is an hour: the stop still ends it at once."""
    async with provider(tmp_path, ImagePolicy()) as p:
        p.cp.replace_interval = 3600
        images = [p.store.put(f"image {n}".encode()) for n in range(3)]
        urls = [f"{p.store_url}/images/{sha}" for sha in images]
        job = p.open(urls[0])
        await p.until("the first enclave", lambda: p.cp.enclave(job) is not None)
        p.tenant.update_metadata(job, dev_job_metadata(urls[1]).to_json())
        await p.until("the first replacement", lambda: len(p.runner.launches) == 2)
        p.tenant.update_metadata(job, dev_job_metadata(urls[2]).to_json())
        await p.until(
            "the wait", lambda: "replaced less than" in p.status(job).get("last_error", "")
        )
        p.tenant.revise_rate_initiate(job, 0)
        await p.until("the enclave to stop", lambda: p.runner.enclaves == {})
        assert p.status(job)["phase"] == "done"
        assert len(p.runner.launches) == 2


@pytest.mark.slow
async def test_a_job_that_ends_while_its_failed_update_is_retried_stops_at_once(
    tmp_path: Path,
) -> None:
    """An update naming a server that fails leaves the old enclave running while the download
    is retried with a growing delay (up to 30 s): a job that ended meanwhile (stopped, or out
    of money) kept its enclave until the delay was over. Here the first delay is an hour."""
    async with provider(tmp_path, ImagePolicy()) as p:
        p.cp.retry_delay = 3600
        image = p.store.put(b"the running image")
        job = p.open(f"{p.store_url}/images/{image}")
        await p.until("the first enclave", lambda: p.cp.enclave(job) is not None)
        dead = "http://127.0.0.1:9/images/" + "ef" * 32
        p.tenant.update_metadata(job, dev_job_metadata(dead).to_json())
        await p.until("the failed download", lambda: bool(p.status(job).get("last_error")))
        p.tenant.revise_rate_initiate(job, 0)
        await p.until("the enclave to stop", lambda: p.runner.enclaves == {})
        assert p.status(job)["phase"] == "done"


@pytest.mark.slow
async def test_a_job_that_ends_while_its_update_downloads_stops_at_once(tmp_path: Path) -> None:
    """The old enclave runs while the new image downloads, which lasts as long as its server
    makes it (up to the download deadline: an hour and more for a large image): an owner
    naming a server that never finishes just before the money runs out kept the enclave that
    long. The job's end now stops it at once, whatever the download does."""
    from reef.node import serve_app

    held = Held()
    server = await serve_app(held.app(), host="127.0.0.1", port=0, what="held")
    try:
        async with provider(tmp_path, ImagePolicy(), head_s=3600) as p:
            image = p.store.put(b"the running image")
            job = p.open(f"{p.store_url}/images/{image}")
            await p.until("the first enclave", lambda: p.cp.enclave(job) is not None)
            p.tenant.update_metadata(job, dev_job_metadata(f"{server.url}/never").to_json())
            await p.until("the held download", lambda: held.open == 1)
            p.tenant.revise_rate_initiate(job, 0)
            await p.until("the enclave to stop", lambda: p.runner.enclaves == {})
            assert p.status(job)["phase"] == "done"
            assert len(p.runner.launches) == 1
    finally:
        held.release.set()
        await server.aclose()


# -- the real provider process -------------------------------------------------------------------


async def _reason(process: asyncio.subprocess.Process, home: Path, port: int, job: str) -> str:
    """The reason ``reef provider run`` (on ``port``) ended ``job``; fails with its log if the
    process dies or never decides."""
    import httpx

    async with httpx.AsyncClient(timeout=5) as http:
        try:
            async with asyncio.timeout(60):
                while process.returncode is None:
                    try:
                        answer = await http.get(f"http://127.0.0.1:{port}/job", params={"id": job})
                    except httpx.TransportError:
                        answer = None
                    if answer is not None and answer.status_code == 200:
                        body = answer.json()
                        if body["phase"] == "done":
                            return str(body["reason"])
                    await asyncio.sleep(0.2)
        except TimeoutError:
            pass
    log = (home / "provider.log").read_text(errors="replace")[-3000:]
    raise AssertionError(f"the provider never ended {job} (exit {process.returncode}):\n{log}")


@pytest.mark.slow
async def _provider_run_reasons(
    home: Path, urls: list[str], *flags: str
) -> tuple[list[str], list[str]]:
    """``reef provider run`` (with ``flags``) on a devnet market where a tenant opened one job
    per URL in ``urls`` (``{internal}`` there is a service on the provider's loopback): why it
    ended each job, and the paths the internal service was asked for."""
    from market.provider_support import provider_chain, start_provider
    from net_support import free_port
    from proc_support import stop_process
    from reef.node import serve_app

    internal = Internal("", 0)
    served = await serve_app(_apps(internal)[0], host="127.0.0.1", port=0, what="internal")
    try:
        async with provider_chain() as chain:
            port = free_port()
            chain.register(port)
            jobs = [
                chain.owner.open_job(
                    dev_job_metadata(url.format(internal=served.url)).to_json(),
                    chain.provider,
                    CARD.min_rate,
                    10**6,
                )
                for url in urls
            ]
            process = await start_provider(home, chain, port, "--insecure", *flags)
            try:
                reasons = [await _reason(process, home, port, job) for job in jobs]
            finally:
                await stop_process(process)
    finally:
        await served.aclose()
    return reasons, internal.hits


async def test_reef_provider_run_keeps_strangers_off_its_own_host(reef_home: Path) -> None:
    """The operator's command uses the operator's policy: a job naming a service on the
    provider's loopback (not by content address) or the cloud metadata address is refused
    with the reason, and the service never hears of it."""
    urls = ["{internal}/secret", "http://169.254.169.254/latest/user-data"]
    reasons, hits = await _provider_run_reasons(reef_home, urls)
    assert "only by content address" in reasons[0]
    assert "never downloads from" in reasons[1]
    assert hits == []


async def test_reef_provider_run_takes_the_operators_private_image_flags(reef_home: Path) -> None:
    """An operator whose own image store sits on a private network names it with
    ``--trusted-network``: a URL there is then fetched like a public one (here loopback stands
    for it, so the internal service does hear of the job), where the default refused it."""
    flags = ("--trusted-network", "127.0.0.0/8")
    reasons, hits = await _provider_run_reasons(reef_home, ["{internal}/store/image"], *flags)
    assert "only by content address" not in reasons[0]
    assert hits == ["/store/image"]  # fetched: it is no image, so the job ended


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--private-images", "maybe"], "--private-images is by-hash, never or allow"),
        (["--trusted-network", "intranet"], "'intranet' is not a network"),
    ],
)
def test_reef_provider_run_refuses_a_private_image_flag_it_cannot_read(
    reef_home: Path, flags: list[str], message: str
) -> None:
    from typer.testing import CliRunner

    from reef.cli import app

    where = ["--rpc", "http://127.0.0.1:9", "--market", "0x" + "11" * 20]
    result = CliRunner().invoke(
        app, ["provider", "run", *where, "--provider", "0x" + "22" * 20, *flags]
    )
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


# -- images that would fill the provider's disk --------------------------------------------------


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
async def test_a_download_stops_before_the_disk_reserve(tmp_path: Path, declared: bool) -> None:
    """Strangers choose how large and how many images a provider downloads at once (each up to
    4 GiB): the downloads filled the disk that its index database and its enclaves' ``/state``
    live on. A download now stops (to be retried, the job waiting) where it would eat into the
    free space the cache's disk keeps, before its body when its length is declared. Here the
    reserve is the disk's free space less 8 MiB and the image 64 MiB."""
    import shutil

    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from reef.errors import ServiceError
    from reef.node import serve_app

    size = 64 << 20

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size >> 20):
            yield b"\0" * (1 << 20)

    async def image(_request: Any) -> StreamingResponse:
        headers = {"content-length": str(size)} if declared else {}
        return StreamingResponse(body(), headers=headers)

    served = await serve_app(
        Starlette(routes=[Route("/huge.img", image)]), host="127.0.0.1", port=0, what="huge"
    )
    cache = tmp_path / "cache"
    reserve = shutil.disk_usage(tmp_path).free - (8 << 20)
    fetcher = ImageFetcher(ImageStore(cache), disk_reserve=reserve)
    try:
        with pytest.raises(ServiceError) as caught:
            await fetcher.fetch(f"{served.url}/huge.img")
    finally:
        await served.aclose()
    assert "bytes free" in caught.value.message
    assert "tried again later" in caught.value.message
    assert (f"of {size} bytes" in caught.value.message) == declared
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".uploaders")] == []
