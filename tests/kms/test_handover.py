"""A KMS root survives a reef upgrade: its admin authorises a new image, and a root of that image,
started with an empty store, inherits every version's seed from the old root over Scallop
(attested both ways), so every key every app derived stays the same. Each refusal is replayed:
an image not authorised, an expired or foreign or non-admin authorisation, a peer that does not
attest live, an old root that is not the pinned one, a store that already holds seeds.

Real roots on loopback (Scallop and public HTTP), real dev-TEE attestations, real sealing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kms.kms_support import dev_root_server
from reef.attestation import DevAuthority, image_id
from reef.crypto import Secp256k1PrivateKey, eip191_digest, generate_x25519
from reef.errors import KMSError, ServiceError
from reef.kms import (
    AeadSealer,
    HandoverSource,
    KmsPublicClient,
    KmsRoot,
    KmsWiring,
    PeerRate,
    RootServer,
    SeedStore,
    authorise_handover,
    fetch_enclave_seed,
    fetch_identity,
    handover_message,
    inherit_root_seeds,
)
from reef.kms._scallop import _read_answer
from reef.scallop import connect
from reef.testing import wall_ms

OLD_PCRS = {0: b"\xa0" * 48, 1: b"\xa1" * 48, 2: b"\xa2" * 48}  # the root before the upgrade
NEW_PCRS = {0: b"\xa0" * 48, 1: b"\xb1" * 48, 2: b"\xa2" * 48}  # same image, new runtime (PCR1)
HOSTILE_PCRS = {0: b"\xc0" * 48, 1: b"\xc1" * 48, 2: b"\xc2" * 48}
APP_PCRS = {0: b"\x10" * 48, 1: b"\x11" * 48, 2: b"\x12" * 48}
OLD, NEW, HOSTILE = image_id(OLD_PCRS), image_id(NEW_PCRS), image_id(HOSTILE_PCRS)
ADMIN = Secp256k1PrivateKey(hashlib.sha256(b"reef kms handover admin").digest())
MALLORY = Secp256k1PrivateKey(hashlib.sha256(b"not the admin").digest())


def _signer(key: Secp256k1PrivateKey) -> Callable[[bytes], bytes]:
    return lambda message: key.sign_digest(eip191_digest(message))


@dataclass
class Clock:
    """The old root's wall clock, moved by hand (handover expiries are read against it)."""

    offset_ms: int = 0

    def __call__(self) -> int:
        return wall_ms() + self.offset_ms


def _store(base: Path, authority: DevAuthority, pcrs: dict[int, bytes]) -> SeedStore:
    """A root's store, sealed under the dev TEE's key for its image (as the enclave seals)."""
    return SeedStore(base, AeadSealer(authority.sealing_key(image_id(pcrs))))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def old_root(
    tmp_path: Path, authority: DevAuthority, clock: Clock
) -> AsyncIterator[RootServer]:
    """Root A (image OLD), rotated once: two versions, version 1 current."""
    root = KmsRoot.open(
        _store(tmp_path / "old", authority, OLD_PCRS),
        attester=authority.attester(OLD_PCRS, clock_ms=wall_ms),
        admin=ADMIN.public_key.address,
        clock_ms=clock,
    )
    await root.rotate()
    async with dev_root_server(root, authority) as running:
        yield running


def _source(server: RootServer, **pins: bytes) -> HandoverSource:
    return HandoverSource(host=server.host, port=server.scallop_port, **(pins or {"image_id": OLD}))


async def _inherit(
    server: RootServer,
    store: SeedStore,
    authority: DevAuthority,
    pcrs: dict[int, bytes],
    *,
    age_ms: int = 0,
    **pins: bytes,
) -> str:
    return await inherit_root_seeds(
        store,
        _source(server, **pins),
        attester=authority.attester(pcrs, clock_ms=lambda: wall_ms() - age_ms),
        roots=[authority.root],
        deadline_s=5,
    )


async def _authorise(server: RootServer, image: bytes, *, expires_in_s: int = 3600) -> None:
    await authorise_handover(
        server.public_url,
        image,
        expires_s=wall_ms() // 1000 + expires_in_s,
        sign=_signer(ADMIN),
    )


