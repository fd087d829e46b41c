"""Typed events of the market and the KMS registry, decoded from raw logs.

The decoder works from the event signatures alone (topic 0 = keccak of ``Name(types)``), so it
reads logs of reef's market and of Marlin's deployed MarketV1 alike: both emit the same event
names, field types, order and indexing. It accepts logs as web3.py returns them or as raw
JSON-RPC objects (hex strings), which is what an indexer holds. Strings are decoded as UTF-8
with replacement, so a hostile log cannot crash an indexer.

Every contract's events go through :class:`EventDecoder` (the market's and the KMS registry's
here, the proof market's and the serverless contracts' in their packages): fields are the
elementary ABI types, ``bool`` and dynamic arrays of them (``address[]`` as
``tuple[Address, ...]``).

The module is a little over 600 lines because the event types and the decoder that reads and
stores them must agree field by field (types, names, Oyster's stored spellings), and are read
together.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import (
    Any,
    ClassVar,
    Literal,
    dataclass_transform,
    get_args,
    get_origin,
    get_type_hints,
)

from reef.chain._abi_words import words_decoder
from reef.chain._artifacts import load_artifact
from reef.chain._types import Address, Amount, JobId, Rate
from reef.crypto import eip55_address, keccak256
from reef.encoding import describe_value
from reef.errors import ChainError

__all__ = [
    "JOB_EVENTS",
    "ChainEvent",
    "EventDecoder",
    "EventRecord",
    "ImageApproved",
    "ImageRevoked",
    "JobClosed",
    "JobDeposited",
    "JobEvent",
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
    "oyster_event_name",
]


@dataclass_transform(frozen_default=True, kw_only_default=True)
@dataclass(frozen=True, kw_only=True)
class ChainEvent:
    """Where an event was emitted: the contract, block, log index and transaction.

    A contract's event is declared once, as a subclass listing the event's own fields: the ABI's
    inputs in snake_case, typed ``Address``, ``JobId``, ``int`` (``Rate``, ``Amount``),
    ``bytes``, ``str``, ``bool`` or ``tuple[X, ...]`` of one of them. The subclass is made a
    frozen, keyword-only dataclass here, so every event type is one and none repeats (or
    forgets) the decorator; do not decorate one with ``@dataclass`` again (a frozen dataclass
    cannot be made twice).
    """

    ABI_NAME: ClassVar[str] = ""
    """The event's name in its contract's ABI; the class name if empty (two contracts may name
    different events alike, e.g. ``JobResponded``, and one class name cannot stand for both)."""
    JSON_NAME: ClassVar[str] = ""
    """The name the event is stored under (:meth:`EventDecoder.to_json`); the class name if empty."""
    JSON_KEYS: ClassVar[Mapping[str, str]] = {}
    """Field → stored key, where they differ (Oyster's ``job_events`` spellings)."""

    address: Address
    block_number: int
    log_index: int
    tx_hash: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclass(frozen=True, kw_only=True)(cls)

    def args(self) -> dict[str, Any]:
        """The event's own fields (without the location fields above)."""
        base = {f.name for f in fields(ChainEvent)}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in base}


# ---- market (MarketV1 names and fields; snake_case in Python) ----


class ProviderAdded(ChainEvent):
    provider: Address
    cp: str


class ProviderRemoved(ChainEvent):
    provider: Address


class ProviderUpdatedWithCp(ChainEvent):
    provider: Address
    new_cp: str


class JobEvent(ChainEvent):
    """An event of one job (topic 1 is its id); stored under Oyster's ``job_events`` names.

    Oyster's indexer names these events without their ``Job`` prefix (``JobOpened`` is
    ``Opened``) and spells two fields differently (``job_id``, ``from``): reef stores them so,
    and reads them back into these classes (reference §4.4).
    """

    JSON_KEYS: ClassVar[Mapping[str, str]] = {"job": "job_id", "from_": "from"}

    job: JobId

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.JSON_NAME = cls.__name__.removeprefix("Job")


class JobOpened(JobEvent):
    metadata: str
    owner: Address
    provider: Address
    rate: Rate
    balance: Amount
    timestamp: int


class JobSettled(JobEvent):
    amount: Amount
    timestamp: int


class JobClosed(JobEvent):
    pass


class JobDeposited(JobEvent):
    from_: Address
    amount: Amount


