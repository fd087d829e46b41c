"""What a hostile app makes the host side of its enclave hold or do (the third isolation round).

tests/enclave/test_escape.py shows the app cannot leave its sandbox, and
tests/enclave/test_hostile_tenant.py that what it makes its supervisor and the kernel spend is
bounded. This file is about the host processes that serve one enclave's network: pasta, which
parses every packet the app sends, and the firewall that tells pasta's sockets apart by group id.
Each test starts real enclaves of a small probe app through the local backend and stops them
whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from dev_tee_support import get, requires_isolation
from net_support import tracked_to_port_80
from reef.attestation import DevAuthority
from reef.enclave import EnclaveInfo, EnclaveSpec, LocalBackend, build_image
from reef.enclave.local._firewall import pasta_gid
from reef.home import ReefHome

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the dev TEE runs on Linux"),
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the dev TEE is tested on x86_64"),
    requires_isolation,
]

# The probe app: GET /reach?proto=tcp|udp&host=H&port=P tries to reach H:P from inside and
# answers what happened; GET / answers that it is ready.
PROBE_APP = r"""
import json, os, socket
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse


def reach(proto, host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        if proto == "udp":
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.settimeout(2)
                for _ in range(5):
                    s.sendto(b"hello from the enclave", (host, port))
                try:
                    return {"ok": True, "answer": s.recv(64).decode(errors="replace")}
                except OSError as exc:
                    return {"ok": False, "sent": True, "error": type(exc).__name__}
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect((host, port))
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = s.recv(64)
            return {"ok": bool(data), "answer": data.decode(errors="replace")}
    except OSError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}


def ping_sockets():
    # ICMP echo without privilege (a ping socket): what pasta's ICMP path would parse.
    out = {}
    for name, family, proto in (("v4", socket.AF_INET, socket.IPPROTO_ICMP),
                                ("v6", socket.AF_INET6, socket.IPPROTO_ICMPV6)):
        try:
            socket.socket(family, socket.SOCK_DGRAM, proto).close()
            out[name] = "opened"
        except OSError as exc:
            out[name] = type(exc).__name__
    return out


def gateway6():
    # The namespace's IPv6 default gateway (pasta maps it to the host's ::1, as it maps the
    # IPv4 one to 127.0.0.1), from the kernel's routing table.
    with open("/proc/net/ipv6_route") as routes:
        for line in routes:
            fields = line.split()
            if fields[0] == "0" * 32 and fields[1] == "00" and fields[4] != "0" * 32:
                raw = fields[4]
                address = ":".join(raw[i:i + 4] for i in range(0, 32, 4))
                # A link-local router is reached through its interface.
                return address + (f"%{fields[9]}" if raw.startswith("fe80") else "")
    return ""


def churn(base, seconds, batch):
    # Connections to port 80 of addresses elsewhere (198.18.0.0/15, a benchmarking range), in
    # batches of `batch`: opened together, closed once answered, over and over. The app holds
    # few at once; every one it closed is a connection pasta closed on the host.
    import select, time

    end = time.monotonic() + seconds
    made = answered = 0
    while made == 0 or time.monotonic() < end:
        sockets = []
        for i in range(batch):
            n = base + (made + i) % 60000
            sock = socket.socket()
            sock.setblocking(False)
            try:
                sock.connect((f"198.{18 + (n >> 16)}.{n >> 8 & 255}.{n & 255}", 80))
            except (BlockingIOError, OSError):
                pass
            sockets.append(sock)
        made += batch
        deadline = time.monotonic() + 2
        pending = list(sockets)
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], pending, [], 0.1)
            for sock in writable:
                pending.remove(sock)
                answered += sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        for sock in sockets:
            sock.close()
    return {"made": made, "answered": answered}


HELD = []


