"""The trusted base's own services: dev-TEE sealing, the debug console stream, and their clients.

The attestation servers are reef.attestation's (Oyster's endpoints); the KMS derive server is
reef.kms's. This module adds what the dev TEE itself provides:

- **Sealing** (inside the enclave at ``127.0.0.1:1210``): ``POST /seal`` encrypts the request body
  under ``DevAuthority.sealing_key(image_id)`` for *this enclave's* attested image id (debug
  enclaves have their own, since their PCRs are zero); ``POST /unseal`` reverses it. Only the same
  image (same code, same init params, same debug flag) on the same dev TEE can unseal. Nitro has
  no such call (sealing there goes through the KMS); reef's KMS root server, which runs as an
  enclave, needs it to keep its root seed on disk. A sealed blob is ``0x01 || nonce (12) ||
  AES-256-GCM(ciphertext || tag)`` with associated data ``"reef.dev-tee.sealed.v1" || image_id``.
  :class:`DevTeeSealer` is the client, shaped as ``reef.kms.Sealer``.
- **Console** (debug only, on the host as Oyster's logger is): ``GET /logs/stream?start_from=N``
  (server-sent events, one per line, ``id:`` the line number), ``GET /logs/history?log_id=N&
  offset=K`` (JSON list of up to K lines ending at line N), ``GET /logs/tail-log-id``
  (``{"log_id": N}``, the last line's number).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reef.errors import InputError, KMSError, ServiceError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import httpx
    from starlette.requests import Request
    from starlette.responses import Response

    from reef._api import LightApi
    from reef._fetch import BoundedAnswer

    Endpoint = Callable[[Request], Awaitable[Response]]

# Starlette and cryptography load when an app is built or a seal made, not on import: an
# enclave's supervisor imports this module for its constants, before it starts the enclave's
# network, and loads them while pasta comes up.

__all__ = [
    "MAX_CONSOLE_FILE_BYTES",
    "MAX_CONSOLE_MEMORY",
    "ROTATED_SUFFIX",
    "SEALING_PORT",
    "Console",
    "DevTeeSealer",
    "RotatingFile",
    "console_app",
    "dev_seal",
    "dev_unseal",
    "sealing_app",
    "split_console",
]

SEALING_PORT = 1210
_SEAL_VERSION = b"\x01"
_SEAL_AAD = b"reef.dev-tee.sealed.v1"
_NONCE = 12
MAX_SEAL_BYTES = 1 << 20
MAX_SEAL_ANSWER_BYTES = MAX_SEAL_BYTES + 4096
"""The most :class:`DevTeeSealer` reads of an answer: a sealed blob is its plaintext and 29
bytes, an unsealed one at most :data:`MAX_SEAL_BYTES`, an error a line."""


def dev_seal(key: bytes, image_id: bytes, plaintext: bytes, *, nonce: bytes | None = None) -> bytes:
    """Seal under a dev-TEE sealing key (see the module docstring for the format)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(_NONCE) if nonce is None else nonce
    return _SEAL_VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, _SEAL_AAD + image_id)


