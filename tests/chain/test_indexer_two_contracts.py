"""One indexer, two contracts, one database: the market and the KMS registry of a devnet, each in
its own stream with its own checkpoint, read back as typed events; and kill -9 of the indexing
process, again and again while both contracts keep emitting: afterwards each stream holds every
event of its contract exactly once, in chain order (the chain's own eth_getLogs is the reference).
"""

from __future__ import annotations

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
from web3 import Web3

from reef.chain import (
    Deployment,
    ImageApproved,
    ImageRevoked,
    IndexedContract,
    Indexer,
    JobDeposited,
    JobOpened,
    KmsRegistryClient,
    Web3BlockSource,
    kms_registry_decoder,
    market_decoder,
    serve_devnet_in_thread,
)
from reef.errors import MisuseError
from reef.testing import dev_market

SCRIPT = Path(__file__).with_name("two_contract_indexer.py")


class World:
    """A devnet with reef's contracts, a job, and clients that make both contracts emit."""

    def __init__(self) -> None:
        market = dev_market(control_plane="http://x")
        self.devnet = market.devnet
        self.w3: Web3 = self.devnet.web3()
        self.deployment: Deployment = market.deployment
        self.owner = market.owner
        self.job = self.owner.open_job('{"n":1}', market.provider.address, 10**14, 10**9)
        self.owner.token().approve(self.deployment.market, 10**12)
        signer = self.devnet.accounts[0].local_account
        self.registry = KmsRegistryClient(self.w3, self.deployment.kms_registry, account=signer)
        self.images = 0

    def emit(self) -> None:
        """One market event (a deposit) and one registry event (approve, or revoke the last)."""
        self.owner.deposit(self.job, 1, approve=False)
        self.images += 1
        image = self.images.to_bytes(32, "big")
        if self.images % 3:
            self.registry.approve_images([image])
        else:
            self.registry.revoke_images([(self.images - 1).to_bytes(32, "big")])

    def expected(self, address: str, topics: tuple[bytes, ...]) -> list[tuple[int, int]]:
        """(block, log index) of every log of ``address`` with one of ``topics``, per the chain."""
        logs = self.w3.eth.get_logs(
            {"address": address, "fromBlock": self.deployment.block, "toBlock": "latest"}
        )
        return [
            (int(log["blockNumber"]), int(log["logIndex"]))
            for log in logs
            if bytes(log["topics"][0]) in topics
        ]


def _count(db: str) -> int:
    """How many events the database holds (0 before the indexer made its tables)."""
    engine = sa.create_engine(db)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM job_events")).scalar_one())
    except sa.exc.OperationalError:
        return 0
    finally:
        engine.dispose()


def _stored(db: str, stream: str) -> list[tuple[int, int]]:
    engine = sa.create_engine(db)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT block_number, log_index FROM job_events WHERE stream = :s ORDER BY id"),
            {"s": stream},
        ).all()
    engine.dispose()
    return [(row.block_number, row.log_index) for row in rows]


