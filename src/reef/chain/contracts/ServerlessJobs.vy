# pragma version 0.4.3
# pragma evm-version shanghai
"""
@title reef serverless executors and jobs
@license Apache-2.0
@notice The chain executors are staked on. Executors are attested enclaves: each registers with
        the attestation verifier's signed statement about its enclave key (EIP-712
        `marlin.oyster.AttestationVerifier`, checked here with one ecrecover), a signature by
        that enclave key over its owner, job capacity and env, and a stake in the token.
        A job pays `deadline x FEE_PER_MS` up front; N executors (NUM_SELECT) are picked at
        random, weighted by stake, without replacement, from those available; each runs the
        function and submits its output signed with its enclave key (EIP-712 `SubmitOutput` in
        the domain {name "reef.serverless.Jobs", version "1", chainId, verifyingContract: this
        contract}, so a signature never replays on another deployment or chain), over the job's
        codehash and the keccak256 of its input as this contract holds them, so the signature
        says which code ran on which input.
        Money (token base units), with C = executionTime x FEE_PER_MS where executionTime is
        the first output's totalTime capped at the deadline:
        - first output: the job owner is refunded deposit - C at once;
        - the k-th output (k < N) earns C x 2(N-k+1) / (N(N+1)), the N-th the rest of C, so the
          first answer earns most (1/2, 1/3, 1/6 for N = 3);
        - after deadline + EXECUTION_BUFFER anyone may call slashOnExecutionTimeout: every
          selected executor that did not answer loses SLASH_BIPS of its stake to the job owner,
          and what is left of the job's escrow (the unearned shares, or the whole deposit when
          nobody answered) goes back to the job owner.
        The contract always holds exactly the executors' stakes plus the open jobs' escrows.
@dev    Differences from Oyster (reference oyster_serverless.md §15): the output domain is bound
        to the chain and contract; the signed output binds the code and input that ran
        (`SubmitOutput(uint256 jobId,bytes32 codehash,bytes32 inputHash,bytes output,uint256
        totalTime,uint8 errorCode,uint256 signTimestamp)`, Oyster's type has neither): an
        enclave learns a job's codehash and input from its host's JSON-RPC node, and a host whose
        node forged them would otherwise have its own enclave run the host's code and get that
        output accepted and paid for another user's job. createJob stores inputHash =
        keccak256(codeInputs) beside the codehash (one slot), and submitOutput rebuilds the
        digest from the stored job, so a signature over other code or input recovers to no
        selected executor and is refused. Registration binds the owner with the enclave's
        signature; unearned shares and slashed stake go to the job owner, not to pools; the
        callback has a gas limit the submitter must provide.
"""

from ethereum.ercs import IERC20

MAX_EXECUTORS: constant(uint256) = 64
MAX_SELECT: constant(uint256) = 6
MAX_INPUT: constant(uint256) = 20480
MAX_OUTPUT: constant(uint256) = 20480
MAX_USER_DATA: constant(uint256) = 1024
MAX_ERROR_CODE: constant(uint8) = 6
MAX_CALLBACK_GAS: public(constant(uint256)) = 2000000
BIPS: constant(uint256) = 10000
HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168

DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
VERIFIER_DOMAIN_TYPEHASH: constant(bytes32) = keccak256("EIP712Domain(string name,string version)")
ATTESTATION_TYPEHASH: constant(bytes32) = keccak256(
    "Attestation(bytes32 imageId,uint64 timestampMs,bytes publicKey,bytes userData)"
)
REGISTER_TYPEHASH: public(constant(bytes32)) = keccak256(
    "Register(address owner,uint256 jobCapacity,uint8 env,uint256 signTimestamp)"
)
SUBMIT_OUTPUT_TYPEHASH: public(constant(bytes32)) = keccak256(
    "SubmitOutput(uint256 jobId,bytes32 codehash,bytes32 inputHash,bytes output,uint256 totalTime,uint8 errorCode,uint256 signTimestamp)"
)
CALLBACK_SELECTOR: constant(Bytes[4]) = method_id("oysterResultCall(uint256,bytes,uint8,uint256)")

