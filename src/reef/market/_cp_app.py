"""The control plane's HTTP API: Oyster's ``/spec``, ``/bandwidth`` and ``/ip``, plus job status.

Oyster's endpoints answer exactly its shapes (reference §4.3), so Oyster's CLI can read a reef
provider: ``/spec`` → ``{"allowed_regions", "min_rates"}`` with U256 values as ``0x`` hex,
``/bandwidth`` → ``{"rates"}``, ``/ip?id=<job id>[&region=]`` → ``{"ip"}`` or 400.

reef adds fields a local network needs and Oyster's clients ignore: local enclaves share one host
address, so ``/ip`` also carries the enclave's ``endpoints`` (attestation URL, host port of each
enclave port, log stream). ``/job?id=`` reports what the control plane decided for a job and why
(``reef deploy`` prints it when a job is refused), ``/jobs`` lists every job that has not ended
and the last 100 that have (any account may open refused jobs for gas alone). A ``/job`` answer
holds the job's bookkeeping (``phase``, ``reason``, rate, balance, ``stop_at``, metadata), its
``enclave`` (``id``, ``state``, ``endpoints``) or ``null``, ``last_error`` (the last failure to
launch it, cleared by a success), ``restarts`` (how often its enclave died and was relaunched)
and ``last_restart`` (why, the last time); ``reef jobs show`` prints them.

The app is FastAPI, so ``/openapi.json`` and ``/docs`` describe every endpoint with typed models;
the answers are built as before (the models document them and schemathesis checks they match),
and errors are JSON ``{"error": reason}``.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import httpx
from fastapi import FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import JSONResponse, Response

from reef._api import api_app, json_error
from reef._api_models import add_health_route, error_answers
from reef._fetch import FetchError, fetch_blocking, request_to
from reef.chain import JobId, parse_job_id
from reef.encoding import loads_bounded
from reef.errors import ConfigError, InputError, ServiceError
from reef.market._control_plane import RunningEnclave
from reef.market._job_state import JobPolicy
from reef.market._rates import RateCard

__all__ = ["ControlPlaneClient", "JobView", "control_plane_app"]

_JOB_ID = re.compile(r"^0x[0-9a-fA-F]{64}$")
_BAD_JOB_ID = "give the job id as ?id=0x followed by 64 hex digits"


class JobView(Protocol):
    """What the HTTP API reads (a :class:`~reef.market.ControlPlane`)."""

    @property
    def policy(self) -> JobPolicy: ...

    @property
    def host(self) -> str: ...

    def enclave(self, job_id: JobId) -> RunningEnclave | None: ...

    def job_status(self, job_id: JobId) -> dict[str, Any] | None: ...

    def jobs(self) -> list[dict[str, Any]]: ...


_U256 = r"^0x[0-9a-f]+$"


class _Open(BaseModel):
    # reef may add fields; Oyster's clients ignore what they do not know.
    model_config = ConfigDict(extra="allow")


class RateCardModel(_Open):
    instance: str
    min_rate: str = Field(pattern=_U256, description="rate units per second, as 0x hex")
    cpu: int
    memory: int = Field(description="MiB")
    arch: str


class RegionRatesModel(_Open):
    region: str
    rate_cards: list[RateCardModel]


class SpecModel(_Open):
    """``GET /spec``, as Oyster's control plane."""

    allowed_regions: list[str]
    min_rates: list[RegionRatesModel]


class BandwidthRateModel(_Open):
    region: str
    region_code: str
    rate: str = Field(pattern=_U256, description="rate units per GB, as 0x hex")


class BandwidthModel(_Open):
    """``GET /bandwidth``, as Oyster's control plane."""

    rates: list[BandwidthRateModel]


class IpModel(_Open):
    """``GET /ip``: Oyster's ``ip``, and reef's enclave fields."""

    ip: str
    job_id: str
    enclave_id: str
    state: str
    endpoints: dict[str, Any]


class JobModel(_Open):
    """``GET /job``: what the control plane decided for a job and why."""

    job_id: str
    phase: str
    reason: str | None = None
    enclave: dict[str, Any] | None = None
    last_error: str = ""
    restarts: int = 0
    last_restart: str = ""


