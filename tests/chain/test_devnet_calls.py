"""eth_call and eth_estimateGas run a transaction without py-evm's finalisation (its refund,
coinbase payment and deletions touch only the state the call reverts): every output, error and
gas figure is what py-evm's whole ``apply_transaction`` gives, run after run on one state (as
an estimate runs), with transient storage, refunds, reverts, self-destructs and creations.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth._utils.address import generate_contract_address
from eth.vm.spoof import SpoofTransaction
from eth_account import Account
from eth_utils.exceptions import ValidationError

from reef.chain.devnet import _exec
from reef.chain.devnet._engine import Chain
from reef.chain.devnet._types import DevnetFault, ExecutionReverted, TxRequest

# Slot pairs stored from calldata (value 0 clears a slot: a refund).
STORE_PAIRS = bytes.fromhex("60005b803611600a57005b8060200135813555604001600256")
# Reverts if transient slot 0 is set, then sets it: a leak between runs would revert.
TRANSIENT = bytes.fromhex("60005c600c57600160005d005b60006000fd")
SELF_DESTRUCT = bytes.fromhex("33ff")  # CALLER SELFDESTRUCT
REVERTER = bytes.fromhex("60206000fd")


def _initcode(runtime: bytes) -> bytes:
    return bytes.fromhex(f"60{len(runtime):02x}80600b6000396000f3") + runtime


def _reference(vm: Any, request: TxRequest, gas: int) -> Any:
    """py-evm's own path: the executor's whole __call__, then the revert."""
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


def _outcome(run: Any, vm: Any, request: TxRequest, gas: int) -> tuple[object, ...]:
    try:
        computation = run(vm, request, gas)
    except ValidationError as exc:
        return ("refused", str(exc))
    error = computation._error if computation.is_error else None
    return (
        bytes(computation.output),
        computation.is_error,
        type(error).__name__,
        int(computation.get_gas_remaining()),
        computation.get_gas_refund(),
        [(bytes(log[0]), log[1], bytes(log[2])) for log in computation.get_log_entries()],
    )


def _deploy(chain: Chain, runtime: bytes) -> bytes:
    account = chain.accounts[0]
    sender = bytes.fromhex(account.address[2:])
    fields = {
        "chainId": chain.chain_id,
        "nonce": chain.nonce(sender),
        "gas": 500_000,
        "data": _initcode(runtime),
        "value": 0,
        "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 10**9,
    }
    raw = bytes(Account.sign_transaction(fields, account.private_key).raw_transaction)
    tx_hash = chain.send_raw_transaction(raw)
    located = chain.transaction(tx_hash)
    assert located is not None
    block, index = located
    receipt = block.receipts[index]
    assert receipt.gas_used > 0
    return bytes(generate_contract_address(sender, fields["nonce"]))


@pytest.fixture(scope="module")
def chain() -> Chain:
    chain = Chain(accounts=2, clock=lambda: 1_800_000_000.0)
    return chain


@pytest.mark.filterwarnings("ignore:SELFDESTRUCT opcode present:DeprecationWarning")
def test_calls_give_what_py_evms_whole_transaction_gives(chain: Chain) -> None:
    store = _deploy(chain, STORE_PAIRS)
    transient = _deploy(chain, TRANSIENT)
    destruct = _deploy(chain, SELF_DESTRUCT)
    reverter = _deploy(chain, REVERTER)
    funded = bytes.fromhex(chain.accounts[1].address[2:])
    pairs = b"".join(n.to_bytes(32, "big") + (n * 7).to_bytes(32, "big") for n in range(1, 6))
    # Slots 1..5 set in a block, so that a call clearing them earns a refund.
    account = chain.accounts[1]
    raw = Account.sign_transaction(
        {
            "chainId": chain.chain_id,
            "nonce": chain.nonce(funded),
            "gas": 400_000,
            "to": store,
            "data": pairs,
            "value": 0,
            "maxFeePerGas": 10**11,
            "maxPriorityFeePerGas": 10**9,
        },
        account.private_key,
    ).raw_transaction
    chain.send_raw_transaction(bytes(raw))
    clears = b"".join(n.to_bytes(32, "big") + bytes(32) for n in range(1, 6))
    requests = [
        TxRequest(to=store, data=pairs),
        TxRequest(sender=funded, to=store, data=clears),
        TxRequest(to=transient),
        TxRequest(sender=funded, to=destruct, value=3),
        TxRequest(to=reverter),
        TxRequest(sender=funded, data=_initcode(STORE_PAIRS)),  # a creation
        TxRequest(sender=funded, to=bytes(20), value=10**30),  # more than it has: refused
        TxRequest(sender=funded, to=store, value=1, data=clears[:64]),
    ]
    compared = 0
    for request in requests:
        ours_vm, _ = chain._call_setup("latest")
        their_vm, _ = chain._call_setup("latest")
        cap = 1_000_000
        first = _outcome(_exec._run, ours_vm, request, cap)
        assert first == _outcome(_reference, their_vm, request, cap)
        used = cap - first[3] if first[0] != "refused" else 60_000
        # Run after run on the same two states, as an estimate does, around the edge.
        for gas in (used - 1, used, used + 1, used + used // 63 + 2300, 21_000, cap):
            assert _outcome(_exec._run, ours_vm, request, gas) == _outcome(
                _reference, their_vm, request, gas
            )
            compared += 1
    assert compared == 6 * len(requests)
    # The transient-storage contract succeeds run after run (nothing leaks between runs).
    assert chain.estimate_gas(TxRequest(to=transient)) == chain.estimate_gas(
        TxRequest(to=transient)
    )


def _fresh_answer(chain: Chain, request: TxRequest, gas: int) -> object:
    """The call on a VM built for it alone, at the header calls at the head run in."""
    assert chain._call_header is not None
    vm = chain._chain.get_vm(at_header=chain._call_header[1])
    try:
        return _exec.call_on(vm, request, gas)
    except ExecutionReverted as exc:
        return ("reverted", exc.data)
    except DevnetFault as exc:
        return ("fault", str(exc))


@pytest.mark.filterwarnings("ignore:SELFDESTRUCT opcode present:DeprecationWarning")
def test_calls_on_the_kept_vm_answer_as_on_a_fresh_one() -> None:
    """Calls at the head run one after another on one kept VM (its state reverted after
    each): each answers what a VM built for it alone answers, whatever ran before it (writes,
    transient storage, reverts, faults, a time-out, a self-destruct)."""
    chain = Chain(accounts=2, clock=lambda: 1_800_000_000.0)
    store = _deploy(chain, STORE_PAIRS)
    transient = _deploy(chain, TRANSIENT)
    destruct = _deploy(chain, SELF_DESTRUCT)
    reverter = _deploy(chain, REVERTER)
    funded = bytes.fromhex(chain.accounts[1].address[2:])
    read_back = bytes.fromhex("60005460005260206000f3")  # return slot 0: a second contract
    reader = _deploy(chain, read_back)
    requests = [
        TxRequest(to=store, data=(0).to_bytes(32, "big") + (9).to_bytes(32, "big")),
        TxRequest(to=reader),
        TxRequest(to=transient),
        TxRequest(to=transient),
        TxRequest(sender=funded, to=destruct, value=5),
        TxRequest(to=destruct),
        TxRequest(to=reverter),
        TxRequest(sender=funded, to=bytes(20), value=10**30),
        TxRequest(to=store, data=b"\x01" * 64, gas=30_000),  # out of gas
        TxRequest(sender=funded, data=_initcode(STORE_PAIRS)),
    ]
    kept = []
    for request in requests * 2:
        try:
            ours: object = chain.call(request, gas_cap=100_000)
        except ExecutionReverted as exc:
            ours = ("reverted", exc.data)
        except DevnetFault as exc:
            ours = ("fault", str(exc))
        gas = min(request.gas or 100_000, 100_000)
        assert ours == _fresh_answer(chain, request, gas)
        if chain._idle_call_vm is not None:
            kept.append(chain._idle_call_vm[1])
    assert len({id(vm) for vm in kept}) < len(kept)  # VMs were reused
    # A call cut short by its deadline drops its VM; the next builds another and answers.
    with pytest.raises(DevnetFault, match="timeout"):
        chain.call(
            TxRequest(to=store, data=b"\x02" * 64), timeout_s=-1.0
        )  # a deadline already past
    assert chain._idle_call_vm is None
    assert chain.call(TxRequest(to=reader)) == _fresh_answer(chain, TxRequest(to=reader), 10**6)
    # A timed call, then an untimed one on the same kept VM: the VM's own computation class.
    chain.call(TxRequest(to=reader), timeout_s=30)
    chain.call(TxRequest(to=reader))
    assert chain._idle_call_vm is not None
    state = chain._idle_call_vm[1].state
    assert state.computation_class is type(state).computation_class