struct Executor:
    owner: address
    stake: uint256
    jobCapacity: uint256
    activeJobs: uint256
    env: uint8
    imageId: bytes32
    draining: bool
    registeredAt: uint256

struct Job:
    owner: address
    env: uint8
    codehash: bytes32
    inputHash: bytes32
    deadline: uint256
    startTime: uint256
    deposit: uint256
    escrow: uint256
    executionTime: uint256
    outputCount: uint8
    selected: DynArray[address, MAX_SELECT]
    submittedMask: uint256
    callback: address
    callbackGasLimit: uint256
    closed: bool

event ImageWhitelisted:
    imageId: indexed(bytes32)

event ImageRevoked:
    imageId: indexed(bytes32)

event VerifierUpdated:
    verifier: indexed(address)

event ExecutorRegistered:
    enclave: indexed(address)
    owner: indexed(address)
    imageId: bytes32
    stake: uint256
    jobCapacity: uint256
    env: uint8

event ExecutorStakeAdded:
    enclave: indexed(address)
    amount: uint256

event ExecutorDrained:
    enclave: indexed(address)

event ExecutorRevived:
    enclave: indexed(address)

event ExecutorDeregistered:
    enclave: indexed(address)
    stakeReturned: uint256

event JobCreated:
    jobId: indexed(uint256)
    env: indexed(uint8)
    owner: indexed(address)
    codehash: bytes32
    codeInputs: Bytes[MAX_INPUT]
    deadline: uint256
    deposit: uint256
    selectedExecutors: DynArray[address, MAX_SELECT]

event JobResponded:
    jobId: indexed(uint256)
    executor: indexed(address)
    output: Bytes[MAX_OUTPUT]
    totalTime: uint256
    errorCode: uint8
    outputCount: uint8
    payment: uint256

event JobRefunded:
    jobId: indexed(uint256)
    owner: indexed(address)
    amount: uint256

event JobResultCallbackCalled:
    jobId: indexed(uint256)
    success: bool

event SlashedOnExecutionTimeout:
    jobId: indexed(uint256)
    enclave: indexed(address)
    amount: uint256

event JobClosed:
    jobId: indexed(uint256)
    outputCount: uint8

TOKEN: public(immutable(address))
FEE_PER_MS: public(immutable(uint256))
MIN_STAKE: public(immutable(uint256))
SLASH_BIPS: public(immutable(uint256))
EXECUTION_BUFFER: public(immutable(uint256))
ATTESTATION_MAX_AGE: public(immutable(uint256))
SIGN_MAX_AGE: public(immutable(uint256))
NUM_SELECT: public(immutable(uint256))
MIN_DEADLINE: public(immutable(uint256))
MAX_DEADLINE: public(immutable(uint256))
VERIFIER_DOMAIN_SEPARATOR: immutable(bytes32)

admin: public(address)
verifier: public(address)
images: public(HashMap[bytes32, bool])
executors: public(HashMap[address, Executor])
executorList: public(DynArray[address, MAX_EXECUTORS])
jobs: HashMap[uint256, Job]
jobCount: public(uint256)


@deploy
def __init__(
    _token: address,
    _verifier: address,
    _feePerMs: uint256,
    _minStake: uint256,
    _slashBips: uint256,
    _executionBuffer: uint256,
    _attestationMaxAge: uint256,
    _signMaxAge: uint256,
    _numSelect: uint256,
    _minDeadline: uint256,
    _maxDeadline: uint256,
):
    assert _token != empty(address), "the token address must not be zero"
    assert _minStake >= 1, "the minimum stake must be at least 1 base unit"
    assert _slashBips <= BIPS, "the slash share must be at most 10000 bips"
    assert _numSelect >= 1 and _numSelect <= MAX_SELECT, "a job selects 1 to 6 executors"
    assert _minDeadline >= 1 and _minDeadline <= _maxDeadline, "the deadline bounds are invalid"
    assert _maxDeadline <= 3600000, "the longest deadline is one hour"
    TOKEN = _token
    FEE_PER_MS = _feePerMs
    MIN_STAKE = _minStake
    SLASH_BIPS = _slashBips
    EXECUTION_BUFFER = _executionBuffer
    ATTESTATION_MAX_AGE = _attestationMaxAge
    SIGN_MAX_AGE = _signMaxAge
    NUM_SELECT = _numSelect
    MIN_DEADLINE = _minDeadline
    MAX_DEADLINE = _maxDeadline
    VERIFIER_DOMAIN_SEPARATOR = keccak256(
        abi_encode(
            VERIFIER_DOMAIN_TYPEHASH,
            keccak256("marlin.oyster.AttestationVerifier"),
            keccak256("1"),
        )
    )
    self.admin = msg.sender
    self.verifier = _verifier
    log VerifierUpdated(verifier=_verifier)