async def test_a_new_image_inherits_every_version_and_derives_the_same_keys(
    old_root: RootServer, authority: DevAuthority, tmp_path: Path
) -> None:
    await _authorise(old_root, NEW)
    store = _store(tmp_path / "new", authority, NEW_PCRS)
    said = await _inherit(
        old_root,
        store,
        authority,
        NEW_PCRS,
        scallop_key=old_root.root.keyring.identity(0).scallop_key,
        image_id=OLD,
    )
    assert "versions 0, 1 (current 1)" in said
    assert OLD.hex() in said
    assert store.inherited_from() == OLD

    new_root = KmsRoot.open(
        store,
        attester=authority.attester(NEW_PCRS, clock_ms=wall_ms),
        admin=ADMIN.public_key.address,
    )
    async with dev_root_server(new_root, authority) as new:
        old_identity = await fetch_identity(old_root.public_url, root=authority.root, image_id=OLD)
        new_identity = await fetch_identity(new.public_url, root=authority.root, image_id=NEW)
        assert new_identity.identities == old_identity.identities  # every version's keys
        assert new_identity.current_version == old_identity.current_version == 1
        assert new_identity.attestation.image_id == NEW

        # A public key, asked of each root and checked against the old root's signing keys.
        pinned = old_identity.signing_keys
        for version in (None, 0):
            keys = [
                await KmsPublicClient(url, signing_key=pinned).public_key(
                    "secp256k1", "wallet", image_id=image_id(APP_PCRS), version=version
                )
                for url in (old_root.public_url, new.public_url)
            ]
            assert keys[0] == keys[1]

        # An app enclave's seed over Scallop: the same from either root, every version.
        secret, public = generate_x25519()

        async def auther() -> bytes:
            return authority.mint(APP_PCRS, timestamp_ms=wall_ms(), public_key=public)

        for server in (old_root, new):
            wiring = KmsWiring(
                scallop_host=server.host,
                scallop_port=server.scallop_port,
                scallop_key=server.root.keyring.identity().scallop_key,
            )
            seeds = [
                await fetch_enclave_seed(wiring, static_key=secret, auther=auther, version=v)
                for v in (0, 1)
            ]
            assert seeds == [
                (old_root.root.keyring.enclave_seed(image_id(APP_PCRS), v), v) for v in (0, 1)
            ]

    # Restarted, the new root knows its seeds are inherited: it does not ask the old root again
    # (which may be gone by then).
    await old_root.aclose()
    again = await _inherit(old_root, store, authority, NEW_PCRS)
    assert "not asking again" in again
    assert KmsRoot.open(store).keyring.identities() == old_identity.identities


async def test_an_image_not_authorised_gets_nothing_and_the_root_keeps_serving(
    old_root: RootServer, authority: DevAuthority, tmp_path: Path
) -> None:
    await _authorise(old_root, NEW)
    hostile = _store(tmp_path / "hostile", authority, HOSTILE_PCRS)
    with pytest.raises(KMSError, match=f"image {HOSTILE.hex()} is not authorised") as refused:
        await _inherit(old_root, hostile, authority, HOSTILE_PCRS)
    assert "(403)" in refused.value.message
    assert "reef kms handover" in (refused.value.hint or "")
    assert not hostile.exists()
    assert hostile.inherited_from() is None
    # The authorised image is still served, after the refusal.
    store = _store(tmp_path / "new", authority, NEW_PCRS)
    await _inherit(old_root, store, authority, NEW_PCRS)
    assert store.load().identities() == old_root.root.keyring.identities()


