"""Scallop throughput: handshakes per second, and bulk transfer next to raw ChaCha20-Poly1305.

Handshakes (each a full ``Noise_IX_25519_ChaChaPoly_BLAKE2b`` exchange with Scallop framing):

- sans-IO: both ends' state machines in one process, no sockets (the protocol's CPU cost);
- loopback, no attestation: ``connect`` to a ``serve`` on 127.0.0.1;
- loopback, attested: both sides ask for the other's attestation and verify it under the dev TEE
  root (chain cached, no cache of peers: every handshake verifies two documents). Documents are
  minted once per run, as an enclave's attestation server hands out recent ones.

Bulk, with 64 KiB application writes (Scallop splits each into a 64000- and a 1536-byte record):

- raw AEAD: ChaCha20-Poly1305 (pyca/cryptography) encrypting 64 KiB buffers, no framing: the
  bound no channel can beat;
- seal: Scallop's record layer encrypting and framing the same writes;
- open: the record layer authenticating and decrypting them (against raw decryption);
- loopback: a stream writing 64 KiB chunks to a server that reads them, both in this process, so
  one CPU does encryption and decryption (against raw encrypt + decrypt).

Measurements are interleaved in rounds so load from other processes affects all alike; each
figure is the best round. The aim for bulk is at least 70 % of raw AEAD throughput. Prints, does
not assert.

Run: ``.venv/bin/python bench/scallop.py [--seconds S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from reef.attestation import DevAuthority
from reef.crypto import generate_x25519
from reef.home import ReefHome
from reef.scallop import PeerPolicy, ScallopStream, connect, serve
from reef.scallop.lowlevel import (
    ClientFinished,
    ClientHandshake,
    RecordLayer,
    ServerHandshake,
)

ROUNDS = 5
WRITE = 64 * 1024
MAX_FRAME = 64000 + 16
PCRS = {0: b"\x01" * 48, 1: b"\x02" * 48, 2: b"\x03" * 48}


def best_rate(fn: Callable[[], int], seconds: float) -> float:
    """Units per second of ``fn`` (which returns how many units it did), over ``seconds``."""
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += fn()
    return done / elapsed


CLIENT_KEY, SERVER_KEY = generate_x25519()[0], generate_x25519()[0]


def sans_io_handshake() -> int:
    client = ClientHandshake(CLIENT_KEY)
    server = ServerHandshake(SERVER_KEY)
    server.receive_data(client.start())
    server.next_event()
    client.receive_data(server.send_hello(request_attestation=False))
    client.next_event()
    server.receive_data(client.send_finish(request_attestation=False, attestation=None))
    assert isinstance(server.next_event(), ClientFinished)
    client.transport()
    server.transport()
    return 1


def record_pair() -> tuple[RecordLayer, RecordLayer]:
    client = ClientHandshake(generate_x25519()[0])
    server = ServerHandshake(generate_x25519()[0])
    server.receive_data(client.start())
    server.next_event()
    client.receive_data(server.send_hello(request_attestation=False))
    client.next_event()
    server.receive_data(client.send_finish(request_attestation=False, attestation=None))
    server.next_event()
    return client.transport(), server.transport()


class Bulk:
    """The in-memory bulk measurements, sharing buffers so they compare like with like."""

    def __init__(self) -> None:
        self.data = os.urandom(WRITE)
        self.aead = ChaCha20Poly1305(os.urandom(32))
        self.nonce = bytes(12)
        self.sealed_raw = self.aead.encrypt(self.nonce, self.data, b"")
        self.batch = 64  # writes per call, to keep loop overhead out of the figures
        self.sender, self.receiver = record_pair()

    def raw_encrypt(self) -> int:
        for _ in range(self.batch):
            self.aead.encrypt(self.nonce, self.data, b"")
        return self.batch * WRITE

    def raw_decrypt(self) -> int:
        for _ in range(self.batch):
            self.aead.decrypt(self.nonce, self.sealed_raw, b"")
        return self.batch * WRITE

    def raw_both(self) -> int:
        for _ in range(self.batch):
            self.aead.decrypt(self.nonce, self.aead.encrypt(self.nonce, self.data, b""), b"")
        return self.batch * WRITE

    def seal(self) -> int:
        for _ in range(self.batch):
            self.sender.seal(self.data)
        return self.batch * WRITE

    def open(self) -> int:
        # Split the frames first, as a stream reads a header and then exactly one body: only
        # the record layer's work (length check, authentication, decryption) is timed.
        sender, receiver = record_pair()
        frames: list[tuple[bytes, bytes]] = []
        for _ in range(self.batch):
            sealed = bytes(sender.seal(self.data))
            position = 0
            while position < len(sealed):
                size = int.from_bytes(sealed[position : position + 2], "big")
                frames.append(
                    (sealed[position : position + 2], sealed[position + 2 : position + 2 + size])
                )
                position += 2 + size
        start = time.perf_counter()
        for header, body in frames:
            RecordLayer.check_length(int.from_bytes(header, "big"))
            receiver.open(body)
        self._open_elapsed = time.perf_counter() - start
        return self.batch * WRITE


def open_rate(bulk: Bulk, seconds: float) -> float:
    done, elapsed = 0, 0.0
    while elapsed < seconds:
        done += bulk.open()
        elapsed += bulk._open_elapsed
    return done / elapsed


async def loopback_handshakes(seconds: float, *, attested: bool, authority: DevAuthority) -> float:
    server_secret, server_public = generate_x25519()
    client_secret, client_public = generate_x25519()
    now = time.time_ns() // 1_000_000
    server_doc = authority.mint(PCRS, timestamp_ms=now, public_key=server_public)
    client_doc = authority.mint(PCRS, timestamp_ms=now, public_key=client_public)

    async def server_auther() -> bytes:
        return server_doc

    async def client_auther() -> bytes:
        return client_doc

    policy = PeerPolicy(roots=[authority.root]) if attested else None

    async def handler(stream: ScallopStream) -> None:
        await stream.read(1)

    server = await serve(
        handler,
        "127.0.0.1",
        0,
        static_key=server_secret,
        policy=policy.store(cache=False) if policy else None,
        auther=server_auther,
    )
    try:
        done = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            stream = await connect(
                "127.0.0.1",
                server.port,
                static_key=client_secret,
                policy=policy.store(cache=False) if policy else None,
                auther=client_auther,
            )
            if attested:
                assert stream.auth == "attested"
            await stream.aclose()
            done += 1
        return done / elapsed
    finally:
        await server.aclose()


async def loopback_bulk(seconds: float) -> float:
    data = os.urandom(WRITE)
    received = 0
    finished = asyncio.Event()

    async def sink(stream: ScallopStream) -> None:
        nonlocal received
        while chunk := await stream.read(1 << 20):
            received += len(chunk)
        finished.set()

    server = await serve(sink, "127.0.0.1", 0, static_key=generate_x25519()[0])
    try:
        stream = await connect("127.0.0.1", server.port, static_key=generate_x25519()[0])
        sent = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(16):
                stream.write(data)
                sent += WRITE
            await stream.drain()
        stream.write_eof()
        await finished.wait()
        elapsed = time.perf_counter() - start
        await stream.aclose()
        assert received == sent
        return sent / elapsed
    finally:
        await server.aclose()


async def loopback_plain(seconds: float) -> float:
    """The same transfer framed as Scallop records but not encrypted: asyncio and the kernel."""
    frame = (MAX_FRAME.to_bytes(2, "big") + os.urandom(64000)) + (
        (1536 + 16).to_bytes(2, "big") + os.urandom(1536 + 16)
    )
    received = 0
    finished = asyncio.Event()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                received += len(await reader.readexactly(size))
        except asyncio.IncompleteReadError:
            pass
        writer.close()
        finished.set()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        sent = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(16):
                writer.write(frame)
                sent += WRITE
            await writer.drain()
        writer.write_eof()
        await finished.wait()
        elapsed = time.perf_counter() - start
        writer.close()
        return sent / elapsed
    finally:
        server.close()
        await server.wait_closed()


def mb(rate: float) -> str:
    return f"{rate / 1e6:8.1f} MB/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=0.4, help="per measurement per round")
    args = parser.parse_args()
    seconds = args.seconds
    scratch = tempfile.mkdtemp(prefix="reef-bench-")
    atexit.register(shutil.rmtree, scratch, True)
    authority = DevAuthority.load_or_create(ReefHome(Path(scratch)))
    bulk = Bulk()
    best: dict[str, float] = {}

    def keep(name: str, value: float) -> None:
        best[name] = max(best.get(name, 0.0), value)

    for _ in range(ROUNDS):
        keep("hs_sans_io", best_rate(sans_io_handshake, seconds))
        keep(
            "hs_plain",
            asyncio.run(loopback_handshakes(seconds, attested=False, authority=authority)),
        )
        keep(
            "hs_attested",
            asyncio.run(loopback_handshakes(seconds, attested=True, authority=authority)),
        )
        keep("raw_encrypt", best_rate(bulk.raw_encrypt, seconds))
        keep("seal", best_rate(bulk.seal, seconds))
        keep("raw_decrypt", best_rate(bulk.raw_decrypt, seconds))
        keep("open", open_rate(bulk, seconds))
        keep("raw_both", best_rate(bulk.raw_both, seconds))
        keep("loopback", asyncio.run(loopback_bulk(seconds)))
        keep("plain", asyncio.run(loopback_plain(seconds)))

    print("Scallop (Noise_IX_25519_ChaChaPoly_BLAKE2b), best of", ROUNDS, "rounds")
    print("handshakes per second")
    print(f"  sans-IO, both ends in memory    {best['hs_sans_io']:8.0f} /s")
    print(f"  loopback, no attestation        {best['hs_plain']:8.0f} /s")
    print(f"  loopback, both sides attested   {best['hs_attested']:8.0f} /s")
    print("bulk, 64 KiB writes")
    print(f"  raw ChaCha20-Poly1305 encrypt   {mb(best['raw_encrypt'])}")
    print(
        f"  Scallop seal (encrypt + frame)  {mb(best['seal'])}"
        f"  {100 * best['seal'] / best['raw_encrypt']:5.1f} % of raw encrypt"
    )
    print(f"  raw ChaCha20-Poly1305 decrypt   {mb(best['raw_decrypt'])}")
    print(
        f"  Scallop open (check + decrypt)  {mb(best['open'])}"
        f"  {100 * best['open'] / best['raw_decrypt']:5.1f} % of raw decrypt"
    )
    print(f"  raw encrypt + decrypt           {mb(best['raw_both'])}")
    print(f"  same frames, plain asyncio TCP  {mb(best['plain'])}")
    # One CPU does the socket work and both AEAD directions one after the other, so the best
    # a channel can do is the harmonic combination of the two.
    bound = 1 / (1 / best["plain"] + 1 / best["raw_both"])
    print(f"  bound: plain TCP + raw AEAD     {mb(bound)}")
    print(
        f"  Scallop over loopback TCP       {mb(best['loopback'])}"
        f"  {100 * best['loopback'] / bound:5.1f} % of that bound"
    )
    print("aim: seal and open at least 70 % of raw AEAD throughput")


if __name__ == "__main__":
    main()
