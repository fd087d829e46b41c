"""The market contract, rule by rule (reference §4.1), on a real EVM (py-evm via eth-tester).

Each test sets the block time of the transactions it sends, so every expected amount is
computed by hand from the MarketV1 formulas, not from reef's billing model.
"""

from __future__ import annotations

import pytest
from market_support import LOCK, TestChain

from reef.chain import (
    JobClosed,
    JobDeposited,
    JobMetadataUpdated,
    JobOpened,
    JobReviseRateCancelled,
    JobReviseRateFinalized,
    JobReviseRateInitiated,
    JobSettled,
    JobWithdrew,
    LockCreated,
    LockDeleted,
    ProviderAdded,
    ProviderRemoved,
    ProviderUpdatedWithCp,
    RateLock,
    Revert,
    parse_job_id,
)
from reef.errors import ContractRevertError, InputError, MarketError

USDC = 10**6
PER_SECOND = 10**12  # rate of one base unit per second


@pytest.fixture(scope="module")
def chain() -> TestChain:
    # One chain per module: each test opens its own jobs, and time only moves forward.
    return TestChain.create()


def _reverts(reason: Revert) -> pytest.RaisesContext[ContractRevertError]:
    return pytest.raises(
        ContractRevertError,
        match=f"reverted: {reason}".replace("(", r"\(").replace(")", r"\)").replace("*", r"\*"),
    )


def _open(
    chain: TestChain, rate: int, balance: int, *, user: int = 0, provider: int = 0
) -> tuple[str, int]:
    """Open a job; returns its id and the block time it was opened at."""
    market = chain.market(chain.users[user])
    opened_at = chain.next_time()
    job = market.open_job('{"instance":"dev"}', chain.providers[provider].address, rate, balance)
    assert market.job(job).last_settled == opened_at
    return job, opened_at


# ---- settlement ----


def test_settlement_rounds_up_to_the_next_base_unit(chain: TestChain) -> None:
    market = chain.market(chain.users[0])
    provider = chain.providers[0].address
    before = chain.token().balance(provider)
    job, t0 = _open(chain, rate=1, balance=10 * USDC)  # 10**-12 base units per second
    chain.at(t0 + 7)
    result = market.settle(job)
    (settled,) = [e for e in result.events if isinstance(e, JobSettled)]
    assert (settled.job, settled.amount, settled.timestamp) == (job, 1, t0 + 7)
    assert chain.token().balance(provider) == before + 1
    assert market.job(job).balance == 10 * USDC - 1
    assert market.job(job).last_settled == t0 + 7


