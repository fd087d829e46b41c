"""A client of a provider's control plane (:class:`ControlPlaneClient`), for the CLI and the dashboard.

Apart from the control plane's app (:mod:`reef.market._cp_app`, FastAPI): a job's owner reads
its provider's ``/job`` and ``/ip`` with ``reef jobs list`` and ``show``, which need none of the
server stack (FastAPI, Starlette, the provider's SQLAlchemy models: about 0.3 s of start-up).
Answers are read through :func:`reef._fetch.fetch_blocking` (bounded in size and time) and the
fields callers read are checked with pydantic, as the app's own models describe them.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel, Field, ValidationError

from reef._fetch import BoundedAnswer, FetchError, fetch_blocking, request_to
from reef.chain import JobId
from reef.errors import ConfigError, InputError, ServiceError
from reef.market._rates import RateCard

if TYPE_CHECKING:
    from reef.attestation import TrustedRoot

__all__ = ["MAX_ANSWER_BYTES", "ControlPlaneClient"]


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


class _TeeRootAnswer(BaseModel):
    # A root certificate is well under 4 KiB of DER; the bound keeps a hostile answer small.
    certificate: str = Field(max_length=16_384)


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

    def _get(self, path: str, params: dict[str, str] | None = None) -> BoundedAnswer:
        """The answer to ``GET path``, read within the size and time limits (the
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
        return answer

    def _json(self, reply: BoundedAnswer) -> dict[str, Any]:
        try:
            answer = reply.json(what=f"the answer of the control plane at {self.url}")
        except ServiceError as exc:
            raise ServiceError(f"{exc.message} (HTTP {reply.status})") from exc
        if not isinstance(answer, dict):
            raise ServiceError(f"the control plane at {self.url} answered an unexpected shape")
        return answer

    def _checked(self, answer: dict[str, Any], model: type[BaseModel], path: str) -> dict[str, Any]:
        """``answer`` unchanged, once the fields callers read have the types they expect."""
        try:
            model.model_validate(answer)
        except ValidationError as exc:
            # Imported here: the module loads Starlette, which `reef jobs` needs nowhere else.
            from reef._api_models import validation_reasons

            where = validation_reasons(exc, limit=3)
            raise ServiceError(
                f"the control plane at {self.url} answered {path} with unexpected values ({where})"[
                    :400
                ]
            ) from exc
        return answer

    def spec(self) -> RateCard:
        """The provider's offer (``GET /spec`` and ``/bandwidth``)."""
        spec = self._json(self._get("/spec"))
        bandwidth = self._json(self._get("/bandwidth"))
        try:
            return RateCard.parse(spec.get("min_rates", []), bandwidth.get("rates", []))
        except ConfigError as exc:
            raise ServiceError(
                f"the control plane at {self.url} sent an invalid spec: {exc}"
            ) from exc

    def _lookup(self, path: str, job_id: JobId, *, absent: int) -> dict[str, Any] | None:
        """``GET path?id=job_id``; ``None`` when the control plane answers ``absent``."""
        reply = self._get(path, {"id": job_id})
        if reply.status == absent:
            return None
        if reply.status != 200:
            text = reply.body[:200].decode("utf-8", "replace")
            raise ServiceError(f"GET {path} answered HTTP {reply.status}: {text}")
        return self._json(reply)

    def job(self, job_id: JobId) -> dict[str, Any] | None:
        """What the provider decided for a job (``GET /job``), or ``None`` if it does not know it."""
        answer = self._lookup("/job", job_id, absent=404)
        return None if answer is None else self._checked(answer, _JobAnswer, "/job")

    def tee_root(self, provider: str) -> TrustedRoot | None:
        """The root ``provider``'s enclaves chain to, as its control plane serves it
        (``GET /tee-root``), or ``None`` when it serves none (404: a real TEE, or an Oyster or
        older reef control plane).

        This is the provider's word (:meth:`reef.attestation.TrustedRoot.served`): only its form
        is checked, a self-signed EC CA certificate.

        Raises:
            ServiceError: the control plane cannot be reached, or answers anything but 200 with
                a root certificate, or 404.
        """
        from reef.attestation import TrustedRoot

        reply = self._get("/tee-root")
        if reply.status == 404:
            return None
        if reply.status != 200:
            text = reply.body[:200].decode("utf-8", "replace")
            raise ServiceError(f"GET /tee-root answered HTTP {reply.status}: {text}")
        answer = self._checked(self._json(reply), _TeeRootAnswer, "/tee-root")
        try:
            der = base64.b64decode(answer["certificate"], validate=True)
            return TrustedRoot.served(der, provider=provider)
        except (binascii.Error, InputError) as exc:
            message = exc.message if isinstance(exc, InputError) else f"not base64: {exc}"
            raise ServiceError(
                f"the control plane at {self.url} served a TEE root that is no root "
                f"certificate: {message}"[:400],
                hint="do not deploy to this provider: it does not say which root its enclaves "
                "chain to (ask its operator)",
            ) from exc

    def ip(self, job_id: JobId) -> dict[str, Any] | None:
        """The running enclave's address and endpoints (``GET /ip``), or ``None`` if none runs."""
        answer = self._lookup("/ip", job_id, absent=400)
        return None if answer is None else self._checked(answer, _IpAnswer, "/ip")
