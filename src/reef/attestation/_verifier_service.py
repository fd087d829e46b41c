"""The attestation verifier service, compatible with Oyster's (reference oyster_cvm.md §1.6).

Checking a Nitro document costs five P-384 signature verifications and a certificate walk; a smart
contract cannot afford that, and a client may not want the code. A verifier — ideally itself an
enclave whose image id the consumer knows — checks the document once and signs an EIP-712
statement ``(imageId, timestampMs, publicKey, userData)`` that anyone checks with one
``ecrecover`` (:func:`~reef.attestation.verify_statement`).

Endpoints (both answer the statement JSON, see :class:`~reef.attestation.VerifierStatement`):

- ``POST /verify/raw`` — body: the document bytes;
- ``POST /verify/hex`` — body: the document as hex text (``0x`` and surrounding whitespace
  allowed).

As in Oyster, the chain is checked at the document's own timestamp (replay mode) and freshness is
left to the consumer, which compares ``timestamp_ms`` with its own clock (on-chain: with
``block.timestamp``). Bad hex or an oversized body answers 400 / 413, a rejected document 401 with
the reason; the service keeps serving whatever one client sends.

The statement does not name the root the verifier trusts: the verifier's key stands for its
policy. Run one key per root, and never let a key that signs under ``mock`` or ``dev`` be trusted
for production (``reef verifier serve`` warns).

``/openapi.json`` and ``/docs`` describe the app (the statement as a typed model, the raw and hex
bodies, each error status), but the two routes are bare ASGI functions (see :func:`verifier_app`):
at a millisecond of CPU per document, FastAPI's request handling was a tenth of the work. The
bodies are read by hand, so the size limit is enforced while reading; error bodies stay Oyster's
plain text (``bad request: ...``, ``attestation rejected (reason): ...``), which Oyster's clients
print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from reef._api import LightApi, light_api, text_answer
from reef.attestation._nitro import NitroVerifier
from reef.attestation._roots import TrustedRoot
from reef.attestation._statement import VerifierStatement, sign_statement
from reef.crypto import Secp256k1PrivateKey
from reef.encoding import parse_hex, read_key_file
from reef.errors import AttestationError, ConfigError, InputError

__all__ = [
    "MAX_DOCUMENT_SIZE",
    "StatementModel",
    "load_verifier_key",
    "verifier_app",
    "verify_and_sign",
]

# Real Nitro documents are about 4.5 KiB; Oyster's parsers take a 2-byte payload length, so no
# document they accept exceeds 64 KiB plus the COSE framing. Twice that is a generous bound on
# what is worth reading at all.
MAX_DOCUMENT_SIZE = 1 << 17
# Hex doubles the size; allow a 0x prefix and a little whitespace (a trailing newline, CRLF).
_MAX_HEX_BODY = 2 * MAX_DOCUMENT_SIZE + 64


_HEX = r"^[0-9a-f]*$"


class StatementModel(BaseModel):
    """The signed statement the verifier answers (Oyster's JSON: lowercase hex, no ``0x``)."""

    signature: str = Field(pattern=r"^[0-9a-f]{130}$", description="65-byte r || s || v")
    image_id: str = Field(pattern=r"^[0-9a-f]{64}$", description="the document's image id")
    timestamp_ms: int = Field(ge=0, description="the document's own timestamp")
    public_key: str = Field(pattern=_HEX, description="the document's public_key field")
    user_data: str = Field(pattern=_HEX, description="the document's user_data field")
    verifier_public_key: str = Field(
        pattern=r"^[0-9a-f]{128}$", description="the verifier's secp256k1 key, x || y"
    )


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: text_answer("bad request: an empty body, or hex that does not parse"),
    401: text_answer("attestation rejected (reason): the document failed a check"),
    413: text_answer("payload too large: the body is over the limit"),
}


def _body(media: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {media: {"schema": schema}},
        }
    }


def verify_and_sign(
    document: bytes,
    key: Secp256k1PrivateKey,
    *,
    root: TrustedRoot,
    verifier: NitroVerifier | None = None,
) -> VerifierStatement:
    """Verify a Nitro document as Oyster's verifier does and sign the statement for it.

    The chain is checked at the document's own timestamp, freshness is not checked (replay mode,
    no ``max_age``): the consumer of the statement decides how old is too old.

    Args:
        document: the raw COSE_Sign1 document.
        key: the verifier's secp256k1 signing key.
        root: the root the document must chain to.
        verifier: a :class:`NitroVerifier` whose chain cache to use (a service keeps one).

    Raises:
        AttestationError: a subclass whose ``reason`` names the failed check.
    """
    checker = verifier if verifier is not None else NitroVerifier(cache_size=0)
    verified = checker.verify(document, root=root, mode="replay", max_age_ms=None)
    return sign_statement(key, verified)


