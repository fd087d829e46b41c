"""py-evm's Prague VM for a devnet chain: its state over the chain's trie node memory
(:mod:`reef.chain.devnet._state`), run by an interpreter and a transaction executor that make
fewer Python calls than py-evm's.

Why: once the state remembers its tries, most of a transaction's CPU is py-evm's interpreter,
where an opcode cost four Python calls (the loop's wrapper, the gas charge, the gas meter, the
opcode's logic), and an ``eth_call`` built a debug message nobody read.

What: :func:`vm_class` gives a VM class over :func:`~reef.chain.devnet._state.state_class`,
injected through py-evm's own extension points (the VM's ``_state_class``, the state's
``computation_class`` and ``transaction_executor_class``): nothing of py-evm is patched.

- The computation does its gas meter's ``consume_gas`` itself (jobDeposit ~2.86 -> ~2.73 ms of
  CPU), and its interpreter loop does the common opcode wrapper's work itself (charge the
  constant gas, run the logic: two Python calls an opcode instead of four; jobDeposit ~2.73 ->
  ~2.58 ms, ``eth_call`` ~0.30 -> ~0.285 ms), py-evm's ``apply_computation`` otherwise
  statement for statement (py-evm's own loop when debug logging is on).
- The transaction executor is py-evm's, less a debug log whose message is formatted even when
  nothing logs it (a twentieth of an ``eth_call``).

What it does not change: gas, results, state and receipts, which the tests check against plain
py-evm (transactions that revert or run out of gas mid-way included).

The package's layers: imports :mod:`reef.chain.devnet._state` and
:mod:`reef.chain.devnet._trie`; :mod:`reef.chain.devnet._engine` builds its chain on
:func:`vm_class`.
"""

from __future__ import annotations

from typing import Any

from eth._utils.address import generate_contract_address
from eth.constants import CREATE_CONTRACT_ADDRESS
from eth.exceptions import Halt, OutOfGas
from eth.vm.computation import NO_RESULT
from eth.vm.forks.cancun.constants import BLOB_TX_TYPE
from eth.vm.forks.prague import PragueVM
from eth.vm.forks.prague.computation import PragueComputation
from eth.vm.forks.prague.state import PragueTransactionExecutor
from eth.vm.logic.invalid import InvalidOpcode
from eth.vm.message import Message
from eth.vm.opcode import _FastOpcode
from eth_utils.exceptions import ValidationError

from reef.chain.devnet._state import state_class
from reef.chain.devnet._trie import NodeCache

__all__ = ["vm_class"]


class _Computation(PragueComputation):
    """py-evm's Prague computation with fewer Python calls an opcode: its gas meter's
    ``consume_gas`` inlined into its own, and the interpreter loop doing what the common
    opcode wrapper (``_FastOpcode``: charge the opcode's constant gas, then run its logic)
    does instead of calling it. An opcode then costs two calls, not four."""

    @classmethod
    def apply_computation(
        cls,
        state: Any,
        message: Any,
        transaction_context: Any,
        parent_computation: Any = None,
    ) -> Any:
        # BaseComputation.apply_computation, statement for statement, but for the loop's
        # _FastOpcode case (and the debug-log case, which goes to py-evm's own loop).
        if cls.logger.show_debug2:
            return super().apply_computation(
                state, message, transaction_context, parent_computation
            )
        with cls(state, message, transaction_context) as computation:
            if computation.is_origin_computation:
                computation.contracts_created = []
                if message.is_create:
                    cls.consume_initcode_gas_cost(computation)
            if parent_computation is not None:
                computation.contracts_created = parent_computation.contracts_created
            if message.is_create:
                computation.contracts_created.append(message.storage_address)
            precompile = computation.precompiles.get(message.code_address, NO_RESULT)
            if precompile is not NO_RESULT:
                if not message.is_delegation:
                    precompile(computation)
                return computation
            opcode_lookup = computation.opcodes
            consume_gas = computation.consume_gas
            for opcode in computation.code:
                try:
                    opcode_fn = opcode_lookup[opcode]
                except KeyError:
                    opcode_fn = InvalidOpcode(opcode)
                try:
                    if type(opcode_fn) is _FastOpcode:
                        consume_gas(opcode_fn.gas_cost, opcode_fn.mnemonic)
                        opcode_fn.logic_fn(computation)
                    else:
                        opcode_fn(computation=computation)
                except Halt:
                    break
        return computation

    def consume_gas(self, amount: int, reason: str) -> None:
        # GasMeter.consume_gas, statement for statement.
        meter: Any = self._gas_meter
        if amount < 0:
            raise ValidationError("Gas consumption amount must be positive")
        remaining = meter.gas_remaining
        if amount > remaining:
            raise OutOfGas(
                f"Out of gas: Needed {amount} - Remaining {remaining} - Reason: {reason}"
            )
        meter.gas_remaining = remaining - amount
        if meter.logger.show_debug2:
            meter.logger.debug2(
                f"GAS CONSUMPTION: {remaining} - {amount} -> {remaining - amount} ({reason})"
            )


class _Executor(PragueTransactionExecutor):
    """py-evm's Prague transaction executor without the debug log of its message building."""

    def build_evm_message(self, transaction: Any) -> Any:
        # CancunTransactionExecutor.build_evm_message (Prague's), statement for statement,
        # less its logger.debug2 call, whose message is formatted whether debug logging is on
        # or not: the hex of the called contract's whole code and a keccak of the calldata,
        # a twentieth of an eth_call.
        state = self.vm_state
        london_gas_fee = transaction.gas * state.get_gas_price(transaction)
        blob_data_fee = (
            self.calc_data_fee(transaction) if transaction.type_id == BLOB_TX_TYPE else 0
        )
        state.delta_balance(transaction.sender, -1 * (london_gas_fee + blob_data_fee))
        state.increment_nonce(transaction.sender)
        msg_refund = self.calc_message_refund(transaction)
        message_gas = transaction.gas - transaction.intrinsic_gas
        contract_address: Any
        if transaction.to == CREATE_CONTRACT_ADDRESS:
            contract_address = generate_contract_address(
                transaction.sender, state.get_nonce(transaction.sender) - 1
            )
            data = b""
            code = transaction.data
            is_delegation = False
        else:
            contract_address = None
            data = transaction.data
            code, delegation_address = self.get_code_at_address(transaction.to)
            is_delegation = delegation_address is not None
        return Message(
            gas=message_gas,
            to=transaction.to,
            sender=transaction.sender,
            value=transaction.value,
            data=data,
            code=code,
            create_address=contract_address,
            refund=msg_refund,
            is_delegation=is_delegation,
        )


def vm_class(cache: NodeCache) -> Any:
    """py-evm's ``PragueVM`` with its state's tries reading and writing through ``cache``."""
    state = state_class(cache, computation_class=_Computation, transaction_executor_class=_Executor)
    return type("_ChainPragueVM", (PragueVM,), {"_state_class": state})
