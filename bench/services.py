"""What reef's HTTP services cost: the verifier under load against the P-384 bound, and the
serving floor's kept-alive latency against a bare socket echo.

In one run, on loopback, each server in a child process of its own (so the load generator does
not share its event loop):

- **P-384 bound**: ECDSA P-384 verifications per second on one core (``cryptography``), and what
  one verifier request needs. The bound the aim is stated against counts two per document (the
  leaf certificate's signature and the COSE signature, with the issuing chain cached):
  ``bound/core = rate / 2``, the two-core bound twice that. The verifier now also caches
  verified leaves by their DER bytes (an enclave signs with one leaf for hours), so a document
  from a known enclave needs one (the COSE signature): that bound, ``rate / 1``, is printed next
  to it. Then ``verify_and_sign`` called directly (the whole per-request work without HTTP: CBOR,
  the certificate checks, the EIP-712 signature), against both.
- **verifier**: ``POST /verify/raw`` with a valid dev-TEE document over 1 and over 100 kept-alive
  connections: requests per second, p50 and p99 latency, the share of the two-core bounds, and
  the CPU time the server's processes spent per request (read from ``/proc``: unlike requests per
  second it barely moves when other processes share the cores). The load generator runs on the
  same cores, so its own CPU per request is printed too.
- **keep-alive**: one kept-alive connection doing ``GET /health`` on a FastAPI app on the serving
  floor, one request after the other, with the server's CPU per request, next to the same round
  trip on a bare asyncio echo server (the floor of what any Python server answers in).
- **devnet**: the devnet's JSON-RPC endpoint on the floor, one kept-alive connection, for a
  method answered inline (``eth_blockNumber``) and one answered in a worker thread
  (``eth_getBalance``): the server's CPU per request next to the same body answered in process
  (``DevnetRpc.handle_bytes``), so the difference is what HTTP costs the devnet.

The load generator is a raw asyncio client (pre-built request bytes, a minimal response parser):
``wrk`` is used when installed for the 100-connection figure too. Counts and times are bounded;
prints, never asserts.

Run: ``.venv/bin/python bench/services.py [--seconds S] [--workers N]`` (``--workers``: the
verifier's processes, by default one per CPU as ``reef verifier serve`` runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from reef._listen import bind
from reef._serve import run_on
from reef.attestation import DevAuthority, NitroVerifier, verifier_app, verify_and_sign
from reef.crypto import Secp256k1PrivateKey
from reef.home import ReefHome

PCRS = {0: b"\x10" * 48, 1: b"\x11" * 48, 2: b"\x12" * 48}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and its children, from ``/proc`` (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:  # fields[1] is the parent's pid
            total += int(fields[11]) + int(fields[12])
    return total / tick


def rate_of(work: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``work`` on this core (best of three rounds)."""
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 3:
            work()
            count += 1
        best = max(best, count / elapsed)
    return best


# ------------------------------------------------------------------------------ servers


def _serve_in_child(make_app: Callable[[], Any], workers: int = 1) -> tuple[int, list[int]]:
    """Bind a floor socket here and serve ``make_app()`` on it in a child process, with the
    floor's ``workers`` (``run_on``); return once it accepts.

    The child starts serving only after this process has closed its copy of the socket, and
    this one returns only once the child's listeners are up: with workers, the child rebinds the
    address as an ``SO_REUSEPORT`` group, which failed (address in use) while this process still
    held the first socket, and a connection made to that socket before the group was up was
    reset.
    """
    sock = bind("127.0.0.1", 0, what="bench server")
    port = sock.getsockname()[1]
    context = multiprocessing.get_context("fork")
    go, go_child = context.Pipe()
    up_child, up = context.Pipe()

    def serve() -> None:
        app = make_app()  # here, in the server's process (a devnet holds files and threads)
        go_child.recv()
        run_on(app, sock, what="bench server", workers=workers,
               ready=lambda _server: up_child.send(True))  # fmt: skip

    child = context.Process(target=serve)
    child.start()
    assert child.pid is not None
    sock.close()
    go.send(True)
    if not up.poll(60):
        _stop([child.pid])
        raise SystemExit(f"the bench server on port {port} did not start")
    up.recv()
    return port, [child.pid]


async def _echo_server(port_out: Any) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port_out.send(server.sockets[0].getsockname()[1])
    await server.serve_forever()


def _echo_in_child() -> tuple[int, list[int]]:
    context = multiprocessing.get_context("fork")
    parent, child_end = context.Pipe()
    child = context.Process(target=lambda: asyncio.run(_echo_server(child_end)), daemon=True)
    child.start()
    assert child.pid is not None
    return int(parent.recv()), [child.pid]


