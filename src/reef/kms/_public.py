"""The root server's public listener (reference oyster_cvm.md §2.3, "public listener", port 1101).

Anyone may learn the *public* keys any enclave image (or contract) will get, before it ever runs:

==========================================  =====================================
``GET /derive/secp256k1/public``            64 raw bytes ``x || y``
``GET /derive/secp256k1/address/ethereum``  text ``0x…`` (lowercase)
``GET /derive/ed25519/public``              32 raw bytes
``GET /derive/ed25519/address/solana``      text base58
``GET /derive/x25519/public``               32 raw bytes
==========================================  =====================================

each with ``?image_id=<64 hex>&path=<utf8>`` or ``?address=<addr>&path=<utf8>`` (contract flavour,
when the root has a chain configured), every 2xx answer signed in ``x-marlin-kms-signature``.

reef additions, all optional so Oyster clients work unchanged: ``&version=N`` selects a root seed
version (default current; the answer is signed by that version's key and says its version in
``x-reef-kms-version``); ``GET /info[?nonce=hex]`` gives the root's identity with an attestation
binding it; ``POST /admin/rotate`` rotates on an admin signature; ``POST /admin/handover`` keeps
an admin's authorisation for a new root's image to inherit the seeds (:mod:`reef.kms._root`).
Query parameters are decoded strictly (:func:`~reef.kms._http.query_params`): percent-escapes
that are not valid UTF-8 (``%ff``) and raw non-ASCII bytes are refused with 400, so two different
requests never name one key (``%EF%BF%BD``, the UTF-8 of U+FFFD, is valid and names the path
"\ufffd", and nothing else does). Errors answer 4xx with a text body (Oyster answers a
zero-filled body on a bad image id; a message is more useful and no Oyster client reads error
bodies).

The app is FastAPI so ``/openapi.json`` and ``/docs`` describe it, but its query parameters are
still read from the raw query string by the strict decoder above (FastAPI's own decoding maps bad
bytes to U+FFFD): the schema documents them, the handlers parse them.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from reef._api import api_app, query_param
from reef._peers import PeerBudget, PeerRate
from reef.encoding import loads_bounded, parse_hex
from reef.errors import InputError, KMSError, MisuseError, ReefError
from reef.kms._derive import KeyType, derive_key
from reef.kms._http import (
    PATH_PARAM,
    VERSION_HEADER,
    VERSION_PARAM,
    OneAtATime,
    add_kms_route,
    busy_response,
    error_response,
    kms_guard,
    parse_address,
    parse_image_id,
    parse_path,
    parse_version,
    query_params,
    raw_uri,
    request_group,
    versioned_answer,
)
from reef.kms._root import HandoverGrant, KmsRoot
from reef.kms._signing import SIGNATURE_HEADER, sign_response

__all__ = ["INFO_COST", "PUBLIC_RATE", "public_app"]


_log = logging.getLogger("reef.kms.public")

PUBLIC_RATE = PeerRate(per_second=20, burst=100)
"""What one client group (an IPv4 address, an IPv6 /64) may ask of the public listener: 100
units at once, 20 more a second. A derived key (a derivation, a public key, a signature) or a
rotation attempt (a signature recovery) costs one; an identity costs :data:`INFO_COST`."""
INFO_COST = 5
"""Units of :data:`PUBLIC_RATE` an ``/info`` costs: an attestation (an NSM call) and a signature."""
_TOO_MANY = "this client asked too much of the root; Retry-After says when to ask again"

_Handler = Callable[[Request], Awaitable[Response]]
_Form = Literal["public", "address"]
_ENDPOINTS: dict[str, tuple[KeyType, _Form]] = {
    "/derive/secp256k1/public": ("secp256k1", "public"),
    "/derive/secp256k1/address/ethereum": ("secp256k1", "address"),
    "/derive/ed25519/public": ("ed25519", "public"),
    "/derive/ed25519/address/solana": ("ed25519", "address"),
    "/derive/x25519/public": ("x25519", "public"),
}


_DERIVE_PARAMS = [
    query_param(
        "image_id", "the enclave image id, 64 hex digits (or give address)", "^[0-9a-f]{64}$"
    ),
    query_param("address", "a contract address (or give image_id)"),
    PATH_PARAM,
    VERSION_PARAM,
]
_SIGNATURE_DOC = {
    SIGNATURE_HEADER: {
        "description": "the root's signature over the request URI and the body",
        "schema": {"type": "string"},
    },
}


def _signed_answer(description: str, media: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A 200 answer signed by the root (see :func:`_signed`), as OpenAPI describes it."""
    return versioned_answer(description, media=media, schema=schema, headers=_SIGNATURE_DOC)


