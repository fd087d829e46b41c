"""The market's reader without web3.py (:class:`reef.chain._reader.MarketReader`), held to
web3.py's own reading of the contract (its ABI decoding, independent of reef's word decoder) on
reef's devnet served over JSON-RPC, and to what it does with a node's batches and bad answers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from chain.rpc_support import CountingRpc
from reef.chain import (
    Address,
    JobOpened,
    RateLock,
    load_artifact,
    serve_devnet_in_thread,
)
from reef.chain._reader import MarketReader, address_topic, chain_id, latest_timestamp
from reef.chain._rpc import HttpRpc
from reef.crypto import keccak256
from reef.errors import ChainError, MarketError, RPCError
from reef.market import RateCard
from reef.testing import DevMarket, dev_market

CP = "http://cp.example:8080"


@dataclass
class World:
    market: DevMarket
    url: str
    jobs: list[str]
    other: str
    """A job of another owner (dev account 1)."""


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    market = dev_market(control_plane=CP, fund=[0, 1])
    rate = RateCard.dev().lookup("local", "dev.small").min_rate
    jobs = [market.open_job(rate, 360_000) for _ in range(3)]
    market.owner.revise_rate_initiate(jobs[1], 0)  # a pending stop: a rate lock
    other = market.client(1).open_job(
        market.owner.job(jobs[0]).metadata, market.provider.address, rate, 360_000
    )
    with serve_devnet_in_thread(market.devnet) as rpc:
        yield World(market, rpc.url, [str(j) for j in jobs], str(other))


def _reader(world: World, **kwargs: Any) -> tuple[MarketReader, CountingRpc]:
    poster = CountingRpc(HttpRpc(world.url, {}, 10.0), **kwargs)
    return MarketReader(poster, world.market.deployment.market), poster


def _web3_contract(world: World) -> Any:
    from reef.chain import http_web3

    w3 = http_web3(world.url, timeout=10)
    market = w3.to_checksum_address(world.market.deployment.market)
    return w3.eth.contract(address=market, abi=load_artifact("Market").abi)


def test_jobs_providers_and_locks_read_as_web3_reads_them(world: World) -> None:
    reader, poster = _reader(world)
    contract = _web3_contract(world)
    found = reader.find_jobs(world.jobs)
    assert len(poster.posts) == 1
    assert isinstance(poster.posts[0], list)
    for job_id, job in zip(world.jobs, found, strict=True):
        assert job is not None
        metadata, owner, provider, rate, balance, settled = contract.functions.jobs(
            bytes.fromhex(job_id[2:])
        ).call()
        assert (job.id, job.metadata, job.owner, job.provider) == (
            job_id,
            metadata,
            owner,
            provider,
        )
        assert (job.rate, job.balance, job.last_settled) == (rate, balance, settled)
    locks = reader.rate_locks(world.jobs)
    selector = keccak256(b"RATE_LOCK")
    for job_id, lock in zip(world.jobs, locks, strict=True):
        key = keccak256(selector + bytes.fromhex(job_id[2:]))
        unlock, value = contract.functions.locks(key).call()
        assert lock == (None if unlock == 0 else RateLock(unlock_time=unlock, new_rate=value))
    assert locks[1] is not None
    assert locks[1].new_rate == 0
    assert reader.providers(
        [world.market.provider.address, world.market.devnet.accounts[3].address]
    ) == [
        contract.functions.providers(world.market.provider.address).call(),
        None,
    ]
    assert reader.provider(world.market.provider.address) == CP


def test_a_job_never_opened_is_none_and_job_names_it(world: World) -> None:
    reader, _ = _reader(world)
    assert reader.find_job(999) is None
    with pytest.raises(MarketError, match=r"job 999 .* is not open"):
        reader.job(999)


def test_the_owners_opened_jobs_are_asked_for_by_topic(world: World) -> None:
    reader, _ = _reader(world)
    owner = world.market.devnet.accounts[0].address
    mine = reader.events_of(JobOpened, 0, topics=[None, address_topic(owner)])
    assert [e.job for e in mine] == world.jobs
    every = [e for e in reader.events(0) if isinstance(e, JobOpened)]
    assert [e.job for e in every] == [*world.jobs, world.other]
    assert reader.events(0, chunk=1) == reader.events(0)  # chunked ranges read the same logs


def test_a_node_without_batches_is_asked_one_call_at_a_time(world: World) -> None:
    batched, _ = _reader(world)
    reader, poster = _reader(world, batches=False)
    assert reader.find_jobs(world.jobs) == batched.find_jobs(world.jobs)
    assert isinstance(poster.posts[0], list)  # tried once
    assert all(isinstance(p, dict) for p in poster.posts[1:])
    assert len(poster.posts) == 4
    reader.rate_locks(world.jobs)
    assert len(poster.posts) == 7  # no batch tried again


def test_the_chain_id_and_clock(world: World) -> None:
    rpc = HttpRpc(world.url, {}, 10.0)
    assert chain_id(rpc) == 31337
    assert latest_timestamp(rpc) > 1_700_000_000


class Answering:
    """A poster answering every eth_call with ``data``."""

    def __init__(self, data: str) -> None:
        self.data = data

    def post(self, what: str, payload: Any) -> Any:
        messages = payload if isinstance(payload, list) else [payload]
        answers = [{"jsonrpc": "2.0", "id": m["id"], "result": self.data} for m in messages]
        return answers if isinstance(payload, list) else answers[0]


def test_no_contract_and_malformed_answers_are_chain_errors() -> None:
    market = "0x" + "11" * 20
    with pytest.raises(ChainError, match="no contract answered"):
        MarketReader(Answering("0x"), market).find_job(1)
    with pytest.raises(ChainError, match="malformed answer"):
        MarketReader(Answering("0x" + "00" * 33), market).find_job(1)
    with pytest.raises(RPCError, match="no hex data"):
        MarketReader(Answering("0xzz"), market).provider(market)


def test_listing_jobs_asks_the_chain_as_often_for_one_job_as_for_many(world: World) -> None:
    # reef jobs list: the chain's time once, each provider once, the jobs' rows and locks in
    # one batch each, whatever the number of jobs (it was three requests a row).
    from reef.home import ReefHome
    from reef.node import open_jobs, open_session
    from reef.node._jobs import summarize_jobs

    def requests_for(count: int) -> int:
        session = open_session(
            ReefHome.from_env(),
            rpc=world.url,
            market=world.market.deployment.market,
            need_account=False,
        )
        poster = CountingRpc(HttpRpc(world.url, {}, 10.0))
        session.__dict__["rpc"] = poster  # what the session's clock and reader send through
        owner = Address(world.market.devnet.accounts[0].address)
        jobs = open_jobs(session, session.reader, owner)[:count]
        summaries = summarize_jobs(session, session.reader, jobs)
        assert [s.job.id for s in summaries] == world.jobs[:count]
        return len(poster.posts)

    assert requests_for(1) == requests_for(3) == 6


def test_balances_and_allowances_read_as_web3_reads_them(world: World) -> None:
    # reef wallet: the token the market pays in, an account's balance and allowance of it, and
    # its ether, held to web3.py's own ABI decoding of the token contract.
    from reef.chain import http_web3

    reader, poster = _reader(world)
    w3 = http_web3(world.url, timeout=10)
    token_address = reader.token_address()
    assert token_address == world.market.deployment.token
    token = w3.eth.contract(
        address=w3.to_checksum_address(token_address), abi=load_artifact("Token").abi
    )
    owner, market = world.market.devnet.accounts[0].address, world.market.deployment.market
    nobody = world.market.devnet.accounts[3].address
    assert reader.token_balance(owner) == token.functions.balanceOf(owner).call() > 0
    assert reader.token_balance(nobody, token=token_address) == 0
    posts = len(poster.posts)
    assert reader.token_allowance(owner, market, token=token_address) == (
        token.functions.allowance(owner, market).call()
    )
    assert len(poster.posts) == posts + 1  # the token named: no token() call first
    assert reader.token_allowance(nobody, market) == 0
    assert reader.eth_balance(owner) == w3.eth.get_balance(owner) > 0
    with pytest.raises(ChainError, match="no contract answered"):
        reader.token_balance(owner, token="0x" + "22" * 20)
