"""One HTTP request to an enclave over Scallop, answered with the peer that answered it.

What ``reef scallop call`` does, as a library call: a fresh :class:`ScallopTransport` (our static
key, the policy the server must meet, our attestation if the server asks for one), one request,
the whole response read, every way it can fail (handshake refused, no answer in time, a broken
connection) a :mod:`reef.errors` type naming the server.

The server is a stranger until its handshake is checked, and even then its answer may be a
gigabyte: the body is counted while it streams and refused past ``max_bytes`` (a declared
``content-length`` over it before any of the body is read), and, as :mod:`reef._fetch` does, the
identity encoding is asked for and a compressed answer refused (httpx would inflate each piece
whole before it could be counted).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

import httpx

from reef.encoding import terminal_text
from reef.errors import MisuseError, ServiceError
from reef.scallop._http import ScallopTransport
from reef.scallop._policy import Auther, AuthStore, PeerPolicy
from reef.scallop._stream import ScallopPeer

__all__ = ["ScallopResponse", "scallop_request"]

_HANDSHAKE_TIMEOUT_S = 5.0
DEFAULT_MAX_ANSWER_BYTES: Final = 16 * 1024 * 1024
"""The longest answer body :func:`scallop_request` reads unless told otherwise."""
_IDENTITY: Final = ("", "identity")


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
    max_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
) -> ScallopResponse:
    """``method path`` on the Scallop server at ``host:port``, whose peer must meet ``policy``;
    ``static_key`` (our X25519 secret, else a fresh one) and ``auther`` (our attestation) for a
    server that asks its clients to attest. The whole exchange must end within ``timeout_s``,
    and the answer's body be at most ``max_bytes`` long, in the identity encoding.

    Raises:
        ChannelError: the handshake was refused (by either side) or the channel broke.
        ServiceError: no answer in time, the connection failed, or the answer is longer than
            ``max_bytes`` or compressed.
        MisuseError: ``max_bytes`` is not positive.
    """
    if max_bytes < 1:
        raise MisuseError(f"max_bytes must be at least 1, got {max_bytes}")
    transport = ScallopTransport(
        static_key=static_key,
        policy=policy,
        auther=auther,
        handshake_timeout=min(timeout_s, _HANDSHAKE_TIMEOUT_S),
    )
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        async with asyncio.timeout(timeout_s):
            # httpx's read timeout (which the transport keeps) at the whole exchange's: the
            # deadline above is the bound, not httpx's default of 5 s a read.
            async with httpx.AsyncClient(transport=transport, timeout=timeout_s) as client:
                request = client.build_request(
                    method,
                    f"http://{netloc}{path}",
                    content=body or None,
                    headers={"accept-encoding": "identity"},
                )
                response = await client.send(request, stream=True)
                try:
                    _check_head(response, host, port, max_bytes)
                    content = bytearray()
                    # Raw pieces: an encoding was refused above, so there is nothing to decode.
                    async for piece in response.aiter_raw():
                        content += piece
                        if len(content) > max_bytes:
                            raise _too_large(host, port, max_bytes)
                finally:
                    await response.aclose()
    except TimeoutError as exc:
        raise ServiceError(f"no answer from {host}:{port} within {timeout_s:g} s") from exc
    except httpx.HTTPError as exc:
        raise ServiceError(f"the request to {host}:{port} failed: {exc}") from exc
    return ScallopResponse(
        peer=response.extensions["scallop"],
        status=response.status_code,
        headers=dict(response.headers),
        body=bytes(content),
    )


def _too_large(host: str, port: int, max_bytes: int) -> ServiceError:
    return ServiceError(
        f"the answer of {host}:{port} is more than {max_bytes} bytes; not read further",
        hint="ask for less, or raise the bound (max_bytes) if this server is trusted to send more",
    )


def _check_head(response: httpx.Response, host: str, port: int, max_bytes: int) -> None:
    """Refuse, before reading any of the body, an answer declared too long or compressed."""
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(host, port, max_bytes)
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in _IDENTITY:
        raise ServiceError(
            f"the answer of {host}:{port} is in the {terminal_text(encoding)[:40]!r} content "
            "encoding, which was not asked for; not read",
            hint="the server must answer uncompressed (accept-encoding: identity)",
        )
