"""py-evm's precompiles, the costly ones remembering their answers per input.

Why: py-evm computes the elliptic-curve precompiles in pure Python (py_ecc). One ``ecPairing``
of four pairs, the check at the heart of every Groth16 verifier, costs about 1.5 s, and a
proof's submission runs it again and again over the same bytes: ``eth_estimateGas`` runs the
transaction several times while it searches for the least gas that succeeds, then the
transaction itself runs it once more. On a loaded machine, ``reef up``'s prover spent four
fifths of its time in that estimate (py-spy) and missed a five-minute deadline; the proof
market's flow test took 6.2 s a proof, 3.8 s with this module.

What: a precompile is a pure function of its input. Its gas is a function of the input (and
the fork, fixed per VM class), and it either fails (a ``VMError``, or ``OutOfGas`` when the call
brought too little gas) or leaves its output. So the first successful run of an input records
the gas it charged and the output it left; a later run of the same input charges that gas
through the computation's own ``consume_gas`` (failing with ``OutOfGas`` exactly where the first
run's charge would have) and leaves the same output. Failures are not remembered: they run
again. Only the precompiles whose computation costs more than hashing their input are wrapped,
inputs over :data:`_LARGEST_INPUT` are not remembered, and each precompile keeps at most
:data:`_ANSWERS` answers (then starts afresh), per VM class: a devnet's chain has one.

What it does not change: gas, outputs and failures, which ``tests/chain`` checks against plain
py-evm, with enough gas and with too little.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["remembering"]

# ecAdd's and the hashes' work is no more than reading their input; modexp, ecMul,
# ecPairing, the KZG point evaluation and the BLS12-381 operations are big-number arithmetic.
_COSTLY = frozenset(
    (0x05, 0x07, 0x08, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11),
)
_LARGEST_INPUT = 1 << 16
_ANSWERS = 256

Precompile = Callable[[Any], Any]


def remembering(precompiles: Mapping[Any, Precompile]) -> dict[Any, Precompile]:
    """``precompiles`` (a computation class's, by address), the costly ones remembering the
    gas and output of each input they succeeded on."""
    return {
        address: _remember(run) if int.from_bytes(address, "big") in _COSTLY else run
        for address, run in precompiles.items()
    }


def _remember(precompile: Precompile) -> Precompile:
    answers: dict[bytes, tuple[int, bytes]] = {}

    def run(computation: Any) -> Any:
        data = bytes(computation.msg.data)
        if len(data) > _LARGEST_INPUT:
            return precompile(computation)
        known = answers.get(data)
        if known is not None:
            gas, output = known
            computation.consume_gas(gas, reason="precompile (input seen before)")
            computation.output = output
            return computation
        before = computation.get_gas_remaining()
        precompile(computation)  # a failure raises: nothing is remembered
        if len(answers) >= _ANSWERS:
            answers.clear()
        answers[data] = (before - computation.get_gas_remaining(), computation.output)
        return computation

    return run
