"""A proof buyer's and a prover's first hour, replayed on a served in-process chain: what a new
user got wrong on a fresh ``reef up`` and what reef now says (an ask for more than the account
holds, a join before registering, a next step printed without the ``--key`` it needs, amounts
printed without their unit)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from proofs.proofs_support import FUNDS, ProofChain
from reef.chain import Address, Amount, serve_devnet_in_thread
from reef.cli import app
from reef.crypto import Secp256k1PrivateKey
from reef.errors import ChainError, ProofError
from reef.proofs import (
    AuctionRamp,
    MarketJoin,
    Offer,
    ProofMarketClient,
    ProverInfo,
    ProverListing,
    close_ask,
    join_as_prover,
    register_prover,
    request_proof,
)


class Served:
    def __init__(self, chain: ProofChain, url: str, tmp: Path) -> None:
        self.chain, self.url = chain, url
        self.keys = chain.key_files(tmp)
        market_id, _ = chain.market().create_tee_market(
            image_id=b"\x01" * 32, penalty=10**6, n_inputs=1, metadata="{}", private_inputs=False
        )
        self.market_id = int(market_id)

    def reef(self, *args: str, user: int | None = None) -> Any:
        flags = ["--rpc", self.url, "--proof-market", self.chain.market_address]
        if user is not None:
            flags += ["--key", str(self.keys[user])]
        # Wide enough that no table folds a cell this test reads.
        return CliRunner().invoke(app, [*args, *flags], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    chain = ProofChain.create(n_users=4)
    with serve_devnet_in_thread(chain.devnet) as thread:
        yield Served(chain, thread.url, tmp_path_factory.mktemp("keys"))


def test_an_ask_for_more_than_the_account_holds_is_refused_before_anything_is_sent(
    served: Served,
) -> None:
    """`reef proofs request 1 --reward 1000000000` said only "createAsk reverted: transfer
    amount exceeds balance", after a first ask's approval was mined."""
    chain = served.chain
    client = chain.market(chain.users[0])
    expiry = chain.next_time() + 120
    before = chain.w3.eth.block_number
    with pytest.raises(ProofError) as caught:
        request_proof(client, served.market_id, [1], reward=FUNDS + 1, expiry=expiry,
                      proving_time=60)  # fmt: skip
    assert f"holds {FUNDS // 10**6} rUSD; the ask escrows its reward: 1000000.000001 rUSD" in str(
        caught.value
    )
    assert "--key FILE" in (caught.value.hint or "")
    ramp = AuctionRamp(min_price=1, max_price=FUNDS + 1, ramp_time=10)
    with pytest.raises(ProofError, match="an auction ask escrows its maximum price"):
        request_proof(client, served.market_id, [1], auction=ramp, expiry=expiry, proving_time=60)
    assert chain.w3.eth.block_number == before  # nothing was sent
    ask_id = request_proof(client, served.market_id, [1], reward=FUNDS, expiry=expiry,
                           proving_time=60)  # fmt: skip
    assert client.ask(ask_id).reward == FUNDS  # all it holds is enough


def test_joining_before_registering_says_to_register(served: Served) -> None:
    """`reef prover join 1` before `reef prover register` reverted "the caller is not a
    registered prover", with no hint, after paying the gas."""
    chain = served.chain
    client = chain.market(chain.users[1])
    before = chain.w3.eth.block_number
    join = MarketJoin(market_id=served.market_id, price=10, max_time=60)
    with pytest.raises(ProofError) as caught:
        join_as_prover(client, join)
    assert "is not a registered prover: register before joining a market" in str(caught.value)
    assert "`reef prover register --stake AMOUNT`" in (caught.value.hint or "")
    assert chain.w3.eth.block_number == before


def test_a_printed_next_step_keeps_the_key_it_was_given(served: Served) -> None:
    """`reef prover leave 1 --key p3.key` printed "run `reef prover leave 1` again": run as
    printed, that is dev account 0, which is in no market."""
    market = str(served.market_id)
    status = served.reef("prover", "status", user=2)
    assert status.exit_code == 0, status.output
    key = f"--key {served.keys[2]}"
    assert f"`reef prover register --stake AMOUNT --rpc {served.url}" in status.stdout
    assert key in status.stdout
    for step in (("register", "--stake", "2"), ("join", market, "--price", "0.1")):
        done = served.reef("prover", *step, user=2)
        assert done.exit_code == 0, done.output
    first = served.reef("prover", "leave", market, "--json", user=2)
    assert first.exit_code == 0, first.output
    assert key in json.loads(first.stdout)["next"]
    early = served.reef("prover", "leave", market, user=2)
    assert early.exit_code == 1
    assert f"`reef prover leave {market} --rpc {served.url}" in early.stderr
    assert key in early.stderr


def test_amounts_in_the_tables_say_their_unit(served: Served) -> None:
    """`reef proofs market list` showed the penalty as a bare "1" and `reef proofs list` the
    reward as "0.5": a number read as base units (or as nothing) where every other amount says
    rUSD."""
    listed = served.reef("proofs", "market", "list")
    assert listed.exit_code == 0, listed.output
    assert "1 rUSD" in listed.stdout
    shown = served.reef("proofs", "market", "show", str(served.market_id))
    assert "penalty         1 rUSD" in shown.stdout
    as_json = served.reef("proofs", "market", "show", str(served.market_id), "--json")
    assert json.loads(as_json.stdout)["penalty"] == "1"  # JSON keeps its numbers
    chain = served.chain
    chain.token().mint(chain.users[0].address, 1_250_000)
    request_proof(chain.market(chain.users[0]), served.market_id, [1], reward=1_250_000,
                  expiry=chain.next_time() + 120, proving_time=60)  # fmt: skip
    asks = served.reef("proofs", "list")
    assert asks.exit_code == 0, asks.output
    assert "1.25 rUSD" in asks.stdout


