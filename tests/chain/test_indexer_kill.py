"""kill -9 of a running indexer process, again and again, while the market keeps emitting events:
after the last restart the database holds every market log of the chain exactly once, in order.

The indexer is the real `reef provider index --follow` process reading a devnet over JSON-RPC;
the reference is the chain's own eth_getLogs."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from reef.chain import serve_devnet_in_thread
from reef.testing import dev_market

pytestmark = pytest.mark.slow

REEF = str(Path(sys.executable).with_name("reef"))


def test_kill_9_never_loses_or_repeats_an_event(tmp_path: Path) -> None:
    market = dev_market(control_plane="http://x")
    devnet, deployment, owner = market.devnet, market.deployment, market.owner
    w3 = devnet.web3()
    job = owner.open_job('{"n":1}', market.provider.address, 10**14, 10**9)
    owner.token().approve(deployment.market, 10**12)

    db = f"sqlite:///{tmp_path / 'index.db'}"
    env = {**os.environ, "REEF_HOME": str(tmp_path / "home")}
    stop = threading.Event()

    deposits = itertools.count(1)
    made = 0

    def emit() -> None:  # the market keeps moving while the indexer dies and restarts
        nonlocal made
        while not stop.is_set():
            owner.deposit(job, 1, approve=False)
            made = next(deposits)

    with serve_devnet_in_thread(devnet) as server:
        command = [
            REEF,
            "provider",
            "index",
            "--rpc",
            server.url,
            "--market",
            deployment.market,
            "--db",
            db,
            "--start-block",
            str(deployment.block),
            "--range",
            "3",  # many small transactions: kills land inside them
        ]
        writer = threading.Thread(target=emit)
        writer.start()
        rng = random.Random(7)
        try:
            # At least five kills, and on until the market has moved enough (a loaded machine
            # sends fewer deposits per kill).
            for kills in itertools.count(1):
                process = subprocess.Popen(
                    [*command, "--follow", "--interval", "0.02"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(2.5 + rng.random() * 1.5)  # start-up takes ~2 s; then it indexes
                process.send_signal(signal.SIGKILL)
                process.wait()
                if kills >= 5 and (made > 120 or kills >= 40):
                    break
        finally:
            stop.set()
            writer.join()
        # one last, clean run to the head
        subprocess.run([*command, "--once"], env=env, check=True, capture_output=True)

    engine = sa.create_engine(db)
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT id, block_number, log_index FROM job_events ORDER BY id")
        ).all()
    engine.dispose()
    logs = w3.eth.get_logs(
        {"address": deployment.market, "fromBlock": deployment.block, "toBlock": "latest"}
    )
    expected = [(int(log["blockNumber"]), int(log["logIndex"])) for log in logs]
    got = [(row.block_number, row.log_index) for row in stored]
    assert len(expected) > 100  # the kills happened while there was work to do
    assert got == expected  # nothing lost, nothing repeated, in chain order
