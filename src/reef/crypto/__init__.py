"""Key types and signing recipes: secp256k1 (with Ethereum addresses, EIP-191/712), Ed25519,
X25519 and libsodium sealed boxes, all on well-kept libraries (coincurve, pyca/cryptography,
PyNaCl).

Every name loads from its module on first use (reef._lazy): importing the package costs nothing,
and a name costs only its own module's libraries. Deriving a secret (the secp256k1 group order,
X25519 clamping: ``_scalars``, pure Python) loads neither coincurve nor pysha3 nor base58, which
an enclave's supervisor, whose memory is the code it imports, never needs; one-shot commands and
enclaves need neither the ABI codec (EIP-712) nor libsodium (sealed boxes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reef._lazy import lazy_attributes

if TYPE_CHECKING:
    from reef.crypto._curve25519 import (
        ed25519_public_key,
        generate_x25519,
        solana_address,
        x25519_public_key,
    )
    from reef.crypto._eip712 import eip712_digest, eip712_domain_separator
    from reef.crypto._hashes import eip55_address, keccak256
    from reef.crypto._scalars import SECP256K1_N, clamp_x25519
    from reef.crypto._sealed_box import SEALED_BOX_OVERHEAD, open_sealed, seal
    from reef.crypto._secp256k1 import (
        Secp256k1PrivateKey,
        Secp256k1PublicKey,
        eip191_digest,
        recover_digest,
    )

__all__ = [
    "SEALED_BOX_OVERHEAD",
    "SECP256K1_N",
    "Secp256k1PrivateKey",
    "Secp256k1PublicKey",
    "clamp_x25519",
    "ed25519_public_key",
    "eip191_digest",
    "eip55_address",
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

__getattr__ = lazy_attributes(
    __name__,
    {
        "SEALED_BOX_OVERHEAD": "_sealed_box",
        "SECP256K1_N": "_scalars",
        "Secp256k1PrivateKey": "_secp256k1",
        "Secp256k1PublicKey": "_secp256k1",
        "clamp_x25519": "_scalars",
        "ed25519_public_key": "_curve25519",
        "eip191_digest": "_secp256k1",
        "eip55_address": "_hashes",
        "eip712_digest": "_eip712",
        "eip712_domain_separator": "_eip712",
        "generate_x25519": "_curve25519",
        "keccak256": "_hashes",
        "open_sealed": "_sealed_box",
        "recover_digest": "_secp256k1",
        "seal": "_sealed_box",
        "solana_address": "_curve25519",
        "x25519_public_key": "_curve25519",
    },
)
