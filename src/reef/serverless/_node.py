"""An executor node: the enclave key, the runtime, the chain watcher and its two HTTP faces.

:class:`ExecutorNode` is what runs inside an executor enclave (``reef executor run``). It holds
the enclave key and a :class:`FunctionRuntime`, and serves two HTTP APIs:

- the **control** app (operator port), Oyster's bootstrap in reef's terms (reference §2.3, §9.1):
  ``GET /details``; ``POST /config`` ``{rpc_url, jobs_contract, code_contract, owner}`` once,
  which starts the chain watcher (:class:`ExecutorService`); ``GET`` or ``POST /registration``
  answers the enclave key's EIP-712 ``Register`` signature for the owner (and its job capacity);
- the **gateway** app (public port), the web2 path (reference §5): a plain HTTP request to
  ``/fn/<codehash>[/path]`` (or to any other path of a host whose first label is the codehash in
  base32, Oyster's form) runs the function on the request (method, ``/path`` and query, headers, body) and
  answers its full response (status, headers, body), with Oyster's
  ``X-Oyster-Timestamp`` / ``X-Oyster-Signature`` headers and reef's ``X-Reef-Signature``, which
  signs the same digest bound to the chain id and the Jobs contract (Oyster's signature names no
  deployment, so it replays on any; reef's does not).

Both are light APIs (reef's ``light_api``: Starlette, no FastAPI import in the enclave) whose
typed models (pydantic, which web3 loads anyway) FastAPI describes at ``/openapi.json`` and
``/docs`` on demand. The gateway's catch-all routes are described as one operation per method,
with the path parameters, any body, and the errors the gateway itself answers.

The response digests are pure functions (:func:`oyster_response_digest`,
:func:`reef_gateway_digest`), so clients verify a response without this module's servers.

One module (about 780 lines): the two apps share the node's key, runtime and configuration
state, and their typed models are what ``/openapi.json`` says they answer, kept beside the
handlers that answer them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, ValidationError, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from reef._api import LightApi, json_error, light_api, path_param
from reef._api_models import ErrorModel, error_answers, validation_reasons
from reef.crypto import Secp256k1PrivateKey, keccak256
from reef.encoding import parse_hex, read_key_file
from reef.errors import InputError, ReefError, ServerlessError
from reef.serverless._cache import canonical_codehash
from reef.serverless._contracts import ENV_JAVASCRIPT
from reef.serverless._executor import ExecutorService, ExecutorSettings
from reef.serverless._http import HttpRequest
from reef.serverless._result import ErrorCode, Limits
from reef.serverless._runtime import FunctionRuntime
from reef.serverless._signing import JobsDomain, sign_registration

__all__ = [
    "GATEWAY_TIMEOUT_MS",
    "ExecutorNode",
    "load_key",
    "oyster_response_digest",
    "reef_gateway_digest",
]

GATEWAY_TIMEOUT_MS = 5_000
"""The deadline of a web2 call (Oyster's fixed 5 s)."""
_MAX_BODY = 1 << 20
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# Oyster's web2 executor's statuses for verdicts other than an answer.
_STATUS = {
    ErrorCode.CODE_NOT_FOUND: 400,
    ErrorCode.CODE_NOT_DECODABLE: 400,
    ErrorCode.SYNTAX_ERROR: 400,
    ErrorCode.TIMEOUT: 408,
    ErrorCode.OUTPUT_TOO_LARGE: 500,
    ErrorCode.MEMORY_LIMIT: 500,
}


_PATH_FORM_SANDBOX = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"
"""The policy of a page served on the shared origin (``/fn/<codehash>``): all it may do but be
of that origin."""

Endpoint = Callable[[Request], Awaitable[Response]]

_ADDRESS = r"^0x[0-9a-fA-F]{40}$"


class ExecutorConfig(BaseModel):
    """``POST /config``: the deployment to watch, and the operator who registers the executor.
    Other fields are ignored."""

    rpc_url: str = Field(
        max_length=2048,
        pattern=r"^https?://",
        description="the JSON-RPC URL of the chain the Jobs contract is on (http or https; a "
        "loopback address means the host's)",
    )
    jobs_contract: str = Field(pattern=_ADDRESS, description="the Jobs contract's address")
    code_contract: str = Field(pattern=_ADDRESS, description="the code contract's address")
    owner: str = Field(pattern=_ADDRESS, description="the operator who registers the executor")

    @field_validator("rpc_url")
    @classmethod
    def _an_url(cls, value: str) -> str:
        # InputError is a ValueError: pydantic reports it as this field's error (a 400).
        try:  # urlsplit refuses a bad IPv6 literal, .port a port that is no number in range
            parts = urlsplit(value)
            parts.port  # noqa: B018 - evaluated for its check
        except ValueError as exc:
            raise InputError(f"not a URL: {exc}") from exc
        if not parts.hostname:
            raise InputError("the URL names no host")
        return value


class ExecutorStatsModel(BaseModel):
    """The executor's counters since it was configured."""

    jobs_seen: int
    jobs_selected: int
    outputs_submitted: int
    failures: int
    slashes_sent: int
    last_block: int


class ExecutorDetails(BaseModel):
    """``GET /details``: the enclave key, and the deployment once configured (else nulls)."""

    enclave_address: str = Field(pattern=_ADDRESS)
    public_key: str = Field(pattern=r"^0x[0-9a-f]{128}$", description="uncompressed, no 04")
    owner: str | None
    env: int
    job_capacity: int
    configured: bool
    chain_id: int | None
    jobs_contract: str | None
    stats: ExecutorStatsModel | None


class Registration(BaseModel):
    """``/registration``: what the owner passes to the Jobs contract's registerExecutor."""

    owner: str = Field(pattern=_ADDRESS)
    job_capacity: int
    env: int
    sign_timestamp: int = Field(description="chain time, in seconds")
    signature: str = Field(pattern=r"^0x[0-9a-f]{130}$", description="r ‖ s ‖ v")


class GatewayInfo(BaseModel):
    """``GET /``: which executor this is, and for which deployment (null until configured)."""

    enclave_address: str = Field(pattern=_ADDRESS)
    public_key: str = Field(pattern=r"^0x[0-9a-f]{128}$")
    chain_id: int | None
    jobs_contract: str | None
    env: int


_GATEWAY_DESCRIPTION = """\
The web2 path: an HTTP request to `/fn/<codehash>[/path]`, or to any path on a host whose first
label is the codehash in base32 (Oyster's form), runs the function deployed under that codehash
on the request (method, path and query, headers, body) and answers its response: any status,
headers and body, signed. `X-Oyster-Signature` signs Oyster's digest of the timestamp, request
and response body; `X-Reef-Signature` signs the same digest bound to the chain id and the Jobs
contract. A function may answer any status itself: its answers, and the gateway's verdicts on it
(408, 400 and 500 with an empty body and `X-Reef-Error-Code`), carry the signature headers; the
gateway's own refusals are JSON `{"error": reason}` without them."""

_SIGNED = {
    name: {"description": description, "schema": {"type": "string"}}
    for name, description in {
        "X-Oyster-Timestamp": "unix seconds, signed",
        "X-Oyster-Signature": "the enclave key's signature of Oyster's digest (hex r‖s‖v)",
        "X-Reef-Signature": "the same digest bound to the chain id and the Jobs contract",
        "X-Reef-Chain-Id": "the deployment's chain id",
        "X-Reef-Jobs-Contract": "the deployment's Jobs contract",
        "X-Reef-Executor": "the enclave's address",
        "X-Reef-Error-Code": "0 for an answer, else the verdict's code",
        "X-Reef-Total-Time-Ms": "how long the function ran",
    }.items()
}
_CALL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"headers": _SIGNED},
    "default": {"description": "the function's answer with its own status", "headers": _SIGNED},
    400: {
        "description": "the codehash is malformed, or the request cannot be forwarded or "
        "signed unambiguously (its path, Host or body holds a marker of Oyster's digest, such "
        "as '|body|') (JSON `{error}`); "
        "or the verdict (empty body, signed): no code under it, code that is not UTF-8, a "
        "syntax error",
        "headers": _SIGNED,
    },
    404: {"model": ErrorModel, "description": "no function named (neither path nor host)"},
    408: {"description": "the verdict: it ran past 5 s (empty body, signed)", "headers": _SIGNED},
    413: {"model": ErrorModel, "description": "the request body is over 1 MiB"},
    429: {"model": ErrorModel, "description": "no room to run it now: retry shortly"},
    500: {
        "description": "the verdict: its output was over the limit, or it ran out of memory "
        "(empty body, signed)",
        "headers": _SIGNED,
    },
    502: {
        "model": ErrorModel,
        "description": "the code cannot be fetched from the chain, or the function's answer "
        "holds a marker of Oyster's digest and cannot be signed unambiguously",
    },
    503: {"model": ErrorModel, "description": "the executor is not configured yet"},
}
_CODEHASH_PARAM = path_param(
    "codehash", "the function: its deployment transaction's hash", "^(0x)?[0-9a-fA-F]{64}$"
)
_REST_PARAM = path_param("rest", "the path the function sees (after a /; may hold more /)")
_ANY_BODY = {
    "required": False,
    "description": "forwarded to the function as it is, up to 1 MiB (any content type)",
    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
}
_CALL_OPERATION = {
    "/fn/{codehash}": "call",
    "/fn/{codehash}/{rest:path}": "call_path",
    "/{rest:path}": "call_by_host",
}
_CALL_SUMMARY = {
    "/fn/{codehash}": "Run the function on this request (it sees the path /)",
    "/fn/{codehash}/{rest:path}": "Run the function on this request (it sees the path /rest)",
    "/{rest:path}": "Run the function the Host names on this request (else 404)",
}


