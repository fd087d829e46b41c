"""One-shot CLI start-up: wall time of common `reef` commands next to `python -c pass`.

What a user waits for when typing a command is mostly Python start-up and imports; this prints,
for each command, the best and the median of N runs in the same session, and the ratio to a bare
interpreter. The aim (issue 14) is at most 0.2 s per command. Runs are interleaved so that load
from other processes affects every row alike, and next to the wall time is the CPU time the
command used (user + system, from ``getrusage``), which moves much less than the wall time when
other processes share the cores. With ``--baseline SRC`` each command is also timed with reef
imported from ``SRC`` (the ``src`` directory of another checkout, say the commit before a change),
interleaved with the rest, so that a before/after comparison sees the same load. Prints, does not
assert.

Run: ``.venv/bin/python bench/cli.py [--runs N] [--baseline SRC]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REEF = str(Path(sys.executable).with_name("reef"))
_KEY = ("--seed", "11" * 64, "--image-id", "22" * 32, "--path", "wallet")
DERIVE_ARGS = (*_KEY, "--type", "secp256k1", "--json")
VECTORS = Path(os.environ.get("REEF_VECTORS", REPO.parent / "shared" / "vectors"))


def _time(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="a src directory to time reef from as well")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="reef-bench-cli-")
    env = {**os.environ, "REEF_HOME": home}
    rows: dict[str, list[str]] = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "reef --help": [REEF, "--help"],
        "reef kms derive": [REEF, "kms", "derive", *DERIVE_ARGS],
    }
    vector = VECTORS / "nitro" / "aws.bin"
    if vector.exists():
        rows["reef attestation verify (aws.bin)"] = [REEF, "attestation", "verify", str(vector)]
        rows["reef attestation verify (aws.bin)"] += ["--replay", "--json"]
    else:
        print(f"(no {vector}: the attestation row is left out)")
    envs = {name: env for name in rows}
    if args.baseline is not None:
        # PYTHONPATH comes before the editable install's path: reef is imported from there.
        baseline = {**env, "PYTHONPATH": str(args.baseline.resolve())}
        for name, argv in list(rows.items())[1:]:
            rows[f"{name} [baseline]"] = argv
            envs[f"{name} [baseline]"] = baseline
    times: dict[str, list[float]] = {name: [] for name in rows}
    cpu: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.runs):
        for name, argv in rows.items():
            wall, used = _time(argv, envs[name])
            times[name].append(wall)
            cpu[name].append(used)
    base = statistics.median(times["python -c pass"])
    print(f"one-shot CLI start-up, {args.runs} runs each (seconds)")
    print(f"{'':44} {'best':>7} {'median':>7} {'/ python':>9} {'CPU median':>11}")
    for name, values in times.items():
        median = statistics.median(values)
        used = statistics.median(cpu[name])
        print(f"{name:44} {min(values):7.3f} {median:7.3f} {median / base:8.1f}x {used:11.3f}")


if __name__ == "__main__":
    main()
