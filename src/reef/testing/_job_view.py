"""A control plane's view of its jobs as a test sets it, for ``reef.market.control_plane_app``.

The CLI's job commands and the dashboard read a provider's ``/job``, ``/jobs`` and ``/ip``; a test
of what they show serves this view instead of running a provider, and sets each job's status
(and, to stand for a running enclave, ``enclaves``) as the case needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reef.chain import JobId, parse_address
from reef.market import JobPolicy, RateCard, RunningEnclave

__all__ = ["ScriptedJobView"]


@dataclass
class ScriptedJobView:
    """A :class:`reef.market.JobView`: ``statuses`` by lowercase job id (``/job``, ``/jobs``)
    and ``enclaves`` by lowercase job id (``/ip``, the console), for provider ``provider``
    under reef's dev rate card."""

    provider: str
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    enclaves: dict[str, RunningEnclave] = field(default_factory=dict)
    host: str = "127.0.0.1"

    @property
    def policy(self) -> JobPolicy:
        return JobPolicy(RateCard.dev(), provider=parse_address(self.provider, name="provider"))

    def enclave(self, job_id: JobId) -> RunningEnclave | None:
        return self.enclaves.get(job_id.lower())

    def job_status(self, job_id: JobId) -> dict[str, Any] | None:
        return self.statuses.get(job_id.lower())

    def jobs(self) -> list[dict[str, Any]]:
        return list(self.statuses.values())
