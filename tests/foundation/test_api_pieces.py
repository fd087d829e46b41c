"""The small pieces every reef HTTP API shares: the JSON error answer, the plain-text answer and
the query parameter as OpenAPI describes them, the shared error and health models, and the health
route, on both kinds of app (FastAPI and the light, pydantic-free one)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from imports_support import loaded_after
from reef._api import LightApi, api_app, json_error, light_api, query_param, text_answer
from reef._api_models import ErrorModel, add_health_route, error_answers, validation_reasons


async def _get(app: object, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        return await client.get(path)


def test_json_error_is_the_error_object_with_its_status_and_headers() -> None:
    answer = json_error(409, "already configured", headers={"retry-after": "3"})
    assert answer.status_code == 409
    assert answer.body == b'{"error":"already configured"}'
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["retry-after"] == "3"


@pytest.mark.parametrize("make", [api_app, light_api])
async def test_the_health_route_answers_ok_and_is_described(
    make: Callable[[str], FastAPI | LightApi],
) -> None:
    app = make("health check")
    add_health_route(app)
    answer = await _get(app, "/health")
    assert (answer.status_code, answer.json()) == (200, {"ok": True})
    schema = app.openapi()
    ok = schema["paths"]["/health"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/HealthModel"
    }
    assert schema["components"]["schemas"]["HealthModel"]["required"] == ["ok"]


async def test_error_answers_and_text_answers_describe_what_the_routes_send() -> None:
    app = api_app("refusals")

    async def refuse(request: Request) -> Response:
        if request.query_params.get("as") == "text":
            return PlainTextResponse("bad request: no\n", status_code=400)
        return json_error(404, "no such thing")

    app.add_api_route(
        "/thing",
        refuse,
        methods=["GET"],
        responses={**error_answers({404: "no such thing here"}), 400: text_answer("bad request")},
    )
    schema = app.openapi()
    responses = schema["paths"]["/thing"]["get"]["responses"]
    assert responses["404"] == {
        "description": "no such thing here",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorModel"}}},
    }
    assert responses["400"] == {
        "description": "bad request",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    answer = await _get(app, "/thing")
    assert answer.status_code == 404
    assert ErrorModel.model_validate(answer.json()).error == "no such thing"
    assert (await _get(app, "/thing?as=text")).text == "bad request: no\n"


@pytest.mark.parametrize("make", [api_app, light_api])
async def test_a_query_param_a_handler_reads_itself_is_described_as_given(
    make: Callable[[str], FastAPI | LightApi],
) -> None:
    app = make("counting")

    async def count(request: Request) -> Response:
        return PlainTextResponse(request.query_params.get("n", "0"))

    app.add_api_route(
        "/count",
        count,
        methods=["GET"],
        openapi_extra={
            "parameters": [query_param("n", "how many", "^[0-9]+$"), query_param("tag", "any")]
        },
    )
    assert app.openapi()["paths"]["/count"]["get"]["parameters"] == [
        {
            "name": "n",
            "in": "query",
            "required": False,
            "description": "how many",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        },
        {
            "name": "tag",
            "in": "query",
            "required": False,
            "description": "any",
            "schema": {"type": "string"},
        },
    ]
    assert (await _get(app, "/count?n=7")).text == "7"


async def test_api_apps_own_errors_use_the_same_json_error() -> None:
    app = api_app("nothing here")
    answer = await _get(app, "/missing")
    assert (answer.status_code, answer.json()) == (404, {"error": "Not Found"})


def test_the_light_api_module_stays_free_of_pydantic_and_fastapi() -> None:
    # reef._api is on every enclave's start-up path: the models live in reef._api_models.
    assert {"pydantic", "fastapi"}.isdisjoint(loaded_after("import reef._api"))


class _Limits(BaseModel):
    memory_mib: int = Field(gt=0)


class _Config(BaseModel):
    owner: str = Field(pattern=r"^0x[0-9a-f]{40}$")
    limits: _Limits


def _refusal(document: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        _Config.model_validate(document)
    return caught.value


def test_validation_reasons_name_each_field_by_its_path_and_never_quote_the_input() -> None:
    secret = "0xSECRET-" + "s" * 50
    refusal = _refusal({"owner": secret, "limits": {"memory_mib": -7}})
    reasons = validation_reasons(refusal)
    assert reasons == (
        "owner: String should match pattern '^0x[0-9a-f]{40}$'; "
        "limits.memory_mib: Input should be greater than 0"
    )
    assert "SECRET" not in reasons
    assert "-7" not in reasons
    # A limit keeps the first problems, in pydantic's order.
    assert validation_reasons(refusal, limit=1) == reasons.split("; ")[0]
    # A problem with the document itself (not an object) is the body's.
    assert validation_reasons(_refusal(["not", "an", "object"])).startswith("body: ")


async def test_an_api_apps_refusal_of_a_body_names_the_fields_the_same_way() -> None:
    app = api_app("config")

    @app.post("/config")
    async def configure(config: _Config) -> dict[str, str]:
        return {"owner": config.owner}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        answer = await client.post("/config", json={"owner": "0xSECRET", "limits": {}})
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "body.owner: String should match pattern '^0x[0-9a-f]{40}$'; "
        "body.limits.memory_mib: Field required"
    }
