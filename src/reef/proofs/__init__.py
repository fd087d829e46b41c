"""reef.proofs: the proof marketplace (Kalypso-style; DESIGN.md package layout).

Requesters post asks (a reward for a proof of public inputs, with an assignment expiry and a
proving-time budget); provers stake and join markets with a price, a time bound and compute per
request; the matching engine assigns asks to provers; the contract verifies proofs (Groth16 on
chain, or TEE signatures), pays, refunds and slashes. Groth16 proving and the independent check
run the pinned snarkjs.
"""

from __future__ import annotations

from reef.proofs._book import OrderBook
from reef.proofs._client import ProofMarketClient
from reef.proofs._engine import EngineStep, MatchingEngine
from reef.proofs._events import (
    AskCancelled,
    AskCreated,
    AskExpired,
    AssignmentSkipped,
    InvalidInputClosed,
    MarketCreated,
    ProofMarketEvent,
    ProofSubmitted,
    ProverDeregistered,
    ProverJoined,
    ProverLeaving,
    ProverLeft,
    ProverRegistered,
    ProverSlashed,
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
from reef.proofs._prover import InputVerifier, ProverService, TaskOutcome, circuit_input
from reef.proofs._reasons import ProofRevert
from reef.proofs._runtime import (
    RUNTIME_PACKAGE_DIR,
    SNARKJS_VERSION,
    SnarkjsRuntime,
    ensure_snarkjs,
)
from reef.proofs._tee import TeeWorker, register_tee_signer, tee_signer_address
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
    "AskState",
    "AssignmentSkipped",
    "Capacity",
    "CircuitArtifacts",
    "CompiledVerifier",
    "EngineStep",
    "FIELD_MODULUS",
    "Groth16Proof",
    "InputVerifier",
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
    "ProverLeaving",
    "ProverLeft",
    "ProverRegistered",
    "ProverService",
    "ProverSlashed",
    "Quote",
    "RUNTIME_PACKAGE_DIR",
    "SCALAR_FIELD",
    "SNARKJS_VERSION",
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
    "circuit_input",
    "compile_verifier",
    "create_groth16_market",
    "decode_inputs",
    "decode_proof",
    "deploy_verifier",
    "ensure_snarkjs",
    "load_verification_key",
    "match_round",
    "proof_from_words",
    "proof_market_decoder",
    "prove",
    "prover_weight",
    "register_tee_signer",
    "tee_signer_address",
    "verifier_source",
    "verify_with_snarkjs",
]
