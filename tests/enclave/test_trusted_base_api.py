"""The dev TEE's own services as /openapi.json describes them (issue 11): sealing keeps its bytes
in, bytes out and plain-text refusals; the console keeps Oyster's logger wire format (SSE lines,
CORS open) and refuses a malformed number with a JSON reason instead of failing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from reef.enclave.local._trusted_base import Console, console_app, dev_unseal, sealing_app

KEY = b"\x05" * 32
IMAGE = b"\x06" * 32


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://enclave")  # type: ignore[arg-type]


async def test_sealing_is_described_and_keeps_its_wire_format() -> None:
    async with _client(sealing_app(KEY, IMAGE)) as http:
        schema = (await http.get("/openapi.json")).json()
        assert (await http.get("/docs")).status_code == 200
        sealed = await http.post("/seal", content=b"secret")
        opened = await http.post("/unseal", content=sealed.content)
        refused = await http.post("/unseal", content=b"\x01" + bytes(40))
    assert set(schema["paths"]) == {"/seal", "/unseal"}
    unseal = schema["paths"]["/unseal"]["post"]
    assert "application/octet-stream" in unseal["requestBody"]["content"]
    assert unseal["responses"]["400"]["content"] == {"text/plain": {"schema": {"type": "string"}}}
    assert sealed.headers["content-type"] == "application/octet-stream"
    assert dev_unseal(KEY, IMAGE, sealed.content) == b"secret"
    assert opened.content == b"secret"
    assert refused.status_code == 400
    assert refused.headers["content-type"].startswith("text/plain")
    assert refused.text.startswith("the sealed blob does not open in this enclave")


@pytest.fixture
def console(tmp_path: Path) -> Console:
    console = Console(tmp_path / "console.log")
    for n in range(3):
        console.append(f"line {n}")
    console.close()  # the stream answers what there is and ends
    return console


async def test_the_console_keeps_oysters_wire_format(console: Console) -> None:
    async with _client(console_app(console)) as http:
        schema = (await http.get("/openapi.json")).json()
        stream = await http.get("/logs/stream", params={"start_from": 1})
        tail = await http.get("/logs/tail-log-id")
        history = await http.get("/logs/history", params={"log_id": 2, "offset": 2})
    assert set(schema["paths"]) == {"/logs/stream", "/logs/history", "/logs/tail-log-id"}
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["access-control-allow-origin"] == "*"
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.text == (
        ": reef dev TEE console\n\nid: 1\ndata: line 1\n\nid: 2\ndata: line 2\n\n"
    )
    assert tail.json() == {"log_id": 2}
    assert tail.headers["access-control-allow-origin"] == "*"
    assert history.json() == [{"log_id": 1, "line": "line 1"}, {"log_id": 2, "line": "line 2"}]
    assert history.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(
    ("path", "query"),
    [
        # str.isdigit() takes a superscript two, which int() refuses: this was a 500.
        ("/logs/history", "log_id=%C2%B2"),
        ("/logs/stream", "start_from=%C2%B2"),
        # More digits than int() converts (4300): a 500 as well.
        ("/logs/history", "offset=" + "9" * 5000),
        ("/logs/history", "log_id=-1"),
    ],
)
async def test_a_malformed_number_is_a_json_refusal(
    console: Console, path: str, query: str
) -> None:
    async with _client(console_app(console)) as http:
        answer = await http.get(f"{path}?{query}")
    assert answer.status_code == 400
    assert "non-negative integer" in answer.json()["error"]
