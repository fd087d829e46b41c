"""Scallop: attested secure channels (reference oyster_cvm.md §6.4).

A Noise ``IX_25519_ChaChaPoly_BLAKE2b`` handshake framed as NoiseSocket, whose static keys are
bound to attestation documents, so both ends know the measured image on the other side before any
application byte flows. Byte-compatible with Oyster's Scallop.

* :func:`connect` / :func:`serve` give :class:`ScallopStream` objects (asyncio-stream API).
* :class:`PeerPolicy` says what the peer must prove (roots, image ids, PCRs, freshness);
  :class:`PolicyStore` caches verified peers; :class:`PinnedKeys` trusts fixed keys.
* :func:`serve_asgi` serves any ASGI app over Scallop; :class:`ScallopTransport` lets
  ``httpx.AsyncClient`` call an enclave over Scallop; :func:`scallop_request` is one such call
  (what ``reef scallop call`` makes).

The Noise core and the wire state machines (sans-IO) are in :mod:`reef.scallop.lowlevel`.
"""

from __future__ import annotations

from reef.scallop._handshake import connect, handshake_client, handshake_server
from reef.scallop._http import ScallopTransport, asgi_handler, scallop_peer, serve_asgi
from reef.scallop._policy import (
    Approved,
    Auther,
    AuthStore,
    ContainsResponse,
    NotFound,
    PeerPolicy,
    PinnedKeys,
    PolicyStore,
    Rejected,
    auther_from_url,
)
from reef.scallop._request import ScallopResponse, scallop_request
from reef.scallop._server import ScallopServer, connection_peer, serve
from reef.scallop._stream import AuthKind, ScallopPeer, ScallopStream

__all__ = [
    "Approved",
    "AuthKind",
    "AuthStore",
    "Auther",
    "ContainsResponse",
    "NotFound",
    "PeerPolicy",
    "PinnedKeys",
    "PolicyStore",
    "Rejected",
    "ScallopPeer",
    "ScallopResponse",
    "ScallopServer",
    "ScallopStream",
    "ScallopTransport",
    "asgi_handler",
    "auther_from_url",
    "connect",
    "connection_peer",
    "handshake_client",
    "handshake_server",
    "scallop_peer",
    "scallop_request",
    "serve",
    "serve_asgi",
]
