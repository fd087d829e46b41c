"""TEE markets: proofs that are enclave signatures, and registering the enclaves that sign.

In a TEE market ("TEE attestation as proof", reference kalypso.md §7) the proof of an ask is a
signature, over the contract's ``teeDigest(askId, output)``, by the key of an enclave running
the market's prover image. The contract keeps the keys the market's creator registered;
:func:`register_tee_signer` registers one only after verifying the enclave's attestation with
reef.attestation (the document's image id must be the market's; its ``public_key`` field is the
enclave's secp256k1 key). :class:`TeeWorker` is what runs inside such an enclave: it computes the
output and signs it; :class:`~reef.proofs.ProverService` uses one for TEE markets.
:func:`register_matching_engine` does for the matching engine what :func:`register_tee_signer`
does for a market's signers: the market's admin makes an attested enclave key the engine.
:func:`command_worker` makes one whose computation is a program (``reef prover run --tee``):
the ask's public inputs as a JSON list on its stdin, the output as a JSON list on its stdout
(each value an integer, or a decimal or ``0x`` hex string: :func:`reef.encoding.parse_uint`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from coincurve import PublicKey
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from web3 import Web3

from reef.attestation import Expectations, Mode, TrustedRoot, verify
from reef.chain import Address
from reef.encoding import parse_bytes32, parse_uint
from reef.errors import InputError, ProofError, UintInputError
from reef.proofs._client import ProofMarketClient
from reef.proofs._runtime import _run_program
from reef.proofs._types import MarketKind

__all__ = [
    "TeeWorker",
    "command_worker",
    "register_matching_engine",
    "register_tee_signer",
    "tee_signer_address",
]


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
    signer = _attested_signer(evidence, market.image_id, root=root, mode=mode, now_ms=now_ms)
    client.set_tee_signer(market_id, signer)
    return signer


def register_matching_engine(
    client: ProofMarketClient,
    evidence: bytes,
    *,
    image_id: bytes,
    root: TrustedRoot,
    mode: Mode = "live",
    now_ms: int | None = None,
) -> Address:
    """Verify a matching engine enclave's attestation for ``image_id`` and make its attested key
    the market's matching engine (sent by the market's admin). The engine then signs
    assignments and opens private inputs with that key, which never leaves the enclave.

    Raises:
        AttestationError: the evidence does not verify or is of another image.
        ContractRevertError: the sender is not the market's admin.
    """
    image_id = parse_bytes32(
        image_id,
        name="image id",
        hint="an image id is 32 bytes, sha256 over the PCRs: `reef image measure` prints it",
    )
    engine = _attested_signer(evidence, image_id, root=root, mode=mode, now_ms=now_ms)
    client.set_matching_engine(engine)
    return engine


def _attested_signer(
    evidence: bytes, image_id: bytes, *, root: TrustedRoot, mode: Mode, now_ms: int | None
) -> Address:
    """The address of the key ``evidence`` attests, verified to be of an ``image_id`` enclave.

    Raises:
        AttestationError: the evidence does not verify or is of another image.
    """
    verified = verify(
        evidence, root=root, mode=mode, now_ms=now_ms, expect=Expectations(image_id=image_id)
    )
    return tee_signer_address(verified.public_key)


@dataclass(frozen=True)
class TeeWorker:
    """The enclave side of a TEE market: computes an ask's output and signs it."""

    account: LocalAccount
    compute: Callable[[Sequence[int]], Sequence[int]]

    def sign(self, client: ProofMarketClient, ask_id: int, output: Sequence[int]) -> bytes:
        digest = client.tee_digest(ask_id, output)
        return bytes(self.account.sign_message(encode_defunct(primitive=digest)).signature)


def command_worker(
    account: LocalAccount, argv: Sequence[str], *, timeout_s: float = 300.0
) -> TeeWorker:
    """A worker whose computation runs ``argv``: the inputs as a JSON list of integers on its
    stdin, the output read as a JSON list of integers from its stdout.

    The worker's ``compute`` raises ProofError when the program fails, times out or prints
    anything else (the task then fails and is retried, as any prover failure).
    """
    if not argv:
        raise InputError("the TEE worker's command is empty")
    command = list(argv)

    def compute(inputs: Sequence[int]) -> Sequence[int]:
        done = _run_program(
            command,
            what=f"the TEE worker {command[0]}",
            stdin=json.dumps([str(v) for v in inputs]),
            timeout_s=timeout_s,
        )
        if done.returncode != 0:
            raise ProofError(
                f"the TEE worker {command[0]} exited {done.returncode}: {done.stderr.strip()[-300:]}"
            )
        refused = ProofError(
            f"the TEE worker {command[0]} printed {done.stdout.strip()[:100]!r}, "
            "not a JSON list of integers",
            hint="print the output as a JSON list, e.g. [42]",
        )
        try:
            values = json.loads(done.stdout)
        except ValueError as exc:
            raise refused from exc
        if not isinstance(values, list):
            raise refused
        out = []
        for value in values:
            try:
                out.append(parse_uint(value, name="an output value"))
            except UintInputError as exc:
                if isinstance(value, int) and not isinstance(value, bool):
                    raise ProofError(
                        f"the TEE worker {command[0]} printed a value outside uint256"
                    ) from exc
                raise refused from exc
        return out

    return TeeWorker(account, compute)
