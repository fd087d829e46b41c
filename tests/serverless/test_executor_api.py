"""The executor's two HTTP APIs as their /openapi.json describes them (issue 11), without
workerd: what the fuzzer of tests/serve/test_schemathesis.py and hand-made requests found, kept
as regressions, and the gateway's own answers (JSON errors with a reason, verdicts signed).

- ``POST /config`` with an RPC URL that ``urlsplit`` refuses (``http://[::1``) crashed the
  control app (500), and a malformed contract address was answered 409 "already configured";
  both are now 400 naming the field, and the executor stays unconfigured.
- The gateway answers a failing code source 502 with a reason, not a 500.
- A host that names a function owns every path, ``/openapi.json`` and ``/`` included (Oyster's
  host-named form), while other hosts get the schema and the executor's identity there.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from reef.crypto import Secp256k1PrivateKey
from reef.errors import ChainError
from reef.serverless import (
    CodeCache,
    ErrorCode,
    ExecutorNode,
    FunctionRuntime,
)
from serverless.chain_support import ServerlessChain, gateway_signer

ADDRESS = "0x" + "11" * 20
UNKNOWN = "0x" + "ab" * 32  # a well-formed codehash under which nothing is deployed


def _node(home: Path) -> ExecutorNode:
    # The runtime's workerd never starts here: no call reaches deployed code.
    return ExecutorNode(
        Secp256k1PrivateKey(hashlib.sha256(b"reef executor api test").digest()),
        FunctionRuntime(home / "workerd", workdir=home / "run"),
        home / "code",
    )


@pytest.fixture
async def configured(tmp_path: Path) -> AsyncIterator[ExecutorNode]:
    """An executor configured for a devnet deployment, its chain watcher stopped."""
    chain = ServerlessChain.create()
    node = _node(tmp_path)
    await chain.configure(node)
    yield node
    await node.runtime.aclose()


def _client(app: object, host: str = "executor") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url=f"http://{host}")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rpc_url", "http://[::1"),  # was a 500: urlsplit's ValueError escaped
        ("rpc_url", "http://127.0.0.1:99999"),
        ("rpc_url", "ftp://127.0.0.1"),
        ("jobs_contract", "0x12"),  # was a 409, as if already configured
        ("owner", 12),
    ],
)
async def test_a_malformed_config_is_a_400_naming_the_field(
    tmp_path: Path, field: str, value: object
) -> None:
    node = _node(tmp_path)
    config: dict[str, object] = {
        "rpc_url": "http://127.0.0.1:1",
        "jobs_contract": ADDRESS,
        "code_contract": ADDRESS,
        "owner": ADDRESS,
    }
    config[field] = value
    async with _client(node.control_app()) as client:
        refused = await client.post("/config", json=config)
        details = (await client.get("/details")).json()
    assert refused.status_code == 400
    assert refused.json()["error"].startswith(f"bad config: {field}: ")
    assert details["configured"] is False
    assert node.service is None
    await node.runtime.aclose()


async def test_an_unreachable_chain_is_a_502_and_another_deployment_a_409(
    tmp_path: Path, configured: ExecutorNode
) -> None:
    config = {
        "rpc_url": "http://127.0.0.1:1",
        "jobs_contract": ADDRESS,
        "code_contract": ADDRESS,
        "owner": ADDRESS,
    }
    fresh = _node(tmp_path / "fresh")
    async with _client(fresh.control_app()) as client:
        unreachable = await client.post("/config", json=config)
    await fresh.runtime.aclose()
    assert unreachable.status_code == 502
    assert "cannot reach the chain" in unreachable.json()["error"]
    async with _client(configured.control_app()) as client:
        other = await client.post("/config", json=config)
        registration = await client.get("/registration")
    assert other.status_code == 409
    assert "already configured" in other.json()["error"]
    assert registration.status_code == 200
    assert registration.json()["owner"] == configured.owner


async def test_the_gateways_own_answers_are_json_with_a_reason(
    tmp_path: Path, configured: ExecutorNode
) -> None:
    unconfigured = _node(tmp_path / "unconfigured")
    async with _client(unconfigured.gateway_app()) as client:
        not_yet = await client.post(f"/fn/{UNKNOWN}", content=b"x")
    await unconfigured.runtime.aclose()
    assert not_yet.status_code == 503
    assert "not configured" in not_yet.json()["error"]
    async with _client(configured.gateway_app()) as client:
        malformed = await client.get("/fn/not-a-codehash")
        unnamed = await client.post("/some/path", content=b"x")
        too_large = await client.post(f"/fn/{UNKNOWN}", content=b"x" * ((1 << 20) + 1))
        missing = await client.post(f"/fn/{UNKNOWN}/a?b=1", content=b"in")
    assert malformed.status_code == 400
    assert "not a codehash" in malformed.json()["error"]
    assert unnamed.status_code == 404
    assert "no function named" in unnamed.json()["error"]
    assert too_large.status_code == 413
    assert "1 MiB" in too_large.json()["error"]
    # No code under the hash: the verdict, signed like any answer, with an empty body.
    assert missing.status_code == 400
    assert missing.content == b""
    assert missing.headers["x-reef-error-code"] == str(int(ErrorCode.CODE_NOT_FOUND))
    assert gateway_signer(missing)[1] == configured.address


async def test_a_code_source_that_fails_is_a_502(configured: ExecutorNode) -> None:
    async def failing(codehash: str) -> bytes | None:
        raise ChainError(f"the node did not answer for {codehash}")

    service = configured.service
    assert service is not None
    service.cache = CodeCache(service.cache.path(UNKNOWN).parent, failing)
    async with _client(configured.gateway_app()) as client:
        answer = await client.get(f"/fn/{UNKNOWN}")
    assert answer.status_code == 502
    assert "cannot fetch the function's code" in answer.json()["error"]
    assert "did not answer" in answer.json()["error"]


async def test_a_host_named_function_owns_every_path(configured: ExecutorNode) -> None:
    label = base64.b32encode(bytes.fromhex(UNKNOWN[2:])).decode().rstrip("=").lower()
    app = configured.gateway_app()
    async with _client(app, host=f"{label}.localhost") as client:
        by_host = {path: await client.get(path) for path in ("/", "/openapi.json", "/docs")}
    async with _client(app) as client:
        schema = await client.get("/openapi.json")
        index = await client.get("/")
    for path, answer in by_host.items():
        # The host's function (nothing deployed under it) answers, not the gateway's pages.
        assert answer.status_code == 400, path
        assert answer.headers["x-reef-error-code"] == str(int(ErrorCode.CODE_NOT_FOUND)), path
    assert schema.status_code == 200
    assert "/fn/{codehash}" in schema.json()["paths"]
    assert index.json()["enclave_address"] == configured.address
    assert index.json()["jobs_contract"] is not None


async def test_the_schemas_describe_the_catch_all_routes_and_their_errors(
    tmp_path: Path,
) -> None:
    node = _node(tmp_path)
    async with _client(node.gateway_app()) as client:
        gateway = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    async with _client(node.control_app()) as client:
        control = (await client.get("/openapi.json")).json()
    await node.runtime.aclose()
    assert docs.status_code == 200
    methods = {"get", "post", "put", "patch", "delete", "head", "options"}
    for path, params in {
        "/fn/{codehash}": ["codehash"],
        "/fn/{codehash}/{rest}": ["codehash", "rest"],
        "/{rest}": ["rest"],
    }.items():
        operations = gateway["paths"][path]
        assert set(operations) == methods, path
        for method, operation in operations.items():
            assert [p["name"] for p in operation["parameters"]] == params
            assert all(p["in"] == "path" and p["required"] for p in operation["parameters"])
            assert {"400", "404", "408", "413", "429", "500", "502", "503", "default"} <= set(
                operation["responses"]
            )
            assert ("requestBody" in operation) == (method in {"post", "put", "patch", "delete"})
    ids = [op["operationId"] for ops in gateway["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    config = control["paths"]["/config"]["post"]
    assert set(config["responses"]) == {"200", "400", "409", "502"}
    assert config["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ExecutorConfig"
    )
    assert set(control["paths"]["/registration"]) == {"get", "post"}


ECHO = (
    b"export default { async fetch(r) { const u = new URL(r.url);"
    b" return new Response(r.method + ' ' + u.pathname + u.search + ' '"
    b" + r.headers.get('x-test') + ' ' + await r.text(),"
    b" { status: 201, headers: { 'x-fn': 'yes' } }); } };"
)


async def test_a_functions_answer_carries_what_the_schema_documents(
    tmp_path: Path, workerd: Path
) -> None:
    chain = ServerlessChain.create()
    codehash = chain.code(chain.users[0]).deploy_code(ECHO)
    label = base64.b32encode(bytes.fromhex(codehash[2:])).decode().rstrip("=").lower()
    async with FunctionRuntime(workerd, max_idle=1) as runtime:
        node = ExecutorNode(Secp256k1PrivateKey.generate(), runtime, tmp_path / "code")
        await chain.configure(node)
        async with _client(node.gateway_app()) as client:
            schema = (await client.get("/openapi.json")).json()
            answer = await client.patch(
                f"/fn/{codehash}/a/b?c=1", content=b"e", headers={"x-test": "t"}
            )
            # GET / on the function's own host is the function's, as any other path there.
            by_host = await client.get("/", headers={"host": f"{label}.localhost"})
    assert answer.status_code == 201  # the function's own status: the "default" response
    assert answer.content == b"PATCH /a/b?c=1 t e"
    assert answer.headers["x-fn"] == "yes"
    documented = schema["paths"]["/fn/{codehash}/{rest}"]["patch"]["responses"]["default"]
    assert set(documented["headers"]) == {
        "X-Oyster-Timestamp",
        "X-Oyster-Signature",
        "X-Reef-Signature",
        "X-Reef-Chain-Id",
        "X-Reef-Jobs-Contract",
        "X-Reef-Executor",
        "X-Reef-Error-Code",
        "X-Reef-Total-Time-Ms",
    }
    for name in documented["headers"]:
        assert name in answer.headers, name
    assert answer.headers["x-reef-executor"] == node.address
    assert by_host.status_code == 201
    assert by_host.content == b"GET / null "
