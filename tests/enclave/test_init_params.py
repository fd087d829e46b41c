"""Init params: Oyster's JSON format, digest and PCR16, sealing of secret params."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import subprocess
import sys

import pytest

from reef.attestation import image_id
from reef.crypto import generate_x25519
from reef.enclave import InitParam, InitParams, Measurements, extend_pcr, init_params_digest
from reef.errors import ImageError, InputError


def test_worked_example_of_the_reference() -> None:
    """oyster_cvm.md §3.3: `secret:1:0:utf8:hello` with the debug preset."""
    params = InitParams.build([InitParam("secret", b"hello")])
    assert params.digest.hex() == "83877b50b26f246311844a1bfef20e6158011c1f3cf0364bd1daac942f7ed395"
    pcr16 = extend_pcr(params.digest)
    assert pcr16.hex().startswith("5447dfe3")
    assert pcr16.hex().endswith("572d")
    debug = Measurements.of(bytes(48), bytes(48), bytes(48), init_params_digest=params.digest)
    assert (
        debug.image_id.hex() == "2e7dcbe4c970c675c9e78e22dbb4e32e3d63bd9c359dc4cbe592d30dc1f54392"
    )
    assert debug.pcrs[16] == pcr16


def test_digest_recipe_by_hand() -> None:
    def leaf(path: str, data: bytes) -> bytes:
        p = ("/init-params/" + path).encode()
        return hashlib.sha256(
            struct.pack("<Q", len(p)) + p + struct.pack("<Q", len(data)) + data
        ).digest()

    triples = [("a/b.json", b"{}", True), ("skip", b"not attested", False), ("c", b"", True)]
    expected = hashlib.sha256(leaf("a/b.json", b"{}") + leaf("c", b"")).digest()
    assert init_params_digest(triples) == expected
    assert init_params_digest([]) == hashlib.sha256(b"").digest()
    # Order matters: the digest is over the list as given.
    assert init_params_digest(reversed(triples)) != expected


def test_json_format_round_trip() -> None:
    params = InitParams.build(
        [InitParam("docker-compose.yml", b"services: {}\n"), InitParam("note", b"x", False)]
    )
    doc = json.loads(params.to_json())
    assert list(doc) == ["digest", "params"]
    assert base64.b64decode(doc["digest"]) == params.digest
    assert doc["params"][0] == {
        "path": "docker-compose.yml",
        "contents": base64.b64encode(b"services: {}\n").decode(),
        "should_attest": True,
        "should_decrypt": False,
    }
    assert InitParams.from_json(params.to_json()) == params
    assert InitParams.from_json(params.to_base64()) == params


def test_decoder_defaults_as_oysters() -> None:
    digest = init_params_digest([("a", b"1", True)])
    doc = {
        "digest": base64.b64encode(digest).decode(),
        "params": [{"path": "a", "contents": "MQ=="}],
    }
    params = InitParams.from_json(json.dumps(doc))
    assert params.params == (InitParam("a", b"1", True, False),)


def test_altered_document_fails_its_digest() -> None:
    doc = json.loads(InitParams.build([InitParam("a", b"1")]).to_json())
    doc["params"][0]["contents"] = base64.b64encode(b"2").decode()
    with pytest.raises(ImageError, match="do not match their digest"):
        InitParams.from_json(json.dumps(doc))


@pytest.mark.parametrize("path", ["", "/abs", "a/../b", "./a", "a//b", "a/", "..", "a\\b"])
def test_path_rules(path: str) -> None:
    with pytest.raises(InputError):
        InitParams.build([InitParam(path, b"x")])


def test_conflicting_paths() -> None:
    with pytest.raises(InputError, match="given twice"):
        InitParams.build([InitParam("a", b"1"), InitParam("a", b"2")])
    with pytest.raises(InputError, match="inside"):
        InitParams.build([InitParam("a", b"1"), InitParam("a/b", b"2")])


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("[]", "JSON object"),
        ('{"params": []}', "both"),
        ('{"digest": "!!", "params": []}', "not base64"),
        ('{"digest": "AAAA", "params": []}', "32 bytes"),
        ('{"digest": "' + "A" * 43 + '=", "params": {}}', "must be a list"),
        ('{"digest": "' + "A" * 43 + '=", "params": [{"path": 1, "contents": ""}]}', "'path'"),
        ('{"digest": "' + "A" * 43 + '=", "params": [{"path": "a", "contents": "*"}]}', "base64"),
        ("not json", "neither"),
    ],
)
def test_malformed_documents(doc: str, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        InitParams.from_json(doc)


def test_secret_params_are_sealed_and_open_with_the_key() -> None:
    secret, public = generate_x25519()
    plain = [InitParam("config", b"public"), InitParam("api-key", b"s3cr3t", True, True)]
    with pytest.raises(InputError, match="no key to seal"):
        InitParams.build(plain)
    params = InitParams.build(plain, seal_to=public)
    sealed = params.params[1]
    assert sealed.should_decrypt
    assert sealed.contents != b"s3cr3t"
    assert len(sealed.contents) == len(b"s3cr3t") + 48
    # The digest covers the plaintext (reference §3.2), so it equals the unsealed digest.
    assert params.digest == init_params_digest((p.path, p.contents, p.should_attest) for p in plain)
    loaded = InitParams.from_json(params.to_json())  # secrets: digest checked once opened
    assert loaded.has_secrets
    assert loaded.open(secret) == {"config": b"public", "api-key": b"s3cr3t"}
    other, _ = generate_x25519()
    with pytest.raises(ImageError, match="does not open"):
        loaded.open(other)
    with pytest.raises(ImageError, match="no KMS key"):
        loaded.open(None)


def test_measurements_with_and_without_init_params() -> None:
    base = Measurements.of(b"\x01" * 48, b"\x02" * 48, b"\x03" * 48)
    assert 16 not in base.pcrs
    assert base.image_id == image_id({0: b"\x01" * 48, 1: b"\x02" * 48, 2: b"\x03" * 48})
    one = base.with_init_params(init_params_digest([("a", b"1", True)]))
    two = base.with_init_params(init_params_digest([("a", b"2", True)]))
    assert len({base.image_id, one.image_id, two.image_id}) == 3
    assert one.with_init_params(None) == base
    assert one.as_debug().pcrs[16] == one.pcrs[16]


def test_a_nesting_bomb_in_a_tenants_init_params_is_an_image_error() -> None:
    # A job's init params come from its metadata, which any tenant writes; the provider parses
    # them in a process where web3 has raised the recursion limit, so json.loads of 100 000
    # brackets was a segmentation fault that took the provider (and reef up) down. A child
    # process, so that a crash fails this test instead of killing pytest.
    script = (
        "import base64, sys; sys.setrecursionlimit(100_000)\n"
        "from reef.enclave import InitParams\n"
        "from reef.errors import ImageError\n"
        "bomb = base64.b64encode(b'[' * 100_000)\n"
        "try:\n"
        "    InitParams.from_json(bomb, source='the job metadata init params')\n"
        "except ImageError as exc:\n"
        "    print(exc.message)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-500:]}"
    assert "the job metadata init params is nested more than" in done.stdout
