"""CPU and memory limits of a local enclave: control groups where reef may write them, else rlimits.

A Nitro enclave gets a fixed number of vCPUs and a fixed amount of memory, carved out of the host;
an app that allocates past it dies. The dev TEE enforces the same with what the machine offers,
in this order:

1. **cgroup v2** (a ``cgroup2`` mount with the memory controller): a child group of reef's own
   group with ``memory.max`` (swap off) and ``cpu.max`` = vCPUs x period, ``pids.max``.
2. **cgroup v1** (the memory, cpu and pids hierarchies mounted separately, as in many containers):
   a child of reef's own group in each, with ``memory.limit_in_bytes`` (and ``memsw``, so swap
   cannot stretch it; ``kmem.tcp``, a quarter of it, since v1 counts socket buffers apart),
   ``cpu.cfs_quota_us`` and ``pids.max``.
3. **rlimits**: ``RLIMIT_AS`` for memory (address space, a coarser limit: an app that exceeds it
   sees allocation failures instead of being OOM-killed) and CPU affinity to as many CPUs as
   vCPUs.

The host processes that work for one enclave, its supervisor (the trusted base: attestation
documents, sealing, the console) and pasta (its network), run outside those groups, as root:
left alone, an app of one vCPU that asks its trusted base for documents without pause had its
supervisor sign them with a second CPU. Once the app runs they join a CPU-only group of their
own (:meth:`Limits.confine_helpers`), ``HELPER_CPU_SHARE`` of a CPU per vCPU, so the work an
app makes the host do for it is bounded too. (Its memory is bounded by what the supervisor
keeps: the console and log caps.) pasta's host-side sockets hold what the app's peers send it
until the app reads it: 60 connections from a peer that sent without pause, to an app that read
nothing, held 300 MiB of the host's kernel memory for an enclave of 128 MiB. Under cgroup v1,
pasta starts in a memory group of its own (:attr:`Limits.net_groups`, joined before it execs,
:meth:`Limits.net_preexec`) whose ``kmem.tcp`` limit is the app's (a quarter of the enclave's
memory): past it, the kernel stops accepting data for pasta's sockets and the peers wait.

The groups are created *inside reef's own group*, so an enclave never escapes the limits reef
itself runs under. The app joins them between fork and exec (:meth:`Limits.preexec`), before it
can allocate anything. The kernel's OOM killer then kills the app with SIGKILL, and
:meth:`Limits.oom_killed` reads the group's ``oom_kill`` counter to report why it died.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reef.errors import EnclaveError, InputError

__all__ = ["CgroupLayout", "LimitMethod", "Limits", "detect_cgroups"]

LimitMethod = Literal["cgroup2", "cgroup1", "rlimit"]
_PERIOD_US = 100_000
# A fork bomb inside an enclave must hit this before anything else (its memory limit, the
# host's PID space): 512 tasks, threads included, is far more than an enclave app needs.
_PIDS_MAX = 512
HELPER_CPU_SHARE = 0.5
"""CPU the host processes that work for one enclave (its supervisor and pasta) may use
together, per vCPU of the enclave (see :meth:`Limits.confine_helpers`)."""


@dataclass(frozen=True)
class CgroupLayout:
    """Where this process's control groups live (``None`` when that kind is unusable)."""

    v2: Path | None = None
    v1: dict[str, Path] = field(default_factory=dict)


def _mounts(mountinfo: str) -> list[tuple[Path, str, set[str]]]:
    """``(mount point, fstype, super options)`` of each cgroup mount in a mountinfo text."""
    found: list[tuple[Path, str, set[str]]] = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        found.append((Path(fields[4].replace("\\040", " ")), tail[0], set(tail[2].split(","))))
    return found


def detect_cgroups(proc_cgroup: str, mountinfo: str) -> CgroupLayout:
    """Locate this process's cgroup directories from ``/proc/self/{cgroup,mountinfo}`` texts.

    Pure: tests feed it texts of other machines. Writability is checked later, when used.
    """
    own_v2: str | None = None
    own_v1: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            own_v2 = path
        else:
            for controller in controllers.split(","):
                own_v1[controller] = path
    v2: Path | None = None
    v1: dict[str, Path] = {}
    for mount, fstype, options in _mounts(mountinfo):
        if fstype == "cgroup2" and own_v2 is not None:
            candidate = mount / own_v2.lstrip("/")
            if "memory" in _read(mount / "cgroup.controllers").split():
                v2 = candidate
        elif fstype == "cgroup":
            for controller in ("memory", "cpu", "pids"):
                if controller in options and controller in own_v1:
                    v1[controller] = mount / own_v1[controller].lstrip("/")
    return CgroupLayout(v2=v2, v1=v1)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str) -> None:
    path.write_text(value)


