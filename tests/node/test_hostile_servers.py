"""reef as a client of hostile servers: an enclave, a provider, a prover's IVS or a JSON-RPC
node that lies.

Each test replays one attack with a real server on loopback (a raw asyncio server in a thread,
so it can send what no well-behaved framework would: an endless body, a header one byte at a
time, terminal escapes) against reef's real client, and checks that reef answers with a clear
error in bounded time and memory, never a traceback, never a wrong result.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, cast

import httpx
import pytest

from net_support import Raw, drip, ends, raw_server_in_thread
from reef.attestation import AttestationClient
from reef.errors import ServiceError

Handler = Raw
hostile_server = raw_server_in_thread
"""Each attack is served raw on loopback, in a thread (the clients here block)."""

# How long a test waits for a client that should give up by itself: far above every bound the
# clients are given here (1-2 s), far below "forever" (which is what the attacks aim at).
_LIVENESS_S = 30.0


# -- attestation documents: reef verify, reef deploy, KMS, dashboards ----------------------------

_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\nconnection: close\r\n"


async def _endless_document(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A "document" of 64 MiB (standing in for 1 GB: today's client would read it all)."""
    writer.write(_HEAD + b"\r\n")
    chunk = b"\xd2" * 65536
    for _ in range(1024):
        writer.write(chunk)
        await writer.drain()


def _drip(start: bytes, byte: bytes) -> Handler:
    """A server that sends ``start`` at once, then ``byte`` every 0.1 s for ever: each read
    comes well within any read timeout, so only a bound on the whole answer stops it."""
    return drip(start, byte=byte, every=0.1)


_dripping_body = _drip(_HEAD + b"\r\n", b"\xd2")
"""Headers at once, then the body one byte at a time."""
_dripping_head = _drip(b"HTTP/1.1 200 OK\r\nx-slow: ", b"a")
"""A status line, then a header that never ends."""


@pytest.mark.parametrize("attack", [_dripping_body, _dripping_head], ids=["body", "head"])
def test_attestation_fetch_gives_up_on_a_server_that_drips(attack: Handler) -> None:
    with hostile_server(attack) as url:
        client = AttestationClient(timeout=1.0)
        outcome = ends(lambda: client.fetch(url))
    assert isinstance(outcome, ServiceError), outcome
    assert "did not answer within 1 s" in outcome.message


@pytest.mark.parametrize("attack", [_dripping_body, _dripping_head], ids=["body", "head"])
def test_attestation_afetch_gives_up_on_a_server_that_drips(attack: Handler) -> None:
    with hostile_server(attack) as url:
        client = AttestationClient(timeout=1.0)
        outcome = ends(lambda: asyncio.run(client.afetch(url)))
    assert isinstance(outcome, ServiceError), outcome
    assert "did not answer within 1 s" in outcome.message


def test_reef_verify_against_a_dripping_server_ends_with_the_reason(authority: object) -> None:
    """The command a user runs: ``reef verify`` against a server that drips its headers ends
    after ``--timeout`` with one line saying so (exit 1), never waits for ever."""
    from typer.testing import CliRunner

    from reef.cli import app

    with hostile_server(_dripping_head) as url:
        result = ends(
            lambda: CliRunner().invoke(app, ["verify", url, "--root", "dev", "--timeout", "1"])
        )
    assert result.exit_code == 1, result.output
    assert "did not answer within 1 s" in result.output
    assert "Traceback" not in result.output


def test_attestation_errors_do_not_carry_the_servers_terminal_escapes() -> None:
    """A refusal's text is quoted in the error, which the CLI prints to the user's terminal:
    escape sequences in it (a window title, a screen clear) are shown, not obeyed."""
    body = b"\x1b]0;owned\x07\x1b[2Jbusy\r\x9b1m"

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, content=body)

    client = AttestationClient(transport=httpx.MockTransport(handler))
    with pytest.raises(ServiceError) as caught:
        client.fetch("http://h")
    message = caught.value.message
    assert "busy" in message
    assert not any(ch in message for ch in "\x1b\x07\r\x9b"), message
    assert "\\x1b]0;owned" in message


# -- a provider's control plane (reef jobs list / status) and a prover's IVS ---------------------

_JOB = "0x" + "00" * 31 + "01"


