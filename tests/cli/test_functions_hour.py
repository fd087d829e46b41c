"""A function author's first hour and an executor operator's, followed to the letter through
``docs/serverless.md``: what tripped them up stays fixed.

- ``reef fn call 5`` (a job id where the codehash goes) or a cut-off codehash spent a dozen
  seconds on the chain, then said "an input hash is keccak256 of the input".
- ``reef fn call`` of a codehash nobody deployed paid for a job that every executor answered
  "code not found"; without the deposit it approved the token, then reverted "transfer amount
  exceeds balance"; a deadline out of the contract's bounds reverted after the approval, with
  no bounds named.
- ``reef fn deploy fns/echo.js`` named the function ``fns`` (its directory), so ``reef fn list``
  showed every function of a folder under one name.
- ``reef fn job ID`` (reading a result later) showed the outputs as one run-on cell of hex, the
  money in base units and the start as unix seconds; ``reef fn executors`` a stake of
  ``100000000``.
- ``reef fn dev --memory-mib 1`` answered in bytes; ``--allow-network 127.0.0.1`` (no prefix
  length) or a typo was "reef's failure" at the first call; a function that throws showed
  workerd's source locations, and "error_code 0 (ok)" with nothing saying it threw.
- A second ``reef executor register`` configured the executor, approved the stake, then reverted
  "the executor is already registered" with no hint.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from reef.chain import serve_devnet_in_thread
from reef.cli import app
from reef.crypto import Secp256k1PrivateKey
from reef.errors import ContractRevertError
from reef.serverless import CallResult, ErrorCode, ServerlessRevert
from serverless.chain_support import IMAGE, ServerlessChain

WIDE = {"COLUMNS": "200"}
SOURCE = "export default { async fetch(r) { return new Response('echo ' + (await r.text())); } };"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ServerlessChain, str]]:
    chain = ServerlessChain.create()
    for operator in chain.operators[:3]:
        chain.register(operator)
    with serve_devnet_in_thread(chain.devnet) as thread:
        yield chain, thread.url


def _flags(chain: ServerlessChain, url: str) -> list[str]:
    return ["--rpc", url, "--jobs", chain.jobs_address, "--code", chain.code_address]


def _key(tmp_path: Path, secret: bytes, name: str = "user.key") -> Path:
    path = tmp_path / name
    path.write_text(secret.hex())
    return path


def _job_count(chain: ServerlessChain) -> int:
    return sum(1 for e in chain.jobs().events(0) if type(e).__name__ == "JobCreated")


# ---- a codehash that is not one: refused before the chain is asked anything ------------------


def test_a_job_id_where_the_codehash_goes_is_named_as_one_without_a_network() -> None:
    # No network runs for this home: the old order asked the chain first ("no serverless
    # deployment to talk to"), the argument's mistake never came up.
    result = CliRunner().invoke(app, ["fn", "call", "5", "--input", "x"])
    assert result.exit_code == 2, result.output
    assert "'5' is not a codehash (0x and 64 hex digits)" in result.output
    assert "`reef fn job 5`" in result.output
    assert "Traceback" not in result.output


def test_a_cut_off_codehash_says_where_codehashes_come_from() -> None:
    result = CliRunner().invoke(app, ["fn", "call", "0x0677ab1dc1033a7ce3", "--input", "x"])
    assert result.exit_code == 2, result.output
    assert "codehash must be 32 bytes, got 9 bytes" in result.output
    assert "`reef fn list`" in result.output
    assert "input hash" not in result.output  # the hint of another command's argument


# ---- calls that would only cost: refused before any transaction -------------------------------


def test_calling_a_codehash_nobody_deployed_opens_no_job(
    served: tuple[ServerlessChain, str], tmp_path: Path
) -> None:
    chain, url = served
    before = _job_count(chain)
    key = _key(tmp_path, chain.users[0].key)
    result = CliRunner().invoke(
        app, ["fn", "call", "0x" + "00" * 31 + "01", *_flags(chain, url), "--key", str(key)]
    )
    assert result.exit_code == 1, result.output
    assert "no function is deployed under codehash 0x" + "00" * 31 + "01" in result.output
    assert "`reef fn list`" in result.output
    assert _job_count(chain) == before


def test_an_account_without_the_deposit_is_told_what_a_call_costs(
    served: tuple[ServerlessChain, str], tmp_path: Path
) -> None:
    chain, url = served
    codehash = chain.code(chain.users[0]).deploy_code(SOURCE.encode())
    poor = Secp256k1PrivateKey.generate()
    result = CliRunner().invoke(
        app,
        ["fn", "call", codehash, *_flags(chain, url), "--key", str(_key(tmp_path, poor.secret))],
        env=WIDE,
    )
    assert result.exit_code == 1, result.output
    # fee_per_ms 3 (the test chain's) x the default 5000 ms deadline.
    assert f"account {poor.public_key.checksum_address} holds 0 rUSD" in result.output
    assert "0.015 rUSD (15000 base units)" in result.output
    assert "reef chain accounts" in result.output
    assert "Token.approve" not in result.output  # nothing was sent


def test_an_account_with_rusd_and_no_gas_is_told_so(
    served: tuple[ServerlessChain, str], tmp_path: Path
) -> None:
    chain, url = served
    codehash = chain.code(chain.users[0]).deploy_code(SOURCE.encode())
    gasless = Secp256k1PrivateKey.generate()
    chain.token.mint(gasless.public_key.checksum_address, 10**6)
    result = CliRunner().invoke(
        app,
        ["fn", "call", codehash, *_flags(chain, url), "--key", str(_key(tmp_path, gasless.secret))],
        env=WIDE,
    )
    assert result.exit_code == 1, result.output
    assert "holds no ETH to pay the call's gas" in result.output
    assert "insufficient funds" not in result.output


def test_a_deadline_out_of_bounds_names_the_bounds_before_any_transaction(
    served: tuple[ServerlessChain, str], tmp_path: Path
) -> None:
    chain, url = served
    codehash = chain.code(chain.users[0]).deploy_code(SOURCE.encode())
    key = str(_key(tmp_path, chain.users[1].key))
    before = _job_count(chain)
    for deadline in ("50", "4000000"):
        result = CliRunner().invoke(
            app,
            ["fn", "call", codehash, "--timeout-ms", deadline, *_flags(chain, url), "--key", key],
            env=WIDE,
        )
        assert result.exit_code == 1, result.output
        assert f"a deadline of {deadline} ms is out of the Jobs contract's bounds" in result.output
        assert "100 to 60000 ms" in result.output
        assert "--timeout-ms between 100 and 60000" in result.output
        assert "ServerlessJobs" not in result.output  # no transaction was tried
    assert _job_count(chain) == before


# ---- deploy, list, and reading a result later --------------------------------------------------


def test_a_deployed_file_is_named_after_itself_not_its_folder(
    served: tuple[ServerlessChain, str], tmp_path: Path
) -> None:
    chain, url = served
    folder = tmp_path / "fns"
    folder.mkdir()
    (folder / "echo.js").write_text(SOURCE)
    (folder / "index.js").write_text(SOURCE)
    names = {}
    for target in (folder / "echo.js", folder / "index.js", folder):
        deployed = CliRunner().invoke(
            app, ["fn", "deploy", str(target), *_flags(chain, url), "--json"]
        )
        assert deployed.exit_code == 0, deployed.output
        names[target.name] = json.loads(deployed.stdout)["codehash"]
    listed = CliRunner().invoke(app, ["fn", "list", *_flags(chain, url), "--json"])
    by_hash = {row["codehash"]: row["name"] for row in json.loads(listed.stdout)}
    assert by_hash[names["echo.js"]] == "echo"
    assert by_hash[names["index.js"]] == "fns"  # a directory's index.js: the directory's name
    assert by_hash[names["fns"]] == "fns"


def test_a_job_read_later_shows_its_outputs_as_text_and_its_money_in_rusd(
    served: tuple[ServerlessChain, str],
) -> None:
    chain, url = served
    codehash = chain.code(chain.users[0]).deploy_code(SOURCE.encode())
    request, _ = chain.jobs(chain.users[0]).create_job(codehash, b"later", 1000)
    enclave = request.selected_executors[0]
    chain.jobs(chain.operators[0]).submit_output(
        chain.output(enclave, request.job_id, b"echo later", total_time=40)
    )
    shown = CliRunner().invoke(
        app, ["fn", "job", str(request.job_id), *_flags(chain, url)], env=WIDE
    )
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert "deposit             0.003 rUSD (3000 base units)" in lines  # 1000 ms x 3
    assert any(line.startswith("start_time ") and " (" in line for line in lines)
    assert "outputs             1" in lines
    start = lines.index("output 1 of 1")
    assert lines[start + 1 : start + 6] == [
        f"executor       {enclave}",
        "error_code     0 (ok)",
        "output         echo later",  # as text, not 0x6563...
        "total_time_ms  40",
        "payment        0.00006 rUSD (60 base units)",  # the first share of 40 ms x 3 per ms
    ]
    # --json is as it was: the numbers as they are, the output as hex.
    raw = json.loads(
        CliRunner()
        .invoke(app, ["fn", "job", str(request.job_id), *_flags(chain, url), "--json"])
        .stdout
    )
    assert raw["deposit"] == 3000
    assert raw["outputs"][0]["output_hex"] == "0x" + b"echo later".hex()


def test_executors_show_their_stake_in_rusd(served: tuple[ServerlessChain, str]) -> None:
    chain, url = served
    shown = CliRunner().invoke(
        app, ["fn", "executors", *_flags(chain, url)], env={"COLUMNS": "140"}
    )
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    # One image for all of them: said once, above a table of whole addresses, one line each.
    assert lines[0] == "image_id  0x" + IMAGE.hex()
    for address in chain.keys:
        row = next(line for line in lines if address in line)
        assert "5 rUSD" in row  # chain_support's stake: 5_000_000 base units
    assert "5000000" not in shown.output
    raw = CliRunner().invoke(app, ["fn", "executors", *_flags(chain, url), "--json"])
    assert {row["stake"] for row in json.loads(raw.stdout)} == {5_000_000}


# ---- reef fn dev: its flags and a function that throws ----------------------------------------


def test_dev_memory_is_refused_in_the_unit_it_was_given(tmp_path: Path) -> None:
    (tmp_path / "f.js").write_text(SOURCE)
    result = CliRunner().invoke(app, ["fn", "dev", str(tmp_path / "f.js"), "--memory-mib", "1"])
    assert result.exit_code == 2, result.output
    assert "--memory-mib must be at least 64, got 1" in result.output
    assert "bytes" not in result.output


@pytest.mark.parametrize("pattern", ["bogus", "127.0.0.1", "10.0.0.0/99"])
def test_dev_refuses_a_network_pattern_workerd_would_refuse(tmp_path: Path, pattern: str) -> None:
    (tmp_path / "f.js").write_text(SOURCE)
    result = CliRunner().invoke(
        app, ["fn", "dev", str(tmp_path / "f.js"), "--allow-network", pattern]
    )
    assert result.exit_code == 2, result.output
    assert f"invalid network pattern '{pattern}'" in result.output
    assert "192.0.2.7/32" in result.output
    assert "reef's failure" not in result.output


def test_dev_shows_a_thrown_error_as_the_error_and_says_it_threw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What workerd logs for `throw new Error("boom")` in a handler, exactly."""
    logs = (
        "about to throw\n"
        "workerd/server/server/listen/mod.rs:393: error: Uncaught exception: "
        "workerd/jsg/value.h:1456: failed: remote.jsg.Error: boom: the input was abc\n"
    )

    async def run_once(*_: Any) -> CallResult:
        output = b"Internal Server Error"
        return CallResult(ErrorCode.OK, output, 12, status=500, logs=logs)

    monkeypatch.setattr("reef.cli._fn._run_once", run_once)
    (tmp_path / "f.js").write_text(SOURCE)
    result = CliRunner().invoke(app, ["fn", "dev", str(tmp_path / "f.js")], env=WIDE)
    assert result.exit_code == 0, result.output  # a verdict of 0, as before
    assert "Uncaught Error: boom: the input was abc" in result.output
    assert "value.h" not in result.output
    assert "the function threw" in result.output
    as_json = CliRunner().invoke(app, ["fn", "dev", str(tmp_path / "f.js"), "--json"])
    assert json.loads(as_json.stdout)["logs"] == logs  # --json keeps workerd's words


