"""One-shot CLI start-up: wall time of common `reef` commands next to `python -c pass`.

What a user waits for when typing a command is mostly Python start-up and imports; this prints,
for each command, the best and the median of N runs in the same session, and the ratio to a bare
interpreter. The aim (issue 14) is at most 0.2 s per command. Runs are interleaved so that load
from other processes affects every row alike, and next to the wall time is the CPU time the
command used (user + system, from ``getrusage``), which moves much less than the wall time when
other processes share the cores. With ``--baseline SRC`` each command is also timed with reef
imported from ``SRC`` (the ``src`` directory of another checkout, say the commit before a change),
interleaved with the rest, so that a before/after comparison sees the same load. A row whose
command exits otherwise than it should (0, or 1 for the one run before ``reef up``) is named
after the table: it times a failure, not the command. Prints, does not assert.

The commands a user types most against a chain (``reef jobs list``, ``reef jobs show``, ``reef
wallet``) run against reef's devnet, served over JSON-RPC from this process (a thread) with
reef's contracts and ``--jobs`` open jobs of dev account 0; their provider's control plane is a
closed loopback port (each job's row then says it cannot be reached, at once), so the rows time
reef, not a provider. ``--no-chain`` leaves those rows out. The CPU column counts the commands'
processes only (the devnet answering them runs in this one).

Run: ``.venv/bin/python bench/cli.py [--runs N] [--baseline SRC] [--jobs N] [--no-chain]``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REEF = str(Path(sys.executable).with_name("reef"))
_KEY = ("--seed", "11" * 64, "--image-id", "22" * 32, "--path", "wallet")
DERIVE_ARGS = (*_KEY, "--type", "secp256k1", "--json")
VECTORS = Path(os.environ.get("REEF_VECTORS", REPO.parent / "shared" / "vectors"))
# Rows whose command is meant to fail (every other row's command must exit 0).
_NO_NETWORK = "reef jobs list (no network yet)"
_EXPECTED_EXIT = {_NO_NETWORK: 1}


def _time(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall time, CPU time (user + system) and exit status of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, done.returncode


def _closed_port() -> int:
    """A loopback port nothing listens on (connecting is refused at once)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _chain(jobs: int, keys: Path) -> Iterator[dict[str, list[str]]]:
    """A devnet served from this process with ``jobs`` open jobs of dev account 0; yields the
    chain commands' rows."""
    from reef.chain import Devnet, MarketClient, deploy_contracts, serve_devnet_in_thread
    from reef.market import JobMetadata, RateCard

    devnet = Devnet()
    owner, provider = devnet.accounts[0], devnet.accounts[9]
    deployment = deploy_contracts(devnet.web3(), owner.address, fund=[owner.address])
    market = MarketClient(devnet.web3(), deployment.market, account=provider.local_account)
    market.add_provider(f"http://127.0.0.1:{_closed_port()}")
    market = market.with_account(owner.local_account)
    rate = RateCard.dev().lookup("local", "dev.small").min_rate
    metadata = JobMetadata(
        instance="dev.small", region="local", memory=1024, vcpu=1, url="http://store/x"
    ).to_json()
    opened = [market.open_job(metadata, provider.address, rate, 360_000) for _ in range(jobs)]
    key = keys / "owner.key"
    key.write_text(owner.private_key.hex())
    with serve_devnet_in_thread(devnet) as rpc:
        where = ["--rpc", rpc.url, "--market", deployment.market]
        last = str(int(opened[-1], 16)) if opened else "0"
        yield {
            f"reef jobs list ({jobs} jobs)": [REEF, "jobs", "list", *where, "--key", str(key)],
            "reef jobs show": [REEF, "jobs", "show", last, *where],
            "reef wallet": [REEF, "wallet", *where, "--key", str(key)],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="a src directory to time reef from as well")
    parser.add_argument("--jobs", type=int, default=5, help="open jobs on the bench's chain")
    parser.add_argument("--no-chain", action="store_true", help="leave out the chain commands")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="reef-bench-cli-")
    atexit.register(shutil.rmtree, home, True)  # the home, its key file, the commands' files
    env = {**os.environ, "REEF_HOME": home}
    rows: dict[str, list[str]] = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "reef --help": [REEF, "--help"],
        "reef kms derive": [REEF, "kms", "derive", *DERIVE_ARGS],
        "reef deploy --help": [REEF, "deploy", "--help"],
        "reef jobs list --help": [REEF, "jobs", "list", "--help"],
        # A newcomer's first try, before `reef up`: the home knows no network (exit 1).
        _NO_NETWORK: [REEF, "jobs", "list"],
    }
    vector = VECTORS / "nitro" / "aws.bin"
    if vector.exists():
        rows["reef attestation verify (aws.bin)"] = [REEF, "attestation", "verify", str(vector)]
        rows["reef attestation verify (aws.bin)"] += ["--replay", "--json"]
    else:
        print(f"(no {vector}: the attestation row is left out)")
    with contextlib.ExitStack() as stack:
        if not args.no_chain:
            rows.update(stack.enter_context(_chain(args.jobs, Path(home))))
        _run(rows, env, args.runs, args.baseline)


def _run(rows: dict[str, list[str]], env: dict[str, str], runs: int, baseline: Path | None) -> None:
    """Time every row ``runs`` times, interleaved (and each with ``baseline``'s reef), and print."""
    envs = {name: env for name in rows}
    if baseline is not None:
        # PYTHONPATH comes before the editable install's path: reef is imported from there.
        old = {**env, "PYTHONPATH": str(baseline.resolve())}
        for name, argv in list(rows.items())[1:]:
            rows[f"{name} [baseline]"] = argv
            envs[f"{name} [baseline]"] = old
    times: dict[str, list[float]] = {name: [] for name in rows}
    cpu: dict[str, list[float]] = {name: [] for name in rows}
    failed: dict[str, int] = {}
    for _ in range(runs):
        for name, argv in rows.items():
            wall, used, status = _time(argv, envs[name])
            times[name].append(wall)
            cpu[name].append(used)
            # A command that fails early is fast: its row would time the error, not the command.
            if status != _EXPECTED_EXIT.get(name.removesuffix(" [baseline]"), 0):
                failed[name] = status
    base = statistics.median(times["python -c pass"])
    print(f"one-shot CLI start-up, {runs} runs each (seconds)")
    print(f"{'':44} {'best':>7} {'median':>7} {'/ python':>9} {'CPU median':>11}")
    for name, values in times.items():
        median = statistics.median(values)
        used = statistics.median(cpu[name])
        print(f"{name:44} {min(values):7.3f} {median:7.3f} {median / base:8.1f}x {used:11.3f}")
    for name, status in failed.items():
        expected = _EXPECTED_EXIT.get(name.removesuffix(" [baseline]"), 0)
        print(f"warning: {name!r} exited {status}, not {expected}: its row times a failure")


if __name__ == "__main__":
    main()
