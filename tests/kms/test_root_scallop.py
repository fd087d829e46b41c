"""The root server over real loopback sockets: enclaves fetch seeds over Scallop with dev-TEE
attestations; restarts, other instances, other images, refusals, contract gating, rotation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from kms.kms_support import dev_root_server, dev_root_store
from reef.attestation import DevAuthority, image_id
from reef.chain import Devnet, KmsRegistryClient, serve_devnet
from reef.crypto import generate_x25519
from reef.errors import InputError, KMSError
from reef.home import ReefHome
from reef.kms import (
    DeriveServer,
    KmsPublicClient,
    KmsRoot,
    KmsWiring,
    RootServer,
    RpcApproval,
    SeedStore,
    derive_key,
    fetch_enclave_seed,
)
from reef.testing import wall_ms

ROOT_PCRS = {0: b"\xa0" * 48, 1: b"\xa1" * 48, 2: b"\xa2" * 48}
APP_PCRS = {0: b"\x10" * 48, 1: b"\x11" * 48, 2: b"\x12" * 48}
OTHER_PCRS = {0: b"\x20" * 48, 1: b"\x21" * 48, 2: b"\x22" * 48}


@dataclass
class Enclave:
    """A stand-in for one enclave boot: a fresh identity key, attested by the dev TEE."""

    authority: DevAuthority
    pcrs: dict[int, bytes]
    age_ms: int = 0
    attest_other_key: bool = False

    def __post_init__(self) -> None:
        self.secret, self.public = generate_x25519()

    @property
    def image_id(self) -> bytes:
        return image_id(self.pcrs)

    async def auther(self) -> bytes:
        key = generate_x25519()[1] if self.attest_other_key else self.public
        return self.authority.mint(self.pcrs, timestamp_ms=wall_ms() - self.age_ms, public_key=key)

    async def fetch(self, wiring: KmsWiring, version: int | None = None) -> tuple[bytes, int]:
        return await fetch_enclave_seed(
            wiring, static_key=self.secret, auther=self.auther, version=version, deadline_s=5
        )


@pytest.fixture
def store(reef_home: Path, authority: DevAuthority) -> SeedStore:
    return dev_root_store(ReefHome(reef_home), authority, ROOT_PCRS)


@pytest.fixture
async def server(store: SeedStore, authority: DevAuthority) -> AsyncIterator[RootServer]:
    root = KmsRoot.open(store, attester=authority.attester(ROOT_PCRS, clock_ms=wall_ms))
    async with dev_root_server(root, authority) as running:
        yield running


async def test_enclave_seed_is_the_image_seed_and_survives_restarts(
    server: RootServer, authority: DevAuthority
) -> None:
    wiring = server.wiring()
    first = Enclave(authority, APP_PCRS)
    seed, version = await first.fetch(wiring)
    assert version == 0
    assert seed == server.root.keyring.enclave_seed(first.image_id)
    # A restarted enclave (new identity key, new attestation) gets the same seed.
    restarted = Enclave(authority, APP_PCRS)
    assert restarted.public != first.public
    assert (await restarted.fetch(wiring))[0] == seed
    # Another image gets another seed.
    other = Enclave(authority, OTHER_PCRS)
    assert (await other.fetch(wiring))[0] != seed


async def test_root_restart_from_the_sealed_seed_gives_the_same_keys(
    store: SeedStore, authority: DevAuthority
) -> None:
    enclave = Enclave(authority, APP_PCRS)
    seeds = []
    for _ in range(2):  # the root enclave restarts: same image, so the seed unseals again
        root = KmsRoot.open(store)
        async with dev_root_server(root, authority) as server:
            seeds.append(await enclave.fetch(server.wiring()))
    assert seeds[0] == seeds[1]


async def test_derive_server_serves_the_app_and_matches_the_public_keys(
    server: RootServer, authority: DevAuthority
) -> None:
    wiring = server.wiring()
    enclave = Enclave(authority, APP_PCRS)
    derive = DeriveServer.for_enclave(
        wiring, static_key=enclave.secret, auther=enclave.auther, port=0
    )
    async with derive, httpx.AsyncClient(base_url=derive.url) as http:
        secp = await http.get("/derive/secp256k1", params={"path": "wallet"})
        x = await http.get("/derive/x25519", params={"path": "oyster.init-params"})
        raw = await http.get("/derive", params={"path": "wallet"})
    assert secp.status_code == x.status_code == raw.status_code == 200
    assert len(raw.content) == 64
    public = KmsPublicClient(server.public_url, signing_key=wiring.signing_keys[0])
    # Anyone can learn the enclave's public keys before it runs; they match its secrets.
    expected_secp = await public.public_key("secp256k1", "wallet", image_id=enclave.image_id)
    assert derive_key(raw.content, "", "secp256k1").public_key != expected_secp
    seed = server.root.keyring.enclave_seed(enclave.image_id)
    assert derive_key(seed, "wallet", "secp256k1").secret == secp.content
    assert derive_key(seed, "wallet", "secp256k1").public_key == expected_secp
    init_key = await public.public_key("x25519", "oyster.init-params", image_id=enclave.image_id)
    assert derive_key(seed, "oyster.init-params", "x25519").public_key == init_key
    assert derive_key(seed, "oyster.init-params", "x25519").secret == x.content
    opened = await derive.key("oyster.init-params", "x25519")
    assert opened.public_key == init_key


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("stale", "stale"),
        ("foreign root", "root"),
        ("key not the Noise key", "public_key"),
    ],
)
async def test_bad_attestations_are_refused_and_the_root_keeps_serving(
    server: RootServer,
    authority: DevAuthority,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    case: str,
    message: str,
) -> None:
    if case == "stale":
        bad = Enclave(authority, APP_PCRS, age_ms=301_000)
    elif case == "foreign root":
        bad = Enclave(DevAuthority.load_or_create(ReefHome(tmp_path / "other")), APP_PCRS)
    else:
        bad = Enclave(authority, APP_PCRS, attest_other_key=True)
    with caplog.at_level(logging.INFO), pytest.raises(KMSError, match="no Scallop channel"):
        await bad.fetch(server.wiring())
    assert any(message in record.getMessage() for record in caplog.records), [
        r.getMessage() for r in caplog.records
    ]
    good = Enclave(authority, APP_PCRS)
    assert (await good.fetch(server.wiring()))[0] == server.root.keyring.enclave_seed(good.image_id)


async def test_enclave_refuses_a_root_with_another_key(
    server: RootServer, authority: DevAuthority
) -> None:
    wiring = server.wiring()
    impostor = KmsWiring(
        scallop_host=wiring.scallop_host,
        scallop_port=wiring.scallop_port,
        scallop_key=generate_x25519()[1],
    )
    with pytest.raises(KMSError, match="no Scallop channel"):
        await Enclave(authority, APP_PCRS).fetch(impostor)


async def test_contract_seed_only_for_approved_images(
    store: SeedStore, authority: DevAuthority
) -> None:
    # C2's devnet (py-evm) behind its real JSON-RPC server on loopback; C1's KMS registry on it.
    devnet = Devnet()
    rpc = await serve_devnet(devnet, port=0)
    try:
        w3 = devnet.web3()
        owner = Account.from_key(devnet.accounts[0].private_key)
        approved, unapproved = Enclave(authority, APP_PCRS), Enclave(authority, OTHER_PCRS)
        registry = await asyncio.to_thread(KmsRegistryClient.deploy, w3, owner, [approved.image_id])
        chain_id = w3.eth.chain_id
        approval = RpcApproval(rpc.url, chain_id)
        await approval.check_chain()
        root = KmsRoot.open(store, approval=approval)
        async with dev_root_server(root, authority) as server:
            wiring = server.wiring(contract_address=registry.address)
            seed, _ = await approved.fetch(wiring)
            assert seed == root.keyring.contract_seed(chain_id, registry.address)
            assert seed != root.keyring.enclave_seed(approved.image_id)
            with pytest.raises(KMSError, match=r"\(401\).*not approved"):
                await unapproved.fetch(wiring)
            # Revoking takes effect at once: the root asks the chain on every request.
            await asyncio.to_thread(registry.revoke_images, [approved.image_id])
            with pytest.raises(KMSError, match="401"):
                await approved.fetch(wiring)
            # An address with no contract approves nothing.
            empty = server.wiring(contract_address="0x" + "de" * 20)
            with pytest.raises(KMSError, match="401"):
                await approved.fetch(empty)
            # The public listener predicts the contract keys.
            public = KmsPublicClient(server.public_url, signing_key=wiring.signing_keys[0])
            key = await public.public_key("secp256k1", "p", address=registry.address)
            assert key == derive_key(seed, "p", "secp256k1").public_key
        with pytest.raises(InputError, match="0x and 40 hex"):
            server.wiring(contract_address="not-an-address")
    finally:
        await rpc.aclose()
        devnet.close()


async def test_contract_seed_when_the_chain_is_down(
    store: SeedStore, authority: DevAuthority
) -> None:
    approval = RpcApproval("http://127.0.0.1:1", 1)
    root = KmsRoot.open(store, approval=approval)
    async with dev_root_server(root, authority) as server:
        wiring = server.wiring(contract_address="0x" + "ab" * 20)
        with pytest.raises(KMSError, match=r"\(500\).*cannot ask the chain"):
            await Enclave(authority, APP_PCRS).fetch(wiring)


async def test_rotation_rekeys_scallop_and_keeps_old_versions(
    server: RootServer, authority: DevAuthority
) -> None:
    enclave = Enclave(authority, APP_PCRS)
    old_wiring = server.wiring()
    seed0, _ = await enclave.fetch(old_wiring)
    await server.root.rotate()
    new_wiring = server.wiring()
    assert new_wiring.scallop_key != old_wiring.scallop_key
    assert new_wiring.scallop_port == old_wiring.scallop_port
    # A derive server pinned to the old key no longer talks to the root.
    with pytest.raises(KMSError, match="no Scallop channel"):
        await enclave.fetch(old_wiring)
    seed1, version = await enclave.fetch(new_wiring)
    assert version == 1
    assert seed1 != seed0
    # Old versions stay available for migration.
    assert await enclave.fetch(new_wiring, version=0) == (seed0, 0)
    derive = DeriveServer.for_enclave(
        new_wiring, static_key=enclave.secret, auther=enclave.auther, port=0
    )
    async with derive, httpx.AsyncClient(base_url=derive.url) as http:
        current = await http.get("/derive/ed25519", params={"path": "k"})
        legacy = await http.get("/derive/ed25519", params={"path": "k", "version": "0"})
        missing = await http.get("/derive/ed25519", params={"path": "k", "version": "9"})
    assert current.headers["x-reef-kms-version"] == "1"
    assert current.content == derive_key(seed1, "k", "ed25519").secret
    assert legacy.content == derive_key(seed0, "k", "ed25519").secret
    assert missing.status_code == 503
    assert "no root seed version 9" in missing.text


async def test_derive_server_waits_for_the_root_then_gives_up(authority: DevAuthority) -> None:
    enclave = Enclave(authority, APP_PCRS)
    wiring = KmsWiring(scallop_host="127.0.0.1", scallop_port=1, scallop_key=b"\x01" * 32)
    derive = DeriveServer.for_enclave(
        wiring, static_key=enclave.secret, auther=enclave.auther, port=0, startup_timeout=0.3
    )
    with pytest.raises(KMSError, match="not reachable"):
        await derive.start()
    with pytest.raises(InputError, match="loopback"):
        DeriveServer.for_enclave(
            wiring, static_key=enclave.secret, auther=enclave.auther, host="0.0.0.0"
        )


async def test_no_seed_in_logs_or_files(
    store: SeedStore,
    authority: DevAuthority,
    reef_home: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    enclave = Enclave(authority, APP_PCRS)
    root = KmsRoot.open(store)
    async with dev_root_server(root, authority, log_level="debug") as server:
        derive = DeriveServer.for_enclave(
            server.wiring(), static_key=enclave.secret, auther=enclave.auther, port=0,
            log_level="debug",
        )  # fmt: skip
        async with derive, httpx.AsyncClient(base_url=derive.url) as http:
            assert (await http.get("/derive", params={"path": "x"})).status_code == 200
        await root.rotate()
        await enclave.fetch(server.wiring())
    secrets = [root.keyring.seed(v).seed for v in root.keyring.versions]
    secrets += [root.keyring.enclave_seed(enclave.image_id, v) for v in root.keyring.versions]
    text = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "enclave seed v1" in text  # the logs are not empty: they name events, not values
    files = [p.read_bytes() for p in reef_home.rglob("*") if p.is_file()]  # noqa: ASYNC240
    for secret in secrets:
        for needle in (secret, secret.hex().encode(), secret[:16]):
            assert needle.decode("latin-1") not in text
            assert not any(needle in data for data in files)


async def test_misbehaving_clients_do_not_stop_the_root(
    server: RootServer, authority: DevAuthority
) -> None:
    import asyncio

    # One client stalls mid-handshake, one sends garbage, one speaks plain HTTP to Scallop.
    _, stalled = await asyncio.open_connection("127.0.0.1", server.scallop_port)
    stalled.write(b"\x00\x00\x00\x40")
    _, garbage = await asyncio.open_connection("127.0.0.1", server.scallop_port)
    garbage.write(b"\xff" * 4096)
    _, http_writer = await asyncio.open_connection("127.0.0.1", server.scallop_port)
    http_writer.write(b"GET /derive HTTP/1.1\r\nHost: x\r\n\r\n")
    # The public listener meanwhile gets a broken request line.
    _, public_garbage = await asyncio.open_connection("127.0.0.1", server.public_port)
    public_garbage.write(b"\x00\x01 nonsense\r\n\r\n")
    good = Enclave(authority, APP_PCRS)
    seed, _ = await good.fetch(server.wiring())
    assert seed == server.root.keyring.enclave_seed(good.image_id)
    public = KmsPublicClient(server.public_url, signing_key=server.wiring().signing_keys[0])
    assert len(await public.public_key("x25519", "p", image_id=good.image_id)) == 32
    for writer in (stalled, garbage, http_writer, public_garbage):
        writer.close()


class _Chunks:
    """A stand-in for a Scallop stream: reads give these chunks, then EOF."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    async def read(self, n: int = -1) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


