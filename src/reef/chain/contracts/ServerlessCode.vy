# pragma version 0.4.3
# pragma evm-version shanghai
"""
@title reef serverless code contract (Oyster's OysterServerlessCodeContract)
@license Apache-2.0
@notice A function is deployed by calling `saveCodeInCallData(code, metadata)`: the function
        stores nothing and only emits `CodeCreated`, so the JavaScript source lives in the
        calldata of that transaction alone and the transaction hash is the function's
        `codehash`. Executors fetch the transaction by its hash, check that it was sent to this
        contract, and ABI-decode the code from its input. Same function and event as Oyster's,
        so Oyster's CLI deploys to it unchanged.
"""

MAX_CODE: constant(uint256) = 131072
MAX_METADATA: constant(uint256) = 4096

event CodeCreated:
    owner: indexed(address)
    metadata: Bytes[MAX_METADATA]


@external
def saveCodeInCallData(inputData: String[MAX_CODE], metadata: Bytes[MAX_METADATA]):
    log CodeCreated(owner=msg.sender, metadata=metadata)
