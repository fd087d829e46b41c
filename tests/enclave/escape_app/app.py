"""A hostile tenant: tries every way out of its local enclave, then reports what happened.

Run as a real enclave (``reef enclave run`` / ``LocalBackend``) by tests/enclave/test_escape.py.
Each attempt records ``{"ok": bool, ...}``: ``ok`` True means the escape WORKED. The report is
served on port 8080 (``GET /report``), the only way out the app is meant to have; the attempts
that could disturb it (fork bomb, disk filling) run last. x86_64 system call numbers.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import subprocess
from http.server import BaseHTTPRequestHandler, HTTPServer

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long
NR = {
    "open_by_handle_at": 304,
    "name_to_handle_at": 303,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "ptrace": 101,
    "kexec_load": 246,
    "init_module": 175,
    "finit_module": 313,
    "bpf": 321,
    "perf_event_open": 298,
    "keyctl": 250,
    "add_key": 248,
    "userfaultfd": 323,
    "unshare": 272,
    "setns": 308,
    "iopl": 172,
    "ioperm": 173,
    "mknod": 133,
}
ENV = os.environ


def syscall(name: str, *args: int | bytes | None) -> dict[str, object]:
    converted = [ctypes.c_char_p(a) if isinstance(a, bytes) else a for a in args]
    result = LIBC.syscall(NR[name], *converted)
    err = ctypes.get_errno()
    return {"ok": result >= 0, "result": result, "errno": errno.errorcode.get(err, str(err))}


def attempt(action) -> dict[str, object]:  # type: ignore[no-untyped-def]
    try:
        return {"ok": True, "value": action()}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}


def read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read(64).hex()


def connect(host: str, port: int) -> str:
    """Succeeds only if a server on the other side answers within 3 s."""
    with socket.create_connection((host, port), 3) as s:
        s.settimeout(3)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = s.recv(64)
        if not data:
            raise ConnectionError("closed without an answer")
        return data.decode(errors="replace")


def by_handle() -> dict[str, object]:
    # struct file_handle with room for the handle; then open it relative to / (as the shocker
    # exploit: handles are not limited to the caller's mount namespace).
    buf = ctypes.create_string_buffer(8 + 128)
    ctypes.c_uint.from_buffer(buf, 0).value = 128
    mount_id = ctypes.c_int()
    named = syscall("name_to_handle_at", -100, b"/usr", ctypes.addressof(buf),
                    ctypes.addressof(mount_id), 0)  # fmt: skip
    fd = os.open("/usr", os.O_RDONLY)
    opened = syscall("open_by_handle_at", fd, ctypes.addressof(buf), os.O_RDONLY)
    os.close(fd)
    return {"ok": bool(opened["ok"]), "name_to_handle_at": named, "open_by_handle_at": opened}


def status() -> dict[str, str]:
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs",
                       "Seccomp"):  # fmt: skip
                fields[key] = value.strip()
    return fields


def setuid_binary() -> dict[str, object]:
    # Debian's mount and su are setuid root; under no_new_privs (and nosuid binds) they run with
    # the app's own credentials and must not gain anything.
    results = {}
    for argv in (["mount", "-t", "tmpfs", "none", "/tmp"], ["su", "-c", "id -u", "root"]):
        try:
            done = subprocess.run(argv, capture_output=True, timeout=5, stdin=subprocess.DEVNULL)
            results[argv[0]] = {"code": done.returncode, "out": done.stdout.decode()[:100]}
        except (OSError, subprocess.TimeoutExpired) as exc:
            results[argv[0]] = {"code": None, "out": str(exc)}
    worked = any(r["code"] == 0 for r in results.values())
    return {"ok": worked, **results}


def raw_sockets() -> dict[str, object]:
    out: dict[str, object] = {"ok": False}
    for name, args in (("inet_raw", (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
                       ("packet", (socket.AF_PACKET, socket.SOCK_RAW, 0))):  # fmt: skip
        try:
            socket.socket(*args).close()
            out[name] = "opened"
            out["ok"] = True
        except OSError as exc:
            out[name] = errno.errorcode.get(exc.errno or 0, str(exc))
    return out


def fork_bomb() -> dict[str, object]:
    children = []
    error = ""
    try:
        for _ in range(100000):
            pid = os.fork()
            if pid == 0:
                # A small process per fork, as a shell fork bomb makes (not a Python copy each).
                try:
                    os.execv("/usr/bin/sleep", ["sleep", "30"])
                finally:
                    os._exit(0)
            children.append(pid)
    except OSError as exc:
        error = errno.errorcode.get(exc.errno or 0, str(exc))
    for pid in children:
        os.kill(pid, 9)
    for pid in children:
        os.waitpid(pid, 0)
    return {"ok": not error, "forked": len(children), "error": error}


def fill(path: str, limit: int) -> dict[str, object]:
    written = 0
    chunk = b"\0" * (1 << 20)
    error = ""
    try:
        with open(path, "wb") as f:
            while written < limit:
                f.write(chunk)
                f.flush()
                written += len(chunk)
    except OSError as exc:
        error = errno.errorcode.get(exc.errno or 0, str(exc))
    os.unlink(path)
    return {"ok": not error, "written": written, "error": error}


def run() -> dict[str, object]:
    host = ENV.get("REEF_HOST_ADDR", "")
    report: dict[str, object] = {
        "identity": status(),
        "host_shadow": attempt(lambda: read("/etc/shadow")),
        "host_file": attempt(lambda: read(ENV["HOST_FILE"])),
        "dev_root_key": attempt(lambda: read(ENV["DEV_ROOT_KEY"])),
        "other_enclave_key": attempt(lambda: read(ENV["OTHER_ID_SEC"])),
        "by_handle": by_handle(),
        "mknod_block": syscall("mknod", b"/tmp/sda", 0o060600, os.makedev(8, 0)),
        "mknod_char": syscall("mknod", b"/tmp/mem", 0o020600, os.makedev(1, 1)),
        "mount": syscall("mount", b"none", b"/tmp", b"tmpfs", 0, None),
        "umount": syscall("umount2", b"/image", 2),
        "pivot_root": syscall("pivot_root", b"/tmp", b"/tmp"),
        "ptrace_init": syscall("ptrace", 16, 1, 0, 0),  # PTRACE_ATTACH to the sandbox's init
        "unshare_user": syscall("unshare", 0x10000000),
        "unshare_net": syscall("unshare", 0x40000000),
        "unshare_mount": syscall("unshare", 0x00020000),
        "setns": syscall("setns", 0, 0),
        "kexec_load": syscall("kexec_load", 0, 0, 0, 0),
        "init_module": syscall("init_module", 0, 0, b""),
        "finit_module": syscall("finit_module", 0, b"", 0),
        "bpf": syscall("bpf", 0, 0, 0),
        "perf_event_open": syscall("perf_event_open", 0, 0, -1, -1, 0),
        "keyctl": syscall("keyctl", 0, 0, 0, 0, 0),
        "add_key": syscall("add_key", b"user", b"x", b"y", 1, -4),
        "userfaultfd": syscall("userfaultfd", 0),
        "iopl": syscall("iopl", 3),
        "ioperm": syscall("ioperm", 0x80, 1, 1),
        "setuid_binary": setuid_binary(),
        "raw_sockets": raw_sockets(),
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "host_service_gateway": attempt(lambda: connect(host, int(ENV["HOST_SERVICE_PORT"]))),
        "host_service_other_address": attempt(
            lambda: connect(ENV["HOST_OTHER_ADDR"], int(ENV["HOST_SERVICE_PORT"]))
        ),
        "other_enclave_logs": attempt(lambda: connect(host, int(ENV["OTHER_LOGS_PORT"]))),
        "other_enclave_published": attempt(lambda: connect(host, int(ENV["OTHER_APP_PORT"]))),
        "write_image": attempt(lambda: open("/image/x", "w").close()),
    }
    report["fork_bomb"] = fork_bomb()
    report["fill_tmp"] = fill("/tmp/fill", int(ENV["FILL_LIMIT"]))
    report["fill_state"] = fill("/state/fill", int(ENV["FILL_LIMIT"]))
    return report


REPORT = json.dumps(run()).encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(REPORT)))
        self.end_headers()
        self.wfile.write(REPORT)

    def log_message(self, *args: object) -> None:
        return None


HTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