# ---- an operator's second registration ---------------------------------------------------------


class _ControlPort:
    """An executor's control port as a registered executor's: ``GET /details`` answers
    ``details``; ``POST /config`` accepts the configuration it has (or any while it has none,
    naming no owner) and refuses another owner's with 409, as ``ExecutorNode`` does. Every
    request is recorded: a registration must ask nothing more once it knows."""

    def __init__(self, details: dict[str, Any]) -> None:
        self.requests: list[str] = []
        requests, body = self.requests, json.dumps(details).encode()

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, answer: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self) -> None:
                requests.append(f"GET {self.path}")
                self._send(200, body) if self.path == "/details" else self._send(404, b"{}")

            def do_POST(self) -> None:
                requests.append(f"POST {self.path}")
                sent = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if self.path != "/config":
                    self._send(404, b"{}")
                elif details.get("owner") in (None, sent["owner"]):
                    self._send(200, body)
                else:
                    self._send(409, b'{"error":"this executor is already configured for another"}')

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def test_a_second_registration_sends_nothing_on_chain_and_says_what_to_do(
    served: tuple[ServerlessChain, str], tmp_path: Path
) -> None:
    chain, url = served
    owner = chain.operators[4]
    key = Secp256k1PrivateKey.generate()
    enclave = chain.register(owner, key=key)
    control = _ControlPort(
        {
            "enclave_address": enclave,
            "public_key": "0x" + key.public_key.raw.hex(),
            "owner": owner.address,
            "configured": True,
            "jobs_contract": chain.jobs_address,
        }
    )
    try:
        mine = _key(tmp_path, owner.key, "owner.key")
        common = ["--control", control.url, "--attestation", control.url, "--verifier", url]
        again = CliRunner().invoke(
            app, ["executor", "register", *common, *_flags(chain, url), "--key", str(mine)]
        )
        assert again.exit_code == 1, again.output
        assert f"executor {enclave} is already registered, owned by you" in again.output
        assert "staking 5 rUSD" in again.output
        assert f"`reef executor drain {enclave}`" in again.output
        assert "reef executor deregister" in again.output
        # Another owner's key: the executor serves its own owner (its /config would say 409).
        theirs = _key(tmp_path, chain.operators[5].key, "other.key")
        other = CliRunner().invoke(
            app, ["executor", "register", *common, *_flags(chain, url), "--key", str(theirs)]
        )
        assert other.exit_code == 1, other.output
        assert f"already serves owner {owner.address}" in other.output
        assert "that owner's key" in other.output
        # The same configuration again (harmless), then who it is: no attestation, no
        # registration signature, nothing on chain.
        assert control.requests == ["POST /config", "GET /details"] * 2
    finally:
        control.close()


