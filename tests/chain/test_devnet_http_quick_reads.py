"""The devnet endpoint's cheaper request path: quick reads (balances, nonces, code, storage, gas
price, blocks) answered on the event loop when the chain's lock is free and in a read thread when it is
not, and the shared JSON decoder and encoder, checked against ``json.loads`` / ``json.dumps``."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from asgi_support import call_asgi
from reef.chain import Devnet, devnet_app
from reef.chain.devnet._rpc import MAX_LIGHT_BATCH, DevnetRpc, encode_response, parse_json
from reef.chain.devnet._types import DevnetFault

ACCOUNT = "0x" + "00" * 20


@pytest.fixture(scope="module")
def devnet() -> Iterator[Devnet]:
    with Devnet() as chain:
        yield chain


def request(method: str, *params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}


def test_state_reads_and_light_methods_are_quick_in_small_batches() -> None:
    balance = request("eth_getBalance", ACCOUNT, "latest")
    quick = [
        balance,
        request("eth_getTransactionCount", ACCOUNT, "latest"),
        request("eth_getCode", ACCOUNT, "latest"),
        request("eth_getStorageAt", ACCOUNT, "0x0", "latest"),
        request("eth_gasPrice"),
        request("eth_getBlockByNumber", "latest", True),
        request("eth_getBlockByHash", "0x" + "00" * 32, False),
        request("eth_chainId"),
    ]
    assert all(DevnetRpc.is_quick(one) for one in quick)
    assert DevnetRpc.is_quick(quick)
    assert not DevnetRpc.is_quick([balance] * (MAX_LIGHT_BATCH + 1))
    assert not DevnetRpc.is_quick([])
    # Work that may take long stays off the event loop, alone or in a batch with quick reads.
    slow_ones = ("eth_call", "eth_estimateGas", "eth_getLogs", "eth_feeHistory", "evm_mine")
    for slow in (*slow_ones, "eth_sendRawTransaction", "eth_getBlockReceipts"):
        assert not DevnetRpc.is_quick(request(slow))
        assert not DevnetRpc.is_quick([balance, request(slow)])
    assert not DevnetRpc.is_quick({**balance, "method": ["eth_getBalance"]})
    assert not DevnetRpc.is_quick([balance, "not a request"])


def test_answer_if_free_runs_nothing_while_another_thread_holds_the_lock(devnet: Devnet) -> None:
    rpc = DevnetRpc(devnet)
    ran: list[Any] = []
    original = rpc.answer

    def counted(payload: Any) -> bytes | None:
        ran.append(payload)
        return original(payload)

    rpc.answer = counted  # type: ignore[method-assign]
    balance = request("eth_getBalance", devnet.accounts[0].address, "latest")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with devnet._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        assert rpc.answer_if_free(balance) == (False, None)
        assert ran == []
    finally:
        release.set()
        holder.join()
    answered, body = rpc.answer_if_free(balance)
    assert answered
    assert body is not None
    expected = hex(devnet.balance(bytes.fromhex(devnet.accounts[0].address[2:])))
    assert json.loads(body)["result"] == expected
    assert ran == [balance]


def test_run_if_free_runs_under_the_lock_only_when_no_other_thread_holds_it(
    devnet: Devnet,
) -> None:
    ran: list[tuple[Any, ...]] = []

    def read(label: str, *, times: int) -> int:
        ran.append((label, times, threading.current_thread().name))
        return devnet.head.number * times  # the lock is re-entrant: the chain's reads take it

    assert devnet.run_if_free(read, "free", times=2) == (True, devnet.head.number * 2)
    assert ran == [("free", 2, threading.current_thread().name)]

    # Held from another thread (as a block being mined holds it, here through the same method):
    # nothing runs, and the caller is told at once.
    held, release = threading.Event(), threading.Event()
    holder_result: list[tuple[bool, None]] = []

    def hold() -> None:
        def wait() -> None:
            held.set()
            release.wait(30)

        holder_result.append(devnet.run_if_free(wait))

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        assert devnet.run_if_free(read, "held", times=3) == (False, None)
        assert len(ran) == 1
    finally:
        release.set()
        holder.join()
    assert holder_result == [(True, None)]

    # What the function raises comes out, and the lock is released all the same: another
    # thread gets it without waiting.
    def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        devnet.run_if_free(fail)
    other: list[tuple[bool, int | None]] = []
    thread = threading.Thread(
        target=lambda: other.append(devnet.run_if_free(read, "after", times=1))
    )
    thread.start()
    thread.join()
    assert other == [(True, devnet.head.number)]


async def _post(app: Any, body: bytes) -> bytes:
    sent = await call_asgi(app, [body])
    assert sent[0]["status"] == 200
    return bytes(sent[1]["body"])


def test_a_quick_read_is_answered_on_the_loop_when_the_lock_is_free_else_in_a_thread(
    devnet: Devnet, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered_in: list[str] = []
    answer = DevnetRpc.answer

    def spy(rpc: DevnetRpc, payload: Any) -> bytes | None:
        answered_in.append(threading.current_thread().name)
        return answer(rpc, payload)

    monkeypatch.setattr(DevnetRpc, "answer", spy)
    app = devnet_app(devnet)
    address = devnet.accounts[0].address
    expected = hex(devnet.balance(bytes.fromhex(address[2:])))
    body = json.dumps(request("eth_getBalance", address, "latest")).encode()

    assert json.loads(asyncio.run(_post(app, body)))["result"] == expected
    assert answered_in == [threading.current_thread().name]

    # Another thread holds the chain's lock (as a transaction being mined does): the event loop
    # does not wait for it; a read thread does, and answers once it is free.
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with devnet._lock:
            held.set()
            release.wait(30)

    async def while_held() -> bytes:
        answering = asyncio.ensure_future(_post(app, body))
        for _ in range(200):  # the loop keeps turning: the read waits elsewhere
            await asyncio.sleep(0.005)
            if answered_in[1:]:
                break
        assert not answering.done()
        release.set()
        return await answering

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        answer_bytes = asyncio.run(while_held())
    finally:
        release.set()
        holder.join()
    assert json.loads(answer_bytes)["result"] == expected
    assert answered_in[1].startswith("reef-devnet-read-")


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}',
        b'[{"id":1.5,"a":[1,2,{"b":null}]},{"id":"x\\u00e9\\ud83d\\ude00"}]',
        '{"id": "é", "n": -12e3}'.encode(),
        b"\xef\xbb\xbf" + b'{"id":1}',  # a UTF-8 byte order mark, which json.loads skips
        '{"id":2,"method":"eth_chainId"}'.encode("utf-16"),
        '{"id":3}'.encode("utf-32-le"),
        b"  7  ",
    ],
)
def test_parse_json_reads_bodies_as_json_loads_does(body: bytes) -> None:
    assert parse_json(body) == json.loads(body)


@pytest.mark.parametrize("body", [b"", b"{", b'{"a":1}x', b"\xff\xfe\xfd", b"[1,]"])
def test_parse_json_refuses_what_json_loads_refuses(body: bytes) -> None:
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
        json.loads(body)
    with pytest.raises(DevnetFault, match="parse error"):
        parse_json(body)


@pytest.mark.parametrize("body", [b"NaN", b"[1,-Infinity]", b'{"id":Infinity}'])
def test_parse_json_still_refuses_what_is_not_json_though_json_loads_takes_it(
    body: bytes,
) -> None:
    json.loads(body)  # Python's extension
    with pytest.raises(DevnetFault, match="parse error"):
        parse_json(body)


def test_encode_response_gives_the_bytes_of_json_dumps() -> None:
    answers: list[Any] = [
        {"jsonrpc": "2.0", "id": 1, "result": "0x7a69"},
        [{"jsonrpc": "2.0", "id": "é😀", "result": {"a": [1, 2.5, None, True]}}],
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": 'bad\n"x"'}},
    ]
    for answer in answers:
        expected = json.dumps(answer, separators=(",", ":"), allow_nan=False).encode()
        assert encode_response(answer) == expected
    assert encode_response(None) is None
    # Nothing non-finite is ever emitted: an internal error instead, still valid JSON.
    broken = encode_response({"jsonrpc": "2.0", "id": 4, "result": float("nan")})
    assert broken is not None
    assert json.loads(broken)["error"]["code"] == -32603
