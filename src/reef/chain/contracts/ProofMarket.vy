# pragma version 0.4.3
# pragma evm-version shanghai
# pragma optimize codesize
"""
@title reef proof market (Kalypso-style)
@license Apache-2.0
@notice Requesters escrow a reward for a proof (an "ask"); provers stake, join markets with a
        price, a proving-time bound and the compute one request uses; the matching engine
        assigns open asks to provers; a valid proof pays the prover its price and refunds the
        rest; a missed deadline slashes the prover's locked stake to the requester and refunds
        the reward. Every ask ends in exactly one terminal state: COMPLETE, EXPIRED (never
        assigned, refunded), SLASHED (deadline crossed), INVALID (the market's input
        verification service signed that the inputs admit no proof; the prover is paid its
        price, nobody is slashed) or CANCELLED (withdrawn by the requester before assignment).
        Markets are Groth16 (an on-chain verifier per verification key) or TEE (a signature by
        an enclave key the market creator registered for the market's prover image, over
        teeDigest). The IVS signs invalidInputDigest. Both digests bind chain.id, this
        contract, the ask id and its inputs, so a signature closes that ask on one chain only.
        A market created with private inputs takes asks whose private inputs travel encrypted
        (Kalypso's format): the body sealed with a random AES key, the key ECIES-encrypted
        (the ACL) to the matching engine's published key; at assignment the engine gives the
        chosen prover's market key a new ACL for the same AES key. Bodies and ACLs live only
        in the event log, never in storage.
        An ask may instead be a reverse Dutch auction (Boundless): its price ramps from a
        minimum at creation to its reward (the maximum) over a ramp time, and the first joined
        prover to call lock() takes it at the current price, locking the market's penalty of
        its stake as collateral; the matching engine never assigns auction asks. Whichever way
        an ask is assigned, the price at assignment is what a proof pays.
        A market's creator may retire it (superseded, say by one for a new prover image): it
        then refuses new asks; asks already in it finish, expire or are slashed as before.
@dev    Array fields of events are ABI-encoded bytes (AskCreated.inputs = abi.encode(uint256[]),
        ProofSubmitted.proof = abi.encode(uint256[8], uint256[])), which every event indexer
        stores as it stores any bytes. Assignment skips (and logs) an ask or prover that no longer qualifies instead of
        reverting, so a batch re-sent after a crash assigns nothing twice and one stale ask
        never blocks the others. Invariant: this contract's token balance equals the rewards
        of open/assigned asks plus all provers' stakes.
"""

from ethereum.ercs import IERC20

interface Groth16Verifier:
    def nPublic() -> uint256: view
    def verifyProof(proof: uint256[8], signals: DynArray[uint256, 32]) -> bool: view

MAX_INPUTS: constant(uint256) = 32
MAX_BATCH: constant(uint256) = 256
MAX_METADATA: constant(uint256) = 1024
MAX_SECRET: constant(uint256) = 4096
MAX_ACL: constant(uint256) = 130
LEAVE_DELAY: public(constant(uint256)) = 60

KIND_GROTH16: constant(uint8) = 1
KIND_TEE: constant(uint8) = 2

# Stored ask states; askState() also derives UNASSIGNED (open past expiry) and DEADLINE_CROSSED.
NULL: constant(uint8) = 0
OPEN: constant(uint8) = 1
ASSIGNED: constant(uint8) = 2
COMPLETE: constant(uint8) = 3
EXPIRED: constant(uint8) = 4
SLASHED: constant(uint8) = 5
INVALID: constant(uint8) = 6
CANCELLED: constant(uint8) = 7
UNASSIGNED: constant(uint8) = 8
DEADLINE_CROSSED: constant(uint8) = 9

# Why assign() skipped a pair (AssignmentSkipped.reason).
SKIP_NOT_OPEN: constant(uint8) = 1
SKIP_EXPIRED: constant(uint8) = 2
SKIP_NOT_JOINED: constant(uint8) = 3
SKIP_PRICE: constant(uint8) = 4
SKIP_TIME: constant(uint8) = 5
SKIP_COMPUTE: constant(uint8) = 6
SKIP_STAKE: constant(uint8) = 7
SKIP_NO_KEY: constant(uint8) = 8
SKIP_AUCTION: constant(uint8) = 9

