"""Server(uvicorn_logging=False): uvicorn's loggers left to the program, nothing lost.

The enclave supervisor serves its trusted base this way so that ``logging.config`` (with
``logging.handlers``, ``pickle``, ``socketserver``) never loads; an app's failure must still be
written where the program's logs go (stderr, when nothing is configured).
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import asyncio, logging, sys
from reef._lazy import defer_import
defer_import("logging.config")  # as the supervisor does: its code runs only if it is used
from reef._listen import bind
from reef._serve import Server

async def app(scope, receive, send):
    if scope["path"] == "/boom":
        raise LookupError("the app failed here")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

async def main(uvicorn_logging):
    server = await Server(
        app, bind("127.0.0.1", 0, what="t"), what="t", uvicorn_logging=uvicorn_logging
    ).start()
    try:
        for path in ("/", "/boom"):
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(f"GET {path} HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n".encode())
            print((await reader.read()).split(b"\\r\\n")[0].decode())
            writer.close()
    finally:
        await server.aclose()

asyncio.run(main(sys.argv[1] == "on"))
print(sorted(h.__class__.__name__ for h in logging.getLogger("uvicorn").handlers))
print("logging.handlers" in sys.modules)  # logging.config's code ran
"""


def _serve(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True, timeout=60
    )


def test_without_uvicorn_logging_an_app_failure_still_reaches_stderr() -> None:
    run = _serve("off")
    assert run.stdout.splitlines() == [
        "HTTP/1.1 200 OK",
        "HTTP/1.1 500 Internal Server Error",
        "[]",  # uvicorn's own handlers were never installed
        "False",  # nor did logging.config's code run
    ]
    assert "LookupError: the app failed here" in run.stderr


def test_with_uvicorn_logging_uvicorn_configures_its_loggers() -> None:
    run = _serve("on")
    assert run.stdout.splitlines() == [
        "HTTP/1.1 200 OK",
        "HTTP/1.1 500 Internal Server Error",
        "['StreamHandler']",
        "True",
    ]
    assert "LookupError: the app failed here" in run.stderr