def _stop(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


async def _wait_listening(port: int) -> None:
    for _ in range(500):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        writer.close()
        return
    raise SystemExit(f"the bench server on port {port} did not start")


# --------------------------------------------------------------------------------- client


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def load(port: int, request: bytes, connections: int, seconds: float) -> dict[str, float]:
    """``connections`` kept-alive connections sending ``request`` back to back for ``seconds``."""
    latencies: list[float] = []
    failures = 0
    stop_at = time.perf_counter() + seconds

    async def one_connection() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                writer.write(request)
                if await _read_response(reader) != 200:
                    failures += 1
                latencies.append(time.perf_counter() - start)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    return {
        "rps": len(latencies) / elapsed,
        "p50": percentile(latencies, 0.5) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
        "n": len(latencies),
        "failed": failures,
    }


async def echo_latency(port: int, count: int) -> dict[str, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    message = b"GET /health HTTP/1.1\r\nhost: bench\r\n\r\n"
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        writer.write(message)
        await reader.readexactly(len(message))
        latencies.append(time.perf_counter() - start)
    writer.close()
    return {"p50": percentile(latencies, 0.5) * 1000, "p99": percentile(latencies, 0.99) * 1000}


def wrk(port: int, path: str, body_file: Path, connections: int, seconds: float) -> str | None:
    """wrk's summary line for the same load, when wrk is installed."""
    binary = shutil.which("wrk")
    if binary is None:
        return None
    script = body_file.with_suffix(".lua")
    script.write_text(
        'wrk.method = "POST"\n'
        f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()\n'
    )
    out = subprocess.run(
        [binary, "-t2", f"-c{connections}", f"-d{max(1, int(seconds))}s", "--latency",
         "-s", str(script), f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=seconds + 30, check=False,
    )  # fmt: skip
    lines = [line.strip() for line in out.stdout.splitlines()]
    keep = [line for line in lines if line.startswith(("Requests/sec", "50%", "99%"))]
    return "; ".join(keep) or out.stderr.strip()[:200]


# ----------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="verifier server processes (default: one per CPU, as reef verifier serve)",
    )
    args = parser.parse_args()
    seconds: float = args.seconds
    # The verifier users run has one worker per CPU (reef verifier serve's default): the bench
    # measures that unless told otherwise, so its share of the two-core bound means something.
    if args.workers is None:
        args.workers = len(os.sched_getaffinity(0))

    home = Path(tempfile.mkdtemp(prefix="reef-bench-services-"))
    try:
        authority = DevAuthority.load_or_create(ReefHome(home))
        document = authority.mint(PCRS, timestamp_ms=time.time_ns() // 1_000_000)
        key = Secp256k1PrivateKey(os.urandom(32))

        # The bound: P-384 ECDSA verifications on one core, two per document with the issuing
        # chain cached (the aim's definition), one with the leaf cached too (what it now needs).
        p384 = ec.generate_private_key(ec.SECP384R1())
        signature = p384.sign(b"x" * 100, ec.ECDSA(hashes.SHA384()))
        public = p384.public_key()
        ecdsa = rate_of(lambda: public.verify(signature, b"x" * 100, ec.ECDSA(hashes.SHA384())), 1)
        bound_core, needs_core = ecdsa / 2, ecdsa
        checker = NitroVerifier()
        direct = rate_of(
            lambda: verify_and_sign(document, key, root=authority.root, verifier=checker), 1
        )
        cores = os.cpu_count() or 1
        print(f"P-384 verify: {ecdsa:8.0f}/s per core")
        print(f"  bound, 2 verifies/document (chain cached): {bound_core:6.0f}/s per core, "
              f"{bound_core * cores:6.0f}/s on {cores} cores")  # fmt: skip
        print(f"  bound, 1 verify/document (leaf cached too, what the work now needs): "
              f"{needs_core:6.0f}/s per core, {needs_core * cores:6.0f}/s on {cores} cores")  # fmt: skip
        print(f"verify_and_sign in process (no HTTP): {direct:6.0f}/s per core, "
              f"{1000 / direct:.3f} ms each ({100 * direct / bound_core:.0f} % of the 2-verify "
              f"bound, {100 * direct / needs_core:.0f} % of the 1-verify bound)")  # fmt: skip

        request = (
            b"POST /verify/raw HTTP/1.1\r\nhost: bench\r\ncontent-type: application/octet-stream"
            b"\r\ncontent-length: %d\r\n\r\n%s" % (len(document), document)
        )

        def make_verifier() -> Any:
            return verifier_app(key, root=authority.root, offload=False)  # as reef verifier serve

        port, pids = _serve_in_child(make_verifier, args.workers)
        try:
            asyncio.run(_wait_listening(port))
            asyncio.run(load(port, request, 4, 0.5))  # warm the chain cache and the workers
            for connections in (1, 100):
                server_cpu, client_cpu = cpu_seconds(pids[0]), time.process_time()
                result = asyncio.run(load(port, request, connections, seconds))
                server_ms = 1000 * (cpu_seconds(pids[0]) - server_cpu) / result["n"]
                client_ms = 1000 * (time.process_time() - client_cpu) / result["n"]
                share = 100 * result["rps"] / (bound_core * cores)
                share_now = 100 * result["rps"] / (needs_core * cores)
                print(f"verifier, {connections:3d} connection(s), {args.workers} worker(s): "
                      f"{result['rps']:6.0f} req/s  p50 {result['p50']:6.2f} ms  "
                      f"p99 {result['p99']:6.2f} ms  ({share:.0f} % of the {cores}-core "
                      f"2-verify bound, {share_now:.0f} % of the 1-verify bound; "
                      f"{result['n']:.0f} requests, {result['failed']:.0f} not 200)")  # fmt: skip
                print(f"  CPU per request: server {server_ms:.3f} ms, load generator "
                      f"{client_ms:.3f} ms")  # fmt: skip
            body = home / "document.bin"
            body.write_bytes(document)
            summary = wrk(port, "/verify/raw", body, 100, seconds)
            if summary is not None:
                print(f"verifier, wrk -c100, {args.workers} worker(s): {summary}")
        finally:
            _stop(pids)

        def make_trivial() -> Any:
            from reef._api import api_app

            app = api_app("bench")

            @app.get("/health")
            async def health() -> dict[str, bool]:
                return {"ok": True}

            return app

        health = b"GET /health HTTP/1.1\r\nhost: bench\r\n\r\n"
        port, pids = _serve_in_child(make_trivial)
        try:
            asyncio.run(_wait_listening(port))
            asyncio.run(load(port, health, 1, 0.3))  # warm up
            server_cpu = cpu_seconds(pids[0])
            result = asyncio.run(load(port, health, 1, seconds))
            health_ms = 1000 * (cpu_seconds(pids[0]) - server_cpu) / result["n"]
        finally:
            _stop(pids)
        port, pids = _echo_in_child()
        try:
            echo = asyncio.run(echo_latency(port, 5000))
        finally:
            _stop(pids)
        print(f"keep-alive GET /health on the floor: p50 {result['p50']:.3f} ms  "
              f"p99 {result['p99']:.3f} ms ({result['rps']:.0f} req/s on one connection; "
              f"server CPU {health_ms:.3f} ms per request)")  # fmt: skip
        print(f"bare asyncio socket echo:           p50 {echo['p50']:.3f} ms  "
              f"p99 {echo['p99']:.3f} ms")  # fmt: skip
        devnet_rows(home / "devnet", seconds)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def devnet_rows(home: Path, seconds: float) -> None:
    """The devnet's JSON-RPC over HTTP on one kept-alive connection, next to the same bodies
    answered in process (``DevnetRpc.handle_bytes``): what HTTP adds per request, in CPU."""
    from reef.chain import Devnet, dev_accounts, devnet_app
    from reef.chain.devnet._rpc import DevnetRpc

    def make_devnet() -> Any:
        return devnet_app(Devnet.open(ReefHome(home), fresh=True, durable=False))

    who = dev_accounts(1)[0].address
    bodies = {
        "eth_blockNumber (answered inline)":
            b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}',
        "eth_getBalance (a worker thread)":
            b'{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["%s","latest"]}'
            % who.encode(),
    }  # fmt: skip
    port, pids = _serve_in_child(make_devnet)
    results = {}
    try:
        for name, body in bodies.items():
            request = (
                b"POST / HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            asyncio.run(load(port, request, 1, 0.3))  # warm up
            before = cpu_seconds(pids[0])
            result = asyncio.run(load(port, request, 1, seconds))
            results[name] = (result, 1000 * (cpu_seconds(pids[0]) - before) / result["n"])
    finally:
        _stop(pids)
    rpc = DevnetRpc(Devnet.open(ReefHome(home.with_name("devnet-inproc")), fresh=True))
    for name, body in bodies.items():
        count, start = 0, time.process_time()
        while time.process_time() - start < min(seconds, 2.0):
            rpc.handle_bytes(body)
            count += 1
        inproc_ms = 1000 * (time.process_time() - start) / count
        result, server_ms = results[name]
        print(f"devnet JSON-RPC {name}, one kept-alive connection: {result['rps']:.0f} req/s, "
              f"p50 {result['p50']:.3f} ms; server CPU {server_ms:.3f} ms per request, "
              f"in process {inproc_ms:.3f} ms (HTTP adds {server_ms - inproc_ms:.3f} ms)")  # fmt: skip


if __name__ == "__main__":
    main()