@pytest.mark.parametrize("attack", [_dripping_body, _dripping_head], ids=["body", "head"])
def test_control_plane_client_gives_up_on_a_server_that_drips(attack: Handler) -> None:
    """Any account may register a provider at any URL: one whose control plane trickles its
    answer (its head as much as its body) must not keep ``reef jobs status`` waiting."""
    from reef.chain import JobId
    from reef.market import ControlPlaneClient

    with hostile_server(attack) as url:
        client = ControlPlaneClient(url, timeout=1.0)
        outcome = ends(lambda: client.job(JobId(_JOB)))
    assert isinstance(outcome, ServiceError), outcome
    assert "took longer than 2 s" in outcome.message


@pytest.mark.parametrize("attack", [_dripping_body, _dripping_head], ids=["body", "head"])
def test_remote_ivs_gives_up_on_a_server_that_drips(attack: Handler) -> None:
    """A prover enclave reaches its IVS across the host's network, which may answer in its
    place: an answer trickled a byte at a time costs the prover an error, not its loop."""
    from reef.errors import ProofError
    from reef.proofs import RemoteInputVerifier

    with hostile_server(attack) as url:
        verifier = RemoteInputVerifier(url, timeout_s=1.0)
        # No secret key: the verifier asks the service without reading the chain first.
        outcome = ends(lambda: verifier.attest_invalid(cast(Any, None), 1, ""))
    assert isinstance(outcome, ProofError), outcome
    assert "did not answer within 2 s" in outcome.message


# -- an enclave console: reef jobs logs --------------------------------------------------------

_SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"


def _sse(*chunks: bytes, then: float | None = None) -> Handler:
    """A console stream that sends ``chunks`` and closes, or, with ``then``, sends a line every
    ``then`` seconds for ever (a console that never stops talking)."""

    async def handler(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_SSE_HEAD)
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        while then is not None:
            writer.write(b"data: tick\n\n")
            await writer.drain()
            await asyncio.sleep(then)

    return handler


def test_job_logs_write_out_terminal_escapes() -> None:
    """A console line is the tenant's text printed on the owner's terminal: an escape sequence in
    it (set the window title, clear the screen, move the cursor) is shown, not obeyed."""
    from reef.node import enclave_log_lines

    line = b"data: \x1b]0;owned\x07hello\r\x1b[2J\xc2\x9b31m\xe2\x80\xae and\tthen\n\n"
    with hostile_server(_sse(line, b"data: \xff\xfe binary\n\n")) as url:
        lines = list(enclave_log_lines(url))
    assert len(lines) == 2
    for text in lines:
        assert not any(ch in text for ch in "\x1b\x07\r\x9b\u202e"), text
    assert lines[0] == "\\x1b]0;owned\\x07hello\\x0d\\x1b[2J\\x9b31m\\u202e and\tthen"
    assert lines[1].endswith(" binary")


def test_job_logs_cut_an_endless_line() -> None:
    """A line of 32 MiB without a newline is cut at the line bound (its rest skipped), and the
    lines after it still come."""
    from reef.node import enclave_log_lines

    endless = b"data: " + b"A" * (32 << 20) + b"\ndata: after\n\n"
    with hostile_server(_sse(endless)) as url:
        lines = list(enclave_log_lines(url))
    assert len(lines) == 2
    assert len(lines[0]) < 70_000
    assert lines[0].startswith("AAAA")
    assert lines[0].endswith("(line cut)")
    assert lines[1] == "after"


def test_job_logs_without_follow_end_when_the_console_never_pauses() -> None:
    """Without --follow the command prints what the console holds and ends: a console that
    sends a line every 0.2 s (never a second's pause) does not keep it running for ever."""
    from reef.node import enclave_log_lines

    with hostile_server(_sse(then=0.2)) as url:
        outcome = ends(lambda: list(enclave_log_lines(url, history_s=1.0)))
    assert isinstance(outcome, list), outcome
    assert set(outcome) == {"tick"}


