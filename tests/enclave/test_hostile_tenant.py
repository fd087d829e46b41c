"""A hostile tenant's app costs the host no more than its enclave's limits (the hostile round).

tests/enclave/test_escape.py shows that the app cannot get out of its sandbox. These tests run
an app that stays inside and still tries to make the host pay: its debug console (whose lines the
supervisor, a root process outside the enclave's limits, keeps in memory and on the host's disk,
and which the provider reads back when a debug job ends), the kernel's socket buffers (kernel
memory, not the app's pages), and kernel surface the seccomp filter left open. Each test starts
real enclaves of a small probe app and stops them whatever happens.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import platform
import re
import secrets
import subprocess
import sys
import tarfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from dev_tee_support import get, requires_isolation
from net_support import tracked_to_port_80
from reef.attestation import DevAuthority
from reef.enclave import EnclaveInfo, EnclaveSpec, LocalBackend, build_image
from reef.enclave._image import MAX_IMAGE_BYTES
from reef.enclave.local._backend import _console_text
from reef.enclave.local._firewall import (
    CLOSED_TIMEOUT_S,
    MAX_CONNECTIONS,
    MAX_HOST_CONNECTIONS,
    NEW_BURST,
    NEW_PER_SECOND,
)
from reef.enclave.local._limits import HELPER_CPU_SHARE
from reef.enclave.local._supervisor import TRUSTED_BASE_LOG, TRUSTED_BASE_LOG_BYTES
from reef.enclave.local._trusted_base import (
    MAX_CONSOLE_FILE_BYTES,
    MAX_CONSOLE_MEMORY,
    ROTATED_SUFFIX,
    Console,
)
from reef.errors import ImageError
from reef.home import ReefHome

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the dev TEE runs on Linux"),
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the app uses x86_64 syscalls"),
    requires_isolation,
]

# The probe app: runs the probe its PROBE variable names when GET /<probe> comes, answers its
# result as JSON. x86_64 system call numbers.
PROBE_APP = r"""
import ctypes, errno, json, os, socket, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long


def syscall(number, *args):
    result = LIBC.syscall(ctypes.c_long(number), *args)
    err = ctypes.get_errno()
    return {"ok": result >= 0, "errno": errno.errorcode.get(err, str(err)) if result < 0 else ""}


def flood():
    # Lines of undecodable bytes: each becomes U+FFFD, 2 bytes of a Python str in memory and
    # 3 bytes of UTF-8 in the console file, so the supervisor pays more than the app writes.
    line = b"\xff" * 16383 + b"\n"
    for _ in range(int(os.environ["FLOOD_MIB"]) * 64):
        sys.stdout.buffer.write(line)
    sys.stdout.buffer.write(b"flood done\n")
    sys.stdout.buffer.flush()
    return {"ok": True}


