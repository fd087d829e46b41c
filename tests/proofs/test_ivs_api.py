"""The IVS's HTTP API as its /openapi.json describes it (issue 11), on a market with no asks (no
snarkjs runs): an ask id out of uint256's range, or a fractional one, is a malformed request
(400 naming the field; it was a 409 "refused", and 1.5 was read as ask 1), and every error is
JSON with a reason."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from proofs.proofs_support import ProofChain
from reef.proofs import ArtifactStore, InputVerifier, SnarkjsRuntime, ivs_app


@pytest.fixture
def ivs(tmp_path: Path) -> httpx.AsyncClient:
    chain = ProofChain.create(n_users=1)
    verifier = InputVerifier(
        Account.from_key(hashlib.sha256(b"reef ivs api test").digest()),
        ArtifactStore(tmp_path / "artifacts"),
        SnarkjsRuntime(node=tmp_path / "node", project=tmp_path / "snarkjs"),
    )
    transport = httpx.ASGITransport(app=ivs_app(verifier, chain.market()))
    return httpx.AsyncClient(transport=transport, base_url="http://ivs")


@pytest.mark.parametrize("ask_id", [-1, 2**256, 1.5, "one", None])
async def test_an_ask_id_that_is_no_uint256_is_a_400(
    ivs: httpx.AsyncClient, ask_id: object
) -> None:
    async with ivs:
        answer = await ivs.post("/invalid", json={"ask_id": ask_id})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("ask_id: ")


async def test_refusals_and_identity_are_as_described(ivs: httpx.AsyncClient) -> None:
    async with ivs:
        unknown = await ivs.post("/invalid", json={"ask_id": 7, "acl": None})
        bad_acl = await ivs.post("/invalid", json={"ask_id": 7, "acl": "0x0"})
        not_json = await ivs.post("/invalid", content=b"[")
        identity = await ivs.get("/")
        schema = (await ivs.get("/openapi.json")).json()
        docs = await ivs.get("/docs")
    assert unknown.status_code == 409
    assert "ask 7 does not exist" in unknown.json()["error"]
    assert bad_acl.status_code == 400
    assert "acl" in bad_acl.json()["error"]
    assert not_json.status_code == 400
    assert set(identity.json()) == {"address", "public_key"}
    assert docs.status_code == 200
    invalid = schema["paths"]["/invalid"]["post"]
    assert set(invalid["responses"]) == {"200", "400", "409"}
    body = invalid["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/InvalidRequest")
    ask_id = schema["components"]["schemas"]["InvalidRequest"]["properties"]["ask_id"]
    assert (ask_id["minimum"], ask_id["exclusiveMaximum"]) == (0, 2**256)