async def test_a_peer_that_does_not_attest_live_gets_no_seeds(
    tmp_path: Path, authority: DevAuthority
) -> None:
    root = KmsRoot.open(
        _store(tmp_path / "old", authority, OLD_PCRS),
        attester=authority.attester(OLD_PCRS, clock_ms=wall_ms),
        admin=ADMIN.public_key.address,
    )
    # One attestation verified per client address, then channels go through unattested (and
    # are answered 429 on /derive): the budget of reef.kms.BudgetedStore.
    once = PeerRate(per_second=1e-6, burst=1)
    server = RootServer(
        root, peer_roots=[authority.root], scallop_port=0, public_port=0, attestation_rate=once
    )
    async with server:
        await _authorise(server, NEW)
        store = _store(tmp_path / "new", authority, NEW_PCRS)
        # An attestation of the authorised image, but ten minutes old (the root takes 300 s).
        with pytest.raises(KMSError, match="no Scallop channel"):
            await _inherit(server, store, authority, NEW_PCRS, age_ms=600_000)
        # Over its budget, a client of the authorised image is let through unattested: the
        # channel exists, but no seed leaves on it.
        secret, public = generate_x25519()

        async def auther() -> bytes:
            return authority.mint(NEW_PCRS, timestamp_ms=wall_ms(), public_key=public)

        stream = await connect(
            server.host, server.scallop_port, static_key=secret, auther=auther, handshake_timeout=5
        )
        try:
            await stream.send(b"GET /handover HTTP/1.1\r\nHost: kms\r\n\r\n")
            status, _, body = await _read_answer(stream)
        finally:
            await stream.aclose()
        assert status == 401
        assert b"did not attest its image live" in body
        assert not store.exists()


async def test_an_old_root_that_is_not_the_pinned_one_is_refused(
    old_root: RootServer, authority: DevAuthority, tmp_path: Path
) -> None:
    await _authorise(old_root, NEW)
    store = _store(tmp_path / "new", authority, NEW_PCRS)
    with pytest.raises(KMSError, match="no Scallop channel") as refused:
        await _inherit(old_root, store, authority, NEW_PCRS, image_id=HOSTILE)
    assert "does not allow" in str(refused.value.__cause__)
    # Another root of the same image (many operators run one image) is not this root.
    with pytest.raises(KMSError, match="is not the pinned one"):
        await _inherit(old_root, store, authority, NEW_PCRS, image_id=OLD, scallop_key=b"\x42" * 32)
    assert not store.exists()


async def test_a_store_with_seeds_is_never_overwritten(
    old_root: RootServer, authority: DevAuthority, tmp_path: Path
) -> None:
    await _authorise(old_root, NEW)
    store = _store(tmp_path / "new", authority, NEW_PCRS)
    own = store.load_or_create()
    with pytest.raises(KMSError, match="did not inherit") as refused:
        await _inherit(old_root, store, authority, NEW_PCRS)
    assert "--state-dir" in (refused.value.hint or "")
    assert store.load().identities() == own.identities()
    with pytest.raises(KMSError, match="will not overwrite"):
        store.adopt(old_root.root.keyring, origin=OLD)
    assert store.load().identities() == own.identities()


async def test_authorisations_the_root_refuses(
    old_root: RootServer, authority: DevAuthority, tmp_path: Path, clock: Clock
) -> None:
    url = old_root.public_url
    now_s = wall_ms() // 1000
    with pytest.raises(ServiceError, match=r"401.*not by this KMS's admin"):
        await authorise_handover(url, NEW, expires_s=now_s + 600, sign=_signer(MALLORY))
    with pytest.raises(ServiceError, match=r"400.*expired at"):
        await authorise_handover(url, NEW, expires_s=now_s - 1, sign=_signer(ADMIN))
    with pytest.raises(ServiceError, match=r"400.*more than"):
        await authorise_handover(url, NEW, expires_s=now_s + 30 * 86400, sign=_signer(ADMIN))
    assert old_root.root.handovers() == ()

    # An authorisation the admin signed for another root (same admin, same image) is replayed
    # here: it names the other root's signer, and is refused.
    other = KmsRoot.open(
        _store(tmp_path / "other", authority, OLD_PCRS.copy() | {2: b"\xee" * 48}),
        admin=ADMIN.public_key.address,
    )
    other_signer = other.keyring.identity().signing_address
    body = {
        "image_id": NEW.hex(),
        "expires": now_s + 600,
        "kms_signing_address": other_signer,
        "signature": _signer(ADMIN)(handover_message(other_signer, NEW, now_s + 600)).hex(),
    }
    async with httpx.AsyncClient() as http:
        answer = await http.post(url + "/admin/handover", json=body)
        assert answer.status_code == 401
        assert f"is for the KMS root whose signing address is {other_signer}" in answer.text
        # Its signature with this root's address swapped in does not recover to the admin.
        mine = old_root.root.keyring.identity().signing_address
        answer = await http.post(
            url + "/admin/handover", json={**body, "kms_signing_address": mine}
        )
        assert answer.status_code == 401
        assert "not by this KMS's admin" in answer.text
        answer = await http.post(url + "/admin/handover", json={"image_id": "zz"})
        assert answer.status_code == 400
    assert old_root.root.handovers() == ()

    # A kept authorisation that expires: the image is refused after that.
    await _authorise(old_root, NEW, expires_in_s=60)
    clock.offset_ms = 120_000
    store = _store(tmp_path / "new", authority, NEW_PCRS)
    with pytest.raises(KMSError, match="expired at"):
        await _inherit(old_root, store, authority, NEW_PCRS)
    assert not store.exists()
    assert old_root.root.handovers() == ()


