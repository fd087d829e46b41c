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

``/tee-root`` serves the root certificate the provider's enclaves chain to when it runs the dev
TEE (the root of its own ``$REEF_HOME/dev-tee``), so that a tenant on another machine can verify
them (``reef deploy --root provider``); 404 when the provider serves none (a real TEE's root is
pinned by its verifiers, AWS's for Nitro). It is public data, and only the provider's word: the
provider holds that root's key, so a root it serves proves nothing against it.

The app is FastAPI, so ``/openapi.json`` and ``/docs`` describe every endpoint with typed models;
the answers are built as before (the models document them and schemathesis checks they match),
and errors are JSON ``{"error": reason}``. Its client, :class:`reef.market.ControlPlaneClient`,
lives in :mod:`reef.market._cp_client`, which a job's owner imports without the server stack.
"""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse, Response

from reef._api import api_app, json_error
from reef._api_models import add_health_route, error_answers
from reef.chain import JobId, parse_job_id

if TYPE_CHECKING:
    from reef.attestation import TrustedRoot

    # Only for JobView's types: the enclave runner's module loads SQLAlchemy.
    from reef.market._control_plane import RunningEnclave
    from reef.market._job_state import JobPolicy

__all__ = ["JobView", "control_plane_app"]

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


class TeeRootModel(_Open):
    """``GET /tee-root``: the root certificate this provider's enclaves chain to."""

    certificate: str = Field(description="the DER certificate, base64")
    name: str = Field(description="what the provider calls it: dev (its dev TEE), aws, mock")
    insecure: bool = Field(
        description="true for a dev or mock root: its key is a file, held by the provider"
    )


# The pattern is documented, not enforced by FastAPI: the handlers answer a bad id themselves.
_ID = Query(
    None,
    description="the job id: 0x and 64 hex digits",
    json_schema_extra={"pattern": "^0x[0-9a-fA-F]{64}$"},
)


def control_plane_app(view: JobView, *, tee_root: TrustedRoot | None = None) -> FastAPI:
    """The ASGI app a provider serves (port 8080 by default).

    Args:
        view: the control plane's jobs.
        tee_root: the root its enclaves' attestations chain to, served at ``/tee-root`` (the
            dev TEE's, :meth:`reef.attestation.TrustedRoot.dev` of the provider's home);
            ``None``: ``/tee-root`` answers 404.
    """

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

    async def tee_root_answer() -> Response:
        if tee_root is None:
            return json_error(
                404,
                "this provider serves no TEE root: verify its enclaves with the root of their "
                "TEE (aws for Nitro)",
            )
        return JSONResponse(
            {
                "certificate": base64.b64encode(tee_root.certificate).decode(),
                "name": tee_root.name,
                "insecure": tee_root.insecure,
            }
        )

    app = api_app(
        "reef control plane",
        description="A provider's control plane: Oyster's /spec, /bandwidth and /ip, job "
        "status, and the root its dev TEE's enclaves chain to.",
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
    app.add_api_route(
        "/tee-root",
        tee_root_answer,
        methods=["GET"],
        response_model=TeeRootModel,
        responses=error_answers({404: "this provider serves no TEE root (not a dev TEE)"}),
    )
    add_health_route(app)
    return app
