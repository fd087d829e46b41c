"""The KMS root against strangers that ask without end: what one client address can make the
root spend (attestations verified, keys derived and signed, identities attested, chain calls),
and that other clients are served while it does.

The budgets' core (:class:`reef.kms.PeerBudget`) is tested on an injected clock. Every attack is
replayed against a real :class:`reef.kms.RootServer` on loopback: Scallop clients attested by the
dev TEE, HTTP clients, and the devnet, each client on an address of its own in 127.0.0.0/8.
The budgets are set so small that nothing refills during a test: every count is exact.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Literal

import httpx
import pytest
from eth_account import Account

from kms.kms_support import dev_root_store
from reef._peers import peer_group
from reef.attestation import DevAuthority, image_id
from reef.chain import Devnet, KmsRegistryClient, serve_devnet
from reef.crypto import generate_x25519
from reef.errors import ChannelError, KMSBusyError, MisuseError
from reef.home import ReefHome
from reef.kms import (
    ATTESTATION_RATE,
    CHAIN_RATE,
    INFO_COST,
    OTHER_VERSIONS_RATE,
    PUBLIC_RATE,
    SIGNATURE_HEADER,
    DeriveServer,
    EnclaveSeeds,
    KmsRoot,
    PeerBudget,
    PeerRate,
    RootServer,
    RpcApproval,
    derive_key,
    fetch_enclave_seed,
    verify_response,
)
from reef.kms._scallop import _read_answer
from reef.scallop import ScallopStream, handshake_client
from reef.testing import wall_ms

pytestmark = pytest.mark.timeout(90)

ROOT_PCRS = {0: b"\xe0" * 48, 1: b"\xe1" * 48, 2: b"\xe2" * 48}
APP_PCRS = {0: b"\x30" * 48, 1: b"\x31" * 48, 2: b"\x32" * 48}
OTHER_PCRS = {0: b"\x40" * 48, 1: b"\x41" * 48, 2: b"\x42" * 48}
NEVER = 1e-6
"""A refill rate (units a second) under which nothing refills during a test."""


# ---- the budget's core, on an injected clock ----


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_budget_refuses_past_its_burst_until_it_refills_and_refusals_cost_nothing() -> None:
    clock = Clock()
    budget = PeerBudget(PeerRate(per_second=2, burst=3), clock=clock)
    assert [budget.take("10.0.0.1") for _ in range(3)] == [0.0, 0.0, 0.0]
    # The fourth waits half a second (2 a second), and asking again does not push it back.
    assert budget.take("10.0.0.1") == pytest.approx(0.5)
    assert budget.take("10.0.0.1") == pytest.approx(0.5)
    assert budget.refused == 2
    # Another client is not affected.
    assert budget.take("10.0.0.2") == 0.0
    clock.now += 0.5
    assert budget.take("10.0.0.1") == 0.0
    assert budget.wait_s("10.0.0.1") == pytest.approx(0.5)
    # Refills stop at the burst; a clock that goes back refills nothing.
    clock.now += 3600
    assert budget.wait_s("10.0.0.1", 3) == 0.0
    clock.now -= 7200
    assert [budget.take("10.0.0.1") for _ in range(4)][-1] == pytest.approx(0.5)


def test_a_budget_remembers_a_bounded_number_of_clients() -> None:
    """Each new address would otherwise cost the root a row for ever."""
    budget = PeerBudget(PeerRate(per_second=1, burst=1), clock=Clock(), max_peers=100)
    for n in range(1000):
        assert budget.take(f"10.0.{n // 256}.{n % 256}") == 0.0
    assert len(budget) == 100
    # The most recent are the ones kept.
    assert budget.take("10.0.3.231") > 0


def test_a_cost_the_burst_can_never_pay_is_a_misuse() -> None:
    budget = PeerBudget(PeerRate(per_second=1, burst=2))
    with pytest.raises(MisuseError, match="never be paid"):
        budget.take("10.0.0.1", 3)
    with pytest.raises(Exception, match="positive"):
        PeerRate(per_second=0, burst=1)


@pytest.mark.parametrize(
    ("host", "group"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("fe80::1%eth0", "fe80::/64"),
    ],
)
def test_clients_are_counted_by_address_and_ipv6_clients_by_their_64(host: str, group: str) -> None:
    """A host usually gets a whole IPv6 /64: counted per address, it would have 2**64 budgets."""
    assert peer_group(host) == group


# ---- real roots and clients ----


@pytest.fixture
def authority(tmp_path: Path) -> DevAuthority:
    return DevAuthority.load_or_create(ReefHome(tmp_path / "dev-home"))


def _root(tmp_path: Path, authority: DevAuthority, **options: object) -> KmsRoot:
    store = dev_root_store(ReefHome(tmp_path / "root-home"), authority, ROOT_PCRS)
    return KmsRoot.open(store, **options)  # type: ignore[arg-type]


def _server(
    root: KmsRoot,
    authority: DevAuthority,
    *,
    attestation_rate: PeerRate = ATTESTATION_RATE,
    chain_rate: PeerRate = CHAIN_RATE,
    public_rate: PeerRate = PUBLIC_RATE,
) -> RootServer:
    return RootServer(
        root,
        peer_roots=[authority.root],
        scallop_port=0,
        public_port=0,
        attestation_rate=attestation_rate,
        chain_rate=chain_rate,
        public_rate=public_rate,
    )


async def _channel_from(
    address: str, server: RootServer, static_key: bytes, auther: Callable[[], Awaitable[bytes]]
) -> ScallopStream:
    """A Scallop channel to the root from ``address`` (any of 127.0.0.0/8 on Linux)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((address, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.scallop_port))
    reader, writer = await asyncio.open_connection(sock=sock)
    return await handshake_client(
        reader, writer, static_key=static_key, auther=auther, handshake_timeout=10
    )