def socket_buffers():
    # Connections to itself that nobody reads: what they hold is kernel memory.
    server = socket.create_server(("127.0.0.1", 0), backlog=1024)
    held, total, error = [], 0, ""
    chunk = b"x" * (1 << 20)
    try:
        for _ in range(int(os.environ["CONNECTIONS"])):
            client = socket.create_connection(server.getsockname())
            accepted, _ = server.accept()
            held += [client, accepted]
            client.setblocking(False)
            while True:
                try:
                    total += client.send(chunk)
                except BlockingIOError:
                    break
    except OSError as exc:
        error = errno.errorcode.get(exc.errno or 0, str(exc))
    return {"connections": len(held) // 2, "buffered": total, "error": error}


def io_uring():
    params = ctypes.create_string_buffer(120)  # struct io_uring_params
    return {
        "setup": syscall(425, ctypes.c_uint(4), ctypes.c_void_p(ctypes.addressof(params))),
        "enter": syscall(426, 0, 0, 0, 0, 0, 0),
        "register": syscall(427, 0, 0, 0, 0),
    }


def forge():
    # A lone CR ends a line in server-sent events: inside a console line it would add fields.
    print("forged\rid: 99999\rdata: injected\r\revent: evil\rdata: more", flush=True)
    print("after the forgery", flush=True)
    return {"ok": True}


def flip():
    # Names in /state that are a directory one moment and a link to a host path (meaningless in
    # here, but not to a root process on the host walking /state) the next: renameat2 swaps
    # each pair atomically, over and over, from a thread.
    import threading

    base = "/state/race"
    os.makedirs(base, exist_ok=True)
    pairs = []
    for i in range(64):
        real, alt = f"{base}/d{i:02d}", f"{base}/d{i:02d}.alt"
        if not os.path.lexists(real):
            os.mkdir(real)
        if not os.path.lexists(alt):
            os.symlink(os.environ["HOST_DIR"], alt)
        pairs.append((real.encode(), alt.encode()))

    def swap():
        while True:
            for a, b in pairs:
                LIBC.syscall(316, -100, a, -100, b, 2)  # renameat2(..., RENAME_EXCHANGE)

    threading.Thread(target=swap, daemon=True).start()
    return {"ok": True}


def refusals():
    # Hold as many connections to the sealing service as one peer may, then have the serving
    # floor refuse more, each one logged by the supervisor.
    held = [socket.create_connection(("127.0.0.1", 1210)) for _ in range(128)]
    refused = 0
    for _ in range(int(os.environ["REFUSALS"])):
        with socket.create_connection(("127.0.0.1", 1210)) as extra:
            refused += extra.recv(64).startswith(b"HTTP/1.1 503")
    for sock in held:
        sock.close()
    return {"refused": refused}


HELD = []


def hold():
    # Connections to another enclave's published port (its attestation server), kept open.
    port = int(os.environ["TARGET_PORT"])
    for _ in range(int(os.environ["HOLD"])):
        try:
            HELD.append(socket.create_connection((os.environ["REEF_HOST_ADDR"], port), 3))
        except OSError:
            break
    return {"held": len(HELD)}


def spread():
    # Connections to many addresses elsewhere (in 198.18.0.0/15, a benchmarking range nobody
    # answers), left half-open: each is a connection pasta opens from the host. Port 80: some
    # hosts let little else out.
    base = int(os.environ["SPREAD_BASE"])
    sockets = []
    for i in range(base, base + int(os.environ["SPREAD"])):
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.connect((f"198.{18 + (i >> 16)}.{i >> 8 & 255}.{i & 255}", 80))
        except (BlockingIOError, OSError):
            pass
        sockets.append(sock)
    HELD.extend(sockets)
    return {"opened": len(sockets)}


def attest():
    # Attestation documents from the enclave's own trusted base, as fast as four kept-alive
    # connections get them: each costs the supervisor (on the host) a P-384 signature.
    import http.client, threading, time

    end = time.monotonic() + float(os.environ["ATTEST_SECONDS"])
    counts = []

    def ask():
        conn, n = http.client.HTTPConnection("127.0.0.1", 1300, timeout=10), 0
        while time.monotonic() < end:
            conn.request("GET", "/attestation/raw")
            n += bool(conn.getresponse().read())
        counts.append(n)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"documents": sum(counts)}


