"""What a provider offers: instance types with minimum rates per region, and bandwidth prices.

The files are Oyster's control-plane formats (reference §4.3), so an operator's existing
``--rates`` and ``--bandwidth`` files work unchanged:

* rates: ``[{"region": "...", "rate_cards": [{"instance", "min_rate", "cpu", "memory", "arch"}]}]``
  where ``min_rate`` is a U256 (decimal or ``0x`` hex string, or a JSON integer) in rate units
  (token base units × 10¹² per second) and ``memory`` is MiB;
* bandwidth: ``[{"region": "...", "region_code": "...", "rate": "..."}]`` where ``rate`` is the
  price of one GB transferred, in the same rate units.

``/spec`` prints U256 values as ``0x`` hex, as Oyster's control plane does; everything inside reef is
an ``int`` (never a float for money).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from reef.errors import ConfigError, MarketError

__all__ = [
    "DEV_REGION",
    "BandwidthRate",
    "InstanceRate",
    "RateCard",
    "RegionRates",
    "bandwidth_kbit_s",
    "parse_u256",
]

EXTRA_DECIMALS = 12
U256_MAX = (1 << 256) - 1
DEV_REGION = "local"

_T = TypeVar("_T")

# One rUSD (6 decimals) per hour is 10**6 base units / 3600 s, times 10**12 rate units per base unit.
# The dev prices are round numbers of base units per second so costs are easy to check by hand:
# dev.small costs 100 base units/s (0.36 rUSD/h), dev.medium 200 base units/s (0.72 rUSD/h).
_DEV_SMALL_RATE = 100 * 10**EXTRA_DECIMALS
_DEV_MEDIUM_RATE = 200 * 10**EXTRA_DECIMALS
# 0.09 rUSD per GB, Oyster's example price.
_DEV_GB_RATE = 90_000 * 10**EXTRA_DECIMALS


def parse_u256(value: object, *, name: str) -> int:
    """A U256 from a rates file: a JSON integer, a decimal string or a ``0x`` hex string.

    Raises:
        ConfigError: naming ``name`` when the value is not a non-negative integer below 2**256.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = int(text, 16) if text[:2].lower() == "0x" else int(text, 10)
        except ValueError as exc:
            raise ConfigError(
                f"{name} is not a decimal or 0x-hex integer: {value!r}",
                hint='write it like "52500000000000" or "0x2fbf9bd9c800"',
            ) from exc
    else:
        raise ConfigError(f"{name} must be an integer or a string, got {type(value).__name__}")
    if not 0 <= number <= U256_MAX:
        raise ConfigError(f"{name} is outside the uint256 range: {value!r}")
    return number


