"""Key derivation, byte for byte as Oyster's KMS (reference oyster_cvm.md §2.2), plus versioned roots.

Every step is HMAC-SHA512 applied twice: the first output keys the second round over the same
message. From a 64-byte root seed:

* enclave (image) seed   = twice(root, image_id)                                 (64 bytes)
* contract seed          = twice(root, u64_le(chain_id) || lower(address).utf8)   (64 bytes)
* path seed              = twice(parent_seed, path.utf8)                          (64 bytes)

and a key is read from the first 32 bytes of a path seed:

* secp256k1 secret = (int_be(d[0:32]) mod (n - 1)) + 1, always in [1, n - 1];
* ed25519 secret   = d[0:32], an RFC 8032 seed;
* x25519 secret    = d[0:32] clamped.

**Versions.** A :class:`RootSeed` carries a version. Version 0 is Oyster's derivation unchanged, so
reef computes the keys of real Oyster enclaves. A version ``v >= 1`` first turns its seed into a
domain-separated base, ``base_v = twice(seed, "reef.kms.root.v" || u32_be(v))``, and derives
from ``base_v`` exactly as above. A new version normally gets a fresh random seed (``reef kms
rotate``); the label also guarantees that one seed used under two versions yields unrelated keys,
so no key of a version ``v >= 1`` can ever equal an Oyster-compatible one.

The address string of a contract seed is hashed exactly as given after lowercasing, with or
without ``0x``: it is not parsed (Oyster hashes it this way, so ``0xAB..`` and ``ab..`` give
different seeds; callers that want one canonical form must normalise before calling).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal, get_args

from reef import crypto
from reef.encoding import parse_bytes32
from reef.errors import InputError

# reef.crypto's names load on first use: a secret needs only its pure-Python scalar rules
# (SECP256K1_N, clamp_x25519); key_from_seed's public keys and addresses load coincurve, pysha3
# and base58 (about 1 MiB). An enclave's derive server answers secrets only (derive_secret): its
# supervisor, the trusted base, never loads those libraries.

__all__ = [
    "DerivedKey",
    "INIT_PARAMS_KEY_PATH",
    "KEY_TYPES",
    "KeyType",
    "ROOT_SEED_LENGTH",
    "RootSeed",
    "SCALLOP_KEY_PATH",
    "SIGNING_KEY_PATH",
    "contract_seed",
    "derive_key",
    "derive_secret",
    "enclave_seed",
    "key_from_seed",
    "path_seed",
]

ROOT_SEED_LENGTH = 64
"""Bytes in a root seed, an enclave seed, a contract seed and a path seed."""

SCALLOP_KEY_PATH = "oyster.kms.x25519"
"""Path (from the root seed) of the root server's Scallop static key."""

SIGNING_KEY_PATH = "oyster.kms.secp256k1"
"""Path (from the root seed) of the root server's response-signing key."""

INIT_PARAMS_KEY_PATH = "oyster.init-params"
"""Path (from the enclave seed) of the X25519 key that secret init params are sealed to."""

_IMAGE_ID_HINT = "an image id is 32 bytes, sha256 over the PCRs: `reef image measure` prints it"
"""What to do about an image id of the wrong length (every KMS function that takes one)."""

KeyType = Literal["secp256k1", "ed25519", "x25519"]
KEY_TYPES: tuple[KeyType, ...] = get_args(KeyType)

_MAX_VERSION = 2**32 - 1
_VERSION_LABEL = b"reef.kms.root.v"


def _once(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha512).digest()


def _twice(key: bytes, message: bytes) -> bytes:
    # Oyster applies HMAC twice, keying the second round with the first output, to rule out
    # length-extension style relations between seeds.
    return _once(_once(key, message), message)


def _need_seed(seed: bytes, what: str) -> None:
    if len(seed) != ROOT_SEED_LENGTH:
        raise InputError(
            f"{what} is {ROOT_SEED_LENGTH} bytes, got {len(seed)}",
            hint=f"give {2 * ROOT_SEED_LENGTH} hex digits",
        )


@dataclass(frozen=True, repr=False)
class RootSeed:
    """A KMS root seed: 64 secret bytes and the version they derive under.

    Its repr never shows the secret. Version 0 derives exactly as Oyster; see the module
    docstring for versions >= 1.

    Raises:
        InputError: when the seed is not 64 bytes or the version is not in [0, 2**32 - 1].
    """

    seed: bytes
    version: int = 0

    def __post_init__(self) -> None:
        _need_seed(self.seed, "a root seed")
        if isinstance(self.version, bool) or not 0 <= self.version <= _MAX_VERSION:
            raise InputError(f"a root seed version is in [0, {_MAX_VERSION}], got {self.version}")

    def __repr__(self) -> str:
        return f"RootSeed(version={self.version}, seed=<secret>)"

    @property
    def base(self) -> bytes:
        """The 64-byte key every derivation of this version starts from."""
        if self.version == 0:
            return self.seed
        return _twice(self.seed, _VERSION_LABEL + self.version.to_bytes(4, "big"))

    def key(self, path: str, key_type: KeyType) -> DerivedKey:
        """A key of the root itself (its Scallop key, its signing key) at ``path``."""
        return derive_key(self.base, path, key_type)


