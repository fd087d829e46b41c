"""reef's web3 clients against a JSON-RPC node that answers a nesting bomb, drips its answer,
or never ends it, each replayed with a real server on loopback.

Every reef command that talks to a chain goes through :func:`reef.chain.http_web3`. Importing
web3 raises Python's recursion limit to 100 000, so web3.py's own ``json.loads`` of an answer of
100 000 ``[`` was a segmentation fault: a stranger's RPC URL could kill the command, the provider
or an executor (that test runs in a child process, so that a crash fails it rather than pytest).
web3.py also read a whole answer into memory however long, and its timeout bounds each read, not
the answer.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import requests
from eth_account import Account
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from web3 import Web3

from net_support import ends, free_port, serve_in_thread
from reef.chain import (
    BoundedHTTPProvider,
    Devnet,
    MarketClient,
    deploy_contracts,
    http_web3,
    serve_devnet_in_thread,
)
from reef.chain._block_source import MAX_ANSWER_BYTES
from reef.errors import RPCError
from reef.node import connect

_CHILD = """
import sys
from reef.errors import RPCError
from reef.node import connect
try:
    connect(sys.argv[1])
except RPCError as exc:
    print(exc.message)
"""


async def _bomb(_request: Request) -> Response:
    return Response(b"[" * 100_000 + b"]" * 100_000, media_type="application/json")


def test_a_nesting_bomb_from_the_node_is_an_rpc_error_not_a_crash() -> None:
    app = Starlette(routes=[Route("/", _bomb, methods=["POST"])])
    with serve_in_thread(app) as url:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, url], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-800:]}"
        assert "cannot reach the JSON-RPC endpoint" in done.stdout
        assert "the node's answer is nested more than 64 levels deep" in done.stdout


# -- a node that drips its answer, or never ends it ----------------------------------------------

# How long a test waits for a client that should give up by itself: far above the bound the
# client is given here (a 0.5 s read, a 1 s answer), far below "for ever" (the attacks' aim).
_LIVENESS_S = 30.0
_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"


@contextlib.contextmanager
def _node(answer: Callable[[socket.socket, threading.Event], None]) -> Iterator[str]:
    """A JSON-RPC "node" on a free loopback port, in threads: it reads each request's head and
    body, then lets ``answer`` write what it likes until the block ends (then it is told to
    stop, by the event). Yields ``http://127.0.0.1:PORT``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                while length is not None and len(body) < int(length.group(1)):
                    body += conn.recv(65536)
                answer(conn, stop)
            except OSError:
                pass  # the client gave up: the point of each attack

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(10)
        listener.close()


