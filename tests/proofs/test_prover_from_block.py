"""A prover that follows the market from a block after a market it serves was created.

``ProverService(from_block=...)`` (``reef prover run`` with a ``network.json`` whose
``from_block`` is later than that) learnt a market's kind and metadata only from the
``MarketCreated`` events it read: a task in a market created earlier was skipped as "no prover
here for this market's kind", silently, until its deadline slashed the honest prover. It now
reads what it did not see from the chain (the market's record, its ``MarketCreated`` event).
"""

from __future__ import annotations

from pathlib import Path

from eth_account import Account

from proofs.proofs_support import EXAMPLE, Groth16Market, ProofChain, settle
from reef.proofs import ArtifactStore, AskState, ProverService, TeeWorker, ensure_snarkjs

ENCLAVE = Account.from_key(b"\x44" * 32)


def test_a_late_started_prover_proves_a_tee_market_created_before(tmp_path: Path) -> None:
    chain = ProofChain.create(n_users=2)
    creator = chain.market()
    market_id, _ = creator.create_tee_market(image_id=b"\x1f" * 32, penalty=5, n_inputs=1)
    creator.set_tee_signer(market_id, ENCLAVE.address)
    prover = chain.market(chain.users[1])
    prover.register(compute=1, stake=100)
    prover.join_market(market_id, price=10, max_time=60, compute=1)
    late = chain.w3.eth.block_number + 1
    ask_id, _ = chain.market(chain.users[0]).create_ask(
        market_id, [20], reward=50, expiry=chain.next_time() + 100, proving_time=100
    )
    chain.market(chain.engine).assign([ask_id], [chain.users[1].address])
    service = ProverService(
        prover,
        ArtifactStore(tmp_path / "a"),
        ensure_snarkjs(),
        tee={market_id: TeeWorker(ENCLAVE, lambda xs: [x * 2 for x in xs])},
        from_block=late,
    )
    [outcome] = service.step()
    assert outcome.outcome == "proved", outcome
    assert prover.ask_state(ask_id) == AskState.COMPLETE


def test_a_late_started_prover_proves_a_groth16_market_created_before(tmp_path: Path) -> None:
    market = Groth16Market(tmp_path, EXAMPLE, public_inputs=["x"], penalty=5)
    chain = market.chain
    account = chain.users[1]
    client = chain.market(account)
    client.register(compute=2, stake=100)
    client.join_market(market.market_id, price=10, max_time=60, compute=1)
    late = chain.w3.eth.block_number + 1
    ask_id, _ = chain.market(market.requester).create_ask(
        market.market_id, [12345], reward=50, expiry=chain.next_time() + 300, proving_time=300
    )
    chain.market(chain.engine).assign([ask_id], [account.address])
    service = ProverService(
        client,
        market.store,
        market.runtime,
        verifiers={market.market_id: market.ivs},
        from_block=late,
    )
    [outcome] = settle(service)
    assert outcome.outcome == "proved", outcome
    assert client.ask_state(ask_id) == AskState.COMPLETE


def test_an_ivs_started_after_a_market_was_created_knows_its_metadata() -> None:
    """The IVS looked a market up only among the ``MarketCreated`` events from its own
    ``from_block``: one started later answered 409 "market N was not created on this chain",
    and that market's provers were slashed on invalid inputs nobody would attest."""
    from reef.proofs._ivs import _Markets

    chain = ProofChain.create(n_users=1)
    metadata = '{"name": "created before the IVS started"}'
    market_id, _ = chain.market().create_tee_market(
        image_id=b"\x1f" * 32, penalty=5, n_inputs=1, metadata=metadata
    )
    late = chain.w3.eth.block_number + 1
    markets = _Markets(chain.market(), late)
    assert markets.metadata(market_id) == metadata