def _require(entry: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise ConfigError(f"{where} has no {key!r} field")
    return entry[key]


def _objects(
    value: object, problem: str, name: str, shape: str
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each object of the JSON list ``value``, with where it stands (``name[i]``) for errors.

    Raises:
        ConfigError: ``problem`` when ``value`` is not a list; ``name[i] must be <shape>`` at the
            first entry that is not an object.
    """
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise ConfigError(problem)
    for i, entry in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} must be {shape}")
        yield where, entry


def _field(entry: Mapping[str, Any], key: str, where: str, parse: Callable[..., _T]) -> _T:
    """``entry[key]`` checked by ``parse``, named ``where.key`` in errors."""
    return parse(_require(entry, key, where), name=f"{where}.{key}")


def _positive_int(value: object, *, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def _text(value: object, *, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    return value.strip()


@dataclass(frozen=True)
class InstanceRate:
    """One instance type a provider offers in a region, and the least it accepts for it."""

    instance: str
    min_rate: int
    cpu: int
    memory: int
    arch: str = "amd64"

    def to_json(self) -> dict[str, Any]:
        """Oyster's ``/spec`` shape: ``min_rate`` as ``0x`` hex."""
        return {
            "instance": self.instance,
            "min_rate": hex(self.min_rate),
            "cpu": self.cpu,
            "memory": self.memory,
            "arch": self.arch,
        }


@dataclass(frozen=True)
class RegionRates:
    """The rate cards of one region."""

    region: str
    rate_cards: tuple[InstanceRate, ...]

    def to_json(self) -> dict[str, Any]:
        return {"region": self.region, "rate_cards": [card.to_json() for card in self.rate_cards]}


@dataclass(frozen=True)
class BandwidthRate:
    """The price of one GB transferred in a region, in rate units."""

    region: str
    region_code: str
    rate: int

    def to_json(self) -> dict[str, Any]:
        return {"region": self.region, "region_code": self.region_code, "rate": hex(self.rate)}


def bandwidth_kbit_s(rate: int, min_rate: int, gb_rate: int) -> int:
    """Bandwidth a job's rate buys above the instance's minimum, in kbit/s (reference §4.5).

    ``(rate - min_rate)`` rate units per second buy ``(rate - min_rate) / gb_rate`` GB/s, which is
    ``× 1024 × 1024 × 8`` kbit/s. Zero when the rate is at (or below) the minimum or the region
    has no bandwidth price.
    """
    if rate <= min_rate or gb_rate <= 0:
        return 0
    return (rate - min_rate) * 1024 * 1024 * 8 // gb_rate


@dataclass(frozen=True)
class RateCard:
    """Everything a provider offers: instance rate cards per region and bandwidth prices."""

    regions: tuple[RegionRates, ...]
    bandwidth: tuple[BandwidthRate, ...] = ()

    def __post_init__(self) -> None:
        seen: set[tuple[str, str]] = set()
        for region in self.regions:
            for card in region.rate_cards:
                key = (region.region, card.instance)
                if key in seen:
                    raise ConfigError(
                        f"instance {card.instance!r} is listed twice for region {region.region!r}"
                    )
                seen.add(key)

    @property
    def allowed_regions(self) -> tuple[str, ...]:
        return tuple(region.region for region in self.regions)

    def lookup(self, region: str, instance: str) -> InstanceRate:
        """The rate card for ``instance`` in ``region``.

        Raises:
            MarketError: saying which regions or instance types are offered instead.
        """
        for entry in self.regions:
            if entry.region != region:
                continue
            for card in entry.rate_cards:
                if card.instance == instance:
                    return card
            offered = ", ".join(card.instance for card in entry.rate_cards) or "none"
            raise MarketError(
                f"instance type {instance!r} is not offered in region {region!r}",
                hint=f"this provider offers: {offered}",
            )
        raise MarketError(
            f"region {region!r} is not served by this provider",
            hint=f"allowed regions: {', '.join(self.allowed_regions) or 'none'}",
        )

    def gb_rate(self, region: str) -> int:
        """The bandwidth price of ``region`` (matched by region code, then name); 0 if unpriced."""
        for entry in self.bandwidth:
            if region in (entry.region_code, entry.region):
                return entry.rate
        return 0

    def spec_json(self) -> dict[str, Any]:
        """The body of ``GET /spec``."""
        return {
            "allowed_regions": list(self.allowed_regions),
            "min_rates": [region.to_json() for region in self.regions],
        }

    def bandwidth_json(self) -> dict[str, Any]:
        """The body of ``GET /bandwidth``."""
        return {"rates": [entry.to_json() for entry in self.bandwidth]}

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def dev(cls) -> RateCard:
        """The local network's offer: ``dev.small`` and ``dev.medium`` in region ``local``."""
        return cls(
            regions=(
                RegionRates(
                    DEV_REGION,
                    (
                        InstanceRate("dev.small", _DEV_SMALL_RATE, cpu=1, memory=1024),
                        InstanceRate("dev.medium", _DEV_MEDIUM_RATE, cpu=2, memory=2048),
                    ),
                ),
            ),
            bandwidth=(BandwidthRate("Local machine", DEV_REGION, _DEV_GB_RATE),),
        )

    @classmethod
    def parse(cls, rates: object, bandwidth: object = ()) -> RateCard:
        """Build from the decoded JSON of a rates file and (optionally) a bandwidth file.

        Raises:
            ConfigError: naming the entry and field that is wrong.
        """
        regions = _objects(
            rates,
            "the rates file must hold a JSON list of regions",
            "rates",
            "an object with region and rate_cards",
        )
        prices = _objects(
            bandwidth,
            "the bandwidth file must hold a JSON list",
            "bandwidth",
            "an object with region, region_code and rate",
        )
        return cls(
            tuple(_region_rates(entry, where) for where, entry in regions),
            tuple(_bandwidth_rate(entry, where) for where, entry in prices),
        )

    @classmethod
    def from_files(cls, rates: Path, bandwidth: Path | None = None) -> RateCard:
        """Read Oyster-format rates and bandwidth files.

        Raises:
            ConfigError: when a file is missing, is not JSON, or has a bad entry.
        """
        return cls.parse(
            _load_json(rates, "rates"), _load_json(bandwidth, "bandwidth") if bandwidth else ()
        )


def _region_rates(entry: Mapping[str, Any], where: str) -> RegionRates:
    """One region of a rates file (``where`` names it in errors): its name and rate cards."""
    region = _field(entry, "region", where, _text)
    cards = _objects(
        _require(entry, "rate_cards", where),
        f"{where}.rate_cards must be a list",
        f"{where}.rate_cards",
        "an object",
    )
    return RegionRates(region, tuple(_instance_rate(card, at) for at, card in cards))


def _instance_rate(card: Mapping[str, Any], where: str) -> InstanceRate:
    """One rate card of a region (``where`` names it in errors)."""
    return InstanceRate(
        instance=_field(card, "instance", where, _text),
        min_rate=_field(card, "min_rate", where, parse_u256),
        cpu=_field(card, "cpu", where, _positive_int),
        memory=_field(card, "memory", where, _positive_int),
        arch=_text(card.get("arch", "amd64"), name=f"{where}.arch"),
    )


def _bandwidth_rate(entry: Mapping[str, Any], where: str) -> BandwidthRate:
    """One region's price of a bandwidth file (``where`` names it in errors)."""
    return BandwidthRate(
        region=_field(entry, "region", where, _text),
        region_code=_field(entry, "region_code", where, _text),
        rate=_field(entry, "rate", where, parse_u256),
    )


def _load_json(path: Path, what: str) -> object:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} file {path} is not valid JSON: {exc}") from exc