def test_cancel_says_why_an_ask_cannot_be_taken_back(served: Served) -> None:
    """`reef proofs cancel` answered a reverted transaction's reason alone: "ask not found",
    "only an unassigned ask can be cancelled", "only the requester can cancel an ask"."""
    chain = served.chain
    mine, theirs = chain.market(chain.users[0]), chain.market(chain.users[1])
    chain.token().mint(chain.users[0].address, 2 * 10**6)  # whatever the other tests spent
    with pytest.raises(ProofError, match="ask 999 does not exist"):
        close_ask(mine, 999)
    ask_id = request_proof(mine, served.market_id, [1], reward=10**6,
                           expiry=chain.next_time() + 600, proving_time=60)  # fmt: skip
    before = chain.w3.eth.block_number
    with pytest.raises(ProofError, match=f"ask {ask_id} is {chain.users[0].address}'s") as caught:
        close_ask(theirs, ask_id)
    assert "the requester's --key" in (caught.value.hint or "")
    assert chain.w3.eth.block_number == before
    close_ask(mine, ask_id)
    with pytest.raises(ProofError, match=f"ask {ask_id} has ended \\(cancelled\\)"):
        close_ask(mine, ask_id)
    # An assigned ask: a prover registers and joins, and the engine assigns it.
    prover = chain.market(chain.users[3])  # users 1 and 2 stay unregistered for the others
    register_prover(prover, stake=10 * 10**6, compute=4)
    join_as_prover(prover, MarketJoin(market_id=served.market_id, price=10, max_time=60))
    held = request_proof(mine, served.market_id, [1], reward=10**6,
                         expiry=chain.next_time() + 600, proving_time=60)  # fmt: skip
    chain.market(chain.engine).assign([held], [chain.users[3].address])
    with pytest.raises(ProofError, match=f"ask {held} is assigned to prover") as caught:
        close_ask(mine, held)
    assert f"`reef proofs wait {held}`" in (caught.value.hint or "")


def test_a_market_address_that_is_another_contract_is_named(served: Served) -> None:
    """`reef proofs market list --proof-market <the token's address>` said "marketCount reverted
    without a reason" and "an argument may be out of the contract's bounds" (it takes none)."""
    chain = served.chain
    wrong = ProofMarketClient(chain.w3, chain.token_address)
    for read in (wrong.market_count, lambda: wrong.market(1)):
        with pytest.raises(ChainError) as caught:
            read()
        assert f"{chain.token_address} is not a ProofMarket contract" in str(caught.value)
        assert "--proof-market" in (caught.value.hint or "")
    flags = ["--rpc", served.url, "--proof-market", chain.token_address]
    listed = CliRunner().invoke(app, ["proofs", "market", "list", *flags])
    assert listed.exit_code == 1
    assert "is not a ProofMarket contract" in listed.stderr
    assert chain.market().market_count() >= 1  # the real one still reads


def test_a_prover_run_that_nothing_can_reach_says_so(served: Served, tmp_path: Path) -> None:
    """`reef prover run` before `register` and `join` polled in silence (with --once it exited
    0 having done nothing): the new prover waited for asks that could never come."""
    fresh = tmp_path / "fresh.key"
    fresh.write_text(Secp256k1PrivateKey.generate().secret.hex())
    flags = ["--rpc", served.url, "--proof-market", served.chain.market_address]
    ran = CliRunner().invoke(app, ["prover", "run", "--once", *flags, "--key", str(fresh)])
    assert ran.exit_code == 0, ran.output
    assert "is not a registered prover: no ask will come to it" in ran.stderr
    assert f"`reef prover register --stake AMOUNT --rpc {served.url}" in ran.stderr
    assert f"--key {fresh}` and `reef prover join MARKET --price AMOUNT" in ran.stderr


def test_a_prover_is_idle_in_no_market_it_serves() -> None:
    info = ProverInfo(address=Address("0x" + "11" * 20), reward_address=Address("0x" + "11" * 20),
                      stake=Amount(5), stake_locked=Amount(0), compute=4, compute_allocated=0,
                      compute_used=0, markets=1)  # fmt: skip
    joined = Offer(joined=True, price=Amount(1), max_time=60, compute=1, active=0, leave_at=0)
    leaving = Offer(joined=True, price=Amount(1), max_time=60, compute=1, active=0, leave_at=9)
    assert ProverListing(info, {1: joined, 2: leaving}).idle() is None
    assert "has joined no market" in (ProverListing(info, {2: leaving}).idle() or "")
    assert "has joined no market" in (ProverListing(info, {}).idle() or "")


def test_wait_says_what_it_waits_for_before_it_blocks(served: Served) -> None:
    """`reef proofs wait N` on an ask nobody took sat silent until the ask ended or --timeout
    (10 minutes) passed: nothing said who had to act, nor by when."""
    chain = served.chain
    chain.token().mint(chain.users[0].address, 10**6)
    ask_id = request_proof(chain.market(chain.users[0]), served.market_id, [1], reward=10**6,
                           expiry=chain.next_time() + 600, proving_time=60)  # fmt: skip
    waited = served.reef("proofs", "wait", str(ask_id), "--timeout", "1s")
    assert waited.exit_code == 1
    assert f"waiting for ask {ask_id}: open until a prover takes it (by " in waited.stderr
    assert "giving up after 1s (--timeout)" in waited.stderr