struct Market:
    kind: uint8
    creator: address
    verifier: address
    imageId: bytes32
    artifactsHash: bytes32
    penalty: uint256
    ivs: address
    nPublic: uint256
    nInputs: uint256
    privateInputs: bool

struct Ask:
    marketId: uint256
    requester: address
    refundAddress: address
    reward: uint256
    expiry: uint256
    provingTime: uint256
    deadline: uint256
    prover: address
    state: uint8
    hasSecret: bool

struct Auction:
    minPrice: uint256
    start: uint256
    rampEnd: uint256

struct Prover:
    rewardAddress: address
    stake: uint256
    stakeLocked: uint256
    compute: uint256
    computeAllocated: uint256
    computeUsed: uint256
    markets: uint256

struct Offer:
    joined: bool
    price: uint256
    maxTime: uint256
    compute: uint256
    active: uint256
    leaveAt: uint256

event MarketCreated:
    marketId: indexed(uint256)
    creator: indexed(address)
    kind: uint8
    verifier: address
    imageId: bytes32
    artifactsHash: bytes32
    penalty: uint256
    ivs: address
    nInputs: uint256
    metadata: String[MAX_METADATA]

event MarketRetired:
    marketId: indexed(uint256)

event TeeSignerSet:
    marketId: indexed(uint256)
    signer: indexed(address)
    allowed: bool

event AskCreated:
    askId: indexed(uint256)
    marketId: indexed(uint256)
    requester: indexed(address)
    refundAddress: address
    reward: uint256
    expiry: uint256
    provingTime: uint256
    inputs: Bytes[1088]

event AuctionCreated:
    askId: indexed(uint256)
    marketId: indexed(uint256)
    minPrice: uint256
    maxPrice: uint256
    start: uint256
    rampEnd: uint256

event AskSecret:
    askId: indexed(uint256)
    marketId: indexed(uint256)
    secret: Bytes[MAX_SECRET]
    acl: Bytes[MAX_ACL]

event SecretAssigned:
    askId: indexed(uint256)
    prover: indexed(address)
    acl: Bytes[MAX_ACL]

event EngineKeySet:
    engine: indexed(address)
    key: Bytes[64]

event ProverKeySet:
    prover: indexed(address)
    marketId: indexed(uint256)
    key: Bytes[64]

event TaskAssigned:
    askId: indexed(uint256)
    prover: indexed(address)
    marketId: indexed(uint256)
    deadline: uint256
    price: uint256

event AssignmentSkipped:
    askId: indexed(uint256)
    prover: indexed(address)
    reason: uint8

event ProofSubmitted:
    askId: indexed(uint256)
    prover: indexed(address)
    marketId: indexed(uint256)
    proof: Bytes[1376]

event TeeProofSubmitted:
    askId: indexed(uint256)
    prover: indexed(address)
    marketId: indexed(uint256)
    output: Bytes[1088]
    signer: address

event InvalidInputClosed:
    askId: indexed(uint256)
    prover: indexed(address)
    marketId: indexed(uint256)

event AskExpired:
    askId: indexed(uint256)

event AskCancelled:
    askId: indexed(uint256)

event ProverSlashed:
    askId: indexed(uint256)
    prover: indexed(address)
    marketId: indexed(uint256)
    amount: uint256

event ProverRegistered:
    prover: indexed(address)
    rewardAddress: address
    compute: uint256
    stake: uint256

event StakeAdded:
    prover: indexed(address)
    amount: uint256

event StakeWithdrawn:
    prover: indexed(address)
    amount: uint256

event ProverDeregistered:
    prover: indexed(address)

event ProverJoined:
    prover: indexed(address)
    marketId: indexed(uint256)
    price: uint256
    maxTime: uint256
    compute: uint256

event ProverLeaving:
    prover: indexed(address)
    marketId: indexed(uint256)
    leaveAt: uint256

event ProverLeft:
    prover: indexed(address)
    marketId: indexed(uint256)