class JobWithdrew(JobEvent):
    to: Address
    amount: Amount


class JobReviseRateInitiated(JobEvent):
    new_rate: Rate


class JobReviseRateCancelled(JobEvent):
    pass


class JobReviseRateFinalized(JobEvent):
    new_rate: Rate


class JobMetadataUpdated(JobEvent):
    JSON_KEYS: ClassVar[Mapping[str, str]] = {"job": "job_id", "metadata": "new_metadata"}

    metadata: str


class LockCreated(ChainEvent):
    selector: bytes
    key: JobId
    i_value: int
    unlock_time: int


class LockDeleted(ChainEvent):
    selector: bytes
    key: JobId
    i_value: int


class LockWaitTimeUpdated(ChainEvent):
    selector: bytes
    prev_lock_time: int
    updated_lock_time: int


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


class ImageApproved(ChainEvent):
    image_id: bytes


class ImageRevoked(ChainEvent):
    image_id: bytes


KmsRegistryEvent = ImageApproved | ImageRevoked

_MARKET_CLASSES: tuple[type[ChainEvent], ...] = get_args(MarketEvent)
_KMS_CLASSES: tuple[type[ChainEvent], ...] = get_args(KmsRegistryEvent)
JOB_EVENTS: tuple[type[ChainEvent], ...] = tuple(
    cls for cls in _MARKET_CLASSES if issubclass(cls, JobEvent)
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
        try:
            return bytes.fromhex(value[2:] if value[:2] in ("0x", "0X") else value)
        except ValueError as exc:
            raise ChainError(f"log field is not hex: {value[:80]!r}") from exc
    raise ChainError(f"log field is neither bytes nor hex: {type(value).__name__}")


def _checksum(value: str | bytes) -> Address:
    # InputError, a ValueError: decode names the malformed log.
    return Address(eip55_address(value))


def _as_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16) if value.startswith("0x") else int(value)
    raise ChainError(f"log field is not an integer: {value!r}")


_FieldKind = Literal["address", "job_id", "int", "bytes", "str", "bool"]
# How each field type of the event classes is stored: Oyster's event_data conventions (U256 as
# 0x hex, addresses lowercase, bytes as 0x hex), chosen by the declared type, never by the value
# (a string that happens to look like an address stays as it was). ``tuple[X, ...]`` (a dynamic
# array) is stored as a JSON list of X's stored form.
_KINDS: Mapping[object, _FieldKind] = {
    Address: "address",
    JobId: "job_id",
    Rate: "int",
    Amount: "int",
    int: "int",
    bytes: "bytes",
    str: "str",
    bool: "bool",
}
_ADDRESS_TEXT = re.compile(r"0x[0-9a-fA-F]{40}")
_JOB_ID_TEXT = re.compile(r"0x[0-9a-fA-F]{64}")
_HEX_TEXT = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
_INT_HEX_TEXT = re.compile(r"0x[0-9a-fA-F]{1,64}")


@dataclass(frozen=True)
class EventRecord:
    """An event as an indexer stores it: Oyster's ``job_events`` row shape.

    ``name`` is the stored name (``Opened`` for ``JobOpened``), ``job_id`` the job it concerns
    (``None`` for other events), ``data`` its fields as JSON values (``event_data``).
    """

    name: str
    job_id: str | None
    data: Mapping[str, Any]


@dataclass(frozen=True)
class _JsonField:
    name: str  # the Python field
    key: str  # the stored key
    kind: _FieldKind
    array: bool  # a tuple of ``kind`` values


@dataclass(frozen=True)
class _JsonSpec:
    cls: type[ChainEvent]
    name: str
    fields: tuple[_JsonField, ...]


def _field_kind(hint: object) -> tuple[_FieldKind, bool] | None:
    """How a field of type ``hint`` is stored, and whether it is an array; None if it cannot be."""
    if get_origin(hint) is tuple:
        args = get_args(hint)
        kind = _KINDS.get(args[0]) if len(args) == 2 and args[1] is Ellipsis else None
        return None if kind is None else (kind, True)
    kind = _KINDS.get(hint)
    return None if kind is None else (kind, False)


