"""Web3BlockSource over HTTP: a range's logs and its last block in one JSON-RPC batch request
(two requests for a node that refuses batches), the node's own error messages (so the indexer
still halves a refused range), and an unreachable or non-JSON-RPC endpoint as an RPCError.

The node is a JSON-RPC answerer over a scripted chain (``indexer_fakes.FakeChain``), served
over HTTP on loopback: every HTTP request the source makes is counted.
"""

from __future__ import annotations

import base64
import gc
import http.client
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from indexer_fakes import MARKET, FakeChain, deposited, opened
from web3 import Web3

from reef.chain import Indexer, Web3BlockSource
from reef.chain._block_source import LogRangeSource, raw_log_entry
from reef.errors import RPCError


@dataclass
class Node:
    """A JSON-RPC node over ``chain``: answers batches unless ``batches`` is off (then, as some
    public endpoints do, one error for the whole batch)."""

    chain: FakeChain
    batches: bool = True
    bodies: list[Any] = field(default_factory=list)  # each HTTP request's JSON body

    def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        method, params = message["method"], message["params"]
        try:
            if method == "eth_chainId":
                result: Any = hex(self.chain.chain_id())
            elif method == "eth_blockNumber":
                result = hex(self.chain.head())
            elif method == "eth_getBlockByNumber":
                number = int(params[0], 16)
                if number >= len(self.chain.blocks):
                    result = None
                else:
                    block = self.chain.block(number)
                    result = {
                        "number": hex(number),
                        "hash": block.hash,
                        "timestamp": hex(block.timestamp),
                    }
            elif method == "eth_getLogs":
                query = params[0]
                logs = self.chain.logs(
                    query["address"], int(query["fromBlock"], 16), int(query["toBlock"], 16)
                )
                result = [_json_log(log) for log in logs]
            else:
                raise AssertionError(f"unexpected {method}")
        except RPCError as exc:
            return {
                "jsonrpc": "2.0",
                "id": message["id"],
                "error": {"code": -32005, "message": exc.message},
            }
        return {"jsonrpc": "2.0", "id": message["id"], "result": result}

    def handle(self, body: Any) -> Any:
        self.bodies.append(body)
        if isinstance(body, list):
            if not self.batches:
                refusal = {"code": -32600, "message": "batch requests are not supported"}
                return {"jsonrpc": "2.0", "id": None, "error": refusal}
            # answered in reverse, as a node may: the source matches answers by id
            return [self.answer(m) for m in reversed(body)]
        return self.answer(body)


Reply = Callable[[bytes], tuple[int, bytes]]


