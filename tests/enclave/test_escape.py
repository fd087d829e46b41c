"""A hostile tenant's escape attempts, run as a real local enclave, all fail (issue 10).

The app (tests/enclave/escape_app) tries to read host files by path and by handle, make devices,
mount, ptrace, see host processes, gain capabilities through user namespaces or setuid files,
reach host services through the gateway and the host's other addresses, reach another enclave's
trusted-base port, open raw sockets, fork-bomb and fill its disk, and read the dev TEE's root key
and another enclave's keys. Every attempt must fail, and the host and another enclave must keep
working. Each assertion here fails on the sandbox reef had before this test was written (root
with every capability, no user namespace, no seccomp, the gateway mapped to the host's loopback).
"""

from __future__ import annotations

import asyncio
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev_tee_support import LoopbackServer, get, requires_isolation
from reef.attestation import DevAuthority
from reef.enclave import EnclaveSpec, LocalBackend, build_image
from reef.home import ReefHome

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="the dev TEE runs on Linux"),
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the app uses x86_64 syscalls"),
    requires_isolation,
]

APP = Path(__file__).parent / "escape_app"
HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello"
# An address of this host that is not the one pasta copies into the enclave (added to lo for the
# test: traffic to it never leaves the machine).
OTHER_ADDR = "198.51.100.77"
FILL_LIMIT = 64 << 20
TMP_MIB = 16
STATE_MIB = 32


class HostService(LoopbackServer):
    """A host-only HTTP-ish service on every address (like the devnet or the image store)."""

    def __init__(self) -> None:
        self.hits = 0
        super().__init__(host="0.0.0.0")

    def handle(self, conn: socket.socket) -> None:
        self.hits += 1
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhost secret service")


@pytest.fixture
def other_address() -> Iterator[str]:
    added = subprocess.run(
        ["ip", "addr", "add", f"{OTHER_ADDR}/32", "dev", "lo"], capture_output=True, text=True
    )
    if added.returncode != 0 and "exists" not in added.stderr:
        pytest.skip(f"cannot add a test address to lo: {added.stderr.strip()}")
    try:
        yield OTHER_ADDR
    finally:
        subprocess.run(["ip", "addr", "del", f"{OTHER_ADDR}/32", "dev", "lo"], capture_output=True)


async def test_every_escape_attempt_fails(
    reef_home: Path, tmp_path: Path, other_address: str
) -> None:
    home = ReefHome(reef_home)
    authority = DevAuthority.load_or_create(home)
    backend = LocalBackend(home, authority=authority)
    service = HostService()
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host only")
    # The service answers on the other address from the host itself: the test is meaningful.
    with socket.create_connection((other_address, service.port), 3) as probe:
        assert probe.recv(16).startswith(b"HTTP/1.0 200")

    hello_img = tmp_path / "hello.img"
    build_image(HELLO, hello_img)
    victim = await backend.start(EnclaveSpec(image=hello_img, debug=True))
    try:
        assert victim.endpoints["logs"] is not None
        logs_port = int(victim.endpoints["logs"].split(":")[2].split("/")[0])
        app_port = int(victim.endpoints["ports"][8080].rsplit(":", 1)[1])
        src = tmp_path / "escape"
        src.mkdir()
        for name in ("app.py", "reef.toml"):
            (src / name).write_bytes((APP / name).read_bytes())
        with (src / "reef.toml").open("a") as manifest:
            manifest.write(
                "[env]\n"
                f'HOST_FILE = "{secret}"\n'
                f'DEV_ROOT_KEY = "{home.dev_tee / "root.key"}"\n'
                f'OTHER_ID_SEC = "{home.enclaves / victim.id / "app" / "id.sec"}"\n'
                f'HOST_SERVICE_PORT = "{service.port}"\n'
                f'HOST_OTHER_ADDR = "{other_address}"\n'
                f'OTHER_LOGS_PORT = "{logs_port}"\n'
                f'OTHER_APP_PORT = "{app_port}"\n'
                f'FILL_LIMIT = "{FILL_LIMIT}"\n'
            )
        image = tmp_path / "escape.img"
        build_image(src, image)
        # Debug mode only to show the app's console if it fails; the sandbox is the same.
        attacker = await backend.start(
            EnclaveSpec(image=image, tmp_mib=TMP_MIB, state_mib=STATE_MIB, debug=True)
        )
        try:
            try:
                answer = await get(
                    attacker.endpoints["ports"][8080] + "/report", attempts=600, request_timeout=60
                )
            except Exception:
                console = await backend.logs(attacker.id)
                pytest.fail(f"no report from the escape app; its console:\n{console[-3000:]}")
            report = answer.json()
        finally:
            await backend.stop(attacker.id)

        identity = report["identity"]
        assert identity["Uid"].split() == ["1000"] * 4  # unprivileged, in its own user namespace
        for caps in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
            assert int(identity[caps], 16) == 0, identity
        assert identity["NoNewPrivs"] == "1"
        assert identity["Seccomp"] == "2"  # a filter is loaded

        for path_attempt in ("host_shadow", "host_file", "dev_root_key", "other_enclave_key"):
            assert report[path_attempt]["ok"] is False, (path_attempt, report[path_attempt])
        assert report["by_handle"]["ok"] is False
        assert report["by_handle"]["open_by_handle_at"]["errno"] == "EPERM"
        assert report["by_handle"]["name_to_handle_at"]["errno"] == "EPERM"
        for call in (
            "mknod_block",
            "mknod_char",
            "mount",
            "umount",
            "pivot_root",
            "ptrace_init",
            "unshare_user",
            "unshare_net",
            "unshare_mount",
            "setns",
            "kexec_load",
            "init_module",
            "finit_module",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "userfaultfd",
            "iopl",
            "ioperm",
        ):
            assert report[call]["ok"] is False, (call, report[call])
            assert report[call]["errno"] == "EPERM", (call, report[call])
        assert report["setuid_binary"]["ok"] is False, report["setuid_binary"]
        assert report["raw_sockets"]["ok"] is False, report["raw_sockets"]
        # Its own PID namespace: bubblewrap's two stages and the app, nothing of the host's.
        assert len(report["processes"]) <= 4, report["processes"]
        assert report["host_service_gateway"]["ok"] is False, report["host_service_gateway"]
        assert report["host_service_other_address"]["ok"] is False
        assert report["other_enclave_logs"]["ok"] is False, report["other_enclave_logs"]
        # Another enclave's published port is reachable, as through a Nitro host's forwarding.
        assert report["other_enclave_published"]["ok"] is True, report["other_enclave_published"]
        assert report["write_image"]["ok"] is False
        assert report["fork_bomb"]["ok"] is False
        assert report["fork_bomb"]["error"] == "EAGAIN"
        assert report["fill_tmp"]["ok"] is False
        assert report["fill_tmp"]["error"] == "ENOSPC"
        assert report["fill_tmp"]["written"] <= TMP_MIB << 20
        assert report["fill_state"]["ok"] is False
        assert report["fill_state"]["error"] == "ENOSPC"
        assert report["fill_state"]["written"] <= STATE_MIB << 20

        # Nothing of the host or the other enclave was disturbed.
        assert service.hits == 1  # only the test's own probe got through
        assert secret.read_text() == "host only"
        assert (await backend.status(victim.id)).state == "running"
        hello = (await get(victim.endpoints["ports"][8080] + "/")).json()
        assert hello["image_id"] == victim.image_id.hex()
    finally:
        await backend.stop(victim.id)
        service.sock.close()
        await asyncio.sleep(0)
