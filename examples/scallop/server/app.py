"""A Scallop server enclave: an HTTP app reachable only over attested channels.

Port 8443 speaks HTTP/1.1 inside Scallop (``reef.scallop.serve_asgi``). The server's Noise static
key is the enclave's attested X25519 identity (``/app/id.sec``), so the document its attestation
server hands out (``$REEF_ATTESTATION_URL``) proves which image holds the key. Every client must
attest too, under the same TEE root as this enclave: the app reads the client's image id from the
verified channel, never from anything the client says.

POST /hello  -> {"server_image_id", "client_image_id", "client_key", "message"}
GET  /stats  -> {"hello": requests answered}
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from reef.attestation import TrustedRoot
from reef.scallop import PeerPolicy, auther_from_url, scallop_peer, serve_asgi

APP = Path(os.environ.get("REEF_APP_DIR", "/app"))
ATTESTATION = os.environ.get("REEF_ATTESTATION_URL", "http://127.0.0.1:1300") + "/attestation/raw"
PORT = int(os.environ.get("PORT", "8443"))


def own_tee_root() -> TrustedRoot:
    """The root our own attestations chain to: the TEE this enclave runs on (trusted anyway)."""
    return TrustedRoot.from_document(httpx.get(ATTESTATION, timeout=10).content)


answered = {"hello": 0}


async def hello(request: Request) -> JSONResponse:
    peer = scallop_peer(request)
    answered["hello"] += 1
    return JSONResponse(
        {
            "server_image_id": os.environ.get("REEF_IMAGE_ID", ""),
            "client_image_id": peer.image_id.hex() if peer.image_id else None,
            "client_key": peer.static_key.hex(),
            "message": (await request.body()).decode(errors="replace"),
        }
    )


async def stats(request: Request) -> JSONResponse:
    return JSONResponse(answered)


async def main() -> None:
    app = Starlette(routes=[Route("/hello", hello, methods=["POST"]), Route("/stats", stats)])
    server = await serve_asgi(
        app,
        "127.0.0.1",
        PORT,
        static_key=(APP / "id.sec").read_bytes(),
        policy=PeerPolicy(roots=[own_tee_root()]),
        auther=auther_from_url(ATTESTATION),
    )
    print(f"scallop-server: Scallop on 127.0.0.1:{server.port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