async def test_a_root_without_an_admin_takes_no_handover(
    tmp_path: Path, authority: DevAuthority
) -> None:
    root = KmsRoot.open(_store(tmp_path / "a", authority, OLD_PCRS))
    async with dev_root_server(root, authority) as server:
        with pytest.raises(ServiceError, match=r"403.*no admin"):
            await _authorise(server, NEW)


async def test_the_authorisation_survives_a_restart_of_the_old_root(
    tmp_path: Path, authority: DevAuthority
) -> None:
    store = _store(tmp_path / "old", authority, OLD_PCRS)
    attester = authority.attester(OLD_PCRS, clock_ms=wall_ms)
    admin = ADMIN.public_key.address
    root = KmsRoot.open(store, attester=attester, admin=admin)
    async with dev_root_server(root, authority) as server:
        await _authorise(server, NEW)
        identity = await fetch_identity(server.public_url, root=authority.root)
        assert [image for image, _ in identity.handovers] == [NEW]
    # The file beside the seeds holds the signature only, and a tampered entry is dropped.
    kept = json.loads((tmp_path / "old" / SeedStore.HANDOVERS_FILENAME).read_text())
    assert set(kept[0]) == {"image_id", "expires", "kms_signing_address", "signature"}
    forged = {**kept[0], "image_id": HOSTILE.hex()}
    store.save_handovers([kept[0], forged, {"nonsense": 1}])

    restarted = KmsRoot.open(store, attester=attester, admin=admin)
    assert [g.image_id for g in restarted.handovers()] == [NEW]
    async with dev_root_server(restarted, authority) as server:
        new_store = _store(tmp_path / "new", authority, NEW_PCRS)
        await _inherit(server, new_store, authority, NEW_PCRS)
        assert new_store.load().identities() == restarted.keyring.identities()


async def test_seeds_that_are_not_the_attested_identity_are_refused(
    old_root: RootServer, authority: DevAuthority
) -> None:
    """The new root checks what it received against the old root's attestation (its Scallop
    key and the digest of every version's keys, chain and admin): seeds from anywhere else,
    or an answer that dropped or changed a version, are refused before anything is sealed."""
    from reef.attestation import verify_nitro
    from reef.kms import RootKeyring, RootSeed
    from reef.kms._handover import _received_keyring

    root = old_root.root
    document = root.identity_attestation()
    attested = verify_nitro(
        document, root=authority.root, mode="live", now_ms=wall_ms(), max_age_ms=60_000
    )
    key = root.keyring.identity().scallop_key
    source = _source(old_root)
    honest = root.handover_answer()
    assert _received_keyring(honest, source, attested, key).identities() == (
        root.keyring.identities()
    )
    data = json.loads(honest)
    dropped = {**data, "versions": data["versions"][1:]}
    other = RootKeyring([RootSeed(b"\x01" * 64, 0), RootSeed(b"\x02" * 64, 1)])
    forged = {
        **data,
        "versions": [{"version": v, "seed": other.seed(v).seed.hex()} for v in other.versions],
    }
    another_admin = {**data, "rotation_admin": MALLORY.public_key.address}
    for body in (dropped, forged, another_admin):
        with pytest.raises(KMSError, match="not the identity it attested"):
            _received_keyring(json.dumps(body).encode(), source, attested, key)
    with pytest.raises(KMSError, match="malformed"):
        _received_keyring(b'{"versions": [{"seed": "zz"}]}', source, attested, key)


