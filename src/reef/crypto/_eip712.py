"""EIP-712 typed structured data hashing for fixed, statically known struct types.

reef signs a handful of fixed structs (the attestation verifier statement and, later, market
messages); a general JSON typed-data engine is not needed on the signing path. Tests compare these
digests with eth-account's independent implementation.
"""

from __future__ import annotations

from eth_abi.abi import encode as abi_encode

from reef.crypto._hashes import keccak256

__all__ = ["eip712_digest", "eip712_domain_separator"]


def eip712_domain_separator(
    name: str,
    version: str,
    *,
    chain_id: int | None = None,
    verifying_contract: str | None = None,
) -> bytes:
    """``hashStruct(EIP712Domain)`` with only the fields given (Oyster uses name and version)."""
    fields = ["string name", "string version"]
    types = ["bytes32", "bytes32"]
    values: list[object] = [keccak256(name.encode()), keccak256(version.encode())]
    if chain_id is not None:
        fields.append("uint256 chainId")
        types.append("uint256")
        values.append(chain_id)
    if verifying_contract is not None:
        fields.append("address verifyingContract")
        types.append("address")
        values.append(verifying_contract)
    typehash = keccak256(f"EIP712Domain({','.join(fields)})".encode())
    return keccak256(typehash + abi_encode(types, values))


def eip712_digest(domain_separator: bytes, struct_hash: bytes) -> bytes:
    """``keccak256(0x1901 || domainSeparator || hashStruct(message))``."""
    return keccak256(b"\x19\x01" + domain_separator + struct_hash)