# ---- signatures ----


@pure
@internal
def _recover(_digest: bytes32, _signature: Bytes[65]) -> address:
    assert len(_signature) == 65, "a signature is 65 bytes (r || s || v)"
    r: uint256 = extract32(_signature, 0, output_type=uint256)
    s: uint256 = extract32(_signature, 32, output_type=uint256)
    v: uint256 = convert(slice(_signature, 64, 1), uint256)
    assert v == 27 or v == 28, "the signature's v must be 27 or 28"
    assert s <= HALF_N, "the signature is not canonical (high s)"
    signer: address = ecrecover(_digest, v, r, s)
    assert signer != empty(address), "the signature is invalid"
    return signer


@view
@external
def domainSeparator() -> bytes32:
    return self._domainSeparator()


@view
@internal
def _domainSeparator() -> bytes32:
    return keccak256(
        abi_encode(
            DOMAIN_TYPEHASH,
            keccak256("reef.serverless.Jobs"),
            keccak256("1"),
            chain.id,
            self,
        )
    )


@view
@internal
def _fresh(_signTimestamp: uint256):
    assert block.timestamp <= _signTimestamp + SIGN_MAX_AGE, "the signature is too old"
    assert _signTimestamp <= block.timestamp + SIGN_MAX_AGE, "the signature is from the future"


# ---- administration ----


@external
def whitelistImage(_imageId: bytes32):
    assert msg.sender == self.admin, "only the admin can whitelist images"
    self.images[_imageId] = True
    log ImageWhitelisted(imageId=_imageId)


@external
def revokeImage(_imageId: bytes32):
    assert msg.sender == self.admin, "only the admin can revoke images"
    self.images[_imageId] = False
    log ImageRevoked(imageId=_imageId)


@external
def setVerifier(_verifier: address):
    assert msg.sender == self.admin, "only the admin can change the verifier"
    self.verifier = _verifier
    log VerifierUpdated(verifier=_verifier)


@external
def transferAdmin(_admin: address):
    assert msg.sender == self.admin, "only the admin can transfer the admin role"
    assert _admin != empty(address), "the new admin cannot be the zero address"
    self.admin = _admin


# ---- executors ----


