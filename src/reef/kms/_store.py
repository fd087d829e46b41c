"""Sealed storage of a root server's seeds: created inside the enclave, on disk only sealed.

A :class:`Sealer` encrypts bytes under a key that only the same enclave image obtains from its TEE
(the dev TEE derives it from its root secret and the image id; a Nitro enclave would use KMS-bound
or NSM-derived keys). :class:`SeedStore` keeps every version of the root seed in one sealed file,
written atomically (temporary file, fsync, rename) so a crash mid-rotation leaves either the old
or the new set, never a torn one. If the file exists but does not open, the store refuses to go
on rather than minting a fresh seed: a silently new seed would change every key of every enclave.

A root that *inherits* its seeds from an older root (docs/kms.md, "Upgrading a root") writes them
with :meth:`SeedStore.adopt`, only into an empty store, and records beside them, sealed, the image
it inherited from: restarted, it knows its seeds are the inherited ones and does not ask again,
and a store holding seeds it did not inherit is refused rather than served or overwritten. The
admin's handover authorisations an old root keeps (signatures, no secret) are plain JSON beside
the seeds (:meth:`SeedStore.save_handovers`); the root checks each signature again on reading.

AES-256-GCM (pyca/cryptography) is the AEAD: standard, constant time, and what TEE sealing APIs
(SGX, Nitro KMS envelopes) use.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reef.errors import ConfigError, InputError, KMSError
from reef.home import replace_file
from reef.kms._derive import ROOT_SEED_LENGTH, RootSeed
from reef.kms._keyring import RootKeyring

__all__ = ["AeadSealer", "Sealer", "SeedStore"]

_FILE_MAGIC = b"REEFKMS\x01"
_PLAIN_MAGIC = b"reef.kms.seeds.v1"
_AAD = b"reef.kms.sealed-root-seeds.v1"
_NONCE = 12
_ORIGIN_MAGIC = b"reef.kms.inherited.v1"
_MAX_HANDOVERS_FILE = 64 * 1024


@runtime_checkable
class Sealer(Protocol):
    """Encrypts bytes so that only the same enclave image can decrypt them."""

    def seal(self, plaintext: bytes) -> bytes: ...

    def unseal(self, sealed: bytes) -> bytes:
        """Raises :class:`reef.errors.KMSError` when ``sealed`` was not sealed by this key."""
        ...


class AeadSealer:
    """A :class:`Sealer` over a 32-byte sealing key (AES-256-GCM, random 96-bit nonces).

    Raises:
        InputError: when the key is not 32 bytes.
    """

    def __init__(self, key: bytes, *, random: Callable[[int], bytes] = os.urandom) -> None:
        if len(key) != 32:
            raise InputError(f"a sealing key is 32 bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self._random = random

    def __repr__(self) -> str:
        return "AeadSealer(<key>)"

    def seal(self, plaintext: bytes) -> bytes:
        nonce = self._random(_NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext, _AAD)

    def unseal(self, sealed: bytes) -> bytes:
        if len(sealed) < _NONCE + 16:
            raise KMSError("the sealed blob is truncated")
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], _AAD)
        except InvalidTag as exc:
            raise KMSError(
                "the sealed blob does not open with this enclave's sealing key",
                hint="it was sealed by another image (or another dev TEE), or it was altered",
            ) from exc


def _encode(keyring: RootKeyring) -> bytes:
    parts = [_PLAIN_MAGIC, len(keyring.versions).to_bytes(4, "big")]
    for version in keyring.versions:
        parts.append(version.to_bytes(4, "big"))
        parts.append(keyring.seed(version).seed)
    return b"".join(parts)


def _decode(plain: bytes) -> RootKeyring:
    if not plain.startswith(_PLAIN_MAGIC):
        raise KMSError("the unsealed seed file has an unknown format")
    offset = len(_PLAIN_MAGIC)
    count = int.from_bytes(plain[offset : offset + 4], "big")
    offset += 4
    entry = 4 + ROOT_SEED_LENGTH
    if count == 0 or len(plain) != offset + count * entry:
        raise KMSError("the unsealed seed file is truncated or has trailing bytes")
    seeds = []
    for i in range(count):
        start = offset + i * entry
        version = int.from_bytes(plain[start : start + 4], "big")
        seeds.append(RootSeed(plain[start + 4 : start + entry], version))
    return RootKeyring(seeds)


class SeedStore:
    """Every version of a root seed, sealed in ``directory/root-seeds.sealed``.

    Args:
        directory: where the sealed file lives (created owner-only if missing).
        sealer: the enclave's sealing API.
        random: the source of new seeds (``os.urandom``; tests pass a deterministic one).
    """

    FILENAME = "root-seeds.sealed"
    ORIGIN_FILENAME = "inherited-from.sealed"
    HANDOVERS_FILENAME = "handovers.json"

    def __init__(
        self,
        directory: Path,
        sealer: Sealer,
        *,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._dir = Path(directory)
        self._sealer = sealer
        self._random = random

    @property
    def path(self) -> Path:
        return self._dir / self.FILENAME

    def exists(self) -> bool:
        return self.path.exists()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self._dir / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> RootKeyring:
        data = self.path.read_bytes()
        if not data.startswith(_FILE_MAGIC):
            raise ConfigError(
                f"{self.path} is not a reef sealed seed file",
                hint="move it away only if you mean to lose every key derived from it",
            )
        return _decode(self._sealer.unseal(data[len(_FILE_MAGIC) :]))

    def _write(self, keyring: RootKeyring) -> None:
        sealed = _FILE_MAGIC + self._sealer.seal(_encode(keyring))
        replace_file(self.path, sealed, durable=True)

    def load(self) -> RootKeyring:
        """Unseal the existing seeds.

        Raises:
            ConfigError: when there is no sealed file, or it is not one.
            KMSError: when it does not unseal (another image sealed it) or is corrupt.
        """
        if not self.exists():
            raise ConfigError(
                f"no sealed root seed at {self.path}",
                hint="start the root server once (it creates the seed), or check --state-dir",
            )
        return self._read()

    def load_or_create(self) -> RootKeyring:
        """Unseal the seeds, or create version 0 from fresh randomness if there are none."""
        with self._locked():
            if self.exists():
                return self._read()
            keyring = RootKeyring([RootSeed(self._random(ROOT_SEED_LENGTH), 0)])
            self._write(keyring)
            return keyring

    def rotate(self) -> RootKeyring:
        """Add a fresh random seed as version current + 1; every older version stays.

        Raises:
            ConfigError, KMSError: as :meth:`load`.
        """
        with self._locked():
            keyring = self.load()
            seed = RootSeed(self._random(ROOT_SEED_LENGTH), keyring.current_version + 1)
            rotated = keyring.with_version(seed)
            self._write(rotated)
            return rotated

    # --- inheritance and handovers ---------------------------------------------------------

    def inherited_from(self) -> bytes | None:
        """The image id of the root these seeds were inherited from; None when they were not.

        Raises:
            KMSError: when the record does not unseal here (altered, or another image's).
        """
        path = self._dir / self.ORIGIN_FILENAME
        if not path.exists():
            return None
        plain = self._sealer.unseal(path.read_bytes())
        if not plain.startswith(_ORIGIN_MAGIC) or len(plain) != len(_ORIGIN_MAGIC) + 32:
            raise KMSError(f"{path} is not a record of inherited seeds")
        return plain[len(_ORIGIN_MAGIC) :]

    def adopt(self, keyring: RootKeyring, *, origin: bytes) -> None:
        """Seal ``keyring``, inherited from the root of image ``origin``, into this empty store.

        The origin is written first: a crash between the two writes leaves a store with no
        seeds (the next start inherits again), never seeds without their origin.

        Raises:
            KMSError: when the store already holds seeds (they are never overwritten).
        """
        with self._locked():
            if self.exists():
                raise KMSError(
                    f"{self.path} already holds root seeds: this root will not overwrite them "
                    "with inherited ones",
                    hint="a new root inherits only into an empty --state-dir; move the old "
                    "seeds away only if you mean to lose every key derived from them",
                )
            replace_file(
                self._dir / self.ORIGIN_FILENAME,
                self._sealer.seal(_ORIGIN_MAGIC + bytes(origin)),
                durable=True,
            )
            self._write(keyring)

    def load_handovers(self) -> list[Mapping[str, Any]]:
        """The handover authorisations kept beside the seeds (unchecked: the root checks them).

        A file that is not a JSON list (altered, cut short) is read as none, with no error: a
        root must not fail to start over a record it can do without.
        """
        path = self._dir / self.HANDOVERS_FILENAME
        try:
            data = path.read_bytes()
            items = json.loads(data) if len(data) <= _MAX_HANDOVERS_FILE else None
        except (OSError, ValueError, RecursionError):
            return []
        if not isinstance(items, list):
            return []
        return [item for item in items if isinstance(item, dict)]

    def save_handovers(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Replace the kept handover authorisations (atomically, durably)."""
        with self._locked():
            replace_file(
                self._dir / self.HANDOVERS_FILENAME,
                json.dumps(list(items)).encode(),
                durable=True,
            )