async def _ask(stream: ScallopStream, target: str = "/derive") -> tuple[int, dict[str, str], bytes]:
    await stream.send(f"GET {target} HTTP/1.1\r\nhost: kms\r\n\r\n".encode())
    async with asyncio.timeout(10):
        return await _read_answer(stream)


Outcome = Literal["refused", "seed", "429"]


# ---- a stranger presenting a new attestation in every handshake ----


@pytest.mark.parametrize("kind", ["copied", "minted"])
async def test_a_stranger_presenting_new_attestations_gets_a_budget_of_verifications(
    tmp_path: Path, authority: DevAuthority, kind: str
) -> None:
    """Every attestation a client presents is verified in full (a P-384 COSE signature and the
    leaf, about 2 ms on the root's event loop, for every listener and client alike); only a
    replay of a refused (document, key) pair was spared. A stranger presenting someone else's
    document (``copied``, a fresh Noise key each time: each pair is new) or fresh documents of
    its own enclave (``minted``) had one verified per handshake, as fast as it could
    handshake. Past its address's budget it is now answered 429 with a Retry-After, its
    attestations unverified, while an enclave on another address gets its seed."""
    root = _root(tmp_path, authority)
    burst, tries = 4, 24
    async with _server(
        root, authority, attestation_rate=PeerRate(per_second=NEVER, burst=burst)
    ) as server:
        someone_else = generate_x25519()[1]
        copied = authority.mint(APP_PCRS, timestamp_ms=wall_ms(), public_key=someone_else)
        answers: list[tuple[int, dict[str, str], bytes]] = []

        turns = asyncio.Semaphore(8)  # within the listener's 16 handshakes per address

        async def stranger() -> Outcome:
            async with turns:
                return await handshake_and_ask()

        async def handshake_and_ask() -> Outcome:
            secret, public = generate_x25519()

            async def auther() -> bytes:
                if kind == "copied":
                    return copied
                return authority.mint(APP_PCRS, timestamp_ms=wall_ms(), public_key=public)

            try:
                stream = await _channel_from("127.0.0.2", server, secret, auther)
                try:
                    status, headers, body = await _ask(stream)
                finally:
                    stream.abort()
            except ChannelError:
                return "refused"  # verified, and refused: the key binding fails
            answers.append((status, headers, body))
            return "seed" if status == 200 else "429"

        flood = [asyncio.ensure_future(stranger()) for _ in range(tries)]
        honest = generate_x25519()

        async def honest_auther() -> bytes:
            return authority.mint(OTHER_PCRS, timestamp_ms=wall_ms(), public_key=honest[1])

        seed, _ = await fetch_enclave_seed(
            server.wiring(), static_key=honest[0], auther=honest_auther, deadline_s=20
        )
        outcomes = await asyncio.gather(*flood)
    assert seed == root.keyring.enclave_seed(image_id(OTHER_PCRS))
    verified: Outcome = "refused" if kind == "copied" else "seed"
    assert outcomes.count(verified) == burst, outcomes
    assert outcomes.count("429") == tries - burst, outcomes
    busy = [answer for answer in answers if answer[0] == 429]
    _, headers, body = busy[0]
    assert int(headers["retry-after"]) >= 1
    text = body.decode()
    assert "127.0.0.2 presented more attestations" in text
    assert "retry after" in text
    assert "gets no seed" in text


