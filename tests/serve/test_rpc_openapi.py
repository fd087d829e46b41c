"""The devnet's JSON-RPC endpoint is described by /openapi.json (a request or a batch, the
response or batch of responses, the error object), and what it answers matches that description,
malformed requests included (schemathesis fuzzes it too: tests/serve/test_schemathesis.py)."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs
import pytest

from reef.chain import Devnet, devnet_app


@pytest.fixture
async def client() -> Any:
    transport = httpx.ASGITransport(app=devnet_app(Devnet()))
    async with httpx.AsyncClient(transport=transport, base_url="http://devnet") as client:
        yield client


def _validator(schema: dict[str, Any], target: dict[str, Any]) -> Any:
    # jsonschema-rs (schemathesis' own validator), on the operation's schema with its components.
    return jsonschema_rs.Draft202012Validator({**target, "components": schema["components"]})


async def test_the_schema_describes_requests_batches_and_errors(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    post = schema["paths"]["/"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    requests = _validator(schema, body)
    assert requests.is_valid({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    assert requests.is_valid([{"jsonrpc": "2.0", "id": "a", "method": "eth_blockNumber"}])
    assert not requests.is_valid({"jsonrpc": "1.0", "id": 1, "method": "eth_chainId"})
    assert not requests.is_valid({"jsonrpc": "2.0", "id": 1})
    assert set(post["responses"]) == {"200", "204", "413"}  # no FastAPI 422: never answered
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    error = schema["components"]["schemas"]["JsonRpcErrorObject"]
    assert set(error["required"]) == {"code", "message"}
    assert set(schema["paths"]["/"]) == {"get", "post"}
    assert set(schema["paths"]["/"]["get"]["responses"]) == {"405"}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, None),
        ([{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}], None),
        ({"jsonrpc": "2.0", "id": 1, "method": []}, -32600),
        ([{"jsonrpc": "2.0", "id": 1, "method": {"a": 1}}], -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": "no_such_method"}, -32601),
        ({"jsonrpc": "2.0", "id": [1], "method": "eth_chainId"}, -32600),
    ],
)
async def test_answers_match_the_schema(
    client: httpx.AsyncClient, payload: Any, code: int | None
) -> None:
    schema = (await client.get("/openapi.json")).json()
    responses = schema["paths"]["/"]["post"]["responses"]
    answer = await client.post("/", json=payload)
    assert answer.status_code == 200
    body = answer.json()
    _validator(schema, responses["200"]["content"]["application/json"]["schema"]).validate(body)
    first = body[0] if isinstance(body, list) else body
    assert (first.get("error") or {}).get("code") == code, body


async def test_a_notification_and_a_get_are_answered_as_described(
    client: httpx.AsyncClient,
) -> None:
    assert (
        await client.post("/", json={"jsonrpc": "2.0", "method": "eth_chainId"})
    ).status_code == 204
    answer = await client.get("/")
    assert answer.status_code == 405
    assert answer.json()["error"]["code"] == -32600
