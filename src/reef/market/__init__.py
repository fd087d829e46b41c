"""reef.market: the Oyster-style job market (billing model, rate cards, provider control plane)."""

from __future__ import annotations

from reef.market._job_state import (
    JobBook,
    JobEventRecord,
    JobMachine,
    JobMetadata,
    JobPolicy,
    Launch,
    LaunchSpec,
    Terminate,
)
from reef.market._rates import (
    DEV_REGION,
    BandwidthRate,
    InstanceRate,
    RateCard,
    RegionRates,
    bandwidth_kbit_s,
    parse_u256,
)

__all__ = [
    "DEV_REGION",
    "BandwidthRate",
    "InstanceRate",
    "JobBook",
    "JobEventRecord",
    "JobMachine",
    "JobMetadata",
    "JobPolicy",
    "Launch",
    "LaunchSpec",
    "RateCard",
    "RegionRates",
    "Terminate",
    "bandwidth_kbit_s",
    "parse_u256",
]
