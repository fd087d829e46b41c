"""A TEE market end to end: the creator registers an enclave key only after its dev-TEE
attestation verifies for the market's image id; the engine assigns; the prover's enclave worker
computes and signs; the contract accepts that signature and nobody else's."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account

from proofs.proofs_support import ProofChain
from reef.attestation import DevAuthority, TrustedRoot, image_id
from reef.errors import AttestationError, ContractRevertError
from reef.home import ReefHome
from reef.proofs import (
    ArtifactStore,
    AskState,
    ProverService,
    TeeProofSubmitted,
    TeeWorker,
    decode_inputs,
    ensure_snarkjs,
    register_tee_signer,
    tee_signer_address,
)
from reef.testing import wall_ms

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
    now_ms = wall_ms()

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
    engine = chain.matching_engine(tmp_path / "engine.db")
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


def test_an_attested_enclave_key_becomes_the_matching_engine(tmp_path: Path) -> None:
    from reef.proofs import ProofRevert, register_matching_engine

    home = ReefHome(tmp_path / "home").ensure()
    authority = DevAuthority.load_or_create(home)
    root = TrustedRoot.dev(home)
    chain = ProofChain.create(n_users=2)
    admin = chain.market()
    engine_pcrs = {0: b"\x0e" * 48, 1: b"\x0f" * 48, 2: b"\x10" * 48}
    enclave = Account.from_key(b"\x77" * 32)
    now_ms = wall_ms()
    other = authority.mint(PCRS, timestamp_ms=now_ms, public_key=_pubkey64(enclave))
    with pytest.raises(AttestationError):
        register_matching_engine(
            admin, other, image_id=image_id(engine_pcrs), root=root, now_ms=now_ms
        )
    evidence = authority.mint(engine_pcrs, timestamp_ms=now_ms, public_key=_pubkey64(enclave))
    with pytest.raises(ContractRevertError) as info:  # only the admin may
        register_matching_engine(
            chain.market(chain.users[0]), evidence, image_id=image_id(engine_pcrs), root=root,
            now_ms=now_ms,
        )  # fmt: skip
    assert info.value.reason == ProofRevert.ONLY_ADMIN_ENGINE
    admin.publish_engine_key(_pubkey64(chain.engine))  # the old engine's key...
    engine = register_matching_engine(
        admin, evidence, image_id=image_id(engine_pcrs), root=root, now_ms=now_ms
    )
    assert engine == enclave.address == admin.matching_engine()
    assert admin.engine_key() == b""  # ...is cleared with its engine
    # The old engine can no longer assign; the enclave's key publishes itself as the new one.
    with pytest.raises(ContractRevertError) as info:
        chain.market(chain.engine).assign([1], [chain.users[0].address])
    assert info.value.reason == ProofRevert.ONLY_ENGINE
    w3, deployer = chain.w3, chain.deployer
    gas = {"to": enclave.address, "value": 10**17, "gas": 21_000, "gasPrice": w3.eth.gas_price,
           "nonce": w3.eth.get_transaction_count(deployer.address), "chainId": w3.eth.chain_id}  # fmt: skip
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(deployer.sign_transaction(gas).raw_transaction)
    )
    chain.market(enclave).publish_engine_key(_pubkey64(enclave))
    assert admin.engine_key() == _pubkey64(enclave)