@dataclass
class Limits:
    """The limits of one enclave, and the groups that enforce them.

    Build with :meth:`prepare`; pass :meth:`preexec` to the sandbox's ``Popen``; call
    :meth:`cleanup` when the enclave is gone.
    """

    method: LimitMethod
    memory_mib: int
    cpus: int
    groups: tuple[Path, ...] = ()
    affinity: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()
    helper_groups: tuple[Path, ...] = ()
    """CPU-only groups for the supervisor and pasta (see the module docstring)."""
    net_groups: tuple[Path, ...] = ()
    """pasta's memory group under cgroup v1, bounding its sockets' buffers (module docstring)."""

    @classmethod
    def prepare(
        cls,
        name: str,
        *,
        memory_mib: int,
        cpus: int,
        layout: CgroupLayout | None = None,
        available_cpus: Sequence[int] | None = None,
    ) -> Limits:
        """Create the enclave's groups (``reef-<name>`` under reef's own groups) or plan rlimits.

        Raises:
            InputError: when more vCPUs are asked than this machine can give.
        """
        allowed = tuple(sorted(available_cpus or os.sched_getaffinity(0)))
        if cpus < 1 or cpus > len(allowed):
            raise InputError(
                f"{cpus} vCPUs asked, this machine offers {len(allowed)}",
                hint=f"use --cpus 1..{len(allowed)}",
            )
        if layout is None:
            layout = detect_cgroups(
                _read(Path("/proc/self/cgroup")), _read(Path("/proc/self/mountinfo"))
            )
        _check_name(name)
        group = f"reef-{name}"
        notes: list[str] = []
        helpers = f"{group}-helpers"
        if layout.v2 is not None:
            made = _try_v2(layout.v2 / group, memory_mib, cpus, notes)
            if made is not None:
                v2_helpers = _try_helpers(layout.v2 / helpers, cpus, notes, v2=True)
                return cls(
                    "cgroup2",
                    memory_mib,
                    cpus,
                    (made,),
                    notes=tuple(notes),
                    helper_groups=v2_helpers,
                )
        if "memory" in layout.v1:
            made_v1 = _try_v1(layout.v1, group, memory_mib, cpus, notes)
            if made_v1:
                # Without a CPU quota, pinning to as many CPUs as vCPUs is the next best limit.
                affinity = () if "cpu" in made_v1 else allowed[:cpus]
                groups = tuple(made_v1.values())
                v1_helpers = (
                    _try_helpers(layout.v1["cpu"] / helpers, cpus, notes, v2=False)
                    if "cpu" in made_v1
                    else ()
                )
                net = _try_net_v1(layout.v1["memory"] / f"{group}-net", memory_mib, notes)
                return cls(
                    "cgroup1",
                    memory_mib,
                    cpus,
                    groups,
                    affinity,
                    tuple(notes),
                    v1_helpers,
                    net,
                )
        notes.append("no writable memory cgroup: memory is limited by RLIMIT_AS")
        return cls("rlimit", memory_mib, cpus, (), allowed[:cpus], tuple(notes))

    @classmethod
    def from_description(cls, described: Mapping[str, Any]) -> Limits:
        """The limits :meth:`describe` recorded, so that another process can clean up after
        the one that prepared them (an empty description has no groups)."""
        return cls(
            method=described.get("method", "rlimit"),
            memory_mib=int(described.get("memory_mib", 0)),
            cpus=int(described.get("cpus", 0)),
            groups=tuple(Path(g) for g in described.get("groups", [])),
            affinity=tuple(described.get("affinity", [])),
            notes=tuple(described.get("notes", [])),
            helper_groups=tuple(Path(g) for g in described.get("helper_groups", [])),
            net_groups=tuple(Path(g) for g in described.get("net_groups", [])),
        )

    def preexec(self) -> Callable[[], None]:
        """What the child runs between fork and exec: join the groups, or apply the rlimits."""
        procs = [str(group / "cgroup.procs") for group in self.groups]
        memory = self.memory_mib << 20
        affinity = set(self.affinity)
        use_rlimit = self.method == "rlimit"

        def join() -> None:
            _join_groups(procs)
            if use_rlimit:
                resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            if affinity:
                os.sched_setaffinity(0, affinity)

        return join

    def net_preexec(self) -> Callable[[], None] | None:
        """What pasta runs between fork and exec: join its memory group, before it opens any
        socket (a socket's buffers are counted in the group it was made in); None without one."""
        procs = [str(group / "cgroup.procs") for group in self.net_groups]
        if not procs:
            return None

        return lambda: _join_groups(procs)

    def confine_helpers(self, pids: Sequence[int]) -> list[str]:
        """Move ``pids`` (the supervisor, pasta) into the helpers' CPU group, with their threads;
        returns what failed, for the supervisor's log (an enclave without a helper quota runs
        as it did before)."""
        failed: list[str] = []
        for group in self.helper_groups:
            for pid in pids:
                try:
                    _write(group / "cgroup.procs", str(pid))
                except OSError as exc:
                    failed.append(f"{pid} could not join {group} ({exc.strerror})")
        return failed

    def pids(self) -> list[int]:
        """Processes still in the enclave's groups."""
        found: set[int] = set()
        for group in self.groups:
            for line in _read(group / "cgroup.procs").split():
                with contextlib.suppress(ValueError):
                    found.add(int(line))
        return sorted(found)

    def kill_all(self, *, timeout: float = 5.0) -> list[int]:
        """SIGKILL every process left in the groups until none is; returns what survived."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.pids()
            if not left or time.monotonic() > deadline:
                return left
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of this enclave."""
        for group in self.groups:
            for name in ("memory.events", "memory.oom_control"):
                for line in _read(group / name).splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and value.strip().isdigit() and int(value) > 0:
                        return True
        return False

    def cleanup(self) -> None:
        """Remove the groups (after :meth:`kill_all`); missing ones are fine.

        The supervisor cleans up from inside a helper group: it first moves itself back to the
        group it came from, since a group with a process in it cannot be removed.
        """
        own = str(os.getpid())
        for group in self.helper_groups:
            if own in _read(group / "cgroup.procs").split():
                with contextlib.suppress(OSError):
                    _write(group.parent / "cgroup.procs", own)
        for group in (*self.groups, *self.helper_groups, *self.net_groups):
            for _ in range(50):
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    # The kernel releases a group shortly after its last process is reaped.
                    time.sleep(0.02)

    def describe(self) -> dict[str, object]:
        """For state files and ``reef enclave ps``."""
        return {
            "method": self.method,
            "memory_mib": self.memory_mib,
            "cpus": self.cpus,
            "groups": [str(g) for g in self.groups],
            "affinity": list(self.affinity),
            "notes": list(self.notes),
            "helper_groups": [str(g) for g in self.helper_groups],
            "net_groups": [str(g) for g in self.net_groups],
        }