async def test_a_malformed_authorisation_is_a_400_not_a_crash(old_root: RootServer) -> None:
    """Every field of a posted authorisation is checked before it is compared or verified: a
    signing address that is not one (non-ASCII text made the constant-time comparison raise,
    a 500) or fields of the wrong type answer 400, and the root goes on serving."""
    good = {
        "image_id": NEW.hex(),
        "expires": wall_ms() // 1000 + 600,
        "kms_signing_address": old_root.root.keyring.identity().signing_address,
        "signature": "00" * 65,
    }
    bad_values = [
        {"kms_signing_address": "0x\u00e9" + "0" * 39},
        {"kms_signing_address": "not an address"},
        {"kms_signing_address": 7},
        {"expires": "soon"},
        {"expires": True},
        {"image_id": "00" * 31},
        {"signature": "zz"},
    ]
    async with httpx.AsyncClient() as http:
        for change in bad_values:
            answer = await http.post(old_root.public_url + "/admin/handover", json=good | change)
            assert answer.status_code == 400, (change, answer.text)
        for body in (b"[]", b"{", b'"text"'):
            answer = await http.post(old_root.public_url + "/admin/handover", content=body)
            assert answer.status_code == 400, (body, answer.text)
        assert (await http.get(old_root.public_url + "/info")).status_code == 200
    assert old_root.root.handovers() == ()


async def test_the_admin_revokes_an_authorisation(
    old_root: RootServer, authority: DevAuthority, tmp_path: Path
) -> None:
    """A revocation names the authorisation it withdraws (image and expiry): the image is then
    refused; a revocation by another key is refused; and replayed after the admin authorised
    the image again (another expiry), it does not withdraw the new authorisation."""
    url = old_root.public_url
    await _authorise(old_root, NEW, expires_in_s=600)
    first = old_root.root.handovers()[0]
    with pytest.raises(ServiceError, match=r"401.*not by this KMS's admin"):
        await authorise_handover(url, NEW, expires_s=None, sign=_signer(MALLORY), revoke=True)
    assert old_root.root.handovers() == (first,)

    revoked = await authorise_handover(url, NEW, expires_s=None, sign=_signer(ADMIN), revoke=True)
    assert revoked["revoked"] is True
    assert revoked["expires"] == first.expires_s
    assert old_root.root.handovers() == ()
    store = _store(tmp_path / "new", authority, NEW_PCRS)
    with pytest.raises(KMSError, match="is not authorised"):
        await _inherit(old_root, store, authority, NEW_PCRS)
    with pytest.raises(KMSError, match="keeps no authorisation"):
        await authorise_handover(url, NEW, expires_s=None, sign=_signer(ADMIN), revoke=True)

    # The revocation, replayed against a newer authorisation of the same image: refused.
    await _authorise(old_root, NEW, expires_in_s=900)
    signer = old_root.root.keyring.identity().signing_address
    replay = {
        "image_id": NEW.hex(),
        "expires": first.expires_s,
        "kms_signing_address": signer,
        "signature": _signer(ADMIN)(
            handover_message(signer, NEW, first.expires_s, revoke=True)
        ).hex(),
        "revoke": True,
    }
    async with httpx.AsyncClient() as http:
        answer = await http.post(url + "/admin/handover", json=replay)
    assert answer.status_code == 400
    assert "keeps no authorisation for image" in answer.text
    assert [g.image_id for g in old_root.root.handovers()] == [NEW]
    await _inherit(old_root, store, authority, NEW_PCRS)
    assert store.load().identities() == old_root.root.keyring.identities()
