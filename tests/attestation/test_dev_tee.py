"""The dev TEE authority: its persisted root, documents in AWS's exact layout that round-trip
through verification under --root dev only, short-lived leaves, and sealing keys."""

from __future__ import annotations

import dataclasses
import hashlib
import stat
import threading
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from attestation.nitro_support import AWS_PAYLOAD_KEYS
from reef.attestation import (
    CoseSign1,
    DevAuthority,
    Expectations,
    NitroVerifier,
    TrustedRoot,
    decode_nitro,
    image_id,
    verify_nitro,
)
from reef.errors import (
    CertificateChainError,
    ConfigError,
    DecodeError,
    InputError,
    StaleAttestationError,
)
from reef.home import ReefHome

NOW = 1_795_564_800_000  # 2026-11-25T00:00:00Z
HOUR = 3_600_000
PCRS = {0: b"\x10" * 48, 1: b"\x11" * 48, 2: b"\x12" * 48, 16: b"\x16" * 48}


@pytest.fixture
def authority(home: ReefHome) -> DevAuthority:
    import datetime as dt

    return DevAuthority.load_or_create(home, now=dt.datetime.fromtimestamp(NOW / 1000, dt.UTC))


def test_the_root_is_created_once_with_owner_only_key_files(
    home: ReefHome, authority: DevAuthority
) -> None:
    folder = home.dev_tee
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("root.key", "intermediate.key"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert "INSECURE" in (folder / "README").read_text()
    again = DevAuthority.load_or_create(home)
    assert again.root == authority.root
    assert TrustedRoot.dev(home) == authority.root
    assert TrustedRoot.resolve("dev", home) == authority.root
    assert authority.root.name == "dev"
    assert authority.root.insecure
    assert len(authority.root.public_key) == 96
    assert "INSECURE" in authority.root.x509.subject.rfc4514_string()


def test_concurrent_creation_yields_one_root(tmp_path: Path) -> None:
    home = ReefHome(tmp_path / "shared-home")
    roots: list[bytes] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            roots.append(DevAuthority.load_or_create(home).root.public_key)
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(roots)) == 1
    assert not [p for p in home.root.iterdir() if p.name.startswith(".dev-tee")]


def test_mint_then_verify_under_dev_gives_the_same_fields(
    home: ReefHome, authority: DevAuthority
) -> None:
    doc = authority.mint(
        PCRS, timestamp_ms=NOW, public_key=b"\x02" * 32, user_data=b"ud", nonce=b"\x00\x01"
    )
    result = verify_nitro(doc, root=TrustedRoot.dev(home), now_ms=NOW + 2000)
    full = {i: bytes(48) for i in range(16)} | PCRS
    assert dict(result.pcrs) == full
    assert result.image_id == image_id(full)
    assert result.timestamp_ms == NOW
    assert result.public_key == b"\x02" * 32
    assert result.user_data == b"ud"
    assert result.nonce == b"\x00\x01"
    assert result.module_id == authority.default_module_id
    assert result.root.name == "dev"
    assert result.insecure
    assert result.to_json()["root"] == {
        "name": "dev",
        "public_key": authority.root.public_key.hex(),
    }
    expect = Expectations(image_id=image_id(full), pcrs={16: PCRS[16]}, nonce=b"\x00\x01")
    verify_nitro(doc, root=authority.root, now_ms=NOW, expect=expect)


def test_dev_documents_are_rejected_under_aws_and_mock(authority: DevAuthority) -> None:
    doc = authority.mint(PCRS, timestamp_ms=NOW)
    for root in (TrustedRoot.aws(), TrustedRoot.mock()):
        with pytest.raises(CertificateChainError) as caught:
            verify_nitro(doc, root=root, now_ms=NOW)
        assert caught.value.reason == "root"


