"""What the host must offer for the dev TEE to isolate an enclave, checked before anything starts.

Each requirement says what it is for and the exact command that installs it, so that a missing
piece is one clear message (``reef doctor`` prints the same list) instead of a boot that fails
half-way. :func:`check_host` is pure over its probes, so tests feed it a host that lacks things.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Requirement", "check_host", "missing_summary"]


@dataclass(frozen=True)
class Requirement:
    """One thing the local backend needs: whether it is here, and how to get it when not."""

    name: str
    purpose: str
    ok: bool
    fix: str
    detail: str = ""
    optional: bool = False
    """Reported, but its absence does not stop reef (e.g. tools only some tests use)."""

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "purpose": self.purpose,
            "ok": self.ok,
            "optional": self.optional,
            "fix": self.fix,
            "detail": self.detail,
        }


_TOOLS = (
    ("bwrap", "the app's sandbox (bubblewrap)", "apt-get install bubblewrap"),
    ("setpriv", "dropping the app to an unprivileged user", "apt-get install util-linux"),
    ("pasta", "the enclave's network (port map, outbound NAT)", "apt-get install passt"),
    ("ip", "the enclave's network namespace", "apt-get install iproute2"),
    ("nsenter", "starting the app in its network namespace", "apt-get install util-linux"),
    ("unshare", "the network namespace pasta may enter unprivileged", "apt-get install util-linux"),
    ("nft", "keeping enclaves away from the host's addresses", "apt-get install nftables"),
    ("mkfs.ext4", "the size-limited /state volume of each image", "apt-get install e2fsprogs"),
)


def _userns_ok() -> tuple[bool, str]:
    try:
        limit = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except (OSError, ValueError):
        return False, "/proc/sys/user/max_user_namespaces is unreadable"
    if limit <= 0:
        return False, "user.max_user_namespaces is 0"
    clone = Path("/proc/sys/kernel/unprivileged_userns_clone")
    if clone.exists() and clone.read_text().strip() == "0":
        return False, "kernel.unprivileged_userns_clone is 0"
    return True, ""


def _libseccomp_ok() -> tuple[bool, str]:
    try:
        import pyseccomp  # noqa: F401  (loads libseccomp.so.2)
    except (ImportError, OSError) as exc:
        return False, str(exc)
    return True, ""


def check_host(
    *,
    which: Callable[[str], str | None] = shutil.which,
    euid: Callable[[], int] = os.geteuid,
    userns: Callable[[], tuple[bool, str]] = _userns_ok,
    libseccomp: Callable[[], tuple[bool, str]] = _libseccomp_ok,
    loop_devices: Callable[[], bool] = lambda: Path("/dev/loop-control").exists(),
) -> list[Requirement]:
    """Every requirement of an isolated local enclave, met or not, in a fixed order."""
    found: list[Requirement] = [
        Requirement(
            "root",
            "network namespaces, control groups and the host firewall",
            euid() == 0,
            "run reef as root (e.g. `sudo -E reef up`), or pass --insecure",
            "" if euid() == 0 else f"running as uid {euid()}",
        )
    ]
    for tool, purpose, fix in _TOOLS:
        path = which(tool)
        found.append(Requirement(tool, purpose, path is not None, fix, path or "not on PATH"))
    ok, why = userns()
    found.append(
        Requirement(
            "user namespaces",
            "the app's own user, with no capabilities on the host",
            ok,
            "sysctl -w user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1",
            why,
        )
    )
    loop = loop_devices()
    found.append(
        Requirement(
            "loop devices",
            "mounting each image's /state volume",
            loop,
            "modprobe loop (or give the container /dev/loop-control)",
            "" if loop else "/dev/loop-control is missing",
        )
    )
    ok, why = libseccomp()
    found.append(
        Requirement(
            "libseccomp",
            "the app's system call filter",
            ok,
            "apt-get install libseccomp2",
            why,
        )
    )
    return found


def missing_summary(requirements: list[Requirement]) -> tuple[str, str] | None:
    """``(what is missing, how to fix it)`` for the unmet requirements, or None when all are met."""
    missing = [r for r in requirements if not r.ok and not r.optional]
    if not missing:
        return None
    what = "; ".join(f"{r.name} ({r.purpose})" for r in missing)
    packages = sorted(
        {
            word
            for r in missing
            if r.fix.startswith("apt-get install ")
            for word in r.fix.split()[2:]
        }
    )
    fixes = [f"apt-get install {' '.join(packages)}"] if packages else []
    fixes += [r.fix for r in missing if not r.fix.startswith("apt-get install ")]
    return what, "; ".join(fixes)