token: public(IERC20)
matchingEngine: public(address)
admin: public(address)
marketCount: public(uint256)
askCount: public(uint256)
markets: public(HashMap[uint256, Market])
asks: public(HashMap[uint256, Ask])
askInputs: HashMap[uint256, DynArray[uint256, MAX_INPUTS]]
provers: public(HashMap[address, Prover])
offers: public(HashMap[address, HashMap[uint256, Offer]])
teeSigners: public(HashMap[uint256, HashMap[address, bool]])
# The matching engine's secp256k1 public key (64 bytes x || y), to which requesters encrypt
# their private inputs' ACLs, and each prover's key per market, to which the engine
# re-encrypts them.
auctions: public(HashMap[uint256, Auction])
# What a proof of an assigned ask pays its prover: its quote at assignment, or the auction price
# at which it locked the ask.
askPrice: public(HashMap[uint256, uint256])
engineKey: public(Bytes[64])
proverKeys: public(HashMap[address, HashMap[uint256, Bytes[64]]])
# Kept apart from Market, whose fields (and so the markets() view) stay Kalypso's.
retired: public(HashMap[uint256, bool])


@deploy
def __init__(_token: IERC20, _matchingEngine: address):
    assert _token.address != empty(address), "the token address must not be zero"
    assert _matchingEngine != empty(address), "the matching engine address must not be zero"
    self.token = _token
    self.matchingEngine = _matchingEngine
    self.admin = msg.sender


@internal
def _pull(_from: address, _amount: uint256):
    if _amount > 0:
        assert extcall self.token.transferFrom(_from, self, _amount, default_return_value=True), "token transfer failed"


@internal
def _push(_to: address, _amount: uint256):
    if _amount > 0:
        assert extcall self.token.transfer(_to, _amount, default_return_value=True), "token transfer failed"


@external
def setMatchingEngine(_matchingEngine: address):
    assert msg.sender == self.admin, "only the admin can change the matching engine"
    assert _matchingEngine != empty(address), "the matching engine address must not be zero"
    self.matchingEngine = _matchingEngine
    self.engineKey = b""


@internal
@pure
def _keyAddress(_key: Bytes[64]) -> address:
    return convert(convert(convert(keccak256(_key), uint256) % 2**160, uint160), address)


@external
def publishEngineKey(_key: Bytes[64]):
    assert len(_key) == 64, "a public key is 64 bytes (x || y)"
    assert self._keyAddress(_key) == self.matchingEngine, "the key is not the matching engine's"
    self.engineKey = _key
    log EngineKeySet(engine=self.matchingEngine, key=_key)


# ---- markets ----


@external
def createGroth16Market(_verifier: address, _artifactsHash: bytes32, _penalty: uint256, _ivs: address, _nInputs: uint256, _metadata: String[MAX_METADATA], _privateInputs: bool) -> uint256:
    assert _verifier.is_contract, "the verifier is not a contract"
    nPublic: uint256 = staticcall Groth16Verifier(_verifier).nPublic()
    assert nPublic <= MAX_INPUTS, "the verifier takes more than 32 public signals"
    assert _nInputs <= nPublic, "more public inputs than the verifier has public signals"
    return self._create(KIND_GROTH16, _verifier, empty(bytes32), _artifactsHash, _penalty, _ivs, nPublic, _nInputs, _metadata, _privateInputs)


@external
def createTeeMarket(_imageId: bytes32, _penalty: uint256, _ivs: address, _nInputs: uint256, _metadata: String[MAX_METADATA], _privateInputs: bool) -> uint256:
    assert _imageId != empty(bytes32), "a TEE market needs the prover image id"
    assert _nInputs <= MAX_INPUTS, "at most 32 public inputs"
    return self._create(KIND_TEE, empty(address), _imageId, empty(bytes32), _penalty, _ivs, 0, _nInputs, _metadata, _privateInputs)