def test_another_installation_does_not_trust_this_one(
    authority: DevAuthority, tmp_path: Path
) -> None:
    other = DevAuthority.load_or_create(ReefHome(tmp_path / "other"))
    doc = authority.mint(PCRS, timestamp_ms=NOW)
    with pytest.raises(CertificateChainError) as caught:
        verify_nitro(doc, root=other.root, now_ms=NOW)
    # Both roots bear one name: the refusal tells them apart by key, and says whose to trust (an
    # operator's tenant minted a root of its own, as the hint then said, and met this).
    theirs = hashlib.sha256(authority.root.public_key).hexdigest()[:16]
    ours = hashlib.sha256(other.root.public_key).hexdigest()[:16]
    assert f", key {theirs}, not at the pinned root 'dev'" in caught.value.message
    assert f", key {ours})" in caught.value.message
    assert "the provider's home" in (caught.value.hint or "")


def test_from_document_takes_the_root_of_an_own_document(authority: DevAuthority) -> None:
    doc = authority.mint(PCRS, timestamp_ms=NOW, public_key=b"k" * 32)
    root = TrustedRoot.from_document(doc)
    assert root == authority.root
    assert root.name == "dev"
    assert root.insecure
    assert TrustedRoot.from_document(decode_nitro(doc)[1]) == root
    # The root it names is the one the document verifies under (and no other installation's).
    assert verify_nitro(doc, root=root, now_ms=NOW).public_key == b"k" * 32


def test_from_document_names_the_pinned_roots(authority: DevAuthority) -> None:
    _, document = decode_nitro(authority.mint(PCRS, timestamp_ms=NOW))
    for pinned in (TrustedRoot.aws(), TrustedRoot.mock()):
        claimed = dataclasses.replace(document, cabundle=(pinned.certificate,))
        assert TrustedRoot.from_document(claimed) == pinned
        assert TrustedRoot.from_document(claimed).name == pinned.name


def test_from_document_refuses_what_names_no_root(authority: DevAuthority) -> None:
    with pytest.raises(DecodeError):
        TrustedRoot.from_document(b"not a document")
    _, document = decode_nitro(authority.mint(PCRS, timestamp_ms=NOW))
    with pytest.raises(DecodeError, match="no certificate bundle"):
        TrustedRoot.from_document(dataclasses.replace(document, cabundle=()))
    with pytest.raises(InputError, match=r"not a DER X\.509 certificate"):
        TrustedRoot.from_document(dataclasses.replace(document, cabundle=(b"junk",)))


def test_documents_have_aws_layout_byte_for_byte(authority: DevAuthority) -> None:
    doc = authority.mint(PCRS, timestamp_ms=NOW, user_data=b"x" * 300)
    # array(4), bstr(4) {1: -35}, empty map, bstr with a 2-byte length: AWS's exact envelope.
    assert doc[:8] == bytes.fromhex("8444a1013822a059")
    assert doc[-98:-96] == b"\x58\x60"
    cose, payload = decode_nitro(doc)
    assert int.from_bytes(doc[8:10], "big") == len(cose.payload)
    assert not cose.tagged
    decoded = cbor2.loads(cose.payload)
    assert tuple(decoded) == AWS_PAYLOAD_KEYS
    assert cose.payload[0] == 0xA9
    assert decoded["digest"] == "SHA384"
    assert b"itimestamp\x1b" + NOW.to_bytes(8, "big") in cose.payload
    assert list(decoded["pcrs"]) == [*range(16), 16]
    assert decoded["public_key"] is None
    assert decoded["nonce"] is None
    assert decoded["user_data"] == b"x" * 300
    assert b"iuser_dataY\x01\x2c" in cose.payload  # minimal length head for 300 bytes
    # Re-encoding the decoded payload is the identity: minimal lengths throughout.
    assert payload.encode() == cose.payload
    assert decoded["cabundle"] == list(authority.cabundle)
    assert decoded["cabundle"][0] == authority.root.certificate