async def test_the_seed_answer_is_parsed_strictly() -> None:
    """The enclave's hand-written seed request reads one HTTP answer: split across reads, cut
    short, not HTTP, too long, or absent (a refused channel) each say so."""
    from typing import Any

    from reef.errors import ChannelBrokenError
    from reef.kms._scallop import _read_answer

    async def read(*chunks: bytes) -> Any:
        return await _read_answer(_Chunks(*chunks))  # type: ignore[arg-type]

    head = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Reef-KMS-Version: 3\r\n\r\n"
    assert await read(head[:9], head[9:] + b"ab", b"cd") == (
        200,
        {"content-length": "4", "x-reef-kms-version": "3"},
        b"abcd",
    )
    chunked = b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n"
    assert (await read(chunked))[::2] == (401, b"no")
    with pytest.raises(KMSError, match="before its answer was complete"):
        await read(head + b"ab")
    with pytest.raises(KMSError, match="malformed HTTP answer"):
        await read(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(KMSError, match="over 65536 bytes"):
        await read(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", *[b"x" * 16384] * 5)
    with pytest.raises(ChannelBrokenError, match="without answering"):
        await read()


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"\xb2", "malformed x-reef-kms-version"),  # "²" in Latin-1: str.isdigit, not int()
        (b"1", "asked the KMS for version 0, it answered 1"),
        (None, "asked the KMS for version 1, it answered 0"),  # no header: a version-0 root
    ],
)
async def test_the_seed_answer_must_name_the_version_asked_for(
    header: bytes | None, message: str
) -> None:
    """The enclave reads the answered version as the public client does (kms._http)."""
    from starlette.types import Receive, Scope, Send

    from reef.scallop import serve_asgi

    async def fake_root(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", b"64")]
        if header is not None:
            headers.append((b"x-reef-kms-version", header))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"\x01" * 64})

    root_secret, root_public = generate_x25519()
    server = await serve_asgi(fake_root, "127.0.0.1", 0, static_key=root_secret, lifespan="off")
    async with server:
        wiring = KmsWiring(
            scallop_host="127.0.0.1", scallop_port=server.port, scallop_key=root_public
        )

        async def no_attestation() -> bytes:
            raise AssertionError("the fake root never asks for one")

        asked = 1 if header is None else 0
        with pytest.raises(KMSError, match=message):
            await fetch_enclave_seed(
                wiring, static_key=generate_x25519()[0], auther=no_attestation, version=asked
            )
