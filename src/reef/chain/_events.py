"""Typed events of the market and the KMS registry, decoded from raw logs.

The decoder works from the event signatures alone (topic 0 = keccak of ``Name(types)``), so it
reads logs of reef's market and of Marlin's deployed MarketV1 alike: both emit the same event
names, field types, order and indexing. It accepts logs as web3.py returns them or as raw
JSON-RPC objects (hex strings), which is what an indexer holds. Strings are decoded as UTF-8
with replacement, so a hostile log cannot crash an indexer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, get_args

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes

from reef.chain._artifacts import load_artifact
from reef.chain._types import Address, Amount, JobId, Rate
from reef.crypto import keccak256
from reef.errors import ChainError

__all__ = [
    "JOB_EVENTS",
    "ChainEvent",
    "EventDecoder",
    "ImageApproved",
    "ImageRevoked",
    "JobClosed",
    "JobDeposited",
    "JobMetadataUpdated",
    "JobOpened",
    "JobReviseRateCancelled",
    "JobReviseRateFinalized",
    "JobReviseRateInitiated",
    "JobSettled",
    "JobWithdrew",
    "KmsRegistryEvent",
    "LockCreated",
    "LockDeleted",
    "LockWaitTimeUpdated",
    "MarketEvent",
    "ProviderAdded",
    "ProviderRemoved",
    "ProviderUpdatedWithCp",
    "TokenUpdated",
    "decode_market_log",
    "kms_registry_decoder",
    "market_decoder",
]


@dataclass(frozen=True, kw_only=True)
class ChainEvent:
    """Where an event was emitted: the contract, block, log index and transaction."""

    address: Address
    block_number: int
    log_index: int
    tx_hash: str

    def args(self) -> dict[str, Any]:
        """The event's own fields (without the location fields above)."""
        base = {f.name for f in fields(ChainEvent)}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in base}


# ---- market (MarketV1 names and fields; snake_case in Python) ----


@dataclass(frozen=True, kw_only=True)
class ProviderAdded(ChainEvent):
    provider: Address
    cp: str


@dataclass(frozen=True, kw_only=True)
class ProviderRemoved(ChainEvent):
    provider: Address


@dataclass(frozen=True, kw_only=True)
class ProviderUpdatedWithCp(ChainEvent):
    provider: Address
    new_cp: str


@dataclass(frozen=True, kw_only=True)
class JobOpened(ChainEvent):
    job: JobId
    metadata: str
    owner: Address
    provider: Address
    rate: Rate
    balance: Amount
    timestamp: int


@dataclass(frozen=True, kw_only=True)
class JobSettled(ChainEvent):
    job: JobId
    amount: Amount
    timestamp: int


@dataclass(frozen=True, kw_only=True)
class JobClosed(ChainEvent):
    job: JobId


@dataclass(frozen=True, kw_only=True)
class JobDeposited(ChainEvent):
    job: JobId
    from_: Address
    amount: Amount


@dataclass(frozen=True, kw_only=True)
class JobWithdrew(ChainEvent):
    job: JobId
    to: Address
    amount: Amount


@dataclass(frozen=True, kw_only=True)
class JobReviseRateInitiated(ChainEvent):
    job: JobId
    new_rate: Rate


@dataclass(frozen=True, kw_only=True)
class JobReviseRateCancelled(ChainEvent):
    job: JobId


@dataclass(frozen=True, kw_only=True)
class JobReviseRateFinalized(ChainEvent):
    job: JobId
    new_rate: Rate


@dataclass(frozen=True, kw_only=True)
class JobMetadataUpdated(ChainEvent):
    job: JobId
    metadata: str


@dataclass(frozen=True, kw_only=True)
class LockCreated(ChainEvent):
    selector: bytes
    key: JobId
    i_value: int
    unlock_time: int


@dataclass(frozen=True, kw_only=True)
class LockDeleted(ChainEvent):
    selector: bytes
    key: JobId
    i_value: int


@dataclass(frozen=True, kw_only=True)
class LockWaitTimeUpdated(ChainEvent):
    selector: bytes
    prev_lock_time: int
    updated_lock_time: int


@dataclass(frozen=True, kw_only=True)
class TokenUpdated(ChainEvent):
    old_token: Address
    new_token: Address


MarketEvent = (
    ProviderAdded
    | ProviderRemoved
    | ProviderUpdatedWithCp
    | JobOpened
    | JobSettled
    | JobClosed
    | JobDeposited
    | JobWithdrew
    | JobReviseRateInitiated
    | JobReviseRateCancelled
    | JobReviseRateFinalized
    | JobMetadataUpdated
    | LockCreated
    | LockDeleted
    | LockWaitTimeUpdated
    | TokenUpdated
)

# ---- KMS registry (Oyster KmsVerifiable) ----


@dataclass(frozen=True, kw_only=True)
class ImageApproved(ChainEvent):
    image_id: bytes


@dataclass(frozen=True, kw_only=True)
class ImageRevoked(ChainEvent):
    image_id: bytes


KmsRegistryEvent = ImageApproved | ImageRevoked

_MARKET_CLASSES: tuple[type[ChainEvent], ...] = get_args(MarketEvent)
_KMS_CLASSES: tuple[type[ChainEvent], ...] = get_args(KmsRegistryEvent)
JOB_EVENTS: tuple[type[ChainEvent], ...] = tuple(
    cls for cls in _MARKET_CLASSES if "job" in {f.name for f in fields(cls)}
)
"""The market's events of one job (``JobOpened`` ... ``JobMetadataUpdated``): topic 1 is its id."""

# Fields whose bytes32 is a job id (printed as 0x + 64 hex) rather than raw bytes.
_JOB_ID_FIELDS = frozenset({"job", "key"})
# Distinct addresses a decoder remembers checksummed (see EventDecoder.__init__).
_CHECKSUM_CACHE_SIZE = 4096


