"""Running a transaction without mining it: ``eth_call`` and ``eth_estimateGas`` on py-evm.

Both run on a state whose every run is undone (a journal snapshot, always reverted), so one
state serves run after run (the engine keeps it for the next call at the same block), with a
spoofed sender and a zero gas price, as eth-tester and geth do. A run is py-evm's transaction
executor less its finalisation, which changes only the state about to be reverted. Gas estimation runs once with
the cap, then tries the gas that run consumed (and that plus what the 1/64 rule keeps back for
calls), then bisects: usually two executions where a plain binary search needs twenty-five. The
result is the least gas with which the transaction succeeds, checked in the tests by running
with one gas less.

A time budget bounds the CPU time of one call or estimate (its thread's: a call runs in one):
py-evm has no hook for it, so the state's computation class is replaced, for that state only, by
a subclass whose ``consume_gas`` (called once per opcode) checks a deadline and aborts with a
:class:`DevnetFault`, which unwinds py-evm untouched (it only catches its own ``VMError``) and
reverts the snapshot like any other failure. CPU time rather than geth's wall time: on a busy
machine an honest call waits for a CPU, and wall time aborted it ("timeout = 5s") for that.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

from eth.vm.spoof import SpoofTransaction
from eth_utils.exceptions import ValidationError

from reef.chain.devnet._types import DevnetFault, TxRequest, execution_error, rejection

__all__ = ["call_on", "estimate_on"]


_CHECK_EVERY = 256
"""Opcodes between two looks at the CPU clock: reading a thread's CPU time is a system call (no
vDSO, unlike the wall clock), and one per opcode tripled a call's cost; 256 opcodes are well under
a millisecond."""


@dataclass(slots=True)
class _Deadline:
    """One call's CPU-time budget, on the state it runs on."""

    at: float  # the thread's CPU time at which the call aborts
    timeout_s: float
    ticks: int = 0


@functools.cache
def _timed(base: Any) -> Any:
    """``base``, a py-evm computation class, with a ``consume_gas`` that checks the deadline
    :func:`_with_deadline` put on the computation's state.

    One class per fork's computation class for the process (a handful), not one per call:
    creating a class cost a twentieth of an ``eth_call``.
    """
    clock = time.thread_time

    def consume_gas(computation: Any, amount: int, reason: str) -> None:
        deadline: _Deadline = computation.state.reef_deadline
        # The first opcode looks too: a call given no time at all ends at once.
        deadline.ticks += 1
        if deadline.ticks % _CHECK_EVERY == 1 and clock() > deadline.at:
            raise DevnetFault(f"execution aborted (timeout = {deadline.timeout_s:g}s)")
        base.consume_gas(computation, amount, reason)

    return type("TimedComputation", (base,), {"consume_gas": consume_gas})


def _with_deadline(vm: Any, timeout_s: float | None) -> None:
    """Make every computation on ``vm``'s state, run in this thread, abort after ``timeout_s``
    seconds of this thread's CPU time (or never)."""
    state = vm.state
    # Instance attributes: only this state (kept for calls) runs the timed class, and a state
    # that ran a timed call before runs the class's own again when this one has no deadline.
    base = type(state).computation_class
    if timeout_s is None:
        state.computation_class = base
        return
    state.reef_deadline = _Deadline(at=time.thread_time() + timeout_s, timeout_s=timeout_s)
    state.computation_class = _timed(base)


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
    transaction = SpoofTransaction(unsigned, from_=sender)
    executor = state.get_transaction_executor()
    snapshot = state.snapshot()
    try:
        # What the executor's __call__ does, less finalize_computation: its refund to the
        # sender, payment to the coinbase and deletion of self-destructed accounts change
        # only the state reverted just below, never the computation's output, error or
        # gas left (all a call or an estimate reads); nor does Cancun's clearing of the
        # transient storage after it, which the revert undoes as well.
        executor.validate_transaction(transaction)
        message = executor.build_evm_message(transaction)
        return executor.build_computation(message, transaction)
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


def call_on(vm: Any, request: TxRequest, gas: int, *, timeout_s: float | None = None) -> bytes:
    """Run ``request`` with ``gas`` on ``vm`` within ``timeout_s`` seconds; return its output.

    Raises:
        ExecutionReverted: if it reverts (with the revert data).
        DevnetFault: if it fails otherwise (out of gas, out of time, invalid opcode, bad
            nonce/funds).
    """
    _with_deadline(vm, timeout_s)
    return bytes(_run_or_fault(vm, request, gas).output)


def estimate_on(vm: Any, request: TxRequest, cap: int, *, timeout_s: float | None = None) -> int:
    """The least gas up to ``cap`` with which ``request`` succeeds on ``vm``, found within
    ``timeout_s`` seconds.

    Raises:
        ExecutionReverted: if it reverts even with the cap.
        DevnetFault: if it fails with the cap for another reason, or runs out of time.
    """
    _with_deadline(vm, timeout_s)
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