class JobsModel(BaseModel):
    jobs: list[JobModel]


# The pattern is documented, not enforced by FastAPI: the handlers answer a bad id themselves.
_ID = Query(
    None,
    description="the job id: 0x and 64 hex digits",
    json_schema_extra={"pattern": "^0x[0-9a-fA-F]{64}$"},
)


def control_plane_app(view: JobView) -> FastAPI:
    """The ASGI app a provider serves (port 8080 by default)."""

    def job_id_of(value: str | None) -> JobId | None:
        # Only the full id, as Oyster's clients send it (parse_job_id would also take a number).
        value = value or ""
        return parse_job_id(value) if _JOB_ID.match(value) else None

    async def spec() -> Response:
        return JSONResponse(view.policy.rates.spec_json())

    async def bandwidth() -> Response:
        return JSONResponse(view.policy.rates.bandwidth_json())

    async def ip(
        id: str | None = _ID,
        region: str | None = Query(None, description="a region this provider serves"),
    ) -> Response:
        job_id = job_id_of(id)
        if job_id is None:
            return json_error(400, _BAD_JOB_ID)
        if region and region not in view.policy.rates.allowed_regions:
            return json_error(400, f"this provider does not serve region {region!r}")
        enclave = view.enclave(job_id)
        status = view.job_status(job_id)
        ended = status is not None and status["phase"] == "done"
        if enclave is None or enclave.state != "running" or ended:
            # An ended job's enclave may take a moment to stop; it is not served any more.
            why = (
                "not a job of this provider"
                if status is None
                else status["reason"] or "its enclave is not running yet"
            )
            return json_error(400, f"no running enclave for job {job_id}: {why}")
        return JSONResponse(
            {
                "ip": view.host,
                "job_id": job_id,
                "enclave_id": enclave.enclave_id,
                "state": enclave.state,
                "endpoints": dict(enclave.endpoints),
            }
        )

    async def job(id: str | None = _ID) -> Response:
        job_id = job_id_of(id)
        if job_id is None:
            return json_error(400, _BAD_JOB_ID)
        status = view.job_status(job_id)
        if status is None:
            return json_error(404, f"job {job_id} is not a job of this provider")
        return JSONResponse(status)

    async def jobs() -> Response:
        return JSONResponse({"jobs": view.jobs()})

    app = api_app(
        "reef control plane",
        description="A provider's control plane: Oyster's /spec, /bandwidth and /ip, and job "
        "status.",
    )
    bad_id = "a job id that is not 0x and 64 hex digits"
    app.add_api_route("/spec", spec, methods=["GET"], response_model=SpecModel)
    app.add_api_route("/bandwidth", bandwidth, methods=["GET"], response_model=BandwidthModel)
    app.add_api_route(
        "/ip",
        ip,
        methods=["GET"],
        response_model=IpModel,
        responses=error_answers(
            {400: f"{bad_id}, a region not served, or no running enclave for the job"}
        ),
    )
    app.add_api_route(
        "/job",
        job,
        methods=["GET"],
        response_model=JobModel,
        responses=error_answers({400: bad_id, 404: "not a job of this provider"}),
    )
    app.add_api_route("/jobs", jobs, methods=["GET"], response_model=JobsModel)
    add_health_route(app)
    return app


MAX_ANSWER_BYTES = 1 << 20
"""The most a control plane's answer may hold: a provider's ``/jobs`` of thousands of jobs fits."""


class _EnclaveAnswer(BaseModel):
    id: str = ""
    state: str = ""
    endpoints: dict[str, Any] = Field(default_factory=dict)


class _JobAnswer(BaseModel):
    """What callers read of a ``/job`` answer (other fields are passed on unchecked)."""

    phase: str = ""
    reason: str | None = None
    enclave: _EnclaveAnswer | None = None
    last_error: str = ""
    restarts: int = Field(0, ge=0, lt=1 << 63)
    last_restart: str = ""


class _IpAnswer(BaseModel):
    endpoints: dict[str, Any] = Field(default_factory=dict)


