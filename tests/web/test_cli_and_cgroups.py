"""`reef dashboard` as a user runs it (a subprocess of the console script), and the enclave
resource readings from cgroup v1 and v2 trees."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from reef.web import EnclaveUsage, enclave_usage

REEF = str(Path(sys.executable).with_name("reef"))


def _start(home: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [REEF, "dashboard", "--port", "0", *args],
        env={**os.environ, "REEF_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        if line.strip() == "ready":
            return process, lines
        lines.append(line.strip())
    process.wait()
    raise AssertionError("reef dashboard did not start: " + "\n".join(lines))


def _stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=30)
    finally:
        if process.stdout is not None:
            process.stdout.close()


def test_reef_dashboard_prints_its_url_and_token_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    process, lines = _start(tmp_path)
    try:
        url = lines[0].split()[1]
        assert lines[0].startswith("dashboard  http://127.0.0.1:")
        assert lines[1].startswith(f"manage     {url}/?token=")
        token = lines[1].split("token=", 1)[1]
        # No network in this home: the page says so instead of failing.
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200
        assert "no chain endpoint" in page.text
        assert token not in page.text
        assert httpx.post(f"{url}/api/token", timeout=10).status_code == 401
        ok = httpx.post(f"{url}/api/token", headers={"x-reef-token": token}, timeout=10)
        assert ok.status_code == 200
    finally:
        assert _stop(process) == 0


def test_reef_dashboard_read_only_prints_no_token(tmp_path: Path) -> None:
    process, lines = _start(tmp_path, "--read-only")
    try:
        assert len(lines) == 1
        url = lines[0].split()[1]
        answer = httpx.post(f"{url}/api/token", headers={"x-reef-token": "x"}, timeout=10)
        assert answer.status_code == 403
    finally:
        assert _stop(process) == 0


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [REEF, "dashboard", "--port", str(port)],
            env={**os.environ, "REEF_HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert "port is in use" in done.stderr
    assert "--port" in done.stderr
    assert "Traceback" not in done.stderr


def test_enclave_usage_from_cgroup_v1_and_v2(tmp_path: Path) -> None:
    v1 = tmp_path / "v1"
    (v1 / "memory" / "up" / "reef-a").mkdir(parents=True)
    (v1 / "memory" / "up" / "reef-a" / "memory.usage_in_bytes").write_text("4096\n")
    (v1 / "cpu,cpuacct" / "up" / "reef-a").mkdir(parents=True)
    (v1 / "cpu,cpuacct" / "up" / "reef-a" / "cpuacct.usage").write_text("2500000000\n")
    (v1 / "memory" / "up" / "other").mkdir()
    proc = "4:memory:/up\n3:cpu,cpuacct:/up\n0::/\n"
    assert enclave_usage(proc, v1) == [EnclaveUsage("a", 2.5, 4096)]

    v2 = tmp_path / "v2"
    (v2 / "svc" / "reef-b").mkdir(parents=True)
    (v2 / "svc" / "reef-b" / "memory.current").write_text("8192\n")
    (v2 / "svc" / "reef-b" / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\n")
    assert enclave_usage("0::/svc\n", v2) == [EnclaveUsage("b", 1.5, 8192)]
    assert enclave_usage("0::/nowhere\n", v2) == []

    # v1 without cpuacct: the CPU time of the group's processes, from /proc/PID/stat.
    proc = tmp_path / "proc"
    (proc / "41").mkdir(parents=True)
    ticks = os.sysconf("SC_CLK_TCK")
    fields = ["S", *["0"] * 10, str(2 * ticks), str(ticks), "0", str(ticks), *["0"] * 30]
    (proc / "41" / "stat").write_text(f"41 (app (odd) name) {' '.join(fields)}\n")
    (v1 / "memory" / "up" / "reef-c").mkdir()
    (v1 / "memory" / "up" / "reef-c" / "memory.usage_in_bytes").write_text("100\n")
    (v1 / "memory" / "up" / "reef-c" / "cgroup.procs").write_text("41\n42\n")  # 42 has gone
    usage = enclave_usage("4:memory:/up\n", v1, proc)
    assert EnclaveUsage("c", 4.0, 100) in usage
