"""Run Noise test vectors in the cacophony JSON format against reef's Noise core.

The format (used by cacophony, snow and noise-c): ``{"vectors": [{"protocol_name", "init_prologue",
"init_static", "init_ephemeral", "init_remote_static", "resp_…", "handshake_hash", "messages":
[{"payload", "ciphertext"}, …]}]}``. Messages alternate between initiator and responder, the
handshake first and transport messages after it (all from the initiator in one-way patterns).
Vectors for protocols reef does not implement (PSK, fallback, other functions) are skipped, each
with its reason, never counted as passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reef.errors import InputError, ReefError
from reef.scallop._noise import HandshakeState, NoiseProtocol, NotSupportedError

__all__ = ["VectorReport", "VectorResult", "run_noise_vectors"]


@dataclass(frozen=True)
class VectorResult:
    """One vector's outcome: ``"passed"``, ``"failed"`` or ``"skipped"``, and why."""

    index: int
    protocol: str
    status: str
    detail: str = ""


@dataclass(frozen=True)
class VectorReport:
    """Every vector's result, with counts."""

    results: Sequence[VectorResult] = field(default_factory=tuple)

    def count(self, status: str) -> int:
        """How many vectors have ``status``."""
        return sum(1 for r in self.results if r.status == status)

    @property
    def passed(self) -> int:
        return self.count("passed")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def skipped(self) -> int:
        return self.count("skipped")


def _hex(vector: Mapping[str, Any], key: str) -> bytes | None:
    value = vector.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InputError(f"{key} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise InputError(f"{key} is not hex: {value[:20]!r}") from exc


def _run_one(vector: Mapping[str, Any]) -> str | None:
    """None when the vector passes, else a description of the first mismatch."""
    protocol = NoiseProtocol.from_name(str(vector["protocol_name"]))
    if vector.get("hybrid") or vector.get("fail") or vector.get("fallback"):
        raise NotSupportedError("hybrid, fallback or expected-failure vectors are not supported")

    def party(side: str) -> HandshakeState:
        """The ``init`` or ``resp`` side, from that side's ``{side}_*`` fields."""
        psks = vector.get(f"{side}_psks") or []
        if not isinstance(psks, list) or not all(isinstance(v, str) for v in psks):
            raise InputError(f"{side}_psks must be a list of hex strings")
        try:
            psk_bytes = [bytes.fromhex(v) for v in psks]
        except ValueError as exc:
            raise InputError(f"{side}_psks holds a value that is not hex") from exc
        return HandshakeState(
            protocol,
            initiator=side == "init",
            prologue=_hex(vector, f"{side}_prologue") or b"",
            s=_hex(vector, f"{side}_static"),
            e=_hex(vector, f"{side}_ephemeral"),
            rs=_hex(vector, f"{side}_remote_static"),
            psks=psk_bytes,
        )

    initiator, responder = party("init"), party("resp")
    messages = vector.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError("the vector has no messages")
    for number, message in enumerate(messages):
        payload = _hex(message, "payload") or b""
        expected = _hex(message, "ciphertext") or b""
        from_initiator = protocol.one_way or number % 2 == 0
        if not initiator.complete:
            from_initiator = number % 2 == 0
            sender, receiver = (initiator, responder) if from_initiator else (responder, initiator)
            produced = sender.write_message(payload)
            if produced != expected:
                return f"handshake message {number}: ciphertext differs"
            if receiver.read_message(produced) != payload:
                return f"handshake message {number}: payload differs after decryption"
            continue
        (i_send, i_recv), (r_send, r_recv) = initiator.transport(), responder.transport()
        send, recv = (i_send, r_recv) if from_initiator else (r_send, i_recv)
        produced = send.encrypt_with_ad(b"", payload)
        if produced != expected:
            return f"transport message {number}: ciphertext differs"
        if recv.decrypt_with_ad(b"", produced) != payload:
            return f"transport message {number}: payload differs after decryption"
    expected_hash = _hex(vector, "handshake_hash")
    if expected_hash is not None and initiator.handshake_hash != expected_hash:
        return "the handshake hash differs"
    if initiator.handshake_hash != responder.handshake_hash:
        return "the two sides' handshake hashes differ"
    return None


def run_noise_vectors(data: Mapping[str, Any]) -> VectorReport:
    """Run every vector of a parsed cacophony-format file.

    Raises:
        InputError: the document is not in the cacophony format.
    """
    vectors = data.get("vectors") if isinstance(data, Mapping) else None
    if not isinstance(vectors, list):
        raise InputError(
            "not a cacophony vector file: no 'vectors' list",
            hint='expected {"vectors": [{"protocol_name": …, "messages": […]}, …]}',
        )
    results: list[VectorResult] = []
    for index, vector in enumerate(vectors):
        name = str(vector.get("protocol_name", "?")) if isinstance(vector, Mapping) else "?"
        if not isinstance(vector, Mapping) or "protocol_name" not in vector:
            results.append(VectorResult(index, name, "failed", "not a vector (no protocol_name)"))
            continue
        try:
            problem = _run_one(vector)
        except NotSupportedError as exc:
            results.append(VectorResult(index, name, "skipped", exc.message))
            continue
        except ReefError as exc:
            results.append(VectorResult(index, name, "failed", exc.message))
            continue
        if problem is None:
            results.append(VectorResult(index, name, "passed"))
        else:
            results.append(VectorResult(index, name, "failed", problem))
    return VectorReport(tuple(results))
