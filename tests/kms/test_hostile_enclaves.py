"""The KMS root against hostile enclaves and clients: a tenant's enclave that attests honestly
and then misuses its channel, and strangers on the public listener.

Every server here is a real :class:`reef.kms.RootServer` on loopback, its clients real Scallop
channels (attested by the dev TEE for the images they claim) and real HTTP connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from starlette.types import ASGIApp, Receive, Scope, Send

from kms.kms_support import dev_root_server, dev_root_store
from reef.attestation import DevAuthority, image_id
from reef.chain import Devnet, KmsRegistryClient, serve_devnet
from reef.crypto import generate_x25519
from reef.errors import ChannelError, KMSError, RPCError
from reef.home import ReefHome
from reef.kms import (
    KmsRoot,
    KmsWiring,
    RootServer,
    RpcApproval,
    fetch_enclave_seed,
    fetch_identity,
)
from reef.scallop import PeerPolicy, ScallopStream, connect, handshake_client
from reef.testing import wall_ms

pytestmark = pytest.mark.timeout(90)

ROOT_PCRS = {0: b"\xe0" * 48, 1: b"\xe1" * 48, 2: b"\xe2" * 48}
APP_PCRS = {0: b"\x30" * 48, 1: b"\x31" * 48, 2: b"\x32" * 48}
OTHER_PCRS = {0: b"\x40" * 48, 1: b"\x41" * 48, 2: b"\x42" * 48}


class Enclave:
    """One enclave boot of ``pcrs``: a fresh Noise key that the dev TEE attests."""

    def __init__(self, authority: DevAuthority, pcrs: dict[int, bytes]) -> None:
        self.authority = authority
        self.pcrs = pcrs
        self.secret, self.public = generate_x25519()

    @property
    def image_id(self) -> bytes:
        return image_id(self.pcrs)

    async def auther(self) -> bytes:
        return self.authority.mint(self.pcrs, timestamp_ms=wall_ms(), public_key=self.public)

    async def fetch(self, wiring: KmsWiring) -> bytes:
        seed, _ = await fetch_enclave_seed(
            wiring, static_key=self.secret, auther=self.auther, deadline_s=10
        )
        return seed

    async def channel(self, server: RootServer, *, receive_buffer: int) -> ScallopStream:
        """A channel to the root over a socket whose kernel receive buffer is small, so that
        answers it does not read fill the root's side quickly."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.scallop_port))
        reader, writer = await asyncio.open_connection(sock=sock)
        return await handshake_client(
            reader, writer, static_key=self.secret, auther=self.auther, handshake_timeout=5
        )


@pytest.fixture
def authority(tmp_path: Path) -> DevAuthority:
    return DevAuthority.load_or_create(ReefHome(tmp_path / "dev-home"))


@pytest.fixture
async def server(tmp_path: Path, authority: DevAuthority) -> AsyncIterator[RootServer]:
    store = dev_root_store(ReefHome(tmp_path / "root-home"), authority, ROOT_PCRS)
    root = KmsRoot.open(store, attester=authority.attester(ROOT_PCRS, clock_ms=wall_ms))
    async with dev_root_server(root, authority) as running:
        yield running


# ---- an enclave that asks and asks, and never reads the answers ----


async def _stall(stream: ScallopStream, request: bytes) -> int:
    """Pipeline ``request`` until our writes stop draining (the root stopped reading us, its
    answers unread); return how many were sent."""
    sent = 0
    with contextlib.suppress(TimeoutError):
        while True:
            stream.write(request * 64)
            async with asyncio.timeout(2):
                await stream.drain()
            sent += 64
    return sent


async def _write_until_refused(stream: ScallopStream, request: bytes) -> None:
    """Keep writing ``request`` for up to 45 s (far past the root's 5 s bounds): a channel the
    root dropped raises :class:`~reef.errors.ChannelError`, one it holds a TimeoutError."""
    async with asyncio.timeout(45):
        while True:
            stream.write(request * 64)
            await stream.drain()


