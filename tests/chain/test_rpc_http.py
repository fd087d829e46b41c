"""The devnet over real HTTP on loopback (uvicorn): web3.py's HTTPProvider running reef's
typed market clients, batches, HTTP-level refusals, CORS, misbehaving and concurrent clients,
and the endpoint recorded in devnet.json."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from web3 import Web3

from reef.chain import (
    Devnet,
    DevnetThread,
    MarketClient,
    TokenClient,
    read_devnet_info,
    serve_devnet,
    serve_devnet_in_thread,
)
from reef.chain.devnet._server import MAX_BODY
from reef.errors import ChainError, ContractRevertError
from reef.home import ReefHome


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Devnet, DevnetThread]]:
    devnet = Devnet()
    devnet._deploy(300)  # reef's contracts, as Devnet.open deploys them, without a home
    with serve_devnet_in_thread(devnet) as thread:
        yield devnet, thread


@pytest.fixture
def url(served: tuple[Devnet, DevnetThread]) -> str:
    return served[1].url


def post(url: str, payload: object) -> httpx.Response:
    return httpx.post(url, json=payload, timeout=10)


def test_web3_http_provider_runs_a_job_through_reefs_market_client(
    served: tuple[Devnet, DevnetThread],
) -> None:
    devnet, thread = served
    w3 = Web3(Web3.HTTPProvider(thread.url))
    assert w3.is_connected()
    deployment = devnet.deployment
    assert deployment is not None
    user, provider = devnet.accounts[5], devnet.accounts[6]
    market = MarketClient(w3, deployment.market, account=user.local_account)
    as_provider = MarketClient(w3, deployment.market, account=provider.local_account)
    as_provider.add_provider("http://127.0.0.1:8080")
    token = TokenClient(w3, deployment.token)
    before = token.balance(user.address)
    job = market.open_job("{}", provider.address, 10**12, 1_000_000)
    assert market.job(job).balance == 1_000_000
    assert token.balance(user.address) == before - 1_000_000
    w3.provider.make_request("evm_increaseTime", [100])  # type: ignore[arg-type]
    settled = market.settle(job)
    assert settled.events  # JobSettled decoded from the receipt fetched over HTTP
    assert market.job(job).balance < 1_000_000
    with pytest.raises(ContractRevertError) as caught:
        market.close(job)  # a non-zero rate needs a zero-rate lock first
    assert caught.value.reason


def test_web3_batches_over_http(url: str) -> None:
    w3 = Web3(Web3.HTTPProvider(url))
    with w3.batch_requests() as batch:
        batch.add(w3.eth.get_block(0))
        batch.add(w3.eth.get_balance("0x" + "99" * 20))
        results = batch.execute()
    assert results[0]["number"] == 0
    assert results[1] == 0


def test_http_refusals(url: str) -> None:
    get = httpx.get(url, timeout=10)
    assert get.status_code == 405
    assert get.json()["error"]["code"] == -32600
    too_big = httpx.post(url, content=b"[" + b" " * MAX_BODY + b"]", timeout=30)
    assert too_big.status_code == 413
    assert httpx.post(url + "/nothing", json={}, timeout=10).status_code == 404
    parse = httpx.post(url, content=b"{oops", timeout=10)
    assert parse.status_code == 200
    assert parse.json()["error"]["code"] == -32700
    notification = post(url, {"jsonrpc": "2.0", "method": "eth_chainId"})
    assert notification.status_code == 204


def test_a_streamed_oversized_body_is_cut_off(url: str) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // 65536 + 2):
            yield b" " * 65536

    response = httpx.post(url, content=chunks(), timeout=30)
    assert response.status_code == 413


def test_cors_lets_local_dapps_call(url: str) -> None:
    preflight = httpx.options(
        url,
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=10,
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in ("*", "http://localhost:3000")
    answer = httpx.post(
        url,
        json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"},
        headers={"Origin": "http://localhost:3000"},
        timeout=10,
    )
    assert answer.headers["access-control-allow-origin"] == "*"


def test_a_misbehaving_client_does_not_stop_the_others(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    stuck = socket.create_connection((host, int(port)))
    stuck.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")  # then silence
    garbage = socket.create_connection((host, int(port)))
    garbage.sendall(b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n")
    try:
        for _ in range(3):
            answer = post(url, {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"})
            assert answer.json()["result"].startswith("0x")
    finally:
        stuck.close()
        garbage.close()


def test_concurrent_clients_get_their_own_answers(served: tuple[Devnet, DevnetThread]) -> None:
    devnet, thread = served
    failures: list[str] = []

    def client(index: int) -> None:
        account = devnet.accounts[index]
        with httpx.Client(timeout=30) as session:
            for request_id in range(15):
                answer = session.post(
                    thread.url,
                    json={
                        "jsonrpc": "2.0",
                        "id": f"{index}-{request_id}",
                        "method": "eth_getTransactionCount",
                        "params": [account.address, "latest"],
                    },
                ).json()
                if answer["id"] != f"{index}-{request_id}" or "result" not in answer:
                    failures.append(str(answer))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


async def test_serve_devnet_in_the_event_loop_records_its_endpoint(reef_home: Path) -> None:
    home = ReefHome(reef_home)
    devnet = Devnet.open(home, deploy=False)
    before = signal.getsignal(signal.SIGINT)
    try:
        async with await serve_devnet(devnet, port=0) as server:
            # Embedded in a program, the server leaves Ctrl-C to that program.
            assert signal.getsignal(signal.SIGINT) is before
            assert read_devnet_info(home).rpc_url == server.url
            async with httpx.AsyncClient() as client:
                answers = await asyncio.gather(
                    *(
                        client.post(
                            server.url,
                            json={"jsonrpc": "2.0", "id": i, "method": "evm_mine", "params": []},
                        )
                        for i in range(5)
                    )
                )
            assert all(a.json()["result"] == "0x0" for a in answers)
            assert devnet.block_number == 5
            assert await asyncio.to_thread(read_devnet_info(home).probe) == 5
        assert read_devnet_info(home).rpc_url is None  # stopped: no stale endpoint
    finally:
        devnet.close()


async def test_a_port_in_use_is_a_clear_error() -> None:
    devnet = Devnet()
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        with pytest.raises(ChainError, match="port is in use") as caught:
            await serve_devnet(devnet, port=holder.getsockname()[1])
        assert "--port" in (caught.value.hint or "")
    finally:
        holder.close()
