"""reef.proofs: the proof marketplace (Kalypso-style; DESIGN.md package layout).

Requesters post asks (a reward for a proof of public inputs, with an assignment expiry and a
proving-time budget); provers stake and join markets with a price, a time bound and compute per
request; the matching engine assigns asks to provers; the contract verifies proofs (Groth16 on
chain, or TEE signatures), pays, refunds and slashes. Private inputs travel encrypted to the
engine and are re-encrypted to the assigned prover (``_secret``, Kalypso's formats). An ask
may instead be a reverse Dutch auction that provers lock themselves (``_auction``). Groth16
proving and the independent check run the pinned snarkjs. The services (engine, prover, IVS)
read their settings from one typed record, :class:`ServiceSettings` (``reef up``'s
``network.json``), and do their waiting and enrolling with ``_services``.
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
from reef.proofs._listing import AskListing, MarketListing, describe_ask, describe_market
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
from reef.proofs._request import AuctionRamp, ask_settled, request_proof, wait_for_ask
from reef.proofs._runtime import (
    RUNTIME_PACKAGE_DIR,
    SNARKJS_VERSION,
    SnarkjsRuntime,
    ensure_snarkjs,
    snarkjs_in,
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
from reef.proofs._services import (
    IVS_KMS_PATH,
    await_engine_role,
    derived_secp256k1_key,
    enroll_prover,
)
from reef.proofs._settings import MarketJoin, ProverSetup, ServiceSettings
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
    "AskListing",
    "AskSecret",
    "AskState",
    "AssignmentSkipped",
    "AuctionCreated",
    "AuctionRamp",
    "AuctionTerms",
    "Capacity",
    "CircuitArtifacts",
    "CompiledVerifier",
    "EncryptedSecret",
    "EngineKeySet",
    "EngineStep",
    "FIELD_MODULUS",
    "Groth16Proof",
    "IVS_KMS_PATH",
    "InputVerifier",
    "InvalidInputAttester",
    "InvalidInputClosed",
    "MISSED_WINDOW_S",
    "Market",
    "MarketCreated",
    "MarketJoin",
    "MarketKind",
    "MarketListing",
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
    "ProverSetup",
    "ProverSlashed",
    "Quote",
    "RUNTIME_PACKAGE_DIR",
    "RemoteInputVerifier",
    "SCALAR_FIELD",
    "SNARKJS_VERSION",
    "SecretAssigned",
    "ServiceSettings",
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
    "ask_settled",
    "auction_price",
    "await_engine_role",
    "circuit_input",
    "command_worker",
    "compile_verifier",
    "create_groth16_market",
    "decode_inputs",
    "decode_proof",
    "decrypt_secret",
    "deploy_verifier",
    "derived_secp256k1_key",
    "describe_ask",
    "describe_market",
    "ecies_decrypt",
    "ecies_encrypt",
    "encrypt_secret",
    "enroll_prover",
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
    "request_proof",
    "snarkjs_in",
    "tee_signer_address",
    "verifier_source",
    "verify_with_snarkjs",
    "wait_for_ask",
]
