"""``reef jobs list`` and ``show`` say that a stopped job's enclave stops now.

A stopped job (rate revised to 0, the revision pending until the rate lock ends) still holds its
money at its old rate, so the time that money lasts (what ``enclave_stops_by`` shows for a
running job) read as the enclave running for most of an hour more, while its provider had
stopped it at once.
"""

from __future__ import annotations

from reef.chain import Address, Amount, Job, JobId, Rate, RateLock
from reef.cli._jobs import _stops_by
from reef.node import JobStatus, JobSummary, format_time

NOW = 1_796_625_900
STOPS_AT = NOW + 3_000


def _summary(pending: RateLock | None) -> JobSummary:
    job = Job(
        id=JobId("0x" + "00" * 31 + "07"),
        metadata="{}",
        owner=Address("0x" + "11" * 20),
        provider=Address("0x" + "22" * 20),
        rate=Rate(100_000_000_000_000_000),
        balance=Amount(360_000),
        last_settled=NOW,
    )
    return JobSummary(
        job=job,
        now=NOW,
        balance=job.balance,
        metadata=None,
        paid_until=STOPS_AT + 300,
        stops_at=STOPS_AT,
        status=JobStatus(state="ended: stopped by its owner"),
        pending_rate=pending,
    )


def test_a_running_job_stops_when_its_money_runs_out_less_the_margin() -> None:
    assert _stops_by(_summary(None)) == format_time(STOPS_AT)


def test_a_rate_update_still_pending_does_not_change_when_the_enclave_stops() -> None:
    raised = RateLock(unlock_time=NOW + 300, new_rate=Rate(200_000_000_000_000_000))
    assert _stops_by(_summary(raised)) == format_time(STOPS_AT)


def test_a_stopped_job_stops_now_and_says_when_it_can_be_closed() -> None:
    stopped = RateLock(unlock_time=NOW + 300, new_rate=Rate(0))
    shown = _stops_by(_summary(stopped))
    assert shown == (
        "now (stopped; it pays at its old rate until closed: "
        f"`reef jobs close 7` from {format_time(NOW + 300)})"
    )
    assert format_time(STOPS_AT) not in shown
