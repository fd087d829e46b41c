"""Running a transaction without mining it: ``eth_call`` and ``eth_estimateGas`` on py-evm.

Both run on a throwaway copy of the state (a journal snapshot that is always reverted) with a
spoofed sender and a zero gas price, as eth-tester and geth do. Gas estimation runs once with
the cap, then tries the gas that run consumed (and that plus what the 1/64 rule keeps back for
calls), then bisects: usually two executions where a plain binary search needs twenty-five. The
result is the least gas with which the transaction succeeds, checked in the tests by running
with one gas less.
"""

from __future__ import annotations

from typing import Any

from eth.vm.spoof import SpoofTransaction
from eth_utils.exceptions import ValidationError

from reef.chain._devnet_types import TxRequest, execution_error, rejection

__all__ = ["call_on", "estimate_on"]


def _run(vm: Any, request: TxRequest, gas: int) -> Any:
    """Execute ``request`` with ``gas`` on ``vm``'s state and undo it; return the computation.

    Raises:
        ValidationError: if the transaction is invalid (nonce, funds, intrinsic gas).
    """
    sender = request.sender or b"\x00" * 20
    state = vm.state
    unsigned = vm.create_unsigned_transaction(
        nonce=int(state.get_nonce(sender)),
        gas_price=0,
        gas=gas,
        to=request.to or b"",
        value=request.value,
        data=request.data,
    )
    snapshot = state.snapshot()
    try:
        return state.apply_transaction(SpoofTransaction(unsigned, from_=sender))
    finally:
        state.revert(snapshot)


def _succeeds(vm: Any, request: TxRequest, gas: int) -> bool:
    try:
        return not _run(vm, request, gas).is_error
    except ValidationError:
        return False


def _run_or_fault(vm: Any, request: TxRequest, gas: int) -> Any:
    """Like :func:`_run`, but a refusal or a failed execution raises a :class:`DevnetFault`."""
    try:
        computation = _run(vm, request, gas)
    except ValidationError as exc:
        raise rejection(exc) from exc
    if computation.is_error:
        raise execution_error(computation.error, bytes(computation.output), gas)
    return computation


def call_on(vm: Any, request: TxRequest, gas: int) -> bytes:
    """Run ``request`` with ``gas`` on ``vm``; return its output.

    Raises:
        ExecutionReverted: if it reverts (with the revert data).
        DevnetFault: if it fails otherwise (out of gas, invalid opcode, bad nonce/funds).
    """
    return bytes(_run_or_fault(vm, request, gas).output)


def estimate_on(vm: Any, request: TxRequest, cap: int) -> int:
    """The least gas up to ``cap`` with which ``request`` succeeds on ``vm``.

    Raises:
        ExecutionReverted: if it reverts even with the cap.
        DevnetFault: if it fails with the cap for another reason.
    """
    first = _run_or_fault(vm, request, cap)
    used = cap - int(first.get_gas_remaining())
    low, high = used - 1, cap  # invariant: low is not enough, high is
    for candidate in (used, used + used // 63 + 2300):
        if low < candidate < high:
            if _succeeds(vm, request, candidate):
                high = candidate
                break
            low = candidate
    while high - low > 1:
        middle = (low + high) // 2
        if _succeeds(vm, request, middle):
            high = middle
        else:
            low = middle
    return high
