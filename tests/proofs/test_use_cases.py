"""The use cases the proof commands call, as library functions on a real (in-process) chain:
enrolling a prover from its settings, joining and leaving, waiting to be the engine, requesting
a proof and waiting for it, what a market, an ask and a prover are, an engine on its database;
the IVS's key from a derive server (through a mock transport); a TEE worker's output parsed by
reef.encoding.parse_uint. Clocks and sleeps are fakes: nothing here waits for real."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from proofs.proofs_support import ProofChain
from reef.chain import TokenClient
from reef.crypto import Secp256k1PrivateKey
from reef.errors import MisuseError, ProofError, ServiceError
from reef.proofs import (
    AskState,
    AuctionRamp,
    EncryptedSecret,
    MarketCreated,
    MarketJoin,
    MatchingEngine,
    ProverSetup,
    ask_settled,
    await_engine_role,
    close_ask,
    command_worker,
    create_tee_market,
    decrypt_secret,
    derived_secp256k1_key,
    describe_ask,
    describe_market,
    describe_prover,
    enroll_prover,
    join_as_prover,
    request_proof,
    wait_for_ask,
    withdraw_from_market,
)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += 1


@pytest.fixture(scope="module")
def chain() -> ProofChain:
    return ProofChain.create(n_users=2)


def _tee_market(chain: ProofChain, *, private: bool, metadata: str = "{}") -> int:
    market_id, _ = chain.market().create_tee_market(
        image_id=b"\x01" * 32, penalty=1, n_inputs=1, metadata=metadata, private_inputs=private
    )
    return int(market_id)


def test_enrolling_registers_joins_and_sets_the_key_once(chain: ProofChain) -> None:
    public, private = _tee_market(chain, private=False), _tee_market(chain, private=True)
    user = chain.users[0]
    chain.market().set_tee_signer(private, user.address)  # a TEE market's provers are enclaves
    client = chain.market(user)
    setup = ProverSetup(
        stake=5_000_000,
        compute=3,
        markets=(
            MarketJoin(market_id=public, price=7, max_time=30),
            MarketJoin(market_id=private, price=8, max_time=40, compute=2),
        ),
    )
    for _ in range(2):  # the second run finds every step done and skips it
        enroll_prover(client, setup, private_key=bytes(user.key))
    info = client.prover(user.address)
    assert (info.registered, info.stake, info.compute) == (True, 5_000_000, 3)
    offer = client.offer(user.address, private)
    assert (offer.joined, offer.price, offer.max_time, offer.compute) == (True, 8, 40, 2)
    assert client.offer(user.address, public).joined
    assert client.prover_key(user.address, public) == b""
    assert len(client.prover_key(user.address, private)) == 64


def test_an_unfunded_prover_waits_then_says_what_it_lacks(chain: ProofChain) -> None:
    fresh = Account.create()
    fake = FakeTime()
    with pytest.raises(ProofError) as raised:
        enroll_prover(
            chain.market(fresh),
            ProverSetup(stake=2_000_000),
            wait_s=3,
            clock=fake.clock,
            sleep=fake.sleep,
        )
    assert f"{fresh.address} was not funded with gas and a stake of 2" in raised.value.message
    assert fake.slept > 1  # it polled before giving up
    assert not chain.market().prover(fresh.address).registered


def test_only_the_engine_key_passes_the_engine_wait(chain: ProofChain) -> None:
    await_engine_role(chain.market(chain.engine))
    fake = FakeTime()
    other = chain.users[1]
    with pytest.raises(ProofError) as raised:
        await_engine_role(chain.market(other), wait_s=2, clock=fake.clock, sleep=fake.sleep)
    assert raised.value.message == (
        f"{other.address} is not this market's matching engine ({chain.engine.address})"
    )
    assert fake.slept >= 4


def test_a_market_and_an_ask_are_described_from_the_chain(chain: ProofChain) -> None:
    metadata = json.dumps({"name": "doubler", "public_inputs": ["x"]})
    market_id = _tee_market(chain, private=False, metadata=metadata)
    listing = describe_market(chain.market(), market_id)
    assert listing.market.market_id == market_id
    assert listing.metadata == {"name": "doubler", "public_inputs": ["x"]}
    raw = describe_market(chain.market(), _tee_market(chain, private=False, metadata="not json"))
    assert raw.metadata == {"raw": "not json"}
    requester = chain.market(chain.users[1])
    ask_id, _ = requester.create_ask(
        market_id, [21], reward=3, expiry=chain.next_time() + 600, proving_time=60
    )
    ask = describe_ask(chain.market(), ask_id)
    assert (ask.ask.market_id, ask.ask.reward, ask.inputs) == (market_id, 3, (21,))
    assert (ask.price, ask.auction, ask.proof) == (None, None, None)


def test_a_proof_is_requested_with_a_reward_an_auction_or_sealed_private_inputs(
    chain: ProofChain,
) -> None:
    public, private = _tee_market(chain, private=False), _tee_market(chain, private=True)
    user = chain.users[1]
    # No allowance left: request_proof approves the market for the sender's tokens itself.
    TokenClient(chain.w3, chain.token_address, account=user).approve(chain.market_address, 0)
    requester = chain.market(user)
    when = {"expiry": chain.next_time() + 600, "proving_time": 60}
    paid = request_proof(requester, public, [5], reward=4, **when)
    assert (requester.ask(paid).reward, requester.inputs(paid)) == (4, (5,))
    allowed = TokenClient(chain.w3, chain.token_address).allowance(
        user.address, chain.market_address
    )
    assert allowed >= 2**255  # it was 0: request_proof approved the market (unlimited)
    ramp = AuctionRamp(min_price=1, max_price=9, ramp_time=30)
    auctioned = request_proof(requester, public, [6], auction=ramp, **when)
    assert requester.ask(auctioned).reward == 9  # it escrows the maximum
    terms = requester.auction(auctioned)
    assert terms is not None
    assert (terms.min_price, terms.max_price) == (1, 9)
    secret = b'{"x":"1"}'
    assert requester.engine_key() == b""  # (no engine has run on this chain yet)
    with pytest.raises(ProofError, match="has not published its key yet"):
        request_proof(requester, private, [7], reward=1, secret=secret, **when)
    engine_key = Secp256k1PrivateKey(bytes(chain.engine.key))
    chain.market(chain.engine).publish_engine_key(engine_key.public_key.raw)
    sealed = request_proof(requester, private, [7], reward=1, secret=secret, **when)
    assert requester.ask(sealed).has_secret
    posted = requester.ask_secret(sealed)
    opened = decrypt_secret(
        EncryptedSecret(body=posted.secret, acl=posted.acl), bytes(chain.engine.key), private
    )
    assert opened == secret  # the engine's key opens it
    for wrong in ({"reward": 1, "auction": ramp}, {}, {"auction": ramp, "secret": b"{}"}):
        with pytest.raises(MisuseError):
            request_proof(requester, public, [1], **when, **wrong)  # type: ignore[arg-type]


def _created_metadata(chain: ProofChain, market_id: int) -> str:
    events = chain.market().events_of(MarketCreated)
    return next(e.metadata for e in events if e.market_id == market_id)


def test_a_prover_joins_with_its_key_where_inputs_are_private_and_leaves_in_two_steps(
    chain: ProofChain,
) -> None:
    creator = chain.market()
    public = create_tee_market(creator, image_id=b"\x02" * 32, penalty=1, name="pub")
    private = create_tee_market(creator, image_id=b"\x02" * 32, penalty=1, private_inputs=["x"])
    # The metadata strings on chain, exactly as `reef proofs market create --tee` wrote them.
    assert _created_metadata(chain, public) == (
        '{"name": "pub", "public_inputs": [], "artifacts": {}}'
    )
    assert _created_metadata(chain, private) == (
        '{"name": "tee", "public_inputs": [], "artifacts": {}, "private_inputs": ["x"]}'
    )
    assert creator.market(private).private_inputs
    prover = chain.users[1]
    client = chain.market(prover)
    client.ensure_allowance(1_000_000)
    client.register(compute=2, stake=1_000_000)
    creator.set_tee_signer(private, prover.address)  # a TEE market's provers are enclaves
    tx, key = join_as_prover(client, MarketJoin(market_id=public, price=3, max_time=30))
    assert tx.startswith("0x")
    assert key is None  # no private inputs: no key registered
    private_join = MarketJoin(market_id=private, price=4, max_time=30)
    with pytest.raises(ProofError, match="no account to register an encryption key for"):
        join_as_prover(client, private_join)
    assert not client.offer(prover.address, private).joined  # refused before joining
    _, key = join_as_prover(client, private_join, private_key=bytes(prover.key))
    assert key == Secp256k1PrivateKey(bytes(prover.key)).public_key.raw
    assert client.prover_key(prover.address, private) == key
    listing = describe_prover(chain.market(), prover.address)
    assert listing.info.registered
    assert list(listing.offers) == [public, private]
    assert (listing.offers[public].price, listing.offers[private].price) == (3, 4)
    leave_at = withdraw_from_market(client, public)
    assert leave_at > 0
    assert client.offer(prover.address, public).leave_at == leave_at
    chain.at(leave_at + 1)
    assert withdraw_from_market(client, public) == 0
    assert not client.offer(prover.address, public).joined
    with pytest.raises(ProofError, match=f"you are not in market {public}"):
        withdraw_from_market(client, public)
    assert list(describe_prover(chain.market(), prover.address).offers) == [private]


def test_waiting_for_an_ask_returns_its_state_settled_or_not(chain: ProofChain) -> None:
    market_id = _tee_market(chain, private=False)
    requester = chain.market(chain.users[1])
    ask_id, _ = requester.create_ask(
        market_id, [1], reward=1, expiry=chain.next_time() + 600, proving_time=60
    )
    fake = FakeTime()
    state = wait_for_ask(chain.market(), ask_id, timeout_s=2, clock=fake.clock, sleep=fake.sleep)
    assert state == AskState.OPEN
    assert not ask_settled(state)
    assert fake.slept >= 4  # it polled until the timeout
    assert close_ask(requester, ask_id).startswith("0x")  # nobody assigned: cancelled
    assert wait_for_ask(chain.market(), ask_id, timeout_s=0) == AskState.CANCELLED
    assert ask_settled(AskState.CANCELLED)
    assert ask_settled(AskState.UNASSIGNED)
    with pytest.raises(ProofError, match="ask 999 does not exist"):
        wait_for_ask(chain.market(), 999, timeout_s=0)


def test_an_ask_past_its_expiry_unassigned_is_closed_by_a_refund(chain: ProofChain) -> None:
    market_id = _tee_market(chain, private=False)
    requester = chain.market(chain.users[1])
    expiry = chain.next_time() + 30
    ask_id, _ = requester.create_ask(market_id, [1], reward=5, expiry=expiry, proving_time=60)
    chain.at(expiry + 1)
    before = chain.balance(chain.users[1].address)
    assert requester.ask_state(ask_id) == AskState.UNASSIGNED
    close_ask(requester, ask_id)
    assert requester.ask_state(ask_id) == AskState.EXPIRED
    assert chain.balance(chain.users[1].address) == before + 5


def test_an_engine_on_a_database_indexes_the_market_and_resumes_there(
    chain: ProofChain, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'folder' / 'engine.db'}"
    client = chain.market(chain.engine)
    _tee_market(chain, private=False)  # at least one event to index
    first = MatchingEngine.on_database(client, url, batch_size=8, ignore_provers=["0xAb"])
    assert (first.batch_size, first.ignore_provers) == (8, frozenset({"0xab"}))
    indexed = first.step().events
    assert indexed > 0
    again = MatchingEngine.on_database(client, url)
    assert again.indexer.streams == ("proofs",)
    assert again.indexer.checkpoint() is not None  # it resumes where the first one stopped
    assert again.step().events == indexed  # the book comes back from the stored events
    with pytest.raises(ProofError, match="batch size"):
        MatchingEngine.on_database(client, url, batch_size=0)


# ---- the IVS's key from the enclave's derive server ----


def test_the_derived_key_is_fetched_once_the_derive_server_answers() -> None:
    answers = iter(
        [httpx.Response(503, text="no seed yet"), httpx.Response(200, content=b"k" * 32)]
    )
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(answers)

    key = derived_secp256k1_key(
        "http://derive/",
        "reef.proofs.ivs",
        transport=httpx.MockTransport(handler),
        sleep=lambda _: None,
    )
    assert key == b"k" * 32
    assert [str(r.url) for r in seen] == ["http://derive/derive/secp256k1?path=reef.proofs.ivs"] * 2


def test_a_derive_server_without_a_key_is_a_service_error_with_its_last_answer() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, content=b"short"))
    with pytest.raises(ServiceError) as raised:
        derived_secp256k1_key(
            "http://derive", "p", tries=3, transport=transport, sleep=lambda _: None
        )
    assert (
        raised.value.message
        == "the KMS derive server at http://derive gave no key for 'p': HTTP 200: short"
    )


# ---- a TEE worker's output goes through reef.encoding.parse_uint ----


@pytest.mark.parametrize(("printed", "expected"), [('["0x2a", "7", 9]', [42, 7, 9]), ("[]", [])])
def test_a_worker_may_print_decimal_or_hex_text(printed: str, expected: list[int]) -> None:
    worker = command_worker(Account.create(), [sys.executable, "-c", f"print({printed!r})"])
    assert list(worker.compute([1])) == expected


@pytest.mark.parametrize("printed", ['["1_000"]', "[true]", '["-1"]', "[1.5]"])
def test_pythons_other_integer_spellings_are_not_an_output(printed: str) -> None:
    worker = command_worker(Account.create(), [sys.executable, "-c", f"print({printed!r})"])
    with pytest.raises(ProofError, match="not a JSON list of integers"):
        worker.compute([1])
