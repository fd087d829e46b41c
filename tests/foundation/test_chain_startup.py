"""What a chain command pays before it talks to the chain: the import discipline of ``reef.chain``,
``reef.market`` and the session that every chain command opens, and the round trips it sends.

web3.py (with eth-account and py_ecc) takes about 1.5 s to import, the provider's service
(FastAPI, SQLAlchemy, uvicorn) about a second more; ``bench/cli.py`` times the commands. These
tests pin what keeps them off the paths that do not need them:

- the package facades load their modules on first use, and reef's own types and parsers
  (job numbers, amounts) load without web3;
- a chain command run where no network is known (a newcomer's first ``reef jobs list`` before
  ``reef up``) says so without importing web3, eth-account or eth-utils;
- opening a session connects without importing the provider's service;
- web3.py asks for the chain's id before every ``eth_call``: reef's provider asks once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from imports_support import loaded_after

WEB3 = {"web3", "eth_account", "py_ecc"}
SERVICES = {"fastapi", "sqlalchemy", "uvicorn", "reef.node._provider", "reef._serve"}
MARKET = "0x" + "11" * 20


def _heavy(loaded: set[str], names: set[str]) -> set[str]:
    return {name for name in names if name in loaded}


def test_the_facades_load_nothing_until_a_name_is_asked() -> None:
    loaded = loaded_after("import reef.chain, reef.market, reef.node")
    assert not _heavy(loaded, {*WEB3, *SERVICES, "eth_utils", "eth_abi", "httpx", "eth"})
    assert "reef.chain._clients" not in loaded
    assert "reef.market._control_plane" not in loaded


def test_job_numbers_and_amounts_parse_without_web3() -> None:
    code = (
        "from reef.chain import JobId, parse_amount, parse_job_id, format_amount\n"
        "assert parse_job_id('17') == JobId('0x' + '00' * 31 + '11')\n"
        "assert format_amount(parse_amount('1.5')) == '1.5'\n"
    )
    loaded = loaded_after(code)
    assert not _heavy(loaded, {*WEB3, "sqlalchemy", "eth"})


def test_a_chain_command_with_no_network_says_so_before_loading_web3() -> None:
    # The autouse fixture gives the child an empty $REEF_HOME: no network.json, no devnet.
    code = (
        "from reef.cli import app\n"
        "for argv in (['jobs', 'list'], ['wallet'], ['jobs', 'show', '3'], ['jobs', 'close', '3']):\n"
        "    try:\n"
        "        app(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 1, (argv, exc.code)\n"
        "    else:\n"
        "        raise AssertionError(argv)\n"
    )
    loaded = loaded_after(code)
    assert not _heavy(loaded, {*WEB3, *SERVICES, "eth_abi"})


def test_listing_with_no_network_loads_not_even_eth_utils() -> None:
    loaded = loaded_after(
        "from reef.cli import app\n"
        "for argv in (['jobs', 'list'], ['wallet']):\n"
        "    try:\n"
        "        app(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
    )
    assert "eth_utils" not in loaded


class _Node(BaseHTTPRequestHandler):
    """A JSON-RPC node that answers the chain id, a block number and every call with a zero
    word, and records the methods it was asked (``server.methods``)."""

    protocol_version = "HTTP/1.1"
    ANSWERS: ClassVar[dict[str, Any]] = {
        "eth_chainId": "0x7a69",
        "eth_getBlockByNumber": {"number": "0x1", "hash": "0x" + "00" * 32, "timestamp": "0x10"},
        "eth_blockNumber": "0x1",
        "eth_call": "0x" + "00" * 32,
    }

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        requests = body if isinstance(body, list) else [body]
        answers = []
        for request in requests:
            self.server.methods.append(request["method"])  # type: ignore[attr-defined]
            answers.append(
                {"jsonrpc": "2.0", "id": request["id"], "result": self.ANSWERS[request["method"]]}
            )
        data = json.dumps(answers if isinstance(body, list) else answers[0]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def node() -> Iterator[tuple[str, list[str]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Node)
    server.methods = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.methods  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_opening_a_session_does_not_import_the_providers_service(
    node: tuple[str, list[str]],
) -> None:
    url, methods = node
    code = (
        "from reef.home import ReefHome\n"
        "from reef.node import open_session\n"
        f"session = open_session(ReefHome.from_env(), rpc={url!r}, market={MARKET!r},"
        " need_account=False)\n"
        "assert session.account is None and session.rpc_url.startswith('http')\n"
    )
    loaded = loaded_after(code)
    # It did connect (the chain id, below), through reef's transport: web3.py, eth-account and
    # eth-utils load when a command first uses session.w3 or signs (was: web3 at connect).
    assert not _heavy(loaded, {*SERVICES, *WEB3, "eth_utils", "eth_abi"})
    assert methods == ["eth_chainId"]


def test_a_sessions_web3_client_and_signer_are_built_when_first_used(
    node: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, methods = node
    key = tmp_path / "owner.key"
    key.write_text("11" * 32)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from reef.home import ReefHome\n"
        "from reef.node import open_session\n"
        f"session = open_session(ReefHome.from_env(), rpc={url!r}, market={MARKET!r},"
        f" key=Path({str(key)!r}))\n"
        "assert 'web3' not in sys.modules and 'eth_account' not in sys.modules\n"
        "address = session.address\n"
        "assert 'eth_account' not in sys.modules\n"
        # The address reef computed from the key is eth-account's.
        "assert session.account is not None and session.account.address == address\n"
        "assert session.w3.eth.chain_id == 31337\n"
        "assert session.now() > 0\n"
    )
    loaded = loaded_after(code)
    assert {"web3", "eth_account"} <= loaded
    # Connecting asked the id once; the web3 client asks it once more when built and used.
    assert methods == ["eth_chainId", "eth_chainId", "eth_getBlockByNumber"]


def test_the_chain_id_is_asked_once_not_before_every_call(node: tuple[str, list[str]]) -> None:
    from reef.chain import http_web3

    url, methods = node
    w3 = http_web3(url, timeout=5)
    for _ in range(3):
        assert w3.eth.call({"to": MARKET, "data": b""}) == bytes(32)
    assert w3.eth.chain_id == 31337
    assert methods == ["eth_chainId", "eth_call", "eth_call", "eth_call"]


def test_a_jobs_owner_reads_metadata_and_asks_its_provider_without_the_server_stack() -> None:
    # reef jobs list/show parse each job's metadata and ask its provider's control plane:
    # neither needs FastAPI, uvicorn or the provider's SQLAlchemy models.
    code = (
        "from reef.market import ControlPlaneClient, JobMetadata, JobPolicy, RateCard\n"
        "ControlPlaneClient('http://127.0.0.1:9')\n"
        "JobMetadata.parse(JobMetadata(instance='dev.small', region='local', memory=1024,"
        " vcpu=1, url='http://store/x').to_json())\n"
    )
    loaded = loaded_after(code)
    assert not _heavy(loaded, {"fastapi", "uvicorn", "sqlalchemy", "starlette", "reef._api"})
    assert "reef.market._cp_app" not in loaded


def test_addresses_and_market_events_decode_without_eth_utils() -> None:
    # EIP-55 from reef.crypto.keccak256 (tests/foundation/test_eip55.py holds it to eth-utils).
    code = (
        "from reef.chain import market_decoder, parse_address\n"
        "assert parse_address('0x' + 'ab' * 20) == '0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB'\n"
        "market_decoder()\n"
    )
    loaded = loaded_after(code)
    assert not _heavy(loaded, {*WEB3, "eth_utils"})


def test_a_devnets_records_and_deployment_read_without_web3() -> None:
    # The session reads devnet.json to find the chain: the dev accounts and the deployment it
    # names are plain data (eth-account loads when a key is derived or a signer built).
    code = (
        "from reef.chain import Deployment\n"
        "from reef.chain.devnet import DevAccount, DevnetInfo, read_devnet_info\n"
        "d = Deployment.from_json({'chain_id': 31337, 'block': 1, 'token': '0x' + '11' * 20,"
        " 'market': '0x' + '22' * 20, 'kms_registry': '0x' + '33' * 20})\n"
        "assert d.market == '0x' + '22' * 20\n"
    )
    loaded = loaded_after(code)
    assert not _heavy(loaded, {*WEB3, "eth_utils", "eth_abi"})


@pytest.fixture(scope="module")
def devnet_jobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """``reef jobs`` flags for reef's devnet served over JSON-RPC, with two open jobs of dev
    account 0 whose provider's control plane is a closed port."""
    import socket

    from reef.chain import serve_devnet_in_thread
    from reef.market import RateCard
    from reef.testing import dev_market

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    market = dev_market(control_plane=f"http://127.0.0.1:{closed}", fund=[0])
    rate = RateCard.dev().lookup("local", "dev.small").min_rate
    jobs = [market.open_job(rate, 360_000) for _ in range(2)]
    key = market.write_key(tmp_path_factory.mktemp("keys") / "owner.key")
    with serve_devnet_in_thread(market.devnet) as rpc:
        where = ["--rpc", rpc.url, "--market", market.deployment.market]
        yield [*where, "--key", str(key), "--show", str(int(jobs[-1], 16))]