def test_the_leaf_lives_three_hours_and_is_reissued_near_expiry(
    authority: DevAuthority,
) -> None:
    def leaf_of(doc: bytes) -> bytes:
        return decode_nitro(doc)[1].certificate

    first = leaf_of(authority.mint(PCRS, timestamp_ms=NOW))
    assert leaf_of(authority.mint(PCRS, timestamp_ms=NOW + HOUR)) == first
    # Within 30 minutes of the leaf's end a new leaf is issued.
    later = leaf_of(authority.mint(PCRS, timestamp_ms=NOW + 3 * HOUR - 20 * 60_000))
    assert later != first
    # An earlier document than the current leaf gets its own leaf too.
    assert leaf_of(authority.mint(PCRS, timestamp_ms=NOW - HOUR)) not in (first, later)
    from cryptography import x509

    cert = x509.load_der_x509_certificate(first)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.total_seconds() == 3 * 3600
    assert "INSECURE" in cert.subject.rfc4514_string()


def test_each_module_id_gets_its_own_leaf(authority: DevAuthority) -> None:
    def leaf_of(doc: bytes) -> bytes:
        return decode_nitro(doc)[1].certificate

    a = leaf_of(authority.mint(PCRS, timestamp_ms=NOW, module_id="i-aaaa-enc1"))
    b = leaf_of(authority.mint(PCRS, timestamp_ms=NOW, module_id="i-bbbb-enc2"))
    assert a != b
    assert leaf_of(authority.mint(PCRS, timestamp_ms=NOW + 1, module_id="i-aaaa-enc1")) == a
    long_id = "i-" + "x" * 200
    doc = authority.mint(PCRS, timestamp_ms=NOW, module_id=long_id)
    assert verify_nitro(doc, root=authority.root, now_ms=NOW).module_id == long_id


def test_live_verification_of_an_old_dev_document_fails(authority: DevAuthority) -> None:
    doc = authority.mint(PCRS, timestamp_ms=NOW)
    with pytest.raises(StaleAttestationError):
        verify_nitro(doc, root=authority.root, now_ms=NOW + 10 * 60_000)
    # A cached verifier still checks the leaf of every document.
    verifier = NitroVerifier()
    verifier.verify(doc, root=authority.root, now_ms=NOW)
    verifier.verify(authority.mint(PCRS, timestamp_ms=NOW + 1), root=authority.root, now_ms=NOW)
    assert verifier.cache_hits == 1


def test_the_attester_is_an_nsm_stand_in(authority: DevAuthority) -> None:
    clock = iter([NOW, NOW + 5])
    attest = authority.attester(PCRS, clock_ms=lambda: next(clock), module_id="i-enclave")
    a = verify_nitro(
        attest(public_key=b"k", user_data=b"", nonce=b"n"), root=authority.root, now_ms=NOW
    )
    b = verify_nitro(
        attest(public_key=b"k", user_data=b"u", nonce=b""), root=authority.root, now_ms=NOW
    )
    assert (a.timestamp_ms, b.timestamp_ms) == (NOW, NOW + 5)
    assert a.module_id == b.module_id == "i-enclave"
    assert (a.nonce, b.user_data) == (b"n", b"u")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pcrs": {0: b"\x00" * 47}}, "48 bytes"),
        ({"pcrs": {32: b"\x00" * 48}}, "0..31"),
        ({"pcrs": {"0": b"\x00" * 48}}, "0..31"),
        ({"public_key": b"k" * 1025}, "1024"),
        ({"nonce": "text"}, "bytes"),
        ({"timestamp_ms": NOW - 5 * 24 * HOUR}, "validity"),
        ({"timestamp_ms": 1.5}, "integer"),
        ({"module_id": ""}, "module_id"),
    ],
)
def test_mint_refuses_bad_input(
    authority: DevAuthority, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"pcrs": PCRS, "timestamp_ms": NOW} | kwargs
    with pytest.raises(InputError, match=message):
        authority.mint(**args)  # type: ignore[arg-type]


