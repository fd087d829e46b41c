"""The one error tree every reef package raises from.

Every failure a user can cause or meet is a :class:`ReefError`. Its message says what was wrong;
its optional ``hint`` says what to do about it. Foreign exceptions (cbor2, cryptography, httpx,
web3, ...) are translated at the boundary where they arise, with ``raise ... from exc``, so
callers never need to know reef's dependencies.

Misuse of an API by a programmer (calling a method in the wrong state, passing the wrong type) is
kept apart from failure: those errors also subclass :class:`RuntimeError` or :class:`TypeError`.

::

    ReefError
    ├── InputError (ValueError)            bad input: a file, a flag, a hex string, a config value
    │   ├── ConfigError                    a configuration file or $REEF_HOME entry is invalid
    │   └── UintInputError                 not an unsigned integer, or wider than allowed
    ├── MisuseError (RuntimeError)         an API used in a way it does not allow
    ├── AttestationError                   evidence rejected; ``reason`` names the check that failed
    │   ├── DecodeError                    not a well-formed document or quote
    │   ├── SignatureError                 the document's own signature does not verify
    │   ├── CertificateChainError          the chain does not lead to the pinned root
    │   ├── CertificateExpiredError        a certificate is outside its validity at the instant used
    │   ├── StaleAttestationError          older than the allowed age (live mode)
    │   ├── ExpectationError               a field differs from what the caller expected
    │   └── TcbStatusError                 a TDX/SGX platform is not at an accepted TCB level
    ├── ImageError                         an enclave image or init-params file is invalid
    ├── EnclaveError                       a local enclave failed to start, crashed or is unknown
    │   └── ConformanceError (AssertionError)   a backend broke the EnclaveBackend contract
    ├── ChannelError                       Scallop (attested Noise channel) failures
    │   ├── HandshakeError                 the handshake failed or the peer was refused
    │   ├── ChannelBrokenError             the peer broke the channel (bad record, EOF mid-frame)
    │   └── ChannelClosedError (RuntimeError)   used after *we* closed it
    ├── ChainError                         talking to the EVM chain
    │   ├── RPCError                       the JSON-RPC endpoint failed or answered an error
    │   └── ContractRevertError            a transaction or call reverted; ``reason`` is the revert text
    ├── MarketError                        market rules refused an operation (unknown job, low balance)
    ├── KMSError                           key derivation or the KMS services failed
    │   └── KMSBusyError                   a KMS root refused for now (429); ``retry_after_s`` says when
    ├── ServerlessError                    the function runtime failed on reef's side (not the function's fault)
    ├── ProofError                         the proof market refused an operation, or a prover/verifier failed
    │   └── InvalidProofInputError         the inputs violate the circuit: no proof exists for them
    └── ServiceError                       a reef HTTP service could not be reached or answered badly
"""

from __future__ import annotations

__all__ = [
    "AttestationError",
    "CertificateChainError",
    "CertificateExpiredError",
    "ChainError",
    "ChannelBrokenError",
    "ChannelClosedError",
    "ChannelError",
    "ConfigError",
    "ConformanceError",
    "ContractRevertError",
    "DecodeError",
    "EnclaveError",
    "ExpectationError",
    "HandshakeError",
    "ImageError",
    "InputError",
    "InvalidProofInputError",
    "KMSBusyError",
    "KMSError",
    "MarketError",
    "MisuseError",
    "ProofError",
    "RPCError",
    "ReefError",
    "ServerlessError",
    "ServiceError",
    "SignatureError",
    "StaleAttestationError",
    "TcbStatusError",
    "UintInputError",
]


