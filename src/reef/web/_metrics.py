"""The network's own gauges: jobs, their money and enclaves, providers, enclave resources.

:func:`network_collector` is a Prometheus collector the dashboard's ``/metrics`` serves next to
the serving floor's HTTP metrics, and the alert rules read (``reef alerts``). It reads the chain
and the control planes when scraped (nothing cached), so a scrape is as fresh as a page.
:func:`enclave_usage` reads each local enclave's cgroup (``reef-<name>`` groups, v1 or v2) for
CPU seconds and memory bytes.

prometheus_client is imported inside the functions: reef.web is never loaded by enclaves, but
the names here are imported by ``reef alerts`` too, which should start quickly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reef.errors import ReefError

if TYPE_CHECKING:
    from reef.web._dashboard import Dashboard

__all__ = ["EnclaveUsage", "enclave_usage", "network_collector", "network_samples"]

_log = logging.getLogger("reef.web")


@dataclass(frozen=True)
class EnclaveUsage:
    """One enclave's resource use, from its cgroup."""

    name: str
    cpu_seconds: float | None
    memory_bytes: int | None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cgroup_dirs(proc_cgroup: str, mount: Path) -> list[Path]:
    """This process's cgroup directories (v2 unified, then v1 memory and cpuacct)."""
    dirs: list[Path] = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        rel = path.lstrip("/")
        if controllers == "":
            dirs.append(mount / rel)
        for name in controllers.split(","):
            if name in ("memory", "cpuacct", "cpu,cpuacct", "cpu"):
                for candidate in (mount / name / rel, mount / controllers / rel):
                    if candidate not in dirs:
                        dirs.append(candidate)
    return dirs


def enclave_usage(
    proc_cgroup: str | None = None,
    mount: Path = Path("/sys/fs/cgroup"),
    proc: Path = Path("/proc"),
) -> list[EnclaveUsage]:
    """CPU and memory of every ``reef-*`` cgroup under this process's groups (local enclaves).

    Args:
        proc_cgroup: the text of ``/proc/self/cgroup`` (read when not given).
        mount: where cgroup filesystems are mounted.
        proc: where the process table is (for CPU time when no controller accounts it).
    """
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            return []
    found: dict[str, dict[str, Any]] = {}
    for base in _cgroup_dirs(proc_cgroup, mount):
        try:
            groups = [p for p in base.iterdir() if p.is_dir() and p.name.startswith("reef-")]
        except OSError:
            continue
        for group in groups:
            entry = found.setdefault(group.name.removeprefix("reef-"), {})
            # cgroup v2: memory.current and cpu.stat's usage_usec; v1: memory.usage_in_bytes
            # and cpuacct.usage (nanoseconds).
            memory = _read_int(group / "memory.current") or _read_int(
                group / "memory.usage_in_bytes"
            )
            if memory is not None:
                entry["memory"] = memory
            usage_ns = _read_int(group / "cpuacct.usage")
            if usage_ns is not None:
                entry["cpu"] = usage_ns / 1e9
            try:
                for line in (group / "cpu.stat").read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "usage_usec":
                        entry["cpu"] = int(value) / 1e6
            except (OSError, ValueError):
                pass
            if "cpu" not in entry and memory is not None:
                # No CPU accounting controller (a v1 host without cpuacct): the CPU time of
                # the processes the group holds now (their exited children included).
                entry["cpu"] = _procs_cpu(group / "cgroup.procs", proc)
    return [
        EnclaveUsage(name, entry.get("cpu"), entry.get("memory"))
        for name, entry in sorted(found.items())
        if entry
    ]


def _procs_cpu(procs: Path, proc: Path) -> float | None:
    """utime + stime + cutime + cstime of the pids listed in ``procs``, in seconds."""
    try:
        pids = procs.read_text().split()
    except OSError:
        return None
    ticks = 0
    for pid in pids:
        try:
            # Fields after the command (which may hold spaces) start after its closing paren.
            fields = (proc / pid / "stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(f) for f in fields[11:15])
        except (OSError, ValueError, IndexError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def network_samples(dash: Dashboard) -> list[tuple[str, str, dict[str, str], float]]:
    """``(name, help, labels, value)`` of every network gauge, read now.

    A part that cannot be read (the chain down, a control plane away) leaves its gauges out and
    sets ``reef_network_up`` to 0, so an alert on that fires instead of the scrape failing.
    """
    from reef.web import _data

    out: list[tuple[str, str, dict[str, str], float]] = []
    try:
        session = dash.session()
        client = session.market()
        out.append(
            ("reef_chain_block", "Latest block number", {}, float(session.w3.eth.block_number))
        )
        for row in _data.describe_jobs(session, client, _data.open_jobs(session, client)):
            labels = {"job": str(row.number)}
            out += [
                (
                    "reef_job_balance",
                    "Job balance left now (token base units)",
                    labels,
                    row.balance,
                ),
                (
                    "reef_job_rate",
                    "Job rate (token base units x 1e12 per second)",
                    labels,
                    row.rate,
                ),
                (
                    "reef_job_running",
                    "1 while the job's enclave runs",
                    labels,
                    1.0 if row.state == "running" else 0.0,
                ),
                (
                    "reef_job_restarts",
                    "Times the provider relaunched the enclave",
                    labels,
                    row.restarts,
                ),
            ]
            if row.time_left_s is not None:
                out.append(
                    (
                        "reef_job_time_left_seconds",
                        "Seconds until the provider stops the enclave for lack of money",
                        labels,
                        float(row.time_left_s),
                    )
                )
        for provider in _data.providers(session, client):
            out.append(
                (
                    "reef_provider_up",
                    "1 when the provider's control plane answers",
                    {"provider": provider.address},
                    1.0 if provider.reachable else 0.0,
                )
            )
        up = 1.0
    except ReefError as exc:
        _log.warning("cannot read the network for metrics: %s", exc.message)
        up = 0.0
    out.append(("reef_network_up", "1 when the chain could be read", {}, up))
    for usage in enclave_usage():
        labels = {"enclave": usage.name}
        if usage.cpu_seconds is not None:
            out.append(
                (
                    "reef_enclave_cpu_seconds",
                    "CPU time of the enclave's cgroup",
                    labels,
                    usage.cpu_seconds,
                )
            )
        if usage.memory_bytes is not None:
            out.append(
                (
                    "reef_enclave_memory_bytes",
                    "Memory of the enclave's cgroup",
                    labels,
                    usage.memory_bytes,
                )
            )
    return out


def network_collector(dash: Dashboard) -> Any:
    """A prometheus_client collector of :func:`network_samples` (a new read per scrape)."""
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector

    class NetworkCollector(Collector):
        def collect(self) -> Iterator[GaugeMetricFamily]:
            families: dict[str, GaugeMetricFamily] = {}
            for name, help_text, labels, value in network_samples(dash):
                family = families.get(name)
                if family is None:
                    family = families[name] = GaugeMetricFamily(
                        name, help_text, labels=sorted(labels)
                    )
                family.add_metric([labels[k] for k in sorted(labels)], float(value))
            yield from families.values()

        def describe(self) -> Iterator[GaugeMetricFamily]:
            return iter(())  # no reads at registration time

    return NetworkCollector()