@pytest.mark.slow  # the root's two 5 s bounds, one after the other
async def test_an_enclave_that_never_reads_its_answers_loses_its_channel(
    server: RootServer, authority: DevAuthority
) -> None:
    """An attested enclave pipelines requests and reads none of the answers. The root wrote
    them until the socket's buffers were full, then waited to write the next one for ever: a
    request deadline (5 s) had stopped the app, but the channel then waited for its write
    buffer to drain with no deadline, holding the socket, its buffers (megabytes of answers)
    and a task. Any tenant's enclave could hold as many as the root's per-address cap allows,
    for good. The root must drop such a channel, and serve others meanwhile."""
    hostile = Enclave(authority, APP_PCRS)
    stream = await hostile.channel(server, receive_buffer=4096)
    try:
        sent = await _stall(stream, b"GET /openapi.json HTTP/1.1\r\nhost: kms\r\n\r\n")
        assert sent > 0
        # Meanwhile another enclave of the same image gets its seed.
        honest = Enclave(authority, APP_PCRS)
        assert await honest.fetch(server.wiring()) == server.root.keyring.enclave_seed(
            honest.image_id
        )
        # The root drops the stalled channel: the hostile side's blocked write then fails
        # (the connection is reset) instead of waiting for ever.
        with pytest.raises(ChannelError):
            await _write_until_refused(stream, b"GET /derive HTTP/1.1\r\nhost: kms\r\n\r\n")
    finally:
        stream.close()


# ---- a stranger that asks the public listener for attestations, many at once ----


class CountingAttester:
    """The dev TEE's attester for the root's image, taking ``seconds`` per document as an NSM
    (or the attestation server it is asked through) may; counts the documents made at once."""

    def __init__(self, authority: DevAuthority, seconds: float) -> None:
        self._attest = authority.attester(ROOT_PCRS, clock_ms=wall_ms)
        self._seconds = seconds
        self._lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.made = 0

    def __call__(self, *, public_key: bytes, user_data: bytes, nonce: bytes) -> bytes:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self._seconds)
            return self._attest(public_key=public_key, user_data=user_data, nonce=nonce)
        finally:
            with self._lock:
                self.running -= 1
                self.made += 1


def _client_from(address: str) -> httpx.AsyncClient:
    """An HTTP client whose connections come from ``address`` (any of 127.0.0.0/8 on Linux)."""
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address), timeout=30)


async def test_one_client_gets_one_identity_attestation_at_a_time(
    tmp_path: Path, authority: DevAuthority
) -> None:
    """Every ``/info?nonce=`` makes the root attest (an NSM call on Nitro, a P-384 signature on
    the dev TEE), in a worker thread, and nothing bounded how many one client had under way:
    a stranger sending a stream of nonces at once kept every worker thread attesting, and an
    honest client's ``/info`` (or a rotation, which needs a thread too) waited behind them.
    One address gets one attestation at a time; others are not held up by it."""
    attester = CountingAttester(authority, seconds=0.15)
    store = dev_root_store(ReefHome(tmp_path / "root-home"), authority, ROOT_PCRS)
    root = KmsRoot.open(store, attester=attester)
    async with dev_root_server(root, authority) as server:
        url = f"{server.public_url}/info"
        async with _client_from("127.0.0.2") as stranger, _client_from("127.0.0.3") as honest:
            flood = [
                asyncio.ensure_future(stranger.get(url, params={"nonce": os.urandom(32).hex()}))
                for _ in range(12)
            ]
            await asyncio.sleep(0.1)  # the stranger's requests are under way
            mine = await honest.get(url, params={"nonce": "ab" * 32})
            answers = await asyncio.gather(*flood)
        assert mine.status_code == 200, mine.text
        assert mine.json()["attestation"]
        # The stranger's requests are all answered, one after the other.
        assert [answer.status_code for answer in answers] == [200] * 12
        assert attester.made == 13
        assert attester.most <= 2, f"{attester.most} attestations at once"


# ---- an enclave that asks the root to attest in every handshake ----


async def test_handshakes_asking_for_the_roots_attestation_share_one_document(
    tmp_path: Path, authority: DevAuthority
) -> None:
    """An enclave may ask the root for its attestation in a handshake (flag A); the root made
    a new document for every such handshake, in a worker thread. The document names only the
    root's Scallop key and identity, never anything of the client's (its nonce is empty), so
    any tenant's enclave could make the root attest (an NSM call each) as fast as it could
    handshake, 16 at once per address. One document now serves the handshakes of ten seconds."""
    attester = CountingAttester(authority, seconds=0.05)
    store = dev_root_store(ReefHome(tmp_path / "root-home"), authority, ROOT_PCRS)
    root = KmsRoot.open(store, attester=attester)
    enclave = Enclave(authority, APP_PCRS)
    policy = PeerPolicy(roots=[authority.root], image_ids=[image_id(ROOT_PCRS)])
    async with dev_root_server(root, authority) as server:

        async def handshake() -> bytes:
            stream = await connect(
                "127.0.0.1",
                server.scallop_port,
                static_key=enclave.secret,
                policy=policy,
                auther=enclave.auther,
            )
            async with stream:
                assert stream.peer is not None  # the root attested, and it checked out
                return stream.peer.public_key

        keys = await asyncio.gather(*(handshake() for _ in range(8)))
        keys += [await handshake() for _ in range(8)]
    assert set(keys) == {root.keyring.identity().scallop_key}
    assert attester.made == 1, f"{attester.made} documents for 16 handshakes"


