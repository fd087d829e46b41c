"""An executor node: the enclave key, the runtime, the chain watcher and its two HTTP faces.

:class:`ExecutorNode` is what runs inside an executor enclave (``reef executor run``). It holds
the enclave key and a :class:`FunctionRuntime`, and serves two Starlette apps:

- the **control** app (operator port), Oyster's bootstrap in reef's terms (reference §2.3, §9.1):
  ``GET /details``; ``POST /config`` ``{rpc_url, jobs_contract, code_contract, owner}`` once,
  which starts the chain watcher (:class:`ExecutorService`); ``POST /registration``
  ``{job_capacity}`` answers the enclave key's EIP-712 ``Register`` signature for the owner;
- the **gateway** app (public port), the web2 path (reference §5): a plain HTTP request to
  ``/fn/<codehash>[/path]`` (or to a host whose first label is the codehash in base32, Oyster's
  form) runs the function on the request (method, ``/path`` and query, headers, body) and
  answers its full response (status, headers, body), with Oyster's
  ``X-Oyster-Timestamp`` / ``X-Oyster-Signature`` headers and reef's ``X-Reef-Signature``, which
  signs the same digest bound to the chain id and the Jobs contract (Oyster's signature names no
  deployment, so it replays on any; reef's does not).

The response digests are pure functions (:func:`oyster_response_digest`,
:func:`reef_gateway_digest`), so clients verify a response without this module's servers.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reef.crypto import Secp256k1PrivateKey, keccak256
from reef.encoding import parse_hex
from reef.errors import InputError, ReefError, ServerlessError
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

    def control_app(self) -> Starlette:
        """The operator's app: details, configuration, registration signature."""

        async def details(_: Request) -> Response:
            return JSONResponse(self.details())

        async def config(request: Request) -> Response:
            try:
                data = json.loads(await request.body())
                settings = ExecutorSettings(
                    rpc_url=str(data["rpc_url"]),
                    jobs_contract=str(data["jobs_contract"]),
                    code_contract=str(data["code_contract"]),
                    limits=self.limits,
                )
                owner = str(data["owner"])
            except (ValueError, KeyError, TypeError) as exc:
                return JSONResponse(
                    {
                        "error": f"bad config: {exc!r}; give rpc_url, jobs_contract, "
                        "code_contract and owner"
                    },
                    status_code=400,
                )
            try:
                await self.configure(settings, owner=owner)
            except InputError as exc:
                return JSONResponse({"error": exc.message}, status_code=409)
            except ReefError as exc:
                return JSONResponse({"error": exc.message}, status_code=502)
            return JSONResponse(self.details())

        async def registration(_: Request) -> Response:
            if self.owner is None:
                return JSONResponse({"error": "configure the executor first"}, status_code=409)
            try:
                return JSONResponse(self.registration(self.owner))
            except ReefError as exc:
                return JSONResponse({"error": exc.message}, status_code=409)

        return Starlette(
            routes=[
                Route("/details", details, methods=["GET"]),
                Route("/config", config, methods=["POST"]),
                Route("/registration", registration, methods=["POST", "GET"]),
            ]
        )

    def gateway_app(self) -> Starlette:
        """The web2 gateway: runs a function on a plain HTTP request, answers signed."""

        async def index(_: Request) -> Response:
            details = self.details()
            keep = ("enclave_address", "public_key", "chain_id", "jobs_contract", "env")
            return JSONResponse({k: details[k] for k in keep})

        async def call(request: Request) -> Response:
            return await self._gateway_call(request)

        return Starlette(
            routes=[
                Route("/", index, methods=["GET"]),
                Route("/fn/{codehash}", call, methods=_METHODS),
                Route("/fn/{codehash}/{rest:path}", call, methods=_METHODS),
                Route("/{rest:path}", call, methods=_METHODS),
            ]
        )

    async def _gateway_call(self, request: Request) -> Response:
        service = self.service
        if service is None:
            return JSONResponse({"error": "the executor is not configured yet"}, status_code=503)
        host = request.headers.get("host", "")
        codehash = request.path_params.get("codehash") or _codehash_from_host(host)
        if codehash is None:
            return JSONResponse(
                {"error": "no function named: call /fn/<codehash> or a <base32 codehash>. host"},
                status_code=404,
            )
        body = await request.body()
        if len(body) > _MAX_BODY:
            return JSONResponse({"error": "the request body is over 1 MiB"}, status_code=413)
        limits = Limits(
            timeout_ms=GATEWAY_TIMEOUT_MS,
            memory_bytes=self.limits.memory_bytes,
            output_bytes=self.limits.output_bytes,
            allow_network=self.limits.allow_network,
        )
        rest = request.path_params.get("rest", "")
        if "codehash" not in request.path_params:  # host-named: the whole path is the function's
            rest = request.url.path.lstrip("/")
        forwarded = HttpRequest(
            method=request.method,
            target="/" + rest + (f"?{request.url.query}" if request.url.query else ""),
            headers=tuple(request.headers.items()),
        )
        try:
            result = await self.runtime.call(
                codehash, body, service.cache, limits=limits, request=forwarded
            )
        except InputError as exc:
            return JSONResponse({"error": exc.message}, status_code=400)
        except ServerlessError as exc:
            return JSONResponse({"error": exc.message}, status_code=429)
        timestamp = int(self.clock())
        path_and_query = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        digest = oyster_response_digest(
            timestamp=timestamp,
            method=request.method,
            path_and_query=path_and_query,
            host=host,
            request_body=body,
            response_body=result.output,
        )
        status = (result.status or 200) if result.ok else _STATUS[result.error_code]
        response = Response(result.output, status_code=status)
        for name, value in result.headers:  # the function's own headers, then reef's
            if name.lower() not in ("content-length", "date", "server"):
                response.headers.append(name, value)
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


def load_key(path: Path) -> Secp256k1PrivateKey:
    """An enclave's secp256k1 key file: 32 raw bytes (``/app/ecdsa.sec``) or 64 hex digits."""
    data = path.read_bytes()
    if len(data) != 32:
        data = parse_hex(data.decode("ascii", "replace").strip(), name=str(path), length=32)
    return Secp256k1PrivateKey(data)
