"""The JSON answers every reef FastAPI app shares, as OpenAPI describes them.

A reef API refuses with ``{"error": reason}`` (:func:`reef._api.json_error` builds it) and
answers ``GET /health`` with ``{"ok": true}``. This module holds the pydantic models that document
those answers, :func:`error_answers` to list a route's refusals, and :func:`add_health_route`, so
that the market's control plane and image store (and the serverless and proof-market services)
describe them once, alike. It is separate from :mod:`reef._api` because that module must stay
free of pydantic (it is on every enclave's start-up path); the services that import this one are
FastAPI apps, which load pydantic anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from fastapi import FastAPI

    from reef._api import LightApi

__all__ = ["ErrorModel", "HealthModel", "add_health_route", "error_answers"]


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
