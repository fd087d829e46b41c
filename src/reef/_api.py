"""reef's HTTP APIs: FastAPI apps whose errors are JSON, and light ones for the enclaves.

Every reef HTTP API publishes ``/openapi.json`` and ``/docs``. Most are FastAPI apps
(:func:`api_app`): FastAPI builds the schema from the routes and checks parameters. Inside
every enclave, though, the trusted base serves a few small APIs (attestation, the KMS derive
server) whose handlers take the bare request, and importing FastAPI and pydantic there costs
each enclave a fifth of its start-up time and several MiB that it holds for its whole life.
:func:`light_api` serves those on Starlette alone and builds the FastAPI description of the
very same routes only when someone asks for ``/openapi.json`` or ``/docs``: the schema still
comes from FastAPI, so both kinds of API are described (and fuzzed) alike.

A light API can also answer a hot route with a bare ASGI function (:meth:`LightApi.add_asgi_route`),
matched by its exact method and path before Starlette's router, middleware and ``Request``: the
attestation verifier answers each document in about a millisecond of CPU, and FastAPI's request
handling added a tenth to it.

Both kinds serve ``/docs`` from here (:func:`docs_page`), and Swagger UI's script, style and icon
under :data:`DOCS_ASSETS` from the machine itself: FastAPI's own page loads them from a CDN,
which a host without internet (this one, many enclaves' hosts) never reaches, and which the
dashboard's Content-Security-Policy (``default-src 'self'``) refuses even online. The files come
from the ``fastapi-offline`` package (MIT; it needs nothing but FastAPI, and ships Swagger UI 5 as
released): reef keeps no copy of its own to update. ``swagger-ui-bundle``, the usual choice, ships
Swagger UI 4, which refuses the OpenAPI 3.1 documents FastAPI writes. Only the package's files are
used (found without importing it), and only when someone asks for them, never on an enclave's
start-up path. The page's one inline script is allowed by its hash in the page's own
Content-Security-Policy, so the dashboard's policy stays as strict as it is.

Four small pieces every API shares live here too: :func:`json_error`, the JSON
``{"error": reason}`` answer of reef's FastAPI apps (and of :func:`api_app`'s own errors),
:func:`error_reasons`, what such an answer says of a document that failed validation,
:func:`text_answer`, how OpenAPI describes the plain-text answers of the light APIs (their errors
are text), and :func:`query_param`, how it describes a query parameter that a handler parses
itself. The pydantic models that describe the JSON answers are in :mod:`reef._api_models`,
which this module must not import: it is on every enclave's start-up path.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import inspect
import itertools
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from reef.errors import MisuseError

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "DOCS_ASSETS",
    "LightApi",
    "api_app",
    "docs_page",
    "error_reasons",
    "json_error",
    "light_api",
    "path_param",
    "query_param",
    "text_answer",
]

Endpoint = Callable[[Request], Awaitable[Response]]

DOCS_ASSETS = "/docs/assets"
"""Where every reef API serves Swagger UI's files for its ``/docs`` page (see the module
docstring)."""

_DOCS_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}
"""The only files served under :data:`DOCS_ASSETS`, with their content types (the package has
more: source maps, other bundles, an index page, none of which the page needs)."""


def api_app(title: str, *, description: str = "", version: str = "1") -> FastAPI:
    """A FastAPI app whose errors are JSON ``{"error": reason}`` like the floor's own refusals.

    Every reef HTTP API is one of these (or a :func:`light_api`), so ``/openapi.json`` and
    ``/docs`` describe it. FastAPI's own errors (404, 405, a parameter it could not parse) say
    ``{"detail": ...}`` and answer 422 for bad input; here they say ``{"error": ...}``, and bad
    input is 400 as everywhere in reef. Routes that answer errors themselves keep their bodies.
    """
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError

    # FastAPI's own /docs (and its OAuth2 redirect page, which no reef API needs) would load
    # Swagger UI from a CDN: reef's page replaces it (see the module docstring). Its /redoc,
    # a second page of the same schema, loads ReDoc from a CDN too: /docs is the one page.
    app = FastAPI(
        title=title, description=description, version=version, docs_url=None, redoc_url=None
    )
    _add_docs(app.router.routes, title)

    async def invalid(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return json_error(400, error_reasons(exc.errors()) or "invalid request")

    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    return app


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return json_error(exc.status_code, str(exc.detail), headers=exc.headers)


def json_error(
    status: int, reason: str, *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """reef's JSON error answer: ``{"error": reason}`` with ``status`` (and ``headers``)."""
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