def hold(host, port, count):
    # Connections kept open and never read.
    for _ in range(count):
        try:
            HELD.append(socket.create_connection((host, port), 3))
        except OSError as exc:
            return {"held": len(HELD), "error": str(exc)}
    return {"held": len(HELD)}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/reach":
            result = reach(query["proto"], query["host"], int(query["port"]))
        elif url.path == "/churn":
            result = churn(int(query["base"]), float(query["seconds"]), int(query["batch"]))
        elif url.path == "/hold":
            result = hold(query["host"], int(query["port"]), int(query["count"]))
        elif url.path == "/ping":
            result = ping_sockets()
        elif url.path == "/gateway6":
            result = {"gateway6": gateway6(), "host4": os.environ.get("REEF_HOST_ADDR", "")}
        else:
            result = {"ready": True}
        body = json.dumps(result).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        return None


HTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""


@pytest.fixture
def backend(reef_home: Path, authority: DevAuthority) -> LocalBackend:
    return LocalBackend(ReefHome(reef_home), authority=authority)


def probe_image(tmp_path: Path) -> Path:
    image = tmp_path / "probe.img"
    if not image.exists():
        src = tmp_path / "probe"
        src.mkdir()
        (src / "app.py").write_text(PROBE_APP)
        (src / "reef.toml").write_text(
            'name = "host-probe"\ncommand = ["python3", "app.py"]\nports = [8080]\n'
            "memory_mib = 128\n"
        )
        build_image(src, image)
    return image


@asynccontextmanager
async def probe_enclave(
    backend: LocalBackend, tmp_path: Path, **spec: object
) -> AsyncIterator[EnclaveInfo]:
    info = await backend.start(EnclaveSpec(image=probe_image(tmp_path), **spec))  # type: ignore[arg-type]
    try:
        await get(info.endpoints["ports"][8080] + "/", attempts=100)
        yield info
    finally:
        await backend.stop(info.id)


