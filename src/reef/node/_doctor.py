"""``reef doctor``: everything this host needs to run reef, checked, with the command that fixes it.

The enclave requirements come from :func:`reef.enclave.check_host` (the same list the local
backend refuses to start without); this adds what the rest of the network needs: the ports
``reef up`` listens on, free disk under ``$REEF_HOME``, and Node.js/npm for the tests and tools
that run JavaScript peers.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterable

from reef.enclave import Requirement, check_host
from reef.home import ReefHome

__all__ = ["MIN_FREE_DISK_MIB", "doctor_checks"]

MIN_FREE_DISK_MIB = 1024


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def doctor_checks(
    home: ReefHome, *, ports: Iterable[int] = (), host: str = "127.0.0.1"
) -> list[Requirement]:
    """Every requirement of ``reef up`` on this host, met or not, in a fixed order."""
    checks = check_host()
    for tool, purpose in (
        ("node", "serverless functions (workerd), the proof market (snarkjs), the tests' peers"),
        ("npm", "installing workerd, snarkjs and those peers"),
    ):
        path = shutil.which(tool)
        checks.append(
            Requirement(
                tool, purpose, path is not None, "apt-get install nodejs npm", path or "", True
            )
        )
    for port in ports:
        free = _port_free(host, port)
        checks.append(
            Requirement(
                f"port {port}",
                "a port `reef up` listens on",
                free,
                f"stop what listens on {host}:{port} (ss -ltnp 'sport = :{port}'), "
                "or pick another with reef up's port options",
                "" if free else "in use",
            )
        )
    root = home.root
    probe = root if root.exists() else root.parent
    while not probe.exists():
        probe = probe.parent
    free_mib = shutil.disk_usage(probe).free // (1024 * 1024)
    checks.append(
        Requirement(
            "disk",
            f"chain state, images and enclaves under {root}",
            free_mib >= MIN_FREE_DISK_MIB,
            f"free at least {MIN_FREE_DISK_MIB} MiB there, or set REEF_HOME elsewhere",
            f"{free_mib} MiB free",
        )
    )
    return checks
