"""Local enclave start-up: from `run` to an attestation answered, next to the bare app.

Each round measures, in the same run and on the same machine:

- bare: the hello example's server started directly (``python3 server.py``, no reef), until its
  HTTP port answers;
- enclave: ``LocalBackend.start`` of the same app as an image (supervisor, network namespace and
  pasta, control groups, bubblewrap, trusted base), until the attestation endpoint on the host
  answers with a document (and the app's own port answers);
- verified: the same, plus verifying that document live under the dev root;
- memory: the resident size of the enclave's supervisor (reef's trusted base), of its pasta
  (the network namespace's user-mode stack) and of the app, read from /proc once it answers;
  and the supervisor's private part (its pages no other process maps: the resident size also
  counts the pages of shared libraries, cryptography's and Python's, that every supervisor maps);
- spare: the enclave again, from a ``LocalBackend(spare=True)`` whose spare supervisor (the
  trusted base already loaded) was made ready before the round, as a provider's backend has one
  between launches;
- kms: the enclave again, from a backend wired to a KMS root (``LocalBackend(kms=...)``, as
  ``reef up`` wires its provider's): its supervisor also fetches the enclave seed from the root
  over Scallop and serves the derive server. The root (:class:`reef.kms.RootServer`, its keys
  sealed under the dev TEE, accepting enclaves of this home's dev root) runs in this process.

Rounds are interleaved so that load from other processes affects both alike; the table shows
the best and the median round. Prints, does not assert.

Run: ``.venv/bin/python bench/enclave.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from reef._clock import wall_clock_ms
from reef.attestation import DevAuthority, Expectations, image_id, verify_nitro
from reef.enclave import EnclaveSpec, LocalBackend, build_image
from reef.home import ReefHome
from reef.kms import AeadSealer, KmsRoot, RootServer, SeedStore

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "examples" / "hello"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_http(client: httpx.AsyncClient, url: str, deadline_s: float = 60) -> httpx.Response:
    end = time.perf_counter() + deadline_s
    while True:
        try:
            response = await client.get(url)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        if time.perf_counter() > end:
            raise SystemExit(f"{url} did not answer within {deadline_s} s")
        await asyncio.sleep(0.005)


def _rss_mib(supervisor: int) -> dict[str, float]:
    """Resident MiB of an enclave's supervisor, its pasta (a child) and the app."""
    found: dict[str, float] = {}
    try:
        found["supervisor"] = _vmrss(Path(f"/proc/{supervisor}/status").read_text())
        found["supervisor private"] = _private(Path(f"/proc/{supervisor}/smaps_rollup").read_text())
    except OSError:
        return found
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text()
            text = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text.startswith("pasta") and f"PPid:\t{supervisor}\n" in status:
            found["pasta"] = _vmrss(status)
        elif text.startswith("python3 server.py"):
            found["app"] = max(found.get("app", 0.0), _vmrss(status))
    return found


def _private(rollup: str) -> float:
    """MiB of a process's pages no other process maps (its unique set size): what another
    enclave adds, where the resident size also counts the shared libraries' pages."""
    kib = 0
    for line in rollup.splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            kib += int(line.split()[1])
    return kib / 1024


def _vmrss(status: str) -> float:
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def enclave(
    client: httpx.AsyncClient, backend: LocalBackend, image: Path, authority: DevAuthority
) -> tuple[float, float, float, dict[str, float]]:
    start = time.perf_counter()
    info = await backend.start(EnclaveSpec(image=image))
    try:
        document = (await wait_http(client, info.endpoints["attestation"])).content
        attested = time.perf_counter() - start
        verify_nitro(
            document,
            root=authority.root,
            now_ms=int(time.time() * 1000),
            expect=Expectations(image_id=info.image_id),
        )
        verified = time.perf_counter() - start
        await wait_http(client, info.endpoints["ports"][8080] + "/")
        app = time.perf_counter() - start
        state = json.loads((backend.home.enclaves / info.id / "state.json").read_text())
        memory = _rss_mib(state["supervisor_pid"])
    finally:
        await backend.stop(info.id)
        await backend.remove(info.id)
    return attested, verified, app, memory