def oyster_response_digest(
    *,
    timestamp: int,
    method: str,
    path_and_query: str,
    host: str,
    request_body: bytes,
    response_body: bytes,
) -> bytes:
    """The digest of Oyster's ``X-Oyster-Signature`` (reference §5): keccak256 over labelled
    fields, the timestamp as 8 big-endian bytes."""
    return keccak256(
        _oyster_preimage(timestamp, method, path_and_query, host, request_body, response_body)
    )


def _oyster_preimage(
    timestamp: int,
    method: str,
    path_and_query: str,
    host: str,
    request_body: bytes,
    response_body: bytes,
) -> bytes:
    return (
        b"|oyster-serverless-hasher|"
        + b"|timestamp|"
        + struct.pack(">Q", timestamp)
        + b"|request|"
        + b"|method|"
        + method.encode()
        + b"|pathandquery|"
        + path_and_query.encode()
        + b"|host|"
        + host.encode()
        + b"|body|"
        + request_body
        + b"|response|"
        + b"|body|"
        + response_body
    )


def reef_gateway_digest(domain: JobsDomain, oyster_digest: bytes) -> bytes:
    """The digest of ``X-Reef-Signature``: Oyster's digest bound to one deployment,
    keccak256("|reef-serverless-gateway|v1|" ‖ uint256 chainId ‖ jobs contract (20 bytes) ‖
    oyster digest)."""
    return keccak256(
        b"|reef-serverless-gateway|v1|"
        + domain.chain_id.to_bytes(32, "big")
        + parse_hex(domain.jobs_contract, name="jobs contract", length=20)
        + oyster_digest
    )