def test_job_logs_refuse_an_error_answer_and_a_bad_url() -> None:
    from reef.node import enclave_log_lines

    async def not_found(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 17\r\n\r\ndata: forged line")

    with hostile_server(not_found) as url, pytest.raises(ServiceError, match="HTTP 404"):
        list(enclave_log_lines(url))
    for bad in ("http://[::1", "file:///etc/passwd"):
        with pytest.raises(ServiceError, match="cannot read the enclave's logs"):
            list(enclave_log_lines(bad))


def test_job_logs_without_follow_give_up_on_a_head_trickled_for_ever() -> None:
    """A job's console comes through its provider: one that sends the head a byte at a time
    (each read quick, so no read timeout fires) kept `reef jobs logs` waiting for ever. The
    reading (at most ``history_s``) covers the head too, and a head not read by then is an
    error, not an empty console."""
    from reef.node import enclave_log_lines

    with hostile_server(drip()) as url:
        outcome = ends(lambda: list(enclave_log_lines(url, history_s=1.0)), _LIVENESS_S)
    assert isinstance(outcome, ServiceError), outcome
    assert "did not answer within 1 s" in outcome.message
    assert outcome.message.startswith("the enclave's logs at http://127.0.0.1:")


def test_job_logs_with_follow_give_up_on_a_head_trickled_for_ever() -> None:
    """--follow may read for hours, but its head has a deadline (``head_s``) like any answer."""
    from reef.node import enclave_log_lines

    with hostile_server(drip()) as url:
        outcome = ends(lambda: list(enclave_log_lines(url, follow=True, head_s=1.0)), _LIVENESS_S)
    assert isinstance(outcome, ServiceError), outcome
    assert "did not answer within 1 s" in outcome.message


def test_job_logs_with_follow_read_past_the_head_deadline() -> None:
    """Only the head has a deadline with --follow: a console that keeps talking is read for as
    long as it does (here past twice ``head_s``)."""
    import itertools

    from reef.node import enclave_log_lines

    with hostile_server(_sse(then=0.2)) as url:
        lines = enclave_log_lines(url, follow=True, head_s=0.5)
        outcome = ends(lambda: list(itertools.islice(lines, 6)), _LIVENESS_S)
        lines.close()
    assert outcome == ["tick"] * 6


def test_job_logs_refuse_a_compressed_console() -> None:
    """httpx inflates a whole network read at once: 64 KiB of gzip is 64 MiB in memory before
    the line bound sees it. The console is asked for uncompressed, and refused otherwise."""
    import gzip

    from reef.node import enclave_log_lines

    bomb = gzip.compress(b"data: " + b"A" * (64 << 20) + b"\n\n")
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n"
        + f"content-length: {len(bomb)}\r\n\r\n".encode()
    )

    async def compressed(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head + bomb)
        await writer.drain()

    with hostile_server(compressed) as url:
        outcome = ends(lambda: list(enclave_log_lines(url)), _LIVENESS_S)
    assert isinstance(outcome, ServiceError), outcome
    assert "'gzip' content encoding" in outcome.message


class _OneProvider:
    """The one market answer :func:`enclave_logs_url` needs: the provider's control plane."""

    def __init__(self, cp_url: str) -> None:
        self.cp_url = cp_url

    def provider(self, _address: str) -> str:
        return self.cp_url


def _job() -> Any:
    from reef.chain import Address, Amount, Job, JobId

    return Job(
        id=JobId("0x" + "00" * 31 + "07"),
        metadata="{}",
        owner=Address("0x" + "11" * 20),
        provider=Address("0x" + "22" * 20),
        rate=0,  # type: ignore[arg-type]
        balance=Amount(0),
        last_settled=0,
    )


