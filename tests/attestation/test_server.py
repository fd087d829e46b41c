"""The attestation servers over real HTTP on loopback (uvicorn on a free port, httpx client)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from reef.attestation import (
    MAX_ATTESTATION_FIELD,
    Attester,
    DevAuthority,
    Expectations,
    TrustedRoot,
    attestation_app,
    custom_attestation_app,
    image_id,
    verify_nitro,
)
from reef.errors import AttestationError, CertificateChainError, InputError
from reef.home import ReefHome
from reef.testing import wall_ms

Serve = Callable[[Starlette], AbstractContextManager[str]]  # the `serve` fixture (conftest)


class FakeAttester:
    """Signs nothing: returns the requested fields as JSON bytes and records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes, bytes]] = []

    def __call__(self, *, public_key: bytes, user_data: bytes, nonce: bytes) -> bytes:
        self.calls.append((public_key, user_data, nonce))
        fields = {
            "public_key": public_key.hex(),
            "user_data": user_data.hex(),
            "nonce": nonce.hex(),
        }
        # A non-ASCII byte makes sure /raw is passed through as bytes, not text.
        return b"\xd2doc" + json.dumps(fields).encode()


def _fields(document: bytes) -> dict[str, str]:
    assert document[:4] == b"\xd2doc"
    return dict(json.loads(document[4:]))


def test_fixed_server_raw_and_hex(serve: Serve) -> None:
    attester = FakeAttester()
    app = attestation_app(attester, public_key=b"\x01" * 32, user_data=b"init-digest")
    with serve(app) as url, httpx.Client(base_url=url) as client:
        raw = client.get("/attestation/raw")
        assert raw.status_code == 200
        assert raw.headers["content-type"] == "application/octet-stream"
        assert _fields(raw.content) == {
            "public_key": "01" * 32,
            "user_data": b"init-digest".hex(),
            "nonce": "",
        }
        hexed = client.get("/attestation/hex")
        assert hexed.status_code == 200
        assert hexed.headers["content-type"].startswith("text/plain")
        assert hexed.text == hexed.text.lower()
        assert bytes.fromhex(hexed.text) == raw.content
        # The fixed server ignores query parameters: nobody can choose the attested key.
        forced = client.get("/attestation/raw", params={"public_key": "ff" * 32})
        assert _fields(forced.content)["public_key"] == "01" * 32
        assert client.post("/attestation/raw").status_code == 405
        assert client.get("/attestation").status_code == 404
    assert len(attester.calls) == 3  # a fresh document per request


def test_fixed_server_refuses_oversized_fields() -> None:
    with pytest.raises(InputError, match="public_key"):
        attestation_app(FakeAttester(), public_key=b"k" * (MAX_ATTESTATION_FIELD + 1))
    with pytest.raises(InputError, match="user_data"):
        attestation_app(FakeAttester(), public_key=b"k", user_data=b"u" * 1025)


def test_custom_server_takes_hex_fields(serve: Serve) -> None:
    attester = FakeAttester()
    with serve(custom_attestation_app(attester)) as url, httpx.Client(base_url=url) as client:
        empty = client.get("/attestation/raw")
        assert empty.status_code == 200
        assert _fields(empty.content) == {"public_key": "", "user_data": "", "nonce": ""}

        params = {"public_key": "abcd", "user_data": "00ff", "nonce": "0x0102"}
        full = client.get("/attestation/hex", params=params)
        assert full.status_code == 200
        assert _fields(bytes.fromhex(full.text)) == {
            "public_key": "abcd",
            "user_data": "00ff",
            "nonce": "0102",
        }
        biggest = "aa" * MAX_ATTESTATION_FIELD
        assert client.get("/attestation/raw", params={"nonce": biggest}).status_code == 200
    assert attester.calls[1] == (b"\xab\xcd", b"\x00\xff", b"\x01\x02")


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"public_key": "xyz"}, "public_key is not valid hex"),
        ({"user_data": "abc"}, "user_data is not valid hex"),
        ({"nonce": "ab cd"}, "nonce is not valid hex"),
        ({"nonce": "aa" * (MAX_ATTESTATION_FIELD + 1)}, "nonce is longer than 1024 bytes"),
        ({"pubkey": "ab"}, "unknown query parameter 'pubkey'"),
    ],
)
def test_custom_server_rejects_bad_queries_and_keeps_serving(
    serve: Serve, params: dict[str, str], needle: str
) -> None:
    attester = FakeAttester()
    with serve(custom_attestation_app(attester)) as url, httpx.Client(base_url=url) as client:
        for path in ("/attestation/raw", "/attestation/hex"):
            bad = client.get(path, params=params)
            assert bad.status_code == 400
            assert needle in bad.text
        assert attester.calls == []  # nothing was attested for a bad request
        good = client.get("/attestation/raw", params={"nonce": "01"})
        assert good.status_code == 200
        assert _fields(good.content)["nonce"] == "01"