@internal
def _create(_kind: uint8, _verifier: address, _imageId: bytes32, _artifactsHash: bytes32, _penalty: uint256, _ivs: address, _nPublic: uint256, _nInputs: uint256, _metadata: String[MAX_METADATA], _privateInputs: bool) -> uint256:
    marketId: uint256 = self.marketCount + 1
    self.marketCount = marketId
    self.markets[marketId] = Market(kind=_kind, creator=msg.sender, verifier=_verifier, imageId=_imageId, artifactsHash=_artifactsHash, penalty=_penalty, ivs=_ivs, nPublic=_nPublic, nInputs=_nInputs, privateInputs=_privateInputs)
    log MarketCreated(marketId=marketId, creator=msg.sender, kind=_kind, verifier=_verifier, imageId=_imageId, artifactsHash=_artifactsHash, penalty=_penalty, ivs=_ivs, nInputs=_nInputs, metadata=_metadata)
    return marketId


@external
def setTeeSigner(_marketId: uint256, _signer: address, _allowed: bool):
    assert self.markets[_marketId].kind == KIND_TEE, "not a TEE market"
    assert msg.sender == self.markets[_marketId].creator, "only the market creator can set its enclave signers"
    self.teeSigners[_marketId][_signer] = _allowed
    log TeeSignerSet(marketId=_marketId, signer=_signer, allowed=_allowed)


@external
def retireMarket(_marketId: uint256):
    assert msg.sender == self.markets[_marketId].creator, "only its creator can retire it"
    self.retired[_marketId] = True
    log MarketRetired(marketId=_marketId)


# ---- asks ----


@external
def createAsk(_marketId: uint256, _inputs: DynArray[uint256, MAX_INPUTS], _reward: uint256, _expiry: uint256, _provingTime: uint256, _refundAddress: address) -> uint256:
    assert not self.markets[_marketId].privateInputs, "this market's asks need private inputs"
    return self._createAsk(_marketId, _inputs, _reward, _expiry, _provingTime, _refundAddress, False)


@external
def createPrivateAsk(_marketId: uint256, _inputs: DynArray[uint256, MAX_INPUTS], _reward: uint256, _expiry: uint256, _provingTime: uint256, _refundAddress: address, _secret: Bytes[MAX_SECRET], _acl: Bytes[MAX_ACL]) -> uint256:
    market: Market = self.markets[_marketId]
    assert market.kind != 0, "market not found"
    assert market.privateInputs, "this market takes no private inputs"
    assert len(_secret) > 0 and len(_acl) > 0, "private inputs need a body and an ACL"
    askId: uint256 = self._createAsk(_marketId, _inputs, _reward, _expiry, _provingTime, _refundAddress, True)
    log AskSecret(askId=askId, marketId=_marketId, secret=_secret, acl=_acl)
    return askId


@external
def createAuctionAsk(_marketId: uint256, _inputs: DynArray[uint256, MAX_INPUTS], _minPrice: uint256, _maxPrice: uint256, _rampTime: uint256, _expiry: uint256, _provingTime: uint256, _refundAddress: address) -> uint256:
    assert not self.markets[_marketId].privateInputs, "this market's asks need private inputs"
    assert _minPrice <= _maxPrice, "the auction's minimum price is above its maximum"
    assert _rampTime > 0, "the auction's price ramp must take time"
    askId: uint256 = self._createAsk(_marketId, _inputs, _maxPrice, _expiry, _provingTime, _refundAddress, False)
    rampEnd: uint256 = block.timestamp + _rampTime
    self.auctions[askId] = Auction(minPrice=_minPrice, start=block.timestamp, rampEnd=rampEnd)
    log AuctionCreated(askId=askId, marketId=_marketId, minPrice=_minPrice, maxPrice=_maxPrice, start=block.timestamp, rampEnd=rampEnd)
    return askId


@internal
@view
def _auctionPrice(_askId: uint256) -> uint256:
    a: Auction = self.auctions[_askId]
    maxPrice: uint256 = self.asks[_askId].reward
    if block.timestamp >= a.rampEnd:
        return maxPrice
    return a.minPrice + (maxPrice - a.minPrice) * (block.timestamp - a.start) // (a.rampEnd - a.start)


@external
@view
def auctionPrice(_askId: uint256) -> uint256:
    assert self.auctions[_askId].rampEnd != 0, "not an auction ask"
    return self._auctionPrice(_askId)


