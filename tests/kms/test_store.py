"""Sealed seed storage: versions survive restarts, only the same sealing key opens them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from reef.errors import ConfigError, InputError, KMSError
from reef.kms import AeadSealer, RootSeed, SeedStore, enclave_seed

IMAGE = b"\x11" * 32


def _sealer(label: bytes) -> AeadSealer:
    return AeadSealer(hashlib.sha256(label).digest())


def test_create_then_reload(tmp_path: Path) -> None:
    store = SeedStore(tmp_path, _sealer(b"image A"))
    first = store.load_or_create()
    assert first.versions == (0,)
    again = SeedStore(tmp_path, _sealer(b"image A")).load_or_create()
    assert again.seed(0).seed == first.seed(0).seed
    assert again.enclave_seed(IMAGE) == first.enclave_seed(IMAGE)
    assert (tmp_path / "root-seeds.sealed").stat().st_mode & 0o777 == 0o600


def test_seed_is_not_in_the_file(tmp_path: Path) -> None:
    keyring = SeedStore(tmp_path, _sealer(b"image A")).load_or_create()
    raw = (tmp_path / "root-seeds.sealed").read_bytes()
    secret = keyring.seed(0).seed
    assert secret not in raw
    assert secret.hex().encode() not in raw
    assert secret[:16] not in raw


def test_another_image_cannot_open_and_nothing_is_overwritten(tmp_path: Path) -> None:
    SeedStore(tmp_path, _sealer(b"image A")).load_or_create()
    before = (tmp_path / "root-seeds.sealed").read_bytes()
    other = SeedStore(tmp_path, _sealer(b"image B"))
    with pytest.raises(KMSError, match="does not open"):
        other.load_or_create()
    with pytest.raises(KMSError, match="does not open"):
        other.rotate()
    assert (tmp_path / "root-seeds.sealed").read_bytes() == before


def test_corrupt_or_foreign_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "root-seeds.sealed").write_bytes(b"hello")
    with pytest.raises(ConfigError, match="not a reef sealed seed file"):
        SeedStore(tmp_path, _sealer(b"a")).load_or_create()
    (tmp_path / "root-seeds.sealed").write_bytes(b"REEFKMS\x01" + b"\x00" * 40)
    with pytest.raises(KMSError, match="does not open"):
        SeedStore(tmp_path, _sealer(b"a")).load()
    with pytest.raises(ConfigError, match="no sealed root seed"):
        SeedStore(tmp_path / "empty", _sealer(b"a")).load()


def test_rotation_keeps_old_versions(
    tmp_path: Path, make_random: Callable[[str], Callable[[int], bytes]]
) -> None:
    store = SeedStore(tmp_path, _sealer(b"image A"), random=make_random("store"))
    v0 = store.load_or_create()
    v1 = store.rotate()
    v2 = store.rotate()
    assert v2.versions == (0, 1, 2)
    assert v2.current_version == 2
    reloaded = SeedStore(tmp_path, _sealer(b"image A")).load()
    assert reloaded.versions == (0, 1, 2)
    assert reloaded.enclave_seed(IMAGE, 0) == v0.enclave_seed(IMAGE)
    assert reloaded.enclave_seed(IMAGE, 1) == v1.enclave_seed(IMAGE)
    assert reloaded.enclave_seed(IMAGE) == v2.enclave_seed(IMAGE, 2)
    assert len({reloaded.enclave_seed(IMAGE, v) for v in (0, 1, 2)}) == 3
    # A rotated version is a fresh seed under its own domain-separated derivation.
    assert reloaded.seed(1).seed != reloaded.seed(0).seed
    assert reloaded.enclave_seed(IMAGE, 1) == enclave_seed(
        RootSeed(reloaded.seed(1).seed, 1), IMAGE
    )
    identities = reloaded.identities()
    assert len({i.signing_key for i in identities}) == 3
    assert len({i.scallop_key for i in identities}) == 3


def test_a_requested_version_resolves_to_a_known_one(
    tmp_path: Path, make_random: Callable[[str], Callable[[int], bytes]]
) -> None:
    store = SeedStore(tmp_path, _sealer(b"image A"), random=make_random("store"))
    store.load_or_create()
    keyring = store.rotate()
    assert keyring.resolve_version(None) == 1
    assert keyring.resolve_version(0) == 0
    with pytest.raises(InputError, match="no root seed version 2") as caught:
        keyring.resolve_version(2)
    assert caught.value.hint == "known versions: 0, 1"


def test_sealer_checks() -> None:
    with pytest.raises(InputError, match="32 bytes"):
        AeadSealer(b"short")
    sealer = _sealer(b"x")
    blob = sealer.seal(b"payload")
    assert sealer.unseal(blob) == b"payload"
    assert sealer.seal(b"payload") != blob  # fresh nonce every time
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(KMSError):
        sealer.unseal(bytes(tampered))
    with pytest.raises(KMSError, match="truncated"):
        sealer.unseal(b"\x00" * 5)
    assert repr(sealer) == "AeadSealer(<key>)"
