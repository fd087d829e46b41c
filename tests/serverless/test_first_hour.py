"""A function author's first hour, replayed: the mistakes a new user made on a fresh ``reef up``
(a path that is not a function, a function that passes a limit, Ctrl-C while a paid job runs, a
Jobs address that is some other contract), each with what reef now says about it.

The chain commands run against stand-ins for the chain (``open_target`` and ``call_function``
replaced), so they need no network; ``reef fn dev`` runs the real workerd."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from reef.chain import Address
from reef.cli import _fn, app
from reef.errors import ChainError
from reef.serverless import (
    FunctionCall,
    JobCreated,
    JobResponded,
    JobsDomain,
    ServerlessJobsClient,
    SignedOutput,
)
from serverless.chain_support import PARAMS, ServerlessChain

CODEHASH = "0x" + "ab" * 32
EXECUTOR = Address("0x" + "ee" * 20)
REQUEST = JobCreated(
    address=Address("0x" + "11" * 20),
    block_number=7,
    log_index=0,
    tx_hash="0x" + "00" * 32,
    job_id=6,
    env=1,
    owner=Address("0x" + "aa" * 20),
    codehash=bytes.fromhex(CODEHASH[2:]),
    code_inputs=b"",
    deadline=1000,
    deposit=1000,
    selected_executors=(EXECUTOR,),
)


def reef(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def answered(error_code: int, total_time: int = 57) -> FunctionCall:
    """A call whose first output has ``error_code`` (and, as every code but 0, no output)."""
    response = JobResponded(
        address=REQUEST.address,
        block_number=8,
        log_index=0,
        tx_hash="0x" + "00" * 32,
        job_id=REQUEST.job_id,
        executor=EXECUTOR,
        output=b"",
        total_time=total_time,
        error_code=error_code,
        output_count=1,
        payment=total_time,
    )
    signed = SignedOutput(
        job_id=REQUEST.job_id,
        codehash=REQUEST.codehash,
        input_hash=b"\x00" * 32,
        output=b"",
        total_time=total_time,
        error_code=error_code,
        sign_timestamp=1,
        signature=b"\x01" * 65,
    )
    domain = JobsDomain(chain_id=31337, jobs_contract=REQUEST.address)
    return FunctionCall(request=REQUEST, response=response, signed=signed, domain=domain)


class Target:
    """What ``open_target`` gives a command: the clients are never used by the stand-in call."""

    def jobs(self, send: bool = False) -> object:
        return object()

    def code(self, send: bool = False) -> object:
        return object()


@pytest.fixture
def chain_call(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace the chain: ``reef fn call`` then runs the behaviour appended to the list."""
    behaviour: list[Any] = []

    def call_function(*args: Any, opened: Any = None, **kwargs: Any) -> FunctionCall:
        return behaviour[0](opened)

    monkeypatch.setattr(_fn, "open_target", lambda flags, send: Target())
    monkeypatch.setattr("reef.serverless.call_function", call_function)
    return behaviour


def test_the_template_readme_says_how_to_go_on_chain(tmp_path: Path) -> None:
    """`reef fn new`'s README said how to run the function locally, and no more."""
    target = tmp_path / "myfn"
    assert reef("fn", "new", str(target)).exit_code == 0
    readme = (target / "README.md").read_text()
    assert f"    reef fn deploy {target} " in readme
    assert "    reef fn call CODEHASH --input reef " in readme


# ---- the wrong file ------------------------------------------------------------------------------


def test_a_missing_function_file_gets_the_whole_hint(tmp_path: Path) -> None:
    """The hint was cut at "(`reef fn new DIR` ": its end was a statement of its own."""
    result = reef("fn", "deploy", str(tmp_path / "nope.js"))
    assert result.exit_code == 2
    assert "(`reef fn new DIR` writes one)" in result.stderr


def test_a_readme_given_to_deploy_is_not_suggested_to_dev(tmp_path: Path) -> None:
    """`reef fn deploy myfn/README.md` told the user to try `reef fn dev myfn/README.md`."""
    (tmp_path / "index.js").write_text("export default { async fetch() {} };")
    readme = tmp_path / "README.md"
    readme.write_text("# myfn")
    result = reef("fn", "deploy", str(readme))
    assert result.exit_code == 2
    assert "is not a JavaScript file" in result.stderr
    assert f"reef fn dev {readme}" not in result.stderr
    assert "its directory (its index.js)" in result.stderr


# ---- a function past a limit, locally ------------------------------------------------------------


@pytest.mark.node
@pytest.mark.parametrize(
    ("source", "args", "code", "hint"),
    [
        (
            'export default { async fetch() { return new Response("x".repeat(100000)); } };',
            ["--max-output-bytes", "1000"],
            5,
            "hint: its output passed --max-output-bytes (1000); reef up's executors keep at "
            "most 20480 bytes",
        ),
        (
            "export default { async fetch() { while (true) {} } };",
            ["--timeout-ms", "300"],
            4,
            "hint: it ran past --timeout-ms (300 ms)",
        ),
    ],
)
def test_dev_says_which_limit_the_function_passed(
    tmp_path: Path, workerd: Path, source: str, args: list[str], code: int, hint: str
) -> None:
    """Codes 5 and 4 came with no word of the cap, or of the flag that sets it."""
    path = tmp_path / "fn.js"
    path.write_text(source)
    result = reef("fn", "dev", str(path), *args)
    assert result.exit_code == 1
    assert f"error_code     {code} " in result.stdout
    assert hint in result.stderr