@internal
def _createAsk(_marketId: uint256, _inputs: DynArray[uint256, MAX_INPUTS], _reward: uint256, _expiry: uint256, _provingTime: uint256, _refundAddress: address, _hasSecret: bool) -> uint256:
    market: Market = self.markets[_marketId]
    assert market.kind != 0, "market not found"
    assert not self.retired[_marketId], "market retired: no new asks"
    assert len(_inputs) == market.nInputs, "wrong number of public inputs for this market"
    assert _reward > 0, "the reward must be positive"
    assert _expiry > block.timestamp, "the expiry must be in the future"
    assert _provingTime > 0, "the proving time must be positive"
    assert _refundAddress != empty(address), "the refund address must not be zero"
    askId: uint256 = self.askCount + 1
    self.askCount = askId
    self.asks[askId] = Ask(marketId=_marketId, requester=msg.sender, refundAddress=_refundAddress, reward=_reward, expiry=_expiry, provingTime=_provingTime, deadline=0, prover=empty(address), state=OPEN, hasSecret=_hasSecret)
    self.askInputs[askId] = _inputs
    self._pull(msg.sender, _reward)
    log AskCreated(askId=askId, marketId=_marketId, requester=msg.sender, refundAddress=_refundAddress, reward=_reward, expiry=_expiry, provingTime=_provingTime, inputs=abi_encode(_inputs))
    return askId


@external
@view
def inputs(_askId: uint256) -> DynArray[uint256, MAX_INPUTS]:
    return self.askInputs[_askId]


@internal
@view
def _state(_askId: uint256) -> uint8:
    ask: Ask = self.asks[_askId]
    if ask.state == OPEN and block.timestamp >= ask.expiry:
        return UNASSIGNED
    if ask.state == ASSIGNED and block.timestamp > ask.deadline:
        return DEADLINE_CROSSED
    return ask.state


@external
@view
def askState(_askId: uint256) -> uint8:
    return self._state(_askId)


@external
def cancelAsk(_askId: uint256):
    ask: Ask = self.asks[_askId]
    assert ask.state != NULL, "ask not found"
    assert msg.sender == ask.requester, "only the requester can cancel an ask"
    assert ask.state == OPEN, "only an unassigned ask can be cancelled"
    self.asks[_askId].state = CANCELLED
    self._push(ask.refundAddress, ask.reward)
    log AskCancelled(askId=_askId)


@external
def refundExpired(_askId: uint256):
    assert self.asks[_askId].state != NULL, "ask not found"
    assert self._state(_askId) == UNASSIGNED, "the ask is not an expired unassigned ask"
    ask: Ask = self.asks[_askId]
    self.asks[_askId].state = EXPIRED
    self._push(ask.refundAddress, ask.reward)
    log AskExpired(askId=_askId)


# ---- assignment ----


@internal
def _tryAssign(_askId: uint256, _prover: address, _acl: Bytes[MAX_ACL]) -> uint8:
    ask: Ask = self.asks[_askId]
    if ask.state != OPEN:
        return SKIP_NOT_OPEN
    if block.timestamp >= ask.expiry:
        return SKIP_EXPIRED
    if self.auctions[_askId].rampEnd != 0:
        return SKIP_AUCTION
    offer: Offer = self.offers[_prover][ask.marketId]
    if not offer.joined or offer.leaveAt != 0:
        return SKIP_NOT_JOINED
    if offer.price > ask.reward:
        return SKIP_PRICE
    if offer.maxTime > ask.provingTime:
        return SKIP_TIME
    if ask.hasSecret and (len(_acl) == 0 or len(self.proverKeys[_prover][ask.marketId]) == 0):
        return SKIP_NO_KEY
    reason: uint8 = self._take(_askId, ask, _prover, offer, offer.price)
    if reason == 0 and ask.hasSecret:
        log SecretAssigned(askId=_askId, prover=_prover, acl=_acl)
    return reason