@external
@nonreentrant
def registerExecutor(
    _statementSignature: Bytes[65],
    _imageId: bytes32,
    _timestampMs: uint64,
    _publicKey: Bytes[64],
    _userData: Bytes[MAX_USER_DATA],
    _jobCapacity: uint256,
    _env: uint8,
    _signTimestamp: uint256,
    _registerSignature: Bytes[65],
    _stake: uint256,
) -> address:
    assert self.images[_imageId], "the enclave image is not whitelisted"
    assert len(_publicKey) == 64, "the enclave public key must be 64 bytes (x || y)"
    assert (
        convert(_timestampMs, uint256) // 1000 + ATTESTATION_MAX_AGE >= block.timestamp
    ), "the attestation is too old"
    statement: bytes32 = keccak256(
        abi_encode(
            ATTESTATION_TYPEHASH,
            _imageId,
            _timestampMs,
            keccak256(_publicKey),
            keccak256(_userData),
        )
    )
    digest: bytes32 = keccak256(concat(x"1901", VERIFIER_DOMAIN_SEPARATOR, statement))
    assert (
        self._recover(digest, _statementSignature) == self.verifier
    ), "the attestation statement is not signed by the verifier"
    enclave: address = convert(convert(slice(keccak256(_publicKey), 12, 20), bytes20), address)
    self._fresh(_signTimestamp)
    register: bytes32 = keccak256(
        abi_encode(REGISTER_TYPEHASH, msg.sender, _jobCapacity, _env, _signTimestamp)
    )
    assert (
        self._recover(
            keccak256(concat(x"1901", self._domainSeparator(), register)), _registerSignature
        )
        == enclave
    ), "the registration is not signed by the attested enclave key"
    assert self.executors[enclave].registeredAt == 0, "the executor is already registered"
    assert len(self.executorList) < MAX_EXECUTORS, "the executor list is full"
    assert _jobCapacity >= 1, "the job capacity must be at least 1"
    assert _stake >= MIN_STAKE, "the stake is below the minimum"
    self.executors[enclave] = Executor(
        owner=msg.sender,
        stake=_stake,
        jobCapacity=_jobCapacity,
        activeJobs=0,
        env=_env,
        imageId=_imageId,
        draining=False,
        registeredAt=block.timestamp,
    )
    self.executorList.append(enclave)
    self._pull(msg.sender, _stake)
    log ExecutorRegistered(
        enclave=enclave,
        owner=msg.sender,
        imageId=_imageId,
        stake=_stake,
        jobCapacity=_jobCapacity,
        env=_env,
    )
    return enclave


@view
@internal
def _requireExecutorOwner(_enclave: address):
    assert self.executors[_enclave].registeredAt != 0, "executor not found"
    assert self.executors[_enclave].owner == msg.sender, "only the executor's owner can do this"


@external
@nonreentrant
def addStake(_enclave: address, _amount: uint256):
    self._requireExecutorOwner(_enclave)
    self.executors[_enclave].stake += _amount
    self._pull(msg.sender, _amount)
    log ExecutorStakeAdded(enclave=_enclave, amount=_amount)


@external
def drainExecutor(_enclave: address):
    self._requireExecutorOwner(_enclave)
    assert not self.executors[_enclave].draining, "the executor is already draining"
    self.executors[_enclave].draining = True
    log ExecutorDrained(enclave=_enclave)


@external
def reviveExecutor(_enclave: address):
    self._requireExecutorOwner(_enclave)
    assert self.executors[_enclave].draining, "the executor is not draining"
    self.executors[_enclave].draining = False
    log ExecutorRevived(enclave=_enclave)


@external
@nonreentrant
def deregisterExecutor(_enclave: address):
    self._requireExecutorOwner(_enclave)
    assert self.executors[_enclave].draining, "drain the executor before deregistering it"
    assert self.executors[_enclave].activeJobs == 0, "the executor still has active jobs"
    stake: uint256 = self.executors[_enclave].stake
    self.executors[_enclave] = empty(Executor)
    n: uint256 = len(self.executorList)
    for i: uint256 in range(MAX_EXECUTORS):
        if i == n:
            break
        if self.executorList[i] == _enclave:
            self.executorList[i] = self.executorList[n - 1]
            self.executorList.pop()
            break
    self._push(msg.sender, stake)
    log ExecutorDeregistered(enclave=_enclave, stakeReturned=stake)


@view
@internal
def _available(_e: Executor, _env: uint8) -> bool:
    return (
        _e.registeredAt != 0
        and not _e.draining
        and _e.activeJobs < _e.jobCapacity
        and _e.env == _env
        and _e.stake >= MIN_STAKE
        and self.images[_e.imageId]
    )


@view
@external
def executorCount() -> uint256:
    return len(self.executorList)


@view
@external
def availableExecutors(_env: uint8) -> uint256:
    count: uint256 = 0
    for enclave: address in self.executorList:
        if self._available(self.executors[enclave], _env):
            count += 1
    return count


# ---- jobs ----