PROBES = {
    "attest": attest,
    "spread": spread,
    "hold": hold,
    "refusals": refusals,
    "flood": flood,
    "socket_buffers": socket_buffers,
    "io_uring": io_uring,
    "forge": forge,
    "flip": flip,
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        name = self.path.strip("/")
        body = json.dumps(PROBES[name]() if name in PROBES else {"ready": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        return None


print("probe app ready", flush=True)
HTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""


@pytest.fixture
def backend(reef_home: Path, authority: DevAuthority) -> LocalBackend:
    return LocalBackend(ReefHome(reef_home), authority=authority)


def probe_image(tmp_path: Path, **env: str) -> Path:
    """The probe app's image, with ``env`` in its reef.toml (built once per test)."""
    image = tmp_path / "probe.img"
    if image.exists():
        return image
    src = tmp_path / "probe"
    src.mkdir()
    (src / "app.py").write_text(PROBE_APP)
    variables = "".join(f'{name} = "{value}"\n' for name, value in env.items())
    (src / "reef.toml").write_text(
        'name = "probe"\ncommand = ["python3", "app.py"]\nports = [8080]\nmemory_mib = 128\n'
        f"[env]\n{variables}"
    )
    build_image(src, image)
    return image


@asynccontextmanager
async def probe_enclave(
    backend: LocalBackend, tmp_path: Path, *, debug: bool = False, **env: str
) -> AsyncIterator[EnclaveInfo]:
    """A running enclave of the probe app (with ``env`` in its reef.toml), stopped on exit."""
    image = probe_image(tmp_path, **env)
    info = await backend.start(EnclaveSpec(image=image, debug=debug))
    try:
        await get(info.endpoints["ports"][8080] + "/", attempts=100)
        yield info
    finally:
        await backend.stop(info.id)


async def probe(info: EnclaveInfo, name: str) -> dict[str, object]:
    answer = await get(info.endpoints["ports"][8080] + f"/{name}", request_timeout=120)
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


def _rss(pid: int) -> int:
    """A process's resident memory in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


FLOOD_MIB = 48


@pytest.mark.slow
async def test_a_console_flood_is_bounded_on_disk_and_in_the_supervisor(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """A debug app prints 48 MiB of undecodable lines. Before: its supervisor (root, outside the
    enclave's limits) kept 10 000 lines of up to 16 KiB as str, +100 MiB of memory; the console
    file grew by three bytes per byte printed (144 MiB), without end; and ``logs()``, which the
    provider calls when a debug job ends, read it all into memory."""
    async with probe_enclave(backend, tmp_path, debug=True, FLOOD_MIB=str(FLOOD_MIB)) as info:
        run_dir = backend.home.enclaves / info.id
        supervisor = json.loads((run_dir / "state.json").read_text())["supervisor_pid"]
        before = _rss(supervisor)
        followed: list[str] = []

        async def follow() -> None:
            async for line in backend.follow(info.id, poll=0.05):
                followed.append(line)
                if line == "flood done":
                    return

        follower = asyncio.create_task(follow())
        assert await probe(info, "flood") == {"ok": True}
        logs = ""
        for _ in range(600):
            logs = await backend.logs(info.id)
            if logs.endswith("flood done\n"):
                break
            await asyncio.sleep(0.1)
        assert logs.endswith("flood done\n"), logs[-200:]
        grown = _rss(supervisor) - before
        assert grown < MAX_CONSOLE_MEMORY + (24 << 20), f"the supervisor grew by {grown >> 20} MiB"
        on_disk = sum(p.stat().st_size for p in run_dir.glob("console.log*"))
        assert on_disk <= 2 * MAX_CONSOLE_FILE_BYTES + (64 << 10), on_disk
        assert len(logs.encode()) <= 2 * MAX_CONSOLE_FILE_BYTES + (64 << 10)
        # The console still numbers every line, and still serves its newest ones.
        assert info.endpoints["logs"] is not None
        logs_url = info.endpoints["logs"].rsplit("/logs", 1)[0]
        async with httpx.AsyncClient(timeout=10) as http:
            tail = (await http.get(logs_url + "/logs/tail-log-id")).json()["log_id"]
            history = (await http.get(logs_url + "/logs/history?offset=2")).json()
        assert tail == FLOOD_MIB * 64 + 1  # "probe app ready", the flood, "flood done"
        assert [entry["line"] for entry in history][-1] == "flood done"
        # A follower (`reef enclave logs -f`) saw the console through its rotations, in whole
        # lines only.
        await asyncio.wait_for(follower, 60)
        assert followed[0] == "probe app ready"
        assert followed[-1] == "flood done"
        assert {len(line) for line in followed[1:-1]} == {16383}
        # The enclave kept serving throughout.
        assert (await backend.status(info.id)).state == "running"
        assert await probe(info, "ready") == {"ready": True}


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
async def test_the_work_an_app_asks_of_its_supervisor_is_within_a_cpu_quota(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """An app of one vCPU asks its trusted base for attestation documents without pause. Before:
    its supervisor (root, on the host, outside the enclave's groups) signed them with a whole
    second CPU, so one enclave cost the host two. The supervisor and pasta, the host processes
    that work for one enclave, now share half a CPU per vCPU."""
    seconds = 4.0
    async with probe_enclave(backend, tmp_path, ATTEST_SECONDS=str(seconds)) as info:
        state = json.loads((backend.home.enclaves / info.id / "state.json").read_text())
        supervisor = state["supervisor_pid"]
        before = _cpu_seconds(supervisor)
        started = time.monotonic()
        asked = await probe(info, "attest")
        spent = _cpu_seconds(supervisor) - before
        wall = time.monotonic() - started
        assert isinstance(asked["documents"], int)
        assert asked["documents"] > 50, asked  # the app did get documents throughout
        if state["limits"]["method"] == "rlimit":
            pytest.skip("no writable cpu cgroup on this machine: the supervisor has no quota")
        assert spent <= HELPER_CPU_SHARE * wall + 0.3, (
            f"the supervisor used {spent:.2f} CPU-seconds in {wall:.2f} s"
        )
        # Both helpers sit in the group that carries the quota.
        helpers: set[int] = set()
        for group in map(Path, state["limits"]["helper_groups"]):
            helpers |= {int(p) for p in (group / "cgroup.procs").read_text().split()}
        assert {supervisor, state["pasta_pid"]} <= helpers
        assert (await backend.status(info.id)).state == "running"


async def test_socket_buffers_count_against_the_enclave_memory(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """An app of 128 MiB fills 64 loopback connections it never reads. Before: the kernel held
    about 240 MiB of TCP buffers for it (with more connections, up to the host's whole TCP
    memory, which then fails every socket on the host), none of it counted in its limit."""
    async with probe_enclave(backend, tmp_path, CONNECTIONS="64") as info:
        state = json.loads((backend.home.enclaves / info.id / "state.json").read_text())
        if state["limits"]["method"] == "rlimit":
            pytest.skip("without a memory cgroup, nothing bounds kernel memory")
        result = await probe(info, "socket_buffers")
        assert result["connections"] == 64 or result["error"], result
        assert isinstance(result["buffered"], int)
        assert result["buffered"] <= 128 << 20, f"{result['buffered'] >> 20} MiB buffered"
        assert (await backend.status(info.id)).state == "running"


async def test_io_uring_is_refused(backend: LocalBackend, tmp_path: Path) -> None:
    """io_uring is a second way into most of the kernel (files, sockets, its own code), the
    source of many local privilege escalations; container runtimes refuse it. Before: the app
    reached it (io_uring_setup answered, not EPERM)."""
    async with probe_enclave(backend, tmp_path) as info:
        result = await probe(info, "io_uring")
    for call in ("setup", "enter", "register"):
        assert result[call] == {"ok": False, "errno": "EPERM"}, (call, result)


def test_a_console_file_of_any_size_is_read_from_its_end_only(tmp_path: Path) -> None:
    """A console.log of 4 GiB (sparse: one written before consoles rotated, or grown by hand):
    ``logs()`` reads twice the rotation size from its end, beginning at a whole line."""
    path = tmp_path / "console.log"
    with path.open("wb") as out:
        out.truncate(4 << 30)
        out.seek(0, 2)
        out.write(b"\nnext to last\nlast\n")
    (tmp_path / f"console.log{ROTATED_SUFFIX}").write_bytes(b"older\n")
    text = _console_text(path)
    assert len(text) <= 2 * MAX_CONSOLE_FILE_BYTES
    assert text.endswith("next to last\nlast\n")
    assert "older" not in text


def test_the_console_rotates_and_forgets_by_size(tmp_path: Path) -> None:
    console = Console(tmp_path / "console.log", max_memory=64 << 10, max_file_bytes=100 << 10)
    for n in range(40):
        console.append(f"{n:02d}" + "\ufffd" * 8190)  # 8192 characters, 24 KiB of UTF-8
    console.close()
    sizes = [p.stat().st_size for p in sorted(tmp_path.glob("console.log*"))]
    assert len(sizes) == 2
    assert all(size <= 100 << 10 for size in sizes)
    assert console.last_id == 39  # numbering is kept
    kept = console.history(None, 1000)
    assert kept[-1]["log_id"] == 39
    assert 1 <= len(kept) <= 4  # 64 KiB of 16 KiB strings
    assert _console_text(tmp_path / "console.log").splitlines()[-1].startswith("39")


def _sse_events(text: str) -> list[dict[str, str]]:
    """Server-sent events as a browser's EventSource parses them (HTML, "Interpreting an event
    stream"): lines end at CR LF, LF or a lone CR; a blank line ends an event; comments skipped."""
    events: list[dict[str, str]] = []
    event: dict[str, str] = {}
    for line in re.split(r"\r\n|\r|\n", text):
        if not line:
            if event:
                events.append(event)
            event = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        event[name] = event[name] + "\n" + value if name in event and name == "data" else value
    return events


async def test_a_console_line_cannot_forge_events_on_the_console_stream(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """Oyster's logger API streams each console line as ``data:``. A line with a lone CR ended
    the field for an EventSource there: the app added events, ids and event types of its choice
    to the stream that the job's owner (and any Oyster log client) reads."""
    async with probe_enclave(backend, tmp_path, debug=True) as info:
        assert await probe(info, "forge") == {"ok": True}
        assert info.endpoints["logs"] is not None
        stream_url = info.endpoints["logs"].rsplit("/logs", 1)[0] + "/logs/stream"
        received = ""
        async with (
            httpx.AsyncClient(timeout=10) as http,
            http.stream("GET", stream_url, params={"start_from": 0}) as stream,
        ):
            async for chunk in stream.aiter_text():
                received += chunk
                if "after the forgery" in received:
                    break
    events = _sse_events(received)
    assert [e.get("id") for e in events] == ["0", "1", "2"], events
    assert all(set(e) == {"id", "data"} for e in events), events
    assert events[0]["data"] == "probe app ready"
    # The line arrives whole, its CRs as the LFs a client joins data lines with.
    assert events[1]["data"] == "forged\nid: 99999\ndata: injected\n\nevent: evil\ndata: more"
    assert events[2]["data"] == "after the forgery"


@pytest.mark.slow
async def test_a_running_app_cannot_make_a_booting_supervisor_chown_host_files(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """Enclaves of one image share /state, and every boot makes its files the app's own: as root,
    on the host, while another enclave of the image may be running. That app swapped directories
    of /state with links to a host directory: the walk listed a directory, then descended
    through the link, and chowned the host's files to the app's user (any file: /etc/shadow, the
    dev TEE's root key)."""
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    victim = host_dir / "victim"
    victim.write_text("the host's")
    async with probe_enclave(backend, tmp_path, HOST_DIR=str(host_dir)) as racer:
        assert await probe(racer, "flip") == {"ok": True}
        for _ in range(2):
            booted = await backend.start(EnclaveSpec(image=probe_image(tmp_path)))
            await backend.stop(booted.id)
            assert victim.stat().st_uid == 0, "a host file was chowned to the app's user"
        assert (await backend.status(racer.id)).state == "running"
    assert victim.read_text() == "the host's"


@pytest.mark.slow
async def test_refusals_the_app_provokes_are_logged_within_a_bound(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """The serving floor logs one line per refusal, and the supervisor had no handler of its own:
    every line went to supervisor.out on the host's disk. An app (a production one, whose console
    goes nowhere) held 128 connections to its sealing service and opened more, each refused and
    logged: about 100 KB a second, without end."""
    async with probe_enclave(backend, tmp_path, REFUSALS="6000") as info:
        result = await probe(info, "refusals")
        assert result == {"refused": 6000}
        run_dir = backend.home.enclaves / info.id
        logs = sorted(run_dir.glob(TRUSTED_BASE_LOG + "*"))
        assert [p.name for p in logs] == [TRUSTED_BASE_LOG, TRUSTED_BASE_LOG + ".1"]
        assert all(p.stat().st_size <= TRUSTED_BASE_LOG_BYTES for p in logs)
        assert "refused a connection from 127.0.0.1" in logs[0].read_text()
        assert (run_dir / "supervisor.out").stat().st_size < 4096
        # The sealing service still serves the app once it lets go.
        assert await probe(info, "ready") == {"ready": True}
        assert (await backend.status(info.id)).state == "running"


async def test_an_image_command_cannot_probe_the_hosts_files(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """The image's command is checked on the host before the enclave starts, by host path. A
    command climbing out of /image (``../../..``) was checked against the host's own files, as
    root: "not executable" for a file that exists, "does not exist" for one that does not, an
    answer about the provider's disk for whoever wrote the image."""
    present = tmp_path / "host-secret"
    present.write_text("the host's")
    errors = []
    for target in (present, tmp_path / "absent"):
        src = tmp_path / f"climb-{target.name}"
        src.mkdir()
        command = "../" * 32 + str(target).lstrip("/")
        (src / "reef.toml").write_text(f'name = "climb"\ncommand = ["{command}"]\n')
        image = tmp_path / f"climb-{target.name}.img"
        build_image(src, image)
        with pytest.raises(ImageError) as refused:
            await backend.start(EnclaveSpec(image=image))
        errors.append(refused.value.message.replace(command, "COMMAND"))
    assert errors[0] == errors[1] == "the image's command 'COMMAND' does not exist in the enclave"
    assert await backend.list() == [] or all(i.state != "running" for i in await backend.list())


@pytest.mark.slow
async def test_one_enclave_cannot_hold_another_enclaves_attestation_port(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """Enclaves reach each other's published ports through the host, and each arrives through
    the target's pasta as 127.0.0.1: the serving floor's cap of connections per peer is one
    cap for all of them. An enclave holding 130 connections to another's attestation port got
    every other client of it (its verifiers, the host) refused. Now the host's firewall caps the
    connections one enclave holds to the host's addresses below that."""
    (tmp_path / "victim").mkdir()
    victim = await backend.start(EnclaveSpec(image=probe_image(tmp_path / "victim")))
    try:
        port = int(victim.endpoints["attestation"].rsplit(":", 1)[1].split("/")[0])
        async with probe_enclave(backend, tmp_path, TARGET_PORT=str(port), HOLD="130") as racer:
            held = await probe(racer, "hold")
            assert 0 < int(held["held"]) <= MAX_HOST_CONNECTIONS, held  # type: ignore[call-overload]
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await http.get(victim.endpoints["attestation"])
            assert answer.status_code == 200, (held, answer.status_code)
            assert (await backend.status(racer.id)).state == "running"
            # A second enclave of the tenant's, holding as many: the attestation servers' cap
            # per peer is above what a few enclaves may hold together.
            async with probe_enclave(
                backend, tmp_path, TARGET_PORT=str(port), HOLD="130"
            ) as second:
                assert (await probe(second, "hold"))["held"] == held["held"]
                async with httpx.AsyncClient(timeout=10) as http:
                    answer = await http.get(victim.endpoints["attestation"])
                assert answer.status_code == 200, answer.status_code
    finally:
        await backend.stop(victim.id)


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        size = min(len(buffer), self.left)
        buffer[:size] = bytes(size)
        self.left -= size
        return size


def _bomb(path: Path, size: int) -> None:
    """A well-formed reef image (sorted pax entries, mode 0644, no owner or time) whose one file
    is ``size`` zero bytes: a few MB on the wire. Written with tarfile, not reef's builder."""
    manifest = b'name = "bomb"\ncommand = ["python3", "app.py"]\n'
    with (
        path.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, length, data in (
            ("big", size, io.BufferedReader(_Zeros(size))),
            ("reef.toml", len(manifest), io.BytesIO(manifest)),
        ):
            info = tarfile.TarInfo(name)
            info.mode, info.mtime, info.size = 0o644, 0, length
            tar.addfile(info, data)


_LOAD = """
import json, sys
from pathlib import Path
from reef.enclave import load_image
from reef.errors import ImageError
try:
    load_image(Path(sys.argv[1]))
    error = None
except ImageError as exc:
    error = exc.message
# VmHWM, this program's own peak (ru_maxrss would count its parent's, from before exec).
status = Path("/proc/self/status").read_text().split("VmHWM:")[1]
print(json.dumps({"error": error, "peak": int(status.split()[0]) * 1024}))
"""


@pytest.mark.slow
def test_a_decompression_bomb_image_is_refused_before_it_costs_a_gigabyte(
    tmp_path: Path,
) -> None:
    """Whoever launches an image (a provider, for a tenant's job) loads it whole into memory,
    twice over while it unpacks. The cap was 4 GiB unpacked: a 3 MB image of 640 MiB of zeros
    was accepted after costing its loader 1.3 GB (a 4 GiB one, 8 GB and minutes of CPU). The cap
    is now the image store's upload cap, 512 MiB."""
    bomb = tmp_path / "bomb.img"
    _bomb(bomb, 640 << 20)
    assert bomb.stat().st_size < 8 << 20
    done = subprocess.run(
        [sys.executable, "-c", _LOAD, str(bomb)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["error"] is not None, "the bomb was accepted"
    assert f"more than {MAX_IMAGE_BYTES} bytes" in result["error"]
    assert result["peak"] < MAX_IMAGE_BYTES + (256 << 20), result
    # An image file too large to unpack within the cap (the market downloads up to 4 GiB) is
    # refused by its size, not read whole into memory first.
    huge = tmp_path / "huge.img"
    with huge.open("wb") as out:
        out.truncate(2 << 30)  # sparse
    done = subprocess.run(
        [sys.executable, "-c", _LOAD, str(huge)], capture_output=True, text=True, timeout=300
    )
    result = json.loads(done.stdout)
    assert f"more than {MAX_IMAGE_BYTES} bytes" in result["error"]
    assert result["peak"] < 256 << 20, result
    # The builder refuses what loading would.
    app = tmp_path / "big-app"
    app.mkdir()
    (app / "reef.toml").write_text('name = "big"\ncommand = ["python3", "app.py"]\n')
    with (app / "data").open("wb") as data:
        data.truncate(MAX_IMAGE_BYTES)
    with pytest.raises(ImageError, match=f"more than {MAX_IMAGE_BYTES} bytes"):
        build_image(app, tmp_path / "big.img")
    assert not (tmp_path / "big.img").exists()


_CLOSED_STATES = ("CLOSE", "TIME_WAIT")


def _tracked_total(first: int, count: int) -> int:
    """Connections to port 80 of the ``count`` addresses from 198.18.0.0 + ``first`` that the
    host's conntrack table holds."""
    return sum(tracked_to_port_80(first, count).values())


@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/proc/net/nf_conntrack").exists(), reason="no /proc/net/nf_conntrack to count in"
)
async def test_one_enclave_cannot_fill_the_hosts_connection_tracking(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """Every connection the app opens is one pasta opens from the host, and one entry of the
    host's connection-tracking table (the firewall tracks them), kept for two minutes after an
    unanswered SYN. An app opening 6000 half-open connections a second added 6000 entries: one
    enclave filled the table (262 144 here) in under a minute, and the host then dropped every
    new connection, its own and every enclave's."""
    spread = 6000
    first = secrets.randbelow((1 << 17) - spread)  # not the addresses of an earlier run
    async with probe_enclave(backend, tmp_path, SPREAD=str(spread), SPREAD_BASE=str(first)) as info:
        assert await probe(info, "spread") == {"opened": spread}
        # pasta opens each as its SYN comes: count once the count stops growing.
        tracked, previous = _tracked_total(first, spread), -1
        while tracked != previous:
            await asyncio.sleep(1)
            tracked, previous = _tracked_total(first, spread), tracked
        # The cap counts what is open; a connection pasta has closed (CLOSE, TIME_WAIT) is
        # uncounted by design and gone within CLOSED_TIMEOUT_S, its number bounded by the rate
        # of new connections (NEW_PER_SECOND, NEW_BURST) instead.
        states = tracked_to_port_80(first, spread)
        held = sum(n for state, n in states.items() if state not in _CLOSED_STATES)
        assert 0 < held <= MAX_CONNECTIONS, states
        closed_at_most = NEW_BURST + NEW_PER_SECOND * CLOSED_TIMEOUT_S
        assert tracked <= MAX_CONNECTIONS + closed_at_most, states
        assert await probe(info, "ready") == {"ready": True}


# -- the dev TEE's sealing client reads bounded answers -------------------------------------------


@pytest.mark.parametrize("route", ["seal", "unseal"])
def test_the_sealing_client_gives_up_on_a_trickled_head(route: str) -> None:
    """``$REEF_SEALING_URL`` is whatever the environment says, and the KMS root calls it as it
    starts: an answer whose head never ends must not hold the caller for ever (httpx's timeout
    bounds each read, and each byte comes well within it)."""
    from net_support import drip, ends, raw_server_in_thread
    from reef.enclave import DevTeeSealer
    from reef.errors import ServiceError

    with raw_server_in_thread(drip(b"HTTP/1.1 200 OK\r\nx-slow: ")) as url:
        sealer = DevTeeSealer(url, timeout=1.0)
        outcome = ends(lambda: getattr(sealer, route)(b"seed"))
    assert isinstance(outcome, ServiceError), outcome
    assert "within 1 s" in outcome.message


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "close-delimited"])
def test_the_sealing_client_reads_no_gigabyte(declared: bool) -> None:
    """A gigabyte for an answer is refused after at most the bound (a sealed seed is bytes),
    whether its length is declared or not."""
    from net_support import SENT_AT_MOST, Sent, ends, gigabyte, raw_server_in_thread
    from reef._fetch import FetchError
    from reef.enclave import DevTeeSealer

    sent = Sent()
    with raw_server_in_thread(gigabyte(sent, declared=declared)) as url:
        outcome = ends(lambda: DevTeeSealer(url, timeout=10.0).unseal(b"\x01" + bytes(40)))
    assert isinstance(outcome, FetchError), outcome
    assert outcome.reason == "too_large"
    assert sent.bytes < SENT_AT_MOST
