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
from dataclasses import dataclass
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
]

NetworkMode = Literal["netns", "host"]
HOST_MODE_WARNING = (
    "WARNING: this enclave shares the host's network (no network namespace: needs root, "
    "`ip` and pasta from Debian's passt). Its ports bind on the host, and its trusted-base "
    "endpoints (custom attestation, sealing, KMS derive) are reachable by any local process."
)
_CLONE_NEWNET = 0x40000000
_NETNS_DIR = Path("/run/netns")


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
    netns: str, forwards: Sequence[tuple[int, int]], *, pid_file: Path, gid: int
) -> list[str]:
    """pasta attached to ``netns``, mapping host ``127.0.0.1:H`` to namespace port ``E``.

    ``-f`` keeps pasta in the supervisor's process group. ``--runas 0:GID`` keeps the user root
    (pasta must enter a namespace of the host's user namespace; another user makes it isolate
    itself first and fail) but gives it the enclave's own group, which is how the host firewall
    (``_firewall``) tells this enclave's outbound sockets apart. UDP and namespace-to-host
    forwards are off: outbound traffic goes through pasta's NAT instead.
    """
    # One option per forward: pasta applies a bind address to a whole option's port list.
    tcp: list[str] = []
    for host, inner in forwards:
        tcp += ["--tcp-ports", f"127.0.0.1/{host}:{inner}"]
    return [
        "pasta",
        "--config-net",
        "--foreground",
        "--quiet",
        "--runas",
        f"0:{gid}",
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
    """A named network namespace (``/run/netns/<name>``), created and deleted with ``ip``."""

    name: str

    @property
    def path(self) -> Path:
        return _NETNS_DIR / self.name

    @classmethod
    def create(cls, name: str) -> NetworkNamespace:
        """``ip netns add NAME``; a stale namespace of the same name is replaced.

        Raises:
            EnclaveError: when the namespace cannot be created.
        """
        ns = cls(name)
        if ns.path.exists():
            ns.delete()
        result = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if result.returncode != 0:
            raise EnclaveError(
                f"cannot create the network namespace {name}: {result.stderr.strip()}",
                hint="local enclaves with their own network need root and iproute2",
            )
        # Loopback is down in a new namespace; the trusted base listens on it.
        up = subprocess.run(
            ["ip", "-n", name, "link", "set", "lo", "up"], capture_output=True, text=True
        )
        if up.returncode != 0:
            ns.delete()
            raise EnclaveError(f"cannot bring up loopback in {name}: {up.stderr.strip()}")
        return ns

    def delete(self) -> None:
        """``ip netns delete``; pasta exits when its namespace goes. Missing is fine."""
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
