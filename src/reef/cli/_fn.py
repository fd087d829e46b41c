"""`reef fn ...`: serverless functions.

- local: `reef fn new` writes a template, `reef fn dev` runs a function in workerd on this machine
  with the limits an executor enforces (deadline, memory, output size, no network), no chain;
- on chain: `reef fn deploy` (the code contract; prints the codehash), `reef fn call` (opens a
  job on the Jobs contract, waits for the first signed output), `reef fn job`, `reef fn list`
  (deployed functions), `reef fn executors`.

The chain commands find the chain like every other command: ``--rpc`` / ``--jobs`` / ``--code``
flags, else ``$REEF_HOME/network.json`` (its ``services["serverless"]``, written by ``reef up``);
they send from ``--key`` or, on reef's devnet, dev account 0.

Exit codes: 0 the function answered (code 0), 1 it got another verdict (timeout, syntax error,
...) or reef could not run it, 2 usage error (a bad flag value, an unreadable file).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reef.cli._common import open_target, read_file
from reef.cli._options import Flags, Json, with_flags
from reef.cli._output import (
    fail,
    failing,
    note,
    print_json,
    print_mapping,
    print_result,
    print_rows,
    print_table,
    rusd,
    say,
    tell,
    tx_printer,
)
from reef.cli._root import command_group
from reef.errors import InputError
from reef.serverless import EXECUTOR_MEMORY_MIB, readable_logs, verdict_hint

if TYPE_CHECKING:
    from reef.serverless import (
        CallResult,
        FunctionCall,
        JobCreated,
        Limits,
    )

__all__ = ["register"]

app, register = command_group("fn")

ENTRY = "index.js"
_THREW = "Internal Server Error"  # workerd's body for a handler that threw
_MIN_MEMORY_MIB = 64  # reef.serverless.Limits' floor, in the flag's unit

TEMPLATE_JS = """\
// A reef serverless function: an ES-module worker. The caller's input is the request body;
// the response body is the output (at most 20 KiB by default).
export default {
  async fetch(request, env) {
    const name = (await request.text()) || "world";
    return new Response(`hello, ${name}!`);
  },
};
"""

TEMPLATE_README = """\
# {name}

A reef serverless function. Try it locally: `reef fn dev {path} --input reef`

On chain, with `reef up` running:

    reef fn deploy {path}               # prints its codehash
    reef fn call CODEHASH --input reef   # executors run it; prints the signed output
