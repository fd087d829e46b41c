"""The floor's ``GET /metrics`` on a loopback server answers only loopback names (DNS rebinding).

A page of another site whose name its owner rebinds to 127.0.0.1 reaches a loopback server from
the visitor's browser, and reads what it answers as its own origin's. The floor answers
``/metrics`` before any app sees the request, so no app's own Host check can guard it.
"""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from reef._serve import serve


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("evil.example:{port}", 403),
        ("evil.example", 403),
        ("127.0.0.1:{port}", 200),
        ("localhost:{port}", 200),
        ("[::1]:{port}", 200),
    ],
)
async def test_metrics_on_loopback_answer_only_loopback_names(host: str, status: int) -> None:
    server = await serve(Starlette(), host="127.0.0.1", port=0, what="rebinding test")
    async with server, httpx.AsyncClient() as client:
        named = host.format(port=server.port)
        answer = await client.get(server.url + "/metrics", headers={"host": named})
        assert answer.status_code == status, answer.text
        if status == 403:
            assert "rebound" in answer.text
            # The refusal is counted, and the server goes on answering its own names.
            own = await client.get(server.url + "/metrics")
            assert 'status="403"} 1.0' in own.text
        else:
            assert "# HELP reef_http_" in answer.text
