"""The web3.py HTTP provider reef talks to a JSON-RPC node through.

A node may be a stranger's (a public RPC, a host's), and web3.py's own HTTP path trusts it three
ways :class:`BoundedHTTPProvider` does not:

* **Nesting.** web3.py parses answers with ``json.loads``, and importing web3 (py_ecc) raises
  Python's recursion limit to 100 000, so an answer of about 70 000 ``[`` is not a RecursionError
  but a segmentation fault of the whole process. Answers are parsed with
  :func:`reef.encoding.loads_bounded`: a nesting bomb is an :class:`~reef.errors.RPCError`.
* **Size.** web3.py reads the whole answer into memory, however large (a 10 GB answer is 10 GB
  of this process). At most :data:`MAX_ANSWER_BYTES` (256 MiB, as the indexer's reader) are
  read; a longer answer is an :class:`~reef.errors.RPCError`.
* **Time.** requests' timeout bounds each socket read, not the answer: a node sending a byte
  every 20 s (in its headers or its body) kept a ``reef`` command waiting for ever. The whole
  answer, headers and body, must come within twice the timeout, or it is an
  :class:`~reef.errors.RPCError`.

The requests go out through the indexer's bounded transport (the standard library's
``http.client`` over kept-alive connections, in :mod:`reef.chain._rpc`), which bounds
every socket read by the answer's deadline, so headers cannot drip either. Where that transport
cannot stand in for requests (a proxy from the environment, an explicit ``requests`` session,
TLS options in ``request_kwargs``, requests' own CA bundle variables), requests is used, its
answer streamed under the same byte bound and deadline (give or take one read; the headers then
within the proxy's or requests' own per-read timeouts). web3.py's request building, batching,
retries and middleware are unchanged: only the POST itself is replaced. Failures to
connect stay ``requests`` exceptions (``ConnectionError``, ``HTTPError`` for an error status),
as web3.py's callers, reef's included, expect them.

One answer is kept: the chain's id (``eth_chainId``, which web3.py's caching calls always
cacheable). web3.py's validation middleware asks for it before every ``eth_call``,
``eth_estimateGas`` and ``eth_sendTransaction``, so uncached it was a second round trip per
contract read (``reef jobs list`` sent 54 requests for 24 reads). The id of the chain at a URL
does not change while a process talks to it; if the node is replaced by another chain, a
transaction signed for the old id is refused by the new one. A caller that asks for web3.py's
request cache itself (``cache_allowed_requests``) gets what it asked for.
"""

from __future__ import annotations

import http.client
import os
import time
from typing import Any, cast

import requests
from eth_typing import URI
from web3 import Web3
from web3._utils.http_session_manager import HTTPSessionManager
from web3.providers.rpc import HTTPProvider
from web3.types import RPCEndpoint, RPCResponse

from reef.chain._block_source import _http_rpc
from reef.chain._rpc import MAX_ANSWER_BYTES, HttpRpc
from reef.encoding import loads_bounded
from reef.errors import InputError, RPCError

__all__ = ["BoundedHTTPProvider", "http_web3"]

_TRUST = "check the RPC URL (--rpc): use a JSON-RPC node you trust"
_DEFAULT_TIMEOUT = 30.0  # web3.py's


class BoundedHTTPProvider(HTTPProvider):
    """web3.py's :class:`~web3.providers.rpc.HTTPProvider`, reading answers bounded in nesting,
    size (:data:`MAX_ANSWER_BYTES`) and time (the whole answer within twice the timeout), and
    asking for the chain's id once (see the module docstring).

    Raises (from any request):
        RPCError: the answer is nested too deeply, longer than :data:`MAX_ANSWER_BYTES`, not
            complete in time, or a redirect.
        requests.ConnectionError / requests.HTTPError: as web3.py's own provider.
    """

    def __init__(
        self,
        endpoint_uri: URI | str | None = None,
        request_kwargs: Any | None = None,
        session: Any | None = None,
        **kwargs: Any,
    ) -> None:
        if "cache_allowed_requests" not in kwargs and "cacheable_requests" not in kwargs:
            kwargs["cache_allowed_requests"] = True
            kwargs["cacheable_requests"] = {RPCEndpoint("eth_chainId")}
            # No block-age validation (it is for cached blocks): else web3.py sends one more
            # eth_chainId, uncached, to pick a threshold.
            kwargs["request_cache_validation_threshold"] = None
        super().__init__(endpoint_uri, request_kwargs, session, **kwargs)
        self._request_session_manager = _BoundedPosts(self, explicit_session=session)

    def decode_rpc_response(self, raw_response: bytes) -> RPCResponse:  # type: ignore[override]
        try:
            return cast(RPCResponse, loads_bounded(raw_response, what="the node's answer"))
        except InputError as exc:
            raise RPCError(
                f"the JSON-RPC node at {self.endpoint_uri} answered no usable JSON: {exc.message}",
                hint="check that the URL is a JSON-RPC endpoint you trust",
            ) from exc

    @property
    def read_timeout(self) -> float:
        """Seconds one socket read may wait; the whole answer may take twice that."""
        timeout = (self._request_kwargs or {}).get("timeout", _DEFAULT_TIMEOUT)
        if isinstance(timeout, tuple):  # requests' (connect, read)
            timeout = timeout[-1]
        return float(timeout) if isinstance(timeout, (int, float)) else _DEFAULT_TIMEOUT