async def test_enclaves_fetching_their_seeds_never_meet_the_attestation_budget(
    tmp_path: Path, authority: DevAuthority
) -> None:
    """Honest enclaves present one valid document per channel; a provider host booting a
    dozen, each fetching its seed and a second version's, stays inside the default budget."""
    root = _root(tmp_path, authority)
    async with _server(root, authority) as server:
        await root.rotate()

        async def boot() -> list[bytes]:
            secret, public = generate_x25519()

            async def auther() -> bytes:
                return authority.mint(APP_PCRS, timestamp_ms=wall_ms(), public_key=public)

            seeds = []
            for version in (None, 0):
                seed, _ = await fetch_enclave_seed(
                    server.wiring(), static_key=secret, auther=auther, version=version
                )
                seeds.append(seed)
            return seeds

        booted = await asyncio.gather(*(boot() for _ in range(12)))
    expected = [root.keyring.enclave_seed(image_id(APP_PCRS), v) for v in (1, 0)]
    assert booted == [expected] * 12


# ---- a stranger asking the public listener without end ----


def _client_from(address: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(transport=transport, timeout=30)


@pytest.mark.parametrize(("route", "tries", "answered"), [("derive", 40, 10), ("info", 4, 2)])
async def test_a_stranger_asking_the_public_listener_without_end_is_told_to_wait(
    tmp_path: Path, authority: DevAuthority, route: str, tries: int, answered: int
) -> None:
    """Each public key costs the root a derivation, a public key and a signature; each
    ``/info`` an attestation and a signature. One address could ask for as many as it could
    send (one identity at a time, but one after the other without end). Past its budget it
    is answered 429 with a Retry-After; a client on another address is answered meanwhile."""
    root = _root(tmp_path, authority, attester=authority.attester(ROOT_PCRS, clock_ms=wall_ms))
    assert INFO_COST == 5  # the parametrisation counts on it: two identities in a burst of 10
    async with _server(root, authority, public_rate=PeerRate(per_second=NEVER, burst=10)) as server:

        def target(n: int) -> str:
            if route == "info":
                return f"{server.public_url}/info?nonce={n:02x}"
            return f"{server.public_url}/derive/secp256k1/public?image_id={'ab' * 32}&path=k{n}"

        async with _client_from("127.0.0.2") as stranger, _client_from("127.0.0.3") as honest:
            turns = asyncio.Semaphore(8)

            async def ask(n: int) -> httpx.Response:
                async with turns:
                    return await stranger.get(target(n))

            flood = [asyncio.ensure_future(ask(n)) for n in range(tries)]
            mine = await honest.get(
                f"{server.public_url}/derive/secp256k1/public?image_id={'cd' * 32}&path=mine"
            )
            answers = await asyncio.gather(*flood)
    assert mine.status_code == 200, mine.text
    key = derive_key(root.keyring.enclave_seed(bytes.fromhex("cd" * 32)), "mine", "secp256k1")
    assert mine.content == key.public_key
    # Signed by the root, over the URI as sent (raises if not).
    verify_response(
        mine.request.url.raw_path,
        mine.content,
        mine.headers[SIGNATURE_HEADER],
        root.keyring.identity().signing_key,
    )
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(200) == answered, statuses
    assert statuses.count(429) == tries - answered, statuses
    busy = next(answer for answer in answers if answer.status_code == 429)
    assert int(busy.headers["retry-after"]) >= 1
    assert "127.0.0.2 asked this KMS root for more" in busy.text
    assert SIGNATURE_HEADER not in busy.headers


# ---- an enclave asking about contracts on one channel without end ----


class CountingApproval:
    """The root's real approval over the devnet, counting the calls it makes."""

    def __init__(self, inner: RpcApproval) -> None:
        self.inner = inner
        self.chain_id = inner.chain_id
        self.calls = 0

    async def __call__(self, address: str, image_id: bytes) -> bool:
        self.calls += 1
        return await self.inner(address, image_id)


@pytest.fixture
async def devnet() -> AsyncIterator[tuple[Devnet, str]]:
    chain = Devnet()
    rpc = await serve_devnet(chain, port=0)
    try:
        yield chain, rpc.url
    finally:
        await rpc.aclose()
        chain.close()


async def test_an_enclave_asking_about_contracts_without_end_is_told_to_wait(
    tmp_path: Path, authority: DevAuthority, devnet: tuple[Devnet, str]
) -> None:
    """A contract seed costs the chain node an ``eth_call`` (up to the root's gas budget),
    one image at a time, but one after the other without end: an attested enclave kept the
    node (the devnet every service of ``reef up`` shares) calling for as long as it asked,
    on one channel, with one attestation verified. Past its budget (its address's, for its
    image) it is answered 429 with a Retry-After, and the chain is not asked; a neighbour
    on the same provider host (the same address, another image) gets its contract seed."""
    chain, url = devnet
    w3 = chain.web3()
    owner = Account.from_key(chain.accounts[0].private_key)
    registry = await asyncio.to_thread(
        KmsRegistryClient.deploy, w3, owner, [image_id(APP_PCRS), image_id(OTHER_PCRS)]
    )
    approval = CountingApproval(RpcApproval(url, w3.eth.chain_id))
    root = _root(tmp_path, authority, approval=approval)
    burst, tries = 5, 20
    async with _server(
        root, authority, chain_rate=PeerRate(per_second=NEVER, burst=burst)
    ) as server:
        secret, public = generate_x25519()

        async def auther() -> bytes:
            return authority.mint(APP_PCRS, timestamp_ms=wall_ms(), public_key=public)

        stream = await _channel_from("127.0.0.2", server, secret, auther)
        try:
            answers = [
                await _ask(stream, f"/derive?address={registry.address}") for _ in range(tries)
            ]
        finally:
            stream.abort()
        honest = generate_x25519()

        async def honest_auther() -> bytes:
            return authority.mint(OTHER_PCRS, timestamp_ms=wall_ms(), public_key=honest[1])

        neighbour = await _channel_from("127.0.0.2", server, honest[0], honest_auther)
        try:
            status, _, seed = await _ask(neighbour, f"/derive?address={registry.address}")
        finally:
            neighbour.abort()
    assert status == 200
    assert seed == root.keyring.contract_seed(w3.eth.chain_id, registry.address)
    statuses = [status for status, _, _ in answers]
    assert statuses.count(200) == burst, statuses
    assert statuses.count(429) == tries - burst, statuses
    assert approval.calls == burst + 1  # the stranger's budget, and the neighbour's ask
    _, headers, body = next(answer for answer in answers if answer[0] == 429)
    assert int(headers["retry-after"]) >= 1
    assert b"a contract seed is the same every time" in body


# ---- an enclave booting on an address that is over its budget ----


async def test_a_derive_server_booting_past_its_addresss_budget_waits_it_out(
    tmp_path: Path, authority: DevAuthority
) -> None:
    """A provider host booting more enclaves at once than the root verifies for one address
    (or sharing its address with one that floods) gets 429 for the ones past the budget: the
    derive server gave up on the first 429 and its enclave never came up. It now waits as the
    root's Retry-After says, within its startup window, and starts."""
    root = _root(tmp_path, authority)
    rate = PeerRate(per_second=0.5, burst=1)
    async with _server(root, authority, attestation_rate=rate) as server:
        first, second = Enclave(authority, APP_PCRS), Enclave(authority, APP_PCRS)
        # The address's attestation of these two seconds: spent by another enclave's seed.
        await fetch_enclave_seed(server.wiring(), static_key=first.secret, auther=first.auther)
        with pytest.raises(KMSBusyError) as refused:
            await fetch_enclave_seed(
                server.wiring(), static_key=second.secret, auther=second.auther
            )
        booting = Enclave(authority, OTHER_PCRS)
        async with DeriveServer.for_enclave(
            server.wiring(), static_key=booting.secret, auther=booting.auther, port=0
        ) as derive:
            key = await derive.key("app", "secp256k1")
    assert key == derive_key(root.keyring.enclave_seed(image_id(OTHER_PCRS)), "app", "secp256k1")
    assert refused.value.retry_after_s >= 1
    assert "presented more attestations" in refused.value.message
    assert "retry after" in refused.value.message


class Enclave:
    """One enclave boot of ``pcrs``: a fresh Noise key that the dev TEE attests."""

    def __init__(self, authority: DevAuthority, pcrs: dict[int, bytes]) -> None:
        self.authority = authority
        self.pcrs = pcrs
        self.secret, self.public = generate_x25519()

    async def auther(self) -> bytes:
        return self.authority.mint(self.pcrs, timestamp_ms=wall_ms(), public_key=self.public)


# ---- an enclave's app asking its derive server for a version the root does not have ----


async def test_a_version_the_root_does_not_have_is_not_asked_for_without_end(
    tmp_path: Path, authority: DevAuthority
) -> None:
    """The derive server fetches an older (or newer) version's seed from the root on first
    use, and a version the root does not have was asked for anew at every request: a
    handshake with a fresh attestation each, made by the enclave and verified by the root,
    for any app (or any user of an app that passes a version through) asking for
    ``version=5`` in a loop, and counted against the budget the enclave's host address
    shares with its neighbours. The derive server now asks at most 8 times at once, once
    more a second, and answers 429 with a Retry-After past that."""
    root = _root(tmp_path, authority)
    attested = 0
    enclave = Enclave(authority, APP_PCRS)

    async def counting_auther() -> bytes:
        nonlocal attested
        attested += 1
        return await enclave.auther()

    async with _server(root, authority) as server:
        wiring = server.wiring()

        async def fetch(version: int | None) -> tuple[bytes, int]:
            return await fetch_enclave_seed(
                wiring, static_key=enclave.secret, auther=counting_auther, version=version
            )

        # OTHER_VERSIONS_RATE (what from_root uses), without its refill: the count is exact.
        assert OTHER_VERSIONS_RATE.burst == 8
        seeds = EnclaveSeeds(fetch, fetches=PeerBudget(PeerRate(per_second=NEVER, burst=8)))
        async with (
            DeriveServer(seeds, wiring=wiring, port=0) as derive,
            httpx.AsyncClient(base_url=derive.url) as app,
        ):
            answers = [await app.get("/derive/secp256k1?path=k&version=5") for _ in range(20)]
            current = await app.get("/derive/secp256k1?path=k&version=0")
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(503) == 8, statuses  # the root has no version 5
    assert statuses.count(429) == 12, statuses
    assert attested == 1 + 8  # the seed at start, and the 8 asks
    busy = answers[-1]
    assert int(busy.headers["retry-after"]) >= 1
    assert "version 5 is not held here" in busy.text
    assert current.status_code == 200
