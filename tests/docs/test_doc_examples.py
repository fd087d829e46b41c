"""Every `reef …` command in README.md and docs/*.md runs, or says why it cannot (issue 12, item 7).

The collector reads each fenced code block: in a block with ``$`` prompts the prompted lines are
commands (the rest is output); in a block without prompts every line that starts with ``reef``
is one (``\\`` continues a line). A command is **not runnable** when the nearest non-blank line
before its block is ``<!-- not-runnable: reason -->``, or when it ends with the comment
``# not runnable: reason``. Every other command runs, in document order, in bash (``-e -o
pipefail``) against one real ``reef up``, each file in its own directory holding the public
vectors' files (``aws.bin``, ``tdx_quote``, …), ``examples/``, ``../shared/vectors`` and
``admin.key`` (dev account 0's key: the rotation admin of ``reef up``'s KMS root).

What a command must exit with: 0, or the code it documents: a trailing comment naming ``exit N``,
or a command ending in ``; echo $?`` whose block shows the code as the next bare number.

Values that only exist at run time (a job's number, an enclave's id or attestation port, the
network's KMS) are written in the docs as they appeared when the example was recorded; the one
table :data:`SUBSTITUTIONS` maps each to what this run printed (the last ``reef deploy`` or
``reef enclave run`` of the same file, or ``reef up``'s network).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from e2e_support import Network, start_network, stop_network  # noqa: E402

from reef.chain import read_devnet_info  # noqa: E402
from reef.home import ReefHome  # noqa: E402

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# Docs whose commands belong to another area and are not marked yet: listed here, with the
# reason, so that the gap is visible rather than silently skipped.
PENDING: dict[str, str] = {}

# literal as the docs show it -> what to run instead ({key}: a value this run printed).
SUBSTITUTIONS: dict[str, dict[str, str]] = {
    "README.md": {
        "127.0.0.1:59083": "{attestation_host}",
        "jobs stop 0": "jobs stop {job}",
        "127.0.0.1:1100": "{kms_scallop}",
        "http://127.0.0.1:1101": "{kms_public}",
        " ID": " {id}",
    },
    "docs/enclave.md": {
        "127.0.0.1:45667": "{attestation_host}",
        "127.0.0.1:<port>": "{attestation_host}",
        "4b4d0023e02f": "{id}",
    },
    "docs/kms.md": {"http://127.0.0.1:1101": "{kms_public}"},
    "docs/market.md": {
        "http://127.0.0.1:40719": "http://{attestation_host}",
        "~/.reef": "{home}",
        "jobs stop 0": "jobs stop {job}",
        "jobs close 0": "jobs close {job}",
    },
}

PLACEHOLDER = re.compile(r"\b(?:HEX|ADDR|JOB|ID|FILE|PATH|ENDPOINT|DIR|URL)\b|<[a-z ]+>|…")
_NOT_RUNNABLE_BLOCK = re.compile(r"<!--\s*not-runnable:\s*(.+?)\s*-->")
_NOT_RUNNABLE_LINE = re.compile(r"\bnot runnable:\s*(.+)$")
_EXIT = re.compile(r"\bexit (\d+)\b")
_HOST_PORT = re.compile(r"127\.0\.0\.1:\d+")
_KEY = re.compile(r"\{([a-z_]+)\}")  # {1..48} (bash) is not a key


@dataclass(frozen=True)
class Command:
    doc: str  # path relative to the repository
    line: int
    text: str  # as written, continuation lines joined
    comment: str  # the trailing comment, if any
    skip: str | None  # why it is not runnable
    expect: int

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def shell(self) -> str:
        """The command without its comment and without a trailing ``; echo $?``."""
        return self.text.removesuffix("; echo $?").strip()


def _split_comment(line: str) -> tuple[str, str]:
    """``cmd  # comment`` -> (cmd, comment), ignoring ``#`` inside quotes or words."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def _blocks(text: str) -> Iterator[tuple[int, list[tuple[int, str]], str | None]]:
    """(first line number, [(line number, line)], not-runnable reason) per fenced block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = _NOT_RUNNABLE_BLOCK.search(before)
            body: list[tuple[int, str]] = []
            i += 1
            while i < len(lines) and not lines[i].lstrip().startswith("```"):
                body.append((i + 1, lines[i]))
                i += 1
            yield body[0][0] if body else i, body, marker.group(1) if marker else None
        i += 1


def collect(path: Path) -> list[Command]:
    doc = str(path.relative_to(REPO))
    found: list[Command] = []
    for _start, body, block_skip in _blocks(path.read_text()):
        prompted = any(line.lstrip().startswith("$ ") for _, line in body)
        k = 0
        while k < len(body):
            number, line = body[k]
            stripped = line.strip()
            if prompted:
                if not stripped.startswith("$ "):
                    k += 1
                    continue
                stripped = stripped[2:].strip()
            if not re.match(r"reef(\s|$)", stripped):
                k += 1
                continue
            while stripped.endswith("\\") and k + 1 < len(body):
                k += 1
                stripped = stripped[:-1].rstrip() + " " + body[k][1].strip()
            command, comment = _split_comment(stripped)
            expect = 0
            if command.endswith("; echo $?"):
                following = [text.strip() for _, text in body[k + 1 :]]
                expect = next((int(t) for t in following if t.isdigit()), 0)
            elif found_exit := _EXIT.search(comment):
                expect = int(found_exit.group(1))
            line_skip = _NOT_RUNNABLE_LINE.search(comment)
            skip = block_skip or (line_skip.group(1) if line_skip else None)
            found.append(Command(doc, number, command, comment, skip, expect))
            k += 1
    return found


def _all_commands() -> list[Command]:
    return [c for path in DOCS for c in collect(path)]


def _substituted(command: Command) -> str:
    text = command.shell
    for literal, value in SUBSTITUTIONS.get(command.doc, {}).items():
        text = text.replace(literal, value)
    return text


def test_the_collector_finds_the_documented_commands() -> None:
    commands = _all_commands()
    assert len(commands) > 50
    texts = {c.text for c in commands}
    assert "reef deploy examples/hello --duration 1h" in texts
    assert any(c.expect == 1 and "echo $?" in c.text for c in commands)
    assert all(not c.text.startswith("reef devnet ") for c in commands)  # output, not a command


def test_every_command_is_runnable_or_says_why_not() -> None:
    """Cheap half of the check: an unmarked command has no placeholder the table leaves open."""
    problems = []
    for command in _all_commands():
        if command.doc in PENDING:
            continue
        if command.skip is not None:
            if not command.skip.strip():
                problems.append(f"{command.where}: a not-runnable marker without a reason")
            continue
        left = PLACEHOLDER.findall(_substituted(command))
        if left:
            problems.append(
                f"{command.where}: `{command.text}` has placeholders {left}: substitute them "
                "(SUBSTITUTIONS in this test) or mark it `# not runnable: why`"
            )
    assert not problems, "\n".join(problems)


# -- running them ----------------------------------------------------------------------------


def _vectors() -> Path | None:
    env = os.environ.get("REEF_VECTORS")
    path = Path(env) if env else REPO.parent / "shared" / "vectors"
    return path if path.is_dir() else None


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    # docs/market.md runs `reef jobs stop` then `reef jobs close` "too early": the second must
    # start before the rate lock ends. Each is a new CLI process (about 4 s of imports, web3's
    # mostly, on a slow 2-core machine), so a 5 s lock had ended by then and close succeeded.
    net = start_network(tmp_path_factory.mktemp("docs-up"), extensions=True, rate_lock_s=20)
    try:
        yield net
    finally:
        # Enclaves the docs start by hand (`reef enclave run`) are not the provider's.
        for enclave in net.cli.json("enclave", "ps"):
            net.cli.run("enclave", "stop", enclave["id"], check=False)
        stop_network(net)


def _workdir(root: Path, doc: str, vectors: Path | None, admin_key: str) -> Path:
    shared = root / "shared"
    if vectors is not None and not shared.exists():
        shared.mkdir()
        (shared / "vectors").symlink_to(vectors)
    work = root / doc.replace("/", "_")
    work.mkdir()
    (work / "examples").symlink_to(REPO / "examples")
    (work / "admin.key").write_text(admin_key)  # `reef kms rotate … < admin.key`
    if vectors is not None:
        for area in ("nitro", "dcap", "noise"):
            for file in sorted((vectors / area).iterdir()):
                if not (work / file.name).exists():
                    (work / file.name).symlink_to(file)
    return work


def _learn(context: dict[str, str], stdout: str) -> None:
    """Remember what a command printed: JSON leaves, or ``key  value`` lines."""
    try:
        data: Any = json.loads(stdout)
    except ValueError:
        data = None
    if isinstance(data, Mapping):

        def walk(value: Any, key: str) -> None:
            if isinstance(value, Mapping):
                for k, v in value.items():
                    walk(v, str(k))
            elif isinstance(value, str | int) and not isinstance(value, bool):
                context[key] = str(value)

        walk(data, "")
    else:
        for line in stdout.splitlines():
            found = re.match(r"^([a-z][\w ]*?)\s{2,}(\S.*)$", line)
            if found:
                context[found.group(1).replace(" ", "_")] = found.group(2).strip()
    attestation = context.get("attestation", "")
    if host := _HOST_PORT.search(attestation):
        context["attestation_host"] = host.group(0)


def _run(command: Command, work: Path, context: dict[str, str]) -> str | None:
    """Run one command; ``None`` if it did what the docs say, else what went wrong."""
    missing = [k for k in _KEY.findall(_substituted(command)) if k not in context]
    if missing:
        return f"nothing printed {missing} before it in {command.doc}"
    text = _KEY.sub(lambda m: context[m.group(1)], _substituted(command))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    env["REEF_HOME"] = context["home"]
    started = time.monotonic()
    try:
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", text],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"`{text}` did not finish within 120 s"
    if done.returncode != command.expect:
        tail = "\n    ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        return (
            f"`{text}` exited {done.returncode}, the docs say {command.expect} "
            f"({time.monotonic() - started:.1f} s):\n    {tail}"
        )
    _learn(context, done.stdout)
    return None


@pytest.mark.slow
# Its module's reef up (with the serverless and proof extensions) starts in its set-up and stops
# in its tear-down, both counted here: on a slow 2-core machine they and ~80 commands passed
# pytest's 300 s, and the timeout then cut the tear-down short and left an enclave running.
@pytest.mark.timeout(600)
def test_every_runnable_command_does_what_the_docs_say(network: Network, tmp_path: Path) -> None:
    vectors = _vectors()
    base = {
        "home": str(network.cli.home),
        "kms_scallop": network.info["kms"]["scallop"],
        "kms_public": network.info["kms"]["public"],
    }
    # reef up's KMS root takes rotations signed by dev account 0 (the deployer).
    admin_key = read_devnet_info(ReefHome(network.cli.home)).accounts[0].private_key.hex()
    failures: list[str] = []
    took: list[tuple[float, str]] = []
    ran = 0
    for path in DOCS:
        commands = [c for c in collect(path) if c.skip is None]
        doc = str(path.relative_to(REPO))
        if not commands or doc in PENDING:
            continue
        work = _workdir(tmp_path, doc, vectors, admin_key)
        context = dict(base)
        for command in commands:
            if vectors is None and ("vectors" in command.text or "aws" in command.text):
                continue  # the public vectors are absent: nothing to run these on
            started = time.monotonic()
            problem = _run(command, work, context)
            took.append((time.monotonic() - started, command.where))
            ran += 1
            if problem is not None:
                failures.append(f"{command.where}: {problem}")
    print("slowest:", ", ".join(f"{w} {t:.1f} s" for t, w in sorted(took, reverse=True)[:8]))
    assert ran > 30
    assert not failures, f"{len(failures)} documented commands fail:\n" + "\n".join(failures)