def kms_root(home: ReefHome, authority: DevAuthority) -> RootServer:
    """A KMS root on loopback whose seeds are sealed under the dev TEE (as tests/enclave's)."""
    pcrs = {0: b"\x0a" * 48, 1: b"\x0b" * 48, 2: b"\x0c" * 48}
    store = SeedStore(home.kms, AeadSealer(authority.sealing_key(image_id(pcrs))))
    root = KmsRoot.open(store, attester=authority.attester(pcrs, clock_ms=wall_clock_ms))
    return RootServer(root, peer_roots=[authority.root], scallop_port=0, public_port=0)


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="reef-bench-") as tmp:
        home = ReefHome(Path(tmp) / "home").ensure()
        authority = DevAuthority.load_or_create(home)
        backend = LocalBackend(home, authority=authority)
        spare = LocalBackend(home, authority=authority, spare=True)
        root = kms_root(home, authority)
        await root.start()
        wired = LocalBackend(home, authority=authority, kms=root.wiring())
        image = Path(tmp) / "hello.img"
        build_image(HELLO, image)
        results: dict[str, list[float]] = {
            key: [] for key in ("bare", "attested", "verified", "app", "spare", "spare_app", "kms")
        }
        memory: dict[str, list[float]] = {}
        async with httpx.AsyncClient(timeout=5) as client:
            await enclave(client, spare, image, authority)  # its first spare loads after it
            for _ in range(rounds):
                # The bare server answers 404 on that path: any HTTP answer means it is up.
                results["bare"].append(await bare(client))
                attested, verified, app, rss = await enclave(client, backend, image, authority)
                for name, mib in rss.items():
                    memory.setdefault(name, []).append(mib)
                results["attested"].append(attested)
                results["verified"].append(verified)
                results["app"].append(app)
                await spare.wait_spare()
                attested, _, app, rss = await enclave(client, spare, image, authority)
                memory.setdefault("supervisor from a spare", []).append(rss.get("supervisor", 0))
                memory.setdefault("supervisor from a spare private", []).append(
                    rss.get("supervisor private", 0)
                )
                results["spare"].append(attested)
                results["spare_app"].append(app)
                attested, _, _, rss = await enclave(client, wired, image, authority)
                memory.setdefault("supervisor with a KMS", []).append(rss.get("supervisor", 0))
                memory.setdefault("supervisor with a KMS private", []).append(
                    rss.get("supervisor private", 0)
                )
                results["kms"].append(attested)
            await spare.aclose()
            await root.aclose()
    labels = {
        "bare": "bare app process, until its port answers",
        "attested": "reef enclave run, until an attestation is answered",
        "verified": "  ... and verified live under the dev root",
        "app": "  ... and the app's own port answers",
        "spare": "with a spare supervisor, until an attestation",
        "spare_app": "  ... and the app's own port answers",
        "kms": "wired to a KMS root, until an attestation",
    }
    print(f"local enclave start-up, {rounds} rounds (seconds)")
    print(f"{'':52} {'best':>8} {'median':>8}")
    for key, label in labels.items():
        values = results[key]
        print(f"{label:52} {min(values):8.3f} {statistics.median(values):8.3f}")
    ratio = statistics.median(results["attested"]) / statistics.median(results["bare"])
    print(f"enclave / bare (median): {ratio:.1f}x")
    resident = {name: values for name, values in memory.items() if "private" not in name}
    print(
        "resident memory per enclave (MiB, median): "
        + ", ".join(
            f"{name} {statistics.median(values):.1f}" for name, values in sorted(resident.items())
        )
    )
    private = {name: values for name, values in memory.items() if "private" in name}
    print(
        "  the supervisor's private part (MiB, median): "
        + ", ".join(
            f"{name.removesuffix(' private')} {statistics.median(values):.1f}"
            for name, values in sorted(private.items())
        )
    )


async def bare(client: httpx.AsyncClient) -> float:
    port = free_port()
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "server.py",
        cwd=HELLO,
        env={**os.environ, "PORT": str(port), "REEF_APP_DIR": str(HELLO)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        end = time.perf_counter() + 30
        while True:
            try:
                await client.get(f"http://127.0.0.1:{port}/nothing")
                break
            except httpx.TransportError:
                if time.perf_counter() > end:
                    raise SystemExit("the bare app did not start") from None
                await asyncio.sleep(0.005)
        return time.perf_counter() - start
    finally:
        process.kill()
        await process.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args().rounds))
