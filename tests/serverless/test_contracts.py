"""The serverless contracts on the devnet: registration through the verifier's statement,
selection, fees, the payout split, slashing, refunds, callbacks and chain-bound signatures.

Signatures are checked against eth-account's independent EIP-712 encoder; the selection against
:func:`reef.serverless.select_executors` over the parent block's hash.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import vyper
from eth_account import Account
from eth_account.messages import encode_typed_data

from reef.attestation import sign_statement
from reef.chain import TxProgress
from reef.chain._clients import deploy_contract
from reef.crypto import Secp256k1PrivateKey
from reef.errors import ContractRevertError
from reef.serverless import (
    ENV_JAVASCRIPT,
    JOBS_DOMAIN_NAME,
    JobResultCallbackCalled,
    JobsDomain,
    JobsParams,
    RelayRevert,
    ServerlessRevert,
    SlashedOnExecutionTimeout,
    payout_shares,
    register_digest,
    select_executors,
    selection_seed,
    sign_output,
    sign_registration,
)
from serverless.chain_support import IMAGE, PARAMS, ServerlessChain

CONTRACTS = Path(__file__).parents[2] / "src" / "reef" / "chain" / "contracts"
CODEHASH = "0x" + "22" * 32


@pytest.fixture
def chain() -> ServerlessChain:
    return ServerlessChain.create()


def three(chain: ServerlessChain, **kwargs: int) -> list[str]:
    return [chain.register(op, **kwargs) for op in chain.operators[:3]]


def reason(exc: pytest.ExceptionInfo[ContractRevertError]) -> str:
    return exc.value.reason


# ---- signatures, checked with an independent encoder ----


def test_output_digest_matches_eth_account_typed_data() -> None:
    domain = JobsDomain(chain_id=421614, jobs_contract="0x" + "ab" * 20)
    fields = {
        "jobId": 7,
        "output": b"hello, reef!",
        "totalTime": 123,
        "errorCode": 4,
        "signTimestamp": 1_700_000_000,
    }
    typed = encode_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "SubmitOutput": [
                    {"name": "jobId", "type": "uint256"},
                    {"name": "output", "type": "bytes"},
                    {"name": "totalTime", "type": "uint256"},
                    {"name": "errorCode", "type": "uint8"},
                    {"name": "signTimestamp", "type": "uint256"},
                ],
            },
            "primaryType": "SubmitOutput",
            "domain": {
                "name": JOBS_DOMAIN_NAME,
                "version": "1",
                "chainId": 421614,
                "verifyingContract": "0x" + "ab" * 20,
            },
            "message": fields,
        }
    )
    key = Secp256k1PrivateKey.generate()
    signed = sign_output(
        key,
        domain,
        job_id=7,
        output=b"hello, reef!",
        total_time=123,
        error_code=4,
        sign_timestamp=1_700_000_000,
    )
    assert Account.recover_message(typed, signature=signed.signature) == (
        key.public_key.checksum_address
    )
    assert signed.signer(domain) == key.public_key.checksum_address
    # Another chain id or contract: another digest (no replay across deployments).
    other = JobsDomain(chain_id=1, jobs_contract=domain.jobs_contract)
    assert signed.signer(other) != key.public_key.checksum_address


def test_registration_digest_matches_eth_account_typed_data() -> None:
    domain = JobsDomain(chain_id=31337, jobs_contract="0x" + "cd" * 20)
    owner = "0x" + "12" * 20
    typed = encode_typed_data(
        domain_data={
            "name": JOBS_DOMAIN_NAME,
            "version": "1",
            "chainId": 31337,
            "verifyingContract": "0x" + "cd" * 20,
        },
        message_types={
            "Register": [
                {"name": "owner", "type": "address"},
                {"name": "jobCapacity", "type": "uint256"},
                {"name": "env", "type": "uint8"},
                {"name": "signTimestamp", "type": "uint256"},
            ]
        },
        message_data={"owner": owner, "jobCapacity": 20, "env": 1, "signTimestamp": 99},
    )
    key = Secp256k1PrivateKey.generate()
    signature = sign_registration(
        key, domain, owner=owner, job_capacity=20, env=1, sign_timestamp=99
    )
    assert Account.recover_message(typed, signature=signature) == key.public_key.checksum_address
    digest = register_digest(domain, owner=owner, job_capacity=20, env=1, sign_timestamp=99)
    assert len(digest) == 32


def test_the_contract_computes_the_same_domain(chain: ServerlessChain) -> None:
    jobs = chain.jobs()
    assert bytes(jobs._call("domainSeparator")) == jobs.domain().separator


# ---- revert reasons ----


def test_revert_reasons_match_the_contract_exactly() -> None:
    text = re.sub(r'"""[\s\S]*?"""', "", (CONTRACTS / "ServerlessJobs.vy").read_text())
    strings = set(re.findall(r'(?<!x)"([^"\n]+)"', text))
    asserted = {s for s in strings if not re.match(r"^[A-Za-z0-9]+\(", s)}
    asserted -= {"reef.serverless.Jobs", "marlin.oyster.AttestationVerifier", "1"}
    known = {r.value for r in ServerlessRevert}
    assert asserted - known == set(), "reasons in the contract that ServerlessRevert lacks"
    assert known - asserted == set(), "reasons in ServerlessRevert that the contract never gives"


def test_relay_revert_reasons_match_the_contract_exactly() -> None:
    text = re.sub(r'"""[\s\S]*?"""', "", (CONTRACTS / "ServerlessRelay.vy").read_text())
    strings = set(re.findall(r'(?<!x)"([^"\n]+)"', text))
    asserted = {s for s in strings if not re.match(r"^[A-Za-z0-9]+\(", s)}
    asserted -= {"reef.serverless.Relay", "1"}
    known = {r.value for r in RelayRevert}
    assert asserted - known == set(), "reasons in the Relay that RelayRevert lacks"
    assert known - asserted == set(), "reasons in RelayRevert that the Relay never gives"


# ---- code ----


def test_code_round_trips_through_calldata_and_is_bound_to_the_contract(
    chain: ServerlessChain,
) -> None:
    source = "export default { async fetch() { return new Response('ünïcode ok'); } };"
    code = chain.code(chain.users[0])
    codehash = code.deploy_code(source, b'{"name":"t"}')
    assert re.fullmatch(r"0x[0-9a-f]{64}", codehash)
    assert code.fetch_code(codehash) == source.encode()
    assert code.fetch_code("0x" + "00" * 32) is None
    # A transaction to another contract is not code of this deployment.
    token_tx = chain.token.mint(chain.users[0].address, 1).tx_hash
    assert code.fetch_code(token_tx) is None


# ---- registration ----


def test_registration_checks_the_statement_and_the_enclave_signature(
    chain: ServerlessChain,
) -> None:
    operator = chain.operators[0]
    jobs = chain.jobs(operator)
    key = Secp256k1PrivateKey.generate()
    now = chain.now()

    def attempt(
        *,
        verifier: Secp256k1PrivateKey = chain.verifier,
        image: bytes = IMAGE,
        timestamp_ms: int | None = None,
        signer: Secp256k1PrivateKey = key,
        owner: str = operator.address,
        stake: int = 5_000_000,
    ) -> None:
        statement = sign_statement(
            verifier,
            image_id=image,
            timestamp_ms=now * 1000 if timestamp_ms is None else timestamp_ms,
            public_key=key.public_key.raw,
            user_data=b"u",
        )
        signature = sign_registration(
            signer, jobs.domain(), owner=owner, job_capacity=2, env=1, sign_timestamp=now
        )
        jobs.register_executor(
            statement,
            job_capacity=2,
            env=1,
            sign_timestamp=now,
            register_signature=signature,
            stake=stake,
        )

    cases = [
        ({"verifier": Secp256k1PrivateKey.generate()}, ServerlessRevert.STATEMENT_SIGNER),
        ({"image": b"\x99" * 32}, ServerlessRevert.IMAGE_NOT_WHITELISTED),
        ({"timestamp_ms": (now - 601) * 1000}, ServerlessRevert.ATTESTATION_OLD),
        ({"signer": Secp256k1PrivateKey.generate()}, ServerlessRevert.REGISTRATION_SIGNER),
        ({"owner": chain.operators[1].address}, ServerlessRevert.REGISTRATION_SIGNER),
        ({"stake": PARAMS.min_stake - 1}, ServerlessRevert.STAKE_TOO_LOW),
    ]
    for kwargs, expected in cases:
        with pytest.raises(ContractRevertError) as exc:
            attempt(**kwargs)  # type: ignore[arg-type]
        assert reason(exc) == expected.value, kwargs
    before = chain.balance(operator.address)
    attempt()
    record = jobs.executor(key.public_key.checksum_address)
    assert record is not None
    assert (record.owner, record.stake, record.image_id) == (operator.address, 5_000_000, IMAGE)
    assert chain.balance(operator.address) == before - 5_000_000
    with pytest.raises(ContractRevertError) as exc:
        attempt()
    assert reason(exc) == ServerlessRevert.ALREADY_REGISTERED.value


def test_drain_and_deregister_return_the_stake(chain: ServerlessChain) -> None:
    operator = chain.operators[0]
    enclave = chain.register(operator, stake=2_000_000)
    jobs = chain.jobs(operator)
    with pytest.raises(ContractRevertError) as exc:
        jobs.deregister(enclave)
    assert reason(exc) == ServerlessRevert.DRAIN_FIRST.value
    with pytest.raises(ContractRevertError) as exc:
        chain.jobs(chain.operators[1]).drain(enclave)
    assert reason(exc) == ServerlessRevert.ONLY_EXECUTOR_OWNER.value
    before = chain.balance(operator.address)
    jobs.drain(enclave)
    jobs.deregister(enclave)
    assert chain.balance(operator.address) == before + 2_000_000
    assert jobs.executor(enclave) is None
    assert jobs.executor_addresses() == []


# ---- jobs ----


def test_selection_is_the_stake_weighted_draw_over_the_parent_block(
    chain: ServerlessChain,
) -> None:
    stakes = [1_000_000, 2_000_000, 3_000_000, 9_000_000, 4_000_000]
    enclaves = [chain.register(op, stake=s) for op, s in zip(chain.operators, stakes, strict=False)]
    user = chain.jobs(chain.users[0])
    for _ in range(4):
        candidates = [(e.enclave, e.stake) for e in user.executors() if e.active_jobs < 4]
        request, _ = user.create_job(CODEHASH, b"", 1000)
        parent = chain.devnet.web3().eth.get_block(request.block_number - 1)["hash"]
        expected = select_executors(selection_seed(bytes(parent), request.job_id), candidates, 3)
        assert list(request.selected_executors) == expected
        assert len(set(request.selected_executors)) == 3
        assert set(request.selected_executors) <= set(enclaves)


def test_ensure_allowance_approves_the_jobs_contract_once_when_short(
    chain: ServerlessChain,
) -> None:
    account = chain.deployer  # the only account the fixture did not approve already
    jobs = chain.jobs(account)
    assert chain.token.allowance(account.address, chain.jobs_address) == 0
    heard: list[TxProgress] = []
    jobs.ensure_allowance(1_000, progress=heard.append)
    assert chain.token.allowance(account.address, chain.jobs_address) == 2**256 - 1
    assert heard, "the approval's transaction was reported"
    block = chain.w3.eth.block_number
    jobs.ensure_allowance(10**30, progress=heard.append)
    assert chain.w3.eth.block_number == block, "enough allowance: no transaction"


def test_the_output_window_is_the_deadline_plus_the_execution_buffer() -> None:
    assert JobsParams(execution_buffer_s=60).output_window_s(1500) == 61.5
    assert PARAMS.output_window_s(0) == PARAMS.execution_buffer_s


def test_too_few_executors_refuses_and_charges_nothing(chain: ServerlessChain) -> None:
    three(chain)
    chain.jobs(chain.operators[0]).drain(chain.jobs().executor_addresses()[0])
    user = chain.users[0]
    before = chain.balance(user.address)
    with pytest.raises(ContractRevertError) as exc:
        chain.jobs(user).create_job(CODEHASH, b"", 1000)
    assert reason(exc) == ServerlessRevert.NOT_ENOUGH_EXECUTORS.value
    assert "reef fn executors" in (exc.value.hint or "")
    assert chain.balance(user.address) == before


def test_outputs_pay_per_ms_first_answer_most_and_refund_the_rest(
    chain: ServerlessChain,
) -> None:
    three(chain)
    user = chain.users[0]
    before = chain.balance(user.address)
    request, _ = chain.jobs(user).create_job(CODEHASH, b"in", 2000)
    assert request.deposit == 2000 * PARAMS.fee_per_ms
    assert chain.balance(user.address) == before - request.deposit
    owners = {e.enclave: e.owner for e in chain.jobs().executors()}
    paid = []
    for i, enclave in enumerate(request.selected_executors):
        owner_before = chain.balance(owners[enclave])
        # Later answers report other times: only the first one's counts.
        signed = chain.output(enclave, request.job_id, total_time=250 + 100 * i)
        result = chain.jobs(chain.users[1]).submit_output(signed)
        assert result.gas_used > 0
        paid.append(chain.balance(owners[enclave]) - owner_before)
    cost = 250 * PARAMS.fee_per_ms
    assert paid == payout_shares(cost, 3)
    assert paid[0] > paid[1] > paid[2]
    assert chain.balance(user.address) == before - cost
    job = chain.jobs().job(request.job_id)
    assert job is not None
    assert job.closed
    assert job.escrow == 0
    assert chain.balance(chain.jobs_address) == sum(e.stake for e in chain.jobs().executors())
    with pytest.raises(ContractRevertError) as exc:
        chain.jobs(user).submit_output(chain.output(request.selected_executors[0], request.job_id))
    assert reason(exc) == ServerlessRevert.JOB_CLOSED.value


def test_outputs_are_refused_from_strangers_twice_and_after_the_deadline(
    chain: ServerlessChain,
) -> None:
    enclaves = three(chain)
    stranger = chain.register(chain.operators[3])
    request, _ = chain.jobs(chain.users[0]).create_job(CODEHASH, b"", 1000)
    outsider = next(e for e in [*enclaves, stranger] if e not in request.selected_executors)
    submitter = chain.jobs(chain.users[1])
    with pytest.raises(ContractRevertError) as exc:
        submitter.submit_output(chain.output(outsider, request.job_id))
    assert reason(exc) == ServerlessRevert.NOT_SELECTED.value
    first = request.selected_executors[0]
    submitter.submit_output(chain.output(first, request.job_id))
    with pytest.raises(ContractRevertError) as exc:
        submitter.submit_output(chain.output(first, request.job_id))
    assert reason(exc) == ServerlessRevert.ALREADY_SUBMITTED.value
    with pytest.raises(ContractRevertError) as exc:
        submitter.submit_output(chain.output(first, request.job_id, error_code=7))
    assert reason(exc) == ServerlessRevert.UNKNOWN_ERROR_CODE.value
    chain.advance(1 + PARAMS.execution_buffer_s + 5)
    with pytest.raises(ContractRevertError) as exc:
        submitter.submit_output(chain.output(request.selected_executors[1], request.job_id))
    assert reason(exc) == ServerlessRevert.EXECUTION_OVER.value


def test_a_signature_for_another_deployment_is_refused(chain: ServerlessChain) -> None:
    three(chain)
    request, _ = chain.jobs(chain.users[0]).create_job(CODEHASH, b"", 1000)
    enclave = request.selected_executors[0]
    domain = chain.jobs().domain()
    for other in (
        JobsDomain(chain_id=domain.chain_id + 1, jobs_contract=domain.jobs_contract),
        JobsDomain(chain_id=domain.chain_id, jobs_contract="0x" + "77" * 20),
    ):
        signed = sign_output(
            chain.keys[enclave],
            other,
            job_id=request.job_id,
            output=b"x",
            total_time=5,
            error_code=0,
            sign_timestamp=chain.now(),
        )
        with pytest.raises(ContractRevertError) as exc:
            chain.jobs(chain.users[0]).submit_output(signed)
        assert reason(exc) == ServerlessRevert.NOT_SELECTED.value


def test_silent_executors_are_slashed_and_the_unearned_part_refunded(
    chain: ServerlessChain,
) -> None:
    three(chain, stake=4_000_000)
    user = chain.users[0]
    before = chain.balance(user.address)
    request, _ = chain.jobs(user).create_job(CODEHASH, b"", 1000)
    answered = request.selected_executors[0]
    chain.jobs(chain.users[1]).submit_output(chain.output(answered, request.job_id, total_time=400))
    with pytest.raises(ContractRevertError) as exc:
        chain.jobs(chain.users[1]).slash_on_timeout(request.job_id)
    assert reason(exc) == ServerlessRevert.EXECUTION_NOT_OVER.value
    chain.advance(1 + PARAMS.execution_buffer_s + 2)
    chain.jobs(chain.users[2]).slash_on_timeout(request.job_id)
    records = {e.enclave: e for e in chain.jobs().executors()}
    slash = 4_000_000 * PARAMS.slash_bips // 10_000
    assert records[answered].stake == 4_000_000
    for silent in request.selected_executors[1:]:
        assert records[silent].stake == 4_000_000 - slash
        assert records[silent].active_jobs == 0
    cost = 400 * PARAMS.fee_per_ms
    first_share = payout_shares(cost, 3)[0]
    # The user paid only the first answer's share, and got the silent executors' slashed stake.
    assert chain.balance(user.address) == before - first_share + 2 * slash
    events = [e for e in chain.jobs().events() if isinstance(e, SlashedOnExecutionTimeout)]
    assert {e.enclave for e in events} == set(request.selected_executors[1:])


def test_a_serverless_revert_carries_the_serverless_hint(chain: ServerlessChain) -> None:
    """The market's hint for its own "job not found" ("a closed job is deleted from the
    market") was given to serverless reverts of the same text: a client's reverts carry its
    contract's hints."""
    three(chain)
    with pytest.raises(ContractRevertError) as exc:
        chain.jobs(chain.users[0]).slash_on_timeout(12345)
    assert reason(exc) == ServerlessRevert.JOB_NOT_FOUND.value
    assert exc.value.hint == "check the job id (`reef fn job ID`)"


