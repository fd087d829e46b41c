"""TEE markets: proofs that are enclave signatures, and registering the enclaves that sign.

In a TEE market ("TEE attestation as proof", reference kalypso.md §7) the proof of an ask is a
signature, over the contract's ``teeDigest(askId, output)``, by the key of an enclave running
the market's prover image. The contract keeps the keys the market's creator registered;
:func:`register_tee_signer` registers one only after verifying the enclave's attestation with
reef.attestation (the document's image id must be the market's; its ``public_key`` field is the
enclave's secp256k1 key). :class:`TeeWorker` is what runs inside such an enclave: it computes the
output and signs it; :class:`~reef.proofs.ProverService` uses one for TEE markets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from coincurve import PublicKey
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from web3 import Web3

from reef.attestation import Expectations, Mode, TrustedRoot, verify
from reef.chain import Address
from reef.errors import InputError, ProofError
from reef.proofs._client import ProofMarketClient
from reef.proofs._types import MarketKind

__all__ = ["TeeWorker", "register_tee_signer", "tee_signer_address"]


def tee_signer_address(public_key: bytes) -> Address:
    """The Ethereum address of an attested secp256k1 key (64 raw bytes, or SEC1 33/65 bytes).

    Raises:
        InputError: the bytes are not a secp256k1 public key.
    """
    raw = public_key
    if len(raw) == 64:
        raw = b"\x04" + raw
    try:
        point = PublicKey(raw).format(compressed=False)[1:]
    except ValueError as exc:
        raise InputError(
            f"the attested public key ({len(public_key)} bytes) is not a secp256k1 key",
            hint="the enclave must attest its signing key (64 raw bytes or SEC1)",
        ) from exc
    return Address(Web3.to_checksum_address(Web3.keccak(point)[12:]))


def register_tee_signer(
    client: ProofMarketClient,
    market_id: int,
    evidence: bytes,
    *,
    root: TrustedRoot,
    mode: Mode = "live",
    now_ms: int | None = None,
) -> Address:
    """Verify an enclave's attestation against the market's image id and register its key.

    Sent by the market's creator. Returns the registered signer address.

    Raises:
        AttestationError: the evidence does not verify or is of another image.
        ProofError: not a TEE market.
    """
    market = client.market(market_id)
    if market.kind != MarketKind.TEE:
        raise ProofError(f"market {market_id} is not a TEE market")
    verified = verify(
        evidence, root=root, mode=mode, now_ms=now_ms, expect=Expectations(image_id=market.image_id)
    )
    signer = tee_signer_address(verified.public_key)
    client.set_tee_signer(market_id, signer)
    return signer


@dataclass(frozen=True)
class TeeWorker:
    """The enclave side of a TEE market: computes an ask's output and signs it."""

    account: LocalAccount
    compute: Callable[[Sequence[int]], Sequence[int]]

    def sign(self, client: ProofMarketClient, ask_id: int, output: Sequence[int]) -> bytes:
        digest = client.tee_digest(ask_id, output)
        return bytes(self.account.sign_message(encode_defunct(primitive=digest)).signature)
