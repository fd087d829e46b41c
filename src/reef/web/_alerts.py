"""Alert rules (``alerts.toml``): conditions over metrics, held for a while, sent somewhere.

A rule names a *condition* (a small function from metric samples and the rule's parameters to
the things that are wrong now, each with a stable key), how long it must hold (``for``) and where
its notices go (``log``, or ``webhook`` with a ``url``). :class:`AlertEngine` is pure: fed the
samples and the time at each evaluation, it returns the notices to send — ``firing`` once a key
has held for ``for``, ``resolved`` when a firing key clears — so it is tested without clocks or
sockets. Samples come from the network's gauges (:func:`reef.web.network_samples`) and from any
``/metrics`` URL (:func:`read_samples`, :func:`parse_samples`).

Adding a condition is one function in :data:`CONDITIONS` and a test::

    [[rule]]
    name = "job money"
    condition = "balance_runs_out"   # see CONDITIONS
    within = "2h"                     # the condition's own parameters
    for = "0s"
    destination = "webhook"
    url = "http://127.0.0.1:9000/hook"
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from reef._clock import parse_duration
from reef._fetch import fetch_blocking
from reef.encoding import terminal_text
from reef.errors import ConfigError, InputError, ServiceError

__all__ = [
    "CONDITIONS",
    "AlertEngine",
    "AlertRule",
    "Firing",
    "Notice",
    "Sample",
    "load_rules",
    "parse_duration_s",
    "parse_samples",
    "read_samples",
    "send_notice",
]

_log = logging.getLogger("reef.alerts")


@dataclass(frozen=True)
class Sample:
    """One metric sample: name (``_total`` kept for counters), labels, value."""

    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Firing:
    """Something a condition finds wrong now; ``key`` identifies it across evaluations."""

    key: str
    message: str


Condition = Callable[[Sequence[Sample], Mapping[str, Any]], list[Firing]]


def parse_duration_s(value: object, *, name: str = "duration") -> int:
    """A rule's duration (``"90"``, ``"15m"``, ``"1h30m"``, ``0``, any :func:`parse_duration`
    text) or a non-negative integer, in seconds.

    Raises:
        InputError: anything else, named by ``name``.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    try:
        return parse_duration(str(value), zero=True)
    except InputError as exc:
        raise InputError(f"{name}: {exc.message}", hint=exc.hint) from None


def _of(samples: Iterable[Sample], name: str) -> list[Sample]:
    return [s for s in samples if s.name == name]


# ------------------------------------------------------------------------------ conditions


def balance_runs_out(samples: Sequence[Sample], params: Mapping[str, Any]) -> list[Firing]:
    """A job's enclave will be stopped for lack of money within ``within`` (default 1h)."""
    within = parse_duration_s(params.get("within", "1h"), name="within")
    return [
        Firing(
            f"job {s.labels.get('job', '?')}",
            f"job {s.labels.get('job', '?')} runs out of money in {int(s.value)} s "
            f"(less than {within} s): deposit to keep its enclave",
        )
        for s in _of(samples, "reef_job_time_left_seconds")
        if s.value < within
    ]


def enclave_down(samples: Sequence[Sample], params: Mapping[str, Any]) -> list[Firing]:
    """A paid job's enclave is not running."""
    return [
        Firing(
            f"job {s.labels.get('job', '?')}", f"job {s.labels.get('job', '?')}'s enclave is down"
        )
        for s in _of(samples, "reef_job_running")
        if s.value == 0
    ]


def enclave_restarting(samples: Sequence[Sample], params: Mapping[str, Any]) -> list[Firing]:
    """A job's enclave was relaunched more than ``max`` times (default 0)."""
    most = float(params.get("max", 0))
    return [
        Firing(
            f"job {s.labels.get('job', '?')}",
            f"job {s.labels.get('job', '?')}'s enclave was relaunched {int(s.value)} times",
        )
        for s in _of(samples, "reef_job_restarts")
        if s.value > most
    ]