class _BoundedPosts(HTTPSessionManager):
    """web3.py's POST, replaced: what :class:`BoundedHTTPProvider`'s requests and batches send
    through (web3.py calls :meth:`make_post_request` for both)."""

    def __init__(self, provider: BoundedHTTPProvider, *, explicit_session: Any) -> None:
        super().__init__(explicit_session=explicit_session)
        self._provider = provider
        # Decided once: which transport can send the provider's requests as requests would.
        # requests also trusts the CA bundle its own variables name, which the direct transport
        # does not read: an https node behind a private CA stays with requests.
        own_ca = any(os.environ.get(name) for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"))
        https = str(provider.endpoint_uri).lower().startswith("https:")
        self._direct: HttpRpc | None = None if own_ca and https else _http_rpc(provider)

    def make_post_request(
        self, endpoint_uri: URI, data: bytes | dict[str, Any], **kwargs: Any
    ) -> bytes:
        if self._direct is not None and isinstance(data, bytes):
            return self._post_direct(self._direct, str(endpoint_uri), data)
        return self._post_requests(endpoint_uri, data, **kwargs)

    def _post_direct(self, direct: HttpRpc, url: str, data: bytes) -> bytes:
        try:
            status, body = direct.exchange(data)
        except TimeoutError as exc:
            raise _late(url, self._provider.read_timeout) from exc
        except RPCError as exc:  # the transport's size bound
            raise _too_long(url) from exc
        except (OSError, http.client.HTTPException) as exc:
            # As requests raises it (web3.py's callers catch requests' exceptions).
            raise requests.ConnectionError(
                f"cannot reach the JSON-RPC node at {url}: {exc or type(exc).__name__}"
            ) from exc
        _check_status(url, status, body)
        return body

    def _post_requests(self, endpoint_uri: URI, data: Any, **kwargs: Any) -> bytes:
        url, timeout = str(endpoint_uri), self._provider.read_timeout
        deadline = time.monotonic() + 2 * timeout
        kwargs["stream"] = True
        with self.get_response_from_post_request(endpoint_uri, data=data, **kwargs) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
                raise _too_long(url)
            body = bytearray()
            # read1: what has come, after at most one read (iter_content waits for whole chunks
            # of its size, which a node sending a byte at a time never completes).
            while chunk := response.raw.read1(1 << 16):
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise _too_long(url)
                if time.monotonic() > deadline:
                    raise _late(url, timeout)
            response.raise_for_status()
            return bytes(body)


def _check_status(url: str, status: int, body: bytes) -> None:
    """Raise for an answer that is no JSON-RPC answer by its status, as web3.py's path did.

    Raises:
        RPCError: a redirect (not followed: the URL to use is named).
        requests.HTTPError: an error status (web3.py retries reads on it).
    """
    if 300 <= status < 400:
        raise RPCError(
            f"the JSON-RPC node at {url} answered a redirect (HTTP {status}), which reef does "
            "not follow",
            hint="give the URL it redirects to as the RPC URL (--rpc)",
        )
    if status >= 400:
        text = body[:200].decode("utf-8", "replace")
        raise requests.HTTPError(f"{status} error from the JSON-RPC node at {url}: {text}")


def _late(url: str, timeout: float) -> RPCError:
    return RPCError(
        f"the JSON-RPC node at {url} did not answer in time (a read waits at most {timeout:g} s, "
        f"the whole answer at most {2 * timeout:g} s)",
        hint=f"{_TRUST}; a slow node may need a larger timeout",
    )


def _too_long(url: str) -> RPCError:
    return RPCError(
        f"the JSON-RPC node at {url} answered more than {MAX_ANSWER_BYTES} bytes; reef reads "
        "no more of it",
        hint=_TRUST,
    )


def http_web3(url: str, *, timeout: float = 30.0) -> Web3:
    """A web3 client of the node at ``url`` (no round trip yet): each socket read waits at most
    ``timeout`` seconds, a whole answer at most twice that, and an answer holds at most
    :data:`MAX_ANSWER_BYTES`."""
    return Web3(BoundedHTTPProvider(url, request_kwargs={"timeout": timeout}))
