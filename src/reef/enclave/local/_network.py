"""Each local enclave's own network: a network namespace, pasta for traffic in and out.

A Nitro enclave has no network of its own: the host forwards chosen ports in over vsock, and the
trusted base inside listens on fixed loopback ports (attestation 1300/1301, KMS derive 1100). The
dev TEE reproduces that layout with Linux primitives:

- a **network namespace** per enclave (``ip netns add reef-<id>``), so every enclave's app binds
  its declared ports, and the trusted base its fixed ones, without clashing with other enclaves
  or the host;
- **pasta** (Debian ``passt``), a user-mode network stack, attached to the namespace: it maps host
  ports to enclave ports (``-t 127.0.0.1/H:E``) and carries the enclave's outbound TCP to the
  host and beyond. From inside, the host's loopback is reached at the namespace's gateway address
  (pasta maps it to 127.0.0.1), which the app finds in ``REEF_HOST_ADDR``;
- the **trusted base listens inside** the namespace: the supervisor creates its listening sockets
  from a thread that has entered the namespace (``setns``), then serves them from its own event
  loop. Endpoints that must stay inside the enclave (custom attestation, sealing, KMS derive) are
  therefore not reachable from the host at all; only the ports pasta maps are.

pasta parses every packet the (hostile) app sends, so it runs with as little as it can: as an
unprivileged host user of the enclave's own (the firewall's per-enclave group id, as user and
group), with capabilities only inside a **user namespace of its own** that owns the enclave's
network namespace and nothing else (:meth:`NetworkNamespace.create` with ``owner``). It needs
those capabilities to enter and configure the namespace; on the host it is a stranger's process
(run as root, a memory-safety bug in pasta was host root: ``tests/enclave/test_hostile_host.py``).

This needs root (or CAP_SYS_ADMIN) for the namespace. Without it, or without ``ip``/``pasta``, the
enclave runs on the host network (:data:`HOST_MODE_WARNING`): ports then bind on the host and the
trusted base listens on free host ports named in the app's ``REEF_*`` variables.
"""

# ruff: noqa: S603, S607  (runs `ip` and pasta with argument lists, never a shell)
from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from reef.errors import EnclaveError

__all__ = [
    "HOST_MODE_WARNING",
    "NetworkMode",
    "NetworkNamespace",
    "choose_network",
    "free_port",
    "pasta_argv",
    "unprivileged_port_start",
]

NetworkMode = Literal["netns", "host"]
HOST_MODE_WARNING = (
    "WARNING: this enclave shares the host's network (no network namespace: needs root, "
    "`ip` and pasta from Debian's passt). Its ports bind on the host, and its trusted-base "
    "endpoints (custom attestation, sealing, KMS derive) are reachable by any local process."
)
_CLONE_NEWNET = 0x40000000
_NETNS_DIR = Path("/run/netns")
_HOLDER_TIMEOUT_S = 10.0


