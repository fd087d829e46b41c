"""One HTTP request to an enclave over Scallop, answered with the peer that answered it.

What ``reef scallop call`` does, as a library call: a fresh :class:`ScallopTransport` (our static
key, the policy the server must meet, our attestation if the server asks for one), one request,
the whole response read, every way it can fail (handshake refused, no answer in time, a broken
connection) a :mod:`reef.errors` type naming the server.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from reef.errors import ServiceError
from reef.scallop._http import ScallopTransport
from reef.scallop._policy import Auther, AuthStore, PeerPolicy
from reef.scallop._stream import ScallopPeer

__all__ = ["ScallopResponse", "scallop_request"]

_HANDSHAKE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ScallopResponse:
    """What the server answered, and who it proved to be."""

    peer: ScallopPeer
    status: int
    headers: dict[str, str]
    body: bytes


async def scallop_request(
    host: str,
    port: int,
    path: str = "/",
    *,
    policy: PeerPolicy | AuthStore | None,
    method: str = "GET",
    body: bytes = b"",
    static_key: bytes | None = None,
    auther: Auther | None = None,
    timeout_s: float = 30.0,
) -> ScallopResponse:
    """``method path`` on the Scallop server at ``host:port``, whose peer must meet ``policy``;
    ``static_key`` (our X25519 secret, else a fresh one) and ``auther`` (our attestation) for a
    server that asks its clients to attest. The whole exchange must end within ``timeout_s``.

    Raises:
        ChannelError: the handshake was refused (by either side) or the channel broke.
        ServiceError: no answer in time, or the connection failed.
    """
    transport = ScallopTransport(
        static_key=static_key,
        policy=policy,
        auther=auther,
        handshake_timeout=min(timeout_s, _HANDSHAKE_TIMEOUT_S),
    )
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        async with asyncio.timeout(timeout_s):
            async with httpx.AsyncClient(transport=transport) as client:
                response = await client.request(
                    method, f"http://{netloc}{path}", content=body or None
                )
    except TimeoutError as exc:
        raise ServiceError(f"no answer from {host}:{port} within {timeout_s:g} s") from exc
    except httpx.HTTPError as exc:
        raise ServiceError(f"the request to {host}:{port} failed: {exc}") from exc
    return ScallopResponse(
        peer=response.extensions["scallop"],
        status=response.status_code,
        headers=dict(response.headers),
        body=response.content,
    )
