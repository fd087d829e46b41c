"""A requester flooding a prover's market with auction asks the prover cannot take now.

A prover locks each auction whose price has reached its quote; one it lacks the free compute
or stake for is kept and tried again later. Every step tried every such ask, a ``lock`` call
each (simulated, so refused without gas, but a node round trip each), before working on its
tasks: a few thousand auctions with a reachable price, escrow the requester gets back at
expiry, held the prover's step, and so its proofs, for as long as they lasted, until its
deadlines slashed it. A step now stops trying a market's auctions at its first refusal for
want of compute or stake: the next would be refused the same way until a task ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proofs.proofs_support import ProofChain
from reef.chain import TxResult
from reef.proofs import (
    ArtifactStore,
    ProofMarketClient,
    ProofMarketEvent,
    ProverService,
    ensure_snarkjs,
)


class Counting(ProofMarketClient):
    """The market, noting each ask the prover tries to lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.locks: list[int] = []

    def lock(self, ask_id: int) -> TxResult[ProofMarketEvent]:
        self.locks.append(ask_id)
        return super().lock(ask_id)


def test_a_prover_tries_one_lock_per_market_once_it_is_full(tmp_path: Path) -> None:
    chain = ProofChain.create(n_users=2)
    market_id, _ = chain.market().create_tee_market(image_id=b"\x1f" * 32, penalty=5, n_inputs=1)
    prover = chain.market(chain.users[1])
    prover.register(compute=1, stake=100)
    prover.join_market(market_id, price=10, max_time=60, compute=1)
    requester = chain.market(chain.users[0])
    asks = [
        requester.create_auction_ask(
            market_id, [n], min_price=20, max_price=30, ramp_time=60,
            expiry=chain.next_time() + 600, proving_time=300,
        )[0]
        for n in range(6)
    ]  # fmt: skip
    counting = Counting(chain.w3, prover.address, account=chain.users[1])
    locks = counting.locks
    service = ProverService(counting, ArtifactStore(tmp_path / "a"), ensure_snarkjs())
    service.poll()
    locked = service.bid()
    assert [o.ask_id for o in locked] == asks[:1]  # its one unit of compute
    assert locks == asks[:2]  # the second is refused for want of compute: no more tries
    assert sorted(service.auctions) == asks[1:]  # kept, for when the first task ends
    locks.clear()
    assert service.bid() == []
    assert locks == asks[1:2]