# ---- a rotation while an identity is being attested ----


async def test_an_identity_attested_while_the_root_rotates_is_signed_by_its_own_version(
    tmp_path: Path, authority: DevAuthority
) -> None:
    """``/info`` attests the keyring it read, in a worker thread, then signed the answer with
    the key of whatever version was current *after*: a rotation in between (an admin's, which
    any client may race with its ``/info``) made it a version-0 identity signed by the
    version-1 key, which every client refuses as tampered with."""
    attester = CountingAttester(authority, seconds=0.5)
    store = dev_root_store(ReefHome(tmp_path / "root-home"), authority, ROOT_PCRS)
    root = KmsRoot.open(store, attester=attester)
    async with dev_root_server(root, authority) as server:
        asked = asyncio.ensure_future(fetch_identity(server.public_url, root=authority.root))
        for _ in range(100):
            if attester.running:
                break
            await asyncio.sleep(0.01)
        assert attester.running, "the identity is not being attested"
        await root.rotate()
        identity = await asked
        # The identity as it was when attested: version 0, consistent and signed by it.
        assert identity.current_version == 0
        # Asked again, the rotated one.
        assert (await fetch_identity(server.public_url, root=authority.root)).current_version == 1


# ---- an enclave that asks about a contract that never finishes ----

LOOP = bytes.fromhex("5b600056")
"""Runtime code that jumps back to its start until its gas is spent (JUMPDEST PUSH1 0 JUMP)."""


def _deploy_runtime(devnet: Devnet, runtime: bytes) -> str:
    """Deploy ``runtime`` (at most 32 bytes) as a contract's code; return its address."""
    size = len(runtime)
    # PUSHn runtime, PUSH1 0, MSTORE, PUSH1 size, PUSH1 32-size, RETURN
    init = (
        bytes([0x5F + size]) + runtime + bytes([0x60, 0, 0x52, 0x60, size, 0x60, 32 - size, 0xF3])
    )
    w3 = devnet.web3()
    owner = Account.from_key(devnet.accounts[0].private_key)
    transaction = {
        "from": owner.address,
        "data": "0x" + init.hex(),
        "gas": 200_000,
        "gasPrice": w3.eth.gas_price,
        "nonce": w3.eth.get_transaction_count(owner.address),
        "chainId": w3.eth.chain_id,
    }
    sent = w3.eth.send_raw_transaction(owner.sign_transaction(transaction).raw_transaction)
    return str(w3.eth.wait_for_transaction_receipt(sent)["contractAddress"])


@pytest.mark.slow
async def test_an_enclave_asking_about_a_looping_contract_does_not_hold_up_others(
    tmp_path: Path, authority: DevAuthority
) -> None:
    """A contract seed costs an ``eth_call`` of the contract the enclave names. A tenant's
    enclave named a contract that loops: the root let it run on the chain node's whole call
    budget (5 s of the devnet's EVM each), as many at once as the enclave had channels, so the
    node's calls queued behind them and an honest enclave's own approval (the same node, the
    same root) timed out: its contract seed was refused with a 500. The root now gives the
    check a gas budget of its own and asks about one image's contracts one call at a time."""
    devnet = Devnet()
    rpc = await serve_devnet(devnet, port=0)
    try:
        honest, hostile = Enclave(authority, APP_PCRS), Enclave(authority, OTHER_PCRS)
        w3 = devnet.web3()
        owner = Account.from_key(devnet.accounts[0].private_key)
        registry = await asyncio.to_thread(KmsRegistryClient.deploy, w3, owner, [honest.image_id])
        loop = await asyncio.to_thread(_deploy_runtime, devnet, LOOP)
        approval = RpcApproval(rpc.url, w3.eth.chain_id)
        store = dev_root_store(ReefHome(tmp_path / "root-home"), authority, ROOT_PCRS)
        root = KmsRoot.open(store, approval=approval)
        async with dev_root_server(root, authority) as server:
            looping = server.wiring(contract_address=loop)
            flood = [asyncio.ensure_future(hostile.fetch(looping)) for _ in range(6)]
            await asyncio.sleep(0.5)  # the looping calls are under way
            seed = await honest.fetch(server.wiring(contract_address=registry.address))
            assert seed == root.keyring.contract_seed(w3.eth.chain_id, registry.address)
            refused = await asyncio.gather(*flood, return_exceptions=True)
        # The hostile enclave gets no seed, and is told why.
        assert all(isinstance(answer, KMSError) for answer in refused), refused
        assert any("gas" in str(answer) for answer in refused), refused
    finally:
        await rpc.aclose()
        devnet.close()


