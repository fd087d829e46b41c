"""kill -9 of the matching engine process, again and again, while asks keep arriving: after
the last restart every ask is assigned, and exactly once (one TaskAssigned per ask on chain)."""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from eth_account import Account

from reef.chain import Devnet, TokenClient, serve_devnet_in_thread
from reef.proofs import AskState, ProofMarketClient, TaskAssigned

pytestmark = pytest.mark.slow

HELPER = Path(__file__).with_name("engine_process.py")
ASKS = 60


def test_kill_9_mid_batch_assigns_every_ask_exactly_once(tmp_path: Path) -> None:
    devnet = Devnet(accounts=6)
    accounts = [Account.from_key(a.private_key) for a in devnet.accounts]
    deployer, engine, requester, provers = accounts[0], accounts[1], accounts[2], accounts[3:6]
    w3 = devnet.web3()
    token = TokenClient.deploy(w3, deployer)
    market = ProofMarketClient.deploy(
        w3, deployer, token=token.address, matching_engine=engine.address
    )
    market_id, _ = market.create_tee_market(image_id=b"\x01" * 32, penalty=1, n_inputs=1)
    for account in [requester, *provers]:
        token.mint(account.address, 10**12)
        TokenClient(w3, token.address, account=account).approve(market.address, 2**256 - 1)
    for i, account in enumerate(provers):
        client = market.with_account(account)
        client.register(compute=1000, stake=10**6)
        client.join_market(market_id, price=1 + i, max_time=10, compute=1)
    asker = market.with_account(requester)
    created: list[int] = []

    def request() -> None:  # asks keep arriving while the engine dies and restarts
        for i in range(ASKS):
            now = devnet.next_block_timestamp()
            ask_id, _ = asker.create_ask(
                market_id, [i], reward=100, expiry=now + 3600, proving_time=600
            )
            created.append(ask_id)
            time.sleep(0.05)

    db = f"sqlite:///{tmp_path / 'engine.db'}"
    with serve_devnet_in_thread(devnet) as server:
        command = [
            sys.executable,
            str(HELPER),
            server.url,
            market.address,
            engine.key.hex(),
            db,
            "3",
        ]
        writer = threading.Thread(target=request)
        writer.start()
        rng = random.Random(3)
        try:
            for _ in range(4):
                process = subprocess.Popen(
                    command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                time.sleep(2.0 + rng.random() * 1.5)  # start-up ~1.5 s, then it assigns
                process.send_signal(signal.SIGKILL)
                process.wait()
        finally:
            writer.join()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if all(market.ask_state(a) == AskState.ASSIGNED for a in created):
                    break
                time.sleep(0.3)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    assert len(created) == ASKS
    assigned = collections.Counter(e.ask_id for e in market.events() if isinstance(e, TaskAssigned))
    assert set(assigned) == set(created), "some ask was never assigned"
    assert set(assigned.values()) == {1}, "some ask was assigned twice"
