pragma circom 2.1.0;

// reef's example market with private inputs: "I know a 64-bit x with y = Poseidon(x, salt)".
// The requester gives salt (public, on chain) and x (private: encrypted to the matching engine,
// re-encrypted to the assigned prover, never on chain); the prover returns the commitment y
// and a Groth16 proof. Num2Bits(64) makes x >= 2^64 an invalid input.

include "circomlib/circuits/poseidon.circom";
include "circomlib/circuits/bitify.circom";

template Commitment() {
    signal input salt;
    signal input x;
    signal output y;

    component range = Num2Bits(64);
    range.in <== x;

    component hash = Poseidon(2);
    hash.inputs[0] <== x;
    hash.inputs[1] <== salt;
    y <== hash.out;
}

component main {public [salt]} = Commitment();
