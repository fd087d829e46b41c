"""EIP-712 typed structured data hashing for fixed, statically known struct types.

reef signs a handful of fixed structs (the attestation verifier statement and, later, market
messages); a general JSON typed-data engine is not needed on the signing path. Tests compare these
digests with eth-account's independent implementation.
"""

from __future__ import annotations

from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import EncodingError

from reef.crypto._hashes import keccak256
from reef.encoding import describe_value
from reef.errors import InputError

__all__ = ["eip712_digest", "eip712_domain_separator"]

_U256 = 1 << 256


def eip712_domain_separator(
    name: str,
    version: str,
    *,
    chain_id: int | None = None,
    verifying_contract: str | None = None,
) -> bytes:
    """``hashStruct(EIP712Domain)`` with only the fields given (Oyster uses name and version).

    Raises:
        InputError: a name or version that is not UTF-8 text, a chain id that is not a uint256,
            or a verifying contract that is not an address (a mixed-case one must be EIP-55).
    """
    fields = ["string name", "string version"]
    types = ["bytes32", "bytes32"]
    try:
        values: list[object] = [keccak256(name.encode()), keccak256(version.encode())]
    except UnicodeEncodeError as exc:
        raise InputError("an EIP-712 domain name or version is not UTF-8 text") from exc
    if chain_id is not None:
        if isinstance(chain_id, bool) or not isinstance(chain_id, int) or not 0 <= chain_id < _U256:
            raise InputError(
                f"the EIP-712 chain id is {describe_value(chain_id)}, not a uint256",
                hint="give the chain's id, a whole number below 2**256",
            )
        fields.append("uint256 chainId")
        types.append("uint256")
        values.append(chain_id)
    if verifying_contract is not None:
        fields.append("address verifyingContract")
        types.append("address")
        values.append(verifying_contract)
    typehash = keccak256(f"EIP712Domain({','.join(fields)})".encode())
    try:
        encoded = abi_encode(types, values)
    except EncodingError as exc:  # the chain id was checked above: the address is not one
        raise InputError(
            f"the EIP-712 verifying contract {describe_value(verifying_contract)} is not an "
            "address",
            hint="give 0x and 40 hex digits",
        ) from exc
    return keccak256(typehash + encoded)


def eip712_digest(domain_separator: bytes, struct_hash: bytes) -> bytes:
    """``keccak256(0x1901 || domainSeparator || hashStruct(message))``."""
    return keccak256(b"\x19\x01" + domain_separator + struct_hash)