def enclave_seed(root: RootSeed, image_id: bytes) -> bytes:
    """The 64-byte seed of every enclave whose image id is ``image_id``.

    Raises:
        InputError: when the image id is not 32 bytes.
    """
    return _twice(root.base, parse_bytes32(image_id, name="image id", hint=_IMAGE_ID_HINT))


def contract_seed(root: RootSeed, chain_id: int, address: str) -> bytes:
    """The 64-byte seed of the enclaves a contract approves, on chain ``chain_id``.

    Raises:
        InputError: when the chain id does not fit in 64 bits or the address is empty.
    """
    if isinstance(chain_id, bool) or not 0 <= chain_id < 2**64:
        raise InputError(f"a chain id is an unsigned 64-bit integer, got {chain_id}")
    if not address:
        raise InputError("the contract address is empty")
    message = chain_id.to_bytes(8, "little") + address.lower().encode()
    return _twice(root.base, message)


def path_seed(parent: bytes, path: str | bytes) -> bytes:
    """The 64-byte seed at ``path`` (UTF-8 if a string) under a 64-byte parent seed.

    Raises:
        InputError: when the parent is not 64 bytes.
    """
    _need_seed(parent, "a parent seed")
    raw = path.encode() if isinstance(path, str) else bytes(path)
    return _twice(parent, raw)


@dataclass(frozen=True, repr=False)
class DerivedKey:
    """A key derived by the KMS, in Oyster's raw formats.

    ``secret`` is 32 bytes (secp256k1 scalar big-endian, Ed25519 seed, or clamped X25519 scalar);
    ``public_key`` is 64 bytes ``x || y`` for secp256k1 and 32 bytes otherwise; ``address`` is the
    lowercase ``0x`` Ethereum address (secp256k1), the base58 Solana address (ed25519), or None.
    Its repr never shows the secret.
    """

    key_type: KeyType
    secret: bytes
    public_key: bytes
    address: str | None

    def __repr__(self) -> str:
        return f"DerivedKey({self.key_type}, public_key={self.public_key.hex()})"


def _secret_from_seed(seed: bytes, key_type: KeyType) -> bytes:
    """The 32-byte secret of ``key_type`` read from a 64-byte derived value (its first 32 bytes):
    :attr:`DerivedKey.secret` of :func:`key_from_seed`, without computing the public key.

    Raises:
        InputError: when the seed is not 64 bytes or the key type is unknown.
    """
    _need_seed(seed, "a derived seed")
    head = seed[:32]
    if key_type == "secp256k1":
        scalar = int.from_bytes(head, "big") % (crypto.SECP256K1_N - 1) + 1
        return scalar.to_bytes(32, "big")
    if key_type == "ed25519":
        return head
    if key_type == "x25519":
        return crypto.clamp_x25519(head)
    raise InputError(f"unknown key type {key_type!r}", hint=f"use one of {', '.join(KEY_TYPES)}")


def key_from_seed(seed: bytes, key_type: KeyType) -> DerivedKey:
    """Read a key of ``key_type`` from a 64-byte derived value (only its first 32 bytes count).

    Raises:
        InputError: when the seed is not 64 bytes or the key type is unknown.
    """
    secret = _secret_from_seed(seed, key_type)
    if key_type == "secp256k1":
        public = crypto.Secp256k1PrivateKey(secret).public_key
        return DerivedKey("secp256k1", secret, public.raw, public.address)
    if key_type == "ed25519":
        public_ed = crypto.ed25519_public_key(secret)
        return DerivedKey("ed25519", secret, public_ed, crypto.solana_address(public_ed))
    return DerivedKey("x25519", secret, crypto.x25519_public_key(secret), None)


def derive_key(parent: bytes, path: str | bytes, key_type: KeyType) -> DerivedKey:
    """The key of ``key_type`` at ``path`` under a 64-byte enclave, contract or root seed."""
    return key_from_seed(path_seed(parent, path), key_type)


def derive_secret(parent: bytes, path: str | bytes, key_type: KeyType) -> bytes:
    """``derive_key(parent, path, key_type).secret``, without the public key (nor reef.crypto):
    what an enclave's derive server answers."""
    return _secret_from_seed(path_seed(parent, path), key_type)