def _try_v2(group: Path, memory_mib: int, cpus: int, notes: list[str]) -> Path | None:
    parent = group.parent
    try:
        enabled = _read(parent / "cgroup.subtree_control").split()
        if "memory" not in enabled:
            _write(parent / "cgroup.subtree_control", "+memory")
        group.mkdir(exist_ok=True)
        _write(group / "memory.max", str(memory_mib << 20))
        with contextlib.suppress(OSError):
            _write(group / "memory.swap.max", "0")
    except OSError as exc:
        notes.append(f"cgroup v2 at {parent} is not usable ({exc.strerror})")
        with contextlib.suppress(OSError):
            group.rmdir()
        return None
    for controller, setting, value in (
        ("cpu", "cpu.max", f"{cpus * _PERIOD_US} {_PERIOD_US}"),
        ("pids", "pids.max", str(_PIDS_MAX)),
    ):
        try:
            if controller not in _read(parent / "cgroup.subtree_control").split():
                _write(parent / "cgroup.subtree_control", f"+{controller}")
            _write(group / setting, value)
        except OSError as exc:
            notes.append(f"no {controller} limit in cgroup v2 ({exc.strerror})")
    return group


def _try_v1(
    hierarchies: dict[str, Path], name: str, memory_mib: int, cpus: int, notes: list[str]
) -> dict[str, Path]:
    made: dict[str, Path] = {}
    memory = hierarchies["memory"] / name
    try:
        memory.mkdir(exist_ok=True)
        _write(memory / "memory.limit_in_bytes", str(memory_mib << 20))
        made["memory"] = memory
    except OSError as exc:
        notes.append(f"cgroup v1 memory at {memory.parent} is not writable ({exc.strerror})")
        with contextlib.suppress(OSError):
            memory.rmdir()
        return {}
    with contextlib.suppress(OSError):
        # Without swap accounting this file is absent; with it, swap must not stretch the limit.
        _write(memory / "memory.memsw.limit_in_bytes", str(memory_mib << 20))
    try:
        # cgroup v1 counts socket buffers apart from the memory limit, and only once a group has
        # a limit of its own for them: without one, an app held any amount of kernel memory in
        # connections it never read (up to the host's whole TCP memory, which then fails every
        # socket on the host). cgroup v2 counts them in memory.max.
        _write(memory / "memory.kmem.tcp.limit_in_bytes", str(_tcp_limit(memory_mib)))
    except OSError as exc:
        notes.append(f"socket buffers are not limited in cgroup v1 ({exc.strerror})")
    for controller, settings in (
        (
            "cpu",
            (("cpu.cfs_period_us", str(_PERIOD_US)), ("cpu.cfs_quota_us", str(cpus * _PERIOD_US))),
        ),
        ("pids", (("pids.max", str(_PIDS_MAX)),)),
    ):
        if controller not in hierarchies:
            notes.append(f"no cgroup v1 {controller} hierarchy")
            continue
        group = hierarchies[controller] / name
        if _make_group(group, settings, notes, f"no {controller} limit in cgroup v1"):
            made[controller] = group
    return made