def _codehash_from_host(host: str) -> str | None:
    label = host.split(".", 1)[0].split(":", 1)[0].upper()
    if len(label) != 52:
        return None
    try:
        raw = base64.b32decode(label + "====")
    except (binascii.Error, ValueError):
        return None
    return "0x" + raw.hex() if len(raw) == 32 else None


def _rpc_inside(url: str) -> str:
    """An RPC URL on the host's loopback as this enclave reaches it (``$REEF_HOST_ADDR``)."""
    host_addr = os.environ.get("REEF_HOST_ADDR")
    parts = urlsplit(url)
    if host_addr and parts.hostname in ("127.0.0.1", "localhost"):
        netloc = f"{host_addr}:{parts.port}" if parts.port else host_addr
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


class ExecutorNode:
    """One executor: its key, runtime and (once configured) chain watcher.

    Args:
        key: the enclave key (in an enclave: ``/app/ecdsa.sec``).
        runtime: the function runtime.
        cache_dir: the code cache's directory.
        limits: the operator's limits for every call (deadlines come from jobs).
        job_capacity: the most jobs this executor registers for.
        clock: wall-clock seconds.
    """

    def __init__(
        self,
        key: Secp256k1PrivateKey,
        runtime: FunctionRuntime,
        cache_dir: Path,
        *,
        limits: Limits | None = None,
        job_capacity: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.runtime = runtime
        self.cache_dir = cache_dir
        self.limits = limits or Limits()
        self.job_capacity = job_capacity
        self.clock = clock
        self.owner: str | None = None
        self.service: ExecutorService | None = None
        self._web2_running = 0  # gateway calls in flight (see _gateway_call)

    @property
    def address(self) -> str:
        return self.key.public_key.checksum_address

    async def configure(
        self,
        settings: ExecutorSettings,
        *,
        owner: str,
        w3: Any = None,
    ) -> ExecutorService:
        """Start watching the chain (once).

        Raises:
            InputError: when already configured.
        """
        if self.service is not None:
            current = self.service.settings
            same = (current.jobs_contract, current.code_contract, self.owner) == (
                settings.jobs_contract,
                settings.code_contract,
                owner,
            )
            if same:  # an operator retrying the same configuration
                return self.service
            raise InputError(
                "this executor is already configured for another deployment or owner",
                hint="start a new enclave",
            )
        settings = dataclasses.replace(settings, rpc_url=_rpc_inside(settings.rpc_url))
        service = ExecutorService(
            self.key, settings, self.runtime, self.cache_dir, w3=w3, clock=self.clock
        )
        await service.start()
        self.service, self.owner = service, owner
        return service

    async def aclose(self) -> None:
        if self.service is not None:
            await self.service.aclose()

    def details(self) -> dict[str, Any]:
        service = self.service
        return {
            "enclave_address": self.address,
            "public_key": "0x" + self.key.public_key.raw.hex(),
            "owner": self.owner,
            "env": ENV_JAVASCRIPT,
            "job_capacity": self.job_capacity,
            "configured": service is not None,
            "chain_id": service.domain.chain_id if service else None,
            "jobs_contract": service.domain.jobs_contract if service else None,
            "stats": vars(service.stats) if service else None,
        }

    def registration(self, owner: str) -> dict[str, Any]:
        """The enclave key's signature letting ``owner`` register it (needs a configuration)."""
        if self.service is None:
            raise ServerlessError("configure the executor first (POST /config)")
        timestamp = self.service.chain_time()
        signature = sign_registration(
            self.key,
            self.service.domain,
            owner=owner,
            job_capacity=self.job_capacity,
            env=ENV_JAVASCRIPT,
            sign_timestamp=timestamp,
        )
        return {
            "owner": owner,
            "job_capacity": self.job_capacity,
            "env": ENV_JAVASCRIPT,
            "sign_timestamp": timestamp,
            "signature": "0x" + signature.hex(),
        }

    # -- HTTP ------------------------------------------------------------------------------

    def control_app(self) -> LightApi:
        """The operator's app: details, configuration, registration signature."""

        async def details(_: Request) -> Response:
            return JSONResponse(self.details())

        async def config(request: Request) -> Response:
            try:
                given = ExecutorConfig.model_validate_json(await request.body())
            except ValidationError as exc:
                return json_error(
                    400,
                    f"bad config: {validation_reasons(exc)}; give rpc_url, jobs_contract, code_contract "
                    "and owner",
                )
            settings = ExecutorSettings(
                rpc_url=given.rpc_url,
                jobs_contract=given.jobs_contract,
                code_contract=given.code_contract,
                limits=self.limits,
            )
            try:
                await self.configure(settings, owner=given.owner)
            except InputError as exc:
                return json_error(409, exc.message)
            except ReefError as exc:
                return json_error(502, exc.message)
            return JSONResponse(self.details())

        async def registration(_: Request) -> Response:
            if self.owner is None:
                return json_error(409, "configure the executor first")
            try:
                return JSONResponse(self.registration(self.owner))
            except ReefError as exc:
                return json_error(409, exc.message)

        app = light_api(
            "reef serverless executor: control",
            description="The operator's port of an executor enclave: its identity, its "
            "configuration (once), and the enclave key's signature that lets the owner register "
            "it on the Jobs contract.",
        )
        unconfigured = error_answers({409: "not configured yet"})
        app.add_api_route(
            "/details",
            details,
            methods=["GET"],
            response_model=ExecutorDetails,
            summary="The executor's key, owner, deployment and counters",
        )
        app.add_api_route(
            "/config",
            config,
            methods=["POST"],
            body=ExecutorConfig,
            response_model=ExecutorDetails,
            summary="Configure the executor (once): it starts watching the chain",
            responses=error_answers(
                {
                    400: "the configuration is malformed",
                    409: "already configured for another deployment or owner (the same "
                    "configuration again is answered 200)",
                    502: "the chain cannot be reached",
                }
            ),
        )
        for method in ("GET", "POST"):
            app.add_api_route(
                "/registration",
                registration,
                methods=[method],
                name=f"registration_{method.lower()}",
                response_model=Registration,
                summary="The enclave key's EIP-712 Register signature for the owner",
                responses=unconfigured,
            )
        return app

    def gateway_app(self) -> LightApi:
        """The web2 gateway: runs a function on a plain HTTP request, answers signed.

        A request whose ``Host`` names a function (its first label is the codehash in base32,
        Oyster's form) is that function's on every path but ``/fn/...``: ``/``, ``/docs`` and
        ``/openapi.json`` too. On other hosts ``GET /`` describes the executor.
        """

        async def index(_: Request) -> Response:
            details = self.details()
            return JSONResponse({k: details[k] for k in GatewayInfo.model_fields})

        async def call(request: Request) -> Response:
            return await self._gateway_call(request)

        app = _GatewayApi(
            call,
            "reef serverless executor: gateway",
            description=_GATEWAY_DESCRIPTION,
        )
        app.add_api_route(
            "/",
            index,
            methods=["GET"],
            response_model=GatewayInfo,
            summary="The executor's key and deployment (on a host that names no function)",
        )
        params = {
            "/fn/{codehash}": [_CODEHASH_PARAM],
            "/fn/{codehash}/{rest:path}": [_CODEHASH_PARAM, _REST_PARAM],
            "/{rest:path}": [_REST_PARAM],
        }
        for path, parameters in params.items():
            for method in _METHODS:
                extra: dict[str, Any] = {"parameters": parameters}
                if method not in ("GET", "HEAD", "OPTIONS"):
                    extra["requestBody"] = _ANY_BODY
                app.add_api_route(
                    path,
                    call,
                    methods=[method],
                    name=f"call_{method.lower()}",
                    operation_id=f"{_CALL_OPERATION[path]}_{method.lower()}",
                    summary=_CALL_SUMMARY[path],
                    response_class=Response,
                    response_description="the function's answer (its status, headers and body)",
                    responses=_CALL_RESPONSES,
                    openapi_extra=extra,
                )
        return app

    async def _gateway_call(self, request: Request) -> Response:
        service = self.service
        if service is None:
            return json_error(503, "the executor is not configured yet")
        host = request.headers.get("host", "")
        codehash = request.path_params.get("codehash") or _codehash_from_host(host)
        if codehash is None:
            return json_error(
                404, "no function named: call /fn/<codehash> or a <base32 codehash>. host"
            )
        try:  # one spelling, so that each spelling is not a warm runtime of its own
            codehash = canonical_codehash(codehash)
        except InputError as exc:
            return json_error(400, exc.message)
        # Web2 calls are unbilled: they get the runtime's room less what the jobs this executor
        # registered for may need at once, so a flood of them never leaves a job (billed, and
        # slashed when unanswered) without a runtime.
        if self._web2_running >= self.runtime.max_running - self.job_capacity:
            return json_error(
                429, "the executor is busy with as many web2 calls as it takes: retry shortly"
            )
        self._web2_running += 1
        try:
            return await self._gateway_run(request, service, host, codehash)
        finally:
            self._web2_running -= 1

    async def _gateway_run(
        self, request: Request, service: ExecutorService, host: str, codehash: str
    ) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_BODY:  # refused before the rest of it is read
                return json_error(413, "the request body is over 1 MiB")
        query = f"?{request.url.query}" if request.url.query else ""
        shared_origin = "codehash" in request.path_params  # /fn/<codehash>: the gateway's origin
        path_and_query = _raw_path(request.scope) + query
        # The request alone (no answer, no time yet): refused before the function runs.
        marker = _second_reading(
            _oyster_preimage(0, request.method, path_and_query, host, bytes(body), b"")
        )
        if marker is not None:
            return json_error(
                400,
                f"the request's path, Host or body holds {marker!r} (or ends in part of it), "
                "which would make the answer's signature readable as another request's answer: "
                "percent-encode '|' in the path, and send the body without it",
            )
        limits = dataclasses.replace(self.limits, timeout_ms=GATEWAY_TIMEOUT_MS)
        forwarded = HttpRequest(
            method=request.method,
            target=_function_target(request.scope),
            # As sent: the ASGI server's bytes, which latin-1 maps one to one. On the shared
            # origin the Cookie header is the other functions' cookies too: not forwarded.
            headers=tuple(
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in request.scope["headers"]
                if not (shared_origin and k == b"cookie")
            ),
        )
        try:
            result = await self.runtime.call(
                codehash, bytes(body), service.cache, limits=limits, request=forwarded
            )
        except InputError as exc:
            return json_error(400, exc.message)
        except ServerlessError as exc:
            return json_error(429, exc.message)
        except ReefError as exc:  # the code could not be fetched (the chain's node failed)
            return json_error(502, f"cannot fetch the function's code: {exc.message}")
        timestamp = int(self.clock())
        # What oyster_response_digest hashes, built once so that the bytes checked here are the
        # bytes signed. The path as sent, as Oyster signs it: a decoded path would sign
        # /a%2Fb's answer as /a/b's.
        signed = _oyster_preimage(
            timestamp, request.method, path_and_query, host, bytes(body), result.output
        )
        marker = _second_reading(signed)
        if marker is not None:
            return json_error(
                502,
                f"the function's answer holds {marker!r} (or starts with part of it), which "
                "would make its signature readable as another request's answer: it is not "
                "signed; call it through a job, or have it answer without that text",
            )
        digest = keccak256(signed)
        status = (result.status or 200) if result.ok else _STATUS[result.error_code]
        response = Response(result.output, status_code=status)
        # The function's own headers, then reef's. On the shared origin a cookie it set would
        # go with its viewer's requests to every function there: not passed on.
        dropped = {"content-length", "date", "server"} | (
            {"set-cookie"} if shared_origin else set()
        )
        for name, value in result.headers:
            if name.lower() not in dropped:
                response.headers.append(name, value)
        # A browser must not guess HTML from a body the function did not label so (an echo of
        # its input would run as script). On /fn/<codehash> every function shares the gateway's
        # origin: a sandbox without allow-same-origin gives each page an opaque origin of its
        # own, so one function's page cannot read another's answers or cookies in its viewer's
        # browser (a function that needs its origin serves from its own host, Oyster's form).
        response.headers["X-Content-Type-Options"] = "nosniff"
        if shared_origin:
            response.headers.append("Content-Security-Policy", _PATH_FORM_SANDBOX)
        response.headers.update(
            {
                "X-Oyster-Timestamp": str(timestamp),
                "X-Oyster-Signature": self.key.sign_digest(digest).hex(),
                "X-Reef-Signature": self.key.sign_digest(
                    reef_gateway_digest(service.domain, digest)
                ).hex(),
                "X-Reef-Chain-Id": str(service.domain.chain_id),
                "X-Reef-Jobs-Contract": service.domain.jobs_contract,
                "X-Reef-Executor": self.address,
                "X-Reef-Error-Code": str(int(result.error_code)),
                "X-Reef-Total-Time-Ms": str(result.total_time_ms),
            }
        )
        return response


# Oyster's digest joins its fields with markers and no lengths, so a field holding a marker (or
# ending in part of one that the next marker completes) can let the same digest be read as other
# fields: a request body holding the answer's marker reads as a shorter body answered with what
# the caller wrote after it. After the fixed head (hasher, timestamp, request and method
# markers), a reading is a choice of one place for each of these markers, in order; the gateway
# signs only bytes with one such choice.
_HEAD = len(b"|oyster-serverless-hasher||timestamp|") + 8 + len(b"|request||method|")
_SEPARATORS = (b"|pathandquery|", b"|host|", b"|body|", b"|response||body|")


def _places(data: bytes, marker: bytes, start: int) -> list[int]:
    """Where ``marker`` occurs in ``data`` from ``start`` on, overlaps included."""
    found, at = [], data.find(marker, start)
    while at >= 0:
        found.append(at)
        at = data.find(marker, at + 1)
    return found


def _second_reading(signed: bytes) -> str | None:
    """The marker that has more than one place in some reading of ``signed``, or None when the
    bytes read one way only."""
    places = [_places(signed, marker, _HEAD) for marker in _SEPARATORS]
    # earliest[k]: where the earliest reading of markers 0..k ends; latest[k]: the latest start
    # of marker k from which markers k.. still fit. A place of marker k is in some reading when
    # a reading of the markers before it ends by then and the markers after it fit after it.
    earliest: list[int] = []
    end = _HEAD
    for marker, found in zip(_SEPARATORS, places, strict=True):
        at = next((i for i in found if i >= end), None)
        if at is None:
            return None  # no reading at all: not a layout the gateway builds
        end = at + len(marker)
        earliest.append(end)
    latest = [0] * len(_SEPARATORS)
    limit = len(signed)
    for k in reversed(range(len(_SEPARATORS))):
        fits = [i for i in places[k] if i + len(_SEPARATORS[k]) <= limit]
        if not fits:
            return None
        latest[k] = limit = fits[-1]
    for k, marker in enumerate(_SEPARATORS):
        after = earliest[k - 1] if k else _HEAD
        before = latest[k + 1] if k + 1 < len(_SEPARATORS) else len(signed)
        usable = [i for i in places[k] if i >= after and i + len(marker) <= before]
        if len(usable) > 1:
            return marker.decode()
    return None


def _raw_path(scope: Scope) -> str:
    """The request's path as the caller sent it (percent-escapes kept), latin-1 decoded."""
    raw: bytes | None = scope.get("raw_path")
    # ASGI's raw_path has no query, but some servers (httpx's ASGI transport) leave it on; a
    # path cannot hold an unescaped "?", so the first one starts the query.
    return raw.split(b"?", 1)[0].decode("latin-1") if raw else str(scope["path"])


def _function_target(scope: Scope) -> str:
    """The path and query the function sees, as the caller sent them (still percent-encoded):
    after ``/fn/<codehash>`` on that form, the whole path on a host-named one. Decoded, an
    escaped space or slash would reach the function as another path, or not be HTTP at all."""
    raw = _raw_path(scope).encode("latin-1")
    if "codehash" in scope.get("path_params", {}):  # /fn/<codehash>[/rest]: the rest
        second = raw.find(b"/", 1)  # the raw path may spell /fn/ escaped: count its slashes
        third = raw.find(b"/", second + 1) if second > 0 else -1
        raw = raw[third:] if third > 0 else b"/"
    query: bytes = scope.get("query_string", b"")
    return (raw + (b"?" + query if query else b"")).decode("latin-1")


class _GatewayApi(LightApi):
    """The gateway's light API, which first gives a request whose ``Host`` names a function to
    that function (Oyster's host-named form owns every path, ``/openapi.json`` included); only
    ``/fn/...`` names its function in the path even there."""

    def __init__(self, call: Endpoint, title: str, *, description: str) -> None:
        super().__init__(title, description=description)
        self._call = call
        self._by_host: Route | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/fn/"):
            host = next((v for k, v in scope["headers"] if k == b"host"), b"")
            if _codehash_from_host(host.decode("latin-1")) is not None:
                if self._by_host is None:
                    self._by_host = next(
                        r
                        for r in self.router.routes
                        if isinstance(r, Route) and r.path == "/{rest:path}"
                    )
                scope["app"] = self
                scope["route"] = self._by_host  # what the serving floor's metrics label it by
                response = await self._call(Request(scope, receive))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def load_key(path: Path) -> Secp256k1PrivateKey:
    """An enclave's secp256k1 key file: 32 raw bytes (``/app/ecdsa.sec``) or 64 hex digits."""
    return Secp256k1PrivateKey(read_key_file(path, kind="secp256k1 secret key"))
