"""One bounded HTTP reader for every answer reef reads from a server it does not control.

An enclave's attestation server, a provider's control plane (any account may register one, at
any URL) and a prover's input verification service (reached across a host that may answer in
its place) are strangers: whoever answers may send a gigabyte, or one byte a second for ever.
httpx's timeouts bound each socket operation, not an answer, so a server that trickles its
response head or its body is never late for any single read. :func:`read_bounded` bounds the
whole exchange instead:

* in time: one deadline (``asyncio.timeout``) covers connecting, the response head and the body;
* in size: a declared ``content-length`` over the bound is refused before any of the body is
  read, and the body is counted while it streams, so at most ``max_bytes`` (plus one network
  read) are held. ``accept-encoding: identity`` is asked for and a compressed answer refused:
  httpx inflates a whole read at once, so 64 KiB of gzip would be 64 MiB in memory before it
  could be counted;
* in its failures: httpx's errors (and the ``UnicodeError`` an unencodable host name raises
  from deep in the stack) become :class:`FetchError`, a :class:`~reef.errors.ServiceError` that
  names the URL, says which bound was hit (``reason``) and carries the caller's hint.

:func:`fetch_blocking` is its twin for blocking callers (the CLI, thread pools): it runs
:func:`read_bounded` on an event loop of its own, so the same deadline covers the head. Only a
blocking-only transport (``httpx.WSGITransport``, an in-process test double) is read by a
blocking client instead, with the same byte bound and the deadline checked at each piece of the
body: such a transport has no socket to trickle a head through.

This is a foundation module, below every package: it imports only httpx (the HTTP client every
reef client uses, and whose ``transport=`` is the test seam), :mod:`reef.errors` and
:mod:`reef.encoding`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import httpx

from reef.encoding import terminal_text
from reef.errors import MisuseError, ServiceError

__all__ = [
    "BoundedAnswer",
    "FetchError",
    "fetch_blocking",
    "read_bounded",
    "request_to",
    "run_blocking",
]

FetchFailure = Literal["unreachable", "too_large", "too_late", "encoded"]
_IDENTITY: Final = ("", "identity")
_T = TypeVar("_T")


class FetchError(ServiceError):
    """A stranger's HTTP answer could not be read within reef's bounds.

    ``reason`` says which: ``"unreachable"`` (no connection, or not HTTP; the httpx error is the
    ``__cause__``), ``"too_large"``, ``"too_late"`` or ``"encoded"`` (a content encoding that
    was not asked for). ``url`` is the request's URL without its query.
    """

    def __init__(
        self, message: str, *, url: str, reason: FetchFailure, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.url = url
        self.reason: FetchFailure = reason


@dataclass(frozen=True, slots=True)
class BoundedAnswer:
    """An answer read whole within the bounds: its status, headers and body (any status:
    callers quote an error answer's text)."""

    url: str
    status: int
    headers: httpx.Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class _Bounds:
    """What one exchange may cost, and how its failures are worded."""

    url: str
    max_bytes: int
    deadline_s: float
    what: str
    hint: str | None

    def fail(self, reason: FetchFailure, message: str) -> FetchError:
        return FetchError(message, url=self.url, reason=reason, hint=self.hint)

    def unreachable(self, exc: Exception) -> FetchError:
        cause = terminal_text(str(exc) or type(exc).__name__)[:300]
        return self.fail("unreachable", f"cannot reach {self.what} at {self.url}: {cause}")

    def too_large(self) -> FetchError:
        return self.fail(
            "too_large",
            f"{self.what} at {self.url} answered more than {self.max_bytes} bytes, larger than "
            "any honest answer; not read further",
        )

    def too_late(self) -> FetchError:
        return self.fail(
            "too_late", f"{self.what} at {self.url} did not answer within {self.deadline_s:g} s"
        )

    def check_head(self, response: httpx.Response) -> None:
        """Refuse, before reading any of the body, an answer declared too long or compressed."""
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise self.too_large()
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding not in _IDENTITY:
            raise self.fail(
                "encoded",
                f"{self.what} at {self.url} answered in the "
                f"{terminal_text(encoding)[:40]!r} content encoding, which it was not asked for; "
                "not read",
            )

    def answer(self, response: httpx.Response, body: bytearray) -> BoundedAnswer:
        return BoundedAnswer(self.url, response.status_code, response.headers, bytes(body))


def _bounds(
    request: httpx.Request, max_bytes: int, deadline_s: float, what: str, hint: str | None
) -> _Bounds:
    if max_bytes < 1 or not deadline_s > 0:
        raise MisuseError(
            f"a bounded read needs max_bytes >= 1 and deadline_s > 0, got {max_bytes} and "
            f"{deadline_s}"
        )
    # The identity encoding keeps the count honest (see the module docstring); a server that
    # ignores it is refused in check_head.
    request.headers["accept-encoding"] = "identity"
    url = str(request.url.copy_with(query=None))
    return _Bounds(url, max_bytes, deadline_s, what, hint)


def request_to(
    method: str,
    url: str,
    *,
    what: str,
    hint: str | None = None,
    params: Mapping[str, str] | None = None,
    json: object = None,
) -> httpx.Request:
    """The request ``method url`` (with a JSON body unless ``json`` is None), for a URL that a
    stranger may have written (a provider's, on chain).

    Raises:
        FetchError: ``url`` is no URL httpx can send to (reason ``"unreachable"``).
    """
    try:
        return httpx.Request(method, url, params=params, json=json)
    except (httpx.InvalidURL, UnicodeError) as exc:
        shown = terminal_text(repr(url[:200]))
        raise FetchError(
            f"{what} at {shown} cannot be reached: that is no URL ({terminal_text(str(exc))[:200]})",
            url=url,
            reason="unreachable",
            hint=hint,
        ) from exc


async def read_bounded(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    max_bytes: int,
    deadline_s: float,
    what: str,
    hint: str | None = None,
) -> BoundedAnswer:
    """Send ``request`` through ``client`` and read its answer within ``deadline_s`` seconds
    (head and body together) and ``max_bytes`` bytes of body.

    Args:
        client: the client to send through (its transport and per-operation timeouts).
        request: the request (``client.build_request`` or ``httpx.Request``); it is sent with
            ``accept-encoding: identity``.
        max_bytes: the longest body read; a longer one is refused, not read to its end.
        deadline_s: the time the whole exchange may take.
        what: who answers, for messages (``"the provider's control plane"``).
        hint: what the user can do when the answer cannot be read.

    Returns:
        The answer, whatever its status.

    Raises:
        FetchError: unreachable, too large, too late or compressed (its ``reason``).
        MisuseError: a bound that is not positive.
    """
    bounds = _bounds(request, max_bytes, deadline_s, what, hint)
    timer = asyncio.timeout(deadline_s)
    try:
        async with timer:
            response = await client.send(request, stream=True)
            try:
                bounds.check_head(response)
                body = bytearray()
                # aiter_bytes, not aiter_raw: an in-process transport's answer may be read already.
                async for piece in response.aiter_bytes():
                    body += piece
                    if len(body) > max_bytes:
                        raise bounds.too_large()
            finally:
                await response.aclose()
    except TimeoutError as exc:
        if not timer.expired():
            raise bounds.unreachable(exc) from exc
        raise bounds.too_late() from exc
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
        # UnicodeError: a host name the IDNA codec cannot encode, raised while connecting.
        raise bounds.unreachable(exc) from exc
    return bounds.answer(response, body)


def fetch_blocking(
    request: httpx.Request,
    *,
    transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    timeout: float | httpx.Timeout,
    max_bytes: int,
    deadline_s: float,
    what: str,
    hint: str | None = None,
) -> BoundedAnswer:
    """:func:`read_bounded` for blocking code, through a client of its own.

    Over the network (no ``transport``) or an async-capable transport, the asyncio reader runs
    on an event loop of its own (:func:`run_blocking`), so the deadline covers the head too. A
    blocking-only transport is read by a blocking client, the deadline checked at each piece
    of the body (see the module docstring).

    Args:
        transport: the transport to send through; a new connection otherwise.
        timeout: httpx's per-operation timeout (connect, each read).
        max_bytes, deadline_s, what, hint: as :func:`read_bounded`.

    Raises:
        FetchError, MisuseError: as :func:`read_bounded`.
    """
    if transport is None or isinstance(transport, httpx.AsyncBaseTransport):
        return run_blocking(
            _read_with_client(request, transport, timeout, max_bytes, deadline_s, what, hint)
        )
    bounds = _bounds(request, max_bytes, deadline_s, what, hint)
    answer_by = time.monotonic() + deadline_s
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            response = client.send(_with_defaults(client, request), stream=True)
            try:
                bounds.check_head(response)
                body = bytearray()
                for piece in response.iter_bytes():
                    body += piece
                    if len(body) > max_bytes:
                        raise bounds.too_large()
                    if time.monotonic() > answer_by:
                        raise bounds.too_late()
            finally:
                response.close()
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
        raise bounds.unreachable(exc) from exc
    return bounds.answer(response, body)


async def _read_with_client(
    request: httpx.Request,
    transport: httpx.AsyncBaseTransport | None,
    per_operation: float | httpx.Timeout,
    max_bytes: int,
    deadline_s: float,
    what: str,
    hint: str | None,
) -> BoundedAnswer:
    async with httpx.AsyncClient(timeout=per_operation, transport=transport) as client:
        return await read_bounded(
            client,
            _with_defaults(client, request),
            max_bytes=max_bytes,
            deadline_s=deadline_s,
            what=what,
            hint=hint,
        )


def _with_defaults(
    client: httpx.Client | httpx.AsyncClient, request: httpx.Request
) -> httpx.Request:
    """``request`` with the client's default headers it lacks (``user-agent``, ``accept``), as
    ``client.get`` would send them: ``send`` adds none."""
    for name, value in client.headers.items():
        request.headers.setdefault(name, value)
    return request


def run_blocking(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` to its end on an event loop of its own, from blocking code: in this
    thread, or in a new one when this thread already runs a loop (a blocking call made from
    async code still blocks its caller, but does not fail).

    The loop is never made the thread's current loop, so a loop the caller set (and does not
    run) stays set.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
            return runner.run(coroutine)
    out: list[_T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
                out.append(runner.run(coroutine))
        except BaseException as exc:  # raised again in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run, name="reef-bounded-fetch")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return out[0]