def unprivileged_port_start() -> int:
    """The lowest host port an unprivileged process may bind (``ip_unprivileged_port_start``)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def choose_network(*, want: NetworkMode | None = None) -> tuple[NetworkMode, str | None]:
    """``("netns", None)`` when namespaces and pasta work here, else ``("host", reason)``."""
    if want == "host":
        return "host", "host networking was asked for"
    missing = [tool for tool in ("ip", "pasta", "nsenter") if shutil.which(tool) is None]
    if os.geteuid() != 0:
        reason = "network namespaces need root"
    elif missing:
        reason = f"{', '.join(missing)} not found (install Debian's iproute2, passt, util-linux)"
    else:
        return "netns", None
    if want == "netns":
        raise EnclaveError(f"cannot give the enclave its own network: {reason}")
    return "host", reason


def pasta_argv(
    netns: str,
    forwards: Sequence[tuple[int, int]],
    *,
    pid_file: Path,
    gid: int,
    userns_fd: int | None = None,
) -> list[str]:
    """pasta attached to ``netns``, mapping host ``127.0.0.1:H`` to namespace port ``E``.

    ``-f`` keeps pasta in the supervisor's process group. The enclave's own group id ``GID`` is
    how the host firewall (``_firewall``) tells this enclave's outbound sockets apart. With
    ``userns_fd`` (the user namespace that owns ``netns``, an inherited descriptor) pasta runs
    as user and group ``GID`` and joins that namespace, where alone it has capabilities; without
    it, ``--runas 0:GID`` keeps the user root (pasta must then enter a namespace of the host's
    user namespace, which an unprivileged user cannot). UDP and namespace-to-host forwards are
    off: outbound traffic goes through pasta's NAT instead.
    """
    # One option per forward: pasta applies a bind address to a whole option's port list.
    tcp: list[str] = []
    for host, inner in forwards:
        tcp += ["--tcp-ports", f"127.0.0.1/{host}:{inner}"]
    user = ["--runas", f"0:{gid}"]
    if userns_fd is not None:
        user = ["--runas", f"{gid}:{gid}", "--userns", f"/proc/self/fd/{userns_fd}"]
    return [
        "pasta",
        "--config-net",
        "--foreground",
        "--quiet",
        *user,
        *(tcp or ["--tcp-ports", "none"]),
        "--udp-ports",
        "none",
        "--tcp-ns",
        "none",
        "--udp-ns",
        "none",
        "--pid",
        str(pid_file),
        "--netns",
        netns,
    ]


def _libc_setns() -> ctypes._FuncPointer:
    libc = ctypes.CDLL(None, use_errno=True)
    func: ctypes._FuncPointer = libc.setns
    func.argtypes = [ctypes.c_int, ctypes.c_int]
    func.restype = ctypes.c_int
    return func


def _setns(setns: ctypes._FuncPointer, fd: int) -> None:
    if setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@dataclass
class NetworkNamespace:
    """A named network namespace (``/run/netns/<name>``), created and deleted with ``ip``.

    ``userns_fd``: with an ``owner``, a descriptor of the user namespace that owns the network
    namespace (for pasta to join), until :meth:`release_userns`.
    """

    name: str
    userns_fd: int | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        return _NETNS_DIR / self.name

    @classmethod
    def create(cls, name: str, *, owner: int | None = None) -> NetworkNamespace:
        """``ip netns add NAME``; a stale namespace of the same name is replaced.

        With ``owner`` (an unprivileged host id, used as user and group), the namespace is made
        by that user inside a user namespace of its own (``owner`` is root there, and nowhere
        else), so that pasta can run as ``owner`` and still enter and configure it; root (the
        supervisor, the app's sandbox) enters it as any other.

        Raises:
            EnclaveError: when the namespace cannot be created.
        """
        ns = cls(name)
        if ns.path.exists():
            ns.delete()
        if owner is None:
            result = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
            if result.returncode != 0:
                raise EnclaveError(
                    f"cannot create the network namespace {name}: {result.stderr.strip()}",
                    hint="local enclaves with their own network need root and iproute2",
                )
        else:
            ns.userns_fd = _owned_namespaces(name, owner)
        # Loopback is down in a new namespace; the trusted base listens on it.
        up = subprocess.run(
            ["ip", "-n", name, "link", "set", "lo", "up"], capture_output=True, text=True
        )
        if up.returncode != 0:
            ns.delete()
            raise EnclaveError(f"cannot bring up loopback in {name}: {up.stderr.strip()}")
        return ns

    def release_userns(self) -> None:
        """Close the owning user namespace's descriptor (once pasta has its own copy)."""
        if self.userns_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.userns_fd)
            self.userns_fd = None

    def delete(self) -> None:
        """``ip netns delete``; pasta exits when its namespace goes. Missing is fine."""
        self.release_userns()
        if self.path.exists():
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)

    def listen(self, ports: Sequence[int], *, host: str = "127.0.0.1") -> dict[int, socket.socket]:
        """Listening TCP sockets on ``host:port`` *inside* the namespace, one per port.

        A socket belongs to the namespace it was created in, whichever thread later serves it,
        so a short-lived thread enters the namespace, creates them and returns.

        Raises:
            EnclaveError: when the namespace cannot be entered or a port cannot be bound.
        """
        result: dict[int, socket.socket] = {}
        failure: list[BaseException] = []

        def work() -> None:
            setns = _libc_setns()
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            target = os.open(self.path, os.O_RDONLY)
            try:
                _setns(setns, target)
                try:
                    for port in ports:
                        # IPPROTO_TCP (not 0): asyncio then sets TCP_NODELAY on each
                        # connection, as on every reef server (reef._serve).
                        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        sock.bind((host, port))
                        sock.listen(128)
                        sock.setblocking(False)
                        result[port] = sock
                finally:
                    _setns(setns, own)
            except BaseException as exc:
                failure.append(exc)
            finally:
                os.close(own)
                os.close(target)

        worker = threading.Thread(target=work, name=f"netns-{self.name}")
        worker.start()
        worker.join()
        if failure:
            for sock in result.values():
                with contextlib.suppress(OSError):
                    sock.close()
            raise EnclaveError(
                f"cannot listen inside the enclave's network namespace: {failure[0]}"
            ) from failure[0]
        return result

    def gateway(self) -> str | None:
        """The namespace's default gateway (pasta maps it to the host's loopback)."""
        result = subprocess.run(
            ["ip", "-n", self.name, "-4", "route", "show", "default"],
            capture_output=True,
            text=True,
        )
        words = result.stdout.split()
        if "via" in words:
            return words[words.index("via") + 1]
        return None