def _json_spec(cls: type[ChainEvent]) -> _JsonSpec:
    hints = get_type_hints(cls)
    base = {f.name for f in fields(ChainEvent)}
    specs: list[_JsonField] = []
    for f in fields(cls):
        if f.name in base:
            continue
        found = _field_kind(hints[f.name])
        if found is None:
            raise ChainError(
                f"{cls.__name__}.{f.name} has a type events cannot be stored with: "
                f"{hints[f.name]!r}",
                hint="declare event fields as Address, JobId, int (Rate, Amount), bytes, str, "
                "bool, or tuple[X, ...] of one of them",
            )
        kind, array = found
        specs.append(_JsonField(f.name, cls.JSON_KEYS.get(f.name, f.name), kind, array))
    return _JsonSpec(cls, cls.JSON_NAME or cls.__name__, tuple(specs))


def _dump(field: _JsonField, value: Any) -> Any:
    if field.array:
        return [_dump_one(field.kind, v) for v in value]
    return _dump_one(field.kind, value)


def _dump_one(kind: _FieldKind, value: Any) -> Any:
    if kind == "address":
        return str(value).lower()
    if kind == "int":
        return hex(value)
    if kind == "bytes":
        return "0x" + bytes(value).hex()
    return value


@dataclass(frozen=True)
class _EventSpec:
    cls: type[ChainEvent]
    indexed: tuple[tuple[str, str], ...]  # (python field, abi type)
    data: tuple[tuple[str, str], ...]


