"""A root server's versions of its root seed, and the public identity each version has.

Rotation model (docs/kms.md, "Rotation"): each version is a complete, independent KMS identity
with its own random 64-byte seed, hence its own response-signing key (``oyster.kms.secp256k1``)
and Scallop key (``oyster.kms.x25519``). The highest version is *current*: enclaves get its seeds
by default and the Scallop listener speaks with its key. Older versions stay derivable on request
(``?version=N``) so apps can migrate data sealed under old keys; each version's public answers are
signed by that version's own signing key, so a leaked old seed cannot forge answers about new keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from reef.crypto import Secp256k1PrivateKey
from reef.errors import InputError, MisuseError
from reef.kms._derive import (
    SCALLOP_KEY_PATH,
    SIGNING_KEY_PATH,
    RootSeed,
    contract_seed,
    enclave_seed,
)

__all__ = ["KmsIdentity", "RootKeyring", "identity_digest"]

_IDENTITY_LABEL = b"reef.kms.identity.v1"


@dataclass(frozen=True)
class KmsIdentity:
    """The public keys of one version of a KMS root: what clients pin.

    ``signing_key`` is the 64-byte ``x || y`` secp256k1 key that signs public answers;
    ``scallop_key`` the 32-byte X25519 static key of the Scallop listener.
    """

    version: int
    signing_key: bytes
    scallop_key: bytes

    @property
    def signing_address(self) -> str:
        """The Ethereum address of the signing key (lowercase, ``0x``)."""
        from reef.crypto import Secp256k1PublicKey

        return Secp256k1PublicKey(self.signing_key).address

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "signing_key": self.signing_key.hex(),
            "signing_address": self.signing_address,
            "scallop_key": self.scallop_key.hex(),
        }

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> KmsIdentity:
        """Read :meth:`to_json` output (``signing_address`` is derived, not read).

        Raises:
            KeyError, TypeError, ValueError: when a field is missing or not what it should be
                (callers say which answer was malformed).
        """
        return cls(
            int(item["version"]),
            bytes.fromhex(item["signing_key"]),
            bytes.fromhex(item["scallop_key"]),
        )


def identity_digest(
    identities: Iterable[KmsIdentity], *, chain_id: int | None = None, admin: str = ""
) -> bytes:
    """SHA-256 binding a root's public configuration; its attestation carries it as user data.

    It covers every version's keys, the chain contract seeds are bound to (if any) and the address
    allowed to rotate (if any), so an attested root cannot be presented with another policy.
    """
    parts = [_IDENTITY_LABEL]
    ordered = sorted(identities, key=lambda i: i.version)
    parts.append(len(ordered).to_bytes(4, "big"))
    for identity in ordered:
        parts.append(identity.version.to_bytes(4, "big"))
        parts.append(identity.signing_key)
        parts.append(identity.scallop_key)
    if chain_id is None:
        parts.append(b"\x00")
    else:
        parts.append(b"\x01" + chain_id.to_bytes(8, "big"))
    admin_raw = admin.lower().encode()
    parts.append(len(admin_raw).to_bytes(2, "big") + admin_raw)
    return hashlib.sha256(b"".join(parts)).digest()


@dataclass(frozen=True)
class _Version:
    seed: RootSeed
    signing: Secp256k1PrivateKey
    scallop_secret: bytes
    identity: KmsIdentity


class RootKeyring:
    """Every version of a root seed, immutable; the highest version is current.

    Raises:
        InputError: when no seed is given or two seeds share a version.
    """

    def __init__(self, seeds: Iterable[RootSeed]) -> None:
        versions: dict[int, _Version] = {}
        for seed in seeds:
            if seed.version in versions:
                raise InputError(f"two root seeds claim version {seed.version}")
            signing = seed.key(SIGNING_KEY_PATH, "secp256k1")
            scallop = seed.key(SCALLOP_KEY_PATH, "x25519")
            versions[seed.version] = _Version(
                seed=seed,
                signing=Secp256k1PrivateKey(signing.secret),
                scallop_secret=scallop.secret,
                identity=KmsIdentity(seed.version, signing.public_key, scallop.public_key),
            )
        if not versions:
            raise InputError("a root keyring needs at least one root seed")
        self._versions: Mapping[int, _Version] = MappingProxyType(dict(sorted(versions.items())))
        self._current = max(versions)

    def __repr__(self) -> str:
        return f"RootKeyring(versions={list(self._versions)}, current={self._current})"

    @property
    def current_version(self) -> int:
        return self._current

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(self._versions)

    def resolve_version(self, version: int | None) -> int:
        """``version`` if this keyring has it, the current version for None.

        Raises:
            InputError: when there is no such version.
        """
        chosen = self._current if version is None else version
        if chosen not in self._versions:
            raise InputError(
                f"this KMS has no root seed version {chosen}",
                hint=f"known versions: {', '.join(map(str, self._versions))}",
            )
        return chosen

    def _get(self, version: int | None) -> _Version:
        return self._versions[self.resolve_version(version)]

    def seed(self, version: int | None = None) -> RootSeed:
        """The root seed of ``version`` (default: current)."""
        return self._get(version).seed

    def signing_key(self, version: int | None = None) -> Secp256k1PrivateKey:
        """The response-signing key of ``version`` (default: current)."""
        return self._get(version).signing

    def scallop_secret(self, version: int | None = None) -> bytes:
        """The 32-byte Scallop static secret of ``version`` (default: current)."""
        return self._get(version).scallop_secret

    def identity(self, version: int | None = None) -> KmsIdentity:
        """The public keys of ``version`` (default: current)."""
        return self._get(version).identity

    def identities(self) -> tuple[KmsIdentity, ...]:
        """The public keys of every version, oldest first."""
        return tuple(v.identity for v in self._versions.values())

    def enclave_seed(self, image_id: bytes, version: int | None = None) -> bytes:
        """The enclave seed of ``image_id`` under ``version`` (default: current)."""
        return enclave_seed(self._get(version).seed, image_id)

    def contract_seed(self, chain_id: int, address: str, version: int | None = None) -> bytes:
        """The contract seed of ``(chain_id, address)`` under ``version`` (default: current)."""
        return contract_seed(self._get(version).seed, chain_id, address)

    def with_version(self, seed: RootSeed) -> RootKeyring:
        """A new keyring with ``seed`` added; it must be the next version after current.

        Raises:
            MisuseError: when ``seed.version`` is not current + 1.
        """
        if seed.version != self._current + 1:
            raise MisuseError(
                f"a rotated seed must be version {self._current + 1}, got {seed.version}"
            )
        return RootKeyring([*(v.seed for v in self._versions.values()), seed])