@internal
def _take(_askId: uint256, _ask: Ask, _prover: address, _offer: Offer, _price: uint256) -> uint8:
    p: Prover = self.provers[_prover]
    if p.computeUsed + _offer.compute > p.compute:
        return SKIP_COMPUTE
    penalty: uint256 = self.markets[_ask.marketId].penalty
    if p.stakeLocked + penalty > p.stake:
        return SKIP_STAKE
    self.provers[_prover].computeUsed = p.computeUsed + _offer.compute
    self.provers[_prover].stakeLocked = p.stakeLocked + penalty
    self.offers[_prover][_ask.marketId].active = _offer.active + 1
    deadline: uint256 = block.timestamp + _ask.provingTime
    self.asks[_askId].state = ASSIGNED
    self.asks[_askId].prover = _prover
    self.asks[_askId].deadline = deadline
    self.askPrice[_askId] = _price
    log TaskAssigned(askId=_askId, prover=_prover, marketId=_ask.marketId, deadline=deadline, price=_price)
    return 0


@external
def lock(_askId: uint256) -> uint256:
    ask: Ask = self.asks[_askId]
    assert ask.state != NULL, "ask not found"
    assert self.auctions[_askId].rampEnd != 0, "not an auction ask"
    assert ask.state == OPEN, "the ask is not open"
    assert block.timestamp < ask.expiry, "the ask has expired"
    offer: Offer = self.offers[msg.sender][ask.marketId]
    assert offer.joined and offer.leaveAt == 0, "not in this market"
    assert offer.maxTime <= ask.provingTime, "the ask's proving time is below your bound"
    price: uint256 = self._auctionPrice(_askId)
    reason: uint8 = self._take(_askId, ask, msg.sender, offer, price)
    assert reason != SKIP_COMPUTE, "not enough free compute"
    assert reason != SKIP_STAKE, "not enough free stake for the collateral"
    return price


@external
def assign(_askIds: DynArray[uint256, MAX_BATCH], _provers: DynArray[address, MAX_BATCH], _acls: DynArray[Bytes[MAX_ACL], MAX_BATCH]) -> uint256:
    assert msg.sender == self.matchingEngine, "only the matching engine can assign asks"
    assert len(_askIds) == len(_provers) and len(_askIds) == len(_acls), "ask, prover and ACL lists differ in length"
    assigned: uint256 = 0
    for i: uint256 in range(len(_askIds), bound=MAX_BATCH):
        reason: uint8 = self._tryAssign(_askIds[i], _provers[i], _acls[i])
        if reason == 0:
            assigned += 1
        else:
            log AssignmentSkipped(askId=_askIds[i], prover=_provers[i], reason=reason)
    return assigned


@internal
def _release(_askId: uint256, _ask: Ask, _slashed: uint256):
    offer: Offer = self.offers[_ask.prover][_ask.marketId]
    penalty: uint256 = self.markets[_ask.marketId].penalty
    self.provers[_ask.prover].computeUsed -= offer.compute
    self.provers[_ask.prover].stakeLocked -= penalty
    self.provers[_ask.prover].stake -= _slashed
    self.offers[_ask.prover][_ask.marketId].active = offer.active - 1


@internal
def _pay(_askId: uint256, _ask: Ask, _state: uint8):
    price: uint256 = self.askPrice[_askId]
    self.asks[_askId].state = _state
    self._release(_askId, _ask, 0)
    self._push(self.provers[_ask.prover].rewardAddress, price)
    self._push(_ask.refundAddress, _ask.reward - price)


@internal
@view
def _assignedInTime(_askId: uint256) -> Ask:
    ask: Ask = self.asks[_askId]
    assert ask.state != NULL, "ask not found"
    assert ask.state == ASSIGNED, "the ask is not assigned"
    assert block.timestamp <= ask.deadline, "the proving deadline has passed"
    return ask


@external
def submitProof(_askId: uint256, _proof: uint256[8], _signals: DynArray[uint256, MAX_INPUTS]):
    ask: Ask = self._assignedInTime(_askId)
    market: Market = self.markets[ask.marketId]
    assert market.kind == KIND_GROTH16, "not a Groth16 market"
    assert len(_signals) == market.nPublic, "wrong number of public signals"
    inputs: DynArray[uint256, MAX_INPUTS] = self.askInputs[_askId]
    first: uint256 = market.nPublic - market.nInputs
    for i: uint256 in range(len(inputs), bound=MAX_INPUTS):
        assert _signals[first + i] == inputs[i], "the public signals do not match the ask's inputs"
    assert staticcall Groth16Verifier(market.verifier).verifyProof(_proof, _signals), "invalid proof"
    self._pay(_askId, ask, COMPLETE)
    log ProofSubmitted(askId=_askId, prover=ask.prover, marketId=ask.marketId, proof=abi_encode(_proof, _signals))