def test_with_no_answer_at_all_the_user_gets_everything_back(chain: ServerlessChain) -> None:
    three(chain, stake=4_000_000)
    user = chain.users[0]
    before = chain.balance(user.address)
    request, _ = chain.jobs(user).create_job(CODEHASH, b"", 3000)
    chain.advance(3 + PARAMS.execution_buffer_s + 2)
    chain.jobs(chain.users[1]).slash_on_timeout(request.job_id)
    slash = 4_000_000 * PARAMS.slash_bips // 10_000
    assert chain.balance(user.address) == before + 3 * slash
    assert chain.jobs().job(request.job_id).closed  # type: ignore[union-attr]


CALLBACK_RECEIVER = """
# pragma version 0.4.3
lastJob: public(uint256)
lastOutput: public(Bytes[64])
lastCode: public(uint8)
lastTime: public(uint256)
burn: public(bool)
counter: uint256

@external
def setBurn(_burn: bool):
    self.burn = _burn

@external
def oysterResultCall(jobId: uint256, output: Bytes[64], errorCode: uint8, totalTime: uint256):
    self.lastJob = jobId
    self.lastOutput = output
    self.lastCode = errorCode
    self.lastTime = totalTime
    if self.burn:
        for i: uint256 in range(100000):
            self.counter += 1
"""


