# pragma version 0.4.3
# pragma evm-version shanghai
"""
@title reef KMS registry (Oyster KmsVerifiable-compatible)
@license Apache-2.0
@notice The list of enclave image ids allowed to derive keys from a KMS under this contract's
        address. Its owner approves and revokes image ids; the KMS root server asks
        `oysterKMSVerify(imageId)` before serving a derive request. Function names, events and
        the `images(bytes32)` getter follow Oyster's sample KmsVerifiable contract, so Oyster's
        KMS reads it unchanged.
"""

MAX_BATCH: constant(uint256) = 256

event ImageApproved:
    imageId: bytes32

event ImageRevoked:
    imageId: bytes32

event OwnershipTransferred:
    previousOwner: indexed(address)
    newOwner: indexed(address)

images: public(HashMap[bytes32, bool])
owner: public(address)


@deploy
def __init__(_imageIds: DynArray[bytes32, MAX_BATCH]):
    self.owner = msg.sender
    log OwnershipTransferred(previousOwner=empty(address), newOwner=msg.sender)
    self._approve(_imageIds)


@internal
def _approve(_imageIds: DynArray[bytes32, MAX_BATCH]):
    for imageId: bytes32 in _imageIds:
        self.images[imageId] = True
        log ImageApproved(imageId=imageId)


@external
def approveImages(_imageIds: DynArray[bytes32, MAX_BATCH]):
    assert msg.sender == self.owner, "only the registry owner can approve images"
    self._approve(_imageIds)


@external
def revokeImages(_imageIds: DynArray[bytes32, MAX_BATCH]):
    assert msg.sender == self.owner, "only the registry owner can revoke images"
    for imageId: bytes32 in _imageIds:
        self.images[imageId] = False
        log ImageRevoked(imageId=imageId)


@view
@external
def oysterKMSVerify(_imageId: bytes32) -> bool:
    return self.images[_imageId]


@external
def transferOwnership(_newOwner: address):
    assert msg.sender == self.owner, "only the registry owner can transfer ownership"
    assert _newOwner != empty(address), "the new owner cannot be the zero address"
    previous: address = self.owner
    self.owner = _newOwner
    log OwnershipTransferred(previousOwner=previous, newOwner=_newOwner)
