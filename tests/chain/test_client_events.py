"""Reading a contract's typed events, written once on ``ContractClient`` for every client, and
``TxResult.first``, against reef's devnet: each reading is checked against the plain filter of
every event the contract logged, so a wrong topic filter (too wide or too narrow) shows."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from reef.chain import (
    Address,
    Amount,
    ChainEvent,
    Devnet,
    ImageApproved,
    ImageRevoked,
    JobClosed,
    JobDeposited,
    JobEvent,
    JobId,
    JobMetadataUpdated,
    JobOpened,
    KmsRegistryClient,
    MarketClient,
    MarketEvent,
    ProviderAdded,
    Rate,
    TokenClient,
    TxResult,
    deploy_contracts,
    parse_job_id,
)
from reef.errors import ChainError, InputError, MisuseError

IMAGE_X = bytes.fromhex("aa" * 32)
IMAGE_Y = bytes.fromhex("bb" * 32)


@dataclass
class World:
    market: MarketClient
    registry: KmsRegistryClient
    token: TokenClient
    provider: str
    job_a: JobId
    job_b: JobId
    deposit: TxResult[MarketEvent]
    approve: TxResult[ChainEvent]


@pytest.fixture(scope="module")
def world() -> World:
    devnet = Devnet(accounts=3)
    w3 = devnet.web3()
    deployer, user, provider = (a.local_account for a in devnet.accounts)
    deployment = deploy_contracts(w3, deployer, fund=[user.address])
    MarketClient(w3, deployment.market, account=provider).add_provider("http://cp")
    market = MarketClient(w3, deployment.market, account=user)
    job_a = market.open_job('{"a":1}', provider.address, 0, 1000)
    job_b = market.open_job('{"b":1}', provider.address, 0, 2000)
    deposit = market.deposit(job_a, 5)
    market.update_metadata(job_b, '{"b":2}')
    registry = KmsRegistryClient(w3, deployment.kms_registry, account=deployer)
    registry.approve_images([IMAGE_X, IMAGE_Y])
    registry.revoke_images([IMAGE_X])
    token = TokenClient(w3, deployment.token, account=user)
    approve = token.approve(deployment.market, 1)
    return World(market, registry, token, provider.address, job_a, job_b, deposit, approve)


def _of(events: list[ChainEvent], cls: type[ChainEvent]) -> list[ChainEvent]:
    return [e for e in events if isinstance(e, cls)]


def test_events_of_one_type_are_that_types_events_in_chain_order(world: World) -> None:
    every: list[ChainEvent] = list(world.market.events())
    opened = world.market.events_of(JobOpened)
    assert opened == _of(every, JobOpened)
    assert [e.job for e in opened] == [world.job_a, world.job_b]
    assert [e.balance for e in opened] == [1000, 2000]
    assert world.market.events_of(ProviderAdded)[0].provider == world.provider


def test_events_of_a_base_class_are_every_subclass_events(world: World) -> None:
    every: list[ChainEvent] = list(world.market.events())
    job_events = world.market.events_of(JobEvent)
    assert list(job_events) == _of(every, JobEvent)
    assert {type(e) for e in job_events} == {JobOpened, JobDeposited, JobMetadataUpdated}
    # ChainEvent covers every event the decoder knows: the same as events().
    assert world.market.events_of(ChainEvent) == every


def test_topics_narrow_the_events_after_topic_zero(world: World) -> None:
    market, a, b = world.market, world.job_a, world.job_b
    of_a = market.events_of(JobEvent, topics=[a])
    assert [type(e) for e in of_a] == [JobOpened, JobDeposited]
    assert all(e.job == a for e in of_a)
    assert list(of_a) == market.events(job=a)
    assert [type(e) for e in market.events(job=b)] == [JobOpened, JobMetadataUpdated]
    assert market.events_of(JobDeposited, topics=[b]) == []
    # A topic as an int (the uint word), as 32 bytes and as hex all read the same logs.
    of_b = [e for e in market.events_of(JobEvent) if e.job == b]
    assert [type(e) for e in of_b] == [JobOpened, JobMetadataUpdated]
    for topic in (int(b, 16), bytes.fromhex(b[2:]), b, "0x" + b[2:].upper()):
        assert market.events_of(JobEvent, topics=[topic]) == of_b
    # With topic 0 free, topic 1 is the job id of job events (and other fields of others).
    assert _of(list(market.events(topics=[a])), JobEvent) == list(of_a)
    # None matches any value: the same as no filter.
    assert market.events_of(JobEvent, topics=[None]) == market.events_of(JobEvent)


def test_a_block_range_and_chunks_read_the_same_events(world: World) -> None:
    market = world.market
    every = market.events_of(JobEvent)
    assert market.events_of(JobEvent, chunk=1) == every
    assert market.events(chunk=2) == market.events()
    second = every[1].block_number
    inside = market.events_of(JobEvent, second, second)
    assert inside == [e for e in every if e.block_number == second] != []
    assert market.events_of(JobEvent, second + 1) == [e for e in every if e.block_number > second]


def test_every_client_reads_its_events_the_same_way(world: World) -> None:
    registry = world.registry
    every = registry.events()
    assert [(type(e), e.image_id) for e in every] == [
        (ImageApproved, IMAGE_X),
        (ImageApproved, IMAGE_Y),
        (ImageRevoked, IMAGE_X),
    ]
    assert registry.events_of(ImageRevoked) == every[2:]
    # The registry's image id is not indexed: no ImageApproved log has a topic 1 to match.
    assert registry.events_of(ImageApproved, topics=[IMAGE_Y]) == []
    assert registry.events_of(ImageApproved, topics=[None]) == every[:2]


def test_reading_events_a_client_does_not_decode_is_a_clear_error(world: World) -> None:
    with pytest.raises(MisuseError, match="the Market client decodes no ImageApproved events"):
        world.market.events_of(ImageApproved)
    with pytest.raises(ChainError, match="the Token client decodes no events"):
        world.token.events()
    with pytest.raises(InputError, match="topic 1 must be 32 bytes, got 31"):
        world.market.events(topics=[b"\x00" * 31])
    with pytest.raises(InputError, match="topic 2 is not valid hex"):
        world.market.events(topics=[None, "0xzz"])
    with pytest.raises(InputError, match="topic 1 must be between 0 and 2"):
        world.market.events_of(JobEvent, topics=[-1])
    with pytest.raises(InputError, match="topic 1 must be an int, 32 bytes, 0x hex or None"):
        world.market.events(topics=[1.5])  # type: ignore[list-item]
    with pytest.raises(InputError, match="give job= or topics=, not both"):
        world.market.events(job=world.job_a, topics=[world.job_a])


def test_a_follower_reads_to_the_head_and_resumes_after_it(world: World) -> None:
    market = world.market
    every = market.events()
    head = int(market.w3.eth.block_number)
    assert market.events_to_head(0) == (every, head + 1)
    # Resuming at the cursor reads nothing again, and hands back the same cursor.
    assert market.events_to_head(head + 1) == ([], head + 1)
    # A cursor in the middle: what lies before it and what the follower reads are every event.
    middle = every[2].block_number
    rest, cursor = market.events_to_head(middle)
    assert (market.events(0, middle - 1) + rest, cursor) == (every, head + 1)
    # One type only, as events_of reads it; the registry follows its own events the same way.
    assert market.events_to_head(0, JobOpened) == (market.events_of(JobOpened), head + 1)
    assert world.registry.events_to_head(0, ImageRevoked) == (
        world.registry.events_of(ImageRevoked),
        head + 1,
    )
    with pytest.raises(MisuseError, match="the Market client decodes no ImageApproved events"):
        market.events_to_head(0, ImageApproved)


def test_the_first_event_of_a_type_a_transaction_emitted(world: World) -> None:
    deposited = world.deposit.first(JobDeposited)
    assert (deposited.job, deposited.amount) == (world.job_a, 5)
    assert deposited.tx_hash == world.deposit.tx_hash
    assert world.deposit.first(JobEvent) == deposited
    assert deposited in world.market.events(job=world.job_a)
    with pytest.raises(ChainError) as info:
        world.deposit.first(JobClosed)
    assert info.value.message == f"transaction {world.deposit.tx_hash} emitted no JobClosed event"
    # A client that decodes no events: its results carry none.
    with pytest.raises(ChainError, match="emitted no ImageApproved event"):
        world.approve.first(ImageApproved)


def test_first_is_the_earliest_of_several() -> None:
    def opened(log_index: int) -> JobOpened:
        return JobOpened(
            address=Address("0x" + "11" * 20),
            block_number=7,
            log_index=log_index,
            tx_hash="0x" + "22" * 32,
            job=parse_job_id(log_index),
            metadata="",
            owner=Address("0x" + "33" * 20),
            provider=Address("0x" + "44" * 20),
            rate=Rate(0),
            balance=Amount(0),
            timestamp=0,
        )

    result = TxResult(
        tx_hash="0x" + "22" * 32, block_number=7, gas_used=1, events=(opened(0), opened(1))
    )
    assert result.first(JobOpened).log_index == 0
    assert result.first(JobEvent).log_index == 0