def error_reasons(errors: Iterable[Mapping[str, Any]], *, limit: int | None = None) -> str:
    """What a document's problems are, as pydantic and FastAPI list them (``loc`` and ``msg``
    each): ``field.path: message`` per problem joined with ``"; "`` (``body`` names the document
    itself), at most ``limit`` of them when given. Any ``input`` a problem carries is left out:
    the reasons go back to whoever sent the document, or into a log, and the input may be large,
    a secret, or text meant for a terminal.

    It is here, free of pydantic, so that :func:`api_app`'s refusals need not load
    :mod:`reef._api_models` (whose :func:`~reef._api_models.validation_reasons` is the same for a
    pydantic ``ValidationError``): this module is in every enclave's measured runtime.
    """
    reasons = [
        f"{'.'.join(str(part) for part in error.get('loc', ())) or 'body'}: "
        f"{error.get('msg', 'invalid')}"
        for error in itertools.islice(errors, limit)
    ]
    return "; ".join(reasons)


def text_answer(description: str) -> dict[str, Any]:
    """An OpenAPI response (for ``responses=``) whose body is plain text: what a light API's
    errors are, e.g. ``{400: text_answer("bad request: ...")}``."""
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def query_param(name: str, description: str, pattern: str | None = None) -> dict[str, Any]:
    """An optional string query parameter as OpenAPI describes it (for ``openapi_extra``'s
    ``parameters``), matching ``pattern`` if given: for handlers that read the query themselves,
    so FastAPI cannot describe it from their signature."""
    return _string_param(name, "query", description, pattern)


def path_param(name: str, description: str, pattern: str | None = None) -> dict[str, Any]:
    """A string path parameter (always required) as OpenAPI describes it, matching ``pattern``
    if given: for routes whose handlers read their path themselves."""
    return _string_param(name, "path", description, pattern)


