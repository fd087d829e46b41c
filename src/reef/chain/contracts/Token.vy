# pragma version 0.4.3
# pragma evm-version shanghai
"""
@title reef test stable token
@license Apache-2.0
@notice An ERC-20 token with 6 decimals (like USDC) that the market is paid in on a devnet.
        Its owner (the deployer) may mint; nobody else can create tokens. Transfers and
        allowances follow ERC-20 exactly; an allowance of 2**256-1 is treated as unlimited
        and is not decreased by transferFrom (as OpenZeppelin and USDC do).
@dev    evm-version shanghai keeps the bytecode deployable on older nodes (ganache, hardhat
        defaults) and on every L2 reef targets.
"""

from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed

implements: IERC20
implements: IERC20Detailed

event OwnershipTransferred:
    previousOwner: indexed(address)
    newOwner: indexed(address)

name: public(String[64])
symbol: public(String[32])
decimals: public(constant(uint8)) = 6
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
owner: public(address)


@deploy
def __init__(_name: String[64], _symbol: String[32]):
    self.name = _name
    self.symbol = _symbol
    self.owner = msg.sender
    log OwnershipTransferred(previousOwner=empty(address), newOwner=msg.sender)


@internal
def _transfer(_from: address, _to: address, _value: uint256):
    assert _to != empty(address), "cannot transfer to the zero address"
    assert self.balanceOf[_from] >= _value, "transfer amount exceeds balance"
    self.balanceOf[_from] -= _value
    self.balanceOf[_to] += _value
    log IERC20.Transfer(sender=_from, receiver=_to, value=_value)


@external
def transfer(_to: address, _value: uint256) -> bool:
    self._transfer(msg.sender, _to, _value)
    return True


@external
def transferFrom(_from: address, _to: address, _value: uint256) -> bool:
    allowed: uint256 = self.allowance[_from][msg.sender]
    if allowed != max_value(uint256):
        assert allowed >= _value, "transfer amount exceeds allowance; approve the spender first"
        self.allowance[_from][msg.sender] = allowed - _value
    self._transfer(_from, _to, _value)
    return True


@external
def approve(_spender: address, _value: uint256) -> bool:
    assert _spender != empty(address), "cannot approve the zero address"
    self.allowance[msg.sender][_spender] = _value
    log IERC20.Approval(owner=msg.sender, spender=_spender, value=_value)
    return True


@external
def mint(_to: address, _value: uint256):
    assert msg.sender == self.owner, "only the token owner can mint"
    assert _to != empty(address), "cannot mint to the zero address"
    self.totalSupply += _value
    self.balanceOf[_to] += _value
    log IERC20.Transfer(sender=empty(address), receiver=_to, value=_value)


@external
def transferOwnership(_newOwner: address):
    assert msg.sender == self.owner, "only the token owner can transfer ownership"
    assert _newOwner != empty(address), "the new owner cannot be the zero address"
    previous: address = self.owner
    self.owner = _newOwner
    log OwnershipTransferred(previousOwner=previous, newOwner=_newOwner)