def test_a_stake_below_the_minimum_is_refused_with_the_minimum(
    served: tuple[ServerlessChain, str], tmp_path: Path
) -> None:
    chain, url = served
    fresh = Secp256k1PrivateKey.generate()
    control = _ControlPort({"enclave_address": fresh.public_key.checksum_address})
    try:
        key = str(_key(tmp_path, chain.operators[3].key, "op.key"))
        common = ["--control", control.url, "--attestation", control.url, "--verifier", url]
        result = CliRunner().invoke(
            app,
            ["executor", "register", *common, "--stake", "5", *_flags(chain, url), "--key", key],
        )
        assert result.exit_code == 1, result.output
        assert "below the Jobs contract's minimum, 1 rUSD (1000000 base units)" in result.output
        assert "--stake 1000000" in result.output
        assert control.requests == ["POST /config", "GET /details"]
    finally:
        control.close()


def test_the_already_registered_revert_says_what_to_do(served: tuple[ServerlessChain, str]) -> None:
    """A registration that races another one past the check still reverts with a hint."""
    chain, _ = served
    key = Secp256k1PrivateKey.generate()
    chain.register(chain.operators[5], key=key)
    with pytest.raises(ContractRevertError) as raised:
        chain.register(chain.operators[5], key=key)
    assert raised.value.reason == ServerlessRevert.ALREADY_REGISTERED.value
    assert raised.value.hint is not None
    assert "reef executor drain" in raised.value.hint


