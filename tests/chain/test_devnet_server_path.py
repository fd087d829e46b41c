"""The devnet endpoint's short request path (reef.chain.devnet._server): the worker pools that
replace anyio's threads, and ``POST /`` as a bare ASGI route, checked against what Starlette's
``Response``/``JSONResponse`` gave before (the same status, headers and bytes) and against the
router's path (a mounted app) for CORS."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount

from asgi_support import call_asgi
from reef.chain import Devnet, devnet_app
from reef.chain.devnet._rpc import DevnetRpc
from reef.chain.devnet._server import _Workers


@pytest.fixture(scope="module")
def devnet() -> Iterator[Devnet]:
    with Devnet() as chain:
        yield chain


# ---------------------------------------------------------------------------- the pools


def _threads(prefix: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(prefix)]


def test_workers_return_results_and_raise_errors_of_the_function() -> None:
    async def main() -> None:
        workers = _Workers(2, "reef-test-results")
        assert await workers.run(lambda x: x * 2, 21) == 42
        empty: dict[str, int] = {}
        with pytest.raises(KeyError, match="missing"):
            await workers.run(empty.__getitem__, "missing")
        # Not the event loop's thread.
        name = await workers.run(lambda _: threading.current_thread().name, None)
        assert name.startswith("reef-test-results-")

    asyncio.run(main())


def test_workers_run_at_most_their_size_at_once_and_stop_when_dropped() -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def job(_: None) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    async def main() -> None:
        workers = _Workers(3, "reef-test-bounded")
        await asyncio.gather(*(workers.run(job, None) for _ in range(12)))
        assert len(_threads("reef-test-bounded")) == 3
        del workers  # the last reference: the pool is dropped now (no cycle to collect)

    asyncio.run(main())
    assert most == 3
    deadline = time.monotonic() + 10
    while _threads("reef-test-bounded") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _threads("reef-test-bounded") == []


def test_a_cancelled_wait_leaves_the_pool_working() -> None:
    release = threading.Event()

    async def main() -> None:
        workers = _Workers(1, "reef-test-cancel")
        slow = asyncio.ensure_future(workers.run(lambda _: release.wait(10), None))
        await asyncio.sleep(0.05)
        slow.cancel()
        release.set()
        assert await workers.run(lambda x: x + 1, 1) == 2

    asyncio.run(main())


# -------------------------------------------------------------------------- POST / itself


def test_an_answer_has_the_status_headers_and_bytes_starlette_gave(devnet: Devnet) -> None:
    request = b'{"jsonrpc":"2.0","id":7,"method":"eth_chainId","params":[]}'
    sent = asyncio.run(call_asgi(devnet_app(devnet), [request[:10], request[10:30], request[30:]]))
    start, body = sent
    expected = Response(
        json.dumps({"jsonrpc": "2.0", "id": 7, "result": hex(devnet.chain_id)}).replace(" ", ""),
        media_type="application/json",
    )
    assert start["status"] == 200
    assert body["body"] == expected.body
    assert start["headers"] == [*expected.raw_headers, (b"vary", b"Origin")]


def test_an_oversized_body_gets_the_json_rpc_413_starlette_gave(devnet: Devnet) -> None:
    app = devnet_app(devnet, max_body=100)
    declared = asyncio.run(call_asgi(app, [b" " * 10], headers=[(b"content-length", b"101")]))
    streamed = asyncio.run(call_asgi(app, [b" " * 60, b" " * 60]))
    message = "request body over 100 bytes"
    expected = JSONResponse(
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}},
        status_code=413,
    )
    for start, body in (declared, streamed):
        assert start["status"] == 413
        assert body["body"] == expected.body
        assert start["headers"] == [*expected.raw_headers, (b"vary", b"Origin")]


def test_notifications_get_204_and_a_client_gone_mid_body_gets_nothing(devnet: Devnet) -> None:
    app = devnet_app(devnet)
    notification = b'{"jsonrpc":"2.0","method":"eth_chainId"}'
    start, body = asyncio.run(call_asgi(app, [notification]))
    assert start["status"] == 204
    assert start["headers"] == [*Response(status_code=204).raw_headers, (b"vary", b"Origin")]
    assert body["body"] == b""
    assert asyncio.run(call_asgi(app, [b'{"jsonrpc":'], disconnect=True)) == []


def test_evm_work_and_reads_are_answered_off_the_event_loop_and_light_ones_on_it(
    devnet: Devnet, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered_in: dict[str, str] = {}
    answer = DevnetRpc.answer

    def spy(rpc: DevnetRpc, payload: Any) -> bytes | None:
        answered_in[payload["method"]] = threading.current_thread().name
        return answer(rpc, payload)

    monkeypatch.setattr(DevnetRpc, "answer", spy)
    app = devnet_app(devnet)
    # eth_getLogs: a read that takes the lock and is not one of the quick ones (those are
    # answered on the loop when the lock is free: test_devnet_http_quick_reads.py).
    requests = {
        "eth_call": [{"to": "0x" + "00" * 20}],
        "eth_getLogs": [{"fromBlock": "0x0", "toBlock": "latest"}],
        "eth_blockNumber": [],
    }
    for method, params in requests.items():
        request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        _, body = asyncio.run(call_asgi(app, [json.dumps(request).encode()]))
        result = json.loads(body["body"])["result"]
        assert isinstance(result, list) or result.startswith("0x")
    assert answered_in["eth_call"].startswith("reef-devnet-evm-")
    assert answered_in["eth_getLogs"].startswith("reef-devnet-read-")
    assert answered_in["eth_blockNumber"] == threading.current_thread().name


def test_cors_headers_are_added_once_on_the_direct_and_the_mounted_path(devnet: Devnet) -> None:
    app = devnet_app(devnet)
    outer = Starlette(routes=[Mount("/rpc", app=app)])
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}
    origin = {"Origin": "http://localhost:3000"}

    async def main() -> list[httpx.Response]:
        answers = []
        for target, path in ((app, "http://devnet/"), (outer, "http://devnet/rpc/")):
            transport = httpx.ASGITransport(app=target)
            async with httpx.AsyncClient(transport=transport) as client:
                answers.append(await client.post(path, json=body, headers=origin))
                answers.append(
                    await client.post(path, json=body, headers={"Origin": "https://evil.example"})
                )
        return answers

    direct, direct_foreign, mounted, mounted_foreign = asyncio.run(main())
    for allowed in (direct, mounted):
        assert allowed.json()["result"] == hex(devnet.chain_id)
        assert allowed.headers.get_list("access-control-allow-origin") == ["*"]
        assert allowed.headers.get_list("vary") == ["Origin"]
    for refused in (direct_foreign, mounted_foreign):
        assert "access-control-allow-origin" not in refused.headers
        assert refused.headers.get_list("vary") == ["Origin"]
