"""The raw pieces under Scallop: a sans-IO Noise core (spec revision 34) and Scallop's wire
state machines and record layer. Bytes in, bytes out; no sockets, no clocks, no verification.

Use :mod:`reef.scallop` (``connect``, ``serve``, the HTTP integration) unless you are writing a
transport of your own, checking interoperability, or running Noise test vectors.
"""

from __future__ import annotations

from reef.scallop._noise import (
    MAX_MESSAGE_LEN,
    TAG_LEN,
    CipherState,
    HandshakeState,
    NoiseProtocol,
    NotSupportedError,
    SymmetricState,
)
from reef.scallop._vectors import VectorReport, VectorResult, run_noise_vectors
from reef.scallop._wire import (
    HANDSHAKE1_LEN,
    HANDSHAKE2_LEN,
    MAX_ATTESTATION_LEN,
    MAX_RECORD_LEN,
    MAX_RECORD_PLAINTEXT,
    PROLOGUE,
    PROTOCOL_NAME,
    AttestationReceived,
    ClientFinished,
    ClientHandshake,
    ClientHello,
    Established,
    Event,
    NeedData,
    RecordLayer,
    ServerHandshake,
    ServerHello,
)

__all__ = [
    "AttestationReceived",
    "CipherState",
    "ClientFinished",
    "ClientHandshake",
    "ClientHello",
    "Established",
    "Event",
    "HANDSHAKE1_LEN",
    "HANDSHAKE2_LEN",
    "HandshakeState",
    "MAX_ATTESTATION_LEN",
    "MAX_MESSAGE_LEN",
    "MAX_RECORD_LEN",
    "MAX_RECORD_PLAINTEXT",
    "NeedData",
    "NoiseProtocol",
    "NotSupportedError",
    "PROLOGUE",
    "PROTOCOL_NAME",
    "RecordLayer",
    "ServerHandshake",
    "ServerHello",
    "SymmetricState",
    "TAG_LEN",
    "VectorReport",
    "VectorResult",
    "run_noise_vectors",
]