@contextmanager
def serving(reply: Reply, *, hang_up: bool = False) -> Iterator[str]:
    """An HTTP/1.1 server on loopback answering each POST with ``reply(body)``; its URL.
    ``hang_up``: it closes each connection after answering, without saying so (as a node
    closes a kept-alive connection that stayed idle)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # connections kept alive, as a node's

        def do_POST(self) -> None:
            status, answer = reply(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            self.close_connection = hang_up

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def node_source(node: Node, *, hang_up: bool = False) -> Iterator[Web3BlockSource]:
    def reply(body: bytes) -> tuple[int, bytes]:
        return 200, json.dumps(node.handle(json.loads(body))).encode()

    with serving(reply, hang_up=hang_up) as url:
        source = Web3BlockSource(Web3(Web3.HTTPProvider(url)))
        try:
            yield source
        finally:
            source.close()


def _json_log(log: Any) -> dict[str, Any]:
    entry = raw_log_entry(log)
    entry["blockNumber"] = hex(entry["blockNumber"])
    entry["logIndex"] = hex(entry["logIndex"])
    entry["removed"] = False
    return entry


def _chain(blocks: int) -> FakeChain:
    chain = FakeChain()
    for n in range(blocks):
        chain.mine(opened(n), deposited(n, n + 1))
    return chain


def test_a_range_and_its_last_block_come_in_one_request() -> None:
    chain = _chain(6)
    node = Node(chain)
    with node_source(node) as source:
        assert isinstance(source, LogRangeSource)
        entries, last = source.log_range(MARKET, 1, 4)
        assert len(node.bodies) == 1
        assert [m["method"] for m in node.bodies[0]] == ["eth_getLogs", "eth_getBlockByNumber"]
        assert last == chain.block(4)
        assert entries == source.log_entries(MARKET, 1, 4)
        assert [(int(e["blockNumber"], 16), int(e["logIndex"], 16)) for e in entries] == [
            (b, i) for b in range(1, 5) for i in range(2)
        ]
        assert (source.chain_id(), source.head()) == (31337, 5)
        assert [source.block(n) for n in range(3)] == [chain.block(n) for n in range(3)]


def test_a_node_without_batches_gets_two_requests_from_then_on() -> None:
    chain = _chain(4)
    node = Node(chain, batches=False)
    with node_source(node) as source:
        entries, last = source.log_range(MARKET, 0, 3)
        assert (len(entries), last) == (8, chain.block(3))
        assert [isinstance(b, list) for b in node.bodies] == [True, False, False]
        source.log_range(MARKET, 0, 1)
    assert [isinstance(b, list) for b in node.bodies] == [True, False, False, False, False]


def test_the_indexer_reads_a_range_and_its_block_in_one_request(tmp_path: Path) -> None:
    chain = _chain(10)
    node = Node(chain)
    with node_source(node) as source:
        indexer = Indexer(source, f"sqlite:///{tmp_path / 'a.db'}", contract=MARKET, block_range=4)
        assert indexer.poll() == 20
    batches = [b for b in node.bodies if isinstance(b, list)]
    assert len(batches) == 3  # blocks 0-3, 4-7, 8-9
    alone = [b["method"] for b in node.bodies if isinstance(b, dict)]
    assert alone == ["eth_blockNumber", "eth_chainId"]  # no block asked for on its own
    checkpoint = indexer.checkpoint()
    assert checkpoint is not None
    assert (checkpoint.last_block, checkpoint.last_block_hash) == (9, chain.block(9).hash)


def test_a_range_the_node_refuses_in_a_batch_is_read_again_halved(tmp_path: Path) -> None:
    chain = _chain(12)
    chain.max_range = 4
    with node_source(Node(chain)) as source:
        indexer = Indexer(source, f"sqlite:///{tmp_path / 'a.db'}", contract=MARKET, block_range=8)
        assert indexer.poll() == 24
    stored = [(e.block_number, e.log_index) for e in indexer.events(limit=100)]
    assert stored == [(b, i) for b in range(12) for i in range(2)]


def test_the_nodes_error_is_the_rpc_errors_message() -> None:
    chain = _chain(3)
    chain.fail_on = {"logs": 0}
    chain.fail_message = "header not found"
    with node_source(Node(chain)) as source:
        with pytest.raises(RPCError, match="header not found"):
            source.log_range(MARKET, 0, 2)
        with pytest.raises(RPCError, match="no block"):
            source.block(7)


def test_a_connection_the_node_closed_while_idle_is_opened_again() -> None:
    chain = _chain(3)
    node = Node(chain)
    with node_source(node, hang_up=True) as source:
        assert [source.head() for _ in range(3)] == [2, 2, 2]
        assert source.log_range(MARKET, 0, 2)[1] == chain.block(2)
    assert len(node.bodies) == 4  # each answered once


def test_an_unreachable_or_foreign_endpoint_is_an_rpc_error() -> None:
    with serving(lambda body: (502, b"<html>Bad Gateway</html>")) as url:
        foreign = Web3BlockSource(Web3(Web3.HTTPProvider(url)))
        with pytest.raises(RPCError, match="HTTP 502"):
            foreign.head()
    down = Web3BlockSource(Web3(Web3.HTTPProvider(url)))  # nobody listens there any more
    with pytest.raises(RPCError, match="Connection refused") as caught:
        down.log_range(MARKET, 0, 1)
    assert caught.value.hint is not None
    assert "reachable" in caught.value.hint


def test_credentials_in_the_url_are_sent_as_basic_auth() -> None:
    seen: list[bytes] = []

    class_ok = json.dumps({"jsonrpc": "2.0", "id": 1, "result": "0x7"}).encode()
    with serving(lambda body: (200, class_ok)) as url:
        host = url.removeprefix("http://")
        source = Web3BlockSource(Web3(Web3.HTTPProvider(f"http://me:s%40cret@{host}/rpc")))
        http = source._http
        assert http is not None
        seen.append(http._headers["Authorization"].encode())
        assert source.head() == 7
        source.close()
    assert seen == [b"Basic " + base64.b64encode(b"me:s@cret")]


def test_a_provider_set_up_beyond_headers_and_timeout_stays_with_web3() -> None:
    # TLS options (here a client certificate) are the provider's session's business, and so
    # is a proxy: the source then calls through web3.py.
    w3 = Web3(Web3.HTTPProvider("http://127.0.0.1:9", request_kwargs={"cert": "client.pem"}))
    assert Web3BlockSource(w3)._http is None
    plain = Web3(Web3.HTTPProvider("http://127.0.0.1:9"))
    assert Web3BlockSource(plain)._http is not None


def test_a_source_dropped_unclosed_closes_its_connections() -> None:
    # pytest turns a socket's "unclosed" ResourceWarning into a failure of this test
    with serving(lambda body: (200, b'{"jsonrpc": "2.0", "id": 1, "result": "0x1"}')) as url:
        dropped = Web3BlockSource(Web3(Web3.HTTPProvider(url)))
        assert dropped.head() == 1
        del dropped
        gc.collect()


def test_importing_the_source_loads_no_http_client() -> None:
    """httpx (its TLS context) loads only for an https endpoint: indexing over plain HTTP, as
    against a local node, goes without it."""
    code = (
        "import sys\n"
        "from web3 import Web3\n"
        "from reef.chain._block_source import Web3BlockSource\n"
        "plain = Web3BlockSource(Web3(Web3.HTTPProvider('http://127.0.0.1:9')))\n"
        "plain._http._connection()[0].close()\n"
        "print('httpx' in sys.modules)\n"
        "tls = Web3BlockSource(Web3(Web3.HTTPProvider('https://127.0.0.1:9')))\n"
        "tls._http._connection()[0].close()\n"
        "print('httpx' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["False", "True"]


def test_an_https_endpoint_is_verified_with_httpxs_ca_bundle() -> None:
    """Over https the source checks the node's certificate and name against the CA bundle
    reef's httpx clients use (certifi's, or $SSL_CERT_FILE / $SSL_CERT_DIR)."""
    import httpx

    source = Web3BlockSource(Web3(Web3.HTTPProvider("https://127.0.0.1:9/rpc")))
    assert source._http is not None
    connection, reused = source._http._connection()
    try:
        assert not reused
        assert isinstance(connection, http.client.HTTPSConnection)
        context = connection._context  # type: ignore[attr-defined]
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
        expected = httpx.create_ssl_context().get_ca_certs()
        assert expected  # a bundle was loaded
        assert context.get_ca_certs() == expected
    finally:
        connection.close()
        source.close()