def test_two_contracts_in_one_database_read_back_typed(tmp_path: Path) -> None:
    world = World()
    for _ in range(4):
        world.emit()
    d = world.deployment
    db = f"sqlite:///{tmp_path / 'index.db'}"
    contracts = [
        IndexedContract(address=d.market, events=market_decoder(), start_block=d.block),
        IndexedContract(
            address=d.kms_registry,
            events=kms_registry_decoder(),
            stream="registry",
            start_block=d.block,
        ),
    ]
    follower = Indexer(Web3BlockSource(world.w3), db, contracts=contracts, block_range=2)
    market_stream = f"{d.chain_id}:{d.market.lower()}"  # the default stream name
    assert follower.streams == (market_stream, "registry")
    assert follower.chain_time() is None
    follower.poll(max_ranges=1)  # part-way: each contract has its own checkpoint
    first = {s: follower.checkpoint(s) for s in follower.streams}
    assert all(c is not None and c.last_block == d.block + 1 for c in first.values())
    assert follower.poll() > 0
    assert follower.poll() == 0

    market = follower.events(contract=d.market)
    registry = follower.events(contract="registry")
    assert {e.stream for e in market} == {market_stream}
    assert {e.stream for e in registry} == {"registry"}
    # Everything, ordered by id across both streams, is the two streams merged.
    merged = follower.events()
    assert sorted(e.id for e in merged) == [e.id for e in merged]
    assert sorted(e.id for e in market + registry) == [e.id for e in merged]

    # Typed, and equal to what the contracts' own clients decode from the same logs.
    assert any(isinstance(e.event, JobOpened) for e in market)
    assert [e.event for e in market if isinstance(e.event, JobDeposited)] == [
        e for e in world.owner.events(job=world.job) if isinstance(e, JobDeposited)
    ]
    assert [e.event for e in registry] == world.registry.events()
    assert [type(e.event) for e in registry] == [
        ImageApproved,
        ImageApproved,
        ImageRevoked,
        ImageApproved,
    ]
    assert registry[0].name == "ImageApproved"
    assert registry[0].data == {"image_id": "0x" + (1).to_bytes(32, "big").hex()}
    assert registry[0].job_id is None

    checkpoints = [follower.checkpoint(s) for s in follower.streams]
    assert follower.chain_time() == min(c.last_block_timestamp for c in checkpoints if c)
    with pytest.raises(MisuseError, match="several contracts"):
        follower.checkpoint()
    with pytest.raises(MisuseError, match="does not follow"):
        follower.events(contract="0x" + "ee" * 20)

    # A new indexer (a restarted process) resumes each stream where it ended.
    world.emit()
    again = Indexer(Web3BlockSource(world.w3), db, contracts=contracts, block_range=2)
    assert again.poll() == 2  # the new deposit and the new registry event, nothing else
    assert _stored(db, market_stream) == world.expected(d.market, market_decoder().topics)
    assert _stored(db, "registry") == world.expected(d.kms_registry, kms_registry_decoder().topics)


@pytest.mark.slow
def test_kill_9_loses_and_repeats_nothing_in_either_stream(tmp_path: Path) -> None:
    world = World()
    d = world.deployment
    db = f"sqlite:///{tmp_path / 'index.db'}"
    env = {**os.environ, "REEF_HOME": str(tmp_path / "home")}
    stop = threading.Event()

    def emit() -> None:  # both contracts keep moving while the indexer dies and restarts
        while not stop.is_set():
            world.emit()

    with serve_devnet_in_thread(world.devnet) as server:
        command = [
            sys.executable,
            str(SCRIPT),
            server.url,
            d.market,
            d.kms_registry,
            db,
            str(d.block),
        ]
        writer = threading.Thread(target=emit)
        writer.start()
        rng = random.Random(13)
        try:
            for _ in range(5):
                before = _count(db)
                process = subprocess.Popen(
                    command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                try:
                    # Kill it at a random instant once it is indexing (it stored something new).
                    deadline = time.monotonic() + 60
                    while _count(db) == before and process.poll() is None:
                        assert time.monotonic() < deadline, "the indexer stored nothing in 60 s"
                        time.sleep(0.05)
                    assert process.poll() is None, "the indexing process died by itself"
                    time.sleep(rng.random() * 1.0)
                finally:
                    process.send_signal(signal.SIGKILL)
                    process.wait()
        finally:
            stop.set()
            writer.join()
        subprocess.run([*command, "--once"], env=env, check=True, capture_output=True)

    market = world.expected(d.market, market_decoder().topics)
    registry = world.expected(d.kms_registry, kms_registry_decoder().topics)
    assert len(market) > 50  # the kills happened while both had work to do
    assert len(registry) > 50
    assert _stored(db, "market") == market  # nothing lost, nothing repeated, in chain order
    assert _stored(db, "kms_registry") == registry