def test_sealing_keys_follow_the_documented_recipe(home: ReefHome, authority: DevAuthority) -> None:
    image = hashlib.sha256(b"image").digest()
    key = authority.sealing_key(image)
    assert len(key) == 32
    assert key == DevAuthority.load_or_create(home).sealing_key(image)
    assert key != authority.sealing_key(hashlib.sha256(b"other").digest())
    # The recipe as documented, computed from the key file.
    private = serialization.load_pem_private_key(
        (home.dev_tee / "root.key").read_bytes(), password=None
    )
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    secret = private.private_numbers().private_value.to_bytes(48, "big")
    expected = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"reef dev-tee sealing v1",
        info=b"reef/dev-tee/sealing-key/" + image,
    ).derive(secret)
    assert key == expected
    with pytest.raises(InputError):
        authority.sealing_key(b"short")


def test_another_installation_derives_other_sealing_keys(
    authority: DevAuthority, tmp_path: Path
) -> None:
    other = DevAuthority.load_or_create(ReefHome(tmp_path / "other"))
    assert other.sealing_key(bytes(32)) != authority.sealing_key(bytes(32))


def test_missing_or_corrupt_dev_roots_are_config_errors(home: ReefHome) -> None:
    with pytest.raises(ConfigError, match="no dev TEE root"):
        TrustedRoot.dev(home)
    home.dev_tee.mkdir(parents=True)
    (home.dev_tee / "something-else").write_text("not ours")
    with pytest.raises(ConfigError, match="holds no dev TEE root key"):
        DevAuthority.load_or_create(home)


def test_an_unwritable_home_is_a_config_error(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    with pytest.raises(ConfigError, match="cannot create the dev TEE authority"):
        DevAuthority.load_or_create(ReefHome(blocked / "home"))


def test_a_tampered_authority_folder_is_refused(home: ReefHome, authority: DevAuthority) -> None:
    (home.dev_tee / "intermediate.crt").write_bytes(TrustedRoot.mock().certificate)
    with pytest.raises(ConfigError):
        DevAuthority.load_or_create(home)
    (home.dev_tee / "root.crt").write_bytes(b"junk")
    with pytest.raises(ConfigError):
        TrustedRoot.dev(home)
    (home.dev_tee / "root.key").write_bytes(b"junk")
    with pytest.raises(ConfigError):
        DevAuthority.load_or_create(home)


def test_dev_documents_pass_an_independent_cose_check(
    authority: DevAuthority,
) -> None:
    # Independent of reef's verifier: the ES384 signature checks with cryptography directly.
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    doc = authority.mint(PCRS, timestamp_ms=NOW)
    raw = cbor2.loads(doc)
    leaf = x509.load_der_x509_certificate(cbor2.loads(raw[2])["certificate"])
    to_sign = cbor2.dumps(["Signature1", raw[0], b"", raw[2]])
    r, s = int.from_bytes(raw[3][:48], "big"), int.from_bytes(raw[3][48:], "big")
    public = leaf.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(encode_dss_signature(r, s), to_sign, ec.ECDSA(hashes.SHA384()))
    assert CoseSign1.decode(doc).sig_structure() == to_sign


def test_the_dev_chain_passes_an_independent_x509_verifier(authority: DevAuthority) -> None:
    # pyca's X.509 path builder (not reef's walk) accepts the dev chain at the document time,
    # with the same Nitro-tolerant policy that accepts real AWS chains.
    import datetime as dt

    from cryptography import x509
    from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store

    doc = authority.mint(PCRS, timestamp_ms=NOW)
    _, payload = decode_nitro(doc)
    root, intermediate = (x509.load_der_x509_certificate(der) for der in payload.cabundle)
    ca_policy = ExtensionPolicy.permit_all().require_present(
        x509.BasicConstraints, Criticality.AGNOSTIC, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store([root]))
        .time(dt.datetime.fromtimestamp(NOW // 1000, dt.UTC))
        .extension_policies(ca_policy=ca_policy, ee_policy=ExtensionPolicy.permit_all())
        .build_client_verifier()
    )
    chain = verifier.verify(x509.load_der_x509_certificate(payload.certificate), [intermediate])
    assert [c.subject for c in chain.chain[1:]] == [intermediate.subject, root.subject]
