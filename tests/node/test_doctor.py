"""`reef doctor` and the start-up check of `reef up` (issue 12 item 3, issue 10's refusal)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dev_tee_support import ISOLATION_MISSING

REEF = str(Path(sys.executable).with_name("reef"))
pytestmark = pytest.mark.skipif(
    ISOLATION_MISSING is not None, reason=f"this host itself lacks something: {ISOLATION_MISSING}"
)


def _path_without(tmp_path: Path, tool: str) -> str:
    """A PATH with every program of the current one but ``tool`` (links in one directory)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            target = bin_dir / entry.name
            if entry.name != tool and not target.exists():
                target.symlink_to(entry.path)
    return str(bin_dir)


def _run(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REEF, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def test_doctor_passes_here(reef_home: Path) -> None:
    done = _run(["doctor", "--json"], {**os.environ, "REEF_HOME": str(reef_home)})
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    names = {c["name"] for c in report["checks"]}
    assert {"bwrap", "pasta", "nft", "setpriv", "user namespaces", "libseccomp", "disk"} <= names


def test_without_pasta_doctor_names_passt_and_up_stops_at_once(
    reef_home: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "REEF_HOME": str(reef_home), "PATH": _path_without(tmp_path, "pasta")}
    done = _run(["doctor"], env)
    assert done.returncode == 1
    assert "pasta" in done.stdout
    assert "apt-get install passt" in done.stdout

    up = _run(["up", "--rpc-port", "0", "--cp-port", "0", "--store-port", "0",
               "--verifier-port", "0", "--kms-port", "0", "--kms-public-port", "0"], env, 30)  # fmt: skip
    assert up.returncode == 1
    assert "pasta" in up.stderr
    assert "apt-get install passt" in up.stderr
    assert "Traceback" not in up.stderr
    assert not (reef_home / "chain").exists()  # refused before the devnet or any service started
