"""Attestation servers: Oyster's HTTP endpoints in front of whatever signs documents.

Inside an enclave, the Nitro Secure Module signs attestation documents; in reef's dev TEE the
:class:`~reef.attestation.DevAuthority` does. Both are an :class:`Attester`: a callable that signs
a document for a public key, user data and nonce. These ASGI apps put Oyster's endpoints in front
of one (reference oyster_cvm.md §1.4):

- :func:`attestation_app` (Oyster's ``attestation-server``): ``GET /attestation/raw`` answers the
  document bytes (``application/octet-stream``), ``GET /attestation/hex`` the same as lowercase hex
  (``text/plain``). The public key and user data are fixed when the app is built, so the endpoint
  is safe to expose: nobody can make the enclave attest to a key it does not hold.
- :func:`custom_attestation_app` (Oyster's ``attestation-server-custom``): the same endpoints take
  optional hex query parameters ``public_key``, ``user_data`` and ``nonce``. Anyone who can reach it
  can make the enclave vouch for any key, so it must only be reachable by code inside the enclave.

Light APIs (:func:`reef._api.light_api`: served on Starlette, described by FastAPI on demand,
since every enclave serves them and should not load FastAPI to boot), so ``/openapi.json`` and
``/docs`` describe the endpoints (the query fields of the custom server, the document bodies,
each error); the handlers read the query themselves, since the custom server refuses unknown and
repeated fields. Errors stay Oyster's plain text
(``bad request: ...``, ``attestation unavailable: ...``). uvicorn runs them on reef's serving
floor. Each request calls the attester in a worker thread, since a real NSM call is a blocking
ioctl.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from reef._api import LightApi, light_api, query_param, text_answer
from reef.errors import InputError, ReefError

__all__ = [
    "MAX_ATTESTATION_FIELD",
    "Attester",
    "attestation_app",
    "custom_attestation_app",
]

# The Nitro Secure Module accepts at most 1024 bytes for each of public_key, user_data and nonce;
# the dev TEE keeps the same limit so that what works locally works on Nitro.
MAX_ATTESTATION_FIELD = 1024

_QUERY_FIELDS = ("public_key", "user_data", "nonce")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


class Attester(Protocol):
    """What an NSM does: sign an attestation document for these fields.

    Implementations return the COSE_Sign1 document bytes, and raise a :class:`reef.errors.ReefError`
    when they cannot attest (the servers answer 503 with its message).
    """

    def __call__(self, *, public_key: bytes, user_data: bytes, nonce: bytes) -> bytes: ...


def attestation_app(attester: Attester, *, public_key: bytes, user_data: bytes = b"") -> LightApi:
    """Oyster's attestation server: documents for a public key fixed at start-up.

    Every request asks ``attester`` for a fresh document with ``public_key``, ``user_data`` and an
    empty nonce, as Oyster's server asks the NSM.

    Raises:
        InputError: when ``public_key`` or ``user_data`` exceeds the NSM's 1024-byte limit.
    """
    _check_size("public_key", public_key)
    _check_size("user_data", user_data)
    fixed_key, fixed_data = bytes(public_key), bytes(user_data)

    async def fields(_: Request) -> tuple[bytes, bytes, bytes]:
        return fixed_key, fixed_data, b""

    return _app(attester, fields, custom=False)


def custom_attestation_app(attester: Attester) -> LightApi:
    """Oyster's custom attestation server: the caller chooses the fields.

    ``GET /attestation/raw?public_key=HEX&user_data=HEX&nonce=HEX`` (each optional, hex without
    ``0x``; absent means empty). Invalid hex or a field over 1024 bytes answers 400 with a message.
    Never expose this app outside the enclave: it attests to any key it is given.
    """

    async def fields(request: Request) -> tuple[bytes, bytes, bytes]:
        unknown = sorted(set(request.query_params) - set(_QUERY_FIELDS))
        if unknown:
            raise InputError(
                f"unknown query parameter {unknown[0]!r}",
                hint="the parameters are public_key, user_data and nonce (hex)",
            )
        values = []
        for name in _QUERY_FIELDS:
            repeated = request.query_params.getlist(name)
            if len(repeated) > 1:
                raise InputError(f"query parameter {name} is given {len(repeated)} times")
            values.append(_query_hex(name, repeated[0] if repeated else ""))
        return values[0], values[1], values[2]

    return _app(attester, fields, custom=True)


_Fields = Callable[[Request], Awaitable[tuple[bytes, bytes, bytes]]]


def _app(attester: Attester, fields: _Fields, *, custom: bool) -> LightApi:
    async def document(request: Request) -> bytes | Response:
        try:
            public_key, user_data, nonce = await fields(request)
        except InputError as exc:
            return PlainTextResponse(f"bad request: {exc}\n", status_code=400)
        try:
            signed = await run_in_threadpool(
                attester, public_key=public_key, user_data=user_data, nonce=nonce
            )
        except ReefError as exc:
            # The attester (NSM or dev authority) could not sign; the server itself stays up.
            return PlainTextResponse(f"attestation unavailable: {exc}\n", status_code=503)
        if not isinstance(signed, bytes | bytearray | memoryview) or not signed:
            # bytes(5) would silently answer five zero bytes: refuse anything but a document.
            return PlainTextResponse(
                f"attestation unavailable: the attester returned {type(signed).__name__}, "
                "not document bytes\n",
                status_code=503,
            )
        return bytes(signed)

    async def raw(request: Request) -> Response:
        result = await document(request)
        if isinstance(result, Response):
            return result
        return Response(result, media_type="application/octet-stream")

    async def hex_(request: Request) -> Response:
        result = await document(request)
        if isinstance(result, Response):
            return result
        return PlainTextResponse(result.hex())

    app = light_api(
        "reef attestation server" + (" (custom: inside the enclave only)" if custom else ""),
        description="Attestation documents of this enclave (Oyster-compatible).",
    )
    parameters = [
        query_param(
            name,
            f"{name} to attest, hex (at most {MAX_ATTESTATION_FIELD} bytes)",
            "^(0x)?([0-9a-fA-F]{2})*$",
        )
        for name in _QUERY_FIELDS
    ]
    extra = {"parameters": parameters} if custom else None
    errors: dict[int | str, dict[str, Any]] = {
        400: text_answer("bad request: a field that is not hex, too long, unknown or repeated"),
        503: text_answer("attestation unavailable: the attester could not sign"),
    }
    for path, endpoint, media, schema in (
        (
            "/attestation/raw",
            raw,
            "application/octet-stream",
            {"type": "string", "format": "binary"},
        ),
        ("/attestation/hex", hex_, "text/plain", {"type": "string", "pattern": "^[0-9a-f]+$"}),
    ):
        app.add_api_route(
            path,
            endpoint,
            methods=["GET"],
            summary="A fresh attestation document" + (" as hex" if media == "text/plain" else ""),
            response_class=Response,
            responses={
                200: {"description": "the document", "content": {media: {"schema": schema}}},
                **errors,
            },
            openapi_extra=extra,
        )
    return app


def _query_hex(name: str, text: str) -> bytes:
    # Oyster's custom server takes hex without 0x; accepting a 0x prefix too costs nothing.
    cleaned = text[2:] if text[:2].lower() == "0x" else text
    if len(cleaned) > 2 * MAX_ATTESTATION_FIELD:
        raise InputError(
            f"{name} is longer than {MAX_ATTESTATION_FIELD} bytes",
            hint="the NSM attests at most 1024 bytes per field",
        )
    # bytes.fromhex would skip spaces; the parameter must be hex digits and nothing else.
    if not _HEX.fullmatch(cleaned):
        raise InputError(
            f"{name} is not valid hex: {text[:40]!r}",
            hint="give an even number of hex digits, nothing else",
        )
    return bytes.fromhex(cleaned)


def _check_size(name: str, value: bytes) -> None:
    if len(value) > MAX_ATTESTATION_FIELD:
        raise InputError(
            f"{name} is {len(value)} bytes; an attestation field holds at most "
            f"{MAX_ATTESTATION_FIELD}",
            hint="attest a hash of larger data instead",
        )