@pytest.mark.parametrize("endpoints", [{"logs": 5}, {"logs": ["http://x"]}], ids=["number", "list"])
def test_job_logs_url_that_is_no_text_is_a_clear_error(endpoints: object) -> None:
    """A provider's ``/ip`` whose logs URL is no text (the control plane's client checks that
    ``endpoints`` is an object, not what is in it)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from net_support import serve_in_thread
    from reef.node import enclave_logs_url

    async def ip(_request: Any) -> JSONResponse:
        return JSONResponse({"ip": "127.0.0.1", "endpoints": endpoints})

    with (
        serve_in_thread(Starlette(routes=[Route("/ip", ip)])) as cp,
        pytest.raises(
            ServiceError, match="job 7's provider answered a logs endpoint that is no URL"
        ),
    ):
        enclave_logs_url(_OneProvider(cp), _job())  # type: ignore[arg-type]


# -- a JSON-RPC node that lies: the indexer (reef provider run, reef up, the proof market) ------


class _LyingNode:
    """A JSON-RPC node over an honest :class:`indexer_fakes.FakeChain` whose ``eth_getLogs``
    answers go through ``tamper`` first (batches answered too, as the indexer sends them)."""

    def __init__(
        self,
        tamper: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] = list,
        block: Callable[[dict[str, Any]], dict[str, Any]] = dict,
    ) -> None:
        from indexer_fakes import FakeChain, opened

        self.chain = FakeChain()
        self.chain.mine()
        self.chain.mine(opened(1))
        self.chain.mine()
        self.tamper = tamper
        self.block = block

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        from reef.chain._block_source import raw_log_entry  # the indexer's own reading of logs

        method, params = request["method"], request.get("params") or []
        result: Any
        if method == "eth_chainId":
            result = hex(self.chain.chain_id())
        elif method == "eth_blockNumber":
            result = hex(self.chain.head())
        elif method == "eth_getBlockByNumber":
            ref = self.chain.block(int(params[0], 16))
            honest = {"number": params[0], "hash": ref.hash, "timestamp": hex(ref.timestamp)}
            result = self.block(honest)
        elif method == "eth_getLogs":
            low, high = int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)
            logs = self.chain.logs(params[0]["address"], low, high)
            entries = [raw_log_entry(log) for log in logs]
            for entry in entries:
                entry["blockNumber"] = hex(entry["blockNumber"])
                entry["logIndex"] = hex(entry["logIndex"])
            result = self.tamper(entries)
        else:
            return {"jsonrpc": "2.0", "id": request["id"], "error": {"message": "no such method"}}
        return {"jsonrpc": "2.0", "id": request["id"], "result": result}

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def rpc(request: Request) -> JSONResponse:
            body = await request.json()
            if isinstance(body, list):
                return JSONResponse([self.answer(item) for item in body])
            return JSONResponse(self.answer(body))

        return Starlette(routes=[Route("/", rpc, methods=["POST"])])


def _index_through(
    node: _LyingNode, tmp_path: Any, decoder: Any = None
) -> tuple[Any, BaseException | None]:
    """Index the market (or a contract of ``decoder``'s events at its address) behind ``node``
    once; the indexer and what its poll raised, if any."""
    from indexer_fakes import MARKET
    from web3 import Web3

    from net_support import serve_in_thread
    from reef.chain import Indexer, Web3BlockSource

    with serve_in_thread(node.app()) as url:
        source = Web3BlockSource(Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 5})))
        indexer = Indexer(
            source, f"sqlite:///{tmp_path}/index.db", contract=MARKET, decoder=decoder
        )
        try:
            indexer.poll()
        except Exception as exc:  # the test checks what it is
            return indexer, exc
        finally:
            source.close()
    return indexer, None


def _forged(entries: list[dict[str, Any]], **fields: str) -> list[dict[str, Any]]:
    """The node's logs plus a copy of the first with ``fields`` changed (a forged event)."""
    return [*entries, *({**entry, **fields} for entry in entries[:1])]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"blockNumber": hex(10**6)}, "block 1000000, outside the blocks asked for"),
        ({"blockNumber": "-0x1"}, "block -1, outside the blocks asked for"),
        ({"logIndex": "0x" + "f" * 40}, "log index"),
        ({"logIndex": "-0x2"}, "log index"),
        ({"blockHash": "0x" + "ab" * 5000}, "block hash"),
        ({"transactionHash": "not a hash"}, "transaction hash"),
        ({}, "the same log twice"),
    ],
    ids=[
        "future-block",
        "negative-block",
        "huge-index",
        "negative-index",
        "long-hash",
        "bad-tx",
        "duplicate",
    ],
)
def test_indexer_stores_nothing_of_a_forged_log(
    tmp_path: Any, fields: dict[str, str], words: str
) -> None:
    """A node answers ``eth_getLogs`` with a log the chain does not have (of a block outside
    the range asked for, with an index no block has, a hash that is none, or twice the same):
    the poll fails with an RPCError naming it, and nothing of the range is stored."""
    from reef.errors import RPCError

    node = _LyingNode(lambda entries: _forged(entries, **fields))
    indexer, raised = _index_through(node, tmp_path)
    assert isinstance(raised, RPCError), repr(raised)
    assert words in raised.message
    assert indexer.events() == []
    assert indexer.checkpoint() is None