def test_an_executor_on_a_taken_port_names_the_flag_that_moves_it(tmp_path: Path) -> None:
    """`reef executor run` as written (gateway 8080) beside `reef up` (its control plane on
    8080): the hint named no flag."""
    key = _key(tmp_path, Secp256k1PrivateKey.generate().secret, "ecdsa.sec")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            app,
            [
                "executor",
                "run",
                "--key-file",
                str(key),
                "--workerd",
                "/bin/true",
                "--gateway-port",
                str(port),
                "--control-port",
                "0",
                "--workdir",
                str(tmp_path),
            ],
        )
    assert result.exit_code == 1, result.output
    assert f"cannot listen on 127.0.0.1:{port} for the executor gateway" in result.output
    assert "pass --gateway-port PORT (0 picks a free one)" in result.output


def test_a_file_that_is_not_javascript_is_not_deployed(tmp_path: Path) -> None:
    """Refused before the chain is asked (no network runs here): a deployment is paid for, and
    a Python file can only ever answer "does not load"."""
    (tmp_path / "main.py").write_text('print("hi")\n')
    result = CliRunner().invoke(app, ["fn", "deploy", str(tmp_path / "main.py")])
    assert result.exit_code == 2, result.output
    assert "main.py is not a JavaScript file (.js or .mjs)" in result.output
    assert "reef fn dev" in result.output
    missing = CliRunner().invoke(app, ["fn", "deploy", str(tmp_path / "nothere.js")])
    assert missing.exit_code == 2, missing.output
    assert "nothere.js does not exist" in missing.output
    assert "`reef fn new DIR`" in missing.output