def test_repeated_query_parameter_is_refused(serve: Serve) -> None:
    with serve(custom_attestation_app(FakeAttester())) as url, httpx.Client(base_url=url) as c:
        answer = c.get("/attestation/raw?nonce=01&nonce=02")
        assert answer.status_code == 400
        assert "nonce is given 2 times" in answer.text


def test_attester_failure_is_503_and_server_survives(serve: Serve) -> None:
    calls = 0

    def flaky(*, public_key: bytes, user_data: bytes, nonce: bytes) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise AttestationError("the NSM is busy", hint="retry")
        return b"document"

    with serve(attestation_app(flaky, public_key=b"k")) as url, httpx.Client(base_url=url) as c:
        failed = c.get("/attestation/raw")
        assert failed.status_code == 503
        assert "the NSM is busy" in failed.text
        assert c.get("/attestation/raw").content == b"document"


# --- with the dev TEE authority as the attester ---------------------------------------------------

PCRS = {0: b"\x10" * 48, 1: b"\x11" * 48, 2: b"\x12" * 48, 16: b"\x16" * 48}


def _dev_attester(authority: DevAuthority) -> Attester:
    """What the local enclave runtime mounts: the dev authority signing for an enclave's PCRs."""

    def attest(*, public_key: bytes, user_data: bytes, nonce: bytes) -> bytes:
        return authority.mint(
            PCRS,
            timestamp_ms=wall_ms(),
            public_key=public_key,
            user_data=user_data,
            nonce=nonce,
        )

    return attest


def test_dev_tee_documents_over_http(serve: Serve, home: ReefHome, authority: DevAuthority) -> None:
    attester = _dev_attester(authority)
    key = b"\x42" * 32
    fixed = attestation_app(attester, public_key=key, user_data=b"init params digest")
    custom = custom_attestation_app(attester)
    with serve(fixed) as fixed_url, serve(custom) as custom_url, httpx.Client() as client:
        raw = client.get(f"{fixed_url}/attestation/raw").content
        hexed = bytes.fromhex(client.get(f"{fixed_url}/attestation/hex").text)
        for document in (raw, hexed):
            result = verify_nitro(
                document,
                root=TrustedRoot.dev(home),
                mode="live",
                now_ms=wall_ms(),
                expect=Expectations(image_id=image_id(PCRS), pcrs={16: PCRS[16]}),
            )
            assert result.public_key == key
            assert result.user_data == b"init params digest"
            assert result.nonce == b""
            assert result.root.name == "dev"
            assert result.insecure
        with pytest.raises(CertificateChainError):
            verify_nitro(raw, root=TrustedRoot.aws(), mode="replay")

        params = {"public_key": "ab" * 32, "user_data": "", "nonce": "c0ffee"}
        document = client.get(f"{custom_url}/attestation/raw", params=params).content
        result = verify_nitro(
            document,
            root=authority.root,
            mode="live",
            now_ms=wall_ms(),
            expect=Expectations(public_key=b"\xab" * 32, user_data=b"", nonce=b"\xc0\xff\xee"),
        )
        assert result.pcrs[2] == PCRS[2]


@pytest.mark.parametrize("returned", [5, None, "text", b""])
def test_attester_returning_no_document_is_503(serve: Serve, returned: object) -> None:
    def broken(*, public_key: bytes, user_data: bytes, nonce: bytes) -> bytes:
        return returned  # type: ignore[return-value]

    with serve(attestation_app(broken, public_key=b"k")) as url, httpx.Client(base_url=url) as c:
        answer = c.get("/attestation/raw")
        assert answer.status_code == 503
        assert "not document bytes" in answer.text


@pytest.fixture(scope="module")
def custom_client(serve: Serve) -> Iterator[httpx.Client]:
    with serve(custom_attestation_app(FakeAttester())) as url, httpx.Client(base_url=url) as c:
        yield c


@settings(max_examples=120, deadline=None)
@given(
    params=st.dictionaries(
        st.sampled_from(["public_key", "user_data", "nonce", "other", "public_key "]),
        st.one_of(st.text(max_size=40), st.binary(max_size=20).map(bytes.hex)),
        max_size=3,
    ),
    path=st.sampled_from(["/attestation/raw", "/attestation/hex"]),
)
def test_fuzzed_queries_get_a_document_or_400(
    custom_client: httpx.Client, params: dict[str, str], path: str
) -> None:
    answer = custom_client.get(path, params=params)
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 200:
        document = answer.content if path.endswith("raw") else bytes.fromhex(answer.text)
        fields = _fields(document)
        for name, value in params.items():
            assert fields[name] == value.lower().removeprefix("0x")
