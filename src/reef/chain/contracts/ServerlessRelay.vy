# pragma version 0.4.3
# pragma evm-version shanghai
"""
@title reef serverless relay (the chain users pay on)
@license Apache-2.0
@notice Users on this chain ask for a function call with `relayJob`, paying its deadline at
        FEE_PER_MS plus GATEWAY_FEE up front. A gateway the admin registered picks the job up,
        runs it through the Jobs contract of the executors' chain (paying there), and answers
        with `jobResponse`, signed with its key in the EIP-712 domain {name
        "reef.serverless.Relay", version "1", chainId, verifyingContract: this contract} over
        `JobResponse(uint256 jobId,bytes32 codehash,bytes32 inputHash,bytes output,uint256
        totalTime,uint8 errorCode,uint256 signTimestamp)`, where codehash and inputHash =
        keccak256(codeInputs) are the job's as this contract stored them. The gateway's owner
        is paid totalTime x FEE_PER_MS (capped at the deadline) plus GATEWAY_FEE; the user gets
        the rest back at once, and the callback (if any) gets the output with its gas limit. A job nobody answers within OVERALL_TIMEOUT
        seconds can be cancelled by anyone: everything goes back to the user.
        Job ids carry this chain's id (chainId << 192 | n), so ids never collide across chains.
@dev    Differences from Oyster's Relay (reference oyster_serverless.md §15): the response
        domain binds chain and contract; only the gateway that claimed the job may answer it
        (`claimJob` records who relays it), not any registered gateway; and the signed response
        binds the code and input that ran (Oyster's `JobResponse` has neither): a gateway learns
        a job's codehash and input from a JSON-RPC node, and one whose node forged them would
        otherwise run other code on the executors' chain and answer this user's job with its
        output. relayJob stores the codehash and inputHash (two slots, freed at the answer or
        the cancel), and jobResponse rebuilds the digest from them, so a signature over other
        code or input recovers to another address and is refused.
"""

from ethereum.ercs import IERC20

MAX_INPUT: constant(uint256) = 20480
MAX_OUTPUT: constant(uint256) = 20480
MAX_CALLBACK_GAS: public(constant(uint256)) = 2000000
HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168
DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
JOB_RESPONSE_TYPEHASH: public(constant(bytes32)) = keccak256(
    "JobResponse(uint256 jobId,bytes32 codehash,bytes32 inputHash,bytes output,uint256 totalTime,uint8 errorCode,uint256 signTimestamp)"
)
CALLBACK_SELECTOR: constant(Bytes[4]) = method_id("oysterResultCall(uint256,bytes,uint8,uint256)")

struct RelayJob:
    owner: address
    codehash: bytes32
    inputHash: bytes32
    deadline: uint256
    deposit: uint256
    startTime: uint256
    gateway: address
    callback: address
    callbackGasLimit: uint256

event GatewayRegistered:
    gateway: indexed(address)
    owner: indexed(address)

event GatewayRemoved:
    gateway: indexed(address)

event JobRelayed:
    jobId: indexed(uint256)
    owner: indexed(address)
    codehash: bytes32
    codeInputs: Bytes[MAX_INPUT]
    deadline: uint256
    deposit: uint256
    callback: address
    callbackGasLimit: uint256

event JobClaimed:
    jobId: indexed(uint256)
    gateway: indexed(address)

event JobResponded:
    jobId: indexed(uint256)
    gateway: indexed(address)
    output: Bytes[MAX_OUTPUT]
    totalTime: uint256
    errorCode: uint8
    paid: uint256
    refunded: uint256

event JobResultCallbackCalled:
    jobId: indexed(uint256)
    success: bool

event JobCancelled:
    jobId: indexed(uint256)
    refunded: uint256

TOKEN: public(immutable(address))
FEE_PER_MS: public(immutable(uint256))
GATEWAY_FEE: public(immutable(uint256))
MIN_DEADLINE: public(immutable(uint256))
MAX_DEADLINE: public(immutable(uint256))
OVERALL_TIMEOUT: public(immutable(uint256))
SIGN_MAX_AGE: public(immutable(uint256))

admin: public(address)
gatewayOwners: public(HashMap[address, address])
jobs: public(HashMap[uint256, RelayJob])
jobCount: public(uint256)


@deploy
def __init__(
    _token: address,
    _feePerMs: uint256,
    _gatewayFee: uint256,
    _minDeadline: uint256,
    _maxDeadline: uint256,
    _overallTimeout: uint256,
    _signMaxAge: uint256,
):
    assert _token != empty(address), "the token address must not be zero"
    assert _minDeadline >= 1 and _minDeadline <= _maxDeadline, "the deadline bounds are invalid"
    assert _overallTimeout * 1000 > _maxDeadline, "the overall timeout must exceed the longest deadline"
    TOKEN = _token
    FEE_PER_MS = _feePerMs
    GATEWAY_FEE = _gatewayFee
    MIN_DEADLINE = _minDeadline
    MAX_DEADLINE = _maxDeadline
    OVERALL_TIMEOUT = _overallTimeout
    SIGN_MAX_AGE = _signMaxAge
    self.admin = msg.sender
    self.jobCount = chain.id << 192


