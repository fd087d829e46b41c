"""py-evm's Prague VM for a devnet chain: its state over the chain's trie node memory
(:mod:`reef.chain.devnet._state`), run by an interpreter and a transaction executor that make
fewer Python calls than py-evm's.

Why: once the state remembers its tries, most of a transaction's CPU is py-evm's interpreter,
where an opcode cost four Python calls (the loop's wrapper, the gas charge, the gas meter, the
opcode's logic), and an ``eth_call`` built a debug message nobody read.

What: :func:`vm_class` gives a VM class (py-evm's, but for its receipts' blooms) over
:func:`~reef.chain.devnet._state.state_class`, injected through py-evm's own extension points
(the VM's ``_state_class`` and ``make_receipt``, the state's ``computation_class`` and
``transaction_executor_class``): nothing of py-evm is patched.

- The computation does its gas meter's ``consume_gas`` itself (jobDeposit ~2.86 -> ~2.73 ms of
  CPU), and its interpreter loop does the common opcode wrapper's work itself (charge the
  constant gas, run the logic: two Python calls an opcode instead of four; jobDeposit ~2.73 ->
  ~2.58 ms, ``eth_call`` ~0.30 -> ~0.285 ms), py-evm's ``apply_computation`` otherwise
  statement for statement (py-evm's own loop when debug logging is on).
- A code's jump analysis (which destinations are PUSH data, a walk back of up to 32 bytes per
  new destination, kept per code stream by py-evm) is shared by every computation of the same
  code (CPU per op in process, interleaved runs: token transfer ~1.70 -> ~1.64 ms, jobDeposit
  ~2.56 -> ~2.42, ``eth_call`` ~0.29 -> ~0.275).
- A receipt's bloom is or-ed from the three bits of each log address and topic, remembered per
  VM class, instead of hashing them again in every receipt (py-evm's receipt otherwise, for
  the transaction types whose receipt is the plain one): token transfer ~1.68 -> ~1.63 ms,
  jobDeposit ~2.46 -> ~2.42.
- The costly precompiles (ecPairing, ecMul, modexp, ...) remember their gas and output per
  input (:mod:`reef.chain.devnet._precompiles`): a proof's estimate and submission ran the
  same 1.5 s pairing again and again.
- The transaction executor is py-evm's, less a debug log whose message is formatted even when
  nothing logs it (a twentieth of an ``eth_call``).

What it does not change: gas, results, state and receipts, which the tests check against plain
py-evm (transactions that revert or run out of gas mid-way included).

The package's layers: imports :mod:`reef.chain.devnet._state`,
:mod:`reef.chain.devnet._precompiles` and :mod:`reef.chain.devnet._trie`;
:mod:`reef.chain.devnet._engine` builds its chain on :func:`vm_class`.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

from eth._utils.address import generate_contract_address
from eth.constants import CREATE_CONTRACT_ADDRESS
from eth.exceptions import Halt, OutOfGas
from eth.rlp.logs import Log
from eth.rlp.receipts import Receipt
from eth.vm.computation import NO_RESULT
from eth.vm.forks.berlin.transactions import AccessListTransaction, TypedTransaction
from eth.vm.forks.byzantium.constants import (
    EIP658_TRANSACTION_STATUS_CODE_FAILURE,
    EIP658_TRANSACTION_STATUS_CODE_SUCCESS,
)
from eth.vm.forks.cancun.constants import BLOB_TX_TYPE
from eth.vm.forks.cancun.transactions import BlobTransaction
from eth.vm.forks.frontier.transactions import FrontierTransaction
from eth.vm.forks.london.transactions import DynamicFeeTransaction
from eth.vm.forks.prague import PragueVM
from eth.vm.forks.prague.computation import PragueComputation
from eth.vm.forks.prague.state import PragueTransactionExecutor
from eth.vm.forks.prague.transactions import SetCodeTransaction
from eth.vm.logic.invalid import InvalidOpcode
from eth.vm.message import Message
from eth.vm.opcode import _FastOpcode
from eth_bloom.bloom import get_bloom_bits
from eth_utils.exceptions import ValidationError

from reef.chain.devnet._precompiles import remembering
from reef.chain.devnet._state import state_class
from reef.chain.devnet._trie import NodeCache

__all__ = ["vm_class"]


# How many distinct codes a VM class remembers the jump analysis of before it starts afresh:
# a devnet runs a handful of contracts, but every CREATE's initcode is a code too.
_JUMP_CODES = 256


class _Computation(PragueComputation):
    """py-evm's Prague computation with fewer Python calls an opcode: its gas meter's
    ``consume_gas`` inlined into its own, and the interpreter loop doing what the common
    opcode wrapper (``_FastOpcode``: charge the opcode's constant gas, then run its logic)
    does instead of calling it. An opcode then costs two calls, not four.

    Its code stream also shares what py-evm learnt of a code's jump destinations with every
    computation of the same code (``_jumps``, one dict per VM class, set by :func:`vm_class`).
    """

    _jumps: dict[bytes, tuple[set[int], set[int]]]

    def __init__(self, state: Any, message: Any, transaction_context: Any) -> None:
        super().__init__(state, message, transaction_context)
        # CodeStream.is_valid_opcode (JUMP and JUMPI's check that the destination is no PUSH
        # data) remembers each position it decided in two sets, per code stream, so each new
        # computation walked back through up to 32 bytes of pushes per destination again. A
        # position's answer depends on the code's bytes alone, so one pair of sets per code
        # gives the same answers from the second run on.
        code = message.code
        jumps = self._jumps
        known = jumps.get(code)
        if known is None:
            if len(jumps) >= _JUMP_CODES:
                jumps.clear()
            known = jumps[code] = (set(), set())
        stream: Any = self.code
        stream.valid_positions, stream.invalid_positions = known

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


# The transaction classes whose make_receipt is the plain one: Receipt(status, gas used, logs).
_PLAIN_RECEIPTS = frozenset(
    cls.make_receipt
    for cls in (
        FrontierTransaction,
        AccessListTransaction,
        DynamicFeeTransaction,
        BlobTransaction,
        SetCodeTransaction,
    )
)
# How many distinct addresses and topics a VM class remembers the bloom bits of.
_BLOOM_VALUES = 4096


class _VM(PragueVM):
    """py-evm's Prague VM whose receipts' blooms come from remembered bits per address and
    topic (``_bloom_bits``, one dict per VM class, set by :func:`vm_class`)."""

    _bloom_bits: dict[bytes, int]

    @classmethod
    def make_receipt(cls, base_header: Any, transaction: Any, computation: Any, state: Any) -> Any:
        # ByzantiumVM.make_receipt and the transaction's make_receipt, statement for
        # statement, but for the bloom, which Receipt would compute by hashing every log's
        # address and topics again (a token's address and its Transfer topic come back in
        # block after block): the same bits, or-ed from a dict of each value's three bits.
        typed = type(transaction).make_receipt is TypedTransaction.make_receipt
        plain = type(transaction._inner if typed else transaction).make_receipt
        if plain not in _PLAIN_RECEIPTS:
            return super().make_receipt(base_header, transaction, computation, state)
        gas_used = base_header.gas_used + cls.finalize_gas_used(transaction, computation)
        if computation.is_error:
            status = EIP658_TRANSACTION_STATUS_CODE_FAILURE
        else:
            status = EIP658_TRANSACTION_STATUS_CODE_SUCCESS
        logs = [
            Log(address, topics, data) for address, topics, data in computation.get_log_entries()
        ]
        bloom = 0
        if logs:
            known = cls._bloom_bits
            if len(known) >= _BLOOM_VALUES:
                known.clear()
            for log in logs:
                for value in (log.address, *(t.to_bytes(32, "big") for t in log.topics)):
                    bits = known.get(value)
                    if bits is None:
                        bits = known[value] = _bloom_bits(value)
                    bloom |= bits
        receipt = Receipt(state_root=status, gas_used=gas_used, logs=logs, bloom=bloom)
        if typed:
            return transaction.receipt_builder.typed_receipt_class(transaction.type_id, receipt)
        return receipt


def _bloom_bits(value: bytes) -> int:
    """The three bits ``value`` sets in a log bloom, as one int (eth_bloom's, which py-evm's
    Receipt uses)."""
    return functools.reduce(operator.or_, get_bloom_bits(value))


def vm_class(cache: NodeCache) -> Any:
    """py-evm's ``PragueVM`` with its state's tries reading and writing through ``cache``."""
    computation = type(
        "_ChainComputation",
        (_Computation,),
        {"_jumps": {}, "_precompiles": remembering(PragueComputation._precompiles)},
    )
    state = state_class(cache, computation_class=computation, transaction_executor_class=_Executor)
    return type("_ChainPragueVM", (_VM,), {"_state_class": state, "_bloom_bits": {}})
