"""The per-job state machine against reference §4.5, rule by rule, plus two properties of the
insolvency timer checked against an independent settlement simulation."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from event_support import market_event as Ev
from hypothesis import given, settings
from hypothesis import strategies as st

from reef.chain import parse_address
from reef.errors import InputError
from reef.market import (
    JobBook,
    JobMetadata,
    JobPolicy,
    Launch,
    RateCard,
    Terminate,
)

PROVIDER = "0x" + "ab" * 20
OWNER = "0x" + "cd" * 20
JOB = "0x" + "00" * 31 + "01"
SCALE = 10**12
SMALL_MIN = RateCard.dev().lookup("local", "dev.small").min_rate


def metadata(**overrides: Any) -> str:
    base: dict[str, Any] = {
        "instance": "dev.small",
        "region": "local",
        "memory": 512,
        "vcpu": 1,
        "url": "http://127.0.0.1:9/images/" + "aa" * 32,
        "name": "hello",
        "family": "tuna",
        "debug": False,
        "init_params": "",
    }
    base.update(overrides)
    return json.dumps(base)


def opened(
    *,
    rate: int = SMALL_MIN,
    balance: int = 3600 * SMALL_MIN // SCALE,
    timestamp: int = 1000,
    owner: str = OWNER,
    provider: str = PROVIDER,
    meta: str | None = None,
    job: str = JOB,
) -> Ev:
    return Ev(
        "Opened",
        job,
        {
            "job_id": job,
            "owner": owner,
            "provider": provider,
            "metadata": meta if meta is not None else metadata(),
            "rate": hex(rate),
            "balance": hex(balance),
            "timestamp": hex(timestamp),
        },
    )


def policy(**kwargs: Any) -> JobPolicy:
    kwargs.setdefault("rates", RateCard.dev())
    kwargs.setdefault("provider", PROVIDER)
    return JobPolicy(**kwargs)


def book_with(*events: Ev, **policy_kwargs: Any) -> JobBook:
    book = JobBook(policy(**policy_kwargs))
    book.apply_all(events)
    return book


def only(actions: list[Any]) -> Any:
    assert len(actions) == 1, actions
    return actions[0]


# -- metadata ------------------------------------------------------------------------------------


def test_metadata_round_trips_in_oysters_key_order() -> None:
    meta = JobMetadata.parse(metadata(init_params=base64.b64encode(b"{}").decode(), debug=True))
    assert list(json.loads(meta.to_json())) == [
        "instance",
        "region",
        "memory",
        "vcpu",
        "url",
        "name",
        "family",
        "debug",
        "init_params",
    ]
    assert JobMetadata.parse(meta.to_json()) == meta
    assert meta.init_params_bytes() == b"{}"


def test_metadata_optional_fields_default_like_oyster() -> None:
    meta = JobMetadata.parse(
        json.dumps({"instance": "i", "region": "r", "memory": 1, "vcpu": 1, "url": "u"})
    )
    assert (meta.name, meta.family, meta.debug, meta.init_params) == ("", "tuna", False, "")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        (json.dumps({"region": "r", "memory": 1, "vcpu": 1, "url": "u"}), "'instance'"),
        (metadata(url=""), "'url'"),
        (metadata(memory="512"), "'memory'"),
        (metadata(vcpu=0), "'vcpu'"),
        (metadata(vcpu=True), "'vcpu'"),
        (metadata(debug="yes"), "'debug'"),
        (metadata(family="trout"), "'family'"),
        (metadata(init_params="%%%"), "base64"),
        (metadata(name=3), "'name'"),
    ],
)
def test_bad_metadata_is_refused_naming_the_field(text: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        JobMetadata.parse(text)


# -- opening ---------------------------------------------------------------------------------------


def test_an_acceptable_job_is_launched_once() -> None:
    book = book_with(opened())
    launch = only(book.decide(1001))
    assert isinstance(launch, Launch)
    spec = launch.spec
    assert (spec.job_id, spec.owner, spec.instance, spec.vcpu, spec.memory) == (
        JOB,
        parse_address(OWNER),
        "dev.small",
        1,
        512,
    )
    assert spec.image_url.endswith("aa" * 32)
    assert spec.bandwidth_kbit_s == 0  # paying exactly the minimum buys no extra bandwidth
    assert book.decide(1002) == []


def test_jobs_for_other_providers_are_ignored() -> None:
    book = book_with(opened(provider="0x" + "11" * 20))
    assert book.jobs == {}
    assert book.decide(1001) == []


def test_provider_addresses_compare_case_insensitively() -> None:
    book = book_with(opened(provider=PROVIDER.upper().replace("0X", "0x")))
    assert isinstance(only(book.decide(1001)), Launch)


def test_a_replayed_opened_event_does_not_reset_the_job() -> None:
    book = book_with(opened(), Ev("Deposited", JOB, {"job_id": JOB, "amount": "0x10"}), opened())
    assert book.jobs[JOB].balance == 3600 * SMALL_MIN // SCALE + 16


@pytest.mark.parametrize(
    ("event", "needle"),
    [
        (opened(meta=metadata(region="mars")), "region 'mars' is not served"),
        (opened(meta=metadata(instance="c5.xlarge")), "'c5.xlarge' is not offered"),
        (opened(meta=metadata(vcpu=4)), "asks for 4 vCPU"),
        (opened(meta=metadata(memory=4096)), "4096 MiB"),
        (opened(meta="{broken"), "invalid job metadata"),
        (opened(rate=SMALL_MIN - 1), "below this provider's minimum"),
    ],
)
def test_unacceptable_jobs_are_never_launched(event: Ev, needle: str) -> None:
    book = book_with(event)
    action = only(book.decide(1001))
    assert isinstance(action, Terminate)
    assert needle in action.reason
    assert book.jobs[JOB].phase == "done"
    assert book.decide(1002) == []


def test_owner_deny_and_allow_lists() -> None:
    denied = book_with(opened(), deny_owners=frozenset({OWNER.upper().replace("0X", "0x")}))
    assert "deny list" in only(denied.decide(1001)).reason
    not_allowed = book_with(opened(), allow_owners=frozenset({"0x" + "99" * 20}))
    assert "allow list" in only(not_allowed.decide(1001)).reason
    allowed = book_with(opened(), allow_owners=frozenset({OWNER}))
    assert isinstance(only(allowed.decide(1001)), Launch)


# -- rates -----------------------------------------------------------------------------------------


def test_stop_terminates_at_initiate_time() -> None:
    book = book_with(opened())
    book.decide(1001)
    book.apply(Ev("ReviseRateInitiated", JOB, {"job_id": JOB, "new_rate": "0x0"}))
    action = only(book.decide(1002))
    assert isinstance(action, Terminate)
    assert "revised to 0" in action.reason
    # said as what it is, not as a rate below the provider's minimum
    assert action.reason.startswith("the job's owner stopped it")
    assert "minimum" not in action.reason
    # a later cancel does not bring a terminated job back
    book.apply(Ev("ReviseRateCancelled", JOB, {"job_id": JOB}))
    assert book.decide(1003) == []


def test_rate_revision_above_the_minimum_keeps_the_enclave() -> None:
    book = book_with(opened(balance=10**12))
    first = only(book.decide(1001)).spec
    gb_rate = RateCard.dev().gb_rate("local")
    book.apply(
        Ev("ReviseRateInitiated", JOB, {"job_id": JOB, "new_rate": hex(SMALL_MIN + gb_rate)})
    )
    second = only(book.decide(1002)).spec
    # one GB/s more: 8 Gbit/s = 8 * 1024 * 1024 kbit/s
    assert second.bandwidth_kbit_s == 8 * 1024 * 1024
    assert second.enclave_key() == first.enclave_key()
    book.apply(Ev("ReviseRateCancelled", JOB, {"job_id": JOB}))
    assert book.jobs[JOB].rate == SMALL_MIN
    assert only(book.decide(1003)).spec.bandwidth_kbit_s == 0


def test_rate_finalized_takes_the_chains_value() -> None:
    book = book_with(opened())
    book.decide(1001)
    book.apply(Ev("ReviseRateInitiated", JOB, {"job_id": JOB, "new_rate": hex(SMALL_MIN * 2)}))
    book.apply(Ev("ReviseRateFinalized", JOB, {"job_id": JOB, "new_rate": hex(SMALL_MIN * 2)}))
    machine = book.jobs[JOB]
    assert (machine.rate, machine.pending_rate) == (SMALL_MIN * 2, None)


def test_a_pending_lower_rate_does_not_stretch_the_money() -> None:
    """The chain charges the old rate until the revision is finalized: while a lower rate is
    pending, the insolvency timer still runs at the old, higher one (Oyster's switches at once)."""
    book = book_with(opened(rate=SMALL_MIN * 2, balance=200_000, timestamp=0), safety_margin_s=0)
    machine = book.jobs[JOB]
    assert machine.deadline() == 1000  # 200 base units per second
    book.apply(Ev("ReviseRateInitiated", JOB, {"job_id": JOB, "new_rate": hex(SMALL_MIN)}))
    assert machine.offered_rate == SMALL_MIN
    assert machine.deadline() == 1000
    book.apply(Ev("ReviseRateFinalized", JOB, {"job_id": JOB, "new_rate": hex(SMALL_MIN)}))
    assert machine.deadline() == 2000
    book.apply(Ev("ReviseRateInitiated", JOB, {"job_id": JOB, "new_rate": hex(SMALL_MIN * 4)}))
    assert machine.deadline() == 500  # a higher pending rate counts at once too


# -- metadata updates and close ------------------------------------------------------------------------


def test_metadata_update_with_a_new_image_relaunches() -> None:
    book = book_with(opened())
    first = only(book.decide(1001)).spec
    new_url = "http://127.0.0.1:9/images/" + "bb" * 32
    book.apply(Ev("MetadataUpdated", JOB, {"job_id": JOB, "new_metadata": metadata(url=new_url)}))
    second = only(book.decide(1002)).spec
    assert second.image_url == new_url
    assert second.enclave_key() != first.enclave_key()


@pytest.mark.parametrize(
    "change",
    [{"debug": True}, {"init_params": base64.b64encode(b"params").decode()}],
)
def test_metadata_update_of_debug_or_init_params_relaunches(change: dict[str, Any]) -> None:
    book = book_with(opened())
    first = only(book.decide(1001)).spec
    book.apply(Ev("MetadataUpdated", JOB, {"job_id": JOB, "new_metadata": metadata(**change)}))
    assert only(book.decide(1002)).spec.enclave_key() != first.enclave_key()


def test_metadata_update_of_the_name_only_does_not_replace_the_enclave() -> None:
    book = book_with(opened())
    first = only(book.decide(1001)).spec
    book.apply(Ev("MetadataUpdated", JOB, {"job_id": JOB, "new_metadata": metadata(name="x")}))
    assert only(book.decide(1002)).spec.enclave_key() == first.enclave_key()


@pytest.mark.parametrize(
    "change",
    [
        {"instance": "dev.medium"},
        {"region": "elsewhere"},
        {"memory": 256},
        {"vcpu": 2},
        {"family": "salmon"},
    ],
)
def test_metadata_update_of_the_machine_ends_the_job(change: dict[str, Any]) -> None:
    book = book_with(opened())
    book.decide(1001)
    book.apply(Ev("MetadataUpdated", JOB, {"job_id": JOB, "new_metadata": metadata(**change)}))
    action = only(book.decide(1002))
    assert isinstance(action, Terminate)
    assert next(iter(change)) in action.reason


def test_invalid_metadata_update_ends_the_job() -> None:
    book = book_with(opened())
    book.decide(1001)
    book.apply(Ev("MetadataUpdated", JOB, {"job_id": JOB, "new_metadata": "{"}))
    assert "invalid" in only(book.decide(1002)).reason


def test_close_terminates_and_nothing_relaunches_it() -> None:
    book = book_with(opened())
    book.decide(1001)
    book.apply(Ev("Closed", JOB, {"job_id": JOB}))
    assert only(book.decide(1002)).reason == "the job was closed"
    book.apply(Ev("MetadataUpdated", JOB, {"job_id": JOB, "new_metadata": metadata(debug=True)}))
    book.apply(Ev("Deposited", JOB, {"job_id": JOB, "amount": "0xffff"}))
    assert book.decide(1003) == []
    assert book.running() == {}


def test_events_of_unknown_jobs_and_non_job_events_are_ignored() -> None:
    book = book_with(opened())
    assert book.apply(Ev("Deposited", "0x" + "ff" * 32, {"amount": "0x1"})) is None
    assert book.apply(Ev("ProviderAdded", None, {"provider": PROVIDER, "cp": "x"})) is None


def test_mark_terminated_restores_a_termination_without_acting_again() -> None:
    book = book_with(opened())
    book.jobs[JOB].mark_terminated("stopped before the restart")
    assert book.decide(1001) == []
    assert book.jobs[JOB].reason == "stopped before the restart"


def test_a_permanent_launch_failure_ends_the_job() -> None:
    book = book_with(opened())
    book.decide(1001)
    book.jobs[JOB].fail("image refused: sha256 on the deny list")
    assert "deny list" in only(book.decide(1002)).reason


def test_forget_launch_launches_again() -> None:
    book = book_with(opened())
    spec = only(book.decide(1001)).spec
    book.jobs[JOB].forget_launch()
    assert only(book.decide(1002)).spec == spec


# -- insolvency ------------------------------------------------------------------------------------


def test_insolvency_timer_is_oysters_formula() -> None:
    rate = SMALL_MIN  # 100 base units per second
    balance = 1000 * 100 + 42  # 1000 s of compute and a bit
    book = book_with(opened(rate=rate, balance=balance, timestamp=5000), safety_margin_s=300)
    machine = book.jobs[JOB]
    assert machine.deadline() == 5000 + 1000 - 300
    assert machine.runs_out_at() == 6000
    assert isinstance(only(book.decide(5699)), Launch)
    action = only(book.decide(5700))
    assert isinstance(action, Terminate)
    assert "300 s before" in action.reason


def test_deposit_withdraw_and_settle_move_the_deadline() -> None:
    book = book_with(opened(rate=SMALL_MIN, balance=100_000, timestamp=0), safety_margin_s=10)
    machine = book.jobs[JOB]
    assert machine.deadline() == 1000 - 10
    book.apply(Ev("Deposited", JOB, {"job_id": JOB, "from": OWNER, "amount": hex(50_000)}))
    assert machine.deadline() == 1500 - 10
    book.apply(Ev("Settled", JOB, {"job_id": JOB, "amount": hex(20_000), "timestamp": hex(200)}))
    assert (machine.balance, machine.last_settled) == (130_000, 200)
    assert machine.deadline() == 200 + 1300 - 10
    book.apply(Ev("Withdrew", JOB, {"job_id": JOB, "to": OWNER, "amount": hex(30_000)}))
    assert machine.deadline() == 200 + 1000 - 10


def test_a_deposit_shorter_than_the_margin_is_never_launched() -> None:
    book = book_with(opened(rate=SMALL_MIN, balance=100 * 299, timestamp=0), safety_margin_s=300)
    assert isinstance(only(book.decide(0)), Terminate)


def test_replaying_events_then_deciding_once_sees_late_deposits() -> None:
    # At t=1200 the opening deposit alone is exhausted, but a deposit made at t=500 covers it:
    # deciding after the whole replay must not terminate the job.
    book = book_with(
        opened(rate=SMALL_MIN, balance=100_000, timestamp=0),
        Ev("Deposited", JOB, {"job_id": JOB, "amount": hex(100_000)}),
        safety_margin_s=300,
    )
    assert isinstance(only(book.decide(1200)), Launch)


def test_next_deadline_is_the_earliest_running_job() -> None:
    other = "0x" + "00" * 31 + "02"
    book = book_with(
        opened(rate=SMALL_MIN, balance=100_000, timestamp=0),
        opened(rate=SMALL_MIN, balance=50_000, timestamp=0, job=other),
        safety_margin_s=0,
    )
    assert book.next_deadline() == 500
    book.apply(Ev("Closed", other, {"job_id": other}))
    assert book.next_deadline() == 1000


class _Chain:
    """An independent model of the market's settlement (ceil rounding, capped at the balance)."""

    def __init__(self, rate: int, balance: int, now: int) -> None:
        self.rate, self.balance, self.last = rate, balance, now

    def owed(self, at: int) -> int:
        return -(-self.rate * (at - self.last) // SCALE)

    def settle(self, at: int) -> int:
        amount = min(self.owed(at), self.balance)
        self.balance -= amount
        self.last = at
        return amount


@settings(max_examples=300, deadline=None)
@given(
    rate=st.integers(min_value=SMALL_MIN, max_value=SMALL_MIN * 50),
    balance=st.integers(min_value=0, max_value=10**7),
    margin=st.integers(min_value=0, max_value=600),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["deposit", "settle", "tick"]),
            st.integers(min_value=1, max_value=400),
            st.integers(min_value=0, max_value=10**6),
        ),
        max_size=25,
    ),
)
def test_running_jobs_always_have_money_for_the_margin(
    rate: int, balance: int, margin: int, ops: list[tuple[str, int, int]]
) -> None:
    """Safety: whenever the machine lets a job run at t, the chain still owes the provider less
    than the balance at t + margin. Liveness: it never stops a job that has a full second more."""
    now = 10_000
    chain = _Chain(rate, balance, now)
    book = book_with(opened(rate=rate, balance=balance, timestamp=now), safety_margin_s=margin)
    machine = book.jobs[JOB]
    for op, dt, amount in ops:
        now += dt
        if op == "deposit":
            chain.balance += amount
            book.apply(Ev("Deposited", JOB, {"job_id": JOB, "amount": hex(amount)}))
        elif op == "settle":
            paid = chain.settle(now)
            book.apply(Ev("Settled", JOB, {"job_id": JOB, "amount": hex(paid), "timestamp": now}))
        book.decide(now)
        if machine.phase == "running":
            assert chain.owed(now + margin) <= chain.balance
        else:
            # stopped for insolvency only when one more second past the margin is not covered
            assert "would run out" in machine.reason
            assert chain.owed(now + margin + 1) > chain.balance
        if machine.phase == "done":
            break
