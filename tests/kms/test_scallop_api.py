"""The KMS root's Scallop app described at /openapi.json, and its query read strictly (issue 11).

The app runs in-process (``httpx.ASGITransport``); a stand-in middleware hands requests on as
``reef.scallop.serve_asgi`` does, from a peer that attested an image. The seeds it answers are
checked against the keyring's own derivation.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from kms.kms_support import attested_peer
from reef.attestation import DevAuthority, image_id
from reef.home import ReefHome
from reef.kms import KmsRoot, RootKeyring, RootSeed, scallop_app
from reef.scallop import ScallopPeer
from reef.testing import wall_ms

PCRS = {0: b"\x10" * 48, 1: b"\x11" * 48, 2: b"\x12" * 48}
APPROVER = "0x" + "ab" * 20


class _Approval:
    chain_id = 31337

    async def __call__(self, address: str, image_id: bytes) -> bool:
        return address == APPROVER


def _keyring() -> RootKeyring:
    return RootKeyring([RootSeed(hashlib.sha512(b"reef scallop api").digest(), 0)])


def _peer(home: ReefHome) -> ScallopPeer:
    return attested_peer(DevAuthority.load_or_create(home).root, PCRS, timestamp_ms=wall_ms())


def _client(app: Any, peer: ScallopPeer | None) -> httpx.AsyncClient:
    async def over_scallop(scope: Any, receive: Any, send: Any) -> None:
        if peer is not None:
            scope = {**scope, "extensions": {"scallop": {"peer": peer}}}
        await app(scope, receive, send)

    transport = httpx.ASGITransport(app=over_scallop)
    return httpx.AsyncClient(transport=transport, base_url="http://kms")


@pytest.fixture
def app() -> Any:
    return scallop_app(KmsRoot(_keyring(), approval=_Approval()))


async def test_the_schema_describes_derive_and_its_answers(app: Any, reef_home: Any) -> None:
    async with _client(app, _peer(ReefHome(reef_home))) as http:
        schema = (await http.get("/openapi.json")).json()
        assert (await http.get("/docs")).status_code == 200
    operation = schema["paths"]["/derive"]["get"]
    assert set(operation["responses"]) == {"200", "400", "401", "413", "414", "500"}
    assert {p["name"] for p in operation["parameters"]} == {"address", "version"}
    assert "application/octet-stream" in operation["responses"]["200"]["content"]


async def test_a_seed_as_described(app: Any, reef_home: Any) -> None:
    keyring = _keyring()
    async with _client(app, _peer(ReefHome(reef_home))) as http:
        own = await http.get("/derive")
        contract = await http.get("/derive", params={"address": APPROVER})
        refused = await http.get("/derive", params={"address": "0x" + "cd" * 20})
    assert own.status_code == 200
    assert own.content == keyring.enclave_seed(image_id(PCRS), 0)
    assert own.headers["x-reef-kms-version"] == "0"
    assert contract.content == keyring.contract_seed(31337, APPROVER, 0)
    assert refused.status_code == 401
    assert "is not approved by" in refused.text


@pytest.mark.parametrize("escape", ["%ff", "%fe", "%c3"])
async def test_an_address_that_is_not_utf8_is_refused(
    app: Any, reef_home: Any, escape: str
) -> None:
    """Starlette would read each as U+FFFD; the root refuses them as the public listener does."""
    async with _client(app, _peer(ReefHome(reef_home))) as http:
        answer = await http.get(f"/derive?address=0x{'ab' * 19}a{escape}")
    assert answer.status_code == 400
    assert "UTF-8" in answer.text


async def test_only_over_scallop(app: Any) -> None:
    async with _client(app, None) as http:
        answer = await http.get("/derive")
    assert answer.status_code == 401
    assert answer.text == "this endpoint is only served over Scallop\n"