def test_listing_and_showing_jobs_on_a_devnet_load_no_web3(devnet_jobs: list[str]) -> None:
    # reef jobs list / show only read: through the session's reader (reef's JSON-RPC transport,
    # reef's ABI word decoder), never web3.py, eth-account, eth-utils or eth-abi.
    *where, flag, show = devnet_jobs
    assert flag == "--show"
    rpc_market, key = where[:4], where[4:]
    code = (
        "import json, sys, io, contextlib\n"
        "from reef.cli import app\n"
        "for argv in ("
        f"['jobs', 'list', '--json', *{rpc_market + key!r}],"
        f" ['jobs', 'show', {show!r}, '--json', *{rpc_market!r}]):\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            app(argv)\n"
        "        except SystemExit as exc:\n"
        "            assert exc.code in (0, None), (argv, exc.code)\n"
        "    answer = json.loads(out.getvalue())\n"
        "    rows = answer if isinstance(answer, list) else [answer]\n"
        "    assert rows and all(row['instance'] == 'dev.small' for row in rows), rows\n"
        "    assert all('cannot be reached' in row['provider_state'] for row in rows), rows\n"
    )
    loaded = loaded_after(code)
    assert not _heavy(loaded, {*WEB3, *SERVICES, "eth_utils", "eth_abi", "requests"})


def test_the_wallet_on_a_devnet_loads_no_web3(devnet_jobs: list[str]) -> None:
    # reef wallet only reads: the ETH balance (eth_getBalance) and the token's balanceOf through
    # the session's reader, the owner's jobs as reef jobs list finds them (was: web3.py, 2.2 s).
    *where, flag, _show = devnet_jobs
    assert flag == "--show"
    code = (
        "import json, io, contextlib\n"
        "from reef.cli import app\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n"
        f"        app(['wallet', '--json', *{where!r}])\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code in (0, None), exc.code\n"
        "answer = json.loads(out.getvalue())\n"
        "assert answer['open_jobs'] == 2 and len(answer['jobs']) == 2, answer\n"
        "assert answer['rusd'] != '0' and answer['eth'] != '0', answer\n"
        "assert answer['address'] == '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266', answer\n"
    )
    loaded = loaded_after(code)
    assert not _heavy(loaded, {*WEB3, *SERVICES, "eth_utils", "eth_abi", "requests"})
