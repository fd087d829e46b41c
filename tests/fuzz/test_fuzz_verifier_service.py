"""The attacks the fuzzer found, replayed against a real verifier service on loopback.

Each hostile document (a CBOR value-sharing bomb, map keys crafted to share one hash, a leaf
certificate listing an extension twice) is POSTed by a real HTTP client while an honest client
keeps verifying: every hostile one is answered 401 with its reason, and the honest documents
still verify, whatever came before.
"""

from __future__ import annotations

import cbor2
import httpx

from fuzz.cbor_support import (
    EXTENSION_OIDS,
    Pki,
    T,
    certificate_with_extensions,
    colliding_pairs,
    document_with,
    head,
    shared_dag,
)
from net_support import serve_in_thread
from reef.attestation import CoseSign1, NitroDocument, verifier_app
from reef.crypto import Secp256k1PrivateKey


def _hostile(pki: Pki) -> dict[str, bytes]:
    pairs = colliding_pairs(6000)
    keys = b"".join(b"\x82" + cbor2.dumps(a) + cbor2.dumps(b) + b"\x00" for a, b in pairs)
    leaf = certificate_with_extensions(pki, ca=False)
    duplicate = leaf.replace(EXTENSION_OIDS[1], EXTENSION_OIDS[0], 1)
    document = NitroDocument(
        module_id="m",
        timestamp_ms=T,
        pcrs={i: bytes(48) for i in range(3)},
        certificate=duplicate,
        cabundle=[pki.root_der],
    )
    return {
        "value sharing": document_with(pki, 3, b"\xa1" + shared_dag(60) + b"\x00"),
        "colliding keys": document_with(pki, 3, head(5, len(pairs)) + keys),
        "duplicate extension": CoseSign1(
            b"\xa1\x01\x38\x22", {}, document.encode(), bytes(96)
        ).encode(),
    }


def test_hostile_documents_are_refused_and_honest_ones_still_verify() -> None:
    pki = Pki()
    key = Secp256k1PrivateKey(bytes(31) + b"\x09")
    honest = document_with(pki, 0, cbor2.dumps("i-0123456789abcdef0-enc0123456789abcdef"))
    hostile = _hostile(pki)
    assert all(len(body) < 128 * 1024 for body in hostile.values())
    with (
        serve_in_thread(verifier_app(key, root=pki.root)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        for name, body in hostile.items():
            answer = client.post("/verify/raw", content=body)
            assert answer.status_code == 401, (name, answer.text)
            reason = "certificate" if name == "duplicate extension" else "decode"
            assert answer.text.startswith(f"attestation rejected ({reason}): "), answer.text
            ok = client.post("/verify/raw", content=honest)
            assert ok.status_code == 200, ok.text
            assert ok.json()["timestamp_ms"] == T
