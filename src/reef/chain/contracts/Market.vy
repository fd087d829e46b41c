# pragma version 0.4.3
# pragma evm-version shanghai
"""
@title reef compute market (MarketV1-compatible)
@license Apache-2.0
@notice Providers list a control-plane URL; users open jobs that pay a provider per second out
        of a prepaid token balance. Function names, event names, event fields and their
        indexing, and the getters follow Marlin's MarketV1 (lock-based, as deployed on
        Arbitrum with `string metadata`), so an indexer or CLI written for MarketV1's ABI reads
        this contract unchanged.

        Units: `rate` is token base units x 10**12 per second; `balance` is token base units.
        Settlement charges ceil(rate * seconds / 10**12), capped at the balance.

        Deliberate differences from MarketV1 (docs/contracts.md explains each):
        - a job may only be opened for a registered provider (a job whose provider is the zero
          address could never be settled, so its funds would be stuck);
        - every job operation on an unknown job reverts with "job not found" (MarketV1 settles a
          non-existent job by transferring 0 tokens to the zero address);
        - rates are bounded by MAX_RATE (2**128-1) so `rate * seconds` can never overflow and
          block settlement (and with it withdraw and close) forever;
        - revert reasons are strings a user can act on, not custom errors;
        - not upgradeable and without an admin: the token and the rate lock wait time are fixed
          at deployment.
@dev    Checks-effects-interactions throughout: state is written before any token transfer.
"""

from ethereum.ercs import IERC20

MAX_METADATA: constant(uint256) = 32768
MAX_CP: constant(uint256) = 1024

EXTRA_DECIMALS: public(constant(uint256)) = 12
RATE_LOCK_SELECTOR: public(constant(bytes32)) = keccak256("RATE_LOCK")
MAX_RATE: public(constant(uint256)) = 2**128 - 1
# 10**EXTRA_DECIMALS, spelled out because it is used in every settlement.
SCALE: constant(uint256) = 10**12


struct Job:
    metadata: String[MAX_METADATA]
    owner: address
    provider: address
    rate: uint256
    balance: uint256
    lastSettled: uint256


struct Lock:
    unlockTime: uint256
    iValue: uint256


# ---- events (names, field order, types and indexing exactly as MarketV1's deployed ABI) ----

event TokenUpdated:
    oldToken: indexed(address)
    newToken: indexed(address)

event LockWaitTimeUpdated:
    selector: indexed(bytes32)
    prevLockTime: uint256
    updatedLockTime: uint256

event LockCreated:
    selector: indexed(bytes32)
    key: indexed(bytes32)
    iValue: uint256
    unlockTime: uint256

event LockDeleted:
    selector: indexed(bytes32)
    key: indexed(bytes32)
    iValue: uint256

event ProviderAdded:
    provider: indexed(address)
    cp: String[MAX_CP]

event ProviderRemoved:
    provider: indexed(address)

event ProviderUpdatedWithCp:
    provider: indexed(address)
    newCp: String[MAX_CP]

event JobOpened:
    job: indexed(bytes32)
    metadata: String[MAX_METADATA]
    owner: indexed(address)
    provider: indexed(address)
    rate: uint256
    balance: uint256
    timestamp: uint256

event JobSettled:
    job: indexed(bytes32)
    amount: uint256
    timestamp: uint256

event JobClosed:
    job: indexed(bytes32)

event JobDeposited:
    job: indexed(bytes32)
    _from: indexed(address)
    amount: uint256

event JobWithdrew:
    job: indexed(bytes32)
    to: indexed(address)
    amount: uint256

event JobReviseRateInitiated:
    job: indexed(bytes32)
    newRate: uint256

event JobReviseRateCancelled:
    job: indexed(bytes32)

event JobReviseRateFinalized:
    job: indexed(bytes32)
    newRate: uint256

event JobMetadataUpdated:
    job: indexed(bytes32)
    metadata: String[MAX_METADATA]


# ---- state ----

token: public(IERC20)
jobIndex: public(uint256)
lockWaitTime: public(HashMap[bytes32, uint256])

_providers: HashMap[address, String[MAX_CP]]
_jobs: HashMap[bytes32, Job]
_locks: HashMap[bytes32, Lock]