class EventDecoder:
    """The event types of one contract: decodes its logs, and stores and loads its events.

    Logs whose topic 0 matches one of ``classes`` (events named in ``abi``) decode to those
    classes; :meth:`to_json` and :meth:`from_json` turn an event into the record an indexer stores
    and back into the same typed event, so events stay typed from the chain to their consumers.

    Raises:
        ChainError: the ABI lacks one of ``classes``, or a class has a field type that cannot be
            stored.
    """

    def __init__(
        self, abi: Sequence[Mapping[str, Any]], classes: Sequence[type[ChainEvent]]
    ) -> None:
        by_name = {cls.ABI_NAME or cls.__name__: cls for cls in classes}
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
        # Built once per event: decoding runs for every log an indexer reads.
        self._data_decoders = {
            topic: words_decoder(["bytes" if t == "string" else t for _, t in spec.data])
            for topic, spec in self._specs.items()
        }
        self._topic_decoders = {
            typ: words_decoder([typ]) for spec in self._specs.values() for _, typ in spec.indexed
        }
        missing = set(by_name) - {s.cls.ABI_NAME or s.cls.__name__ for s in self._specs.values()}
        if missing:
            raise ChainError(f"the ABI lacks the events {sorted(missing)}")
        self._json = {cls: _json_spec(cls) for cls in classes}
        for spec in self._specs.values():
            declared = {f.name for f in self._json[spec.cls].fields}
            logged = {name for name, _ in (*spec.indexed, *spec.data)}
            if declared != logged:
                raise ChainError(
                    f"{spec.cls.__name__} declares the fields {sorted(declared)}, but the ABI's "
                    f"{spec.cls.ABI_NAME or spec.cls.__name__} logs {sorted(logged)}",
                    hint="is the class meant for another contract's event of the same name?",
                )
        self._by_name = {spec.name: spec for spec in self._json.values()}
        if len(self._by_name) != len(self._json):
            raise ChainError("two event types of one contract are stored under the same name")
        # EIP-55 checksumming costs a Keccak per address, most of an indexer's decoding time,
        # and an indexer meets the same few addresses (the market, its providers and owners)
        # over and over: remember the latest few thousand, on this decoder only.
        self._checksum: Callable[[str | bytes], Address] = functools.lru_cache(
            maxsize=_CHECKSUM_CACHE_SIZE
        )(_checksum)

    @property
    def classes(self) -> tuple[type[ChainEvent], ...]:
        """The event types this decoder knows."""
        return tuple(spec.cls for spec in self._json.values())

    def json_name(self, cls: type[ChainEvent]) -> str:
        """The name events of ``cls`` are stored under.

        Raises:
            ChainError: ``cls`` is not one of this decoder's event types.
        """
        return self._json_spec(cls).name

    def to_json(self, event: ChainEvent) -> EventRecord:
        """The event as it is stored: its name, job id and fields as JSON values.

        :meth:`from_json` reads the record back into an equal event (given its location).

        Raises:
            ChainError: the event is not one of this decoder's types.
        """
        spec = self._json_spec(type(event))
        data = {f.key: _dump(f, getattr(event, f.name)) for f in spec.fields}
        job_id = data.get("job_id")
        return EventRecord(spec.name, job_id if isinstance(job_id, str) else None, data)

    def from_json(
        self,
        name: str,
        data: Mapping[str, Any],
        *,
        address: str,
        block_number: int,
        log_index: int,
        tx_hash: str,
    ) -> ChainEvent:
        """A stored event (``name`` and ``data`` of :meth:`to_json`) as its typed event.

        Keys ``data`` has beyond the event's fields are ignored; integers may be ``0x`` hex
        (as stored) or JSON numbers.

        Raises:
            ChainError: an unknown name, or a field that is missing or malformed.
        """
        spec = self._by_name.get(name)
        if spec is None:
            raise ChainError(
                f"a stored event is named {name!r}, which is none of {sorted(self._by_name)}",
                hint="was this database written for another contract or ABI?",
            )
        values: dict[str, Any] = {}
        for field in spec.fields:
            if field.key not in data:
                raise ChainError(f"the stored {name} event has no {field.key!r}")
            value, what = data[field.key], f"{name}.{field.key}"
            if not field.array:
                values[field.name] = self._load(field.kind, value, what)
            elif isinstance(value, list):
                values[field.name] = tuple(self._load(field.kind, v, what) for v in value)
            else:
                raise ChainError(
                    f"the stored field {what} is not a list: {describe_value(value, width=80)}"
                )
        return spec.cls(
            address=self._load("address", address, f"{name} address"),
            block_number=block_number,
            log_index=log_index,
            tx_hash=tx_hash,
            **values,
        )

    def _json_spec(self, cls: type[ChainEvent]) -> _JsonSpec:
        spec = self._json.get(cls)
        if spec is None:
            raise ChainError(f"{cls.__name__} is not an event of this contract's decoder")
        return spec

    def _load(self, kind: _FieldKind, value: Any, what: str) -> Any:
        if kind == "int":
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
            if isinstance(value, str) and _INT_HEX_TEXT.fullmatch(value):
                return int(value, 16)
            # A uint256 has at most 78 decimal digits; int() refuses over 4 300 with ValueError.
            if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 78:
                return int(value)
        elif kind == "address":
            if isinstance(value, str) and _ADDRESS_TEXT.fullmatch(value):
                return self._checksum(value)
        elif kind == "job_id":
            if isinstance(value, str) and _JOB_ID_TEXT.fullmatch(value):
                return JobId(value.lower())
        elif kind == "bytes":
            if isinstance(value, str) and _HEX_TEXT.fullmatch(value):
                return bytes.fromhex(value[2:])
        elif kind == "bool":
            if isinstance(value, bool):
                return value
        elif isinstance(value, str):
            return value
        raise ChainError(
            f"the stored field {what} is not a valid {kind}: {describe_value(value, width=80)}"
        )

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
        raw_topics = log.get("topics", ())
        if not isinstance(raw_topics, list | tuple):
            # A node's (or a block source's) answer, not a log's content: still refused by name.
            raise ChainError(
                f"malformed log in block {describe_value(log.get('blockNumber'))}: its topics "
                f"are {type(raw_topics).__name__}, not a list"
            )
        topics = [_as_bytes(t) for t in raw_topics]
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
                (values[name],) = self._topic_decoders[typ](topic)
            decoded = self._data_decoders[topics[0]](_as_bytes(log.get("data", b"")))
            for (name, typ), value in zip(spec.data, decoded, strict=True):
                values[name] = value.decode("utf-8", errors="replace") if typ == "string" else value
            for name, typ in (*spec.indexed, *spec.data):
                if typ == "address":
                    values[name] = self._checksum(values[name])
                elif typ == "address[]":
                    values[name] = tuple(self._checksum(a) for a in values[name])
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
        except (ValueError, TypeError, KeyError) as exc:
            raise ChainError(
                f"malformed {spec.cls.__name__} log in block {log.get('blockNumber')}: {exc}"
            ) from exc


def oyster_event_name(abi_name: str) -> str:
    """``JobOpened`` → ``Opened`` (Oyster's ``job_events`` names); other events keep theirs."""
    for cls in JOB_EVENTS:
        if cls.__name__ == abi_name:
            return cls.JSON_NAME
    return abi_name


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