def test_the_callback_gets_the_first_output_within_its_gas_limit(
    chain: ServerlessChain, tmp_path: Path
) -> None:
    three(chain)
    out = vyper.compile_code(CALLBACK_RECEIVER, output_formats=["abi", "bytecode"])
    w3 = chain.devnet.web3()
    user = chain.users[0]
    factory = w3.eth.contract(abi=out["abi"], bytecode=out["bytecode"])
    from reef.chain._tx import Transactor

    transactor = Transactor(w3, user)
    _, receipt = transactor.send(factory.constructor(), "deploy receiver")
    receiver = w3.eth.contract(address=receipt["contractAddress"], abi=out["abi"])
    jobs = chain.jobs(user)
    request, _ = jobs.create_job(
        CODEHASH, b"", 1000, callback=receiver.address, callback_gas_limit=200_000
    )
    chain.jobs(chain.users[1]).submit_output(
        chain.output(
            request.selected_executors[0], request.job_id, b"result", total_time=42, error_code=0
        )
    )
    assert receiver.functions.lastJob().call() == request.job_id
    assert receiver.functions.lastOutput().call() == b"result"
    assert receiver.functions.lastTime().call() == 42
    called = [e for e in chain.jobs().events() if isinstance(e, JobResultCallbackCalled)]
    assert [e.success for e in called] == [True]
    # A callback that needs more than its limit fails alone: the output is still accepted.
    transactor.send(receiver.functions.setBurn(True), "burn")
    request2, _ = jobs.create_job(
        CODEHASH, b"", 1000, callback=receiver.address, callback_gas_limit=100_000
    )
    chain.jobs(chain.users[1]).submit_output(
        chain.output(request2.selected_executors[0], request2.job_id)
    )
    called = [e for e in chain.jobs().events() if isinstance(e, JobResultCallbackCalled)]
    assert [e.success for e in called] == [True, False]
    assert chain.jobs().job(request2.job_id).output_count == 1  # type: ignore[union-attr]


def test_deploy_refuses_bad_parameters(chain: ServerlessChain) -> None:
    from reef.chain._tx import Transactor

    transactor = Transactor(chain.devnet.web3(), chain.deployer)
    args = PARAMS.args()
    args[6] = 7  # num_select
    with pytest.raises(ContractRevertError) as exc:
        deploy_contract(
            transactor, "ServerlessJobs", chain.token.address, chain.token.address, *args
        )
    assert reason(exc) == ServerlessRevert.SELECT_RANGE.value
    assert ENV_JAVASCRIPT == 1  # Oyster's env id of JavaScript on workerd