@external
def registerGateway(_gateway: address, _owner: address):
    assert msg.sender == self.admin, "only the admin can register gateways"
    assert _owner != empty(address), "a gateway needs an owner"
    self.gatewayOwners[_gateway] = _owner
    log GatewayRegistered(gateway=_gateway, owner=_owner)


@external
def removeGateway(_gateway: address):
    assert msg.sender == self.admin, "only the admin can remove gateways"
    self.gatewayOwners[_gateway] = empty(address)
    log GatewayRemoved(gateway=_gateway)


@view
@external
def domainSeparator() -> bytes32:
    return self._domainSeparator()


@view
@internal
def _domainSeparator() -> bytes32:
    return keccak256(
        abi_encode(
            DOMAIN_TYPEHASH, keccak256("reef.serverless.Relay"), keccak256("1"), chain.id, self
        )
    )


@external
@nonreentrant
def relayJob(
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
    deposit: uint256 = _deadline * FEE_PER_MS + GATEWAY_FEE
    self.jobs[jobId] = RelayJob(
        owner=msg.sender,
        codehash=_codehash,
        inputHash=keccak256(_codeInputs),
        deadline=_deadline,
        deposit=deposit,
        startTime=block.timestamp,
        gateway=empty(address),
        callback=_callback,
        callbackGasLimit=_callbackGasLimit,
    )
    self._pull(msg.sender, deposit)
    log JobRelayed(
        jobId=jobId,
        owner=msg.sender,
        codehash=_codehash,
        codeInputs=_codeInputs,
        deadline=_deadline,
        deposit=deposit,
        callback=_callback,
        callbackGasLimit=_callbackGasLimit,
    )
    return jobId


@external
def claimJob(_jobId: uint256):
    assert self.jobs[_jobId].owner != empty(address), "job not found"
    assert self.gatewayOwners[msg.sender] != empty(address), "the sender is not a registered gateway"
    assert self.jobs[_jobId].gateway == empty(address), "the job is already claimed"
    self.jobs[_jobId].gateway = msg.sender
    log JobClaimed(jobId=_jobId, gateway=msg.sender)


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


@external
@nonreentrant
def jobResponse(
    _signature: Bytes[65],
    _jobId: uint256,
    _output: Bytes[MAX_OUTPUT],
    _totalTime: uint256,
    _errorCode: uint8,
    _signTimestamp: uint256,
):
    job: RelayJob = self.jobs[_jobId]
    assert job.owner != empty(address), "job not found"
    assert block.timestamp <= job.startTime + OVERALL_TIMEOUT, "the job timed out; it can only be cancelled"
    assert block.timestamp <= _signTimestamp + SIGN_MAX_AGE, "the signature is too old"
    assert _signTimestamp <= block.timestamp + SIGN_MAX_AGE, "the signature is from the future"
    # Rebuilt from the code and input stored for the job: a signature over other code or input
    # recovers to another address than the claiming gateway's.
    message: bytes32 = keccak256(
        abi_encode(
            JOB_RESPONSE_TYPEHASH,
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
    assert signer == job.gateway, "the response is not signed by the gateway that claimed the job, or is not for this job's code and input"
    owner: address = self.gatewayOwners[signer]
    assert owner != empty(address), "the sender is not a registered gateway"
    paid: uint256 = min(_totalTime, job.deadline) * FEE_PER_MS + GATEWAY_FEE
    refund: uint256 = job.deposit - paid
    self.jobs[_jobId] = empty(RelayJob)
    self._push(owner, paid)
    self._push(job.owner, refund)
    log JobResponded(
        jobId=_jobId,
        gateway=signer,
        output=_output,
        totalTime=_totalTime,
        errorCode=_errorCode,
        paid=paid,
        refunded=refund,
    )
    if job.callback != empty(address):
        assert msg.gas >= job.callbackGasLimit + job.callbackGasLimit // 63 + 10000, "not enough gas left for the callback"
        success: bool = raw_call(
            job.callback,
            abi_encode(_jobId, _output, _errorCode, _totalTime, method_id=CALLBACK_SELECTOR),
            gas=job.callbackGasLimit,
            revert_on_failure=False,
        )
        log JobResultCallbackCalled(jobId=_jobId, success=success)


@external
@nonreentrant
def jobCancel(_jobId: uint256):
    job: RelayJob = self.jobs[_jobId]
    assert job.owner != empty(address), "job not found"
    assert block.timestamp > job.startTime + OVERALL_TIMEOUT, "the job has not timed out yet"
    self.jobs[_jobId] = empty(RelayJob)
    self._push(job.owner, job.deposit)
    log JobCancelled(jobId=_jobId, refunded=job.deposit)


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
