"""NitroVerifier's leaf cache: a further document from a known leaf is checked with one ECDSA
verification (its COSE signature), and nothing else a document must pass is skipped."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from reef.attestation import CoseSign1, NitroDocument, NitroVerifier, sign_statement
from reef.crypto import Secp256k1PrivateKey
from reef.errors import CertificateChainError, CertificateExpiredError, SignatureError

from .test_nitro_chain import HOUR, PCRS, Pki, Spec, T, _cert, build_pki, make_doc


@pytest.fixture(scope="module")
def pki() -> Pki:
    return build_pki()


def _count_ecdsa(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count every P-384 public-key verification the verifier does (one list cell)."""
    calls = [0]
    key_type = type(ec.generate_private_key(ec.SECP384R1()).public_key())
    original = key_type.verify

    def counted(self: ec.EllipticCurvePublicKey, *args: object) -> None:
        calls[0] += 1
        original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(key_type, "verify", counted)
    return calls


def test_a_known_leaf_costs_one_signature_check(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = NitroVerifier()
    calls = _count_ecdsa(monkeypatch)
    first = verifier.verify(make_doc(pki, user_data=b"a"), root=pki.root, mode="replay")
    # The COSE signature, the intermediate (by the pinned root) and the leaf (by the intermediate).
    assert calls[0] == 3
    second = verifier.verify(make_doc(pki, user_data=b"b"), root=pki.root, mode="replay")
    assert calls[0] == 4
    assert (first.user_data, second.user_data) == (b"a", b"b")
    assert (verifier.cache_misses, verifier.cache_hits) == (1, 1)


def test_a_cached_leaf_still_needs_a_valid_signature(pki: Pki) -> None:
    verifier = NitroVerifier()
    verifier.verify(make_doc(pki), root=pki.root, mode="replay")
    payload = NitroDocument(
        module_id="m", timestamp_ms=T, pcrs=PCRS, certificate=pki.leaf, cabundle=pki.bundle
    ).encode()
    forged = CoseSign1.sign_es384(payload, ec.generate_private_key(ec.SECP384R1())).encode()
    with pytest.raises(SignatureError) as caught:
        verifier.verify(forged, root=pki.root, mode="replay")
    assert caught.value.reason == "signature"
    assert verifier.cache_hits == 1  # refused although its leaf came from the cache


def test_a_cached_leaf_is_checked_at_every_instant(pki: Pki) -> None:
    verifier = NitroVerifier()
    verifier.verify(make_doc(pki), root=pki.root, now_ms=T + HOUR, max_age_ms=None)
    with pytest.raises(CertificateExpiredError):
        verifier.verify(make_doc(pki), root=pki.root, now_ms=T + 3 * HOUR, max_age_ms=None)
    with pytest.raises(CertificateExpiredError):
        verifier.verify(make_doc(pki, timestamp_ms=T + 3 * HOUR), root=pki.root, mode="replay")
    assert verifier.cache_hits == 2


def test_a_cached_leaf_is_never_trusted_under_another_root(pki: Pki) -> None:
    other = build_pki()
    verifier = NitroVerifier()
    verifier.verify(make_doc(pki), root=pki.root, mode="replay")
    with pytest.raises(CertificateChainError) as caught:
        verifier.verify(make_doc(pki), root=other.root, mode="replay")
    assert caught.value.reason == "root"
    # The same leaf under a bundle it was not issued by: a cache miss, and refused.
    bundle = [pki.bundle[0], other.bundle[1]]
    with pytest.raises(CertificateChainError):
        verifier.verify(make_doc(pki, cabundle=bundle), root=pki.root, mode="replay")


def test_a_new_leaf_from_a_known_host_reuses_its_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    pki = build_pki(intermediates=[])  # the root issues the leaves, so a second one can be made
    verifier = NitroVerifier()
    verifier.verify(make_doc(pki), root=pki.root, mode="replay")
    key = ec.generate_private_key(ec.SECP384R1())
    spec = Spec("second leaf", T - HOUR, T + 2 * HOUR, ca=False)
    root = x509.load_der_x509_certificate(pki.bundle[0])
    leaf = _cert(spec, key, root.subject, pki.root_key).public_bytes(Encoding.DER)
    calls = _count_ecdsa(monkeypatch)
    verifier.verify(make_doc(replace(pki, leaf=leaf, leaf_key=key)), root=pki.root, mode="replay")
    assert calls[0] == 2  # the COSE signature and the new leaf's; the chain came from the cache
    assert (verifier.cache_misses, verifier.cache_hits) == (1, 1)


def test_the_cache_can_be_turned_off(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = NitroVerifier(cache_size=0)
    calls = _count_ecdsa(monkeypatch)
    for _ in range(2):
        verifier.verify(make_doc(pki), root=pki.root, mode="replay")
    assert calls[0] == 6
    assert verifier.cache_hits == 0


def test_a_pickled_signing_key_signs_the_same_statements(pki: Pki) -> None:
    # The key keeps its libsecp256k1 object for speed; copies carry only the secret.
    key = Secp256k1PrivateKey(bytes(range(1, 33)))
    attested = NitroVerifier().verify(make_doc(pki), root=pki.root, mode="replay")
    statement = sign_statement(key, attested)
    copy = pickle.loads(pickle.dumps(key))
    assert copy == key
    assert hash(copy) == hash(key)
    assert sign_statement(copy, attested) == statement
    assert copy.public_key == key.public_key