async def ask(info: EnclaveInfo, path: str, **params: object) -> dict[str, object]:
    """One GET of the probe app (asked once: a probe is not repeated when it takes long)."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    url = info.endpoints["ports"][8080] + path + (f"?{query}" if query else "")
    answer = await get(url, attempts=0, request_timeout=120)
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


class HostServices:
    """A TCP and a UDP service on every host address, IPv4 and IPv6 (as the devnet or the
    image store would be), counting who reached them."""

    def __init__(self) -> None:
        self.tcp_hits = 0
        self.udp_hits = 0
        self.tcp = socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True)
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.udp.bind(("::", self.port))
        threading.Thread(target=self._serve_tcp, daemon=True).start()
        threading.Thread(target=self._serve_udp, daemon=True).start()

    def _serve_tcp(self) -> None:
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                self.tcp_hits += 1
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhost only")

    def _serve_udp(self) -> None:
        while True:
            try:
                _, peer = self.udp.recvfrom(64)
            except OSError:
                return
            self.udp_hits += 1
            self.udp.sendto(b"host only", peer)

    def close(self) -> None:
        self.tcp.close()
        self.udp.close()


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


@pytest.mark.slow
async def test_pasta_holds_no_host_privilege_and_the_firewall_still_knows_its_sockets(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """pasta parses every packet the app sends, and ran as uid 0 on the host with
    CAP_SYS_ADMIN and CAP_NET_BIND_SERVICE in the host's user namespace: a memory-safety bug in
    it was host root for a tenant. It now runs as the enclave's own unprivileged id, with
    capabilities only in a user namespace of its own (which owns the enclave's network
    namespace and nothing else), under no_new_privs and its seccomp filter. Its sockets still
    carry the enclave's group id, so the host firewall still refuses it the host's services
    (over TCP and UDP, IPv4 and IPv6) and still admits the host port it was given."""
    services = HostServices()
    given = socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True)
    given_port = given.getsockname()[1]
    given_hits: list[bytes] = []

    def serve_given() -> None:
        while True:
            try:
                conn, _ = given.accept()
            except OSError:
                return
            with conn:
                given_hits.append(conn.recv(64))
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\ngiven")

    threading.Thread(target=serve_given, daemon=True).start()
    try:
        async with probe_enclave(backend, tmp_path, allow_host_ports=(given_port,)) as info:
            state_path = backend.home.enclaves / info.id / "state.json"
            state = json.loads(state_path.read_text())
            pasta = _status(int(state["pasta_pid"]))
            gid = pasta_gid(info.id)
            assert pasta["Uid"].split() == [str(gid)] * 4, pasta["Uid"]
            assert pasta["Gid"].split() == [str(gid)] * 4, pasta["Gid"]
            assert pasta["Groups"] == ""
            assert pasta["NoNewPrivs"] == "1"
            assert pasta["Seccomp"] == "2"
            # Whatever capabilities it holds are in a user namespace other than the host's.
            own_userns = os.readlink(f"/proc/{os.getpid()}/ns/user")
            assert os.readlink(f"/proc/{state['pasta_pid']}/ns/user") != own_userns
            assert not any("runs as root" in w for w in state["warnings"]), state["warnings"]

            where = await ask(info, "/gateway6")
            host4, host6 = str(where["host4"]), str(where["gateway6"])
            assert host4, where
            tries = [("tcp", host4), ("udp", host4)]
            if host6:
                tries += [("tcp", host6), ("udp", host6)]
            for proto, host in tries:
                result = await ask(info, "/reach", proto=proto, host=host, port=services.port)
                assert result["ok"] is False, (proto, host, result)
            assert services.tcp_hits == 0
            assert services.udp_hits == 0
            # Nor can it send ICMP for pasta to parse and answer from the host.
            assert await ask(info, "/ping") == {"v4": "PermissionError", "v6": "PermissionError"}
            # The host port it was given (its gid . port element) still lets it through, by
            # the same paths: the refusals above were the firewall's.
            for host in [host4, host6] if host6 else [host4]:
                result = await ask(info, "/reach", proto="tcp", host=host, port=given_port)
                assert result["ok"] is True, (host, result)
            assert len(given_hits) == (2 if host6 else 1)
            assert all(hit.startswith(b"GET / HTTP/1.0") for hit in given_hits)
            assert (await backend.status(info.id)).state == "running"
    finally:
        services.close()
        given.close()


@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/proc/net/nf_conntrack").exists(), reason="no /proc/net/nf_conntrack to count in"
)
async def test_closed_connections_cannot_fill_the_hosts_connection_tracking(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """The firewall caps the connections an enclave holds open (``ct count``), and the kernel
    counts no connection in TIME_WAIT or CLOSE there: each one pasta closed stayed in the host's
    connection-tracking table two minutes (TIME_WAIT) or ten seconds (CLOSE), uncounted. An app
    that opened and closed connections in batches of 400, never holding more, left over 4096
    entries within seconds, and at its pace filled the host's table (262 144 here) in minutes:
    the host then dropped every new connection, its own and every enclave's. Now pasta's closed
    connections are forgotten after 2 s and an enclave opens at most 500 a second (burst 1000),
    so what one enclave leaves in the table stays below the cap."""
    from reef.enclave.local._firewall import MAX_CONNECTIONS

    first = secrets.randbelow((1 << 17) - 60000)
    async with probe_enclave(backend, tmp_path) as info:
        result = await ask(info, "/churn", base=first, seconds=10, batch=400)
        states = tracked_to_port_80(first, 60000, tcp_only=True)
        if not result["answered"]:
            pytest.skip("nothing beyond this host answers port 80: no connection to close")
        assert sum(states.values()) <= MAX_CONNECTIONS, (result, states)
        # The enclave still makes connections (refused ones are its own excess).
        again = await ask(info, "/churn", base=first, seconds=0, batch=10)
        assert again == {"made": 10, "answered": 10}, again
        assert (await backend.status(info.id)).state == "running"


def test_pasta_argv_runs_as_the_enclave_id_in_its_own_user_namespace(tmp_path: Path) -> None:
    """Given the user namespace that owns the enclave's network (an inherited descriptor),
    pasta runs as the enclave's id, user and group; without it (a host port below 1024 to
    bind), root with the enclave's group, as before."""
    from reef.enclave.local._network import pasta_argv

    argv = pasta_argv("reef-x", [(40001, 1300)], pid_file=tmp_path / "p", gid=77, userns_fd=9)
    assert argv[argv.index("--runas") + 1] == "77:77"
    assert argv[argv.index("--userns") + 1] == "/proc/self/fd/9"
    assert argv[argv.index("--netns") + 1] == "reef-x"
    rooted = pasta_argv("reef-x", [(80, 8080)], pid_file=tmp_path / "p", gid=77)
    assert rooted[rooted.index("--runas") + 1] == "0:77"
    assert "--userns" not in rooted