@internal
@view
def _recover(_digest: bytes32, _signature: Bytes[65]) -> address:
    assert len(_signature) == 65, "a signature is 65 bytes"
    r: uint256 = convert(slice(_signature, 0, 32), uint256)
    s: uint256 = convert(slice(_signature, 32, 32), uint256)
    v: uint256 = convert(slice(_signature, 64, 1), uint256)
    if v < 27:
        v += 27
    prefixed: bytes32 = keccak256(concat(b"\x19Ethereum Signed Message:\n32", _digest))
    return ecrecover(prefixed, v, r, s)


# What an enclave (teeDigest) or the IVS (invalidInputDigest) signs: the chain id, this
# contract, the ask and its inputs (and the enclave's output), so a signature closes this ask on
# this chain only. Fresh devnets deploy the market at the same address; chain.id sets them apart
# unless they share it too, as their transactions would replay between them as well.
@internal
@view
def _teeDigest(_askId: uint256, _output: DynArray[uint256, MAX_INPUTS]) -> bytes32:
    return keccak256(abi_encode(chain.id, self, _askId, self.askInputs[_askId], _output))


@internal
@view
def _invalidInputDigest(_askId: uint256) -> bytes32:
    return keccak256(abi_encode(chain.id, self, _askId, self.askInputs[_askId]))


@external
@view
def teeDigest(_askId: uint256, _output: DynArray[uint256, MAX_INPUTS]) -> bytes32:
    return self._teeDigest(_askId, _output)


@external
@view
def invalidInputDigest(_askId: uint256) -> bytes32:
    return self._invalidInputDigest(_askId)


@external
def submitTeeProof(_askId: uint256, _output: DynArray[uint256, MAX_INPUTS], _signature: Bytes[65]):
    ask: Ask = self._assignedInTime(_askId)
    assert self.markets[ask.marketId].kind == KIND_TEE, "not a TEE market"
    signer: address = self._recover(self._teeDigest(_askId, _output), _signature)
    assert signer != empty(address) and self.teeSigners[ask.marketId][signer], "the signer is not an enclave key of this market"
    self._pay(_askId, ask, COMPLETE)
    log TeeProofSubmitted(askId=_askId, prover=ask.prover, marketId=ask.marketId, output=abi_encode(_output), signer=signer)


@external
def submitInvalidInput(_askId: uint256, _signature: Bytes[65]):
    ask: Ask = self._assignedInTime(_askId)
    ivs: address = self.markets[ask.marketId].ivs
    assert ivs != empty(address), "this market has no input verification service"
    assert self._recover(self._invalidInputDigest(_askId), _signature) == ivs, "not signed by the market's input verification service"
    self._pay(_askId, ask, INVALID)
    log InvalidInputClosed(askId=_askId, prover=ask.prover, marketId=ask.marketId)


@external
def slash(_askId: uint256):
    assert self.asks[_askId].state != NULL, "ask not found"
    assert self._state(_askId) == DEADLINE_CROSSED, "the ask's deadline has not been crossed"
    ask: Ask = self.asks[_askId]
    penalty: uint256 = self.markets[ask.marketId].penalty
    self.asks[_askId].state = SLASHED
    self._release(_askId, ask, penalty)
    # The requester gets the reward back and the slashed stake as compensation.
    self._push(ask.refundAddress, ask.reward + penalty)
    log ProverSlashed(askId=_askId, prover=ask.prover, marketId=ask.marketId, amount=penalty)


# ---- provers ----


@external
def register(_rewardAddress: address, _compute: uint256, _stake: uint256):
    assert self.provers[msg.sender].compute == 0, "prover already registered"
    assert _rewardAddress != empty(address), "the reward address must not be zero"
    assert _compute > 0, "the declared compute must be positive"
    self.provers[msg.sender] = Prover(rewardAddress=_rewardAddress, stake=_stake, stakeLocked=0, compute=_compute, computeAllocated=0, computeUsed=0, markets=0)
    self._pull(msg.sender, _stake)
    log ProverRegistered(prover=msg.sender, rewardAddress=_rewardAddress, compute=_compute, stake=_stake)


