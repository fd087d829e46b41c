"""The serverless billing model: what the Jobs contract must do with tokens, in plain Python.

:class:`JobsModel` mirrors ``ServerlessJobs.vy``'s money and bookkeeping rules (stakes, deposits,
refunds, the payout split, slashing) and its stake-weighted selection
(:func:`select_executors`), without signatures or the EVM. A stateful property test drives the
contract and the model with the same random operations and requires the same decisions, the same
balances and conservation of tokens; users and tools can also use it to predict a job's cost.

Refusals raise :class:`~reef.errors.ContractRevertError` with exactly the revert reason the
contract gives (:class:`~reef.serverless._reasons.ServerlessRevert`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from reef.crypto import keccak256
from reef.errors import ContractRevertError
from reef.serverless._contracts import JobsParams
from reef.serverless._reasons import ServerlessRevert as R

__all__ = [
    "JobsModel",
    "ModelExecutor",
    "ModelJob",
    "payout_shares",
    "selection_seed",
    "select_executors",
]

_BIPS = 10_000
_MAX_EXECUTORS = 64
_MAX_ERROR_CODE = 6


def _refuse(reason: R) -> ContractRevertError:
    return ContractRevertError(f"the Jobs contract refuses: {reason.value}", reason=reason.value)


def selection_seed(parent_hash: bytes, job_id: int) -> bytes:
    """The seed of job ``job_id``'s selection: keccak(blockhash(parent) ‖ uint256(job id))."""
    return keccak256(bytes(parent_hash) + job_id.to_bytes(32, "big"))


def select_executors(seed: bytes, candidates: Sequence[tuple[str, int]], n: int) -> list[str]:
    """Pick ``n`` of ``candidates`` (address, stake), weighted by stake, without replacement,
    exactly as the contract does: the i-th draw is keccak(seed ‖ uint256(i)) modulo the stake
    not yet drawn, walked over the candidates in order.

    Raises:
        ContractRevertError: when fewer than ``n`` candidates are available.
    """
    if len(candidates) < n:
        raise _refuse(R.NOT_ENOUGH_EXECUTORS)
    weights = [stake for _, stake in candidates]
    total = sum(weights)
    chosen: list[str] = []
    for i in range(n):
        r = int.from_bytes(keccak256(seed + i.to_bytes(32, "big")), "big") % total
        for j, weight in enumerate(weights):
            if r < weight:
                chosen.append(candidates[j][0])
                total -= weight
                weights[j] = 0
                break
            r -= weight
    return chosen