def _try_helpers(group: Path, cpus: int, notes: list[str], *, v2: bool) -> tuple[Path, ...]:
    """The helpers' CPU-only group (see the module docstring), or none (with a note)."""
    quota = str(int(cpus * HELPER_CPU_SHARE * _PERIOD_US))
    settings = (
        (("cpu.max", f"{quota} {_PERIOD_US}"),)
        if v2
        else (("cpu.cfs_period_us", str(_PERIOD_US)), ("cpu.cfs_quota_us", quota))
    )
    made = _make_group(group, settings, notes, "the supervisor and pasta have no CPU quota")
    return (group,) if made else ()


def _try_net_v1(group: Path, memory_mib: int, notes: list[str]) -> tuple[Path, ...]:
    """pasta's memory group under cgroup v1: no limit of its own on pasta's pages (a fixed
    table, some 30 MiB), the app's limit on its sockets' buffers; or none (with a note)."""
    settings = (("memory.kmem.tcp.limit_in_bytes", str(_tcp_limit(memory_mib))),)
    made = _make_group(group, settings, notes, "pasta's socket buffers are not limited")
    return (group,) if made else ()


def _make_group(
    group: Path, settings: Sequence[tuple[str, str]], notes: list[str], unmet: str
) -> bool:
    """Create ``group`` with ``settings`` written; when the host refuses, remove it again and
    note ``unmet`` with the reason (an enclave then runs without that limit)."""
    try:
        group.mkdir(exist_ok=True)
        for setting, value in settings:
            _write(group / setting, value)
    except OSError as exc:
        notes.append(f"{unmet} ({exc.strerror})")
        with contextlib.suppress(OSError):
            group.rmdir()
        return False
    return True


def _tcp_limit(memory_mib: int) -> int:
    """Bytes of socket buffers an enclave may hold where cgroup v1 counts them apart: a quarter
    of its memory limit (at least 8 MiB), so that its pages and its buffers together stay within
    1.25 times the limit."""
    return max(memory_mib << 18, 8 << 20)


def _check_name(name: str) -> None:
    if not name or "/" in name:
        raise EnclaveError(f"invalid enclave name for a control group: {name!r}")


def _join_groups(procs: Sequence[str]) -> None:
    """Join the control groups whose ``cgroup.procs`` files are ``procs`` (run between fork and
    exec, in the child)."""
    pid = str(os.getpid()).encode()
    for path in procs:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)