class ControlPlaneClient:
    """A client of a provider's control plane (sync; for the CLI and the dashboard).

    Any account may register a provider and name any URL as its control plane, so answers are
    read as a stranger's (by :func:`reef._fetch.fetch_blocking`): at most
    :data:`MAX_ANSWER_BYTES`, within twice ``timeout`` seconds in all, head and body (a server
    that trickles its answer byte by byte is given up on, not waited for), as JSON
    nested no deeper than :data:`reef.encoding.MAX_JSON_DEPTH`, and ``/job`` and
    ``/ip`` answers must have the types their callers read.

    Raises (every method):
        ServiceError: when the control plane cannot be reached or answers unexpectedly.
    """

    def __init__(
        self, url: str, *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._transport = transport

    def _get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, bytes]:
        """The status and body of ``GET path``, read within the size and time limits (the
        deadline covers the whole answer, its head as much as its body)."""
        deadline_s = 2 * self._timeout
        what = "the provider's control plane"
        hint = "is the provider running? (`reef up` runs a local one)"
        try:
            answer = fetch_blocking(
                request_to("GET", f"{self.url}{path}", what=what, hint=hint, params=params),
                transport=self._transport,
                timeout=self._timeout,
                max_bytes=MAX_ANSWER_BYTES,
                deadline_s=deadline_s,
                what=what,
                hint=hint,
            )
        except FetchError as exc:
            if exc.reason != "too_late":
                raise
            raise ServiceError(
                f"the control plane at {self.url} took longer than {deadline_s:g} s to answer "
                f"{path}; given up",
                hint="the provider is overloaded, or is not a reef control plane",
            ) from exc
        return answer.status, answer.body

    def _json(self, status: int, body: bytes) -> dict[str, Any]:
        try:
            answer = loads_bounded(body, what=f"the answer of the control plane at {self.url}")
        except InputError as exc:
            raise ServiceError(f"{exc.message} (HTTP {status})") from exc
        if not isinstance(answer, dict):
            raise ServiceError(f"the control plane at {self.url} answered an unexpected shape")
        return answer

    def _checked(self, answer: dict[str, Any], model: type[BaseModel], path: str) -> dict[str, Any]:
        """``answer`` unchanged, once the fields callers read have the types they expect."""
        try:
            model.model_validate(answer)
        except ValidationError as exc:
            where = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]
            )
            raise ServiceError(
                f"the control plane at {self.url} answered {path} with unexpected values ({where})"[
                    :400
                ]
            ) from exc
        return answer

    def spec(self) -> RateCard:
        """The provider's offer (``GET /spec`` and ``/bandwidth``)."""
        spec = self._json(*self._get("/spec"))
        bandwidth = self._json(*self._get("/bandwidth"))
        try:
            return RateCard.parse(spec.get("min_rates", []), bandwidth.get("rates", []))
        except ConfigError as exc:
            raise ServiceError(
                f"the control plane at {self.url} sent an invalid spec: {exc}"
            ) from exc

    def _lookup(self, path: str, job_id: JobId, *, absent: int) -> dict[str, Any] | None:
        """``GET path?id=job_id``; ``None`` when the control plane answers ``absent``."""
        status, body = self._get(path, {"id": job_id})
        if status == absent:
            return None
        if status != 200:
            text = body[:200].decode("utf-8", "replace")
            raise ServiceError(f"GET {path} answered HTTP {status}: {text}")
        return self._json(status, body)

    def job(self, job_id: JobId) -> dict[str, Any] | None:
        """What the provider decided for a job (``GET /job``), or ``None`` if it does not know it."""
        answer = self._lookup("/job", job_id, absent=404)
        return None if answer is None else self._checked(answer, _JobAnswer, "/job")

    def ip(self, job_id: JobId) -> dict[str, Any] | None:
        """The running enclave's address and endpoints (``GET /ip``), or ``None`` if none runs."""
        answer = self._lookup("/ip", job_id, absent=400)
        return None if answer is None else self._checked(answer, _IpAnswer, "/ip")
