"""reef's web3 clients against a JSON-RPC node that answers a nesting bomb.

Every reef command that talks to a chain goes through :func:`reef.chain.http_web3`. Importing
web3 raises Python's recursion limit to 100 000, so web3.py's own ``json.loads`` of an answer of
100 000 ``[`` was a segmentation fault: a stranger's RPC URL could kill the command, the provider
or an executor. Run in a child process, so that a crash fails this test rather than pytest.
"""

from __future__ import annotations

import subprocess
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from net_support import serve_in_thread

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