"""


FunctionSource = Annotated[
    Path, typer.Argument(help=f"The function: a .js file, or a directory with {ENTRY}.")
]
InputText = Annotated[
    str | None, typer.Option("--input", help="The input (request body), as text.")
]
InputFile = Annotated[
    Path | None, typer.Option("--input-file", help="Read the input from this file.")
]


@app.command("new")
def new(
    directory: Annotated[Path, typer.Argument(help="Directory to create the function in.")],
) -> None:
    """Write a hello function (index.js) and a README into DIRECTORY."""
    with failing(code=2):
        entry = directory / ENTRY
        if entry.exists():
            raise InputError(
                f"{entry} already exists", hint="choose a new directory, or edit that file"
            )
        try:
            directory.mkdir(parents=True, exist_ok=True)
            entry.write_text(TEMPLATE_JS)
            readme = directory / "README.md"
            if not readme.exists():
                readme.write_text(
                    TEMPLATE_README.format(name=directory.resolve().name, path=directory)
                )
        except OSError as exc:
            raise InputError(f"cannot write {directory}: {exc.strerror or exc}") from exc
    tell(f"wrote {entry}; run it with: reef fn dev {directory} --input reef")


_JS_SUFFIXES = (".js", ".mjs")
_NOT_LOADED = (2, 3)  # ErrorCode.CODE_NOT_DECODABLE, SYNTAX_ERROR: the code never ran


def _source_path(target: Path, *, js_only: bool = False) -> Path:
    """The function's file: ``target`` itself, or its ``index.js`` when it is a directory.

    Args:
        js_only: refuse a file whose name does not end in ``.js`` or ``.mjs`` (a deployment of
            one is paid for, and can only ever answer "does not load").

    Raises:
        InputError: there is no such file, the directory has no ``index.js``, or (``js_only``)
            the file is not named as JavaScript.
    """
    if target.is_dir():
        entry = target / ENTRY
        if not entry.is_file():
            raise InputError(
                f"{target} has no {ENTRY}",
                hint=f"name the .js file itself, or create one with `reef fn new {target}`",
            )
        return entry
    if not target.exists():
        hint = (
            f"give a function's .js file, or a directory with an {ENTRY} (`reef fn new DIR` "
            "writes one)"
        )
        if target.parts[:1] == ("examples",) and len(target.parts) > 1:
            # The docs' examples/... paths are a checkout's: elsewhere, copy the example out.
            name = "/".join(target.parts[1:3])
            hint = (
                f"the docs' examples/ paths are relative to reef's checkout: run there, or copy "
                f"the example here with `reef examples {name} ./{name.split('/')[-1]}` (`reef "
                "examples` lists them)"
            )
        raise InputError(f"{target} does not exist", hint=hint)
    if js_only and target.suffix.lower() not in _JS_SUFFIXES:
        raise InputError(
            f"{target} is not a JavaScript file (.js or .mjs)",
            hint=f"give the function's .js file, or its directory (its {ENTRY}); `reef fn new "
            "DIR` writes one, `reef fn dev FILE` tries it before you pay",
        )
    return target


def _input_body(text: str | None, path: Path | None) -> bytes:
    """The call's input: ``--input`` as UTF-8, or ``--input-file``'s bytes (empty without either).

    Raises:
        InputError: both were given, or the file cannot be read.
    """
    if text is not None and path is not None:
        raise InputError("give --input or --input-file, not both")
    return read_file(path) if path is not None else (text or "").encode("utf-8")


def _limits(
    timeout_ms: int | None, memory_mib: int | None, max_output: int | None, allow_network: list[str]
) -> Limits:
    from reef.serverless import Limits

    if memory_mib is not None and memory_mib < _MIN_MEMORY_MIB:
        # Limits counts bytes; the flag is in MiB, and so is what it says.
        raise InputError(
            f"--memory-mib must be at least {_MIN_MEMORY_MIB}, got {memory_mib}",
            hint="an idle workerd alone uses about 50 MiB; the default is "
            f"{EXECUTOR_MEMORY_MIB}, what reef up's executors give a call",
        )
    defaults = Limits()
    return Limits(
        timeout_ms=defaults.timeout_ms if timeout_ms is None else timeout_ms,
        memory_bytes=(EXECUTOR_MEMORY_MIB if memory_mib is None else memory_mib) * 1024 * 1024,
        output_bytes=defaults.output_bytes if max_output is None else max_output,
        allow_network=tuple(allow_network),
    )


async def _run_once(source: bytes, body: bytes, limits: Limits) -> CallResult:
    import asyncio

    from reef.home import ReefHome
    from reef.serverless import FunctionRuntime, ensure_workerd, find_workerd

    home = ReefHome.from_env()
    if find_workerd(home) is None:
        note("installing workerd from npm (once)")
    binary = await asyncio.to_thread(ensure_workerd, home)
    async with FunctionRuntime(binary, limits=limits, max_idle=0) as runtime:
        return await runtime.run(source, body)


def _text(output: bytes) -> str | None:
    """A function's output as text, or ``None`` when it is not UTF-8 (then only hex shows it)."""
    try:
        return output.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _print_output(data: dict[str, Any]) -> None:
    """A call's result for people: the error code with its meaning, the output as text where it
    is text (else as hex)."""
    shown = dict(data)
    shown["error_code"] = f"{shown['error_code']} ({shown.pop('error')})"
    if shown["output"] is not None:
        shown.pop("output_hex")
    if "sign_timestamp" in shown:  # signed as unix seconds: both, for reading and for checking
        from reef.node import format_time

        seconds = shown["sign_timestamp"]
        shown["sign_timestamp"] = f"{format_time(seconds)} ({seconds})"
    for money in ("deposit", "charged"):  # token base units: in rUSD too, as reef jobs says
        if money in shown:
            shown[money] = rusd(shown[money], base_units=True)
    print_mapping(shown)