# ---- a call's verdict, and Ctrl-C ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (3, "`reef fn dev FILE` shows workerd's error; deploy the fixed file"),
        (4, "it ran past the job's deadline (1000 ms, paid in full): pass a longer --timeout-ms"),
        (5, "reef up's executors keep at most 20480 bytes of a function's output"),
        (6, "reef up's executors give a function 192 MiB"),
    ],
)
def test_a_call_that_fails_says_what_to_do(chain_call: list[Any], code: int, hint: str) -> None:
    """On chain a failed call printed its code and nothing else to go on."""
    chain_call.append(lambda opened: answered(code))
    result = reef("fn", "call", CODEHASH, "--timeout-ms", "1000")
    assert result.exit_code == 1
    assert f"error_code      {code} " in result.stdout
    assert hint in result.stderr
    as_json = reef("fn", "call", CODEHASH, "--timeout-ms", "1000", "--json")
    assert json.loads(as_json.stdout)["error_code"] == code  # stdout stays JSON alone


def test_ctrl_c_after_the_job_opened_says_the_job_goes_on(chain_call: list[Any]) -> None:
    """Ctrl-C while waiting for the output ended the command without a word: the user had paid
    and did not know the job ran on, nor how to read its answer."""

    def interrupted(opened: Any) -> FunctionCall:
        opened(REQUEST)
        raise KeyboardInterrupt

    chain_call.append(interrupted)
    result = reef("fn", "call", CODEHASH)
    assert result.exit_code == 130
    assert "interrupted: job 6 stays open" in result.stderr
    assert "`reef fn job 6` shows its outputs" in result.stderr


def test_ctrl_c_before_any_job_says_nothing_of_one(chain_call: list[Any]) -> None:
    def interrupted(opened: Any) -> FunctionCall:
        raise KeyboardInterrupt

    chain_call.append(interrupted)
    result = reef("fn", "call", CODEHASH)
    assert result.exit_code == 130
    assert "job" not in result.stderr


# ---- the wrong network ---------------------------------------------------------------------------


def test_a_jobs_address_that_is_another_contract_is_named() -> None:
    """`reef fn call --jobs <the token's address>` said "FEE_PER_MS reverted without a reason"
    with the hint "an argument may be out of the contract's bounds" (it takes none); `reef fn
    job` and `reef fn executors` the same of jobInfo and executorCount."""
    chain = ServerlessChain.create(PARAMS)
    token = chain.jobs().token_address()
    wrong = ServerlessJobsClient(chain.w3, token)
    for read in (wrong.params, lambda: wrong.job(1), wrong.executor_addresses):
        with pytest.raises(ChainError) as caught:
            read()
        assert f"{token} is not a ServerlessJobs contract" in str(caught.value)
        assert "--jobs" in (caught.value.hint or "")
    assert chain.jobs().params() == PARAMS  # the real one still reads


# ---- code that does not load -----------------------------------------------------------------


@pytest.mark.node
def test_code_that_does_not_load_is_not_deployed(
    tmp_path: Path, workerd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reef fn deploy syntax.js` paid for a deployment that could only ever answer code 3
    (and each call of it was charged); the mistake showed only at the first call."""
    reached: list[bool] = []

    class Code:
        address = "0x" + "cc" * 20

        def deploy_code(self, source: bytes, metadata: bytes) -> str:
            reached.append(True)
            return CODEHASH

    class Deployable(Target):
        code_address = Code.address

        def code(self, send: bool = False) -> Code:  # type: ignore[override]
            return Code()

    monkeypatch.setattr(_fn, "open_target", lambda flags, send: Deployable())
    broken = tmp_path / "broken.js"
    broken.write_text('export default { async fetch() { return new Response("x" } };')
    refused = reef("fn", "deploy", str(broken))
    assert refused.exit_code == 1
    assert "SyntaxError" in refused.stderr  # workerd's own error, as `reef fn dev` shows it
    assert f"{broken} does not load in workerd (error code 3" in refused.stderr
    assert "--no-check" in refused.stderr
    assert reached == []  # nothing was sent
    anyway = reef("fn", "deploy", str(broken), "--no-check", "--json")
    assert anyway.exit_code == 0, anyway.output
    endless = tmp_path / "endless.js"
    endless.write_text("export default { async fetch() { while (true) {} } };")
    loads = reef("fn", "deploy", str(endless), "--json")  # it loads: what it does is its own
    assert loads.exit_code == 0, loads.output
    assert json.loads(loads.stdout)["codehash"] == CODEHASH
    assert reached == [True, True]


def test_dev_gives_a_call_the_memory_reef_ups_executors_give() -> None:
    """`reef fn dev` ran a call with 256 MiB where reef up's executors give 192 (their
    reef.toml): a function between the two passed here and failed with code 6 on chain."""
    toml = Path(__file__).resolve().parents[2] / "examples" / "serverless-executor" / "reef.toml"
    command = tomllib.loads(toml.read_text())["command"]
    executors = int(command[command.index("--memory-mib") + 1])
    limits = _fn._limits(None, None, None, [])
    assert limits.memory_bytes == executors * 1024 * 1024
    assert _fn._limits(None, 300, None, []).memory_bytes == 300 * 1024 * 1024  # as given
