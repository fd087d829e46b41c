"""reef.proofs: the proof marketplace (Kalypso-style; DESIGN.md package layout).

Requesters post asks (a reward for a proof of public inputs, with an assignment expiry and a
proving-time budget); provers stake and join markets with a price, a time bound and compute per
request; the matching engine assigns asks to provers; the contract verifies proofs (Groth16 on
chain, or TEE signatures), pays, refunds and slashes. Private inputs travel encrypted to the
engine and are re-encrypted to the assigned prover (``_secret``, Kalypso's formats). An ask
may instead be a reverse Dutch auction that provers lock themselves (``_auction``). Groth16
proving and the independent check run the pinned snarkjs.
"""

from __future__ import annotations

from reef.proofs._auction import AuctionTerms, auction_price
from reef.proofs._book import OrderBook
from reef.proofs._client import ProofMarketClient
from reef.proofs._engine import EngineStep, MatchingEngine
from reef.proofs._events import (
    AskCancelled,
    AskCreated,
    AskExpired,
    AskSecret,
    AssignmentSkipped,
    AuctionCreated,
    EngineKeySet,
    InvalidInputClosed,
    MarketCreated,
    ProofMarketEvent,
    ProofSubmitted,
    ProverDeregistered,
    ProverJoined,
    ProverKeySet,
    ProverLeaving,
    ProverLeft,
    ProverRegistered,
    ProverSlashed,
    SecretAssigned,
    StakeAdded,
    StakeWithdrawn,
    TaskAssigned,
    TeeProofSubmitted,
    TeeSignerSet,
    decode_inputs,
    decode_proof,
    proof_market_decoder,
)
from reef.proofs._groth16 import (
    FIELD_MODULUS,
    SCALAR_FIELD,
    CompiledVerifier,
    Groth16Proof,
    compile_verifier,
    load_verification_key,
    proof_from_words,
    prove,
    verifier_source,
    verify_with_snarkjs,
)
from reef.proofs._ivs import RemoteInputVerifier, ivs_app
from reef.proofs._market import (
    ArtifactStore,
    CircuitArtifacts,
    MarketMetadata,
    create_groth16_market,
    deploy_verifier,
)
from reef.proofs._matching import (
    MISSED_WINDOW_S,
    Capacity,
    OpenAsk,
    Quote,
    match_round,
    prover_weight,
)
from reef.proofs._model import ProofMarketModel
from reef.proofs._prover import (
    InputVerifier,
    InvalidInputAttester,
    ProverService,
    TaskOutcome,
    circuit_input,
)
from reef.proofs._reasons import ProofRevert
from reef.proofs._runtime import (
    RUNTIME_PACKAGE_DIR,
    SNARKJS_VERSION,
    SnarkjsRuntime,
    ensure_snarkjs,
)
from reef.proofs._secret import (
    EncryptedSecret,
    decrypt_secret,
    ecies_decrypt,
    ecies_encrypt,
    encrypt_secret,
    market_aad,
    open_secret,
    parse_private_inputs,
    reencrypt_acl,
)
from reef.proofs._tee import (
    TeeWorker,
    command_worker,
    register_matching_engine,
    register_tee_signer,
    tee_signer_address,
)
from reef.proofs._types import (
    TERMINAL_STATES,
    Ask,
    AskState,
    Market,
    MarketKind,
    Offer,
    ProverInfo,
    SkipReason,
)

__all__ = [
    "ArtifactStore",
    "Ask",
    "AskCancelled",
    "AskCreated",
    "AskExpired",
    "AskSecret",
    "AskState",
    "AssignmentSkipped",
    "AuctionCreated",
    "AuctionTerms",
    "Capacity",
    "CircuitArtifacts",
    "CompiledVerifier",
    "EncryptedSecret",
    "EngineKeySet",
    "EngineStep",
    "FIELD_MODULUS",
    "Groth16Proof",
    "InputVerifier",
    "InvalidInputAttester",
    "InvalidInputClosed",
    "MISSED_WINDOW_S",
    "Market",
    "MarketCreated",
    "MarketKind",
    "MarketMetadata",
    "MatchingEngine",
    "Offer",
    "OpenAsk",
    "OrderBook",
    "ProofMarketClient",
    "ProofMarketEvent",
    "ProofMarketModel",
    "ProofRevert",
    "ProofSubmitted",
    "ProverDeregistered",
    "ProverInfo",
    "ProverJoined",
    "ProverKeySet",
    "ProverLeaving",
    "ProverLeft",
    "ProverRegistered",
    "ProverService",
    "ProverSlashed",
    "Quote",
    "RUNTIME_PACKAGE_DIR",
    "RemoteInputVerifier",
    "SCALAR_FIELD",
    "SNARKJS_VERSION",
    "SecretAssigned",
    "SkipReason",
    "SnarkjsRuntime",
    "StakeAdded",
    "StakeWithdrawn",
    "TERMINAL_STATES",
    "TaskAssigned",
    "TaskOutcome",
    "TeeProofSubmitted",
    "TeeSignerSet",
    "TeeWorker",
    "auction_price",
    "circuit_input",
    "command_worker",
    "compile_verifier",
    "create_groth16_market",
    "decode_inputs",
    "decode_proof",
    "decrypt_secret",
    "deploy_verifier",
    "ecies_decrypt",
    "ecies_encrypt",
    "encrypt_secret",
    "ensure_snarkjs",
    "ivs_app",
    "load_verification_key",
    "market_aad",
    "match_round",
    "open_secret",
    "parse_private_inputs",
    "proof_from_words",
    "proof_market_decoder",
    "prove",
    "prover_weight",
    "reencrypt_acl",
    "register_matching_engine",
    "register_tee_signer",
    "tee_signer_address",
    "verifier_source",
    "verify_with_snarkjs",
]