def dev_unseal(key: bytes, image_id: bytes, sealed: bytes) -> bytes:
    """Open a blob from :func:`dev_seal`.

    Raises:
        InputError: when the blob is malformed, or was sealed by another image or dev TEE.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(sealed) < 1 + _NONCE + 16 or sealed[:1] != _SEAL_VERSION:
        raise InputError("not a dev-TEE sealed blob (wrong version or truncated)")
    try:
        return AESGCM(key).decrypt(
            sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :], _SEAL_AAD + image_id
        )
    except InvalidTag as exc:
        raise InputError(
            "the sealed blob does not open in this enclave",
            hint="it was sealed by another image id, another dev TEE, or it was altered",
        ) from exc


async def _body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_SEAL_BYTES:
            raise InputError(f"the body is larger than {MAX_SEAL_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def sealing_app(key: bytes, image_id: bytes) -> LightApi:
    """The enclave-internal sealing service of one enclave: bytes in, bytes out; its errors are
    plain text (:class:`DevTeeSealer` shows them in its own). A light API (Starlette; FastAPI
    only when ``/openapi.json`` is asked), described at ``/openapi.json`` and ``/docs``."""
    from starlette.responses import PlainTextResponse, Response

    from reef._api import light_api, text_answer

    async def seal(request: Request) -> Response:
        try:
            data = await _body(request)
        except InputError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=413)
        return Response(dev_seal(key, image_id, data), media_type="application/octet-stream")

    async def unseal(request: Request) -> Response:
        try:
            data = await _body(request)
            plain = dev_unseal(key, image_id, data)
        except InputError as exc:
            # An oversized body cannot be a sealed blob either: one answer for both.
            return PlainTextResponse(f"{exc}\n", status_code=400)
        return Response(plain, media_type="application/octet-stream")

    app = light_api(
        "reef dev TEE sealing",
        description="Seal data to this enclave's image on this dev TEE (inside the enclave only, "
        f"127.0.0.1:{SEALING_PORT}): only the same image on the same dev TEE unseals it.",
    )
    for path, endpoint, summary, refusal in (
        ("/seal", seal, "Seal the body to this enclave's image", None),
        (
            "/unseal",
            unseal,
            "Open a blob sealed by this image on this dev TEE",
            "not a sealed blob of this image on this dev TEE (or over the size limit)",
        ),
    ):
        responses: dict[int | str, dict[str, Any]] = {
            200: {
                "description": "the sealed blob" if path == "/seal" else "the plaintext",
                "content": {"application/octet-stream": {"schema": _BINARY}},
            },
        }
        if refusal is None:
            responses[413] = text_answer(f"the body is over {MAX_SEAL_BYTES} bytes")
        else:
            responses[400] = text_answer(refusal)
        app.add_api_route(
            path,
            _resolved(endpoint),
            methods=["POST"],
            summary=summary,
            response_class=Response,
            responses=responses,
            openapi_extra={
                "requestBody": {
                    "required": False,
                    "content": {"application/octet-stream": {"schema": _BINARY}},
                }
            },
        )
    return app


_BINARY = {"type": "string", "format": "binary"}


def _resolved(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` with its signature's types as objects, not strings: FastAPI resolves string
    annotations in the module's globals, where Starlette's types are not (they load with an app,
    not with this module), when it describes a light API."""
    import inspect

    from starlette.requests import Request
    from starlette.responses import Response

    request = inspect.Parameter(
        "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
    )
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [request], return_annotation=Response
    )
    return endpoint


class DevTeeSealer:
    """Seal and unseal through the dev TEE from inside an enclave (a ``reef.kms.Sealer``).

    Args:
        url: the sealing service (``$REEF_SEALING_URL``; inside an enclave
            ``http://127.0.0.1:1210``).
        transport: an httpx transport (tests).
        timeout: seconds one call may take, answer included.

    Its answers are read within ``timeout`` and :data:`MAX_SEAL_ANSWER_BYTES` (``reef._fetch``):
    ``$REEF_SEALING_URL`` is whatever the process environment says, and the KMS root calls it as
    it starts, so a server that trickles its head or sends a gigabyte must not hold or fill it.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = (
            url or os.environ.get("REEF_SEALING_URL") or f"http://127.0.0.1:{SEALING_PORT}"
        ).rstrip("/")
        self._transport = transport
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"DevTeeSealer({self.url!r})"

    def _post(self, route: str, data: bytes) -> BoundedAnswer:
        # The app's side only: the supervisor serves, it never calls this.
        import httpx

        from reef._fetch import fetch_blocking

        hint = "sealing is available inside local enclaves only"
        try:
            request = httpx.Request("POST", self.url + route, content=data)
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise ServiceError(
                f"the dev TEE sealing service's URL {self.url!r} is no URL: {exc}", hint=hint
            ) from exc
        return fetch_blocking(
            request,
            transport=self._transport,
            timeout=self._timeout,
            max_bytes=MAX_SEAL_ANSWER_BYTES,
            deadline_s=self._timeout,
            what="the dev TEE sealing service",
            hint=hint,
        )

    def seal(self, plaintext: bytes) -> bytes:
        """Raises :class:`ServiceError` when the service is unreachable, refuses, or answers
        too slowly or too much."""
        answer = self._post("/seal", plaintext)
        if answer.status != 200:
            raise ServiceError(f"the sealing service refused: {_quoted(answer.body)}")
        return answer.body

    def unseal(self, sealed: bytes) -> bytes:
        """Raises :class:`KMSError` when the blob was not sealed by this image on this dev TEE;
        :class:`ServiceError` as :meth:`seal`."""
        answer = self._post("/unseal", sealed)
        if answer.status == 400:
            raise KMSError(
                f"the sealed blob does not open in this enclave: {_quoted(answer.body)}",
                hint="it was sealed by another image, another dev TEE, or it was altered",
            )
        if answer.status != 200:
            raise ServiceError(f"the sealing service failed: {_quoted(answer.body)}")
        return answer.body


def _quoted(body: bytes) -> str:
    """An error answer's text, as a message may quote it (stripped, at most 300 characters)."""
    return body.decode("utf-8", "replace").strip()[:300]


