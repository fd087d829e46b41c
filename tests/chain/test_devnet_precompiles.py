"""The devnet's costly precompiles remember their answers per input
(reef.chain.devnet._precompiles) and change nothing but speed: run on reef's chain and on plain
py-evm, the same calls, estimates and transactions to ecPairing, ecMul and modexp give the same
outputs, gas, failures and blocks, the second time (remembered) as the first, with enough gas
and with one unit too little."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from devnet_ab_support import ChainPair
from eth.exceptions import OutOfGas, VMError
from py_ecc import optimized_bn128 as bn128

from reef.chain.devnet._precompiles import remembering
from reef.chain.devnet._types import DevnetFault, TxRequest


def _word(value: Any) -> bytes:
    return int(value).to_bytes(32, "big")


def _pair(p: Any, q: Any) -> bytes:
    """An ecPairing input pair: a G1 point, then a G2 point (imaginary parts first)."""
    (px, py), (qx, qy) = bn128.normalize(p), bn128.normalize(q)
    return b"".join(map(_word, (px, py, qx.coeffs[1], qx.coeffs[0], qy.coeffs[1], qy.coeffs[0])))


def _address(number: int) -> bytes:
    return number.to_bytes(20, "big")


ECMUL, ECPAIRING, MODEXP = _address(7), _address(8), _address(5)
G1_TIMES_5 = bn128.multiply(bn128.G1, 5)
CASES = [
    # e(5·G1, 7·G2) is not 1: one Miller loop and a final exponentiation, then "false".
    (ECPAIRING, _pair(G1_TIMES_5, bn128.multiply(bn128.G2, 7))),
    # A G1 point off the curve: the precompile fails (and the failure is not remembered).
    (ECPAIRING, _word(1) + _word(3) + bytes(128)),
    (ECMUL, b"".join(map(_word, (*bn128.normalize(G1_TIMES_5), 2**200 + 12345)))),
    # 3^(2^64+1) mod (2^127-1): 1-byte base, 9-byte exponent, 16-byte modulus.
    (MODEXP, _word(1) + _word(9) + _word(16) + b"\x03" + (2**64 + 1).to_bytes(9, "big")
     + (2**127 - 1).to_bytes(16, "big")),
]  # fmt: skip


def _outcome(run: Callable[[TxRequest], object], request: TxRequest) -> object:
    try:
        return run(request)
    except DevnetFault as exc:  # ExecutionReverted included
        return ("failed", str(exc))


@pytest.mark.slow
def test_remembered_precompiles_answer_as_plain_py_evm(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = ChainPair(monkeypatch)
    failed = 0
    for _ in range(2):  # the second round runs on remembered answers
        for address, data in CASES:
            request = TxRequest(to=address, data=data)
            cached, plain = (
                (_outcome(chain.call, request), _outcome(chain.estimate_gas, request))
                for chain in pair.chains
            )
            assert cached == plain
            output, gas = cached
            if not isinstance(gas, int):
                failed += 1
                continue
            assert isinstance(output, bytes)
            assert output  # a 32-byte bool, a 64-byte point, a 16-byte number
            for given in (gas, gas - 1):
                pair.send(1, address, 0, data, given)
                pair.same()
                short = TxRequest(to=address, data=data, gas=given)
                outcomes = [_outcome(chain.call, short) for chain in pair.chains]
                assert outcomes[0] == outcomes[1]
                assert (outcomes[0] == output) == (given == gas)
    assert failed == 2  # the invalid pairing input, both times
    assert pair.cached._database() == pair.plain._database()


class _Computation:
    """What a precompile touches of a py-evm computation: its input, gas and output."""

    def __init__(self, data: bytes, gas: int) -> None:
        self.msg = type("Message", (), {"data": memoryview(data)})()
        self.gas = gas
        self.output = b""

    def consume_gas(self, amount: int, reason: str) -> None:
        if amount > self.gas:
            raise OutOfGas(reason)
        self.gas -= amount

    def get_gas_remaining(self) -> int:
        return self.gas


def test_a_costly_precompile_computes_an_input_once_and_charges_the_same_each_time() -> None:
    runs: list[bytes] = []

    def pairing(computation: Any) -> Any:
        data = bytes(computation.msg.data)
        runs.append(data)
        computation.consume_gas(45_000 + 34_000 * len(data) // 192, "ECPAIRING")
        if data.startswith(b"\xff"):
            raise VMError("Invalid ECPAIRING parameters")
        computation.output = _word(len(data) % 2)
        return computation

    def sha(computation: Any) -> Any:
        runs.append(b"sha")
        computation.output = b"digest"
        return computation

    table = remembering({ECPAIRING: pairing, _address(2): sha})
    good = bytes(192)
    first, second = _Computation(good, 100_000), _Computation(good, 100_000)
    table[ECPAIRING](first)
    table[ECPAIRING](second)
    assert runs == [good]  # computed once
    assert (second.gas, second.output) == (first.gas, first.output) == (21_000, _word(0))
    short = _Computation(good, 78_999)
    with pytest.raises(OutOfGas):
        table[ECPAIRING](short)  # charged as the first run was: one unit short fails
    assert runs == [good]
    bad = b"\xff" + bytes(191)
    for _ in range(2):
        with pytest.raises(VMError):
            table[ECPAIRING](_Computation(bad, 100_000))
    assert runs == [good, bad, bad]  # a failure is not remembered
    for _ in range(2):
        table[_address(2)](_Computation(b"x", 100))
    assert runs[-2:] == [b"sha", b"sha"]  # cheap precompiles are left as they are
