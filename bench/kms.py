"""KMS benchmark: derivation throughput against raw HMAC-SHA512, and the latency of an enclave's
first key (an attested Scallop fetch from the root) against a plain local HTTP round trip.

Run: ``.venv/bin/python bench/kms.py [--seconds 1.0] [--rounds 20] [--json]``. Everything runs on
loopback in one process: a KMS root (Scallop + public listener, uvicorn), dev-TEE attestations
minted per fetch (as an enclave's NSM would), and the derive server's HTTP API.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import hashlib
import hmac
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from reef.attestation import DevAuthority, image_id
from reef.crypto import generate_x25519
from reef.home import ReefHome
from reef.kms import (
    KEY_TYPES,
    DeriveServer,
    KeyType,
    KmsRoot,
    RootKeyring,
    RootSeed,
    RootServer,
    derive_key,
    enclave_seed,
)

APP_PCRS = {0: b"\x10" * 48, 1: b"\x11" * 48, 2: b"\x12" * 48}


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds``."""
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(64):
            fn()
        count += 64
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def throughput(seconds: float) -> dict[str, float]:
    root = RootSeed(os.urandom(64))
    image = os.urandom(32)
    key, message = os.urandom(64), os.urandom(32)
    results = {
        "hmac_sha512_per_s": rate(lambda: hmac.new(key, message, hashlib.sha512).digest(), seconds),
        "enclave_seed_per_s": rate(lambda: enclave_seed(root, image), seconds),
    }
    parent = enclave_seed(root, image)
    for key_type in KEY_TYPES:

        def one(kt: KeyType = key_type) -> object:
            return derive_key(parent, "app/wallet/0", kt)

        results[f"{key_type}_key_per_s"] = rate(one, seconds)
    return results


def _quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p90_ms": ordered[int(0.9 * (len(ordered) - 1))] * 1000,
        "min_ms": ordered[0] * 1000,
    }


async def latency(rounds: int) -> dict[str, Any]:
    scratch = tempfile.mkdtemp(prefix="reef-bench-kms-")
    atexit.register(shutil.rmtree, scratch, True)
    home = ReefHome(Path(scratch))
    authority = DevAuthority.load_or_create(home)
    root = KmsRoot(RootKeyring([RootSeed(os.urandom(64))]))
    fetch: list[float] = []
    first_key: list[float] = []
    plain: list[float] = []

    async def hello(_: object) -> Response:
        return Response(b"\x00" * 32)

    # One client for every local request, each on a fresh connection (as a first request is):
    # client construction (TLS contexts, ...) is not what is measured.
    local = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0))
    async with RootServer(root, peer_roots=[authority.root], scallop_port=0, public_port=0) as srv:
        wiring = srv.wiring()
        for _ in range(rounds):
            secret, public = generate_x25519()

            async def auther(public: bytes = public) -> bytes:
                now = time.time_ns() // 1_000_000
                return await asyncio.to_thread(
                    authority.mint, APP_PCRS, timestamp_ms=now, public_key=public
                )

            derive = DeriveServer.for_enclave(wiring, static_key=secret, auther=auther, port=0)
            start = time.perf_counter()
            await derive.start()  # Scallop handshake, attestation minted and verified, GET /derive
            fetched = time.perf_counter()
            answer = await local.get(derive.url + "/derive/secp256k1", params={"path": "app"})
            done = time.perf_counter()
            await derive.aclose()
            if answer.status_code != 200 or len(answer.content) != 32:
                raise SystemExit(f"the derive server answered {answer.status_code}")
            fetch.append(fetched - start)
            first_key.append(done - start)

        config = uvicorn.Config(Starlette(routes=[Route("/", hello)]), port=0, log_level="warning")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 (uvicorn exposes no started event)
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            for _ in range(rounds):
                start = time.perf_counter()
                await local.get(f"http://127.0.0.1:{port}/")
                plain.append(time.perf_counter() - start)
        finally:
            server.should_exit = True
            await task
    await local.aclose()
    return {
        "attested_seed_fetch": _quantiles(fetch),
        "first_key_attested": _quantiles(first_key),
        "plain_http_round_trip": _quantiles(plain),
        "image_id": image_id(APP_PCRS).hex(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per throughput measurement")
    parser.add_argument("--rounds", type=int, default=20, help="latency samples")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    result = {"throughput": throughput(args.seconds), "latency": asyncio.run(latency(args.rounds))}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    t = result["throughput"]
    hmac_rate = t["hmac_sha512_per_s"]
    print("KMS derivation throughput (one core, this run)")
    print(f"  {'raw HMAC-SHA512 (64-byte key, 32-byte message)':52s} {hmac_rate:12,.0f} /s")
    for name, label in [
        ("enclave_seed_per_s", "enclave seed (2 HMACs)"),
        ("secp256k1_key_per_s", "secp256k1 key at a path (2 HMACs + EC point)"),
        ("ed25519_key_per_s", "ed25519 key at a path (2 HMACs + Ed25519 point)"),
        ("x25519_key_per_s", "x25519 key at a path (2 HMACs + X25519 point)"),
    ]:
        print(f"  {label:52s} {t[name]:12,.0f} /s   ({hmac_rate / t[name]:5.1f} HMACs' time)")
    lat = result["latency"]
    print(f"\nLatency, {args.rounds} rounds on loopback (median / p90 / min, ms)")
    for name, label in [
        ("attested_seed_fetch", "seed fetch over Scallop (attestation minted+verified)"),
        ("first_key_attested", "enclave's first key (that fetch + one local GET)"),
        ("plain_http_round_trip", "plain local HTTP round trip (new connection)"),
    ]:
        q = lat[name]
        print(f"  {label:52s} {q['median_ms']:7.2f} {q['p90_ms']:7.2f} {q['min_ms']:7.2f}")


if __name__ == "__main__":
    main()