MAX_CONSOLE_LINE = 16384
MAX_CONSOLE_MEMORY = 4 << 20
"""Bytes of Python strings a console keeps in memory (besides its line count): its lines live
in the supervisor, a process outside the enclave's limits, so the app must not choose their
size (10 000 lines of 16 KiB of undecodable bytes were 320 MiB there)."""
MAX_CONSOLE_FILE_BYTES = 8 << 20
"""Bytes of ``console.log`` before it is rotated to ``console.log.1`` (the one kept before it):
a console's files on the host's disk never pass twice this, whatever the app prints."""
ROTATED_SUFFIX = ".1"
"""The suffix of a rotated :class:`RotatingFile` (a console's ``console.log.1``)."""


def split_console(buffer: bytes, *, final: bool = False) -> tuple[list[str], bytes]:
    """Complete console lines in ``buffer`` and the unfinished rest.

    Lines longer than :data:`MAX_CONSOLE_LINE` bytes are cut into pieces of that size (an
    unfinished one too, so the buffer never grows without bound); ``final`` flushes the rest.
    """
    *complete, rest = buffer.split(b"\n")
    if final and rest:
        complete.append(rest)
        rest = b""
    pieces: list[bytes] = []
    for line in complete:
        pieces += [line[i : i + MAX_CONSOLE_LINE] for i in range(0, len(line), MAX_CONSOLE_LINE)]
        if not line:
            pieces.append(b"")
    while len(rest) > MAX_CONSOLE_LINE:
        pieces.append(rest[:MAX_CONSOLE_LINE])
        rest = rest[MAX_CONSOLE_LINE:]
    return [p.decode("utf-8", "replace").rstrip("\r") for p in pieces], rest


