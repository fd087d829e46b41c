"""A new user's first minute: `reef up` to ``ready`` on the devnet and on anvil.

Each round starts `reef up` as a user does (the console script, a fresh ``$REEF_HOME``, every
port 0 so nothing collides with another network on the machine), reads its progress lines as
they come and notes when each arrives, stops it with SIGINT once it prints ``ready``, and notes
how long stopping took. The reference, timed in the same round, is ``python -c pass`` (what any
command pays before reef runs): the figures printed are medians over the rounds, with the
median's ratio to the reference, and the median time each phase took (from one progress line
to the next), so a change shows where it moved the seconds.

Chains and variants are interleaved inside each round, so load from other processes on the
machine affects them alike. With ``--baseline VENV`` every run is repeated with ``VENV/bin/reef``
(rows marked ``[VENV's folder name]``; the flag may be repeated), interleaved too, for a
before/after comparison under the same load. ``VENV`` is a copy of this virtualenv whose
editable install points at another checkout (a ``PYTHONPATH`` would not do: an enclave's
sandbox binds the interpreter's prefix and the ``reef`` package its launcher imported, and its
Python finds reef the way the venv does)::

    git archive HEAD~1 src examples | tar -x -C /tmp/old
    ln -s "$PWD/tests" /tmp/old/tests   # its anvil (tests/js)
    for r in serverless proofs; do   # the npm packages git ignores, or it installs them anew
        ln -s "$PWD/src/reef/$r/runtime/node_modules" "/tmp/old/src/reef/$r/runtime/"
    done
    cp -a .venv /tmp/old-venv
    echo /tmp/old/src > /tmp/old-venv/lib/python3.11/site-packages/_editable_impl_reef.pth
    sed -i '1s|.*|#!/tmp/old-venv/bin/python|' /tmp/old-venv/bin/reef

``--core`` starts the core network only (``--no-serverless --no-proofs --no-dashboard``, as the
market's end-to-end tests do). anvil is skipped, with the reason, when it is not installed
(``cd tests/js && npm ci``).

The CPU column is the user + system time of `reef up`'s own process (read from ``/proc`` just
before it is stopped), which other processes on the machine move much less than the wall time;
the enclaves and anvil run in processes of their own, not counted there. Prints, never asserts.

Run: ``.venv/bin/python bench/up.py [--rounds N] [--chains devnet,anvil] [--core]
[--baseline VENV]``.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REEF = str(Path(sys.executable).with_name("reef"))
PORT_FLAGS = (
    "--rpc-port",
    "--cp-port",
    "--store-port",
    "--verifier-port",
    "--kms-port",
    "--kms-public-port",
    "--dashboard-port",
)
CORE_ONLY = ("--no-serverless", "--no-proofs", "--no-dashboard")


@dataclass
class Run:
    """One `reef up`: when each progress line came, ``ready``, and how long stopping took."""

    phases: list[tuple[str, float]] = field(default_factory=list)
    ready_s: float = float("nan")
    cpu_s: float = float("nan")
    stop_s: float = float("nan")
    error: str = ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def anvil_missing() -> str | None:
    """Why anvil cannot run here, or None."""
    from reef.chain.devnet._anvil import find_anvil
    from reef.errors import ReefError

    try:
        find_anvil()
    except ReefError as exc:
        return exc.message
    return None


def time_up(chain: str, *, core: bool, reef: str, timeout_s: float) -> Run:
    """Start `reef up` on ``chain`` in a fresh home, time it to ``ready``, stop it."""
    run = Run()
    with tempfile.TemporaryDirectory(prefix="reef-bench-up-") as home:
        env = {**os.environ, "REEF_HOME": home}
        argv = [reef, "up", "--chain", chain, *(a for f in PORT_FLAGS for a in (f, "0"))]
        argv += CORE_ONLY if core else ()
        started = time.monotonic()
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a Ctrl-C of the benchmark reaches it only through us
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        seen: list[str] = []
        deadline = started + timeout_s
        table = False
        try:
            while True:
                try:
                    line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    run.error = f"no ready within {timeout_s:g} s"
                    break
                if line is None:
                    run.error = "exited before ready: " + "".join(seen[-5:]).strip()
                    break
                at = time.monotonic() - started
                seen.append(line)
                text = line.rstrip()
                if text == "ready":
                    run.ready_s = at
                    run.cpu_s = cpu_seconds(process.pid)
                    break
                # Progress lines come before the endpoint table (which starts with the chain).
                if text.startswith("chain (JSON-RPC)"):
                    table = True
                if not table and text and not text.startswith(" "):
                    run.phases.append((text, at))
        finally:
            stopping = time.monotonic()
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            run.stop_s = time.monotonic() - stopping
            reader.join(timeout=10)
            if process.stdout is not None:
                process.stdout.close()
    return run


def time_pass(env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=env)
    return time.monotonic() - started


def phase_durations(run: Run) -> dict[str, float]:
    """Each progress line's phase: the time from it to the next line (or to ready)."""
    marks = [("(start-up: imports and checks)", 0.0), *run.phases, ("(ready)", run.ready_s)]
    return {name: marks[i + 1][1] - at for i, (name, at) in enumerate(marks[:-1])}