@view
@internal
def _select(_seed: bytes32, _env: uint8) -> DynArray[address, MAX_SELECT]:
    candidates: DynArray[address, MAX_EXECUTORS] = []
    weights: DynArray[uint256, MAX_EXECUTORS] = []
    total: uint256 = 0
    for enclave: address in self.executorList:
        e: Executor = self.executors[enclave]
        if self._available(e, _env):
            candidates.append(enclave)
            weights.append(e.stake)
            total += e.stake
    assert len(candidates) >= NUM_SELECT, "fewer executors are available than a job needs"
    chosen: DynArray[address, MAX_SELECT] = []
    n: uint256 = len(candidates)
    for i: uint256 in range(MAX_SELECT):
        if i == NUM_SELECT:
            break
        r: uint256 = convert(keccak256(concat(_seed, convert(i, bytes32))), uint256) % total
        for j: uint256 in range(MAX_EXECUTORS):
            if j == n:
                break
            w: uint256 = weights[j]
            if r < w:
                chosen.append(candidates[j])
                total -= w
                weights[j] = 0
                break
            r -= w
    return chosen


@external
@nonreentrant
def createJob(
    _env: uint8,
    _codehash: bytes32,
    _codeInputs: Bytes[MAX_INPUT],
    _deadline: uint256,
    _callback: address,
    _callbackGasLimit: uint256,
) -> uint256:
    assert _deadline >= MIN_DEADLINE, "the deadline is shorter than the minimum"
    assert _deadline <= MAX_DEADLINE, "the deadline is longer than the maximum"
    assert _callbackGasLimit <= MAX_CALLBACK_GAS, "the callback gas limit is above the maximum"
    jobId: uint256 = self.jobCount + 1
    self.jobCount = jobId
    seed: bytes32 = keccak256(concat(blockhash(block.number - 1), convert(jobId, bytes32)))
    selected: DynArray[address, MAX_SELECT] = self._select(seed, _env)
    for enclave: address in selected:
        self.executors[enclave].activeJobs += 1
    deposit: uint256 = _deadline * FEE_PER_MS
    self.jobs[jobId] = Job(
        owner=msg.sender,
        env=_env,
        codehash=_codehash,
        inputHash=keccak256(_codeInputs),
        deadline=_deadline,
        startTime=block.timestamp,
        deposit=deposit,
        escrow=deposit,
        executionTime=0,
        outputCount=0,
        selected=selected,
        submittedMask=0,
        callback=_callback,
        callbackGasLimit=_callbackGasLimit,
        closed=False,
    )
    self._pull(msg.sender, deposit)
    log JobCreated(
        jobId=jobId,
        env=_env,
        owner=msg.sender,
        codehash=_codehash,
        codeInputs=_codeInputs,
        deadline=_deadline,
        deposit=deposit,
        selectedExecutors=selected,
    )
    return jobId


@view
@internal
def _requireOpen(_jobId: uint256):
    assert self.jobs[_jobId].owner != empty(address), "job not found"
    assert not self.jobs[_jobId].closed, "the job is closed"


