"""A TEE market end to end: the creator registers an enclave key only after its dev-TEE
attestation verifies for the market's image id; the engine assigns; the prover's enclave worker
computes and signs; the contract accepts that signature and nobody else's."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from eth_account import Account

from proofs.proofs_support import ProofChain
from reef.attestation import DevAuthority, TrustedRoot, image_id
from reef.chain import IndexedContract, Indexer, Web3BlockSource
from reef.errors import AttestationError, ContractRevertError
from reef.home import ReefHome
from reef.proofs import (
    ArtifactStore,
    AskState,
    MatchingEngine,
    ProverService,
    TeeProofSubmitted,
    TeeWorker,
    decode_inputs,
    ensure_snarkjs,
    proof_market_decoder,
    register_tee_signer,
    tee_signer_address,
)

PCRS = {0: b"\x01" * 48, 1: b"\x02" * 48, 2: b"\x03" * 48}
ENCLAVE = Account.from_key(b"\x44" * 32)


def _pubkey64(account: object) -> bytes:
    from coincurve import PrivateKey

    return PrivateKey(account.key).public_key.format(compressed=False)[1:]  # type: ignore[attr-defined]


def test_an_attested_enclave_proves_a_tee_market_ask(tmp_path: Path) -> None:
    home = ReefHome(tmp_path / "home").ensure()
    authority = DevAuthority.load_or_create(home)
    root = TrustedRoot.dev(home)
    chain = ProofChain.create(n_users=3)
    creator = chain.market()
    market_id, _ = creator.create_tee_market(image_id=image_id(PCRS), penalty=5, n_inputs=1)
    now_ms = int(time.time() * 1000)

    # Another image's enclave is refused; so is a key nobody attested.
    other = authority.mint({0: b"\x09" * 48, 1: PCRS[1], 2: PCRS[2]}, timestamp_ms=now_ms,
                           public_key=_pubkey64(ENCLAVE))  # fmt: skip
    with pytest.raises(AttestationError):
        register_tee_signer(creator, market_id, other, root=root, now_ms=now_ms)
    evidence = authority.mint(PCRS, timestamp_ms=now_ms, public_key=_pubkey64(ENCLAVE))
    signer = register_tee_signer(creator, market_id, evidence, root=root, now_ms=now_ms)
    assert signer == ENCLAVE.address == tee_signer_address(_pubkey64(ENCLAVE))

    requester, prover_account = chain.users[0], chain.users[1]
    prover = chain.market(prover_account)
    prover.register(compute=1, stake=100)
    prover.join_market(market_id, price=10, max_time=60, compute=1)
    indexer = Indexer(
        Web3BlockSource(chain.w3),
        f"sqlite:///{tmp_path / 'engine.db'}",
        contracts=[IndexedContract(address=chain.market_address, events=proof_market_decoder())],
    )
    engine = MatchingEngine(chain.market(chain.engine), indexer, clock=chain.next_time)
    now = chain.next_time()
    ask_id, _ = chain.market(requester).create_ask(
        market_id, [20], reward=50, expiry=now + 100, proving_time=100
    )
    assert engine.step().assigned == 1

    # A worker whose key is not the attested one is refused by the contract.
    impostor = TeeWorker(Account.from_key(b"\x55" * 32), lambda xs: [x * 2 for x in xs])
    with pytest.raises(ContractRevertError, match="not an enclave key of this market"):
        prover.submit_tee_proof(ask_id, [40], impostor.sign(prover, ask_id, [40]))

    worker = TeeWorker(ENCLAVE, lambda xs: [x * 2 for x in xs])
    service = ProverService(
        prover, ArtifactStore(tmp_path / "a"), ensure_snarkjs(), tee={market_id: worker}
    )
    [outcome] = service.step()
    assert outcome.outcome == "proved", outcome
    assert chain.market().ask(ask_id).state == AskState.COMPLETE
    [proof] = [e for e in chain.market().ask_events(ask_id) if isinstance(e, TeeProofSubmitted)]
    assert decode_inputs(proof.output) == (40,)
    assert proof.signer == ENCLAVE.address