def test_dev_of_a_file_that_is_not_javascript_says_so_when_it_does_not_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def run_once(*_: Any) -> CallResult:
        return CallResult(ErrorCode.SYNTAX_ERROR, b"", 40)

    monkeypatch.setattr("reef.cli._fn._run_once", run_once)
    (tmp_path / "main.py").write_text('print("hi")\n')
    result = CliRunner().invoke(app, ["fn", "dev", str(tmp_path / "main.py")], env=WIDE)
    assert result.exit_code == 1, result.output
    assert "main.py is not a .js file: a function is a JavaScript ES module" in result.output


def test_a_usage_error_of_fn_call_answers_before_web3_is_imported() -> None:
    """`reef fn call 5` took 9 to 12 s on a busy two-core machine to say the argument was wrong:
    importing web3 and eth-account (with py_ecc's pairing tables) came first."""
    script = (
        "import sys\n"
        "from reef.cli import main\n"
        "sys.argv = ['reef', 'fn', 'call', '5']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code, 'web3' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert "is not a codehash" in done.stderr
    assert done.stdout.split() == ["exit", "2", "False"]


def test_a_call_whose_function_threw_says_what_the_body_means(
    served: tuple[ServerlessChain, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On chain an answer has no status: "Internal Server Error" with code 0 read as success."""
    import reef.serverless
    from reef.cli import _fn

    chain, url = served
    answer = {**_fn._answer_json(0, b"Internal Server Error", 12), "job_id": 7}
    monkeypatch.setattr(reef.serverless, "call_function", lambda *_, **__: None)
    monkeypatch.setattr(_fn, "_call_json", lambda _: answer)
    result = CliRunner().invoke(
        app, ["fn", "call", "0x" + "11" * 32, *_flags(chain, url)], env=WIDE
    )
    assert result.exit_code == 0, result.output  # still a verdict of 0
    assert "the body workerd answers when a function throws" in result.output
    assert "reef fn dev" in result.output
    plain = {**answer, **_fn._answer_json(0, b"fine", 12)}
    monkeypatch.setattr(_fn, "_call_json", lambda _: plain)
    quiet = CliRunner().invoke(app, ["fn", "call", "0x" + "11" * 32, *_flags(chain, url)])
    assert "throws" not in quiet.output


def test_a_registration_that_would_revert_is_refused_before_the_approval(
    served: tuple[ServerlessChain, str],
) -> None:
    """An executor of another reef runtime attests another image id: the approval went out,
    then "the enclave image is not whitelisted", naming neither the image nor who whitelists."""
    from reef.errors import InputError, MarketError
    from reef.serverless._operator import _check_registrable

    chain, _ = served
    operator = chain.operators[3]
    with pytest.raises(InputError) as image:
        _check_registrable(chain.jobs(operator), operator.address, b"\x22" * 32, 1_000_000)
    assert f"image 0x{'22' * 32} is not whitelisted" in str(image.value)
    assert image.value.hint is not None
    assert chain.deployer.address in image.value.hint  # the admin who can whitelist it
    poor = Secp256k1PrivateKey.generate().public_key.checksum_address
    with pytest.raises(MarketError) as money:
        _check_registrable(chain.jobs(operator), poor, IMAGE, 1_000_000)
    assert f"account {poor} holds 0 rUSD; the stake is 1 rUSD (1000000 base units)" in str(
        money.value
    )
    _check_registrable(chain.jobs(operator), operator.address, IMAGE, 1_000_000)  # fine


def test_a_docs_example_path_outside_the_checkout_says_how_to_copy_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The docs' commands name examples/... from the checkout's root; a newcomer in a scratch
    directory got "cannot read ...: No such file or directory"."""
    monkeypatch.chdir(tmp_path)
    for target in ("examples/serverless/json-input", "examples/serverless/json-input/index.js"):
        result = CliRunner().invoke(app, ["fn", "dev", target], env=WIDE)
        assert result.exit_code == 2, result.output
        assert f"{target} does not exist" in result.output
        assert "`reef examples serverless/json-input ./json-input`" in result.output
    copied = CliRunner().invoke(app, ["examples", "serverless/json-input", "./json-input"])
    assert copied.exit_code == 0, copied.output
    assert (tmp_path / "json-input" / "index.js").is_file()  # the hint's command works