def provider_down(samples: Sequence[Sample], params: Mapping[str, Any]) -> list[Firing]:
    """A registered provider's control plane does not answer."""
    return [
        Firing(
            f"provider {s.labels.get('provider', '?')}",
            f"provider {s.labels.get('provider', '?')}'s control plane does not answer",
        )
        for s in _of(samples, "reef_provider_up")
        if s.value == 0
    ]


def network_down(samples: Sequence[Sample], params: Mapping[str, Any]) -> list[Firing]:
    """The chain cannot be read (``reef_network_up`` is 0 or missing)."""
    up = _of(samples, "reef_network_up")
    if up and all(s.value == 1 for s in up):
        return []
    return [Firing("network", "the chain cannot be read")]


def http_errors(samples: Sequence[Sample], params: Mapping[str, Any]) -> list[Firing]:
    """A service answered more than ``max`` (default 0) 5xx responses since it started."""
    most = float(params.get("max", 0))
    totals: dict[str, float] = {}
    for s in _of(samples, "reef_http_errors_total"):
        service = s.labels.get("service", "?")
        totals[service] = totals.get(service, 0.0) + s.value
    return [
        Firing(f"service {name}", f"{name} answered {int(total)} server errors")
        for name, total in sorted(totals.items())
        if total > most
    ]