class RotatingFile:
    """An append-only file that never passes ``max_bytes``: a write that would is preceded by
    renaming it to ``<path>.1`` (dropping the previous one), so the pair stays under twice that.
    For what an enclave's app can make its supervisor write on the host's disk."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._file = path.open("ab")
        self._written = self._file.tell()

    def write(self, data: bytes) -> None:
        if self._written and self._written + len(data) > self._max_bytes:
            self._file.close()
            os.replace(self.path, self.path.with_name(self.path.name + ROTATED_SUFFIX))
            self._file = self.path.open("ab")
            self._written = 0
        self._file.write(data)
        self._file.flush()
        self._written += len(data)

    def close(self) -> None:
        self._file.close()


class Console:
    """An enclave's console lines (debug mode), kept in memory and in a file, with followers.

    Both are bounded, since the app decides what it prints and the console lives in its
    supervisor, outside the enclave's limits: memory keeps the last ``keep`` lines within
    ``max_memory`` bytes of strings (lines keep their numbers: older ones are only forgotten),
    and the file is rotated to ``<path>.1`` past ``max_file_bytes`` (the previous ``.1`` is
    dropped), so the console's disk use stays under twice that.
    """

    def __init__(
        self,
        path: Path,
        *,
        keep: int = 10_000,
        max_memory: int = MAX_CONSOLE_MEMORY,
        max_file_bytes: int = MAX_CONSOLE_FILE_BYTES,
    ) -> None:
        self.path = path
        self._keep = keep
        self._max_memory = max_memory
        self._lines: list[str] = []
        self._held = 0  # bytes of the strings in _lines
        self._first = 0
        self._waiters: set[asyncio.Event] = set()
        self._closed = False
        self._file = RotatingFile(path, max_file_bytes)

    @property
    def last_id(self) -> int:
        """Number of the last line (-1 before any)."""
        return self._first + len(self._lines) - 1

    def append(self, line: str) -> None:
        self._lines.append(line)
        self._held += sys.getsizeof(line)
        drop = 0
        held = self._held
        while len(self._lines) - drop > 1 and (
            len(self._lines) - drop > self._keep or held > self._max_memory
        ):
            held -= sys.getsizeof(self._lines[drop])
            drop += 1
        if drop:
            del self._lines[:drop]
            self._first += drop
            self._held = held
        if not self._closed:
            self._file.write((line + "\n").encode())
        for waiter in self._waiters:
            waiter.set()

    def close(self) -> None:
        self._closed = True
        self._file.close()
        for waiter in self._waiters:
            waiter.set()

    def history(self, log_id: int | None, count: int) -> list[dict[str, object]]:
        end = self.last_id if log_id is None else min(log_id, self.last_id)
        start = max(self._first, end - count + 1)
        return [{"log_id": i, "line": self._lines[i - self._first]} for i in range(start, end + 1)]

    async def follow(self, start_from: int | None) -> AsyncIterator[tuple[int, str]]:
        """Lines from ``start_from`` (default: after the current last) as they arrive."""
        position = self.last_id + 1 if start_from is None else max(start_from, self._first)
        event = asyncio.Event()
        self._waiters.add(event)
        try:
            while True:
                while position <= self.last_id:
                    if position < self._first:
                        position = self._first
                    yield position, self._lines[position - self._first]
                    position += 1
                if self._closed:
                    return
                event.clear()
                await event.wait()
        finally:
            self._waiters.discard(event)


_CORS = {"Access-Control-Allow-Origin": "*"}
_LOG_ID = re.compile(r"[0-9]{1,18}")


def console_app(console: Console) -> LightApi:
    """Oyster's logger endpoints over one enclave's console (CORS open, as Oyster's), described
    at ``/openapi.json`` and ``/docs``; a malformed query is a JSON ``{"error": reason}``."""
    from starlette.responses import JSONResponse, Response, StreamingResponse

    from reef._api import json_error, light_api, query_param

    def _int(request: Request, name: str) -> int | None:
        value = request.query_params.get(name)
        if value is None or value == "":
            return None
        # ASCII digits only (str.isdigit takes "²", which int() refuses), and a bounded length.
        if not _LOG_ID.fullmatch(value):
            raise InputError(f"{name} must be a non-negative integer (at most 18 digits)")
        return int(value)

    def refused(exc: InputError) -> Response:
        return json_error(400, exc.message)

    async def stream(request: Request) -> Response:
        try:
            start = _int(request, "start_from")
        except InputError as exc:
            return refused(exc)

        async def events() -> AsyncIterator[bytes]:
            yield b": reef dev TEE console\n\n"
            async for number, line in console.follow(start):
                # A lone CR ends a line of an event stream (as LF does, which a console line
                # never holds): each CR-separated piece is a data line of its own, which a
                # client joins with LF, so the app's text cannot add fields (id:, event:,
                # retry:) or events to the stream its readers follow.
                data = "\ndata: ".join(line.split("\r"))
                yield f"id: {number}\ndata: {data}\n\n".encode()

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", **_CORS},
        )

    async def history(request: Request) -> Response:
        try:
            log_id = _int(request, "log_id")
            count = _int(request, "offset")
        except InputError as exc:
            return refused(exc)
        return JSONResponse(console.history(log_id, min(count or 10, 1000)), headers=_CORS)

    async def tail(_: Request) -> Response:
        return JSONResponse({"log_id": console.last_id}, headers=_CORS)

    app = light_api(
        "reef dev TEE console",
        description="A debug enclave's console, as Oyster's logger serves it: live (server-sent "
        "events), its recent history, and the last line's number.",
    )
    bad = {400: _json(_ERROR, "a malformed query parameter")}
    app.add_api_route(
        "/logs/stream",
        _resolved(stream),
        methods=["GET"],
        summary="The console as it is written (one event per line, id: its number)",
        response_class=Response,
        responses={
            200: {
                "description": "`id: N` and `data: line` per line; a comment first",
                "content": {"text/event-stream": {"schema": _EVENT}},
            },
            **bad,
        },
        openapi_extra={
            "parameters": [
                query_param(
                    "start_from", "the first line's number (default: after the last)", _DIGITS
                )
            ]
        },
    )
    app.add_api_route(
        "/logs/history",
        _resolved(history),
        methods=["GET"],
        summary="Up to offset lines (default 10, at most 1000) ending at line log_id",
        responses={200: _json(_LINES, "the lines, oldest first"), **bad},
        openapi_extra={
            "parameters": [
                query_param("log_id", "the last line's number (default: the last line)", _DIGITS),
                query_param("offset", "how many lines (default 10, at most 1000)", _DIGITS),
            ]
        },
    )
    app.add_api_route(
        "/logs/tail-log-id",
        _resolved(tail),
        methods=["GET"],
        summary="The last line's number (-1 before any)",
        responses={200: _json(_TAIL, "the last line's number")},
    )
    return app


_DIGITS = "^[0-9]*$"  # how OpenAPI describes the console's numeric query parameters


# The console's answers as JSON Schema (pydantic models would load pydantic into every debug
# enclave's supervisor; FastAPI reads these only when /openapi.json is asked).
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
_LINES = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"log_id": {"type": "integer"}, "line": {"type": "string"}},
        "required": ["log_id", "line"],
    },
}
_EVENT = {
    "description": "one server-sent event: a console line and its number",
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "data": {"type": "string"},
    },
    "required": ["id", "data"],
}
_TAIL = {
    "type": "object",
    "properties": {"log_id": {"type": "integer", "minimum": -1}},
    "required": ["log_id"],
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}