@external
@nonreentrant
def submitOutput(
    _signature: Bytes[65],
    _jobId: uint256,
    _output: Bytes[MAX_OUTPUT],
    _totalTime: uint256,
    _errorCode: uint8,
    _signTimestamp: uint256,
):
    self._requireOpen(_jobId)
    job: Job = self.jobs[_jobId]
    assert (
        block.timestamp * 1000 <= job.startTime * 1000 + job.deadline + EXECUTION_BUFFER * 1000
    ), "the execution time is over"
    assert _errorCode <= MAX_ERROR_CODE, "unknown error code"
    self._fresh(_signTimestamp)
    # The digest is rebuilt from the code and input this contract stored for the job, not from
    # anything the submitter or the executor's node says: a signature over other code or input
    # recovers to an address that is no selected executor.
    message: bytes32 = keccak256(
        abi_encode(
            SUBMIT_OUTPUT_TYPEHASH,
            _jobId,
            job.codehash,
            job.inputHash,
            keccak256(_output),
            _totalTime,
            _errorCode,
            _signTimestamp,
        )
    )
    signer: address = self._recover(
        keccak256(concat(x"1901", self._domainSeparator(), message)), _signature
    )
    index: uint256 = MAX_SELECT
    for i: uint256 in range(MAX_SELECT):
        if i == len(job.selected):
            break
        if job.selected[i] == signer:
            index = i
            break
    assert index != MAX_SELECT, "the signer is not a selected executor of this job, or the output is not for this job's code and input"
    assert job.submittedMask & (1 << index) == 0, "the executor already submitted an output"
    assert self.images[self.executors[signer].imageId], "the executor's image is not whitelisted"
    n: uint256 = len(job.selected)
    count: uint256 = convert(job.outputCount, uint256) + 1
    execution: uint256 = job.executionTime
    refund: uint256 = 0
    if count == 1:
        execution = min(_totalTime, job.deadline)
        cost: uint256 = execution * FEE_PER_MS
        refund = job.escrow - cost
        job.escrow = cost
        job.executionTime = execution
    payment: uint256 = 0
    if count == n:
        payment = job.escrow
    else:
        payment = execution * FEE_PER_MS * 2 * (n - count + 1) // (n * (n + 1))
    job.escrow -= payment
    job.outputCount = convert(count, uint8)
    job.submittedMask |= 1 << index
    if count == n:
        job.closed = True
    self.jobs[_jobId] = job
    self.executors[signer].activeJobs -= 1
    self._push(job.owner, refund)
    self._push(self.executors[signer].owner, payment)
    log JobResponded(
        jobId=_jobId,
        executor=signer,
        output=_output,
        totalTime=_totalTime,
        errorCode=_errorCode,
        outputCount=convert(count, uint8),
        payment=payment,
    )
    if refund != 0:
        log JobRefunded(jobId=_jobId, owner=job.owner, amount=refund)
    if count == n:
        log JobClosed(jobId=_jobId, outputCount=convert(count, uint8))
    if count == 1 and job.callback != empty(address):
        # 63/64 of the remaining gas is passed on: the submitter must leave enough for the
        # callback's full limit, or it could make every callback fail by sending too little.
        assert msg.gas >= job.callbackGasLimit + job.callbackGasLimit // 63 + 10000, "not enough gas left for the callback"
        success: bool = raw_call(
            job.callback,
            abi_encode(_jobId, _output, _errorCode, execution, method_id=CALLBACK_SELECTOR),
            gas=job.callbackGasLimit,
            revert_on_failure=False,
        )
        log JobResultCallbackCalled(jobId=_jobId, success=success)


@external
@nonreentrant
def slashOnExecutionTimeout(_jobId: uint256):
    self._requireOpen(_jobId)
    job: Job = self.jobs[_jobId]
    assert (
        block.timestamp * 1000 > job.startTime * 1000 + job.deadline + EXECUTION_BUFFER * 1000
    ), "the execution time is not over yet"
    slashed: uint256 = 0
    for i: uint256 in range(MAX_SELECT):
        if i == len(job.selected):
            break
        if job.submittedMask & (1 << i) != 0:
            continue
        enclave: address = job.selected[i]
        amount: uint256 = self.executors[enclave].stake * SLASH_BIPS // BIPS
        self.executors[enclave].stake -= amount
        self.executors[enclave].activeJobs -= 1
        slashed += amount
        log SlashedOnExecutionTimeout(jobId=_jobId, enclave=enclave, amount=amount)
    refund: uint256 = job.escrow
    self.jobs[_jobId].escrow = 0
    self.jobs[_jobId].closed = True
    self._push(job.owner, refund + slashed)
    if refund != 0:
        log JobRefunded(jobId=_jobId, owner=job.owner, amount=refund)
    log JobClosed(jobId=_jobId, outputCount=job.outputCount)


@view
@external
def jobInfo(_jobId: uint256) -> Job:
    return self.jobs[_jobId]


# ---- tokens ----


@internal
def _pull(_from: address, _amount: uint256):
    if _amount != 0:
        assert extcall IERC20(TOKEN).transferFrom(
            _from, self, _amount, default_return_value=True
        ), "token transferFrom failed"


@internal
def _push(_to: address, _amount: uint256):
    if _amount != 0:
        assert extcall IERC20(TOKEN).transfer(_to, _amount, default_return_value=True), "token transfer failed"