@external
def addStake(_amount: uint256):
    assert self.provers[msg.sender].compute != 0, "the caller is not a registered prover"
    self.provers[msg.sender].stake += _amount
    self._pull(msg.sender, _amount)
    log StakeAdded(prover=msg.sender, amount=_amount)


@external
def withdrawStake(_amount: uint256):
    p: Prover = self.provers[msg.sender]
    assert p.compute != 0, "the caller is not a registered prover"
    assert _amount + p.stakeLocked <= p.stake, "the stake is locked by assigned asks"
    self.provers[msg.sender].stake = p.stake - _amount
    self._push(msg.sender, _amount)
    log StakeWithdrawn(prover=msg.sender, amount=_amount)


@external
def deregister():
    p: Prover = self.provers[msg.sender]
    assert p.compute != 0, "the caller is not a registered prover"
    assert p.markets == 0, "leave every market first"
    self.provers[msg.sender] = empty(Prover)
    self._push(msg.sender, p.stake)
    log ProverDeregistered(prover=msg.sender)


@external
def joinMarket(_marketId: uint256, _price: uint256, _maxTime: uint256, _compute: uint256):
    p: Prover = self.provers[msg.sender]
    assert p.compute != 0, "the caller is not a registered prover"
    assert self.markets[_marketId].kind != 0, "market not found"
    assert not self.offers[msg.sender][_marketId].joined, "already joined this market"
    assert _maxTime > 0, "the proving time bound must be positive"
    assert _compute > 0, "the compute per request must be positive"
    assert p.computeAllocated + _compute <= p.compute, "not enough declared compute for this market"
    self.provers[msg.sender].computeAllocated = p.computeAllocated + _compute
    self.provers[msg.sender].markets = p.markets + 1
    self.offers[msg.sender][_marketId] = Offer(joined=True, price=_price, maxTime=_maxTime, compute=_compute, active=0, leaveAt=0)
    log ProverJoined(prover=msg.sender, marketId=_marketId, price=_price, maxTime=_maxTime, compute=_compute)


@external
def setProverKey(_marketId: uint256, _key: Bytes[64]):
    assert self.offers[msg.sender][_marketId].joined, "not in this market"
    assert self.markets[_marketId].privateInputs, "this market takes no private inputs"
    assert len(_key) == 64, "a public key is 64 bytes (x || y)"
    if self.markets[_marketId].kind == KIND_TEE:
        # A TEE market's provers decrypt inside their attested enclaves: the key must be one of
        # the market's registered enclave keys.
        assert self.teeSigners[_marketId][self._keyAddress(_key)], "the signer is not an enclave key of this market"
    self.proverKeys[msg.sender][_marketId] = _key
    log ProverKeySet(prover=msg.sender, marketId=_marketId, key=_key)


@external
def requestLeave(_marketId: uint256):
    offer: Offer = self.offers[msg.sender][_marketId]
    assert offer.joined, "not in this market"
    assert offer.leaveAt == 0, "already leaving this market"
    leaveAt: uint256 = block.timestamp + LEAVE_DELAY
    self.offers[msg.sender][_marketId].leaveAt = leaveAt
    log ProverLeaving(prover=msg.sender, marketId=_marketId, leaveAt=leaveAt)


@external
def leaveMarket(_marketId: uint256):
    offer: Offer = self.offers[msg.sender][_marketId]
    assert offer.joined, "not in this market"
    assert offer.leaveAt != 0, "request to leave first"
    assert block.timestamp >= offer.leaveAt, "the leave delay has not passed"
    assert offer.active == 0, "the prover still has assigned asks in this market"
    self.offers[msg.sender][_marketId] = empty(Offer)
    self.proverKeys[msg.sender][_marketId] = b""
    self.provers[msg.sender].computeAllocated -= offer.compute
    self.provers[msg.sender].markets -= 1
    log ProverLeft(prover=msg.sender, marketId=_marketId)
