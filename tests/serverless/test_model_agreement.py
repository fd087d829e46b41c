"""The Jobs contract and the pure-Python billing model agree on every random history.

A hypothesis ``RuleBasedStateMachine`` sends the same random operations, at the same block
times, to the contract (through reef's clients, on the devnet in process) and to
:class:`reef.serverless.JobsModel`. At every step both take the same decision (both succeed, or
both refuse with the same revert reason, nothing charged), and after every step:

- every account's token balance is the same on both sides, and so are the executors' stakes and
  active jobs, and each job's escrow;
- tokens are conserved: the contract holds exactly the executors' stakes plus the open jobs'
  escrows, and the total supply never changes.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from reef.errors import ContractRevertError
from reef.serverless import JobsModel
from serverless.chain_support import IMAGE, PARAMS, ServerlessChain

CODEHASH = "0x" + "33" * 32


class JobsAgreement(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.chain = ServerlessChain.create()
        chain = self.chain
        self.accounts = [a.address for a in (*chain.users, *chain.operators)]
        balances = {a: chain.balance(a) for a in self.accounts}
        balances[chain.jobs_address] = 0
        self.model = JobsModel(PARAMS, balances, self_address=chain.jobs_address)
        self.model.images.add(IMAGE)
        self.supply = chain.token.total_supply()
        self.enclaves: list[str] = []  # registered at some point, by index of operator
        self.owner_of: dict[str, Any] = {}

    def both(self, on_chain: Any, in_model: Any) -> tuple[Any, Any]:
        """Run both; they must agree on success or on the exact revert reason."""
        chain_error = model_error = None
        chain_result = model_result = None
        try:
            chain_result = on_chain()
        except ContractRevertError as exc:
            chain_error = exc.reason
        try:
            model_result = in_model()
        except ContractRevertError as exc:
            model_error = exc.reason
        assert chain_error == model_error
        return chain_result, model_result

    @rule(
        operator=st.integers(0, 5),
        stake=st.sampled_from([999_999, 1_000_000, 3_000_000, 7_000_000]),
        capacity=st.integers(1, 3),
    )
    def register(self, operator: int, stake: int, capacity: int) -> None:
        account = self.chain.operators[operator]
        from reef.crypto import Secp256k1PrivateKey

        key = Secp256k1PrivateKey.generate()
        enclave = key.public_key.checksum_address
        self.both(
            lambda: self.chain.register(account, stake=stake, capacity=capacity, key=key),
            lambda: self.model.register(
                account.address, enclave, image_id=IMAGE, capacity=capacity, env=1, stake=stake
            ),
        )
        if enclave in self.model.executors:
            self.enclaves.append(enclave)
            self.owner_of[enclave] = account

    def _enclave(self, index: int) -> str | None:
        return self.enclaves[index % len(self.enclaves)] if self.enclaves else None

    @precondition(lambda self: self.enclaves)
    @rule(
        index=st.integers(0, 20),
        stranger=st.booleans(),
        op=st.sampled_from(["drain", "revive", "deregister", "stake"]),
    )
    def manage(self, index: int, stranger: bool, op: str) -> None:
        enclave = self._enclave(index)
        assert enclave is not None
        owner = self.owner_of[enclave]
        sender = self.chain.users[0] if stranger else owner
        client = self.chain.jobs(sender)
        if op == "stake":
            self.both(
                lambda: client.add_stake(enclave, 500_000),
                lambda: self.model.add_stake(sender.address, enclave, 500_000),
            )
            return
        method = {"drain": "drain", "revive": "revive", "deregister": "deregister"}[op]
        self.both(
            lambda: getattr(client, method)(enclave),
            lambda: getattr(self.model, method)(sender.address, enclave),
        )

    @rule(user=st.integers(0, 2), deadline=st.sampled_from([99, 100, 1000, 4000, 60_000, 60_001]))
    def create_job(self, user: int, deadline: int) -> None:
        account = self.chain.users[user]
        now = self.chain.now()
        parent = bytes(self.chain.devnet.web3().eth.get_block("latest")["hash"])
        chain_result, model_result = self.both(
            lambda: self.chain.jobs(account).create_job(CODEHASH, b"x", deadline),
            lambda: self.model.create_job(
                account.address, deadline, env=1, now=now, parent_hash=parent
            ),
        )
        if chain_result is not None:
            request, _ = chain_result
            job_id, selected = model_result
            assert (request.job_id, list(request.selected_executors)) == (job_id, selected)

    @precondition(lambda self: self.model.jobs)
    @rule(
        job=st.integers(0, 30),
        which=st.integers(0, 3),
        total=st.sampled_from([0, 1, 77, 999, 5000, 70_000]),
        code=st.sampled_from([0, 4, 6, 7]),
    )
    def submit(self, job: int, which: int, total: int, code: int) -> None:
        job_ids = sorted(self.model.jobs)
        job_id = job_ids[job % len(job_ids)]
        selected = self.model.jobs[job_id].selected
        enclaves = [*selected, *(e for e in self.enclaves if e not in selected)]
        enclave = enclaves[which % len(enclaves)]
        now = self.chain.now()
        signed = self.chain.output(enclave, job_id, total_time=total, error_code=code)
        self.both(
            lambda: self.chain.jobs(self.chain.users[1]).submit_output(signed),
            lambda: self.model.submit(
                job_id, enclave, total_time_ms=total, error_code=code, now=now
            ),
        )

    @precondition(lambda self: self.model.jobs)
    @rule(job=st.integers(0, 30))
    def slash(self, job: int) -> None:
        job_ids = sorted(self.model.jobs)
        job_id = job_ids[job % len(job_ids)]
        now = self.chain.now()
        self.both(
            lambda: self.chain.jobs(self.chain.users[2]).slash_on_timeout(job_id),
            lambda: self.model.slash(job_id, now=now),
        )

    @rule(seconds=st.sampled_from([1, 3, 10, 70]))
    def wait(self, seconds: int) -> None:
        self.chain.advance(seconds)

    @invariant()
    def same_money(self) -> None:
        chain = self.chain
        for account in self.accounts:
            assert chain.balance(account) == self.model.balances.get(account, 0), account
        held = chain.balance(chain.jobs_address)
        assert held == self.model.balances[chain.jobs_address] == self.model.escrow_total()
        assert chain.token.total_supply() == self.supply
        jobs = chain.jobs()
        for record in jobs.executors():
            mine = self.model.executors[record.enclave]
            assert (record.stake, record.active_jobs, record.draining) == (
                mine.stake,
                mine.active_jobs,
                mine.draining,
            )
        assert jobs.executor_addresses() == self.model.order


JobsAgreement.TestCase.settings = settings(
    # About 60 steps, ~20-45 s on a loaded 2-core machine. No shrinking (a chain per example makes
    # it take minutes); a failure prints its whole history, which replays from START.
    max_examples=3,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)


@pytest.mark.slow
class TestJobsAgreement(JobsAgreement.TestCase):  # type: ignore[name-defined,misc]
    pass