@pytest.mark.parametrize(
    "fields",
    [{"hash": "0x12"}, {"hash": "0x" + "ab" * 5000}, {"timestamp": hex(2**70)}],
    ids=["short-hash", "long-hash", "huge-time"],
)
def test_indexer_refuses_a_checkpoint_block_no_chain_has(
    tmp_path: Any, fields: dict[str, str]
) -> None:
    """The block that ends a range becomes the checkpoint (its hash detects reorgs, its time is
    the market's clock): a hash that is none, or a time no column holds, is refused."""
    from reef.errors import RPCError

    node = _LyingNode(block=lambda honest: {**honest, **fields})
    indexer, raised = _index_through(node, tmp_path)
    assert isinstance(raised, RPCError), repr(raised)
    assert "the node answered block 2 with hash" in raised.message
    assert indexer.checkpoint() is None
    assert indexer.events() == []


# -- a provider's control plane that lies: reef deploy -------------------------------------------


@pytest.mark.parametrize(
    "ports",
    [
        {"http": "http://127.0.0.1:1"},
        ["8000"],
        "8000",
        {"8000": 5},
        {"8000": "http://127.0.0.1:99999"},
        {"8000": "http://[::1"},
    ],
    ids=["named-port", "list", "text", "number", "port-out-of-range", "no-url"],
)
def test_deploy_refuses_app_ports_no_enclave_has(ports: object) -> None:
    """The ``ports`` of a provider's ``/ip`` (container port -> the URL that reaches it), after
    the enclave verified: anything but ports and URLs is the provider's error, said as one."""
    from reef.node import app_endpoint

    with pytest.raises(ServiceError, match="the provider answered app ports") as caught:
        app_endpoint({"ports": ports}, "7")
    assert "job 7" in caught.value.message


def test_deploy_sends_no_http_request_of_its_own() -> None:
    """``reef deploy`` reads the store, the provider and the enclave only through their bounded
    clients (upload_image, ControlPlaneClient, AttestationClient: each is replayed against a
    hostile server in these tests); an httpx call of its own would read an answer unbounded."""
    import ast
    import inspect

    from reef.node import _deploy

    tree = ast.parse(inspect.getsource(_deploy))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert not imported & {"httpx", "requests", "urllib3", "aiohttp", "http"}, imported


def test_deploy_takes_the_lowest_app_port() -> None:
    from reef.node import app_endpoint

    ports = {"9000": "http://127.0.0.1:19000", "8000": "http://127.0.0.1:18000"}
    assert app_endpoint({"ports": ports}, "7") == "http://127.0.0.1:18000"
    assert app_endpoint({}, "7") == ""
    assert app_endpoint({"ports": {}}, "7") == ""


# -- a JSON-RPC node that lies about a transaction: every command that sends one --------------


class _ReceiptForger:
    """A JSON-RPC proxy in front of a real devnet that passes everything through but the
    answers to ``method`` (receipts by default), which ``forge`` rewrites (given the honest
    one and the first one it saw)."""

    def __init__(
        self,
        upstream: str,
        forge: Callable[[Any, Any], Any],
        method: str = "eth_getTransactionReceipt",
    ) -> None:
        self.upstream = upstream
        self.forge = forge
        self.method = method
        self.first: dict[str, Any] | None = None
        self.armed = False  # receipts pass through until the test arms the forger

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def rpc(request: Request) -> JSONResponse:
            body = await request.json()
            async with httpx.AsyncClient() as http:
                answer = (await http.post(self.upstream, json=body)).json()
            if isinstance(body, dict) and body.get("method") == self.method:
                receipt = answer.get("result")
                if receipt is not None:
                    if self.first is None:
                        self.first = receipt
                    elif self.armed:
                        answer["result"] = self.forge(receipt, self.first)
            return JSONResponse(answer)

        return Starlette(routes=[Route("/", rpc, methods=["POST"])])


def _without(receipt: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in receipt.items() if k != key}


@pytest.mark.parametrize(
    ("forge", "words"),
    [
        (lambda honest, first: first, "the receipt of another transaction"),
        (lambda honest, first: _without(honest, "status"), "receipt"),
        (lambda honest, first: {**honest, "status": "0x7"}, "receipt"),
        (lambda honest, first: {**honest, "blockNumber": "0xzz"}, "receipt"),
        (lambda honest, first: ["not", "a", "receipt"], "receipt"),
    ],
    ids=["replayed", "no-status", "odd-status", "bad-block", "no-object"],
)
def test_a_forged_receipt_is_an_rpc_error(forge: Any, words: str) -> None:
    """A node answers a transaction's receipt with another transaction's (an earlier success:
    the command would report what that one did), or with one missing its status or block:
    the command fails with an RPCError, never a traceback, never another transaction's events."""
    from web3 import Web3

    from net_support import serve_in_thread
    from reef.chain import Devnet, TokenClient, dev_accounts, serve_devnet_in_thread
    from reef.errors import RPCError

    owner = dev_accounts(1)[0].local_account
    with serve_devnet_in_thread(Devnet(accounts=1)) as devnet:
        forger = _ReceiptForger(devnet.url, forge)
        with serve_in_thread(forger.app()) as url:
            w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 10}))
            token = TokenClient.deploy(w3, owner)  # its receipt is the first: passed through
            forger.armed = True
            with pytest.raises(RPCError, match=words):
                token.mint(owner.address, 1)