# ---- a local process that waits for the Scallop port to be free ----


async def _squat(port: int, stop: asyncio.Event) -> socket.socket | None:
    """Try to listen on ``port`` at every turn of the loop until ``stop``; the socket if won."""
    while not stop.is_set():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            sock.close()
            await asyncio.sleep(0)
            continue
        return sock
    return None


async def test_a_rotation_never_lets_go_of_the_scallop_port(
    server: RootServer, authority: DevAuthority
) -> None:
    """A rotation closed the Scallop listener and listened again on its port with the new
    key. In between the port was free: any local process waiting for it (a tenant's
    workload on the root's host) took it, the root's listener could not come back, and the
    rotated root served no enclave seed at all until restarted. The listener now takes its
    new key in place."""
    enclave = Enclave(authority, APP_PCRS)
    stop = asyncio.Event()
    squatter = asyncio.ensure_future(_squat(server.scallop_port, stop))
    try:
        await asyncio.sleep(0.05)
        await server.root.rotate()
    finally:
        stop.set()
        won = await squatter
        if won is not None:
            won.close()
    assert won is None, "a local process took the Scallop port during the rotation"
    seed, version = await fetch_enclave_seed(
        server.wiring(), static_key=enclave.secret, auther=enclave.auther, deadline_s=10
    )
    assert (seed, version) == (server.root.keyring.enclave_seed(enclave.image_id), 1)


# ---- the chain node the root asks, answering what no node answers ----


@pytest.mark.parametrize("result", ["0x" + "zz" * 32, "0x" + "0g" * 32, "0x\u0661\u0662"])
async def test_an_rpc_answering_a_result_that_is_not_hex_is_refused_as_malformed(
    result: str, serve: Callable[[ASGIApp], AbstractAsyncContextManager[str]]
) -> None:
    """The approval read the call's result with ``bytes.fromhex``: a node (or whoever answers
    for one over plain HTTP) answering ``0xzz…`` made it raise a ValueError, which escaped the
    root's handler as a bug (a 500 with a traceback logged for every such request) instead of
    the chain's refusal."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "result": result}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async with serve(app) as url:
        with pytest.raises(RPCError, match="not a bool") as caught:
            await RpcApproval(url, 31337)("0x" + "ab" * 20, bytes(32))
    assert "oysterKMSVerify" in caught.value.message


@pytest.mark.parametrize(("chain_id", "gas"), [(31337, hex(1_000_000)), (42161, None)])
async def test_the_approval_gas_budget_is_the_roots_on_local_chains_only(
    chain_id: int, gas: str | None, serve: Callable[[ASGIApp], AbstractAsyncContextManager[str]]
) -> None:
    """The budget that stops a looping contract on the devnet must not refuse honest calls on
    Arbitrum, whose gas counts the call's L1 cost ("intrinsic gas too low (supplied gas
    50000000)" at times): there the node's own call budget stays."""
    calls: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        request = b""
        while True:
            message = await receive()
            request += message.get("body", b"")
            if not message.get("more_body"):
                break
        calls.append(json.loads(request)["params"][0])
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "result": "0x" + "00" * 31 + "01"})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body.encode()})

    async with serve(app) as url:
        assert await RpcApproval(url, chain_id)("0x" + "ab" * 20, bytes(32)) is True
    assert calls[0].get("gas") == gas


# ---- an enclave whose request body never ends ----


async def _send_chunks(stream: ScallopStream, total: int) -> int:
    """Send chunked body data, 64 KiB a chunk, up to ``total`` bytes; return how many went."""
    chunk = b"10000\r\n" + bytes(1 << 16) + b"\r\n"
    sent = 0
    async with asyncio.timeout(60):
        while sent < total:
            await stream.send(chunk)
            sent += 1 << 16
    return sent


async def test_a_body_the_app_does_not_read_is_not_read_for_ever(
    server: RootServer, authority: DevAuthority
) -> None:
    """``GET /derive`` with a chunked body: the root answers without reading the body, then
    reads the rest of it to get to the next request, with no bound on its size: an enclave
    streaming a body that never ends kept its channel, and the root decrypting and parsing it,
    for as long as it liked (the 1 KiB body limit holds only for bodies the app reads). Past
    the body limit the channel is now closed."""
    hostile = Enclave(authority, APP_PCRS)
    stream = await hostile.channel(server, receive_buffer=1 << 16)
    try:
        await stream.send(
            b"GET /derive HTTP/1.1\r\nhost: kms\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        await _send_chunks(stream, 1 << 16)
        async with asyncio.timeout(10):
            answer = await stream.read(4096)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
        with pytest.raises(ChannelError):
            await _send_chunks(stream, 256 << 20)
    finally:
        stream.abort()
