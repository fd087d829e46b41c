"""The serverless contracts on the devnet: registration through the verifier's statement,
selection, fees, the payout split, slashing, refunds, callbacks and chain-bound signatures.

Signatures are checked against eth-account's independent EIP-712 encoder; the selection against
:func:`reef.serverless.select_executors` over the parent block's hash.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import vyper
from eth_account import Account
from eth_account.messages import encode_typed_data
from web3 import Web3

from reef.attestation import sign_statement
from reef.chain import Devnet, TokenClient, TxProgress
from reef.chain._clients import deploy_contract
from reef.crypto import Secp256k1PrivateKey
from reef.errors import ChainError, ContractRevertError, InputError
from reef.serverless import (
    ENV_JAVASCRIPT,
    JOBS_DOMAIN_NAME,
    JobResultCallbackCalled,
    JobsDomain,
    JobsParams,
    RelayParams,
    RelayRevert,
    ServerlessJobsClient,
    ServerlessRelayClient,
    ServerlessRevert,
    SignedOutput,
    SlashedOnExecutionTimeout,
    fund_gas,
    payout_shares,
    register_digest,
    select_executors,
    selection_seed,
    sign_job_response,
    sign_output,
    sign_registration,
    submit_output_digest,
)
from serverless.chain_support import IMAGE, PARAMS, ServerlessChain

CONTRACTS = Path(__file__).parents[2] / "src" / "reef" / "chain" / "contracts"
CODEHASH = "0x" + "22" * 32
OTHER_CODEHASH = "0x" + "33" * 32


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
    codehash, input_hash = bytes.fromhex("22" * 32), Web3.keccak(b"the input")
    fields = {
        "jobId": 7,
        "codehash": codehash,
        "inputHash": input_hash,
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
                    {"name": "codehash", "type": "bytes32"},
                    {"name": "inputHash", "type": "bytes32"},
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
        codehash="0x" + codehash.hex(),  # hex or bytes alike
        input_hash=bytes(input_hash),
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
    # Other code or input: another digest (an output says what ran on what).
    assert replace(signed, codehash=b"\x33" * 32).signer(domain) != signed.signer(domain)
    assert replace(signed, input_hash=Web3.keccak(b"other")).signer(domain) != (
        signed.signer(domain)
    )


def test_an_output_missing_or_misnaming_a_field_is_refused_by_name() -> None:
    # The signing functions take an output's fields as keywords (OutputFields): a caller that
    # no type checker reads must still hear which field is wrong, not a KeyError or silence.
    domain = JobsDomain(chain_id=1, jobs_contract="0x" + "ab" * 20)
    good: dict[str, Any] = {
        "job_id": 1,
        "codehash": b"\x22" * 32,
        "input_hash": b"\x33" * 32,
        "output": b"",
        "total_time": 1,
        "error_code": 0,
        "sign_timestamp": 2,
    }
    misspelt = {k: v for k, v in good.items() if k != "sign_timestamp"} | {"signtimestamp": 2}
    with pytest.raises(InputError, match="missing sign_timestamp; unknown signtimestamp"):
        submit_output_digest(domain, **misspelt)
    with pytest.raises(InputError, match="unknown extra"):
        sign_output(Secp256k1PrivateKey.generate(), domain, **good, extra=1)


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
            codehash=CODEHASH,
            input_hash=request.input_hash,
            output=b"x",
            total_time=5,
            error_code=0,
            sign_timestamp=chain.now(),
        )
        with pytest.raises(ContractRevertError) as exc:
            chain.jobs(chain.users[0]).submit_output(signed)
        assert reason(exc) == ServerlessRevert.NOT_SELECTED.value


def test_an_output_signed_for_other_code_or_input_is_refused(chain: ServerlessChain) -> None:
    """An executor's signature says which code ran on which input: a correct signature for
    one job's code or input does not pay for another job with the same id's other code or
    input, whoever submits it (the hole a host's forging JSON-RPC node would open)."""
    three(chain)
    user = chain.users[0]
    mine, _ = chain.jobs(user).create_job(CODEHASH, b"my input", 1000)
    theirs, _ = chain.jobs(chain.users[2]).create_job(OTHER_CODEHASH, b"my input", 1000)
    enclave = mine.selected_executors[0]
    owner = chain.jobs().executor(enclave).owner  # type: ignore[union-attr]
    before = (chain.balance(user.address), chain.balance(owner))
    forged = {
        "other code": {"codehash": OTHER_CODEHASH},  # the other job's code, on my input
        "other input": {"input_hash": Web3.keccak(b"their input")},
        "both": {"codehash": OTHER_CODEHASH, "input_hash": Web3.keccak(b"their input")},
    }
    for what, terms in forged.items():
        signed = chain.output(enclave, mine.job_id, b"pwned", **terms)  # type: ignore[arg-type]
        # The signature is a correct one, by a selected executor, for that code and input.
        assert signed.signer(chain.jobs().domain()) == enclave, what
        with pytest.raises(ContractRevertError) as exc:
            chain.jobs(chain.users[1]).submit_output(signed)
        assert reason(exc) == ServerlessRevert.NOT_SELECTED.value, what
        assert "code and input" in reason(exc)
        assert "JSON-RPC node" in (exc.value.hint or "")
    # A correct output of the other job (its code, its id) does not pay for mine either.
    for_theirs = chain.output(theirs.selected_executors[0], theirs.job_id, b"theirs")
    assert for_theirs.codehash == bytes.fromhex(OTHER_CODEHASH[2:])
    with pytest.raises(ContractRevertError) as exc:
        chain.jobs(chain.users[1]).submit_output(replace(for_theirs, job_id=mine.job_id))
    assert reason(exc) == ServerlessRevert.NOT_SELECTED.value
    job = chain.jobs().job(mine.job_id)
    assert job is not None
    assert (job.output_count, job.escrow) == (0, job.deposit)
    assert (chain.balance(user.address), chain.balance(owner)) == before
    assert chain.jobs().responses(mine.block_number, job_id=mine.job_id) == []
    # The same executor's output over the job's own code and input is accepted.
    chain.jobs(chain.users[1]).submit_output(chain.output(enclave, mine.job_id, b"honest"))
    responses = chain.jobs().responses(mine.block_number, job_id=mine.job_id)
    assert [(r.executor, r.output) for r in responses] == [(enclave, b"honest")]


def test_an_honest_job_pays_as_before_with_its_code_and_input_signed(
    chain: ServerlessChain,
) -> None:
    """Executors that sign the code and input the user asked for (hashed here independently of
    the contract's record) are paid the usual shares, and the user refunded the rest."""
    three(chain)
    user = chain.users[0]
    body = b'{"n": 42, "padding": "' + b"x" * 300 + b'"}'
    before = chain.balance(user.address)
    request, _ = chain.jobs(user).create_job(CODEHASH, body, 2000)
    record = chain.jobs().job(request.job_id)
    assert record is not None
    assert record.input_hash == Web3.keccak(body).to_0x_hex()
    assert record.to_json()["input_hash"] == record.input_hash
    owners = {e.enclave: e.owner for e in chain.jobs().executors()}
    paid = []
    for i, enclave in enumerate(request.selected_executors):
        owner_before = chain.balance(owners[enclave])
        signed = sign_output(
            chain.keys[enclave],
            chain.jobs().domain(),
            job_id=request.job_id,
            codehash=bytes.fromhex(CODEHASH[2:]),
            input_hash=bytes(Web3.keccak(body)),
            output=b"answer",
            total_time=300 + 50 * i,
            error_code=0,
            sign_timestamp=chain.now(),
        )
        chain.jobs(chain.users[1]).submit_output(signed)
        paid.append(chain.balance(owners[enclave]) - owner_before)
    cost = 300 * PARAMS.fee_per_ms
    assert paid == payout_shares(cost, 3)
    assert chain.balance(user.address) == before - cost
    closed = chain.jobs().job(request.job_id)
    assert closed is not None
    assert closed.closed
    assert closed.escrow == 0
    # What a user reads back to check an output carries the code and input it was signed over.
    response = chain.jobs().responses(request.block_number, job_id=request.job_id)[0]
    again = chain.jobs().signed_output(response.tx_hash)
    assert (again.codehash, again.input_hash) == (
        bytes.fromhex(CODEHASH[2:]),
        bytes(Web3.keccak(body)),
    )
    assert again.signer(chain.jobs().domain()) == response.executor


def test_the_relay_takes_an_answer_only_for_its_users_code_and_input() -> None:
    """The Relay's ``JobResponse`` binds the code and input the same way: the claiming gateway's
    correct signature over other code or input is refused, its honest one pays as before."""
    devnet = Devnet(chain_id=31337)
    w3 = devnet.web3()
    admin, user, owner = (a.local_account for a in devnet.accounts[:3])
    token = TokenClient.deploy(w3, admin)
    params = RelayParams(fee_per_ms=5, gateway_fee=1000)
    relay = ServerlessRelayClient.deploy(w3, admin, token=token.address, params=params)
    token.mint(user.address, 10**9)
    TokenClient(w3, token.address, account=user).approve(relay.address, 2**256 - 1)
    gateway = Secp256k1PrivateKey.generate()
    relay.register_gateway(gateway.public_key.checksum_address, owner.address)
    body = b"the user's input"
    job = ServerlessRelayClient(w3, relay.address, account=user).relay_job(CODEHASH, body, 1000)
    fund_gas(w3, admin, gateway.public_key.checksum_address, 10**18)
    as_gateway = ServerlessRelayClient(w3, relay.address, account=Account.from_key(gateway.secret))
    as_gateway.claim(job.job_id)

    def answer(codehash: str, code_inputs: bytes) -> SignedOutput:
        return sign_job_response(
            gateway,
            31337,
            relay.address,
            job_id=job.job_id,
            codehash=codehash,
            input_hash=Web3.keccak(code_inputs),
            output=b"out",
            total_time=200,
            error_code=0,
            sign_timestamp=int(time.time()),
        )

    before = token.balance(user.address)
    for codehash, code_inputs in (
        (OTHER_CODEHASH, body),
        (CODEHASH, b"other"),
        (OTHER_CODEHASH, b""),
    ):
        with pytest.raises(ContractRevertError) as exc:
            as_gateway.respond(answer(codehash, code_inputs))
        assert exc.value.reason == RelayRevert.WRONG_GATEWAY.value
        assert "code and input" in exc.value.reason
        assert "JSON-RPC node" in (exc.value.hint or "")
    assert token.balance(user.address) == before
    as_gateway.respond(answer(CODEHASH, body))
    paid = 200 * params.fee_per_ms + params.gateway_fee
    assert token.balance(owner.address) == paid
    assert token.balance(user.address) == before + job.deposit - paid
    assert token.balance(relay.address) == 0


# What a deployment by an older reef answers: the output types before they bound code and input.
OLD_TYPES = """
# pragma version 0.4.3
SUBMIT_OUTPUT_TYPEHASH: public(constant(bytes32)) = keccak256(
    "SubmitOutput(uint256 jobId,bytes output,uint256 totalTime,uint8 errorCode,uint256 signTimestamp)"
)
JOB_RESPONSE_TYPEHASH: public(constant(bytes32)) = keccak256(
    "JobResponse(uint256 jobId,bytes output,uint256 totalTime,uint8 errorCode,uint256 signTimestamp)"
)
"""


def test_a_deployment_checking_the_old_output_type_is_refused_up_front(
    chain: ServerlessChain,
) -> None:
    """Its executors would sign outputs it refuses (and be slashed for the silence): reading
    its domain, which executors and users do first, says so instead."""
    from reef.chain._tx import Transactor

    out = vyper.compile_code(OLD_TYPES, output_formats=["abi", "bytecode"])
    factory = chain.w3.eth.contract(abi=out["abi"], bytecode=out["bytecode"])
    _, receipt = Transactor(chain.w3, chain.deployer).send(factory.constructor(), "deploy")
    old = receipt["contractAddress"]
    with pytest.raises(ChainError, match="another type than reef signs") as exc:
        ServerlessJobsClient(chain.w3, old).domain()
    assert "--fresh" in (exc.value.hint or "")
    with pytest.raises(ChainError, match="another type than reef signs"):
        ServerlessRelayClient(chain.w3, old).check_response_type()
    assert chain.jobs().domain().jobs_contract == chain.jobs_address  # this reef's: accepted


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
