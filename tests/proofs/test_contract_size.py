"""ProofMarket.vy fits the chain's code size limits, with the margin reported when it fails.

EIP-170 caps a contract's runtime code at 24 576 bytes and EIP-3860 its creation code at
49 152: a market over either would not deploy on any Ethereum chain (reef's devnet included).
The contract is built with ``optimize codesize`` and has little room, so a change that grows it
(a new check, a long revert reason) fails here, naming its size, before it fails a deployment.
"""

from __future__ import annotations

from reef.chain import load_artifact

EIP170_RUNTIME = 24_576
EIP3860_INITCODE = 2 * EIP170_RUNTIME


def test_the_proof_market_fits_eip170_and_eip3860() -> None:
    artifact = load_artifact("ProofMarket")
    runtime, initcode = len(artifact.deployed_bytecode), len(artifact.bytecode)
    assert runtime <= EIP170_RUNTIME, f"runtime code {runtime} bytes, over EIP-170's limit"
    assert initcode <= EIP3860_INITCODE, f"creation code {initcode} bytes, over EIP-3860's"