def test_indexer_gives_up_on_a_node_that_drips() -> None:
    """A node that drips its answer a byte every 0.1 s (each read well within the timeout):
    the poll ends with an error (the block source bounds the whole answer, 2ae310e)."""
    from indexer_fakes import MARKET
    from web3 import Web3

    from reef.chain import Indexer, Web3BlockSource

    drip = _drip(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n", b" ")
    with hostile_server(drip) as url:
        source = Web3BlockSource(Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 1})))
        indexer = Indexer(source, "sqlite://", contract=MARKET)
        outcome = ends(indexer.poll, limit=8.0)
    assert isinstance(outcome, Exception), outcome


_ESCAPES = "\x1b]0;owned\x07\x1b[2J\r\u202e"


def _has_escape(text: str) -> bool:
    return any(ch in text for ch in "\x1b\x07\r\u202e")


def test_job_status_writes_out_the_providers_terminal_escapes() -> None:
    """``reef jobs show`` and the dashboard print what the provider's ``/job`` says (its state,
    last error, reason): escape sequences in it are written out, not passed to the terminal."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from net_support import serve_in_thread
    from reef.node import job_status

    async def job(_request: Any) -> JSONResponse:
        return JSONResponse(
            {
                "phase": "done",
                "reason": f"refused{_ESCAPES}",
                "last_error": f"boom{_ESCAPES}",
                "last_restart": f"again{_ESCAPES}",
                "restarts": 1,
                "enclave": None,
            }
        )

    with serve_in_thread(Starlette(routes=[Route("/job", job)])) as cp:
        status = job_status(_OneProvider(cp), _job())  # type: ignore[arg-type]
    assert status.answered
    for text in (status.state, status.reason, status.last_error, status.last_restart):
        assert not _has_escape(text), text
    assert status.reason.startswith("refused\\x1b]0;owned")


def test_a_crash_report_writes_out_the_tenants_terminal_escapes() -> None:
    """``reef deploy`` reports an enclave that crashed at start with the provider's reason and
    the app's last console lines: the tenant's and provider's text, written out."""
    from reef.node._deploy import enclave_crash

    crash = enclave_crash(
        {
            "restarts": 2,
            "last_restart": f"x{_ESCAPES}",
            "enclave": {"state": f"crashed{_ESCAPES}"},
            "last_exit": {"reason": f"oom{_ESCAPES}", "console": [f"line{_ESCAPES}"]},
        }
    )
    assert crash is not None
    assert not _has_escape(crash.describe()), crash.describe()
    assert "line\\x1b]0;owned" in crash.describe()


_POLL_UNDER_A_MEMORY_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # 1 GiB: a poll needs far less
from web3 import Web3
from reef.chain import Indexer, Web3BlockSource
from reef.errors import ReefError
source = Web3BlockSource(Web3(Web3.HTTPProvider(sys.argv[1], request_kwargs={"timeout": 5})))
indexer = Indexer(source, "sqlite://", contract="0x" + "5a" * 20, fetch_ahead=0)
try:
    indexer.poll()
except ReefError as exc:
    print(type(exc).__name__, exc.message)