class ReefError(Exception):
    """Root of every error reef raises on purpose.

    Args:
        message: what was wrong, in one sentence a user can read.
        hint: optionally, what to do about it.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class InputError(ReefError, ValueError):
    """Bad input from a user or caller: a file, a flag, a hex string, a config value."""


class ConfigError(InputError):
    """A configuration file or an entry under ``$REEF_HOME`` is missing or invalid."""


class UintInputError(InputError):
    """A value that must be an unsigned integer (a circuit signal, an amount in a file) is not a
    whole number in decimal or ``0x`` hex, or does not fit its width
    (:func:`reef.encoding.parse_uint`)."""


class MisuseError(ReefError, RuntimeError):
    """An API was used in a way it does not allow (wrong state, wrong order)."""


class AttestationError(ReefError):
    """Attestation evidence was rejected.

    ``reason`` is the short name of the check that failed (``"signature"``, ``"chain"``,
    ``"expired"``, ``"stale"``, ``"image_id"``, ...), stable enough for programs to branch on.
    """

    reason: str = "attestation"

    def __init__(self, message: str, *, hint: str | None = None, reason: str | None = None) -> None:
        super().__init__(message, hint=hint)
        if reason is not None:
            self.reason = reason


class DecodeError(AttestationError, InputError):
    """The evidence is not a well-formed attestation document or quote."""

    reason = "decode"


class SignatureError(AttestationError):
    """The document's signature does not verify under its leaf certificate."""

    reason = "signature"


class CertificateChainError(AttestationError):
    """The certificate chain does not lead to the pinned root."""

    reason = "chain"


class CertificateExpiredError(CertificateChainError):
    """A certificate of the chain is not valid at the instant the chain is checked."""

    reason = "expired"


class StaleAttestationError(AttestationError):
    """The document is older than the allowed age (live mode)."""

    reason = "stale"


class ExpectationError(AttestationError):
    """A verified field differs from the caller's expectation (image id, a PCR, a key, ...)."""

    reason = "expectation"


class TcbStatusError(AttestationError):
    """A TDX or SGX platform is not at a TCB level the caller accepts."""

    reason = "tcb"


class ImageError(ReefError):
    """An enclave image or an init-params file is invalid."""


class EnclaveError(ReefError):
    """A local enclave failed to start, crashed, or is not known."""


class ConformanceError(EnclaveError, AssertionError):
    """An enclave backend does not behave as :class:`reef.enclave.EnclaveBackend` promises
    (raised by :func:`reef.testing.check_backend`; an ``AssertionError`` so test runners report it
    as a failed check)."""


class ChannelError(ReefError):
    """A Scallop channel failed."""


class HandshakeError(ChannelError):
    """The Scallop handshake failed, or the peer was refused by the policy."""


class ChannelBrokenError(ChannelError):
    """The peer broke the channel: a bad record, an oversized frame, EOF in the middle of a frame."""


class ChannelClosedError(ChannelError, RuntimeError):
    """The channel was used after this side closed it."""


class ChainError(ReefError):
    """Talking to the EVM chain failed."""


class RPCError(ChainError):
    """The JSON-RPC endpoint could not be reached or answered with an error."""


class ContractRevertError(ChainError):
    """A transaction or call reverted. ``reason`` is the revert string, if the contract gave one."""

    def __init__(self, message: str, *, hint: str | None = None, reason: str = "") -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class MarketError(ReefError):
    """The market's rules refused an operation (unknown job, insufficient balance, ...)."""


class KMSError(ReefError):
    """Key derivation or a KMS service failed."""


class KMSBusyError(KMSError):
    """A KMS root refused for now (429): the client asked more than one client's share.

    ``retry_after_s`` is the root's ``Retry-After``: the seconds until it may ask again.
    """

    def __init__(self, message: str, *, retry_after_s: float, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s


class ServerlessError(ReefError):
    """The function runtime failed on reef's side: workerd missing or crashed, no capacity.

    Never a verdict on the function itself (those are :class:`reef.serverless.ErrorCode` values):
    an executor that meets this submits no output rather than blame the function.
    """


class ProofError(ReefError):
    """The proof market refused an operation (unknown ask, wrong state) or proving/verifying failed."""


class InvalidProofInputError(ProofError):
    """The inputs violate the circuit's constraints, so no proof of them exists (not a prover fault)."""


class ServiceError(ReefError):
    """A reef HTTP service could not be reached or answered something unexpected."""