class _HandoverModel(BaseModel):
    image_id: str = Field(description="the image id that may inherit the seeds, 64 hex")
    expires: int = Field(description="Unix seconds after which the authorisation is void")
    kms_signing_address: str = Field(description="this root's current signing address")
    signature: str = Field(description="the admin's 65-byte EIP-191 signature, hex")
    revoke: bool = Field(False, description="withdraw this authorisation instead")


class _RotateModel(BaseModel):
    version: int = Field(description="the new root seed version")
    signature: str = Field(description="the admin's 65-byte signature, hex")


def _signed(root: KmsRoot, request: Request, body: bytes, media: str, version: int) -> Response:
    key = root.keyring.signing_key(version)
    headers = {
        SIGNATURE_HEADER: sign_response(key, raw_uri(request.scope), body),
        VERSION_HEADER: str(version),
    }
    return Response(body, media_type=media, headers=headers)


def public_app(root: KmsRoot, *, budget: PeerBudget | None = None) -> FastAPI:
    """The public listener of ``root`` as an ASGI app (wrapped in the request limits).

    Args:
        budget: what each client group may ask a second (default :data:`PUBLIC_RATE`); past
            it the answer is 429 with a ``Retry-After``.
    """
    # Not `budget or ...`: an empty budget has no peers yet, so it is falsy.
    limit = PeerBudget(PUBLIC_RATE) if budget is None else budget

    def budgeted(handler: _Handler, cost: float, what: str, hint: str) -> _Handler:
        """``handler`` behind the client's budget: it runs when the client may have ``what``,
        and the answer is 429 when not."""

        @functools.wraps(handler)
        async def spend(request: Request) -> Response:
            group = request_group(request)
            wait = limit.take(group, min(cost, limit.rate.burst))
            if not wait:
                return await handler(request)
            return busy_response(
                wait,
                f"{group} asked this KMS root for more {what} than it answers one client "
                f"({limit.rate.per_second:g} units a second, {limit.rate.burst:g} at once); {hint}",
            )

        return spend

    app = api_app(
        "reef KMS root (public listener)",
        description="The public keys any enclave image or contract will get, signed by the "
        "root (Oyster-compatible); the root's identity; admin rotation.",
    )

    def derive_endpoint(route: str, key_type: KeyType, form: _Form) -> None:
        async def handler(request: Request) -> Response:
            try:
                params = query_params(request.scope)
                keyring = root.keyring
                chosen = keyring.resolve_version(parse_version(params))
                path = parse_path(params)
                if ("image_id" in params) == ("address" in params):
                    raise InputError("give exactly one of image_id and address")
                if "image_id" in params:
                    parent = keyring.enclave_seed(parse_image_id(params["image_id"]), chosen)
                else:
                    if root.chain_id is None:
                        raise InputError(
                            "this KMS root has no chain configured, so no contract-based keys"
                        )
                    address = parse_address(params["address"], evm=False)
                    parent = keyring.contract_seed(root.chain_id, address, chosen)
            except InputError as exc:
                return error_response(400, exc.message)
            key = derive_key(parent, path, key_type)
            if form == "public":
                return _signed(root, request, key.public_key, "application/octet-stream", chosen)
            return _signed(root, request, (key.address or "").encode(), "text/plain", chosen)

        media = "application/octet-stream" if form == "public" else "text/plain"
        schema = {"type": "string", "format": "binary"} if form == "public" else {"type": "string"}
        add_kms_route(
            app,
            route,
            budgeted(handler, 1, "keys", "a key is the same every time it is asked for: keep it"),
            name=f"{key_type} {form}",
            summary=f"The {key_type} {'public key' if form == 'public' else 'address'} of an "
            "image or contract",
            ok=_signed_answer(
                "signed; the key bytes" if form == "public" else "signed", media, schema
            ),
            errors={400: "what is wrong with the query", 429: _TOO_MANY},
            parameters=_DERIVE_PARAMS,
        )

    # An identity attestation is the dearest thing this listener makes (an NSM call, or a
    # P-384 signature on the dev TEE), in a worker thread: without turns, one client sending
    # nonces at once had as many made in parallel as it had connections, and kept the threads
    # (and the NSM) from everyone else.
    attesting: OneAtATime[str] = OneAtATime()

    async def info(request: Request) -> Response:
        try:
            nonce = parse_hex(query_params(request.scope).get("nonce", ""), name="nonce")
            async with attesting.turn(request_group(request)):
                document = await root.info(nonce)
        except InputError as exc:
            return error_response(400, exc.message)
        except ReefError as exc:
            _log.warning("cannot attest the KMS identity: %s", exc.message)
            return error_response(503, f"cannot attest the KMS identity: {exc.message}")
        body = json.dumps(document).encode()
        # Signed by the version the document describes: a rotation may have happened while
        # it was attested, and an identity signed by a key it does not list is refused.
        return _signed(root, request, body, "application/json", document["current_version"])

    async def rotate(request: Request) -> Response:
        try:
            payload = loads_bounded(await request.body(), what="the rotation request")
            version = payload["version"]
            signature = parse_hex(str(payload["signature"]), name="signature", length=65)
            if not isinstance(version, int) or isinstance(version, bool):
                raise InputError("version must be an integer")
        except (ValueError, KeyError, TypeError) as exc:
            message = exc.message if isinstance(exc, InputError) else "malformed rotation request"
            return error_response(400, f"{message}: send JSON {{version, signature}}")
        try:
            root.check_rotation(version, signature)
        except MisuseError as exc:
            return error_response(403, exc.message)
        except InputError as exc:
            return error_response(409, exc.message)
        except KMSError as exc:
            return error_response(401, exc.message)
        # The version is checked again under the rotation lock: copies of one signature sent
        # at once all pass the check above before the first rotation ends.
        try:
            keyring = await root.rotate(version=version)
        except InputError as exc:
            return error_response(409, exc.message)
        previous = version - 1
        _log.info("rotated the KMS root to version %d", keyring.current_version)
        body = json.dumps(keyring.identity().to_json()).encode()
        # Signed by the previous version's key: the identity clients pinned vouches for the new one.
        return _signed(root, request, body, "application/json", previous)

    async def handover(request: Request) -> Response:
        try:
            payload = loads_bounded(await request.body(), what="the handover authorisation")
            if not isinstance(payload, dict):
                raise InputError("the handover authorisation is not a JSON object")
            grant = HandoverGrant.from_json(payload)
        except (ValueError, KeyError, TypeError) as exc:
            message = exc.message if isinstance(exc, InputError) else "malformed authorisation"
            return error_response(
                400, f"{message}: send JSON {{image_id, expires, kms_signing_address, signature}}"
            )
        try:
            await root.authorise_handover(grant)
        except MisuseError as exc:
            return error_response(403, exc.message)
        except InputError as exc:
            return error_response(400, exc.message)
        except KMSError as exc:
            return error_response(401, exc.message)
        keyring = root.keyring
        body = json.dumps(
            {
                "image_id": grant.image_id.hex(),
                "expires": grant.expires_s,
                "kms_signing_address": grant.signing_address,
                "revoked": grant.revoke,
            }
        ).encode()
        return _signed(root, request, body, "application/json", keyring.current_version)

    for route, (key_type, form) in _ENDPOINTS.items():
        derive_endpoint(route, key_type, form)
    add_kms_route(
        app,
        "/info",
        budgeted(
            info,
            INFO_COST,
            "identities",
            "keep the identity you fetched: it changes only when the root rotates",
        ),
        summary="The root's identity, with an attestation binding it",
        ok=_signed_answer("signed identity document", "application/json", {"type": "object"}),
        errors={
            400: "a nonce that is not hex",
            429: _TOO_MANY,
            503: "the root cannot attest right now",
        },
        parameters=[query_param("nonce", "hex bytes to bind into the attestation")],
    )
    add_kms_route(
        app,
        "/admin/rotate",
        budgeted(rotate, 1, "rotations", "send one signed rotation and wait for its answer"),
        method="POST",
        summary="Rotate to a new root seed version (admin signature required)",
        ok=_signed_answer(
            "the new identity, signed by the previous version's key",
            "application/json",
            {"type": "object"},
        ),
        errors={
            400: "not JSON {version, signature}",
            401: "the signature is not the admin's",
            403: "this root takes no rotations",
            409: "a version that cannot follow the current one",
            429: _TOO_MANY,
        },
        request_body={
            "required": True,
            "content": {"application/json": {"schema": _RotateModel.model_json_schema()}},
        },
    )
    add_kms_route(
        app,
        "/admin/handover",
        budgeted(handover, 1, "handovers", "send one signed authorisation and wait for its answer"),
        method="POST",
        summary="Let a new root's image inherit the seeds (admin signature required)",
        ok=_signed_answer(
            "the authorisation kept, signed by the current version's key",
            "application/json",
            {"type": "object"},
        ),
        errors={
            400: "not JSON {image_id, expires, kms_signing_address, signature}, or an expiry "
            "in the past or too far ahead",
            401: "the authorisation names another root, or is not signed by the admin",
            403: "this root takes no handovers (no admin)",
            429: _TOO_MANY,
        },
        request_body={
            "required": True,
            "content": {"application/json": {"schema": _HandoverModel.model_json_schema()}},
        },
    )
    app.add_middleware(kms_guard, what="KMS root's public listener")
    return app