@pytest.mark.parametrize(
    ("rate", "seconds", "expected"),
    [
        (PER_SECOND, 10, 10),  # exact
        (PER_SECOND + 1, 1, 2),  # a hair over one unit rounds up
        (3 * PER_SECOND // 2, 3, 5),  # 4.5 -> 5
        (0, 1000, 0),  # a zero rate never charges
        (52_500_000_000_000, 3600, 189_000),  # reference §4.3: c5.xlarge for an hour
    ],
)
def test_settlement_is_ceil_of_rate_times_time(
    chain: TestChain, rate: int, seconds: int, expected: int
) -> None:
    market = chain.market(chain.users[0])
    job, t0 = _open(chain, rate=rate, balance=10 * USDC)
    chain.at(t0 + seconds)
    events = market.settle(job).events
    assert [e.amount for e in events if isinstance(e, JobSettled)] == [expected]


def test_settlement_is_capped_at_the_balance(chain: TestChain) -> None:
    market = chain.market(chain.users[0])
    job, t0 = _open(chain, rate=PER_SECOND, balance=100)
    chain.at(t0 + 1000)
    events = market.settle(job).events
    assert [e.amount for e in events if isinstance(e, JobSettled)] == [100]
    after = market.job(job)
    # The unpaid time is forgiven: last_settled moves to now although only 100 s were paid.
    assert (after.balance, after.last_settled) == (0, t0 + 1000)


def test_anyone_may_settle_and_settling_twice_in_a_row_charges_once(chain: TestChain) -> None:
    job, t0 = _open(chain, rate=PER_SECOND, balance=USDC)
    stranger = chain.market(chain.users[2])
    chain.at(t0 + 50)
    assert [e.amount for e in stranger.settle(job).events if isinstance(e, JobSettled)] == [50]
    # The next block is one second later: one more unit, not fifty again.
    assert [e.amount for e in stranger.settle(job).events if isinstance(e, JobSettled)] == [1]


# ---- deposits and withdrawals ----


def test_anyone_may_deposit(chain: TestChain) -> None:
    job, _ = _open(chain, rate=PER_SECOND, balance=USDC)
    friend = chain.market(chain.users[1])
    result = friend.deposit(job, 5 * USDC)
    (deposited,) = [e for e in result.events if isinstance(e, JobDeposited)]
    assert (deposited.job, deposited.from_, deposited.amount) == (
        job,
        chain.users[1].address,
        5 * USDC,
    )
    # Deposit does not settle: the balance simply grows.
    assert chain.market().job(job).balance == 6 * USDC


def test_withdraw_settles_first_and_keeps_the_notice_reserve(chain: TestChain) -> None:
    owner = chain.market(chain.users[0])
    rate = 2 * PER_SECOND + 1
    reserve = -(-rate * LOCK // PER_SECOND)  # ceil(rate * lock / 10**12) = 601
    job, t0 = _open(chain, rate=rate, balance=10_000)
    chain.at(t0 + 10)
    charge = -(-rate * 10 // PER_SECOND)  # 21
    too_much = 10_000 - charge - reserve + 1
    with _reverts(Revert.WITHDRAW_RESERVE) as info:
        owner.withdraw(job, too_much)
    assert info.value.hint
    assert "notice" in info.value.hint
    # The refused withdrawal changed nothing (its settlement was reverted with it).
    assert owner.job(job).last_settled == t0
    chain.at(t0 + 10)
    result = owner.withdraw(job, too_much - 1)
    kinds = [type(e) for e in result.events]
    assert kinds == [JobSettled, JobWithdrew]  # settle first, then withdraw
    withdrew = result.events[1]
    assert isinstance(withdrew, JobWithdrew)
    assert (withdrew.to, withdrew.amount) == (chain.users[0].address, too_much - 1)
    assert owner.job(job).balance == reserve


def test_withdraw_is_refused_when_the_balance_is_below_the_reserve(chain: TestChain) -> None:
    owner = chain.market(chain.users[0])
    job, _ = _open(chain, rate=PER_SECOND, balance=LOCK - 1)
    with _reverts(Revert.WITHDRAW_RESERVE):
        owner.withdraw(job, 0)


def test_a_zero_rate_job_has_no_reserve(chain: TestChain) -> None:
    owner = chain.market(chain.users[0])
    job, _ = _open(chain, rate=0, balance=123)
    owner.withdraw(job, 123)
    assert owner.job(job).balance == 0


# ---- rate revisions and the lock ----


def test_rate_revision_locks_for_the_wait_time_then_settles_at_the_old_rate(
    chain: TestChain,
) -> None:
    owner = chain.market(chain.users[0])
    job, t0 = _open(chain, rate=PER_SECOND, balance=USDC)
    chain.at(t0 + 5)
    result = owner.revise_rate_initiate(job, 3 * PER_SECOND)
    lock_created, initiated = result.events
    assert isinstance(lock_created, LockCreated)
    assert isinstance(initiated, JobReviseRateInitiated)
    assert lock_created.selector == owner.rate_lock_selector()
    assert (lock_created.key, lock_created.i_value, lock_created.unlock_time) == (
        job,
        3 * PER_SECOND,
        t0 + 5 + LOCK,
    )
    assert (initiated.job, initiated.new_rate) == (job, 3 * PER_SECOND)
    assert owner.rate_lock(job) == RateLock(unlock_time=t0 + 5 + LOCK, new_rate=3 * PER_SECOND)
    # Initiating does not change the rate yet.
    assert owner.job(job).rate == PER_SECOND

    with _reverts(Revert.REVISION_PENDING):
        owner.revise_rate_initiate(job, 7)
    chain.at(t0 + 5 + LOCK - 1)
    with _reverts(Revert.REVISION_LOCKED):
        owner.revise_rate_finalize(job)

    chain.at(t0 + 5 + LOCK)
    result = owner.revise_rate_finalize(job)
    assert [type(e) for e in result.events] == [LockDeleted, JobSettled, JobReviseRateFinalized]
    settled, finalized = result.events[1], result.events[2]
    assert isinstance(settled, JobSettled)
    assert isinstance(finalized, JobReviseRateFinalized)
    assert settled.amount == 5 + LOCK  # every second so far at the old rate
    assert finalized.new_rate == 3 * PER_SECOND
    assert owner.job(job).rate == 3 * PER_SECOND
    assert owner.rate_lock(job) is None


def test_cancel_needs_a_pending_revision_and_frees_the_lock(chain: TestChain) -> None:
    owner = chain.market(chain.users[0])
    job, _ = _open(chain, rate=PER_SECOND, balance=USDC)
    with _reverts(Revert.NO_REVISION):
        owner.revise_rate_cancel(job)
    with _reverts(Revert.NO_REVISION):
        owner.revise_rate_finalize(job)
    owner.revise_rate_initiate(job, 0)
    result = owner.revise_rate_cancel(job)
    assert [type(e) for e in result.events] == [LockDeleted, JobReviseRateCancelled]
    assert owner.rate_lock(job) is None
    owner.revise_rate_initiate(job, 5)  # a new revision may start at once
    assert owner.rate_lock(job) is not None


def test_an_unlocked_but_unfinalized_revision_still_blocks_a_new_one(chain: TestChain) -> None:
    owner = chain.market(chain.users[0])
    job, t0 = _open(chain, rate=PER_SECOND, balance=USDC)
    owner.revise_rate_initiate(job, 2)
    chain.at(t0 + 10 * LOCK)
    with _reverts(Revert.REVISION_PENDING):
        owner.revise_rate_initiate(job, 3)


def test_rates_above_the_maximum_are_refused(chain: TestChain) -> None:
    owner = chain.market(chain.users[0])
    job, _ = _open(chain, rate=PER_SECOND, balance=USDC)
    with pytest.raises(InputError, match="maximum"):
        owner.revise_rate_initiate(job, 2**128)
    # The contract refuses too, for callers that bypass the client's check.
    fn = owner.contract.functions.jobReviseRateInitiate(bytes.fromhex(job[2:]), 2**128)
    with pytest.raises(Exception, match="MAX_RATE"):
        fn.call({"from": chain.users[0].address})


# ---- closing ----


def test_a_zero_rate_job_closes_at_once_and_refunds_the_owner(chain: TestChain) -> None:
    owner = chain.market(chain.users[0])
    token = chain.token()
    before = token.balance(chain.users[0].address)
    job, _ = _open(chain, rate=0, balance=777)
    assert token.balance(chain.users[0].address) == before - 777
    result = owner.close(job)
    assert [type(e) for e in result.events] == [JobSettled, JobClosed]
    assert token.balance(chain.users[0].address) == before
    assert owner.find_job(job) is None
    with pytest.raises(MarketError, match="not open"):
        owner.job(job)
    with _reverts(Revert.JOB_NOT_FOUND):
        owner.close(job)


def test_a_paying_job_closes_only_after_an_unlocked_revision_to_zero(chain: TestChain) -> None:
    owner = chain.market(chain.users[0])
    provider = chain.providers[0].address
    token = chain.token()
    job, t0 = _open(chain, rate=PER_SECOND, balance=USDC)
    user_before = token.balance(chain.users[0].address)
    provider_before = token.balance(provider)

    with _reverts(Revert.CLOSE_NEEDS_NOTICE) as info:
        owner.close(job)
    assert info.value.hint
    assert "rate revision to 0" in info.value.hint

    chain.at(t0 + 1)
    owner.revise_rate_initiate(job, 5)  # not a stop
    chain.at(t0 + 1 + LOCK)
    with _reverts(Revert.CLOSE_REVISION_NOT_ZERO):
        owner.close(job)
    owner.revise_rate_cancel(job)

    stop_at = chain.at(t0 + 2 + LOCK)
    owner.revise_rate_initiate(job, 0)
    with _reverts(Revert.REVISION_LOCKED):
        owner.close(job)

    close_at = chain.at(stop_at + LOCK + 20)
    result = owner.close(job)
    assert [type(e) for e in result.events] == [LockDeleted, JobSettled, JobClosed]
    paid = close_at - t0  # the old rate runs until the close itself
    assert token.balance(provider) == provider_before + paid
    assert token.balance(chain.users[0].address) == user_before + USDC - paid
    assert owner.find_job(job) is None
    assert owner.rate_lock(job) is None


# ---- who may do what ----


def test_only_the_owner_may_change_a_job(chain: TestChain) -> None:
    job, _ = _open(chain, rate=PER_SECOND, balance=USDC)
    stranger = chain.market(chain.users[1])
    cases = [
        (Revert.ONLY_OWNER_WITHDRAW, lambda: stranger.withdraw(job, 1)),
        (Revert.ONLY_OWNER_REVISE, lambda: stranger.revise_rate_initiate(job, 0)),
        (Revert.ONLY_OWNER_CANCEL, lambda: stranger.revise_rate_cancel(job)),
        (Revert.ONLY_OWNER_FINALIZE, lambda: stranger.revise_rate_finalize(job)),
        (Revert.ONLY_OWNER_CLOSE, lambda: stranger.close(job)),
        (Revert.ONLY_OWNER_METADATA, lambda: stranger.update_metadata(job, "{}")),
    ]
    for reason, attempt in cases:
        with _reverts(reason) as info:
            attempt()
        assert info.value.reason == reason
        assert info.value.hint == "send the transaction from the account that opened the job"


def test_every_job_operation_on_an_unknown_job_says_job_not_found(chain: TestChain) -> None:
    market = chain.market(chain.users[0])
    unknown = parse_job_id(10**6)
    for attempt in (
        lambda: market.settle(unknown),
        lambda: market.deposit(unknown, 1, approve=False),  # the contract's check, not the client's
        lambda: market.withdraw(unknown, 0),
        lambda: market.revise_rate_initiate(unknown, 0),
        lambda: market.revise_rate_cancel(unknown),
        lambda: market.revise_rate_finalize(unknown),
        lambda: market.close(unknown),
        lambda: market.update_metadata(unknown, ""),
    ):
        with _reverts(Revert.JOB_NOT_FOUND):
            attempt()


def test_metadata_update(chain: TestChain) -> None:
    owner = chain.market(chain.users[0])
    job, _ = _open(chain, rate=0, balance=0)
    text = '{"url":"https://example.org/app.eif","note":"ünïcode ✓"}'
    result = owner.update_metadata(job, text)
    (updated,) = result.events
    assert isinstance(updated, JobMetadataUpdated)
    assert updated.metadata == text
    assert owner.job(job).metadata == text


def test_job_ids_count_up_from_the_index(chain: TestChain) -> None:
    market = chain.market(chain.users[0])
    first = market.job_count()
    a, _ = _open(chain, rate=0, balance=0)
    b, _ = _open(chain, rate=0, balance=0)
    assert (a, b) == (parse_job_id(first), parse_job_id(first + 1))
    assert a == "0x" + f"{first:064x}"
    assert market.job_count() == first + 2


def test_job_opened_event_carries_every_field(chain: TestChain) -> None:
    market = chain.market(chain.users[1])
    provider = chain.providers[1].address
    opened_at = chain.next_time()
    job = market.open_job('{"region":"local"}', provider, 12345, 67890)
    (opened,) = [e for e in market.events(job=job) if isinstance(e, JobOpened)]
    assert opened.args() == {
        "job": job,
        "metadata": '{"region":"local"}',
        "owner": chain.users[1].address,
        "provider": provider,
        "rate": 12345,
        "balance": 67890,
        "timestamp": opened_at,
    }
    assert opened.address == chain.deployment.market


# ---- providers ----


def test_provider_registration_lifecycle() -> None:
    chain = TestChain.create(n_users=1, n_providers=0)
    who = chain.users[0]
    market = chain.market(who)
    assert market.provider(who.address) is None
    with _reverts(Revert.NOT_A_PROVIDER):
        market.remove_provider()
    with _reverts(Revert.NOT_A_PROVIDER):
        market.update_provider("http://x")
    with _reverts(Revert.CP_EMPTY):
        market.add_provider("")
    (added,) = market.add_provider("http://127.0.0.1:8080").events
    assert isinstance(added, ProviderAdded)
    assert (added.provider, added.cp) == (who.address, "http://127.0.0.1:8080")
    with _reverts(Revert.PROVIDER_EXISTS):
        market.add_provider("http://other")
    with _reverts(Revert.CP_EMPTY):
        market.update_provider("")
    (updated,) = market.update_provider("http://127.0.0.1:9090").events
    assert isinstance(updated, ProviderUpdatedWithCp)
    assert updated.new_cp == "http://127.0.0.1:9090"
    assert market.provider(who.address) == "http://127.0.0.1:9090"

    # A job opened while registered keeps paying after the provider leaves.
    job = market.open_job("{}", who.address, PER_SECOND, 1000)
    (removed,) = market.remove_provider().events
    assert isinstance(removed, ProviderRemoved)
    assert removed.provider == who.address
    assert market.provider(who.address) is None
    market.settle(job)
    with _reverts(Revert.PROVIDER_NOT_REGISTERED):
        market.open_job("{}", who.address, PER_SECOND, 1000, approve=False)


def test_getters_and_constants(chain: TestChain) -> None:
    market = chain.market()
    assert market.extra_decimals() == 12
    assert market.rate_lock_selector().hex() == (
        "bb00c34f1a27e23493f1bd516e88ec0af9b091cc990f207e765f5bd5af012243"
    )
    assert market.lock_wait_time() == LOCK
    assert market.token_address() == chain.deployment.token
    assert int(market.contract.functions.MAX_RATE().call()) == 2**128 - 1