def _answer_json(error_code: int, output: bytes, total_time_ms: int) -> dict[str, Any]:
    """A function's answer, local or on chain: its error code and what the code means, the
    output as text (``None`` where it is not UTF-8) and as hex, and how long it ran."""
    from reef.serverless import ErrorCode

    try:
        description = ErrorCode(error_code).description
    except ValueError:
        description = "unknown"
    return {
        "error_code": error_code,
        "error": description,
        "output": _text(output),
        "output_hex": "0x" + output.hex(),
        "total_time_ms": total_time_ms,
    }


def result_json(result: CallResult) -> dict[str, Any]:
    """The JSON form of a call's result (``reef fn dev --json``)."""
    return {
        **_answer_json(int(result.error_code), result.output, result.total_time_ms),
        "status": result.status,
        "logs": result.logs,
    }


@app.command("dev")
def dev(
    target: FunctionSource,
    input_text: InputText = None,
    input_file: InputFile = None,
    timeout_ms: Annotated[
        int | None, typer.Option("--timeout-ms", help="Deadline of the call (default 5000).")
    ] = None,
    memory_mib: Annotated[
        int | None,
        typer.Option("--memory-mib", help="Memory cap of the call (default 192, as executors)."),
    ] = None,
    max_output: Annotated[
        int | None,
        typer.Option("--max-output-bytes", help="Output cap in bytes (default 20480)."),
    ] = None,
    allow_network: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-network",
            help="Let fetch() reach these addresses ('public', 'private', 'local' or a CIDR); "
            "repeatable. Default: no network.",
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Run a function locally in workerd, with an executor's limits and no chain."""
    import asyncio

    with failing(code=2):
        body = _input_body(input_text, input_file)
        path = _source_path(target)
        source = read_file(path)
        limits = _limits(timeout_ms, memory_mib, max_output, allow_network or [])
    with failing():
        result = asyncio.run(_run_once(source, body, limits))
    data = result_json(result)
    if as_json:
        print_json(data)
    else:
        logs = readable_logs(result.logs)
        if logs:
            tell(logs)
        _print_output({k: v for k, v in data.items() if k != "logs"})
        if result.error_code in _NOT_LOADED and path.suffix.lower() not in _JS_SUFFIXES:
            tell(f"hint: {path} is not a .js file: a function is a JavaScript ES module")
        if result.status is not None and result.status >= 500 and "Uncaught" in logs:
            # Code 0 with "Internal Server Error" reads as success: say it threw.
            tell(
                "hint: the function threw (its error is above), so it answered status "
                f"{result.status}; that is still error code 0, as on Oyster: the function answered"
            )
        hint = verdict_hint(int(result.error_code), limits.timeout_ms, limits)
        if hint is not None:
            tell(f"hint: {hint}")
    if not result.ok:
        raise typer.Exit(1)


# ---- on chain ----------------------------------------------------------------------------------


@app.command("deploy")
@with_flags("rpc", "jobs", "code", "key", "as_json")
def deploy_cmd(
    flags: Flags,
    target: FunctionSource,
    name: Annotated[str | None, typer.Option("--name", help="A name kept in metadata.")] = None,
    no_check: Annotated[
        bool,
        typer.Option(
            "--no-check",
            help="Deploy without first loading it in workerd (code that does not load can only "
            "ever answer error code 3).",
        ),
    ] = False,
) -> None:
    """Deploy a function on chain; prints its codehash (the deployment's transaction hash)."""
    import json

    with failing(code=2):
        path = _source_path(target, js_only=True)
        source = read_file(path)
    if not no_check:
        _check_loads(path, source)
    with failing():
        where = open_target(flags, send=True)
        metadata = json.dumps({"name": name or _default_name(path)}).encode()
        codehash = where.code(send=True).deploy_code(source, metadata)
    data = {"codehash": codehash, "code_contract": where.code_address, "bytes": len(source)}
    print_result(data, flags.as_json)
    if not flags.as_json:
        note(f"call it with: reef fn call {codehash} --input ...")


def _check_loads(path: Path, source: bytes) -> None:
    """Refuse, before anything is paid, a function that does not load in workerd (a syntax
    error, an exception at load, no default export): deployed, it could only ever answer error
    code 3, and each call of it would still be paid for. It runs once with an empty input and
    no network, as `reef fn dev` runs it; only whether it loads counts.

    Raises:
        typer.Exit: it does not load (workerd's error and what to do are printed).
    """
    import asyncio

    from reef.serverless import Limits

    with failing():
        result = asyncio.run(_run_once(source, b"", Limits(timeout_ms=_LOAD_CHECK_MS)))
    if int(result.error_code) not in _NOT_LOADED:
        return
    logs = readable_logs(result.logs)
    if logs:
        tell(logs)
    raise fail(
        InputError(
            f"{path} does not load in workerd (error code {int(result.error_code)}: "
            f"{result.error_code.description}); deployed, every call of it would answer that",
            hint=f"fix it (`reef fn dev {path}` runs it here), or deploy it anyway with --no-check",
        )
    )


_LOAD_CHECK_MS = 500  # a module loads before its handler runs: only a load error is judged


def _default_name(path: Path) -> str:
    """A deployed function's name when ``--name`` is not given: its directory's for an
    ``index.js``, else the file's own (``fns/echo.js`` is ``echo``, not ``fns``)."""
    resolved = path.resolve()
    return resolved.parent.name if resolved.name == ENTRY else resolved.stem


def _codehash(text: str) -> str:
    """``text`` checked to be a codehash (0x and 64 hex digits), before anything is sent.

    Raises:
        InputError: it is not; a number is named as the job id it probably is.
    """
    from reef.encoding import parse_bytes32

    where = "`reef fn deploy` prints a function's codehash; `reef fn list` lists them"
    if text.strip().isdigit():
        raise InputError(
            f"{text!r} is not a codehash (0x and 64 hex digits)",
            hint=f"{where}; to read job {text.strip()}, run `reef fn job {text.strip()}`",
        )
    return "0x" + parse_bytes32(text, name="codehash", hint=where).hex()


def _call_json(call: FunctionCall) -> dict[str, Any]:
    request, response, signed = call.request, call.response, call.signed
    # The Jobs contract takes deadline x fee per ms up front and, at the first output, keeps
    # min(its time, deadline) x fee (shared by the executors that answer; a silent one's share
    # comes back after the deadline) and refunds the rest.
    fee_per_ms = request.deposit // request.deadline if request.deadline else 0
    return {
        "job_id": request.job_id,
        "exec_job_id": signed.job_id,
        **_answer_json(response.error_code, response.output, response.total_time),
        "executor": response.executor,
        "signature": "0x" + signed.signature.hex(),
        "sign_timestamp": signed.sign_timestamp,
        "chain_id": call.domain.chain_id,
        "jobs_contract": call.domain.jobs_contract,
        "deposit": request.deposit,
        "charged": min(response.total_time, request.deadline) * fee_per_ms,
    }


@app.command("call")
@with_flags("rpc", "jobs", "code", "key", "as_json")
def call_cmd(
    flags: Flags,
    codehash: Annotated[str, typer.Argument(help="The function's codehash (reef fn deploy).")],
    input_text: InputText = None,
    input_file: InputFile = None,
    timeout_ms: Annotated[
        int, typer.Option("--timeout-ms", help="The job's deadline (paid per ms).")
    ] = 5000,
) -> None:
    """Call a deployed function: open a job, wait for the first signed output, print it."""
    with failing(code=2):  # before web3 is even imported: a usage error answers at once
        codehash = _codehash(codehash)
        body = _input_body(input_text, input_file)
        if timeout_ms < 1:
            raise InputError(f"--timeout-ms must be positive, got {timeout_ms}")
    from reef.serverless import call_function

    opened: list[int] = []

    def tell_opened(request: JobCreated) -> None:
        opened.append(request.job_id)
        note(f"job {request.job_id} opened; selected {', '.join(request.selected_executors)}")

    with failing():
        where = open_target(flags, send=True)
        try:
            call = call_function(
                where.jobs(send=True),
                codehash,
                body,
                timeout_ms,
                progress=tx_printer,
                opened=tell_opened,
                code=where.code(),  # refused before paying when nothing is deployed under it
            )
        except KeyboardInterrupt:
            # The job is paid for and its executors run it anyway: say where its answer goes.
            if opened:
                tell(
                    f"interrupted: job {opened[0]} stays open (its deposit is paid) and its "
                    f"executors answer it anyway; `reef fn job {opened[0]}"
                    f"{flags.again('rpc', 'jobs')}` shows its outputs"
                )
            raise typer.Exit(130) from None
        data = _call_json(call)
    if flags.as_json:
        print_json(data)
    else:
        _print_output(data)
        if data["error_code"] == 0 and data["output"] == _THREW:
            # On chain there is no status: this body is all that says the function threw.
            tell(
                "hint: this is the body workerd answers when a function throws (status 500, "
                "still error code 0); `reef fn dev FILE --input ...` runs it here and shows the "
                "exception"
            )
        hint = verdict_hint(data["error_code"], timeout_ms, None)
        if hint is not None:
            tell(f"hint: {hint}")
    if data["error_code"] != 0:
        raise typer.Exit(1)


@app.command("job")
@with_flags("rpc", "jobs", "code", "as_json")
def job_cmd(
    flags: Flags,
    job_id: Annotated[int, typer.Argument(help="The job's id (reef fn call prints it).")],
) -> None:
    """Show a job: its deposit, selected executors and the outputs they submitted."""
    with failing():
        where = open_target(flags, send=False)
        client = where.jobs()
        job = client.job(job_id)
        if job is None:
            raise InputError(f"there is no job {job_id}", hint="`reef fn call` prints job ids")
        data = job.to_json()
        data["outputs"] = [
            {
                "executor": r.executor,
                "error_code": r.error_code,
                "output_hex": "0x" + r.output.hex(),
                "total_time_ms": r.total_time,
                "payment": r.payment,
            }
            for r in client.responses(0, job_id=job_id)
        ]
    if flags.as_json:
        print_json(data)
        return
    _print_job(data)


def _print_job(data: dict[str, Any]) -> None:
    """A job for people: its money in rUSD, its start as a time, then each output as a list of
    its own, the output as text where it is text (hex otherwise). Not a table: an output is
    often one long word (JSON), and a table folds every column to fit it, addresses included."""
    from reef.node import format_time

    shown = {k: v for k, v in data.items() if k != "outputs"}
    for money in ("deposit", "escrow"):
        shown[money] = rusd(shown[money], base_units=True)
    shown["start_time"] = f"{format_time(shown['start_time'])} ({shown['start_time']})"
    shown["outputs"] = len(data["outputs"])
    print_mapping(shown)
    for n, r in enumerate(data["outputs"], 1):
        text = _text(bytes.fromhex(r["output_hex"][2:]))
        say()
        print_mapping(
            {
                "executor": r["executor"],
                "error_code": _verdict(r["error_code"]),
                "output": r["output_hex"] if text is None else text,
                "total_time_ms": r["total_time_ms"],
                "payment": rusd(r["payment"], base_units=True),
            },
            title=f"output {n} of {len(data['outputs'])}",
        )


def _verdict(error_code: int) -> str:
    """An error code with what it means (``4 (deadline exceeded)``)."""
    from reef.serverless import ErrorCode

    try:
        return f"{error_code} ({ErrorCode(error_code).description})"
    except ValueError:
        return f"{error_code} (unknown)"


@app.command("list")
@with_flags("rpc", "jobs", "code", "as_json")
def list_cmd(flags: Flags) -> None:
    """List the functions deployed on the code contract."""
    with failing():
        where = open_target(flags, send=False)
        rows = [
            {
                "codehash": d.codehash,
                "owner": d.owner,
                "name": d.name,
                "block": d.block_number,
            }
            for d in where.code().deployments()
        ]
    print_rows(rows, ["codehash", "owner", "name", "block"], flags.as_json)


@app.command("executors")
@with_flags("rpc", "jobs", "code", "as_json")
def executors_cmd(flags: Flags) -> None:
    """List the registered executors: address, owner, stake, image id, capacity, active jobs."""
    with failing():
        where = open_target(flags, send=False)
        rows = [e.to_json() for e in where.jobs().executors()]
    if flags.as_json:
        print_json(rows)
        return
    columns = ["address", "owner", "stake", "image_id", "capacity", "active_jobs", "draining"]
    images = {row["image_id"] for row in rows}
    if len(images) == 1:
        # One image for all (as on reef up): its 66 characters once, above a table that then
        # fits a terminal of 140 columns with the addresses whole.
        print_mapping({"image_id": images.pop()})
        columns.remove("image_id")
    # A stake is token base units (as --json and `reef executor register --stake` count it):
    # people read it in rUSD.
    print_table([{**row, "stake": rusd(row["stake"])} for row in rows], columns)