def _owned_namespaces(name: str, owner: int) -> int:
    """A user namespace made by host user ``owner`` (mapped to root inside) and a network
    namespace it owns, the latter attached as ``/run/netns/NAME``; a descriptor of the former.

    A short-lived holder (util-linux ``setpriv`` and ``unshare``, which the sandbox needs
    anyway) makes both and waits on a pipe; once it says it is ready, ``ip netns attach`` keeps
    its network namespace (which keeps its owner alive) and its user namespace is opened; then
    the pipe closes and the holder exits.
    """
    read_fd, write_fd = os.pipe()
    try:
        holder = subprocess.Popen(
            [
                "setpriv",
                f"--reuid={owner}",
                f"--regid={owner}",
                "--clear-groups",
                "--",
                "unshare",
                "--user",
                "--map-root-user",
                "--net",
                "--",
                "sh",
                "-c",
                "echo ready && exec cat >/dev/null",
            ],
            stdin=read_fd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        raise EnclaveError(
            f"cannot create the network namespace {name}: {exc}",
            hint="local enclaves need util-linux (setpriv, unshare) and user namespaces",
        ) from exc
    os.close(read_fd)
    try:
        assert holder.stdout is not None
        ready = holder.stdout.readline()
        if ready != b"ready\n":
            holder.wait(_HOLDER_TIMEOUT_S)
            err = holder.stderr.read().decode(errors="replace").strip() if holder.stderr else ""
            raise EnclaveError(
                f"cannot create the network namespace {name} for an unprivileged pasta: "
                f"{err or f'exit status {holder.returncode}'}",
                hint="local enclaves need user namespaces (sysctl user.max_user_namespaces > 0)",
            )
        attached = subprocess.run(
            ["ip", "netns", "attach", name, str(holder.pid)], capture_output=True, text=True
        )
        if attached.returncode != 0:
            raise EnclaveError(
                f"cannot create the network namespace {name}: {attached.stderr.strip()}",
                hint="local enclaves with their own network need root and iproute2",
            )
        try:
            return os.open(f"/proc/{holder.pid}/ns/user", os.O_RDONLY)
        except OSError as exc:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
            raise EnclaveError(
                f"cannot open the user namespace of {name}: {exc}",
                hint="local enclaves with their own network need root",
            ) from exc
    finally:
        os.close(write_fd)
        try:
            holder.wait(_HOLDER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
        for stream in (holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()
