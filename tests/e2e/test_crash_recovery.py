"""kill -9 of `reef up` with paid jobs and the KMS root running, then `reef up` again (issue 10).

Before: the orphaned KMS root enclave kept its host ports, so the restart failed with "host port
... is already in use". After: the restart adopts what survived (the KMS root, each job's
enclave), and nothing is left running twice or at all once the network stops.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from e2e_support import Network, start_network, stop_network

from dev_tee_support import requires_isolation
from net_support import free_port
from reef.enclave import LocalBackend
from reef.home import ReefHome

pytestmark = [pytest.mark.slow, requires_isolation]

HELLO = str(Path(__file__).resolve().parents[2] / "examples" / "hello")


def _running(home: Path) -> list[tuple[str, str, dict[str, str]]]:
    infos = asyncio.run(LocalBackend(ReefHome(home)).list())
    return [(i.id, i.name, dict(i.labels)) for i in infos if i.state in ("starting", "running")]


def _netns() -> set[str]:
    path = Path("/run/netns")
    return {p.name for p in path.iterdir()} if path.is_dir() else set()


def test_kill_9_then_up_adopts_what_survived(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ports = ["--kms-port", str(free_port()), "--kms-public-port", str(free_port())]
    net: Network | None = start_network(home, ports)
    try:
        jobs = [net.cli.json("deploy", HELLO, "--duration", "1h")["job_id"] for _ in range(2)]
        before = _running(home)
        assert len(before) == 3  # the KMS root and one enclave per job
        os.kill(net.process.pid, signal.SIGKILL)
        net.process.wait()
        net.reader.join(timeout=10)
        if net.process.stdout is not None:
            net.process.stdout.close()

        net = start_network(home, ports)
        after = _running(home)
        kms = [e for e in after if e[1] == "kms-root"]
        assert len(kms) == 1, after
        for job in jobs:
            mine = [e for e in after if e[2].get("reef.job", "").lower() == job.lower()]
            assert len(mine) == 1, (job, after)
        assert len(after) == 3, after
        # Each running enclave has exactly one namespace; none is left from the killed run.
        assert {n for n in _netns() if n.startswith("reef-")} >= {f"reef-{e[0]}" for e in after}
        ours = {f"reef-{d.name}" for d in (home / "enclaves").iterdir()}
        assert {n for n in _netns() if n in ours} == {f"reef-{e[0]}" for e in after}
        # The restarted network still serves a deploy end to end.
        net.cli.json("deploy", HELLO, "--duration", "10m")
    finally:
        if net is not None and net.process.poll() is None:
            assert stop_network(net) == 0
        left = _running(home)
        for enclave_id, _, _ in left:  # so that a failure leaves nothing running either
            asyncio.run(LocalBackend(ReefHome(home)).stop(enclave_id))
    assert left == []
    ours = {f"reef-{d.name}" for d in (home / "enclaves").iterdir()}
    assert not (_netns() & ours)
