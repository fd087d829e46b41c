"""reef.web: the dashboard (pages, attestation verification in the browser, management), the
network's Prometheus gauges, and alert rules over them.

- :class:`Dashboard` + :func:`dashboard_app`: the ASGI app ``reef dashboard`` and ``reef up``
  serve (on reef's serving floor, so with ``/metrics``).
- :func:`server_verdict`: what the attestation page shows from the server's side.
- :func:`network_collector` / :func:`network_samples`: jobs, balances, time left, enclaves,
  providers and enclave CPU/memory as gauges.
- :class:`AlertRule`, :func:`load_rules`, :class:`AlertEngine`, :data:`CONDITIONS`: ``alerts.toml``.
- :data:`GRAFANA_DASHBOARD`: the path of a Grafana dashboard for every reef service's metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from reef._lazy import lazy_attributes
from reef.web._alerts import (
    CONDITIONS,
    AlertEngine,
    AlertRule,
    Firing,
    Notice,
    Sample,
    load_rules,
    parse_duration_s,
    parse_samples,
    read_samples,
    send_notice,
)
from reef.web._dashboard import TOKEN_HEADER, Dashboard, DashboardSettings, is_loopback
from reef.web._metrics import EnclaveUsage, enclave_usage, network_collector, network_samples

if TYPE_CHECKING:
    from reef.web._app import dashboard_app
    from reef.web._attest import known_roots, parse_evidence, server_verdict

__all__ = [
    "AlertEngine",
    "AlertRule",
    "CONDITIONS",
    "Dashboard",
    "DashboardSettings",
    "EnclaveUsage",
    "Firing",
    "GRAFANA_DASHBOARD",
    "Notice",
    "Sample",
    "TOKEN_HEADER",
    "dashboard_app",
    "enclave_usage",
    "is_loopback",
    "known_roots",
    "load_rules",
    "network_collector",
    "network_samples",
    "parse_duration_s",
    "parse_evidence",
    "parse_samples",
    "read_samples",
    "send_notice",
    "server_verdict",
]

GRAFANA_DASHBOARD = Path(__file__).with_name("grafana.json")
"""A Grafana dashboard (JSON model) over the metrics every reef service exposes."""

# Loaded on first use (reef._lazy): `reef alerts` needs neither FastAPI nor the attestation code.
__getattr__ = lazy_attributes(
    __name__,
    {
        "dashboard_app": "_app",
        "known_roots": "_attest",
        "parse_evidence": "_attest",
        "server_verdict": "_attest",
    },
)