def _pasta_socket_memory(pid: int) -> tuple[int, int]:
    """How many TCP sockets pasta (``pid``) has on the host, and the bytes queued in them
    (``ss``'s ``skmem`` r and t: received and not yet read, sent and not yet acknowledged)."""
    lines = subprocess.run(["ss", "-tmnpH"], capture_output=True, text=True).stdout.splitlines()
    count = queued = 0
    for i, line in enumerate(lines):
        if f"pid={pid}," not in line:
            continue
        found = re.search(r"skmem:\(r(\d+),rb\d+,t(\d+)", " ".join(lines[i : i + 2]))
        if found:
            count += 1
            queued += int(found.group(1)) + int(found.group(2))
    return count, queued


@pytest.mark.slow
async def test_what_peers_send_an_app_that_never_reads_is_bounded_in_pasta(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """pasta reads what the app's peers send only as fast as the app takes it, so the rest waits
    in the receive buffers of pasta's sockets on the host: kernel memory outside the enclave's
    limits. 60 connections from a host service that sent without pause (another enclave's
    published port, or any server elsewhere, serves as well), to an app of 128 MiB that read
    nothing, held 300 MiB; 4096 connections to servers elsewhere would hold many gigabytes.
    Under cgroup v1, pasta's sockets are now counted in a memory group of its own whose
    socket-buffer limit is the app's (a quarter of its memory)."""
    stop = threading.Event()
    source = socket.create_server(("127.0.0.1", 0), backlog=128)
    port = source.getsockname()[1]

    def blast(conn: socket.socket) -> None:
        data = b"y" * 65536
        with conn:
            conn.settimeout(1)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    try:
                        conn.send(data)
                    except OSError:
                        return

    def serve() -> None:
        while True:
            try:
                conn, _ = source.accept()
            except OSError:
                return
            threading.Thread(target=blast, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        async with probe_enclave(backend, tmp_path, allow_host_ports=(port,)) as info:
            state = json.loads((backend.home.enclaves / info.id / "state.json").read_text())
            if state["limits"]["method"] != "cgroup1":
                pytest.skip("pasta's socket buffers are bounded under cgroup v1 only (v2: open)")
            host = str((await ask(info, "/gateway6"))["host4"])
            held = await ask(info, "/hold", host=host, port=port, count=60)
            assert held == {"held": 60}, held
            queued = 0
            for _ in range(5):
                await asyncio.sleep(1)
                count, queued = _pasta_socket_memory(int(state["pasta_pid"]))
                assert count >= 60, count
            memory = int(state["limits"]["memory_mib"]) << 20
            assert queued <= memory // 4 + (8 << 20), f"{queued >> 20} MiB queued in pasta"
            # The enclave still serves, and still connects.
            assert await ask(info, "/") == {"ready": True}
            again = await ask(info, "/churn", base=secrets.randbelow(60000), seconds=0, batch=1)
            assert again["made"] == 1
            assert (await backend.status(info.id)).state == "running"
    finally:
        stop.set()
        source.close()
