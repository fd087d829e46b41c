"""The JSON answers every reef FastAPI app shares, as OpenAPI describes them.

A reef API refuses with ``{"error": reason}`` (:func:`reef._api.json_error` builds it) and
answers ``GET /health`` with ``{"ok": true}``. This module holds the pydantic models that document
those answers, :func:`error_answers` to list a route's refusals, and :func:`add_health_route`, so
that the market's control plane and image store (and the serverless and proof-market services)
describe them once, alike. It also says what pydantic found wrong in a document
(:func:`validation_reasons`), one way for every service that refuses a request body and every
client that checks an answer. It is separate from :mod:`reef._api` because that module must stay
free of pydantic (it is on every enclave's start-up path); the services that import this one are
FastAPI apps, which load pydantic anyway (a client that checks an answer with pydantic imports
this module only once an answer is wrong, since it loads Starlette too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from reef._api import error_reasons

if TYPE_CHECKING:
    from fastapi import FastAPI

    from reef._api import LightApi

__all__ = ["ErrorModel", "HealthModel", "add_health_route", "error_answers", "validation_reasons"]


class ErrorModel(BaseModel):
    """A refusal: what was wrong."""

    error: str


class HealthModel(BaseModel):
    """``GET /health``: the service is up."""

    ok: bool


def error_answers(described: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """A route's refusals for ``responses=``: each status (to what it means) answers an
    :class:`ErrorModel`."""
    return {
        status: {"model": ErrorModel, "description": description}
        for status, description in described.items()
    }


def add_health_route(app: FastAPI | LightApi) -> None:
    """Answer ``GET /health`` with ``{"ok": true}``: a liveness check for whoever runs the service."""

    async def health(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    app.add_api_route("/health", health, methods=["GET"], response_model=HealthModel)


def validation_reasons(exc: ValidationError, *, limit: int | None = None) -> str:
    """What pydantic found wrong, as ``field.path: message`` per problem joined with ``"; "``
    (``body`` names the document itself); at most ``limit`` problems when given. The input is
    never quoted (:func:`reef._api.error_reasons`, which FastAPI's refusals go through too).

    It lives here, beside the models of reef's answers, because this module already loads
    pydantic while :mod:`reef._api` must not: services refusing a body and clients checking an
    answer call it.
    """
    return error_reasons(exc.errors(include_url=False, include_input=False), limit=limit)
