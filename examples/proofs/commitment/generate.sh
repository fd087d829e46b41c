#!/usr/bin/env bash
# Regenerate this example market's Groth16 artifacts (circuit.wasm, circuit.zkey,
# verification_key.json) from circuit.circom with the snarkjs/circom pinned in
# src/reef/proofs/runtime/package-lock.json.
#
# Reproducible: every randomised step of the trusted setup is replaced by snarkjs's
# deterministic *beacon* (a fixed public hash, 2^10 iterations), so the same tool versions
# give byte-identical .wasm, .zkey and verification key (tests/proofs/test_example_artifacts.py
# runs this script and compares). Another snarkjs or circom version may give other bytes (still
# a valid setup for the same circuit): the versions are pinned in the npm lock file.
#
# NOT SECURE for real value: the toxic waste of a beacon-only ceremony is derivable from the
# public beacon, so anyone can forge proofs for this circuit. A real market needs a multi-party
# ceremony (snarkjs powersoftau contribute / zkey contribute with secret entropy); reef's market
# accepts any artifacts the creator supplies.
#
# Usage: examples/proofs/commitment/generate.sh   (from anywhere; takes ~30-60 s on 2 cores)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
runtime="$repo/src/reef/proofs/runtime"
if [ ! -x "$runtime/node_modules/.bin/snarkjs" ]; then
    (cd "$runtime" && npm ci --no-audit --no-fund --loglevel=error)
fi
snarkjs="$runtime/node_modules/.bin/snarkjs"
circom="$runtime/node_modules/.bin/circom2"
beacon=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# circom resolves includes relative to -l, which must lie under the working directory.
cp "$here/circuit.circom" "$work/"
# (a symlink is not followed by circom's WASI sandbox, so the library is copied)
mkdir -p "$work/lib/circomlib"
cp -r "$runtime/node_modules/circomlib/circuits" "$work/lib/circomlib/"
(cd "$work" && "$circom" circuit.circom --r1cs --wasm -l lib -o . >/dev/null)

"$snarkjs" powersoftau new bn128 10 "$work/pot0.ptau" >/dev/null
"$snarkjs" powersoftau beacon "$work/pot0.ptau" "$work/pot1.ptau" "$beacon" 10 -n="reef example" >/dev/null
"$snarkjs" powersoftau prepare phase2 "$work/pot1.ptau" "$work/pot.ptau" >/dev/null
"$snarkjs" groth16 setup "$work/circuit.r1cs" "$work/pot.ptau" "$work/c0.zkey" >/dev/null
"$snarkjs" zkey beacon "$work/c0.zkey" "$work/circuit.zkey" "$beacon" 10 -n="reef example" >/dev/null
"$snarkjs" zkey export verificationkey "$work/circuit.zkey" "$work/verification_key.json" >/dev/null

cp "$work/circuit_js/circuit.wasm" "$here/circuit.wasm"
cp "$work/circuit.zkey" "$here/circuit.zkey"
cp "$work/verification_key.json" "$here/verification_key.json"
sha256sum "$here/circuit.wasm" "$here/circuit.zkey" "$here/verification_key.json"
