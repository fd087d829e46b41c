"""The web3.py HTTP provider reef talks to a JSON-RPC node through.

A node may be a stranger's (a public RPC, a host's). web3.py parses its answers with
``json.loads``, and importing web3 (py_ecc) raises Python's recursion limit to 100 000, so an
answer of about 70 000 ``[`` is not a RecursionError but a segmentation fault of the whole
process. :class:`BoundedHTTPProvider` parses answers with :func:`reef.encoding.loads_bounded`:
a nesting bomb is an :class:`~reef.errors.RPCError` naming the node.
"""

from __future__ import annotations

from typing import cast

from web3 import Web3
from web3.providers.rpc import HTTPProvider
from web3.types import RPCResponse

from reef.encoding import loads_bounded
from reef.errors import InputError, RPCError

__all__ = ["BoundedHTTPProvider", "http_web3"]


class BoundedHTTPProvider(HTTPProvider):
    """web3.py's :class:`~web3.providers.rpc.HTTPProvider`, parsing answers bounded."""

    def decode_rpc_response(self, raw_response: bytes) -> RPCResponse:  # type: ignore[override]
        try:
            return cast(RPCResponse, loads_bounded(raw_response, what="the node's answer"))
        except InputError as exc:
            raise RPCError(
                f"the JSON-RPC node at {self.endpoint_uri} answered no usable JSON: {exc.message}",
                hint="check that the URL is a JSON-RPC endpoint you trust",
            ) from exc


def http_web3(url: str, *, timeout: float = 30.0) -> Web3:
    """A web3 client of the node at ``url`` (no round trip yet), each request waiting at most
    ``timeout`` seconds per read."""
    return Web3(BoundedHTTPProvider(url, request_kwargs={"timeout": timeout}))