@deploy
def __init__(_token: IERC20, _rateLockWaitTime: uint256):
    assert _token.address != empty(address), "the token address must not be zero"
    # A bound keeps rate * lockWaitTime (the withdrawal reserve) far from overflow.
    assert _rateLockWaitTime < 2**64, "the rate lock wait time must be below 2**64 seconds"
    self.token = _token
    log TokenUpdated(oldToken=empty(address), newToken=_token.address)
    self.lockWaitTime[RATE_LOCK_SELECTOR] = _rateLockWaitTime
    log LockWaitTimeUpdated(
        selector=RATE_LOCK_SELECTOR, prevLockTime=0, updatedLockTime=_rateLockWaitTime
    )


# ---- providers ----

@view
@external
def providers(_provider: address) -> String[MAX_CP]:
    return self._providers[_provider]


@external
def providerAdd(_cp: String[MAX_CP]):
    assert len(self._providers[msg.sender]) == 0, "provider already registered; use providerUpdateWithCp to change its control-plane URL"
    assert len(_cp) != 0, "the control-plane URL must not be empty"
    self._providers[msg.sender] = _cp
    log ProviderAdded(provider=msg.sender, cp=_cp)


@external
def providerRemove():
    assert len(self._providers[msg.sender]) != 0, "the caller is not a registered provider"
    self._providers[msg.sender] = empty(String[MAX_CP])
    log ProviderRemoved(provider=msg.sender)


@external
def providerUpdateWithCp(_cp: String[MAX_CP]):
    assert len(self._providers[msg.sender]) != 0, "the caller is not a registered provider"
    assert len(_cp) != 0, "the control-plane URL must not be empty"
    self._providers[msg.sender] = _cp
    log ProviderUpdatedWithCp(provider=msg.sender, newCp=_cp)


# ---- getters ----

@view
@external
def jobs(_job: bytes32) -> (String[MAX_METADATA], address, address, uint256, uint256, uint256):
    j: Job = self._jobs[_job]
    return j.metadata, j.owner, j.provider, j.rate, j.balance, j.lastSettled


@view
@external
def locks(_lockId: bytes32) -> (uint256, uint256):
    lk: Lock = self._locks[_lockId]
    return lk.unlockTime, lk.iValue


# ---- internals ----

@pure
@internal
def _lockId(_job: bytes32) -> bytes32:
    return keccak256(concat(RATE_LOCK_SELECTOR, _job))


@view
@internal
def _requireJob(_job: bytes32):
    assert self._jobs[_job].owner != empty(address), "job not found"


@view
@internal
def _requireOwner(_job: bytes32, _reason: String[64]):
    assert self._jobs[_job].owner != empty(address), "job not found"
    assert self._jobs[_job].owner == msg.sender, _reason


@internal
def _pull(_from: address, _amount: uint256):
    if _amount != 0:
        assert extcall self.token.transferFrom(
            _from, self, _amount, default_return_value=True
        ), "token transferFrom failed"


@internal
def _push(_to: address, _amount: uint256):
    if _amount != 0:
        assert extcall self.token.transfer(_to, _amount, default_return_value=True), "token transfer failed"


@internal
def _deleteLock(_job: bytes32) -> uint256:
    lockId: bytes32 = self._lockId(_job)
    value: uint256 = self._locks[lockId].iValue
    self._locks[lockId] = empty(Lock)
    log LockDeleted(selector=RATE_LOCK_SELECTOR, key=_job, iValue=value)
    return value


@internal
def _settle(_job: bytes32):
    rate: uint256 = self._jobs[_job].rate
    balance: uint256 = self._jobs[_job].balance
    duration: uint256 = block.timestamp - self._jobs[_job].lastSettled
    # rate < 2**128 and duration < 2**64, so the product cannot overflow.
    amount: uint256 = (rate * duration + SCALE - 1) // SCALE
    if amount > balance:
        amount = balance
    self._jobs[_job].balance = balance - amount
    self._jobs[_job].lastSettled = block.timestamp
    self._push(self._jobs[_job].provider, amount)
    log JobSettled(job=_job, amount=amount, timestamp=block.timestamp)


@view
@internal
def _reserve(_rate: uint256) -> uint256:
    return (_rate * self.lockWaitTime[RATE_LOCK_SELECTOR] + SCALE - 1) // SCALE


# ---- jobs ----

