"""Every benchmark under ``bench/`` still runs: the smallest run of each, as a user starts it.

The benchmarks are not tests and nothing in CI times them, so code moving under them would go
unnoticed until someone reads a stale table. Each test runs one script in a subprocess with the
least work that still goes through every section, and checks that it exited 0 and printed the
line holding its ratio to the reference measured in the same run (and, where the script counts
failures, that there were none). Timings are never asserted: the machine decides those.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
JS = REPO / "tests" / "js" / "node_modules" / ".bin"


def run_bench(name: str, *args: str, timeout: float = 240) -> str:
    """Run ``bench/<name>.py`` with ``args``; return its output, failing on a non-zero exit."""
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), *args],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"bench/{name}.py exited {done.returncode}:\n{output[-4000:]}"
    return done.stdout


def needs_node(tool: str) -> None:
    if not (JS / tool).exists() or shutil.which("node") is None:
        pytest.skip(f"{tool} is not installed under tests/js (npm ci in tests/js)")


def test_attestation(vectors: Path) -> None:
    out = run_bench("attestation", "--seconds", "0.2")
    assert "AWS Nitro document (aws.bin" in out
    # Three rows per document kind, each a share of the raw ECDSA bound measured just before.
    assert len(re.findall(r"documents/s .* \d+\.\d % of the raw bound", out)) == 6, out
    assert len(re.findall(r"raw P-384 ECDSA +\d+ verifications/s", out)) == 2, out


def test_scallop() -> None:
    out = run_bench("scallop", "--seconds", "0.02")
    assert re.search(r"Scallop seal .* \d+\.\d % of raw encrypt", out), out
    assert re.search(r"Scallop open .* \d+\.\d % of raw decrypt", out), out
    assert re.search(r"Scallop over loopback TCP .* \d+\.\d % of that bound", out), out
    assert re.search(r"loopback, both sides attested +\d+ /s", out), out


def test_kms() -> None:
    out = run_bench("kms", "--seconds", "0.02", "--rounds", "1")
    assert re.search(r"raw HMAC-SHA512 .* /s", out), out
    assert len(re.findall(r"\(\s*\d+\.\d HMACs' time\)", out)) == 4, out
    assert re.search(r"enclave's first key .* \d+\.\d\d", out), out
    assert re.search(r"plain local HTTP round trip .* \d+\.\d\d", out), out


@pytest.mark.slow
def test_cli(vectors: Path) -> None:
    # The chain rows too: they run reef jobs list/show and reef wallet against a devnet.
    out = run_bench("cli", "--runs", "1", "--jobs", "1")
    assert re.search(r"python -c pass +\d+\.\d+ +\d+\.\d+ +1\.0x", out), out
    for row in ("reef --help", "reef kms derive", "reef attestation verify", "reef jobs show",
                "reef wallet", "reef jobs list (1 jobs)"):  # fmt: skip
        assert re.search(rf"{re.escape(row)}.* \d+\.\dx", out), f"no row {row!r}:\n{out}"
    # Every command did what it is timed for (the script names one that exited otherwise).
    assert "warning:" not in out, out


@pytest.mark.slow
@pytest.mark.node
def test_chain() -> None:
    needs_node("anvil")
    out = run_bench(
        "chain", "--rounds", "1", "--txs", "3", "--calls", "5", "--nodes", "reef,reef-inproc,anvil"
    )
    assert re.search(r"reef +reef-inproc +anvil +reef/anvil", out), out
    rows = ("ETH transfers/s", "token transfers/s", "market tx/s", "eth_call/s",
            "eth_getLogs logs/s")  # fmt: skip
    for row in rows:
        # reef, reef-inproc and anvil per second, then reef's share of anvil.
        assert re.search(rf"{re.escape(row)}( +\d+\.\d){{3}} +\d+\.\d\d\n", out), out


@pytest.mark.slow
def test_services() -> None:
    out = run_bench("services", "--seconds", "0.3")
    assert re.search(r"P-384 verify: +\d+/s per core", out), out
    rows = re.findall(r"verifier, +\d+ connection\(s\), (\d+) worker\(s\):.*% of the \d+-core "
                      r"2-verify bound.*; \d+ requests, (\d+) not 200\)", out)  # fmt: skip
    assert len(rows) == 2, out
    # As reef verifier serve: one worker per CPU unless --workers says otherwise.
    assert {workers for workers, _ in rows} == {str(len(os.sched_getaffinity(0)))}, out
    assert {failed for _, failed in rows} == {"0"}, out
    assert re.search(r"keep-alive GET /health on the floor: p50 +\d+\.\d+ ms", out), out
    assert re.search(r"bare asyncio socket echo: +p50 +\d+\.\d+ ms", out), out
    assert len(re.findall(r"devnet JSON-RPC .*\(HTTP adds -?\d+\.\d+ ms\)", out)) == 2, out


@pytest.mark.slow
def test_enclave() -> None:
    out = run_bench("enclave", "--rounds", "1", timeout=300)
    assert re.search(r"enclave / bare \(median\): \d+\.\dx", out), out
    for row in ("bare app process", "reef enclave run", "with a spare supervisor",
                "wired to a KMS root"):  # fmt: skip
        assert re.search(rf"{re.escape(row)}.* \d+\.\d+ +\d+\.\d+\n", out), out
    assert re.search(r"resident memory per enclave \(MiB, median\): app \d", out), out


@pytest.mark.slow
def test_serverless() -> None:
    from reef.serverless import find_workerd

    if find_workerd() is None:
        pytest.skip("workerd is not installed (the serverless tests install it with npm)")
    out = run_bench("serverless", "--calls", "20", "--cold", "1", "--chain-calls", "1")
    assert re.search(r"warm: bare workerd +p50 +\d+\.\d+ ms", out), out
    assert re.search(r"warm overhead \(reef - bare\) +p50 +-?\d+\.\d+ ms", out), out
    assert re.search(r"cold: reef run \(new process\) +p50 +\d+\.\d+ ms", out), out
    assert re.search(r"chain: request -> first output +p50 +\d+\.\d ms", out), out
    assert re.search(r"chain: calls/s, 3 executors +\d+\.\d\d jobs/s", out), out


@pytest.mark.slow
@pytest.mark.node
def test_proofs() -> None:
    out = run_bench("proofs", "--asks", "300", "--provers", "5", "--repeat", "1")
    assert re.search(r"match +\d+ asks +[\d,]+ asks/s", out), out
    assert re.search(r"latency +\d+ asks +p50 \d+\.\d\d ms, p99 \d+\.\d\d ms", out), out
    assert re.search(r"prove  snarkjs fullprove \(CLI\) +\d+ ms", out), out
    assert re.search(r"a repeated check costs \d+\.\d\d of a new one", out), out


@pytest.mark.slow
def test_market() -> None:
    out = run_bench(
        "market", "--events", "300", "--repeat", "1", "--deploys", "1", "--burst", "2", timeout=400
    )
    assert re.search(r"open_to_verified +median +\d+\.\d\d s", out), out
    assert re.search(r"reachable after the first jobOpen: first \d+\.\d\d s", out), out
    assert re.search(r"indexer / raw +\d+\.\d\d of the raw read throughput", out), out


@pytest.mark.slow
def test_up() -> None:
    out = run_bench("up", "--rounds", "1", "--core", "--chains", "devnet")
    assert re.search(r"python -c pass +\d+\.\d+ +1\.0x", out), out
    assert re.search(r"reef up --chain devnet \(core\) +\d+\.\d+ .* \d+\.\dx", out), out
    assert "starting the KMS root enclave" in out  # the phases were read from its progress
