"""The result model shared by every kind of evidence: what a caller expects, and what was verified.

Nitro documents, TDX/SGX quotes and dev TEE documents all verify to one
:class:`VerifiedAttestation`, so callers branch on fields, not on the TEE that produced them.
Verifiers *raise* on any failure and *return* this object only when every check passed
(STYLE §7.3): there is no boolean to forget.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from reef.attestation._roots import TrustedRoot
from reef.encoding import to_hex
from reef.errors import ExpectationError, InputError

__all__ = [
    "MAX_PCR_INDEX",
    "EvidenceKind",
    "Expectations",
    "Mode",
    "VerifiedAttestation",
    "check_expectations",
]

Mode = Literal["live", "replay"]
"""``live``: the chain must be valid now and the document fresh. ``replay``: re-verify old
evidence as of its own timestamp; freshness is only checked when asked for."""

EvidenceKind = Literal["nitro", "tdx", "sgx"]

# Nitro has 32 PCRs (0..31); AWS documents list 0..15, plus 16.. when the enclave locked them.
MAX_PCR_INDEX = 31


def _frozen_pcrs(pcrs: Mapping[int, bytes], *, what: str) -> Mapping[int, bytes]:
    frozen: dict[int, bytes] = {}
    for index, value in pcrs.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_PCR_INDEX:
            raise InputError(f"{what}: PCR index {index!r} is not an integer in 0..{MAX_PCR_INDEX}")
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InputError(f"{what}: PCR{index} must be bytes, got {type(value).__name__}")
        frozen[index] = bytes(value)
    return MappingProxyType(dict(sorted(frozen.items())))


def _optional_bytes(value: bytes | None, *, what: str, length: int | None = None) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InputError(f"{what} must be bytes, got {type(value).__name__}")
    raw = bytes(value)
    if length is not None and len(raw) != length:
        raise InputError(f"{what} must be {length} bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True, kw_only=True)
class Expectations:
    """What the caller requires of verified evidence; ``None`` means "not checked".

    An expected empty value (``b""``) requires the field to be empty: a null and an empty byte
    string in a document are the same thing. Comparisons are constant-time.

    Attributes:
        image_id: the 32-byte image id (reference §1.2).
        pcrs: PCR index → expected value; every listed PCR must be present and equal (for Nitro an
            absent PCR16 counts as 48 zero bytes, as in the image id).
        public_key: the exact ``public_key`` field.
        user_data: the exact ``user_data`` field.
        nonce: the exact ``nonce`` field.
        timestamp_ms: the exact document timestamp, in milliseconds.

    Raises:
        InputError: when a value has the wrong type or length.
    """

    image_id: bytes | None = None
    pcrs: Mapping[int, bytes] = field(default_factory=dict)
    public_key: bytes | None = None
    user_data: bytes | None = None
    nonce: bytes | None = None
    timestamp_ms: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "image_id", _optional_bytes(self.image_id, what="expected image id", length=32)
        )
        object.__setattr__(self, "pcrs", _frozen_pcrs(self.pcrs, what="expected PCRs"))
        for name in ("public_key", "user_data", "nonce"):
            object.__setattr__(
                self, name, _optional_bytes(getattr(self, name), what=f"expected {name}")
            )
        ts = self.timestamp_ms
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int) or ts < 0):
            raise InputError(f"expected timestamp_ms must be a non-negative integer, got {ts!r}")


@dataclass(frozen=True, kw_only=True)
class VerifiedAttestation:
    """Evidence that passed every check, with the fields it attests to.

    Attributes:
        kind: ``"nitro"`` (AWS Nitro or dev TEE documents), ``"tdx"`` or ``"sgx"``.
        image_id: the 32-byte image id.
        pcrs: the measurements (PCR index → value).
        timestamp_ms: when the evidence was produced, in milliseconds since the Unix epoch.
        module_id: the enclave module id (Nitro), or a platform identifier.
        public_key: the key the enclave attested to (empty when none).
        user_data: the user data (empty when none).
        nonce: the nonce (empty when none).
        root: the pinned root the chain ended at. ``root.insecure`` is true for mock and dev roots.
        mode: the verification mode used.
        tcb_status: the TCB status of a TDX/SGX platform; ``None`` for Nitro.
        advisory_ids: the Intel security advisories that apply (TDX/SGX).
        report: further report fields of a quote (MRTD, RTMRs, report data, ...).
    """

    kind: EvidenceKind
    image_id: bytes
    pcrs: Mapping[int, bytes]
    timestamp_ms: int
    module_id: str
    public_key: bytes
    user_data: bytes
    nonce: bytes
    root: TrustedRoot
    mode: Mode
    tcb_status: str | None = None
    advisory_ids: tuple[str, ...] = ()
    report: Mapping[str, bytes | int | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pcrs", MappingProxyType(dict(self.pcrs)))
        object.__setattr__(self, "report", MappingProxyType(dict(self.report)))
        object.__setattr__(self, "advisory_ids", tuple(self.advisory_ids))

    @property
    def insecure(self) -> bool:
        """True when the evidence chains to a root anyone can sign under (``mock`` or ``dev``)."""
        return self.root.insecure

    def to_json(self) -> dict[str, Any]:
        """The CLI JSON shape: hex without ``0x``, ``""`` for empty fields, PCR keys as strings.

        Nitro results have exactly the keys ``image_id, pcrs, timestamp_ms, module_id, public_key,
        user_data, nonce, root, mode``; quotes add ``kind, tcb_status, advisory_ids, report``.
        """
        out: dict[str, Any] = {
            "image_id": to_hex(self.image_id),
            "pcrs": {str(index): to_hex(value) for index, value in sorted(self.pcrs.items())},
            "timestamp_ms": self.timestamp_ms,
            "module_id": self.module_id,
            "public_key": to_hex(self.public_key),
            "user_data": to_hex(self.user_data),
            "nonce": to_hex(self.nonce),
            "root": {"name": self.root.name, "public_key": to_hex(self.root.public_key)},
            "mode": self.mode,
        }
        if self.kind != "nitro":
            out["kind"] = self.kind
            out["tcb_status"] = self.tcb_status
            out["advisory_ids"] = list(self.advisory_ids)
            out["report"] = {
                key: to_hex(value) if isinstance(value, bytes) else value
                for key, value in self.report.items()
            }
        return out


def _same(actual: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(actual, expected)


def check_expectations(
    expect: Expectations,
    verified: VerifiedAttestation,
    *,
    absent_pcr: Mapping[int, bytes] | None = None,
) -> None:
    """Compare verified evidence with the caller's expectations, in constant time per field.

    Args:
        absent_pcr: values that stand in for PCRs missing from the evidence (Nitro: PCR16 is 48
            zero bytes when absent, as in the image id).

    Raises:
        ExpectationError: with ``reason`` ``image_id``, ``pcr``, ``public_key``, ``user_data``,
            ``nonce`` or ``timestamp`` naming the first field that differs.
    """
    image_id, pcrs, timestamp_ms = verified.image_id, verified.pcrs, verified.timestamp_ms
    if expect.image_id is not None and not _same(image_id, expect.image_id):
        raise ExpectationError(
            f"image id is {image_id.hex()}, expected {expect.image_id.hex()}", reason="image_id"
        )
    for index, wanted in expect.pcrs.items():
        measured = pcrs.get(index)
        if measured is None and absent_pcr is not None:
            measured = absent_pcr.get(index)
        if measured is None:
            raise ExpectationError(f"PCR{index} is absent, expected {wanted.hex()}", reason="pcr")
        if not _same(measured, wanted):
            raise ExpectationError(
                f"PCR{index} is {measured.hex()}, expected {wanted.hex()}", reason="pcr"
            )
    fields: tuple[tuple[str, bytes, bytes | None], ...] = (
        ("public_key", verified.public_key, expect.public_key),
        ("user_data", verified.user_data, expect.user_data),
        ("nonce", verified.nonce, expect.nonce),
    )
    for name, actual, required in fields:
        if required is not None and not _same(actual, required):
            raise ExpectationError(
                f"{name} is {to_hex(actual) or '(empty)'}, expected {to_hex(required) or '(empty)'}",
                reason=name,
            )
    if expect.timestamp_ms is not None and timestamp_ms != expect.timestamp_ms:
        raise ExpectationError(
            f"timestamp is {timestamp_ms} ms, expected {expect.timestamp_ms} ms", reason="timestamp"
        )
