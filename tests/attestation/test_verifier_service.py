"""The verifier service over real HTTP on loopback: Oyster's statements byte for byte, statements
checked with eth-keys, and the 400/401/413 paths with the service still answering after each."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_keys.datatypes import Signature as EthKeysSignature
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from reef.attestation import (
    DevAuthority,
    TrustedRoot,
    VerifierStatement,
    verify_statement,
)
from reef.attestation._verifier_service import (
    MAX_DOCUMENT_SIZE,
    _statement_json,
    load_verifier_key,
    verifier_app,
)
from reef.crypto import Secp256k1PrivateKey
from reef.testing import wall_ms

Serve = Callable[[Starlette], AbstractContextManager[str]]  # the `serve` fixture (conftest)


@pytest.fixture(scope="module")
def key(vectors: Path) -> Secp256k1PrivateKey:
    return load_verifier_key(vectors / "verifier" / "secp256k1.sec")


@pytest.fixture(scope="module")
def expected(vectors: Path) -> dict[str, Any]:
    return dict(json.loads((vectors / "verifier" / "expected.json").read_text()))


@pytest.fixture(scope="module")
def aws_service(serve: Serve, key: Secp256k1PrivateKey) -> Iterator[str]:
    with serve(verifier_app(key, root=TrustedRoot.aws())) as url:
        yield url


@pytest.fixture(scope="module")
def aws_client(aws_service: str) -> Iterator[httpx.Client]:
    # One client for many requests: building an httpx client (its TLS context) costs ~40 ms.
    with httpx.Client(base_url=aws_service, timeout=10) as client:
        yield client


def _signer(statement: VerifierStatement) -> bytes:
    signature = statement.signature
    vrs = (signature[64] - 27, int.from_bytes(signature[:32]), int.from_bytes(signature[32:64]))
    return bytes(
        EthKeysSignature(vrs=vrs).recover_public_key_from_msg_hash(statement.digest).to_bytes()
    )


def test_oyster_vectors_over_http(
    aws_service: str, vectors: Path, expected: dict[str, Any], key: Secp256k1PrivateKey
) -> None:
    nitro = json.loads((vectors / "nitro" / "expected.json").read_text())
    with httpx.Client(base_url=aws_service) as client:
        for relative, signature in expected["signatures"].items():
            document = (vectors / relative).read_bytes()
            fields = nitro[Path(relative).name]
            answers = [
                client.post("/verify/raw", content=document),
                client.post("/verify/hex", content=document.hex()),
                client.post("/verify/hex", content="0x" + document.hex().upper() + "\r\n"),
            ]
            for answer in answers:
                assert answer.status_code == 200, answer.text
                assert answer.headers["content-type"] == "application/json"
                body = answer.json()
                assert body == {
                    "signature": signature,
                    "image_id": fields["image_id"],
                    "timestamp_ms": fields["timestamp_ms"],
                    "public_key": fields["public_key"],
                    "user_data": fields["user_data"],
                    "verifier_public_key": expected["key_public"],
                }
                statement = verify_statement(body, key.public_key)
                assert _signer(statement).hex() == expected["key_public"]


def test_bad_hex_is_400_and_the_service_keeps_answering(aws_service: str, vectors: Path) -> None:
    document = (vectors / "nitro" / "aws_verifier_test.bin").read_bytes()
    with httpx.Client(base_url=aws_service) as client:
        for body in (b"xyz", b"abc", document.hex().encode() + b"g", b"\xff\xfe", b"0x"):
            answer = client.post("/verify/hex", content=body)
            assert answer.status_code == 400, body
            assert answer.text.startswith("bad request:")
        assert client.post("/verify/hex", content=document.hex()).status_code == 200


def test_empty_bodies_are_400(aws_service: str) -> None:
    with httpx.Client(base_url=aws_service) as client:
        for path in ("/verify/raw", "/verify/hex"):
            answer = client.post(path, content=b"")
            assert answer.status_code == 400
            assert "empty" in answer.text
        assert client.post("/verify/hex", content=b"  \n").status_code == 400


def test_rejected_documents_are_401_with_the_reason(aws_service: str, vectors: Path) -> None:
    real = (vectors / "nitro" / "aws_verifier_test.bin").read_bytes()
    tampered = bytearray(real)
    tampered[len(tampered) // 2] ^= 0x01
    cases = {
        b"not a document": "decode",
        real[:1000]: "decode",
        bytes(tampered): "signature",
        (vectors / "nitro" / "mock_custom.bin").read_bytes(): "root",
    }
    with httpx.Client(base_url=aws_service) as client:
        for body, reason in cases.items():
            for answer in (
                client.post("/verify/raw", content=body),
                client.post("/verify/hex", content=body.hex()),
            ):
                assert answer.status_code == 401, (reason, answer.text)
                assert answer.text.startswith(f"attestation rejected ({reason}"), answer.text
        assert client.post("/verify/raw", content=real).status_code == 200


def test_oversized_bodies_are_413(aws_service: str, vectors: Path) -> None:
    real = (vectors / "nitro" / "aws_verifier_test.bin").read_bytes()
    with httpx.Client(base_url=aws_service) as client:
        answer = client.post("/verify/raw", content=b"\x84" * (MAX_DOCUMENT_SIZE + 1))
        assert answer.status_code == 413
        answer = client.post("/verify/hex", content=b"00" * (MAX_DOCUMENT_SIZE + 1))
        assert answer.status_code == 413

        # Without a Content-Length (chunked upload) the limit holds while streaming.
        def chunks() -> Iterator[bytes]:
            for _ in range(40):
                yield b"\x84" * 4096

        assert client.post("/verify/raw", content=chunks()).status_code == 413
        assert client.post("/verify/raw", content=real).status_code == 200


def test_only_post_on_the_two_routes(aws_service: str) -> None:
    with httpx.Client(base_url=aws_service) as client:
        assert client.get("/verify/raw").status_code == 405
        assert client.post("/verify").status_code == 404


def test_concurrent_clients_with_a_misbehaving_one(
    aws_service: str, vectors: Path, expected: dict[str, Any]
) -> None:
    document = (vectors / "nitro" / "aws_verifier_test_2.bin").read_bytes()
    signature = expected["signatures"]["nitro/aws_verifier_test_2.bin"]

    def good() -> str:
        with httpx.Client(base_url=aws_service) as client:
            answer = client.post("/verify/raw", content=document)
            return str(answer.json()["signature"])

    def bad() -> int:
        with httpx.Client(base_url=aws_service) as client:
            return client.post("/verify/hex", content=b"zz").status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        goods = [pool.submit(good) for _ in range(8)]
        bads = [pool.submit(bad) for _ in range(8)]
        assert {f.result() for f in goods} == {signature}
        assert {f.result() for f in bads} == {400}


def test_other_roots(serve: Serve, vectors: Path, key: Secp256k1PrivateKey, tmp_path: Path) -> None:
    """A service pinned to the mock root signs mock documents and refuses real ones."""
    mock = (vectors / "nitro" / "mock_custom.bin").read_bytes()
    real = (vectors / "nitro" / "aws.bin").read_bytes()
    nitro = json.loads((vectors / "nitro" / "expected.json").read_text())
    with serve(verifier_app(key, root=TrustedRoot.mock())) as url, httpx.Client(base_url=url) as c:
        answer = c.post("/verify/raw", content=mock)
        assert answer.status_code == 200
        assert answer.json()["image_id"] == nitro["mock_custom.bin"]["image_id"]
        assert answer.json()["user_data"] == nitro["mock_custom.bin"]["user_data"]
        assert c.post("/verify/raw", content=real).status_code == 401


@pytest.mark.parametrize("offload", [True, False], ids=["in a thread", "inline"])
def test_dev_tee_documents(
    serve: Serve, authority: DevAuthority, key: Secp256k1PrivateKey, offload: bool
) -> None:
    """Documents minted by the dev TEE authority verify under a service pinned to the dev root,
    whether the service verifies in a worker thread or inline (reef verifier serve)."""
    pcrs = {0: b"\x01" * 48, 1: b"\x02" * 48, 2: b"\x03" * 48}
    now_ms = wall_ms()
    document = authority.mint(pcrs, timestamp_ms=now_ms, public_key=b"\x09" * 32, user_data=b"ud")
    app = verifier_app(key, root=authority.root, offload=offload)
    with serve(app) as url, httpx.Client(base_url=url) as c:
        answer = c.post("/verify/raw", content=document)
        assert answer.status_code == 200, answer.text
        statement = verify_statement(answer.json(), key.public_key)
        assert statement.timestamp_ms == now_ms
        assert statement.public_key == b"\x09" * 32
        assert statement.user_data == b"ud"
    app = verifier_app(key, root=TrustedRoot.aws(), offload=offload)
    with serve(app) as url, httpx.Client(base_url=url) as c:
        answer = c.post("/verify/raw", content=document)
        assert answer.status_code == 401


@settings(max_examples=120, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(str.encode),
        st.binary(min_size=1, max_size=64).map(lambda b: b"\x84\x44\xa1\x01\x38\x22\xa0\x59" + b),
    ),
    path=st.sampled_from(["/verify/raw", "/verify/hex"]),
)
def test_fuzzed_bodies_never_crash_the_service(
    aws_client: httpx.Client, body: bytes, path: str
) -> None:
    answer = aws_client.post(path, content=body)
    assert answer.status_code in (400, 401), (body, answer.text)


@settings(max_examples=200, deadline=None)
@given(
    signature=st.binary(min_size=65, max_size=65),
    image_id=st.binary(min_size=32, max_size=32),
    timestamp_ms=st.integers(min_value=0, max_value=(1 << 64) - 1),
    public_key=st.binary(max_size=80),
    user_data=st.binary(max_size=80),
    verifier_public_key=st.binary(min_size=64, max_size=64),
)
def test_the_answer_is_the_statement_as_json_renders_it(
    signature: bytes,
    image_id: bytes,
    timestamp_ms: int,
    public_key: bytes,
    user_data: bytes,
    verifier_public_key: bytes,
) -> None:
    # The route writes the statement's JSON by hand; it must stay what Starlette's JSONResponse
    # made of to_json() (compact, unescaped), empty fields included.
    statement = VerifierStatement(
        signature=signature,
        image_id=image_id,
        timestamp_ms=timestamp_ms,
        public_key=public_key,
        user_data=user_data,
        verifier_public_key=verifier_public_key,
    )
    rendered = json.dumps(
        statement.to_json(), ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode()
    assert _statement_json(statement) == rendered