def _drip(start: bytes, byte: bytes) -> Callable[[socket.socket, threading.Event], None]:
    """Send ``start`` at once, then ``byte`` every 0.1 s until stopped: every read comes well
    within the read timeout, so only a bound on the whole answer stops the client."""

    def drip(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(start)
        while not stop.wait(0.1):
            conn.sendall(byte)

    return drip


def _endless(conn: socket.socket, stop: threading.Event) -> None:
    """An answer that declares 10 GB and sends it as fast as the client reads."""
    conn.sendall(_HEAD + b"content-length: 10000000000\r\n\r\n[")
    chunk = b"0," * (1 << 19)
    while not stop.is_set():
        conn.sendall(chunk)


@pytest.mark.parametrize(
    "attack",
    [
        _drip(_HEAD + b"content-length: 100000\r\n\r\n", b" "),
        _drip(b"HTTP/1.1 200 OK\r\nx-slow: ", b"a"),
    ],
    ids=["body", "head"],
)
def test_a_node_that_drips_its_answer_is_given_up_on(
    attack: Callable[[socket.socket, threading.Event], None],
) -> None:
    """requests' timeout bounds each read: a node sending a byte every 20 s kept a reef command
    waiting for ever (here a byte every 0.1 s against a 0.5 s read timeout)."""
    with _node(attack) as url:
        w3 = http_web3(url, timeout=0.5)
        outcome = ends(lambda: w3.eth.chain_id, _LIVENESS_S)
    assert isinstance(outcome, RPCError), outcome
    assert url in outcome.message
    assert "did not answer in time" in outcome.message
    assert "the whole answer at most 1 s" in outcome.message
    assert "--rpc" in (outcome.hint or "")


def test_a_node_that_answers_without_end_is_cut_off() -> None:
    """web3.py read the whole answer into memory: a node answering 10 GB took 10 GB."""
    with _node(_endless) as url:
        w3 = http_web3(url, timeout=5)
        outcome = ends(lambda: w3.eth.chain_id, _LIVENESS_S)
    assert isinstance(outcome, RPCError), outcome
    assert f"{url} answered more than {MAX_ANSWER_BYTES} bytes" in outcome.message


def test_a_declared_oversize_answer_is_refused_before_it_is_read() -> None:
    """A node declaring 10 GB and then dripping is refused on its head: the client neither
    reads 256 MiB first nor waits out the deadline to learn the answer is too large."""
    with _node(_drip(_HEAD + b"content-length: 10000000000\r\n\r\n", b" ")) as url:
        w3 = http_web3(url, timeout=5)
        outcome = ends(lambda: w3.eth.chain_id, _LIVENESS_S)
    assert isinstance(outcome, RPCError), outcome
    assert f"{url} answered more than {MAX_ANSWER_BYTES} bytes" in outcome.message


def test_connect_names_the_node_that_drips() -> None:
    """``reef.node.connect`` (every reef command's first round trip) ends with the reason."""
    with _node(_drip(_HEAD + b"content-length: 100\r\n\r\n", b" ")) as url:
        outcome = ends(lambda: connect(url, timeout=0.5), _LIVENESS_S)
    assert isinstance(outcome, RPCError), outcome
    assert "cannot reach the JSON-RPC endpoint" in outcome.message
    assert "did not answer in time" in outcome.message


def test_through_requests_the_answer_is_bounded_too() -> None:
    """With options only requests understands (TLS ``verify`` here; a proxy from the environment
    or a session of one's own likewise), requests sends, and its answer is read under the same
    bounds: a declared 10 GB is refused before it is read, a dripping body ends at the deadline
    (the headers are then left to requests' per-read timeout)."""
    provider = BoundedHTTPProvider  # the class web3 is given, with requests-only options
    with _node(_endless) as url:
        w3 = Web3(provider(url, request_kwargs={"timeout": 5, "verify": False}))
        outcome = ends(lambda: w3.eth.chain_id, _LIVENESS_S)
    assert isinstance(outcome, RPCError), outcome
    assert f"{url} answered more than {MAX_ANSWER_BYTES} bytes" in outcome.message
    with _node(_drip(_HEAD + b"content-length: 100000\r\n\r\n", b" ")) as url:
        w3 = Web3(provider(url, request_kwargs={"timeout": 0.5, "verify": False}))
        outcome = ends(lambda: w3.eth.chain_id, _LIVENESS_S)
    assert isinstance(outcome, RPCError), outcome
    assert "did not answer in time" in outcome.message


# -- what still works through the bounded provider -----------------------------------------------


def test_batches_middleware_and_errors_still_work_over_http() -> None:
    """web3.py's batching, its middleware (transaction signing, formatters) and its error paths
    go through the bounded POST as before."""
    devnet = Devnet(accounts=2)
    with serve_devnet_in_thread(devnet) as server:
        w3 = http_web3(server.url)
        assert isinstance(w3.provider, BoundedHTTPProvider)
        deployer, user = (Account.from_key(a.private_key) for a in devnet.accounts)
        deployment = deploy_contracts(w3, deployer, fund=[user.address])
        market = MarketClient(w3, deployment.market, account=user)
        MarketClient(w3, deployment.market, account=deployer).add_provider("http://cp")
        job = market.open_job("{}", deployer.address, 10**12, 10**6)
        assert market.job(job).balance == 10**6
        with w3.batch_requests() as batch:
            batch.add(w3.eth.get_block(0))
            batch.add(w3.eth.get_balance(user.address))
            genesis, balance = cast(list[Any], batch.execute())
        assert genesis["number"] == 0
        assert balance == w3.eth.get_balance(user.address)
        # An HTTP error status is what it was (web3.py's callers catch requests' errors).
        with pytest.raises(requests.HTTPError, match="404"):
            http_web3(server.url + "/nowhere").eth.chain_id  # noqa: B018
    # A node that is not there: requests' ConnectionError, as before, naming it.
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(requests.ConnectionError, match=re.escape(url)):
        http_web3(url).eth.chain_id  # noqa: B018