def median(values: list[float]) -> float:
    clean = [v for v in values if v == v]  # NaN (a failed run) is left out
    return statistics.median(clean) if clean else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chains", default="devnet,anvil")
    parser.add_argument("--core", action="store_true", help="the core network only")
    parser.add_argument(
        "--baseline",
        type=Path,
        action="append",
        default=[],
        help="a virtualenv to time the reef of as well (repeatable; rows named after its folder)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for ready")
    args = parser.parse_args()

    chains = [c for c in args.chains.split(",") if c]
    if "anvil" in chains and (why := anvil_missing()) is not None:
        print(f"anvil skipped: {why}")
        chains.remove("anvil")
    variants: list[tuple[str, str]] = [("", REEF)]
    variants += [(f" [{venv.name}]", str(venv / "bin" / "reef")) for venv in args.baseline]
    runs: dict[str, list[Run]] = {}
    reference: list[float] = []
    for round_index in range(args.rounds):
        reference.append(time_pass())
        for chain in chains:
            for suffix, reef in variants:
                name = f"reef up --chain {chain}{' (core)' if args.core else ''}{suffix}"
                run = time_up(chain, core=args.core, reef=reef, timeout_s=args.timeout)
                runs.setdefault(name, []).append(run)
                state = f"ready {run.ready_s:6.2f} s" if not run.error else run.error
                print(f"round {round_index + 1}: {name:<44} {state}", flush=True)

    ref = median(reference)
    print()
    print(f"{'':<44} {'ready (s)':>10} {'cpu (s)':>8} {'stop (s)':>9} {'x ref':>9}")
    print(f"{'python -c pass':<44} {ref:>10.2f} {'':>8} {'':>9} {1.0:>8.1f}x")
    for name, done in runs.items():
        ready = median([r.ready_s for r in done])
        cpu = median([r.cpu_s for r in done])
        stop = median([r.stop_s for r in done])
        failed = sum(1 for r in done if r.error)
        note = (
            f"  ({failed} of {len(done)} failed: {done[-1].error or 'see above'})" if failed else ""
        )
        print(f"{name:<44} {ready:>10.2f} {cpu:>8.2f} {stop:>9.2f} {ready / ref:>8.1f}x{note}")
    print()
    print("median seconds per phase (from its progress line to the next one):")
    for name, done in runs.items():
        print(f"  {name}")
        names: list[str] = []
        for run in done:
            names += [n for n in phase_durations(run) if n not in names]
        for phase in names:
            values = [d[phase] for r in done if phase in (d := phase_durations(r))]
            print(f"    {median(values):7.2f}  {phase}")


if __name__ == "__main__":
    main()
