pragma circom 2.1.0;

// reef's example proof market: "I computed y = Poseidon(x) for a 64-bit x".
// The requester gives x (public); the prover returns y and a Groth16 proof.
// Num2Bits(64) makes x >= 2^64 an *invalid input*: no witness exists, so an honest prover
// cannot prove it and closes the ask through the input verification service instead.

include "circomlib/circuits/poseidon.circom";
include "circomlib/circuits/bitify.circom";

template PoseidonOf64() {
    signal input x;
    signal output y;

    component range = Num2Bits(64);
    range.in <== x;

    component hash = Poseidon(1);
    hash.inputs[0] <== x;
    y <== hash.out;
}

component main {public [x]} = PoseidonOf64();