def _snake(name: str) -> str:
    """ABI field name to Python: ``newRate`` -> ``new_rate``, ``_from``/``from`` -> ``from_``."""
    name = name.lstrip("_")
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    return "from_" if snake == "from" else snake


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return bytes(HexBytes(value))
    raise ChainError(f"log field is neither bytes nor hex: {type(value).__name__}")


def _checksum(value: str | bytes) -> Address:
    return Address(to_checksum_address(value))


def _as_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16) if value.startswith("0x") else int(value)
    raise ChainError(f"log field is not an integer: {value!r}")


@dataclass(frozen=True)
class _EventSpec:
    cls: type[ChainEvent]
    indexed: tuple[tuple[str, str], ...]  # (python field, abi type)
    data: tuple[tuple[str, str], ...]


class EventDecoder:
    """Decodes logs whose topic 0 matches one of ``classes`` (events named in ``abi``)."""

    def __init__(
        self, abi: Sequence[Mapping[str, Any]], classes: Sequence[type[ChainEvent]]
    ) -> None:
        by_name = {cls.__name__: cls for cls in classes}
        self._specs: dict[bytes, _EventSpec] = {}
        for entry in abi:
            if entry.get("type") != "event" or entry["name"] not in by_name:
                continue
            inputs = entry["inputs"]
            signature = f"{entry['name']}({','.join(i['type'] for i in inputs)})"
            spec = _EventSpec(
                cls=by_name[entry["name"]],
                indexed=tuple((_snake(i["name"]), i["type"]) for i in inputs if i["indexed"]),
                data=tuple((_snake(i["name"]), i["type"]) for i in inputs if not i["indexed"]),
            )
            self._specs[keccak256(signature.encode())] = spec
        missing = set(by_name) - {s.cls.__name__ for s in self._specs.values()}
        if missing:
            raise ChainError(f"the ABI lacks the events {sorted(missing)}")
        # EIP-55 checksumming costs a Keccak per address, most of an indexer's decoding time,
        # and an indexer meets the same few addresses (the market, its providers and owners)
        # over and over: remember the latest few thousand, on this decoder only.
        self._checksum: Callable[[str | bytes], Address] = functools.lru_cache(
            maxsize=_CHECKSUM_CACHE_SIZE
        )(_checksum)

    @property
    def topics(self) -> tuple[bytes, ...]:
        """The topic-0 values this decoder knows."""
        return tuple(self._specs)

    def topics_of(self, classes: Sequence[type[ChainEvent]]) -> tuple[bytes, ...]:
        """The topic-0 values of the given event classes."""
        wanted = set(classes)
        return tuple(topic for topic, spec in self._specs.items() if spec.cls in wanted)

    def decode(self, log: Mapping[str, Any]) -> ChainEvent | None:
        """Decode one log; ``None`` when its topic 0 is not one of this decoder's events.

        Raises:
            ChainError: when the log has a known topic but malformed topics or data.
        """
        topics = [_as_bytes(t) for t in log.get("topics", ())]
        if not topics or topics[0] not in self._specs:
            return None
        spec = self._specs[topics[0]]
        if len(topics) != 1 + len(spec.indexed):
            raise ChainError(
                f"malformed {spec.cls.__name__} log in block {log.get('blockNumber')}:"
                f" expected {1 + len(spec.indexed)} topics, got {len(topics)}"
            )
        try:
            values: dict[str, Any] = {}
            for (name, typ), topic in zip(spec.indexed, topics[1:], strict=True):
                (values[name],) = abi_decode([typ], topic)
            data_types = ["bytes" if t == "string" else t for _, t in spec.data]
            decoded = abi_decode(data_types, _as_bytes(log.get("data", b"")))
            for (name, typ), value in zip(spec.data, decoded, strict=True):
                values[name] = value.decode("utf-8", errors="replace") if typ == "string" else value
            for name, typ in (*spec.indexed, *spec.data):
                if typ == "address":
                    values[name] = self._checksum(values[name])
                elif typ == "bytes32":
                    raw = bytes(values[name])
                    values[name] = JobId("0x" + raw.hex()) if name in _JOB_ID_FIELDS else raw
            tx_hash = log.get("transactionHash")
            address = log["address"]
            return spec.cls(
                address=self._checksum(
                    bytes(address) if isinstance(address, bytearray) else address
                ),
                block_number=_as_int(log.get("blockNumber", 0)),
                log_index=_as_int(log.get("logIndex", 0)),
                tx_hash="0x" + _as_bytes(tx_hash).hex() if tx_hash is not None else "",
                **values,
            )
        except (ValueError, TypeError, KeyError, DecodingError) as exc:
            raise ChainError(
                f"malformed {spec.cls.__name__} log in block {log.get('blockNumber')}: {exc}"
            ) from exc


def market_decoder() -> EventDecoder:
    """A decoder for every MarketV1 event (reef's market and Marlin's share them)."""
    return EventDecoder(load_artifact("Market").abi, _MARKET_CLASSES)


def kms_registry_decoder() -> EventDecoder:
    """A decoder for the KMS registry's ImageApproved / ImageRevoked."""
    return EventDecoder(load_artifact("KmsRegistry").abi, _KMS_CLASSES)


def decode_market_log(
    log: Mapping[str, Any], decoder: EventDecoder | None = None
) -> MarketEvent | None:
    """Decode one market log (web3 or raw JSON-RPC form); ``None`` for other events.

    Pass a ``decoder`` from :func:`market_decoder` when decoding many logs, to build it once.
    """
    event = (decoder or market_decoder()).decode(log)
    return event  # type: ignore[return-value]