_OPS: Mapping[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def threshold(samples: Sequence[Sample], params: Mapping[str, Any]) -> list[Firing]:
    """Any metric against a value: ``metric``, ``op`` (``> >= < <= == !=``), ``value``, and
    optional ``labels`` (a table every matching sample must carry)."""
    name = str(params.get("metric") or "")
    op = _OPS.get(str(params.get("op", ">")))
    if not name or op is None:
        raise ConfigError("threshold needs metric = NAME, op = one of > >= < <= == !=, value = N")
    limit = float(params.get("value", 0))
    wanted = {str(k): str(v) for k, v in dict(params.get("labels") or {}).items()}
    out = []
    for s in _of(samples, name):
        if any(s.labels.get(k) != v for k, v in wanted.items()) or not op(s.value, limit):
            continue
        shown = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out.append(Firing(f"{name}{{{shown}}}", f"{name}{{{shown}}} is {s.value:g}"))
    return out


CONDITIONS: Mapping[str, Condition] = {
    "balance_runs_out": balance_runs_out,
    "enclave_down": enclave_down,
    "enclave_restarting": enclave_restarting,
    "http_errors": http_errors,
    "network_down": network_down,
    "provider_down": provider_down,
    "threshold": threshold,
}
"""Every condition a rule may name (``condition = "…"``)."""


# ------------------------------------------------------------------------------ rules


@dataclass(frozen=True, kw_only=True)
class AlertRule:
    """One ``[[rule]]`` of ``alerts.toml``."""

    name: str
    condition: str
    params: Mapping[str, Any] = field(default_factory=dict)
    for_s: int = 0
    destination: Literal["log", "webhook"] = "log"
    url: str = ""

    def evaluate(self, samples: Sequence[Sample]) -> list[Firing]:
        return CONDITIONS[self.condition](samples, self.params)


_RULE_KEYS = {"name", "condition", "for", "destination", "url"}


def _rule(index: int, table: Mapping[str, Any]) -> AlertRule:
    where = f"rule {index + 1}"
    name = str(table.get("name") or f"rule {index + 1}")
    condition = str(table.get("condition") or "")
    if condition not in CONDITIONS:
        raise ConfigError(
            f"{where} ({name}): unknown condition {condition!r}",
            hint=f"use one of {', '.join(sorted(CONDITIONS))}",
        )
    destination = str(table.get("destination", "log"))
    url = str(table.get("url") or "")
    if destination not in ("log", "webhook"):
        raise ConfigError(f"{where} ({name}): destination must be log or webhook")
    if destination == "webhook" and not url.startswith(("http://", "https://")):
        raise ConfigError(f'{where} ({name}): a webhook needs url = "http://…"')
    try:
        for_s = parse_duration_s(table.get("for", 0), name="for")
    except InputError as exc:
        raise ConfigError(f"{where} ({name}): {exc.message}", hint=exc.hint) from exc
    params = {k: v for k, v in table.items() if k not in _RULE_KEYS}
    rule = AlertRule(
        name=name,
        condition=condition,
        params=params,
        for_s=for_s,
        destination="webhook" if destination == "webhook" else "log",
        url=url,
    )
    try:
        rule.evaluate([])  # a condition checks its parameters on any input
    except InputError as exc:
        raise ConfigError(f"{where} ({name}): {exc.message}", hint=exc.hint) from exc
    return rule


_RULES_HINT = (
    "an alerts file holds one [[rule]] table per alert (name, condition, destination, and "
    "the condition's own keys): see docs/dashboard.md"
)


def load_rules(source: Path | str) -> list[AlertRule]:
    """The rules of an ``alerts.toml`` file (a path) or text.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or a rule is invalid (named).
    """
    try:
        text = source.read_text() if isinstance(source, Path) else source
        data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the alert rules {source}: {exc.strerror or exc}", hint=_RULES_HINT
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the alert rules are not valid TOML: {exc}", hint=_RULES_HINT) from exc
    tables = data.get("rule", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError("alert rules are [[rule]] tables", hint=_RULES_HINT)
    return [_rule(i, t) for i, t in enumerate(tables)]


# ------------------------------------------------------------------------------ evaluation


@dataclass(frozen=True)
class Notice:
    """What to send: a key of a rule started firing, or stopped."""

    rule: str
    key: str
    state: Literal["firing", "resolved"]
    message: str
    since: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class AlertEngine:
    """Evaluates rules over time (see the module docstring); holds which keys are pending and
    which fire."""

    def __init__(self, rules: Sequence[AlertRule]) -> None:
        self.rules = tuple(rules)
        self._pending: dict[tuple[str, str], float] = {}
        self._firing: dict[tuple[str, str], str] = {}

    @property
    def firing(self) -> list[tuple[str, str]]:
        """``(rule, key)`` of everything firing now."""
        return sorted(self._firing)

    def step(self, samples: Sequence[Sample], now: float) -> list[Notice]:
        """Evaluate every rule at ``now`` (seconds); return the notices to send."""
        notices: list[Notice] = []
        for rule in self.rules:
            current = {f.key: f.message for f in rule.evaluate(samples)}
            for key, message in current.items():
                ident = (rule.name, key)
                since = self._pending.setdefault(ident, now)
                if ident not in self._firing and now - since >= rule.for_s:
                    self._firing[ident] = message
                    notices.append(Notice(rule.name, key, "firing", message, since))
            for ident in [i for i in self._pending if i[0] == rule.name and i[1] not in current]:
                since = self._pending.pop(ident)
                fired = self._firing.pop(ident, "")
                if fired:
                    notices.append(
                        Notice(rule.name, ident[1], "resolved", f"resolved: {fired}", since)
                    )
        return notices


def parse_samples(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition (what every reef ``/metrics`` answers), their
    label values with control characters written out (``\\x1b``).

    Raises:
        InputError: the text is not in that format.
    """
    from prometheus_client.parser import text_string_to_metric_families

    # Label values are any text the server likes, and rules quote them in messages that are
    # printed on the operator's terminal: their control characters are written out there
    # (reef.encoding.terminal_text), so a server cannot retitle the window or hide an alert.
    try:
        return [
            Sample(
                sample.name,
                {k: terminal_text(v) for k, v in sample.labels.items()},
                float(sample.value),
            )
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]
    except (ValueError, TypeError) as exc:
        raise InputError(f"not Prometheus metrics: {exc}") from exc


MAX_METRICS_BYTES = 16 * 1024 * 1024
"""The largest ``/metrics`` answer read (a network of thousands of jobs answers a few MiB)."""

MAX_WEBHOOK_ANSWER_BYTES = 64 * 1024
"""The most of a webhook's answer read (its status is all that counts)."""


def read_samples(
    url: str, *, transport: httpx.BaseTransport | None = None, timeout: float = 5.0
) -> list[Sample]:
    """The samples a ``/metrics`` URL answers (asked through ``transport``, else the network),
    read as a stranger's answer (:func:`reef._fetch.fetch_blocking`): within ``timeout``
    seconds in all and :data:`MAX_METRICS_BYTES`, so a server that trickles or answers a
    gigabyte does not hold ``reef alerts``.

    Raises:
        ServiceError: the URL cannot be read, or not within those bounds.
        InputError: it does not answer Prometheus metrics.
    """
    hint = "check the URL answers GET with Prometheus text (reef servers serve /metrics)"
    try:
        answer = fetch_blocking(
            httpx.Request("GET", url),
            transport=transport,
            timeout=timeout,
            max_bytes=MAX_METRICS_BYTES,
            deadline_s=timeout,
            what="the metrics URL",
            hint=hint,
        )
    except (ServiceError, httpx.InvalidURL) as exc:
        message = exc.message if isinstance(exc, ServiceError) else str(exc)
        raise ServiceError(f"cannot read metrics from {url}: {message}", hint=hint) from exc
    if answer.status >= 300:
        raise ServiceError(
            f"cannot read metrics from {url}: HTTP {answer.status}"
            + _redirected_to(answer.status, answer.headers),
            hint=hint,
        )
    return parse_samples(answer.body.decode("utf-8", "replace"))


def _redirected_to(status: int, headers: Mapping[str, str]) -> str:
    """`` (a redirect to URL, not followed)`` for a 3xx answer, else nothing."""
    if not 300 <= status < 400:
        return ""
    return f" (a redirect to {terminal_text(headers.get('location', '?'))[:200]}, not followed)"


def send_notice(
    notice: Notice,
    rule: AlertRule,
    *,
    transport: httpx.BaseTransport | None = None,
    echo: Callable[[str], None] | None = None,
) -> None:
    """Send ``notice`` where ``rule`` says: a JSON POST to its webhook, or a log line.

    Raises:
        ServiceError: the webhook cannot be reached or answers an error.
    """
    line = f"[{notice.state}] {notice.rule}: {notice.message}"
    if rule.destination == "log":
        _log.warning("%s", line)
        if echo is not None:
            echo(line)
        return
    # Read as a stranger's answer (reef._fetch): a webhook that trickles or answers a gigabyte
    # must not hold `reef alerts`, whose next evaluation waits for this one.
    try:
        answer = fetch_blocking(
            httpx.Request("POST", rule.url, json=notice.to_json()),
            transport=transport,
            timeout=5.0,
            max_bytes=MAX_WEBHOOK_ANSWER_BYTES,
            deadline_s=5.0,
            what=f"the webhook of alert {rule.name!r}",
        )
    except (ServiceError, httpx.InvalidURL) as exc:
        message = exc.message if isinstance(exc, ServiceError) else str(exc)
        raise ServiceError(
            f"cannot send alert {rule.name!r} to {rule.url}: {message}",
            hint="check the webhook's URL in alerts.toml, and that it answers within 5 s",
        ) from exc
    if answer.status >= 300:
        # A redirect is not followed (the notice would go wherever the webhook's server says)
        # nor taken for delivery: the alert would be lost without a word.
        raise ServiceError(
            f"the webhook {rule.url} refused alert {rule.name!r}: HTTP {answer.status}"
            + _redirected_to(answer.status, answer.headers),
            hint="put the webhook's final URL in alerts.toml" if answer.status < 400 else None,
        )
