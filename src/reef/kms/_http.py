"""HTTP plumbing shared by the KMS servers: request limits and query parsing.

Oyster's root listeners cap request bodies at 1024 bytes and requests at 5 seconds (reference
oyster_cvm.md §2.3); reef keeps both and also caps the request URI, so that one slow or oversized
client costs the server a bounded amount and everyone else keeps being served.

The limits are enforced by the serving floor's request guard (:class:`reef._serve.Guard`, the
one every reef server uses), which :func:`kms_guard` sets to the KMS's numbers. Each KMS app wraps
itself in it rather than leaving it to the server, because the same limits must hold wherever the
app runs: the Scallop listener is served by :func:`reef.scallop.serve_asgi`, not by the floor's
uvicorn, and tests run the apps in process. On the floor the server's own guard (connection caps,
header limits, a larger body cap) sits outside this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from starlette.responses import Response
from starlette.types import ASGIApp, Scope

from reef._api import query_param, text_answer
from reef._peers import peer_group, retry_after_s
from reef.errors import InputError, KMSError

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.requests import Request

    from reef._api import LightApi

__all__ = [
    "MAX_BODY",
    "MAX_URI",
    "OneAtATime",
    "PATH_PARAM",
    "REQUEST_TIMEOUT_S",
    "VERSION_HEADER",
    "VERSION_PARAM",
    "add_kms_route",
    "answered_version",
    "busy_response",
    "error_response",
    "kms_guard",
    "parse_address",
    "parse_image_id",
    "parse_path",
    "parse_version",
    "query_params",
    "raw_uri",
    "request_group",
    "versioned_answer",
    "versioned_response",
]

VERSION_HEADER = "x-reef-kms-version"
"""The root seed version a KMS answer was derived under (every KMS listener sets it)."""
MAX_BODY = 1024
MAX_URI = 4096
REQUEST_TIMEOUT_S = 5.0

_HEX64 = re.compile(r"(?:0x)?[0-9a-fA-F]{64}")
_EVM_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_MAX_PATH = 1024


def kms_guard(
    app: ASGIApp,
    *,
    what: str = "KMS",
    max_body: int = MAX_BODY,
    max_uri: int = MAX_URI,
    timeout: float = REQUEST_TIMEOUT_S,
) -> ASGIApp:
    """``app`` behind the serving floor's request guard with the KMS's limits: 413 over
    ``max_body`` bytes, 414 over ``max_uri``, 503 after ``timeout`` seconds, each refusal a
    plain-text answer as :func:`error_response` (the floor's are JSON by default).

    For ``app.add_middleware(kms_guard, what=...)``; see the module docstring for why the KMS
    apps carry a guard of their own.
    """
    # The floor (and uvicorn with it) is imported only where a KMS app is built: KMS clients
    # import this module for its parsing and never serve.
    from reef._serve import Guard, Limits

    limits = Limits(max_body=max_body, max_uri=max_uri, request_timeout=timeout)
    return Guard(app, what, limits, _plain_refusal, media_type=_PLAIN)


_PLAIN = "text/plain; charset=utf-8"


def _plain_refusal(status: int, reason: str) -> bytes:
    return (reason + "\n").encode()


def error_response(status: int, message: str) -> Response:
    """A plain-text error answer (never signed: only 2xx answers are)."""
    return Response(_plain_refusal(status, message), status_code=status, media_type=_PLAIN)


def busy_response(wait_s: float, message: str) -> Response:
    """A 429 answer saying what the client asked too much of, and when to ask again: in the
    text and in ``Retry-After`` (whole seconds, at least 1)."""
    seconds = retry_after_s(wait_s)
    text = f"{message}; retry after {seconds} s"
    return Response(
        _plain_refusal(429, text),
        status_code=429,
        media_type=_PLAIN,
        headers={"retry-after": str(seconds)},
    )


def versioned_response(
    body: bytes, version: int, media: str = "application/octet-stream"
) -> Response:
    """A 2xx answer derived under root seed ``version``, which it names in :data:`VERSION_HEADER`."""
    return Response(body, media_type=media, headers={VERSION_HEADER: str(version)})


def raw_uri(scope: Scope) -> bytes:
    """The request's path and query exactly as received, the string a response signature binds."""
    path: bytes = scope.get("raw_path") or str(scope["path"]).encode()
    query: bytes = scope.get("query_string", b"")
    return path + (b"?" + query if query else b"")


def query_params(scope: Scope) -> dict[str, str]:
    """The request's query parameters, decoded strictly (the last of repeated names wins).

    Starlette decodes percent-escapes that are not UTF-8 to U+FFFD, so ``path=%ff``,
    ``path=%fe`` and ``path=%EF%BF%BD`` would all name the same key; here only the last is
    accepted (it is the UTF-8 encoding of U+FFFD) and the others are refused. Raw bytes outside
    ASCII are refused too, so a byte and its percent-escaped UTF-8 form cannot collide either.

    Raises:
        InputError: when the query string holds raw non-ASCII bytes or a parameter is not
            valid UTF-8 once percent-decoded.
    """
    raw: bytes = scope.get("query_string", b"")
    if not raw.isascii():
        raise InputError("the query string holds raw non-ASCII bytes: percent-encode them as UTF-8")
    try:
        pairs = urllib.parse.parse_qsl(
            raw.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict"
        )
    except UnicodeDecodeError as exc:
        raise InputError(
            "a query parameter is not valid UTF-8 once percent-decoded",
            hint="percent-encode the UTF-8 bytes of the text (e.g. %C3%A9 for é)",
        ) from exc
    return dict(pairs)


_K = TypeVar("_K", bound=Hashable)


class OneAtATime(Generic[_K]):
    """One turn at a time per key (a client address, an image id), each key its own queue.

    What a server makes dearly for strangers (an attestation, a call to the chain) is made
    for one key at a time: a client cannot have more of it under way by opening more
    connections, nor hold up anyone under another key. Queues are dropped when empty.
    """

    def __init__(self) -> None:
        self._queues: dict[_K, tuple[asyncio.Lock, list[int]]] = {}

    def __len__(self) -> int:
        return len(self._queues)

    @contextlib.asynccontextmanager
    async def turn(self, key: _K) -> AsyncIterator[None]:
        """Wait for ``key``'s turn, and hold it for the ``async with`` block."""
        lock, users = self._queues.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._queues[key]


def request_group(request: Request) -> str:
    """The client group (:func:`reef._peers.peer_group`) a request's turns and budget are
    counted under."""
    return peer_group(request.client.host if request.client is not None else "")


def parse_image_id(text: str) -> bytes:
    """A 32-byte image id from 64 hex digits (``0x`` allowed).

    Raises:
        InputError: when the text is not 64 hex digits.
    """
    if not _HEX64.fullmatch(text):
        raise InputError(f"image_id must be 64 hex digits, got {text[:80]!r}")
    return bytes.fromhex(text.removeprefix("0x"))


def parse_address(text: str, *, evm: bool) -> str:
    """A contract address, returned exactly as given (the derivation lowercases it itself).

    Raises:
        InputError: when it is empty, too long, or (``evm``) not ``0x`` + 40 hex digits.
    """
    if evm and not _EVM_ADDRESS.fullmatch(text):
        raise InputError(f"address must be 0x and 40 hex digits, got {text[:80]!r}")
    if not text or len(text) > 128 or not text.isprintable() or " " in text:
        raise InputError(f"address must be 1 to 128 printable characters, got {text[:80]!r}")
    return text


def parse_path(params: Mapping[str, str]) -> str:
    """The ``path`` query parameter (UTF-8; may be empty, as in Oyster).

    Raises:
        InputError: when it is missing or longer than 1024 characters.
    """
    path = params.get("path")
    if path is None:
        raise InputError("missing query parameter path")
    if len(path) > _MAX_PATH:
        raise InputError(f"path is longer than {_MAX_PATH} characters")
    return path


def parse_version(params: Mapping[str, str]) -> int | None:
    """The optional ``version`` query parameter (a reef extension; absent means current).

    Raises:
        InputError: when it is not a decimal integer in [0, 2**32 - 1].
    """
    text = params.get("version")
    if text is None or text == "":
        return None
    # isascii: str.isdigit also takes digits such as "²", which int() refuses.
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > 2**32 - 1:
        raise InputError(f"version must be a decimal integer, got {text[:20]!r}")
    return int(text)


def answered_version(header: str, requested: int | None) -> int:
    """The root seed version a KMS answer names in :data:`VERSION_HEADER`, which must be
    ``requested`` when the request named one (every KMS client reads answers this way).

    Raises:
        KMSError: when the header is not a decimal integer, or names another version.
    """
    if not (header.isascii() and header.isdigit()):
        raise KMSError(f"the KMS answered a malformed {VERSION_HEADER}: {header[:20]!r}")
    answered = int(header)
    if requested is not None and answered != requested:
        raise KMSError(f"asked the KMS for version {requested}, it answered {answered}")
    return answered


# ---- OpenAPI descriptions shared by the KMS's FastAPI apps ----


def versioned_answer(
    description: str,
    *,
    media: str = "application/octet-stream",
    schema: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A 200 answer of :func:`versioned_response` (binary unless told), with ``headers`` also set.

    Args:
        schema: the body's schema (default: binary).
        headers: OpenAPI descriptions of headers the answer carries besides the version.
    """
    return {
        "description": description,
        "headers": {
            **(headers or {}),
            VERSION_HEADER: {"description": "the root seed version", "schema": {"type": "string"}},
        },
        "content": {media: {"schema": schema or {"type": "string", "format": "binary"}}},
    }


VERSION_PARAM = query_param(
    "version", "a root seed version (default: the current one)", r"^[0-9]+$"
)
PATH_PARAM = query_param("path", "the derivation path (UTF-8; default empty)")
_LIMITED_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: text_answer("the request body is over the limit"),
    414: text_answer("the request URI is over the limit"),
}
"""What the request limits (:func:`kms_guard`) answer before any handler runs."""


def add_kms_route(
    app: FastAPI | LightApi,
    path: str,
    handler: Callable[[Request], Awaitable[Response]],
    *,
    summary: str,
    ok: dict[str, Any],
    errors: Mapping[int, str],
    parameters: Sequence[dict[str, Any]] = (),
    request_body: dict[str, Any] | None = None,
    method: str = "GET",
    name: str | None = None,
) -> None:
    """Add a KMS route to ``app``: ``handler`` answers its own :class:`Response` (raw bytes or
    text, never a model), described as ``ok`` for 200, a plain-text answer for each of
    ``errors`` (status: what it means) and those of the request limits.

    Args:
        parameters: the query parameters (:func:`reef._api.query_param`), which the handler
            parses itself.
        request_body: the OpenAPI ``requestBody`` (a route that reads one itself).
        name: the route's name (the handler's by default).
    """
    described: dict[int | str, dict[str, Any]] = {200: ok}
    described.update((status, text_answer(text)) for status, text in errors.items())
    extra: dict[str, Any] = {}
    if parameters:
        extra["parameters"] = list(parameters)
    if request_body is not None:
        extra["requestBody"] = request_body
    options: dict[str, Any] = {} if name is None else {"name": name}
    app.add_api_route(
        path,
        handler,
        methods=[method],
        summary=summary,
        response_class=Response,
        responses={**described, **_LIMITED_RESPONSES},
        openapi_extra=extra,
        **options,
    )