def verifier_app(
    key: Secp256k1PrivateKey,
    *,
    root: TrustedRoot,
    verifier: NitroVerifier | None = None,
    offload: bool = True,
) -> LightApi:
    """The verifier service as an ASGI app: ``POST /verify/raw`` and ``POST /verify/hex``.

    A :class:`~reef._api.LightApi` whose two routes are bare ASGI functions (``add_asgi_route``):
    the request's body is read from ``receive`` and the answer sent as two messages, without
    FastAPI's or Starlette's per-request machinery; ``/openapi.json`` and ``/docs`` describe them
    as FastAPI would.

    Args:
        key: the secp256k1 key statements are signed with.
        root: the only root documents may chain to (``TrustedRoot.aws()`` in production).
        verifier: the document verifier (default: one with a chain cache, shared by requests).
        offload: verify in a worker thread, so an event loop this app shares with other
            services (``reef up``) keeps turning between verifications. A verifier with
            processes of its own (``reef verifier serve``) passes ``False``: P-384 holds
            Python's lock, so the thread only adds switching (measured: 36 % more documents
            per second and a third of the p50 latency at 100 connections, bench/services.py).
    """
    checker = verifier if verifier is not None else NitroVerifier()

    async def answer(document: bytes, send: Send) -> None:
        if not document:
            await _send_text(send, 400, "bad request: the body is empty\n")
            return
        try:
            if offload:
                statement = await run_in_threadpool(
                    verify_and_sign, document, key, root=root, verifier=checker
                )
            else:
                statement = verify_and_sign(document, key, root=root, verifier=checker)
        except AttestationError as exc:
            await _send_text(send, 401, f"attestation rejected ({exc.reason}): {exc}\n")
            return
        await _send(send, 200, _JSON, _statement_json(statement))

    async def verify_raw(scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(scope, receive, send, MAX_DOCUMENT_SIZE)
        if body is not None:
            await answer(body, send)

    async def verify_hex(scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(scope, receive, send, _MAX_HEX_BODY)
        if body is None:
            return
        try:
            text = body.decode("ascii")
            document = parse_hex(text, name="the body") if text.strip() else b""
        except (UnicodeDecodeError, InputError) as exc:
            message = str(exc) if isinstance(exc, InputError) else "the body is not ASCII hex"
            await _send_text(send, 400, f"bad request: {message}\n")
            return
        if len(document) > MAX_DOCUMENT_SIZE:
            await _too_large(send, MAX_DOCUMENT_SIZE)
            return
        await answer(document, send)

    app = light_api(
        "reef attestation verifier",
        description="Verifies attestation documents and signs an EIP-712 statement "
        "(Oyster-compatible).",
    )
    routes = (
        (
            "/verify/raw",
            verify_raw,
            "Verify a raw attestation document",
            _body(
                "application/octet-stream",
                {"type": "string", "format": "binary", "maxLength": MAX_DOCUMENT_SIZE},
                "the COSE_Sign1 document bytes",
            ),
        ),
        (
            "/verify/hex",
            verify_hex,
            "Verify an attestation document given as hex",
            _body(
                "text/plain",
                {"type": "string", "maxLength": _MAX_HEX_BODY},
                "the document as hex (0x and surrounding whitespace allowed)",
            ),
        ),
    )
    for path, endpoint, summary, body in routes:
        app.add_asgi_route(
            path,
            endpoint,
            methods=["POST"],
            summary=summary,
            response_model=StatementModel,
            responses=_ERRORS,
            openapi_extra=body,
        )
    return app


_JSON = b"application/json"
_TEXT = b"text/plain; charset=utf-8"


def _statement_json(statement: VerifierStatement) -> bytes:
    """The statement's JSON as Starlette's JSONResponse renders ``statement.to_json()`` (compact
    separators, no ASCII escaping), byte for byte, written out directly.

    Every value is lowercase hex or an integer, so none needs escaping; ``json.dumps`` with these
    options builds an encoder for every call, about 2 % of the verifier's server CPU per request
    (py-spy under bench/services.py). A test compares the two.
    """
    return (
        f'{{"signature":"{statement.signature.hex()}","image_id":"{statement.image_id.hex()}",'
        f'"timestamp_ms":{statement.timestamp_ms},"public_key":"{statement.public_key.hex()}",'
        f'"user_data":"{statement.user_data.hex()}",'
        f'"verifier_public_key":"{statement.verifier_public_key.hex()}"}}'
    ).encode()


async def _send(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", content_type)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_text(send: Send, status: int, text: str) -> None:
    await _send(send, status, _TEXT, text.encode())


async def _read_body(scope: Scope, receive: Receive, send: Send, limit: int) -> bytes | None:
    """The request body, or ``None`` once a 413 (over ``limit``, never buffered past it) or a
    400 (the client went away) has been answered."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            await _too_large(send, limit)
            return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            await _send_text(send, 400, "bad request: the client went away\n")
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            await _too_large(send, limit)
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _too_large(send: Send, limit: int) -> None:
    await _send_text(send, 413, f"payload too large: the body may be at most {limit} bytes\n")


def load_verifier_key(path: str | Path) -> Secp256k1PrivateKey:
    """Read a secp256k1 secret key file: 32 raw bytes, or 64 hex digits (``0x`` and a trailing
    newline allowed) — Oyster's raw format and the usual text one.

    Raises:
        ConfigError: when the file is missing, unreadable, or holds no valid key.
    """
    hint = "reef verifier keygen makes one"
    try:
        secret = read_key_file(path, kind="secp256k1 secret key")
    except InputError as exc:
        raise ConfigError(exc.message, hint=f"{exc.hint}; {hint}") from exc
    try:
        return Secp256k1PrivateKey(secret)
    except InputError as exc:
        raise ConfigError(f"{path} is not a valid secp256k1 key: {exc.message}", hint=hint) from exc
