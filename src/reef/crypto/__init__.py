"""Key types and signing recipes: secp256k1 (with Ethereum addresses, EIP-191/712), Ed25519,
X25519 and libsodium sealed boxes, all on well-kept libraries (coincurve, pyca/cryptography,
PyNaCl)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reef._lazy import lazy_attributes
from reef.crypto._curve25519 import (
    clamp_x25519,
    ed25519_public_key,
    generate_x25519,
    solana_address,
    x25519_public_key,
)
from reef.crypto._hashes import keccak256
from reef.crypto._secp256k1 import (
    SECP256K1_N,
    Secp256k1PrivateKey,
    Secp256k1PublicKey,
    eip191_digest,
    recover_digest,
)

if TYPE_CHECKING:
    from reef.crypto._eip712 import eip712_digest, eip712_domain_separator
    from reef.crypto._sealed_box import SEALED_BOX_OVERHEAD, open_sealed, seal

__all__ = [
    "SEALED_BOX_OVERHEAD",
    "SECP256K1_N",
    "Secp256k1PrivateKey",
    "Secp256k1PublicKey",
    "clamp_x25519",
    "ed25519_public_key",
    "eip191_digest",
    "eip712_digest",
    "eip712_domain_separator",
    "generate_x25519",
    "keccak256",
    "open_sealed",
    "recover_digest",
    "seal",
    "solana_address",
    "x25519_public_key",
]

# Loaded on first use (reef._lazy): what one-shot commands and enclaves need not import
# (the ABI codec for EIP-712, libsodium for sealed boxes).
__getattr__ = lazy_attributes(
    __name__,
    {
        "eip712_digest": "_eip712",
        "eip712_domain_separator": "_eip712",
        "SEALED_BOX_OVERHEAD": "_sealed_box",
        "open_sealed": "_sealed_box",
        "seal": "_sealed_box",
    },
)
