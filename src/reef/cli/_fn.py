"""`reef fn ...`: serverless functions. So far the local side: `reef fn new` writes a template and
`reef fn dev` runs a function in workerd on this machine with the limits an executor enforces
(deadline, memory, output size, no network), with no chain: the sandbox to try a function in
before deploying it.

Exit codes: 0 the function answered (code 0), 1 it got another verdict (timeout, syntax error,
...) or reef could not run it, 2 usage error (a bad flag value, an unreadable file).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reef.cli._common import read_file
from reef.cli._output import JsonOption, err_console, fail, note, print_json, print_mapping
from reef.errors import InputError, ReefError

if TYPE_CHECKING:
    from reef.serverless import CallResult, Limits

__all__ = ["register"]

app = typer.Typer(
    help="Serverless functions: write one, run it locally in workerd with executor limits.",
    no_args_is_help=True,
)

ENTRY = "index.js"

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
"""


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="fn")


@app.command("new")
def new(
    directory: Annotated[Path, typer.Argument(help="Directory to create the function in.")],
) -> None:
    """Write a hello function (index.js) and a README into DIRECTORY."""
    try:
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
    except ReefError as exc:
        raise fail(exc, code=2) from None
    err_console().print(f"wrote {entry}; run it with: reef fn dev {directory} --input reef")


def _source_path(target: Path) -> Path:
    if target.is_dir():
        entry = target / ENTRY
        if not entry.is_file():
            raise InputError(
                f"{target} has no {ENTRY}",
                hint=f"name the .js file itself, or create one with `reef fn new {target}`",
            )
        return entry
    return target


def _limits(
    timeout_ms: int | None, memory_mib: int | None, max_output: int | None, allow_network: list[str]
) -> Limits:
    from reef.serverless import Limits

    defaults = Limits()
    return Limits(
        timeout_ms=defaults.timeout_ms if timeout_ms is None else timeout_ms,
        memory_bytes=defaults.memory_bytes if memory_mib is None else memory_mib * 1024 * 1024,
        output_bytes=defaults.output_bytes if max_output is None else max_output,
        allow_network=tuple(allow_network),
    )


async def _run_once(source: bytes, body: bytes, limits: Limits) -> CallResult:
    from reef.home import ReefHome
    from reef.serverless import FunctionRuntime, ensure_workerd, find_workerd

    home = ReefHome.from_env()
    if find_workerd(home) is None:
        note("installing workerd from npm (once)")
    binary = await asyncio.to_thread(ensure_workerd, home)
    async with FunctionRuntime(binary, limits=limits, max_idle=0) as runtime:
        return await runtime.run(source, body)


def result_json(result: CallResult) -> dict[str, Any]:
    """The JSON form of a call's result (``reef fn dev --json``)."""
    try:
        text: str | None = result.output.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {
        "error_code": int(result.error_code),
        "error": result.error_code.description,
        "output": text,
        "output_hex": "0x" + result.output.hex(),
        "total_time_ms": result.total_time_ms,
        "status": result.status,
        "logs": result.logs,
    }


@app.command("dev")
def dev(
    target: Annotated[
        Path, typer.Argument(help=f"The function: a .js file, or a directory with {ENTRY}.")
    ],
    input_text: Annotated[
        str | None, typer.Option("--input", help="The input (request body), as text.")
    ] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input-file", help="Read the input from this file.")
    ] = None,
    timeout_ms: Annotated[
        int | None, typer.Option("--timeout-ms", help="Deadline of the call (default 5000).")
    ] = None,
    memory_mib: Annotated[
        int | None, typer.Option("--memory-mib", help="Memory cap of the call (default 256).")
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
    as_json: bool = JsonOption,
) -> None:
    """Run a function locally in workerd, with an executor's limits and no chain."""
    try:
        if input_text is not None and input_file is not None:
            raise InputError("give --input or --input-file, not both")
        body = (
            read_file(input_file) if input_file is not None else (input_text or "").encode("utf-8")
        )
        source = read_file(_source_path(target))
        limits = _limits(timeout_ms, memory_mib, max_output, allow_network or [])
    except ReefError as exc:
        raise fail(exc, code=2) from None
    try:
        result = asyncio.run(_run_once(source, body, limits))
    except ReefError as exc:
        raise fail(exc) from None
    data = result_json(result)
    if as_json:
        print_json(data)
    else:
        if result.logs:
            err_console().print(result.logs.rstrip("\n"), markup=False, highlight=False)
        shown = dict(data)
        shown.pop("logs")
        shown.pop("error")
        shown["error_code"] = f"{result.error_code.value} ({result.error_code.description})"
        if shown["output"] is not None:
            shown.pop("output_hex")
        print_mapping(shown)
    if not result.ok:
        raise typer.Exit(1)
