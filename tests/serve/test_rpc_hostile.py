"""Attacks on the devnet's JSON-RPC endpoint, replayed against the real server (issue 11).

The server runs in a subprocess (the real ``serve_devnet`` on loopback, default limits), so an
attack that kills it (the 140 KB nesting bomb used to segfault the process) fails one test with
a clear message instead of taking pytest down. Each test sends the attack, checks the error the
server answers, and checks that a legitimate client is answered during and after it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

_SERVER = """
import asyncio, sys
from reef.chain import Devnet, serve_devnet

async def main() -> None:
    devnet = Devnet()
    server = await serve_devnet(devnet, host="127.0.0.1", port=0)
    print(server.url, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.aclose()

asyncio.run(main())
"""

# Dev account 0 of every devnet (the well-known hardhat/anvil mnemonic).
_ACCOUNT = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"


class DevnetProcess:
    """A devnet JSON-RPC server in a child process, restarted if an attack killed it."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def ensure(self) -> str:
        if self.process is None or self.process.poll() is not None:
            self._close_pipes()
            self.process = subprocess.Popen(
                [sys.executable, "-c", _SERVER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self.process.stdout is not None
            self.url = self.process.stdout.readline().strip()
            assert self.url.startswith("http://"), "the devnet server did not start"
        return self.url

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _close_pipes(self) -> None:
        if self.process is not None:
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe is not None:
                    pipe.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_pipes()


@pytest.fixture(scope="module")
def server() -> Iterator[DevnetProcess]:
    process = DevnetProcess()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def url(server: DevnetProcess) -> str:
    return server.ensure()


def _strict_json(body: bytes) -> Any:
    """Parse as strict JSON: NaN and Infinity are not JSON."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"the response holds {name}, which is not JSON")

    return json.loads(body, parse_constant=refuse)


def _call(url: str, method: str, params: list[Any], *, ident: int = 1) -> dict[str, Any]:
    answer = httpx.post(
        url, json={"jsonrpc": "2.0", "id": ident, "method": method, "params": params}, timeout=30
    )
    assert answer.status_code == 200
    result: dict[str, Any] = answer.json()
    return result


def _legitimate_client_is_served(url: str, server: DevnetProcess) -> None:
    assert server.alive(), "the attack killed the devnet process"
    answer = _call(url, "eth_getBalance", [_ACCOUNT, "latest"])
    assert int(answer["result"], 16) > 0


def _post_raw(url: str, body: bytes) -> httpx.Response:
    try:
        return httpx.post(
            url, content=body, headers={"content-type": "application/json"}, timeout=60
        )
    except httpx.TransportError as exc:
        pytest.fail(f"the server dropped the connection instead of answering: {exc!r}")


def test_a_nesting_bomb_is_a_json_rpc_error_not_a_crash(url: str, server: DevnetProcess) -> None:
    answer = _post_raw(url, b"[" * 70_000 + b"]" * 70_000)
    assert answer.status_code in (200, 400)
    error = _strict_json(answer.content)["error"]
    assert error["code"] in (-32700, -32600)
    assert "deep" in error["message"] or "nest" in error["message"]
    _legitimate_client_is_served(url, server)
    # Objects nest the same way.
    answer = _post_raw(url, b'{"a":' * 20_000 + b"1" + b"}" * 20_000)
    assert _strict_json(answer.content)["error"]["code"] in (-32700, -32600)
    _legitimate_client_is_served(url, server)


@pytest.mark.parametrize("tail", [b"", b"\\"], ids=["open string", "lone backslash"])
def test_a_body_of_escaped_quotes_is_scanned_in_linear_time(
    url: str, server: DevnetProcess, tail: bytes
) -> None:
    # Enough brackets to need the nesting scan, then one string that never closes, made of
    # escaped quotes: a string pattern that needs its closing quote tries again from each of
    # them, to the end each time (quadratic: a 16 KB body took 4.7 s, this one hours, with the
    # GIL held, so the whole devnet stopped answering).
    body = b"[" * 101 + b'"' + b'\\"' * 300_000 + tail
    answer = _post_raw(url, body)
    assert _strict_json(answer.content)["error"]["code"] == -32700
    _legitimate_client_is_served(url, server)


def test_a_huge_integer_id_is_an_invalid_request(url: str, server: DevnetProcess) -> None:
    for digits in (5000, 400):
        body = b'{"jsonrpc":"2.0","id":' + b"9" * digits + b',"method":"eth_chainId"}'
        answer = _post_raw(url, body)
        assert answer.status_code == 200
        parsed = _strict_json(answer.content)
        assert parsed["error"]["code"] == -32600
        assert parsed["id"] is None
    _legitimate_client_is_served(url, server)


@pytest.mark.parametrize("ident", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_a_non_finite_id_never_comes_back_as_invalid_json(
    url: str, server: DevnetProcess, ident: bytes
) -> None:
    body = b'{"jsonrpc":"2.0","id":' + ident + b',"method":"eth_chainId"}'
    answer = _post_raw(url, body)
    parsed = _strict_json(answer.content)
    assert parsed["error"]["code"] in (-32700, -32600)
    assert parsed["id"] is None
    _legitimate_client_is_served(url, server)


def test_legitimate_ids_are_echoed(url: str) -> None:
    for ident in ("abc", 0, 2**53 - 1, -7, None):
        answer = _call(url, "eth_chainId", [], ident=ident)  # type: ignore[arg-type]
        assert answer["id"] == ident
        assert answer["result"].startswith("0x")


def test_a_six_megabyte_body_gets_413(url: str, server: DevnetProcess) -> None:
    answer = _post_raw(url, b"[" + b" " * (6 * 1024 * 1024) + b"]")
    assert answer.status_code == 413
    assert _strict_json(answer.content)["error"]["code"] == -32600
    _legitimate_client_is_served(url, server)


def _emit_logs(url: str) -> None:
    """One transaction whose init code emits 10 logs of 25 000 zero bytes (~0.5 MB of JSON per
    eth_getLogs answer)."""
    code = (bytes.fromhex("620061a86000a0") * 10 + b"\x00").hex()
    sent = _call(
        url,
        "eth_sendTransaction",
        [{"from": _ACCOUNT, "data": "0x" + code, "gas": hex(8_000_000)}],
    )
    assert "result" in sent, sent
    receipt = _call(url, "eth_getTransactionReceipt", [sent["result"]])["result"]
    assert receipt["status"] == "0x1"
    assert len(receipt["logs"]) == 10


def test_a_batch_of_log_queries_is_capped(url: str, server: DevnetProcess) -> None:
    _emit_logs(url)
    batch = [
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "eth_getLogs",
            "params": [{"fromBlock": "0x0", "toBlock": "latest"}],
        }
        for i in range(50)
    ]
    answer = _post_raw(url, json.dumps(batch).encode())
    assert answer.status_code == 200
    assert len(answer.content) <= 6 * 1024 * 1024, "the batch answer is not capped"
    parsed = _strict_json(answer.content)
    assert isinstance(parsed, list)
    assert len(parsed) == 50
    assert [entry["id"] for entry in parsed] == list(range(50))
    assert "result" in parsed[0]
    assert len(parsed[0]["result"]) >= 10
    refused = [entry for entry in parsed if "error" in entry]
    assert refused, "no request of the batch was refused"
    assert all(entry["error"]["code"] == -32003 for entry in refused)
    assert "too large" in refused[-1]["error"]["message"]
    _legitimate_client_is_served(url, server)


def test_a_batch_over_the_length_limit_is_refused(url: str, server: DevnetProcess) -> None:
    batch = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId"} for i in range(1001)]
    answer = _post_raw(url, json.dumps(batch).encode())
    parsed = _strict_json(answer.content)
    assert parsed["error"]["code"] == -32600
    _legitimate_client_is_served(url, server)


_INFINITE_LOOP = "0x5b600056"  # JUMPDEST; PUSH1 0; JUMP


def _deploy_loop(url: str) -> str:
    # Init code that returns the 4-byte loop as the runtime code.
    init = "63" + _INFINITE_LOOP[2:] + "600052" + "6004601cf3"
    sent = _call(url, "eth_sendTransaction", [{"from": _ACCOUNT, "data": "0x" + init}])
    receipt = _call(url, "eth_getTransactionReceipt", [sent["result"]])["result"]
    address: str = receipt["contractAddress"]
    assert _call(url, "eth_getCode", [address, "latest"])["result"] == _INFINITE_LOOP
    return address


def test_an_infinite_loop_call_ends_with_an_error_and_reads_go_on(
    url: str, server: DevnetProcess
) -> None:
    loop_address = _deploy_loop(url)
    answered_during: list[bool] = []
    with ThreadPoolExecutor(2) as pool:
        looping: Future[dict[str, Any]] = pool.submit(
            _call, url, "eth_call", [{"to": loop_address}, "latest"]
        )
        time.sleep(0.5)  # let the call reach the EVM (the check below holds either way)
        for _ in range(3):
            balance = _call(url, "eth_getBalance", [_ACCOUNT, "latest"])
            assert int(balance["result"], 16) > 0
            answered_during.append(not looping.done())
        answer = looping.result(timeout=120)
    assert answered_during == [True] * 3, "eth_getBalance waited behind the running eth_call"
    assert answer["error"]["code"] == -32000
    message = answer["error"]["message"]
    assert "exceeds allowance" in message or "timeout" in message  # gas cap or time budget
    _legitimate_client_is_served(url, server)


def test_estimate_gas_of_an_infinite_loop_ends_with_an_error(
    url: str, server: DevnetProcess
) -> None:
    code = _call(url, "eth_estimateGas", [{"from": _ACCOUNT, "data": "0x5b600056"}])
    assert code["error"]["code"] == -32000
    _legitimate_client_is_served(url, server)


def test_a_requested_gas_over_the_cap_is_capped(url: str, server: DevnetProcess) -> None:
    answer = _call(url, "eth_call", [{"data": "0x5b600056", "gas": hex(10**12)}, "latest"])
    assert answer["error"]["code"] == -32000
    _legitimate_client_is_served(url, server)


def test_cors_answers_loopback_origins_only(url: str) -> None:
    request = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}
    local = httpx.post(url, json=request, headers={"Origin": "http://127.0.0.1:5173"}, timeout=10)
    assert local.headers.get("access-control-allow-origin") in ("*", "http://127.0.0.1:5173")
    foreign = httpx.post(url, json=request, headers={"Origin": "https://evil.example"}, timeout=10)
    assert "access-control-allow-origin" not in foreign.headers
    preflight = httpx.options(
        url,
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_the_standalone_devnet_answers_metrics() -> None:
    """`reef chain` serves through DevnetServer: its /metrics parses with prometheus-client."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from reef.chain import Devnet, serve_devnet

    server = await serve_devnet(Devnet(), host="127.0.0.1", port=0)
    try:
        async with httpx.AsyncClient() as client:
            await client.post(server.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"})
            text = (await client.get(f"{server.url}/metrics")).text
    finally:
        await server.aclose()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"reef_http_requests", "process_resident_memory_bytes"} <= names