def _string_param(name: str, where: str, description: str, pattern: str | None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern is not None:
        schema["pattern"] = pattern
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


class LightApi(Starlette):
    """A Starlette app whose routes FastAPI describes on demand (see the module docstring).

    Routes are added as on FastAPI (:meth:`add_api_route`, same keyword arguments), with one
    restriction: an endpoint takes the request and nothing else. One more keyword, ``body``,
    describes the request body with a model (or a union of models) that the endpoint does not
    have parsed for it: it reads the body itself (bounded, with its own errors), and the schema
    still says what it takes.
    """

    def __init__(self, title: str, *, description: str = "", version: str = "1") -> None:
        super().__init__(exception_handlers={HTTPException: _http_error})
        self._meta = {"title": title, "description": description, "version": version}
        self._described: list[tuple[str, Endpoint, dict[str, Any]]] = []
        self._schema: dict[str, Any] | None = None
        self._direct: dict[tuple[str, str], tuple[Route, ASGIApp]] = {}
        self.router.routes.append(Route("/openapi.json", self._openapi, include_in_schema=False))
        _add_docs(self.router.routes, title)

    def add_api_route(self, path: str, endpoint: Endpoint, **options: Any) -> None:
        """Serve ``endpoint`` at ``path`` (``methods=[...]``); the other options describe it.

        Raises:
            MisuseError: the endpoint takes more than the request (FastAPI would inject it).
        """
        if len(inspect.signature(endpoint).parameters) != 1:
            raise MisuseError(
                f"{getattr(endpoint, '__name__', endpoint)!r} takes more than the request",
                hint="a light API's endpoints read what they need from the request",
            )
        methods = options.get("methods") or ["GET"]
        self.router.routes.append(Route(path, endpoint, methods=methods, name=options.get("name")))
        self._described.append((path, endpoint, options))
        self._schema = None

    def add_asgi_route(self, path: str, app: ASGIApp, **options: Any) -> None:
        """Answer ``methods`` (``methods=[...]``) at exactly ``path`` with the bare ASGI ``app``;
        the other options describe it, as for :meth:`add_api_route`.

        The route is matched before everything else (no router, no middleware, no exception
        handlers: an exception reaches the server, which answers 500), for the hot endpoints
        whose per-request cost matters. Its other methods, and requests under a ``root_path``
        (a mounted app), go through the router to the same ``app``.
        """
        methods = options.get("methods") or ["GET"]
        name = options.setdefault("name", getattr(app, "__name__", None))
        route = Route(path, _Asgi(app), methods=methods, name=name)
        self.router.routes.append(route)
        for method in methods:
            self._direct[(method.upper(), path)] = (route, app)

        async def described(request: Request) -> Response:  # pragma: no cover - never served
            raise HTTPException(500)

        self._described.append((path, described, options))
        self._schema = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._direct and scope["type"] == "http" and not scope.get("root_path"):
            found = self._direct.get((scope["method"], scope["path"]))
            if found is not None:
                route, app = found
                scope["app"] = self
                scope["route"] = route  # what the serving floor's metrics label requests by
                await app(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document FastAPI gives for these routes (built once, on first use)."""
        if self._schema is None:
            described = api_app(**self._meta)
            bodied: set[tuple[str, str]] = set()
            for path, endpoint, options in self._described:
                rest = dict(options)
                body = rest.pop("body", None)
                if body is not None:
                    endpoint = _with_body(endpoint, body)
                    bodied.update((path, method.lower()) for method in rest.get("methods", ()))
                described.add_api_route(path, endpoint, **rest)
            self._schema = _without_validation_errors(described.openapi(), bodied)
        return self._schema

    async def _openapi(self, _request: Request) -> Response:
        return JSONResponse(self.openapi())


def docs_page(title: str, *, root_path: str = "") -> HTMLResponse:
    """The ``/docs`` page of the API titled ``title`` served under ``root_path``: Swagger UI
    from :data:`DOCS_ASSETS` of the same API, browsing its ``/openapi.json``.

    The page carries its own Content-Security-Policy: the same origin only, and its one inline
    script by its SHA-256 (an app's middleware that ``setdefault``s a policy keeps this one).
    """
    from fastapi.openapi.docs import get_swagger_ui_html

    html = get_swagger_ui_html(
        openapi_url=f"{root_path}/openapi.json",
        title=title,
        swagger_js_url=f"{root_path}{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root_path}{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root_path}{DOCS_ASSETS}/favicon.png",
        oauth2_redirect_url=None,
        # Swagger UI would otherwise send the schema's URL to validator.swagger.io for a badge.
        swagger_ui_parameters={"validatorUrl": None},
    )
    body = bytes(html.body)
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in re.findall(rb"<script>(.*?)</script>", body, re.DOTALL)
    )
    policy = (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
    return HTMLResponse(body, headers={"content-security-policy": policy})


def _add_docs(routes: list[Any], title: str) -> None:
    """Add ``/docs`` and its assets (under :data:`DOCS_ASSETS`) to ``routes``."""

    async def docs(request: Request) -> Response:
        return docs_page(title, root_path=request.scope.get("root_path", ""))

    routes.append(Route("/docs", docs, include_in_schema=False))
    routes.append(Route(DOCS_ASSETS + "/{name}", _docs_asset, include_in_schema=False))


async def _docs_asset(request: Request) -> Response:
    """One of :data:`_DOCS_FILES` from the ``fastapi-offline`` package, else 404."""
    name = request.path_params["name"]
    media_type = _DOCS_FILES.get(name)
    if media_type is None:
        raise HTTPException(404, f"no docs asset {name[:100]!r}")
    # Found, not imported: the package's __init__ imports FastAPI, which a light API avoids.
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise HTTPException(
            404, "Swagger UI's files are not installed (pip install fastapi-offline)"
        )
    folder = Path(spec.submodule_search_locations[0]) / "static"
    return FileResponse(folder / name, media_type=media_type)


def _with_body(endpoint: Endpoint, body: Any) -> Callable[..., Awaitable[Response]]:
    """A stand-in for ``endpoint`` that FastAPI describes as taking a ``body`` JSON body."""
    from fastapi import Body

    async def described(request: Request, payload: Any) -> Response:  # pragma: no cover
        raise HTTPException(500)  # never served: only described

    described.__name__ = getattr(endpoint, "__name__", "endpoint")
    described.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
            ),
            inspect.Parameter(
                "payload",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=Annotated[body, Body()],
            ),
        ]
    )
    return described


def _without_validation_errors(
    schema: dict[str, Any], bodied: set[tuple[str, str]]
) -> dict[str, Any]:
    """FastAPI documents a 422 for every route with a body; these routes parse their bodies
    themselves and never answer it, so the 422 (and its then unused models) are taken out."""
    for path, method in bodied:
        schema["paths"][path][method].get("responses", {}).pop("422", None)
    text = json.dumps(schema["paths"])
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{name}" not in text and name in components:
            if name == "ValidationError" and "HTTPValidationError" in components:
                continue
            del components[name]
    return schema


class _Asgi:
    """A bare ASGI function as a Starlette route's app (a plain function would be taken for a
    ``request -> response`` endpoint)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def light_api(title: str, *, description: str = "", version: str = "1") -> LightApi:
    """A :class:`LightApi`: for the small APIs every enclave serves."""
    return LightApi(title, description=description, version=version)
