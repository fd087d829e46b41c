"""A matching engine told to index from a block after the market's history began.

The order book is a projection of every event the market emitted. An engine started with
``--from-block`` after a prover registered and joined raised ``KeyError`` on that prover's next
``StakeAdded`` or ``ProverLeaving`` (the replay below), and before that it silently lacked the
markets, asks, quotes and locked stakes of the blocks it skipped. The engine now refuses such a
start, naming ``--from-block`` and the market's deployment block; an engine whose indexer was
set up by hand that meets such an event stops with the same advice instead of a ``KeyError``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner
from web3 import Web3

from proofs.proofs_support import ProofChain
from reef.chain import IndexedContract, Indexer, Web3BlockSource, serve_devnet_in_thread
from reef.errors import ConfigError
from reef.proofs import MatchingEngine, proof_market_decoder

IMAGE_ID = b"\x1f" * 32


def _deployment_block(chain: ProofChain) -> int:
    """The block that deployed the market, found by reading every block's code (a few blocks)."""
    head, market = chain.w3.eth.block_number, Web3.to_checksum_address(chain.market_address)
    return next(n for n in range(head + 1) if chain.w3.eth.get_code(market, block_identifier=n))


def _prover_joined_then_acts() -> tuple[ProofChain, int, int]:
    """A chain where user 1 registered and joined a market, and then, from block ``late`` on,
    added stake and asked to leave: (chain, market id, late)."""
    chain = ProofChain.create(n_users=2)
    market_id, _ = chain.market().create_tee_market(image_id=IMAGE_ID, penalty=5, n_inputs=1)
    prover = chain.market(chain.users[1])
    prover.register(compute=2, stake=100)
    prover.join_market(market_id, price=10, max_time=60, compute=1)
    late = chain.w3.eth.block_number + 1
    prover.add_stake(5)
    prover.request_leave(market_id)
    return chain, market_id, late


def test_an_engine_starting_after_the_market_began_is_refused(tmp_path: Path) -> None:
    chain, market_id, late = _prover_joined_then_acts()
    deployed = _deployment_block(chain)
    for start in (late, deployed + 1):
        with pytest.raises(ConfigError) as info:
            MatchingEngine.on_database(
                chain.market(chain.engine), f"sqlite:///{tmp_path / f'{start}.db'}",
                start_block=start,
            )  # fmt: skip
        assert f"--from-block {start}" in str(info.value)
        assert info.value.hint is not None
        assert f"--from-block {deployed}" in info.value.hint
    # From the deployment block (or any before it) the book is whole.
    for start in (deployed, 0):
        engine = MatchingEngine.on_database(
            chain.market(chain.engine), f"sqlite:///{tmp_path / f'ok{start}.db'}",
            start_block=start,
        )  # fmt: skip
        engine.step()
        prover = chain.users[1].address
        assert engine.book.provers[prover].stake == 105
        assert engine.book.quotes[(prover, market_id)].leaving


def test_an_engine_indexing_from_a_late_block_by_hand_stops_with_advice(tmp_path: Path) -> None:
    chain, _, late = _prover_joined_then_acts()
    client = chain.market(chain.engine)
    watched = IndexedContract(
        address=client.address, events=proof_market_decoder(), stream="proofs", start_block=late
    )
    indexer = Indexer(
        Web3BlockSource(chain.w3), f"sqlite:///{tmp_path / 'e.db'}", contracts=[watched]
    )
    engine = MatchingEngine(client, indexer, clock=chain.next_time)
    with pytest.raises(ConfigError) as info:
        engine.step()
    assert chain.users[1].address in str(info.value)
    assert info.value.hint is not None
    assert "--from-block" in info.value.hint


def test_reef_proofs_engine_run_names_the_block_to_start_from(tmp_path: Path) -> None:
    from reef.cli import app

    chain, _, late = _prover_joined_then_acts()
    deployed = _deployment_block(chain)
    key = tmp_path / "engine.key"
    key.write_text(chain.engine.key.hex())
    with serve_devnet_in_thread(chain.devnet) as thread:
        flags = ["--rpc", thread.url, "--proof-market", chain.market_address, "--json"]
        args = ["proofs", "engine", "run", "--key-file", str(key), "--once", *flags]
        refused = CliRunner().invoke(app, [*args, "--from-block", str(late)])
        assert refused.exit_code == 1, refused.output
        assert "Traceback" not in refused.output
        assert f"--from-block {late}" in refused.stderr
        assert f"--from-block {deployed}" in refused.stderr
        ran = CliRunner().invoke(app, [*args, "--from-block", str(deployed)])
        assert ran.exit_code == 0, ran.output
        assert json.loads(ran.stdout)["events"] > 0
