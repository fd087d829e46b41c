"""What an enclave supervisor loads: reef._lazy's deferred imports, and the supervisor's lean set.

The supervisor's memory is mostly the code it imports (bench/enclave.py); these tests pin that the
trusted base still serves while what it never uses (uvicorn's command line, logging.config, the
email parser) stays out of the process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from reef._lazy import defer_import, without_init


@pytest.fixture
def packages(tmp_path: Path) -> Iterator[Path]:
    """A directory on sys.path for throwaway packages; their modules are forgotten after."""
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in set(sys.modules) - before:
            del sys.modules[name]


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def _runs(root: Path) -> list[str]:
    log = root / "runs.log"
    return log.read_text().split() if log.exists() else []


def test_a_deferred_module_runs_once_when_first_used(packages: Path) -> None:
    log = packages / "runs.log"
    _write(
        packages,
        {
            "deferpkg/__init__.py": "",
            "deferpkg/heavy.py": f"""
                with open({str(log)!r}, "a") as out:
                    out.write("heavy\\n")
                VALUE = 42
                def double(x):
                    return 2 * x
            """,
        },
    )
    assert defer_import("deferpkg.heavy") is True
    assert defer_import("deferpkg.heavy") is False  # already registered
    import deferpkg.heavy  # type: ignore[import-not-found]  # noqa: F401  (as a library does)
    from deferpkg import heavy

    assert _runs(packages) == []
    assert heavy is sys.modules["deferpkg.heavy"]
    assert heavy.__name__ == "deferpkg.heavy"  # set without running its code
    assert _runs(packages) == []
    assert heavy.VALUE == 42  # the first name asked runs the module
    assert _runs(packages) == ["heavy"]
    from deferpkg.heavy import double

    assert double(4) == 8
    assert not hasattr(heavy, "missing")
    assert _runs(packages) == ["heavy"]


def test_defer_import_leaves_what_is_imported_or_absent(packages: Path) -> None:
    _write(packages, {"eager.py": "X = 1\n"})
    import eager  # type: ignore[import-not-found]

    assert defer_import("eager") is False
    assert sys.modules["eager"] is eager
    assert defer_import("no_such_module_anywhere") is False
    assert "no_such_module_anywhere" not in sys.modules


def test_without_init_skips_a_package_init(packages: Path) -> None:
    log = packages / "runs.log"
    _write(
        packages,
        {
            "bare/__init__.py": f"""
                with open({str(log)!r}, "a") as out:
                    out.write("init\\n")
                from bare.part import Thing
            """,
            "bare/part.py": f"""
                with open({str(log)!r}, "a") as out:
                    out.write("part\\n")
                class Thing:
                    pass
            """,
        },
    )
    assert without_init("bare", {"Thing": "part"}) is True
    assert without_init("bare", {"Thing": "part"}) is False
    import bare  # type: ignore[import-not-found]
    import bare.part  # type: ignore[import-not-found]

    assert _runs(packages) == ["part"]
    assert bare.Thing is bare.part.Thing  # the package's names load from their submodule
    from bare import Thing

    assert Thing is bare.part.Thing
    with pytest.raises(AttributeError):
        _ = bare.Other
    assert _runs(packages) == ["part"]  # its __init__ never ran
    assert without_init("json", {}) is False  # imported already
    assert without_init("no_such_package_anywhere", {}) is False


SERVE_ONE = """
import asyncio, sys
from reef.enclave.local._supervisor import _lean_imports, _load_trusted_base
_lean_imports()
_load_trusted_base()
from reef._serve import Server, bind
from reef.enclave.local._trusted_base import dev_unseal, sealing_app

KEY, IMAGE = bytes(range(32)), bytes(32)

async def main():
    sock = bind("127.0.0.1", 0, what="sealing")
    server = await Server(sealing_app(KEY, IMAGE), sock, what="sealing", uvicorn_logging=False).start()
    try:
        for path in ("/seal", "/nothing"):
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(
                f"POST {path} HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 5\\r\\n"
                "Connection: close\\r\\n\\r\\nhello".encode()
            )
            answer = await reader.read()
            writer.close()
            head, _, body = answer.partition(b"\\r\\n\\r\\n")
            print(head.split(b"\\r\\n")[0].decode())
            if path == "/seal":
                assert dev_unseal(KEY, IMAGE, body) == b"hello"
                print(" ".join(sorted(sys.modules)))
            else:
                print(body.decode())
    finally:
        await server.aclose()

asyncio.run(main())
"""


def test_the_trusted_base_serves_without_what_it_never_uses() -> None:
    """The supervisor's preparations (uvicorn without its package init, deferred modules) keep
    uvicorn's command line, logging.config and email's parser out, and its servers still serve
    (a seal; then a 404 through Starlette's HTTPException, which loads http.client on use)."""
    out = subprocess.run(
        [sys.executable, "-c", SERVE_ONE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out[0] == "HTTP/1.1 200 OK"
    # A 404 without a detail names its status from http.client, deferred until then.
    assert out[2:] == ["HTTP/1.1 404 Not Found", '{"error":"Not Found"}']
    loaded = set(out[1].split())
    assert {"reef._serve", "uvicorn.server", "starlette.applications"} <= loaded
    for module in (
        "click",
        "uvicorn.main",
        "uvicorn.supervisors",
        "multiprocessing",
        "logging.handlers",
        "pickle",
        "email.parser",
        "html.entities",
        "pydantic",
        "fastapi",
        "httpx",
    ):
        assert module not in loaded, module