@external
def jobOpen(_metadata: String[MAX_METADATA], _provider: address, _rate: uint256, _balance: uint256):
    assert len(self._providers[_provider]) != 0, "the provider is not registered in the market"
    assert _rate <= MAX_RATE, "the rate is above MAX_RATE (2**128-1)"
    index: uint256 = self.jobIndex
    self.jobIndex = index + 1
    job: bytes32 = convert(index, bytes32)
    self._jobs[job] = Job(
        metadata=_metadata,
        owner=msg.sender,
        provider=_provider,
        rate=_rate,
        balance=_balance,
        lastSettled=block.timestamp,
    )
    self._pull(msg.sender, _balance)
    log JobOpened(
        job=job,
        metadata=_metadata,
        owner=msg.sender,
        provider=_provider,
        rate=_rate,
        balance=_balance,
        timestamp=block.timestamp,
    )


@external
def jobSettle(_job: bytes32):
    self._requireJob(_job)
    self._settle(_job)


@external
def jobDeposit(_job: bytes32, _amount: uint256):
    self._requireJob(_job)
    self._jobs[_job].balance += _amount
    self._pull(msg.sender, _amount)
    log JobDeposited(job=_job, _from=msg.sender, amount=_amount)


@external
def jobWithdraw(_job: bytes32, _amount: uint256):
    self._requireOwner(_job, "only the job owner can withdraw from it")
    self._settle(_job)
    balance: uint256 = self._jobs[_job].balance
    reserve: uint256 = self._reserve(self._jobs[_job].rate)
    assert balance >= reserve and _amount <= balance - reserve, "withdrawal would leave less than the notice reserve (rate x lock wait time) in the job"
    self._jobs[_job].balance = balance - _amount
    self._push(msg.sender, _amount)
    log JobWithdrew(job=_job, to=msg.sender, amount=_amount)


@external
def jobReviseRateInitiate(_job: bytes32, _newRate: uint256):
    self._requireOwner(_job, "only the job owner can revise its rate")
    assert _newRate <= MAX_RATE, "the rate is above MAX_RATE (2**128-1)"
    lockId: bytes32 = self._lockId(_job)
    assert self._locks[lockId].unlockTime == 0, "a rate revision is already pending; cancel or finalize it first"
    unlockTime: uint256 = block.timestamp + self.lockWaitTime[RATE_LOCK_SELECTOR]
    self._locks[lockId] = Lock(unlockTime=unlockTime, iValue=_newRate)
    log LockCreated(selector=RATE_LOCK_SELECTOR, key=_job, iValue=_newRate, unlockTime=unlockTime)
    log JobReviseRateInitiated(job=_job, newRate=_newRate)


@external
def jobReviseRateCancel(_job: bytes32):
    self._requireOwner(_job, "only the job owner can cancel a rate revision")
    assert self._locks[self._lockId(_job)].unlockTime != 0, "no rate revision is pending"
    self._deleteLock(_job)
    log JobReviseRateCancelled(job=_job)


@external
def jobReviseRateFinalize(_job: bytes32):
    self._requireOwner(_job, "only the job owner can finalize a rate revision")
    unlockTime: uint256 = self._locks[self._lockId(_job)].unlockTime
    assert unlockTime != 0, "no rate revision is pending"
    assert unlockTime <= block.timestamp, "the rate revision is still locked; wait until its unlock time"
    newRate: uint256 = self._deleteLock(_job)
    # The time up to now is charged at the old rate.
    self._settle(_job)
    self._jobs[_job].rate = newRate
    log JobReviseRateFinalized(job=_job, newRate=newRate)


@external
def jobClose(_job: bytes32):
    self._requireOwner(_job, "only the job owner can close it")
    lockId: bytes32 = self._lockId(_job)
    unlockTime: uint256 = self._locks[lockId].unlockTime
    if self._jobs[_job].rate != 0:
        # A paying job gives the provider notice: a revision to rate 0 must have unlocked.
        assert unlockTime != 0, "a job with a non-zero rate can only be closed after a rate revision to 0 has been initiated and its lock has passed"
        assert unlockTime <= block.timestamp, "the rate revision is still locked; wait until its unlock time"
        assert self._locks[lockId].iValue == 0, "the pending rate revision is not to 0; cancel it and initiate a revision to 0"
    if unlockTime != 0:
        self._deleteLock(_job)
    self._settle(_job)
    owner: address = self._jobs[_job].owner
    refund: uint256 = self._jobs[_job].balance
    self._jobs[_job] = empty(Job)
    self._push(owner, refund)
    log JobClosed(job=_job)


@external
def jobMetadataUpdate(_job: bytes32, _metadata: String[MAX_METADATA]):
    self._requireOwner(_job, "only the job owner can update its metadata")
    self._jobs[_job].metadata = _metadata
    log JobMetadataUpdated(job=_job, metadata=_metadata)
