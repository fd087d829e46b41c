"""Waiting for a job's first output, as a user's call and the relay gateway both do: one look
at the chain says the output, or that one may still come, or that none will (the job closed
without one). Checked on a stand-in for the Jobs client (no chain)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from reef.chain import Address
from reef.serverless import JobCreated, JobResponded, ServerlessJobsClient
from reef.serverless._call import _first_output, _look_for_output

EXECUTOR = Address("0x" + "ee" * 20)
REQUEST = JobCreated(
    address=Address("0x" + "11" * 20),
    block_number=7,
    log_index=0,
    tx_hash="0x" + "00" * 32,
    job_id=3,
    env=1,
    owner=Address("0x" + "aa" * 20),
    codehash=b"\x01" * 32,
    code_inputs=b"",
    deadline=1000,
    deposit=3000,
    selected_executors=(EXECUTOR,),
)


def output(log_index: int) -> JobResponded:
    return JobResponded(
        address=REQUEST.address,
        block_number=9,
        log_index=log_index,
        tx_hash="0x" + "00" * 32,
        job_id=REQUEST.job_id,
        executor=EXECUTOR,
        output=b"out",
        total_time=12,
        error_code=0,
        output_count=log_index + 1,
        payment=36,
    )


@dataclass
class Job:
    closed: bool


@dataclass
class FakeJobs:
    """The two reads a wait makes: the job's record and its accepted outputs."""

    job_record: Job | None = None
    outputs: list[JobResponded] = field(default_factory=list)
    asked: list[tuple[int, int | None]] = field(default_factory=list)

    def job(self, job_id: int) -> Job | None:
        assert job_id == REQUEST.job_id
        return self.job_record

    def responses(self, from_block: int, *, job_id: int | None = None) -> list[JobResponded]:
        self.asked.append((from_block, job_id))
        return self.outputs


def look(jobs: FakeJobs) -> tuple[JobResponded | None, bool]:
    return _look_for_output(cast(ServerlessJobsClient, jobs), REQUEST)


def test_an_output_may_still_come_while_the_job_is_open_or_not_read_yet() -> None:
    unread = FakeJobs()
    assert look(unread) == (None, True)
    assert unread.asked == [(REQUEST.block_number, REQUEST.job_id)]  # from the job's block on
    assert look(FakeJobs(Job(closed=False))) == (None, True)


def test_the_first_accepted_output_ends_the_wait_even_on_a_closed_job() -> None:
    first, second = output(0), output(1)
    assert look(FakeJobs(Job(closed=False), [first, second])) == (first, False)
    assert look(FakeJobs(Job(closed=True), [first])) == (first, False)


def test_a_job_closed_without_an_output_ends_the_wait_at_once() -> None:
    assert look(FakeJobs(Job(closed=True))) == (None, False)
    # A user's call stops there (one look), not at the end of the output window.
    jobs = FakeJobs(Job(closed=True))
    assert _first_output(cast(ServerlessJobsClient, jobs), REQUEST, wait_s=3600) is None
    assert len(jobs.asked) == 1
