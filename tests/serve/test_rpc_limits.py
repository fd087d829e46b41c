"""The devnet dispatcher's limits in process: bounded-depth parsing, ids, batch answer caps, the
call gas cap and time budget (the HTTP replays are in test_rpc_hostile.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reef.chain import Devnet
from reef.chain.devnet._rpc import MAX_DEPTH, DevnetRpc, parse_json
from reef.chain.devnet._types import DevnetFault

ACCOUNT = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"


@pytest.fixture(scope="module")
def devnet() -> Devnet:
    return Devnet()


def _request(method: str, params: list[Any], ident: Any = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": ident, "method": method, "params": params}


def test_nesting_is_bounded_and_strings_do_not_count() -> None:
    assert parse_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    with pytest.raises(DevnetFault, match="deeper than") as caught:
        parse_json(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    assert caught.value.code == -32700
    # Brackets inside strings (escaped quotes too) are text, not nesting.
    text = json.dumps({"s": "[" * 5000 + '\\"' + "{" * 5000})
    assert parse_json(text.encode())["s"].startswith("[[[")
    # Unbalanced garbage full of brackets is refused without recursing.
    with pytest.raises(DevnetFault):
        parse_json(b"[" * 200_000)


def test_non_json_numbers_are_parse_errors_and_huge_ones_are_marked() -> None:
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        with pytest.raises(DevnetFault) as caught:
            parse_json(b"[" + constant + b"]")
        assert caught.value.code == -32700
    huge = parse_json(b"[" + b"7" * 5000 + b", 1e400]")
    assert not isinstance(huge[0], int)
    assert not isinstance(huge[1], float)


def test_ids_outside_json_range_are_invalid_requests(devnet: Devnet) -> None:
    rpc = DevnetRpc(devnet)
    for ident in (2**64, -(2**64), "x" * 2000, float("nan"), [1]):
        answer = rpc.handle(_request("eth_chainId", [], ident))
        assert answer["error"]["code"] == -32600, ident
        assert answer["id"] is None
    body = rpc.handle_bytes(b'{"jsonrpc":"2.0","id":' + b"1" * 5000 + b',"method":"eth_chainId"}')
    assert body is not None
    assert json.loads(body)["error"]["code"] == -32600
    for ident in (2**63, -5, 1.5, "x" * 1024):
        assert rpc.handle(_request("eth_chainId", [], ident))["id"] == ident


def test_typed_data_given_as_a_nesting_bomb_string_is_invalid_params(devnet: Devnet) -> None:
    rpc = DevnetRpc(devnet)
    bomb = "[" * 100_000 + "]" * 100_000
    answer = rpc.handle(_request("eth_signTypedData_v4", [ACCOUNT, bomb]))
    assert answer["error"]["code"] == -32602


def test_a_batch_answer_is_cut_at_the_cap_and_later_requests_do_not_run(devnet: Devnet) -> None:
    rpc = DevnetRpc(devnet, max_batch_response=1000)
    batch = [_request("web3_clientVersion", [], i) for i in range(40)]
    batch.insert(20, {"jsonrpc": "2.0", "method": "evm_mine", "params": []})  # a notification
    before = devnet.block_number
    body = rpc.answer(batch)
    assert body is not None
    answers = json.loads(body)
    assert [a["id"] for a in answers] == list(range(40))
    answered = [a for a in answers if "result" in a]
    cut = [a for a in answers if "error" in a]
    assert answered
    assert cut
    assert answers.index(cut[0]) == len(answered)  # a prefix is answered, the rest refused
    assert all(a["error"]["code"] == -32003 for a in cut)
    assert len(body) < 1000 + 200 * len(cut)
    assert devnet.block_number == before  # the notification after the cap was not run


def _loop_creation(rpc: DevnetRpc, method: str) -> dict[str, Any]:
    return rpc.handle(_request(method, [{"from": ACCOUNT, "data": "0x5b600056"}]))


def test_the_call_time_budget_aborts_an_endless_loop(devnet: Devnet) -> None:
    rpc = DevnetRpc(devnet, call_timeout_s=0.2)
    for method in ("eth_call", "eth_estimateGas"):
        answer = _loop_creation(rpc, method)
        assert answer["error"]["code"] == -32000
        assert "execution aborted (timeout = 0.2s)" in answer["error"]["message"]
    # The chain is untouched and answers normally afterwards.
    assert rpc.handle(_request("eth_getBalance", [ACCOUNT]))["result"].startswith("0x")


def test_a_busy_machine_does_not_abort_an_honest_call(devnet: Devnet) -> None:
    """CI under load: ``ServerlessJobs.createJob`` and a Groth16 verifier's call were refused
    "execution aborted (timeout = 5s)": the budget counted the wall time a call spent waiting
    for a CPU. It counts the call's own CPU time: a call of a fraction of the budget runs to its
    end however many threads compete with it."""
    import threading
    import time

    rpc = DevnetRpc(devnet, call_timeout_s=0.5)
    stop = threading.Event()

    def burn() -> None:
        while not stop.is_set():
            sum(range(1000))

    burners = [threading.Thread(target=burn) for _ in range(8)]
    for thread in burners:
        thread.start()
    try:
        started = time.monotonic()
        # An endless loop with gas for a fifth of a second of the EVM: it runs out of gas.
        loop = {"from": ACCOUNT, "data": "0x5b600056", "gas": hex(1_000_000)}
        answer = rpc.handle(_request("eth_call", [loop]))
        waited = time.monotonic() - started
    finally:
        stop.set()
        for thread in burners:
            thread.join()
    assert waited > 0.5, "the machine was not busy enough for the replay"
    assert "gas required exceeds allowance" in answer["error"]["message"], answer


def test_the_call_gas_cap_bounds_what_a_call_may_ask_for(devnet: Devnet) -> None:
    rpc = DevnetRpc(devnet, call_gas_cap=100_000, call_timeout_s=None)
    answer = rpc.handle(
        _request("eth_call", [{"from": ACCOUNT, "data": "0x5b600056", "gas": hex(10**9)}])
    )
    assert answer["error"]["code"] == -32000
    assert "allowance (100000)" in answer["error"]["message"]  # capped, not the 10**9 asked
    estimate = rpc.handle(_request("eth_estimateGas", [{"from": ACCOUNT, "to": ACCOUNT}]))
    assert int(estimate["result"], 16) == 21_000


def test_a_batch_of_slow_calls_stops_running_at_the_batch_timeout(devnet: Devnet) -> None:
    rpc = DevnetRpc(devnet, call_timeout_s=0.2, batch_timeout_s=0.5)
    loop = {"from": ACCOUNT, "data": "0x5b600056"}
    body = rpc.answer([_request("eth_call", [loop], i) for i in range(20)])
    assert body is not None
    answers = json.loads(body)
    assert [a["id"] for a in answers] == list(range(20))
    messages = [a["error"]["message"] for a in answers]
    ran = [m for m in messages if m.startswith("execution aborted")]
    refused = [m for m in messages if m.startswith("batch timeout")]
    assert ran
    assert refused
    assert len(ran) + len(refused) == 20
    assert messages.index(refused[0]) == len(ran)  # the first ones ran, the rest were refused


def test_a_single_get_logs_is_capped_like_hosted_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11: one eth_getLogs over a wide range built an answer of any size. Past the cap it
    is refused with EIP-1474's "limit exceeded" and a message the indexer recognises, so it
    halves its range (chain/_indexer.py) rather than fail."""
    from reef.chain import deploy_contracts
    from reef.chain._indexer import _RANGE_REFUSALS
    from reef.chain.devnet import _rpc

    chain = Devnet()
    owner = chain.accounts[0].address
    # Deploying and funding emits a few Transfer logs: more than a cap of 2.
    deploy_contracts(chain.web3(), owner, fund=[a.address for a in chain.accounts[:4]])
    rpc = DevnetRpc(chain)
    query = [{"fromBlock": "0x0", "toBlock": "latest"}]
    everything = rpc.handle(_request("eth_getLogs", query))["result"]
    assert len(everything) > 2
    monkeypatch.setattr(_rpc, "MAX_LOGS", 2)
    refused = rpc.handle(_request("eth_getLogs", query))["error"]
    assert refused["code"] == -32005
    assert "more than 2 results" in refused["message"]
    assert _RANGE_REFUSALS.search(refused["message"])
    # A narrower query still answers.
    last = everything[-1]["blockNumber"]
    narrow = rpc.handle(_request("eth_getLogs", [{"fromBlock": last, "toBlock": last}]))
    assert "result" in narrow