"""


@pytest.mark.parametrize("head", [2**62, 2**80], ids=["far", "past-64-bits"])
def test_indexer_survives_a_head_no_chain_has(head: int) -> None:
    """A node claims a head billions of blocks past the checkpoint: the indexer used to list
    every range up to it before reading the first (2^62 / 500 ranges: it ran out of memory,
    taking the provider's control plane with it). It now reads a bounded number of ranges per
    poll, and a head past what a block number can be is an RPCError."""
    import subprocess
    import sys

    from net_support import serve_in_thread

    node = _LyingNode()
    honest_answer = node.answer

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        if request["method"] == "eth_blockNumber":
            return {"jsonrpc": "2.0", "id": request["id"], "result": hex(head)}
        return honest_answer(request)

    node.answer = answer  # type: ignore[method-assign]
    with serve_in_thread(node.app()) as url:
        done = subprocess.run(
            [sys.executable, "-c", _POLL_UNDER_A_MEMORY_LIMIT, url],
            capture_output=True,
            text=True,
            timeout=_LIVENESS_S * 2,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("RPCError"), done.stdout


def _forged_only(forged: list[dict[str, Any]], _honest: list[dict[str, Any]]) -> list[Any]:
    return forged


def test_indexer_refuses_a_topic_that_is_no_text_in_every_event(tmp_path: Any) -> None:
    """Logs of each event type of a contract (the serverless jobs contract: some of its events
    are checked by decoding them, not by their layout) with a second topic that is a JSON
    number, not hex text: a ChainError, never a TypeError traceback, and nothing stored."""
    from reef.errors import ChainError
    from reef.serverless import serverless_jobs_decoder

    decoder = serverless_jobs_decoder()

    def forged(topic0: bytes) -> list[dict[str, Any]]:
        from indexer_fakes import MARKET

        log = {
            "address": MARKET,
            "topics": ["0x" + topic0.hex(), 7, "0x" + "00" * 32],
            "data": "0x",
            "blockNumber": "0x1",
            "blockHash": "0x" + "ab" * 32,
            "logIndex": "0x0",
            "transactionHash": "0x" + "cd" * 32,
        }
        return [log]

    for at, topic0 in enumerate(decoder.topics):
        node = _LyingNode(functools.partial(_forged_only, forged(topic0)))
        (tmp_path / str(at)).mkdir()
        indexer, raised = _index_through(node, tmp_path / str(at), decoder)
        assert isinstance(raised, ChainError), (topic0.hex(), repr(raised))
        assert indexer.events() == []


@pytest.mark.parametrize(
    ("result", "read"),
    [
        ("0xzz", "balance"),
        (None, "balance"),
        ({"a": 1}, "balance"),
        ("0x" + "00" * 31 + "20" + "ff" * 32, "name"),
    ],
    ids=["not-hex", "null", "object", "string-past-memory"],
)
def test_a_malformed_call_result_is_an_rpc_error(result: object, read: str) -> None:
    """A node answers a contract read (``eth_call``) with what no contract returns: text that
    is not hex, null, an object, a string whose length no memory holds. Each was a
    binascii/TypeError/OverflowError traceback; each is now an RPCError naming the call."""
    from web3 import Web3

    from net_support import serve_in_thread
    from reef.chain import Devnet, TokenClient, dev_accounts, serve_devnet_in_thread
    from reef.errors import RPCError

    owner = dev_accounts(1)[0].local_account
    with serve_devnet_in_thread(Devnet(accounts=1)) as devnet:
        forger = _ReceiptForger(devnet.url, lambda honest, first: result, "eth_call")
        with serve_in_thread(forger.app()) as url:
            w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 10}))
            token = TokenClient.deploy(w3, owner)
            forger.armed = True
            forger.first = {}  # every answer from now on is forged
            with pytest.raises(RPCError, match="the node answered a malformed result"):
                token.balance(owner.address) if read == "balance" else token.name()


@pytest.mark.parametrize(
    ("method", "result"),
    [("eth_estimateGas", "0xzz"), ("eth_estimateGas", None), ("eth_getTransactionCount", [])],
    ids=["gas-not-hex", "gas-null", "nonce-list"],
)
def test_a_malformed_answer_while_sending_is_an_rpc_error(method: str, result: object) -> None:
    """The node's gas estimate or nonce, which the transaction is built from, is no number:
    an RPCError naming the transaction, nothing signed or sent, never a traceback."""
    from web3 import Web3

    from net_support import serve_in_thread
    from reef.chain import Devnet, TokenClient, dev_accounts, serve_devnet_in_thread
    from reef.errors import RPCError

    owner = dev_accounts(1)[0].local_account
    with serve_devnet_in_thread(Devnet(accounts=1)) as devnet:
        forger = _ReceiptForger(devnet.url, lambda honest, first: result, method)
        with serve_in_thread(forger.app()) as url:
            w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 10}))
            token = TokenClient.deploy(w3, owner)
            forger.armed = True
            forger.first = {}
            with pytest.raises(RPCError, match=r"Token\.mint: the node answered a malformed"):
                token.mint(owner.address, 1)
            forger.armed = False
            assert token.total_supply() == 0
