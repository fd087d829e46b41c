"""Smaller parts: request limits, the chain approval client, wiring files, attesters, pins."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from reef.attestation import DevAuthority, TrustedRoot, custom_attestation_app, verify_nitro
from reef.errors import ConfigError, InputError, RPCError
from reef.home import ReefHome
from reef.kms import (
    OYSTER_KMS_VERIFY_SELECTOR,
    KmsIdentity,
    KmsPin,
    KmsWiring,
    PinStore,
    RootKeyring,
    RpcApproval,
    http_attester,
    own_tee_root,
)
from reef.kms._http import kms_guard
from reef.testing import wall_ms

PCRS = {0: b"\x01" * 48, 1: b"\x02" * 48, 2: b"\x03" * 48}


async def test_limits_time_out_slow_handlers() -> None:
    async def slow(_: Request) -> Response:
        await asyncio.sleep(5)
        return Response(b"late")

    app = kms_guard(Starlette(routes=[Route("/", slow)]), timeout=0.2)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        response = await http.get("/")
    assert response.status_code == 503
    assert "timed out" in response.text


async def test_limits_cut_streamed_bodies() -> None:
    async def echo(request: Request) -> Response:
        return Response(await request.body())

    app = kms_guard(Starlette(routes=[Route("/", echo, methods=["POST"])]), max_body=10)

    async def chunks() -> Any:
        for _ in range(5):
            yield b"x" * 8

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        response = await http.post("/", content=chunks())
        small = await http.post("/", content=b"ok")
    assert response.status_code == 413
    assert small.content == b"ok"


def _rpc(handler: Callable[[dict[str, Any]], dict[str, Any]]) -> httpx.MockTransport:
    def respond(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], **handler(body)})

    return httpx.MockTransport(respond)


async def test_approval_call_shape_and_answers() -> None:
    seen: list[dict[str, Any]] = []
    answer = {"result": "0x" + "00" * 31 + "01"}

    def handler(body: dict[str, Any]) -> dict[str, Any]:
        seen.append(body)
        return answer

    image = b"\x42" * 32
    approval = RpcApproval("http://rpc", 1, transport=_rpc(handler))
    assert await approval("0x" + "ab" * 20, image) is True
    call = seen[-1]
    assert call["method"] == "eth_call"
    assert call["params"][1] == "latest"
    assert call["params"][0]["data"] == "0x" + (OYSTER_KMS_VERIFY_SELECTOR + image).hex()
    answer.clear()
    answer["result"] = "0x" + "00" * 32
    assert await approval("0x" + "ab" * 20, image) is False
    answer.clear()
    answer["result"] = "0x"
    assert await approval("0x" + "ab" * 20, image) is False
    answer.clear()
    answer["error"] = {"code": 3, "message": "execution reverted"}
    assert await approval("0x" + "ab" * 20, image) is False
    answer.clear()
    answer["error"] = {"code": -32000, "message": "header not found"}
    with pytest.raises(RPCError, match="header not found"):
        await approval("0x" + "ab" * 20, image)
    answer.clear()
    answer["result"] = "0x" + "00" * 31 + "07"
    with pytest.raises(RPCError, match="not a bool"):
        await approval("0x" + "ab" * 20, image)


def test_selector_is_keccak_of_the_signature() -> None:
    from eth_utils import function_signature_to_4byte_selector

    assert (
        function_signature_to_4byte_selector("oysterKMSVerify(bytes32)")
        == OYSTER_KMS_VERIFY_SELECTOR
    )


async def test_approval_checks_the_chain() -> None:
    approval = RpcApproval("http://rpc", 42161, transport=_rpc(lambda _: {"result": "0x1"}))
    with pytest.raises(ConfigError, match="serves chain 1, not the configured 42161"):
        await approval.check_chain()
    down = RpcApproval("http://127.0.0.1:1", 1)
    with pytest.raises(RPCError, match="failed"):
        await down.check_chain()


def test_wiring_round_trips_and_reads_oyster_config() -> None:
    wiring = KmsWiring(
        scallop_host="10.0.0.1",
        scallop_port=1100,
        scallop_key=b"\x01" * 32,
        public_url="http://10.0.0.1:1101",
        signing_keys={0: b"\x02" * 64},
        contract_address="0x" + "ab" * 20,
    )
    assert KmsWiring.from_json(json.loads(json.dumps(wiring.to_json()))) == wiring
    oyster = {"kms_endpoint": "image-v4.kms.box:1100", "kms_pubkey": "b2" * 32}
    parsed = KmsWiring.from_json(oyster)
    assert (parsed.scallop_host, parsed.scallop_port) == ("image-v4.kms.box", 1100)
    with pytest.raises(InputError, match="malformed"):
        KmsWiring.from_json({"kms_endpoint": "nowhere"})
    with pytest.raises(InputError, match="32 bytes"):
        KmsWiring(scallop_host="h", scallop_port=1, scallop_key=b"\x00")


def test_identity_round_trips_through_json(keyring: RootKeyring) -> None:
    identity = keyring.identity()
    assert KmsIdentity.from_json(json.loads(json.dumps(identity.to_json()))) == identity


def test_http_attester_and_own_root_over_loopback(
    authority: DevAuthority, serve_thread: Callable[[ASGIApp], AbstractContextManager[str]]
) -> None:
    attester = authority.attester(PCRS, clock_ms=wall_ms)
    with serve_thread(custom_attestation_app(attester)) as url:
        remote = http_attester(url + "/attestation/raw")
        document = remote(public_key=b"\x07" * 32, user_data=b"ud", nonce=b"n")
        root = own_tee_root(remote)
    verified = verify_nitro(
        document, root=authority.root, mode="live", now_ms=time.time_ns() // 10**6
    )
    assert verified.public_key == b"\x07" * 32
    assert verified.user_data == b"ud"
    assert root == TrustedRoot.from_der(authority.root.certificate, name="dev")
    assert root.insecure


def test_pins_round_trip(reef_home: Path) -> None:
    store = PinStore.for_home(ReefHome(reef_home))
    assert store.get("http://kms:1101") is None
    pin = KmsPin(url="http://kms:1101", signing_keys={0: b"\x01" * 64}, root="dev")
    store.save(pin)
    assert store.get("kms:1101/") == pin  # the URL is normalised
    assert store.forget("http://kms:1101")
    assert store.get("http://kms:1101") is None
    store.path.write_text("{")
    with pytest.raises(ConfigError, match="not readable JSON"):
        store.get("http://kms:1101")


def test_response_signature_checks() -> None:
    from reef.crypto import Secp256k1PrivateKey
    from reef.errors import KMSError
    from reef.kms import sign_response, verify_response

    key = Secp256k1PrivateKey(b"\x03" * 32)
    header = sign_response(key, "/derive/x25519/public?image_id=00&path=p", b"body")
    assert len(header) == 130
    assert int(header[-2:], 16) in (27, 28)
    verify_response("/derive/x25519/public?image_id=00&path=p", b"body", header, key.public_key.raw)
    with pytest.raises(KMSError, match="no x-marlin-kms-signature"):
        verify_response("/u", b"body", None, key.public_key.raw)
    with pytest.raises(KMSError, match="malformed"):
        verify_response("/u", b"body", "zz" * 65, key.public_key.raw)
    with pytest.raises(KMSError, match="malformed"):
        verify_response("/u", b"body", header[:-2], key.public_key.raw)
    with pytest.raises(KMSError, match="another key"):
        verify_response("/u", b"body", header, key.public_key.raw)