def payout_shares(cost: int, n: int) -> list[int]:
    """What the k-th answer of ``n`` earns of a job's ``cost``: 2(n-k+1)/(n(n+1)) of it for
    k < n, the rest for the n-th (1/2, 1/3, 1/6 for n = 3): the first answer earns most."""
    shares = [cost * 2 * (n - k + 1) // (n * (n + 1)) for k in range(1, n)]
    return [*shares, cost - sum(shares)]


@dataclass
class ModelExecutor:
    owner: str
    stake: int
    job_capacity: int
    env: int
    image_id: bytes
    active_jobs: int = 0
    draining: bool = False


@dataclass
class ModelJob:
    owner: str
    deadline_ms: int
    start_time: int
    deposit: int
    escrow: int
    selected: list[str]
    submitted: set[str] = field(default_factory=set)
    execution_time_ms: int = 0
    closed: bool = False


class JobsModel:
    """The Jobs contract's rules over a token ledger (``balances``; the contract is ``self_address``).

    Time is the block timestamp of the operation, passed in (``now``).
    """

    def __init__(
        self, params: JobsParams, balances: dict[str, int], *, self_address: str = "jobs"
    ) -> None:
        self.params = params
        self.balances = balances
        self.me = self_address
        self.images: set[bytes] = set()
        self.executors: dict[str, ModelExecutor] = {}
        self.order: list[str] = []
        self.jobs: dict[int, ModelJob] = {}
        self.job_count = 0

    # -- tokens --

    def _move(self, source: str, target: str, amount: int) -> None:
        if amount == 0:
            return
        if self.balances.get(source, 0) < amount:
            raise ContractRevertError(
                "transfer amount exceeds balance", reason="transfer amount exceeds balance"
            )
        self.balances[source] -= amount
        self.balances[target] = self.balances.get(target, 0) + amount

    def escrow_total(self) -> int:
        """What the contract must hold: every stake plus every open job's escrow."""
        stakes = sum(e.stake for e in self.executors.values())
        return stakes + sum(j.escrow for j in self.jobs.values())

    # -- executors --

    def _available(self, e: ModelExecutor, env: int) -> bool:
        return (
            not e.draining
            and e.active_jobs < e.job_capacity
            and e.env == env
            and e.stake >= self.params.min_stake
            and e.image_id in self.images
        )

    def register(
        self, owner: str, enclave: str, *, image_id: bytes, capacity: int, env: int, stake: int
    ) -> None:
        if image_id not in self.images:
            raise _refuse(R.IMAGE_NOT_WHITELISTED)
        if enclave in self.executors:
            raise _refuse(R.ALREADY_REGISTERED)
        if len(self.order) >= _MAX_EXECUTORS:
            raise _refuse(R.LIST_FULL)
        if capacity < 1:
            raise _refuse(R.CAPACITY_ZERO)
        if stake < self.params.min_stake:
            raise _refuse(R.STAKE_TOO_LOW)
        self._move(owner, self.me, stake)
        self.executors[enclave] = ModelExecutor(owner, stake, capacity, env, image_id)
        self.order.append(enclave)

    def _owned(self, sender: str, enclave: str) -> ModelExecutor:
        executor = self.executors.get(enclave)
        if executor is None:
            raise _refuse(R.EXECUTOR_NOT_FOUND)
        if executor.owner != sender:
            raise _refuse(R.ONLY_EXECUTOR_OWNER)
        return executor

    def add_stake(self, sender: str, enclave: str, amount: int) -> None:
        executor = self._owned(sender, enclave)
        self._move(sender, self.me, amount)
        executor.stake += amount

    def drain(self, sender: str, enclave: str) -> None:
        executor = self._owned(sender, enclave)
        if executor.draining:
            raise _refuse(R.ALREADY_DRAINING)
        executor.draining = True

    def revive(self, sender: str, enclave: str) -> None:
        executor = self._owned(sender, enclave)
        if not executor.draining:
            raise _refuse(R.NOT_DRAINING)
        executor.draining = False

    def deregister(self, sender: str, enclave: str) -> None:
        executor = self._owned(sender, enclave)
        if not executor.draining:
            raise _refuse(R.DRAIN_FIRST)
        if executor.active_jobs:
            raise _refuse(R.ACTIVE_JOBS)
        del self.executors[enclave]
        index = self.order.index(enclave)  # swap with the last, as the contract does
        self.order[index] = self.order[-1]
        self.order.pop()
        self._move(self.me, sender, executor.stake)

    # -- jobs --

    def create_job(
        self,
        owner: str,
        deadline_ms: int,
        *,
        env: int,
        now: int,
        parent_hash: bytes,
        callback_gas_limit: int = 0,
    ) -> tuple[int, list[str]]:
        """Open a job; returns its id and the executors selected."""
        p = self.params
        if deadline_ms < p.min_deadline_ms:
            raise _refuse(R.DEADLINE_TOO_SHORT)
        if deadline_ms > p.max_deadline_ms:
            raise _refuse(R.DEADLINE_TOO_LONG)
        if callback_gas_limit > 2_000_000:
            raise _refuse(R.CALLBACK_GAS)
        job_id = self.job_count + 1
        candidates = [
            (a, self.executors[a].stake)
            for a in self.order
            if self._available(self.executors[a], env)
        ]
        selected = select_executors(selection_seed(parent_hash, job_id), candidates, p.num_select)
        deposit = deadline_ms * p.fee_per_ms
        self._move(owner, self.me, deposit)
        self.job_count = job_id
        for enclave in selected:
            self.executors[enclave].active_jobs += 1
        self.jobs[job_id] = ModelJob(owner, deadline_ms, now, deposit, deposit, selected)
        return job_id, selected

    def _open(self, job_id: int) -> ModelJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise _refuse(R.JOB_NOT_FOUND)
        if job.closed:
            raise _refuse(R.JOB_CLOSED)
        return job

    def _over(self, job: ModelJob, now: int) -> bool:
        limit = job.start_time * 1000 + job.deadline_ms + self.params.execution_buffer_s * 1000
        return now * 1000 > limit

    def submit(
        self, job_id: int, executor: str, *, total_time_ms: int, error_code: int, now: int
    ) -> int:
        """An output from ``executor``; returns what its owner is paid."""
        job = self._open(job_id)
        if self._over(job, now):
            raise _refuse(R.EXECUTION_OVER)
        if error_code > _MAX_ERROR_CODE:
            raise _refuse(R.UNKNOWN_ERROR_CODE)
        if executor not in job.selected:
            raise _refuse(R.NOT_SELECTED)
        if executor in job.submitted:
            raise _refuse(R.ALREADY_SUBMITTED)
        record = self.executors[executor]
        if record.image_id not in self.images:
            raise _refuse(R.EXECUTOR_IMAGE_REVOKED)
        n = len(job.selected)
        count = len(job.submitted) + 1
        refund = 0
        if count == 1:
            job.execution_time_ms = min(total_time_ms, job.deadline_ms)
            cost = job.execution_time_ms * self.params.fee_per_ms
            refund = job.escrow - cost
            job.escrow = cost
        cost = job.execution_time_ms * self.params.fee_per_ms
        payment = job.escrow if count == n else payout_shares(cost, n)[count - 1]
        job.escrow -= payment
        job.submitted.add(executor)
        if count == n:
            job.closed = True
        record.active_jobs -= 1
        self._move(self.me, job.owner, refund)
        self._move(self.me, record.owner, payment)
        return payment

    def slash(self, job_id: int, *, now: int) -> int:
        """Close a job past its deadline and buffer; returns the stake slashed."""
        job = self._open(job_id)
        if not self._over(job, now):
            raise _refuse(R.EXECUTION_NOT_OVER)
        slashed = 0
        for enclave in job.selected:
            if enclave in job.submitted:
                continue
            record = self.executors[enclave]
            amount = record.stake * self.params.slash_bips // _BIPS
            record.stake -= amount
            record.active_jobs -= 1
            slashed += amount
        refund = job.escrow
        job.escrow = 0
        job.closed = True
        self._move(self.me, job.owner, refund + slashed)
        return slashed
